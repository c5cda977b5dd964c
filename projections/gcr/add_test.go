package gcr

import (
	"bytes"
	"encoding/binary"
	"errors"
	"math"
	"reflect"
	"testing"

	"github.com/aurumcdp/aurum/event"
	"github.com/aurumcdp/aurum/store"
)

type addStep struct {
	rec   *event.Record
	owned []event.IDRef
}

func withTraits(r *event.Record, kv ...string) *event.Record {
	r.Traits = map[string][]byte{}
	for i := 0; i < len(kv); i += 2 {
		r.Traits[kv[i]] = []byte(kv[i+1])
	}
	return r
}

func identify(id byte, t int64) *event.Record {
	return &event.Record{ID: eid(id), Source: "ios", Kind: event.Identify, Time: t, Channel: "mobile", DeviceType: "ios", Key: testKey}
}

func TestAdd(t *testing.T) {
	rev := func(v any) map[string]any { return map[string]any{"revenue": v} }
	for _, tc := range []struct {
		name  string
		steps []addStep
		check func(t *testing.T, p *Profile)
	}{
		{
			name: "revenue parsing",
			steps: []addStep{
				{rec: track(1, 10, "Order Completed", rev(10))},
				{rec: track(2, 11, "Order Completed", rev("10.50"))},
				{rec: track(3, 12, "Tip", rev(1e-7))},                   // counted, rounds to 0
				{rec: track(4, 13, "Order Completed", rev("abc"))},      // ignored
				{rec: track(5, 14, "Order Completed", rev(math.NaN()))}, // ignored
				{rec: track(6, 15, "Order Completed", rev(1e300))},      // ignored
				{rec: track(7, 16, "Refund", map[string]any{"total": "-2.25"})},
				{rec: &event.Record{ID: eid(8), Kind: event.Page, Time: 17, Key: testKey, Properties: rev(5)}}, // not a track
			},
			check: func(t *testing.T, p *Profile) {
				want := map[string]Money{
					"Order Completed": {Count: 2, Micros: 20_500_000},
					"Tip":             {Count: 1, Micros: 0},
					"Refund":          {Count: 1, Micros: -2_250_000},
				}
				if !reflect.DeepEqual(p.Revenue, want) {
					t.Errorf("revenue = %v, want %v", p.Revenue, want)
				}
				if p.Stats.EventCounts["Order Completed"] != 5 {
					t.Errorf("event count = %d, want 5", p.Stats.EventCounts["Order Completed"])
				}
			},
		},
		{
			name: "stats",
			steps: []addStep{
				{rec: track(1, 500, "A", nil)},
				{rec: identify(2, 100)},
				{rec: track(3, 300, "A", nil)},
				{rec: track(4, 700, "B", nil)},
				{rec: &event.Record{ID: eid(5), Kind: event.Page, Time: 200, Key: testKey}}, // no source/channel/device
			},
			check: func(t *testing.T, p *Profile) {
				want := Stats{
					FirstSeen: 100, LastSeen: 700, Events: 5,
					EventCounts: map[string]int64{"A": 2, "B": 1},
					KindCounts:  map[string]int64{"track": 3, "identify": 1, "page": 1},
					Sources:     map[string]int64{"web": 3, "ios": 1},
					Channels:    map[string]int64{"web": 3, "mobile": 1},
					Devices:     map[string]int64{"ios": 1},
				}
				if !reflect.DeepEqual(p.Stats, want) {
					t.Errorf("stats = %+v, want %+v", p.Stats, want)
				}
			},
		},
		{
			name: "negative times",
			steps: []addStep{
				{rec: track(1, -50, "A", nil)},
				{rec: track(2, -10, "A", nil)},
			},
			check: func(t *testing.T, p *Profile) {
				if p.Stats.FirstSeen != -50 || p.Stats.LastSeen != -10 {
					t.Errorf("first/last = %d/%d, want -50/-10", p.Stats.FirstSeen, p.Stats.LastSeen)
				}
			},
		},
		{
			name: "traits last writer wins by time then event id",
			steps: []addStep{
				{rec: withTraits(identify(9, 100), "name", "late-big-id", "plan", "gold")},
				{rec: withTraits(identify(5, 200), "name", "latest")},
				{rec: withTraits(identify(1, 200), "name", "tie-small-id", "plan", "silver")},
				{rec: withTraits(identify(7, 200), "city", "tie-big-id")},
				{rec: withTraits(identify(3, 200), "city", "tie-small-id")},
				{rec: withTraits(identify(2, 50), "plan", "old")},
			},
			check: func(t *testing.T, p *Profile) {
				want := map[string]Trait{
					"name": {Key: testKey, Sealed: []byte("latest"), Time: 200, Event: eid(5)},
					"plan": {Key: testKey, Sealed: []byte("silver"), Time: 200, Event: eid(1)},
					"city": {Key: testKey, Sealed: []byte("tie-big-id"), Time: 200, Event: eid(7)},
				}
				if !reflect.DeepEqual(p.Traits, want) {
					t.Errorf("traits = %v, want %v", p.Traits, want)
				}
			},
		},
		{
			name: "identifiers first and last seen",
			steps: []addStep{
				{rec: identify(4, 500), owned: []event.IDRef{ref("email", 0xaa, []byte("s500")), ref("user_id", 0x01, []byte("u"))}},
				{rec: identify(8, 300), owned: []event.IDRef{ref("email", 0xaa, []byte("s300-big-id"))}},
				{rec: identify(6, 300), owned: []event.IDRef{ref("email", 0xaa, []byte("s300-small-id"))}},
				{rec: identify(2, 900), owned: []event.IDRef{ref("email", 0xaa, []byte("s900")), ref("email", 0x0b, []byte("other"))}},
			},
			check: func(t *testing.T, p *Profile) {
				want := []Ident{
					{Type: "email", Hash: bytes.Repeat([]byte{0x0b}, 16), Key: testKey, Sealed: []byte("other"), FirstSeen: 900, LastSeen: 900, FirstEvent: eid(2)},
					{Type: "email", Hash: bytes.Repeat([]byte{0xaa}, 16), Key: testKey, Sealed: []byte("s300-small-id"), FirstSeen: 300, LastSeen: 900, FirstEvent: eid(6)},
					{Type: "user_id", Hash: bytes.Repeat([]byte{0x01}, 16), Key: testKey, Sealed: []byte("u"), FirstSeen: 500, LastSeen: 500, FirstEvent: eid(4)},
				}
				if !reflect.DeepEqual(p.Identifiers, want) {
					t.Errorf("identifiers =\n%+v\nwant\n%+v", p.Identifiers, want)
				}
			},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// Every permutation-insensitive case must give the same result in
			// order and reversed, flushed once or after every event.
			var first []byte
			for _, variant := range []struct {
				reverse, flushEach bool
			}{{false, false}, {true, false}, {false, true}, {true, true}} {
				p, mem := New(nil), store.NewMem()
				tx := p.Begin(mem)
				for i := range tc.steps {
					s := tc.steps[i]
					if variant.reverse {
						s = tc.steps[len(tc.steps)-1-i]
					}
					mustAdd(t, tx, pid(1), s.rec, s.owned...)
					if variant.flushEach {
						mustFlush(t, tx)
					}
				}
				mustFlush(t, tx)
				prof := mustGet(t, p, mem, pid(1))
				tc.check(t, prof)
				enc := mustEncode(t, prof)
				if first == nil {
					first = enc
				} else if !bytes.Equal(first, enc) {
					t.Errorf("variant %+v encodes differently", variant)
				}
			}
		})
	}
}

func TestAddValidation(t *testing.T) {
	p := New(nil)
	tx := p.Begin(store.NewMem())
	for _, tc := range []struct {
		name    string
		profile []byte
		rec     *event.Record
		owned   []event.IDRef
	}{
		{"short profile", []byte{1}, track(1, 1, "A", nil), nil},
		{"nil record", pid(1), nil, nil},
		{"short event id", pid(1), &event.Record{ID: []byte{1}, Kind: event.Track}, nil},
		{"no kind", pid(1), &event.Record{ID: eid(1)}, nil},
		{"owned without hash", pid(1), track(1, 1, "A", nil), []event.IDRef{{Type: "email"}}},
	} {
		if err := tx.Add(tc.profile, tc.rec, tc.owned); err == nil {
			t.Errorf("%s: Add succeeded", tc.name)
		}
	}
}

func TestKeyLayout(t *testing.T) {
	p, mem := New(&Options{Partitions: 7}), store.NewMem()
	tx := p.Begin(mem)
	mustAdd(t, tx, pid(3), track(9, 0x0102, "A", nil))
	mustAdd(t, tx, pid(3), track(8, -5, "A", nil))
	mustFlush(t, tx)

	part := uint16(PartitionOf(pid(3), 7))
	gkey := append(append(binary.BigEndian.AppendUint16([]byte("p/"), part), "/g/"...), pid(3)...)
	ekey := func(tm uint64, id []byte) []byte {
		k := append(append(binary.BigEndian.AppendUint16([]byte("p/"), part), "/e/"...), pid(3)...)
		k = binary.BigEndian.AppendUint64(append(k, '/'), tm)
		return append(append(k, '/'), id...)
	}
	rkey := func(id []byte) []byte { return append(append([]byte("ev/"), id...), pid(3)...) }
	for _, c := range []struct {
		key   []byte
		empty bool // an index entry
	}{{gkey, false}, {ekey(0x0102, eid(9)), true}, {ekey(0, eid(8)), true}, {rkey(eid(9)), false}, {rkey(eid(8)), false}} {
		v, err := mem.Get(c.key)
		if err != nil {
			t.Errorf("key %q: %v", c.key, err)
		} else if (len(v) == 0) != c.empty {
			t.Errorf("key %q: %d-byte value, want empty %v", c.key, len(v), c.empty)
		}
	}
	if mem.Len() != 5 {
		t.Errorf("store has %d keys, want 5", mem.Len())
	}
}

func TestPartitionOf(t *testing.T) {
	// FNV-1a 32 of sixteen zero bytes, computed by hand from the definition.
	h := uint32(2166136261)
	for range 16 {
		h ^= 0
		h *= 16777619
	}
	if got, want := PartitionOf(make([]byte, 16), 1000), int(h%1000); got != want {
		t.Errorf("PartitionOf(zeros, 1000) = %d, want %d", got, want)
	}
	seen := map[int]bool{}
	for i := range 200 {
		n := PartitionOf(pid(byte(i)), 16)
		if n < 0 || n >= 16 {
			t.Fatalf("partition %d out of range", n)
		}
		seen[n] = true
	}
	if len(seen) < 8 {
		t.Errorf("200 ids hit only %d of 16 partitions", len(seen))
	}
}

func TestGetErrors(t *testing.T) {
	p, mem := New(nil), store.NewMem()
	if _, err := p.Get(mem, pid(1)); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("absent: err = %v, want ErrNotFound", err)
	}
	_ = mem.Set(p.profileKey(pid(1)), []byte{0xc1}) // never-used msgpack code
	if _, err := p.Get(mem, pid(1)); !errors.Is(err, ErrCorrupt) {
		t.Errorf("garbage: err = %v, want ErrCorrupt", err)
	}
	b := mustEncode(t, &Profile{ID: pid(2)})
	_ = mem.Set(p.profileKey(pid(1)), b)
	if _, err := p.Get(mem, pid(1)); !errors.Is(err, ErrCorrupt) {
		t.Errorf("wrong id: err = %v, want ErrCorrupt", err)
	}
	b = mustEncode(t, &Profile{ID: pid(1), MergedFrom: [][]byte{pid(3), pid(2)}})
	_ = mem.Set(p.profileKey(pid(1)), b)
	if _, err := p.Get(mem, pid(1)); !errors.Is(err, ErrCorrupt) {
		t.Errorf("unsorted merged ids: err = %v, want ErrCorrupt", err)
	}
}

func TestEncodingDeterministic(t *testing.T) {
	build := func(order []string) *Profile {
		p := &Profile{ID: pid(1)}
		for i, k := range order {
			incr(&p.Stats.EventCounts, k, int64(i%2+1))
			incr(&p.Stats.KindCounts, k, 1)
			if p.Traits == nil {
				p.Traits = map[string]Trait{}
				p.Revenue = map[string]Money{}
				p.Audiences = map[string]int64{}
				p.Predictions = map[string]float64{}
			}
			p.Traits[k] = Trait{Sealed: []byte(k)}
			p.Revenue[k] = Money{Count: 1}
			p.Audiences[k] = 1
			p.Predictions[k] = 0.5
		}
		return p
	}
	keys := []string{"a", "b", "c", "d", "e", "f", "g", "h", "i", "j"}
	// Give each map a different insertion order.
	a := build(keys)
	b := build([]string{"j", "i", "h", "g", "f", "e", "d", "c", "b", "a"})
	for k, n := range a.Stats.EventCounts { // equalise counts after reversal
		b.Stats.EventCounts[k] = n
	}
	ea, eb := mustEncode(t, a), mustEncode(t, b)
	if !bytes.Equal(ea, eb) {
		t.Fatal("same profile, different bytes")
	}
	for range 20 { // map iteration order varies run to run
		if !bytes.Equal(mustEncode(t, a), ea) {
			t.Fatal("encoding not stable")
		}
	}
	dec, err := decodeProfile(ea)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(dec, a) {
		t.Errorf("round trip:\n%+v\nwant\n%+v", dec, a)
	}
}

func TestRecordRoundTrip(t *testing.T) {
	rec := track(1, 42, "A", map[string]any{"z": "1", "a": map[string]any{"y": 1.5, "b": "x"}})
	rec.IDs = []event.IDRef{ref("email", 1, []byte("s"))}
	rec.Traits = map[string][]byte{"z": []byte("1"), "a": []byte("2"), "m": []byte("3")}
	rec.Private = []byte("pv")
	b := encodeRecord(rec)
	for range 20 {
		b2 := encodeRecord(rec)
		if !bytes.Equal(b, b2) {
			t.Fatal("record encoding not stable")
		}
	}
	got, err := decodeRecord(b)
	if err != nil {
		t.Fatal(err)
	}
	if got.Properties != nil {
		t.Fatal("a stored record decodes with plaintext properties")
	}
	got.OpenProperties(xorOpen)
	if !reflect.DeepEqual(&got, rec) {
		t.Errorf("round trip:\n%+v\nwant\n%+v", got, *rec)
	}
}
