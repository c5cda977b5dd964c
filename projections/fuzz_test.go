package projections

import (
	"bytes"
	"errors"
	"testing"

	"github.com/aurumcdp/aurum/event"
	"github.com/aurumcdp/aurum/projections/audience"
	"github.com/aurumcdp/aurum/projections/identity"
	"github.com/aurumcdp/aurum/store"
	"github.com/oklog/ulid/v2"
	"github.com/vmihailenco/msgpack/v5"
)

func copyMem(t testing.TB, s *store.Mem) *store.Mem {
	t.Helper()
	c := store.NewMem()
	if err := s.Scan(nil, nil, false, func(k, v []byte) bool {
		_ = c.Set(append([]byte(nil), k...), append([]byte(nil), v...))
		return true
	}); err != nil {
		t.Fatal(err)
	}
	return c
}

// validBatch is a well-formed entry: one track event of a new user.
func validBatch(t testing.TB) []byte {
	t.Helper()
	id := ulid.MustNew(1_700_000_100_000, bytes.NewReader(bytes.Repeat([]byte{9}, 16)))
	ids := []event.IDRef{{Type: event.UserID, Hash: testHash(event.UserID, "fuzz-after")}}
	data, err := marshalEntry(&event.Batch{ID: testHash("b", "after"), Received: 1_700_000_100_000, Records: []event.Record{{
		ID: id[:], MessageID: "fuzz-after-unique", Source: "web", Kind: event.Track, Event: "After",
		Time: 1_700_000_100_000, Received: 1_700_000_100_000, Key: ids[0].Hash, IDs: ids}}})
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// FuzzApply feeds hostile bytes to the state machine on both log subjects,
// as a producer that can publish on the log might. Apply must not panic;
// it either applies the entry or refuses it as corrupt (the engine then
// skips it); either way a valid entry afterwards applies and the keychain
// stays consistent.
func FuzzApply(f *testing.F) {
	for _, e := range syntheticLog(f, 3, 20, 1)[:3] {
		f.Add(e.subject == SubjectControl, e.data)
	}
	for _, c := range []Control{
		{Kind: ControlAudiencePut, Time: 5, Audience: audience.Definition{Name: "a", Rule: `count("E") >= 1`}},
		{Kind: ControlAudienceDelete, Time: 5, Audience: audience.Definition{Name: "a"}},
		{Kind: ControlIdentityConfig, Time: 5, Config: []byte(`{"priority":["user_id"],"limits":{"user_id":1},"blocked":[]}`)},
		{Kind: ControlTick, Time: 1 << 62},
		{Kind: ControlDestinationPut, Time: 5},
	} {
		data, _ := marshalEntry(&c)
		f.Add(true, data)
	}
	f.Add(false, []byte{0x81, 0xa1, 'r', 0xdd, 0xff, 0xff, 0xff, 0xff}) // a huge array length
	f.Add(false, []byte{})
	f.Add(true, []byte{0xc1})
	valid := validBatch(f)
	f.Fuzz(func(t *testing.T, control bool, data []byte) {
		subject := SubjectEvents
		if control {
			subject = SubjectControl
		}
		sm := New(Options{Partitions: 2, Open: openIdentity}) // hostile sealed properties are decoded too
		s := store.NewMem()
		ctl, _ := marshalEntry(&Control{Kind: ControlSourceCreate, Time: 1, Source: Source{Name: "web", KeyHash: testHash("k", "web")}})
		if _, err := sm.Apply(s, 1, SubjectControl, ctl); err != nil {
			t.Fatal(err)
		}
		before := copyMem(t, s)
		if _, err := sm.Apply(s, 2, subject, data); err != nil {
			if !errors.Is(err, ErrCorruptEntry) {
				t.Fatalf("hostile entry: error other than ErrCorruptEntry (would stop the node): %v", err)
			}
			s = before // the engine discards the entry's batch and skips it
			if err := sm.Skip(s, 2); err != nil {
				t.Fatal(err)
			}
		}
		res, err := sm.Apply(s, 3, SubjectEvents, valid)
		if err != nil {
			t.Fatalf("valid entry after the hostile one: %v", err)
		}
		if res.Events+res.Duplicates != 1 {
			t.Fatalf("valid entry: %+v", res)
		}
		if err := identity.Check(s); err != nil {
			t.Fatalf("keychain inconsistent: %v", err)
		}
		if a, err := Applied(s); err != nil || a != 3 {
			t.Fatalf("applied %d, %v", a, err)
		}
	})
}

func TestCheckMsgpack(t *testing.T) {
	for _, v := range []any{
		nil, true, 1, -1, 1 << 40, -(1 << 40), 1.5, float32(2.5), "", "s", string(make([]byte, 300)), string(make([]byte, 70000)),
		[]byte{1, 2}, make([]byte, 70000), []any{}, []any{1, "a", nil}, make([]int, 20), make([]int, 70000)[:MaxMsgpackElems],
		map[string]any{"a": map[string]any{"b": []any{1.0, "x"}}}, ulid.ULID{}, &event.Batch{Records: []event.Record{{Event: "E"}}},
		&Control{Kind: ControlTick, Time: 1},
	} {
		data, err := msgpack.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		if err := CheckMsgpack(data); err != nil {
			t.Errorf("%T %.40v: %v", v, v, err)
		}
	}
	deep := append(bytes.Repeat([]byte{0x91}, MaxMsgpackDepth+1), 0xc0)
	for name, data := range map[string][]byte{
		"empty":              {},
		"0xc1":               {0xc1},
		"array32 of 4G":      {0xdd, 0xff, 0xff, 0xff, 0xff, 0xc0},
		"map16 past the end": {0xde, 0x00, 0x10, 0xa1, 'a', 0xc0},
		"str32 past the end": {0xdb, 0x00, 0x01, 0x00, 0x00, 'a'},
		"truncated int64":    {0xd3, 0x00},
		"truncated header":   {0xdc, 0x01},
		"ext32 past the end": {0xc9, 0x00, 0x00, 0x10, 0x00, 0x01},
		"too many elements":  append([]byte{0xdd, 0x00, 0x01, 0x00, 0x01}, bytes.Repeat([]byte{0xc0}, MaxMsgpackElems+1)...),
		"too deep":           deep,
	} {
		if err := CheckMsgpack(data); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	// A depth just within the bound is accepted.
	if err := CheckMsgpack(append(bytes.Repeat([]byte{0x91}, MaxMsgpackDepth-1), 0xc0)); err != nil {
		t.Errorf("depth %d: %v", MaxMsgpackDepth-1, err)
	}
}

// FuzzCheckMsgpack: whatever CheckMsgpack accepts, the decoder decodes
// without panicking (into the log's record types and into any).
func FuzzCheckMsgpack(f *testing.F) {
	for _, e := range syntheticLog(f, 2, 5, 2)[:2] {
		f.Add(e.data)
	}
	f.Add([]byte{0x92, 0xc0, 0xa1, 'x'})
	f.Fuzz(func(t *testing.T, data []byte) {
		if CheckMsgpack(data) != nil {
			return
		}
		var b event.Batch
		_ = msgpack.Unmarshal(data, &b)
		var c Control
		_ = msgpack.Unmarshal(data, &c)
		var v any
		_ = msgpack.Unmarshal(data, &v)
	})
}
