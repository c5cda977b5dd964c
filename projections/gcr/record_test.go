package gcr

import (
	"bytes"
	"encoding/binary"
	"errors"
	"math/rand/v2"
	"reflect"
	"strings"
	"testing"

	"github.com/aurumcdp/aurum/event"
)

// randomProps returns 0–3 properties of the values JSON yields, as the
// record decoders return them (msgpack round trip: compact integer types).
func randomProps(t testing.TB, r *rand.Rand) map[string]any {
	var val func(depth int) any
	val = func(depth int) any {
		switch k := r.IntN(9); {
		case k == 0:
			return nil
		case k == 1:
			return r.IntN(2) == 1
		case k == 2:
			return strings.Repeat("é", r.IntN(4))
		case k == 3:
			return r.NormFloat64()
		case k == 4:
			return int64(r.Uint64())
		case k == 5:
			return r.Int64N(300) - 150
		case k == 6 && depth < 3:
			a := make([]any, r.IntN(3))
			for i := range a {
				a[i] = val(depth + 1)
			}
			return a
		case k == 7 && depth < 3:
			m := map[string]any{}
			for range r.IntN(3) {
				m[string(rune('a'+r.IntN(26)))] = val(depth + 1)
			}
			return m
		}
		return "x"
	}
	n := r.IntN(4)
	if n == 0 {
		return nil
	}
	m := make(map[string]any, n)
	for range n {
		m[string(rune('a'+r.IntN(26)))+"k"] = val(0)
	}
	b, ok := event.AppendMsgpack(nil, m)
	if !ok {
		t.Fatal("AppendMsgpack refused random properties")
	}
	v, err := event.DecodeMsgpack(b)
	if err != nil {
		t.Fatal(err)
	}
	return v.(map[string]any)
}

// randomRecord fills every field of an event.Record (fill; Properties by
// randomProps).
func randomRecord(t *testing.T, r *rand.Rand) *event.Record {
	var rec event.Record
	v := reflect.ValueOf(&rec).Elem()
	for i := range v.NumField() {
		if v.Type().Field(i).Name == "Properties" {
			continue
		}
		fill(t, r, v.Field(i))
	}
	rec.Properties = randomProps(t, r)
	return &rec
}

// TestRecordCodecCoversEveryField fails when a field is added to
// event.Record or event.IDRef without being encoded: the field counts are
// pinned (update them with record.go: a new format version), and random
// values in every field must survive the round trip.
func TestRecordCodecCoversEveryField(t *testing.T) {
	for _, c := range []struct {
		v      any
		fields int
	}{{event.Record{}, 16}, {event.IDRef{}, 4}} {
		if n := reflect.TypeOf(c.v).NumField(); n != c.fields {
			t.Errorf("%T has %d fields, the record codec encodes %d: update record.go (a new format version) and this count", c.v, n, c.fields)
		}
	}
	r := rand.New(rand.NewPCG(5, 6))
	for i := range 2000 {
		rec := randomRecord(t, r)
		b, err := encodeRecord(rec)
		if err != nil {
			t.Fatal(err)
		}
		if IsLegacyRecord(b) {
			t.Fatal("encodeRecord wrote the legacy form")
		}
		got, err := decodeRecord(b)
		if err != nil {
			t.Fatalf("case %d: decode: %v", i, err)
		}
		if !reflect.DeepEqual(&got, rec) {
			t.Fatalf("case %d: round trip\n got %#v\nwant %#v", i, got, *rec)
		}
		if b2, _ := encodeRecord(&got); !bytes.Equal(b, b2) {
			t.Fatalf("case %d: re-encoding differs", i)
		}
	}
}

// TestRecordCodecDeterministic: equal records give equal bytes whatever
// their maps' insertion order and nil or empty containers.
func TestRecordCodecDeterministic(t *testing.T) {
	a := track(1, 42, "A", map[string]any{"z": "1", "a": map[string]any{"y": 1.5, "b": "x"}})
	a.Traits = map[string][]byte{"z": []byte("1"), "a": []byte("2"), "m": []byte("3")}
	a.Consent = map[string]bool{"sms": true, "email": false}
	b := *a
	b.Traits = map[string][]byte{"m": []byte("3"), "a": []byte("2"), "z": []byte("1")}
	b.Consent = map[string]bool{"email": false, "sms": true}
	ea, eb := mustRecord(t, a), mustRecord(t, &b)
	if !bytes.Equal(ea, eb) {
		t.Fatal("equal records, different bytes")
	}
	empty := event.Record{IDs: []event.IDRef{}, Traits: map[string][]byte{}, Properties: map[string]any{}, Consent: map[string]bool{}, Key: []byte{}}
	if !bytes.Equal(mustRecord(t, &empty), mustRecord(t, &event.Record{})) {
		t.Fatal("empty and nil containers encode differently")
	}
	b.Traits = map[string][]byte{"m": []byte("3"), "a": []byte("2"), "z": []byte("0")}
	if bytes.Equal(ea, mustRecord(t, &b)) {
		t.Fatal("different records, equal bytes")
	}
}

func mustRecord(t testing.TB, r *event.Record) []byte {
	t.Helper()
	b, err := encodeRecord(r)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestLegacyRecordDecodesEqual: a record stored in msgpack by earlier
// versions decodes to the same value as its current form, and
// CanonicalRecord turns it into the current form's bytes.
func TestLegacyRecordDecodesEqual(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 8))
	for i := range 1000 {
		rec := randomRecord(t, r)
		cur := mustRecord(t, rec)
		old, err := legacyEncodeRecord(rec)
		if err != nil {
			t.Fatal(err)
		}
		if !IsLegacyRecord(old) {
			t.Fatal("msgpack record taken for the current form")
		}
		fromOld, err := decodeRecord(old)
		if err != nil {
			t.Fatalf("case %d: legacy decode: %v", i, err)
		}
		fromCur, _ := decodeRecord(cur)
		if !reflect.DeepEqual(fromOld, fromCur) {
			t.Fatalf("case %d: legacy decodes to\n%#v\ncurrent to\n%#v", i, fromOld, fromCur)
		}
		if got := CanonicalRecord(old); !bytes.Equal(got, cur) {
			t.Fatalf("case %d: CanonicalRecord(legacy) is not the current encoding", i)
		}
		if got := CanonicalRecord(cur); !bytes.Equal(got, cur) {
			t.Fatalf("case %d: CanonicalRecord changed a current record", i)
		}
		back, err := LegacyRecord(cur)
		if err != nil || !bytes.Equal(back, old) {
			t.Fatalf("case %d: LegacyRecord = %x, %v; want the legacy bytes", i, back, err)
		}
	}
	// A record written by the version before record.go (commit ec1d6d4).
	old := mustHex(t, legacyRecordHex)
	rec, err := decodeRecord(old)
	if err != nil {
		t.Fatal(err)
	}
	want := legacyRecordWant()
	if !reflect.DeepEqual(&rec, want) {
		t.Fatalf("pinned legacy record decodes to\n%#v\nwant\n%#v", rec, *want)
	}
	if !bytes.Equal(CanonicalRecord(old), mustRecord(t, want)) {
		t.Fatal("pinned legacy record: CanonicalRecord is not the current encoding")
	}
	if bad := []byte{0x81, 0xa2, 'i', 'd'}; !bytes.Equal(CanonicalRecord(bad), bad) {
		t.Fatal("CanonicalRecord changed an undecodable value")
	}
}

func legacyRecordWant() *event.Record {
	rec := track(1, 42, "Order Completed", map[string]any{"revenue": int8(3), "items": []any{"a", 1.5, nil}, "big": uint64(1) << 40})
	rec.IDs = []event.IDRef{ref("email", 1, []byte("s")), {Type: "anonymous_id", Hash: pid(9), Weak: true}}
	rec.Traits = map[string][]byte{"z": []byte("1"), "a": []byte("2")}
	rec.Private = []byte("pv")
	rec.Channel, rec.DeviceType = "web", "mobile"
	rec.Consent = map[string]bool{"sms": true, "email": false}
	return rec
}

// legacyRecordHex is legacyEncodeRecord(legacyRecordWant()) as the code of
// commit ec1d6d4 wrote it.
const legacyRecordHex = "8fa26964c41002000000000000000000000000000001a36d6964a16da3737263a3776562a16ba5747261636ba165af4f7264657220436f6d706c65746564a1742aa272742aa26368a3776562a26474a66d6f62696c65a36b6579c4105a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5aa36964739283a174a5656d61696ca168c41001010101010101010101010101010101a173c4017383a174ac616e6f6e796d6f75735f6964a168c41001000000000000000000000000000009a177c3a2747282a161c40132a17ac40131a17083a3626967cf0000010000000000a56974656d7393a161cb3ff8000000000000c0a7726576656e756503a27076c4027076a2637382a5656d61696cc2a3736d73c3"

// TestDecodeRecordCorrupt: malformed current-form records are refused with
// ErrCorrupt, never a panic.
func TestDecodeRecordCorrupt(t *testing.T) {
	good := mustRecord(t, legacyRecordWant())
	// properties: an empty map written as a non-empty value (not canonical).
	emptyProps := mustRecord(t, &event.Record{})
	var withEmptyMap []byte
	{
		// Rebuild field by field: everything empty, properties = 0x80.
		withEmptyMap = append(withEmptyMap, recordV1)
		for range 6 { // ID, MessageID, Source, Kind, Event, Name
			withEmptyMap = append(withEmptyMap, 0)
		}
		withEmptyMap = binary.AppendVarint(withEmptyMap, 0)
		withEmptyMap = binary.AppendVarint(withEmptyMap, 0)
		withEmptyMap = append(withEmptyMap, 0, 0, 0) // Channel, DeviceType, Key
		withEmptyMap = append(withEmptyMap, 0, 0)    // IDs, Traits
		withEmptyMap = append(withEmptyMap, 1, 0x80) // Properties: {}
		withEmptyMap = append(withEmptyMap, 0, 0)    // Private, Consent
	}
	canonEmpty := append(append([]byte(nil), withEmptyMap[:len(withEmptyMap)-4]...), 0, 0, 0)
	if !bytes.Equal(canonEmpty, emptyProps) {
		t.Fatalf("test layout out of date: %x vs %x", canonEmpty, emptyProps)
	}
	unordered := mustRecord(t, &event.Record{Consent: map[string]bool{"a": true}})
	unordered = append(unordered[:len(unordered)-4], 2, 1, 'b', 1, 1, 'a', 1) // consent b, a
	for name, in := range map[string][]byte{
		"truncated":         good[:len(good)-1],
		"trailing":          append(bytes.Clone(good), 0),
		"empty props map":   withEmptyMap,
		"unordered consent": unordered,
		"huge count":        append([]byte{recordV1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}, 0xff, 0xff, 0xff, 0xff, 0x0f),
		"props not a map":   append(canonEmpty[:len(canonEmpty)-3:len(canonEmpty)-3], 1, 0x01, 0, 0),
	} {
		if _, err := decodeRecord(in); !errors.Is(err, ErrCorrupt) {
			t.Errorf("%s: err = %v, want ErrCorrupt", name, err)
		}
	}
	if _, err := decodeRecord(canonEmpty); err != nil {
		t.Fatalf("control: %v", err)
	}
}

// FuzzDecodeRecord checks that decoding a stored event record (current or
// legacy form) never panics, that what decodes from the current form holds
// memory bounded by the input's length, and that it re-encodes to a fixed
// point.
func FuzzDecodeRecord(f *testing.F) {
	f.Add(mustRecord(f, legacyRecordWant()))
	f.Add(mustRecord(f, &event.Record{}))
	if old, err := legacyEncodeRecord(legacyRecordWant()); err == nil {
		f.Add(old)
	}
	f.Add([]byte{0x80})
	f.Add([]byte{recordV1, 0x10})
	f.Fuzz(func(t *testing.T, in []byte) {
		rec, err := decodeRecord(in)
		if err != nil {
			return
		}
		if !IsLegacyRecord(in) {
			if got, limit := decodedRecordSize(&rec), 256+64*len(in); got > limit {
				t.Fatalf("%d input bytes decoded into %d bytes of record (limit %d)", len(in), got, limit)
			}
		}
		b1, err := encodeRecord(&rec)
		if err != nil {
			return // a legacy record may hold msgpack types JSON never yields
		}
		rec2, err := decodeRecord(b1)
		if err != nil {
			t.Fatalf("re-decode: %v", err)
		}
		if b2 := mustRecord(t, &rec2); !bytes.Equal(b1, b2) {
			t.Fatal("encoding is not a fixed point")
		}
	})
}

// decodedRecordSize estimates the memory a decoded record holds, in bytes
// (properties counted by their msgpack length times 8).
func decodedRecordSize(r *event.Record) int {
	const entry = 48
	n := int(reflect.TypeOf(*r).Size()) + len(r.ID) + len(r.MessageID) + len(r.Source) + len(r.Kind) +
		len(r.Event) + len(r.Name) + len(r.Channel) + len(r.DeviceType) + len(r.Key) + len(r.Private)
	for _, id := range r.IDs {
		n += int(reflect.TypeOf(id).Size()) + len(id.Type) + len(id.Hash) + len(id.Sealed)
	}
	for k, v := range r.Traits {
		n += entry + len(k) + len(v)
	}
	for k := range r.Consent {
		n += entry + len(k)
	}
	if len(r.Properties) > 0 {
		b, _ := event.AppendMsgpack(nil, r.Properties)
		n += 8 * len(b)
	}
	return n
}
