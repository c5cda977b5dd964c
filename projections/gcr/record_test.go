package gcr

import (
	"bytes"
	"errors"
	"math/rand/v2"
	"reflect"
	"testing"

	"github.com/aurumcdp/aurum/event"
)

// randomRecord fills every field of an event.Record (fill) but the
// plaintext Properties, which are never encoded.
func randomRecord(t *testing.T, r *rand.Rand) *event.Record {
	var rec event.Record
	v := reflect.ValueOf(&rec).Elem()
	for i := range v.NumField() {
		if v.Type().Field(i).Name == "Properties" {
			continue
		}
		fill(t, r, v.Field(i))
	}
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
	}{{event.Record{}, 17}, {event.IDRef{}, 4}} {
		if n := reflect.TypeOf(c.v).NumField(); n != c.fields {
			t.Errorf("%T has %d fields, the record codec encodes %d: update record.go (a new format version) and this count", c.v, n, c.fields)
		}
	}
	r := rand.New(rand.NewPCG(5, 6))
	for i := range 2000 {
		rec := randomRecord(t, r)
		b := encodeRecord(rec)
		got, err := decodeRecord(b)
		if err != nil {
			t.Fatalf("case %d: decode: %v", i, err)
		}
		if !reflect.DeepEqual(&got, rec) {
			t.Fatalf("case %d: round trip\n got %#v\nwant %#v", i, got, *rec)
		}
		if b2 := encodeRecord(&got); !bytes.Equal(b, b2) {
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
	empty := event.Record{IDs: []event.IDRef{}, Traits: map[string][]byte{}, SealedProperties: []byte{}, Consent: map[string]bool{}, Key: []byte{}}
	if !bytes.Equal(mustRecord(t, &empty), mustRecord(t, &event.Record{})) {
		t.Fatal("empty and nil containers encode differently")
	}
	b.Traits = map[string][]byte{"m": []byte("3"), "a": []byte("2"), "z": []byte("0")}
	if bytes.Equal(ea, mustRecord(t, &b)) {
		t.Fatal("different records, equal bytes")
	}
	// The plaintext properties are never stored: only the sealed ones.
	c := *a
	c.Properties = map[string]any{"other": "plaintext"}
	if !bytes.Equal(ea, mustRecord(t, &c)) {
		t.Fatal("the plaintext properties changed the stored form")
	}
	if bytes.Contains(ea, []byte{0xa1, 'b', 0xa1, 'x'}) {
		t.Fatal("plaintext properties in the stored form")
	}
}

func mustRecord(t testing.TB, r *event.Record) []byte {
	t.Helper()
	return encodeRecord(r)
}

func sampleRecord() *event.Record {
	rec := track(1, 42, "Order Completed", map[string]any{"revenue": int8(3), "items": []any{"a", 1.5, nil}, "big": uint64(1) << 40})
	rec.IDs = []event.IDRef{ref("email", 1, []byte("s")), {Type: "anonymous_id", Hash: pid(9), Weak: true}}
	rec.Traits = map[string][]byte{"z": []byte("1"), "a": []byte("2")}
	rec.Private = []byte("pv")
	rec.Channel, rec.DeviceType = "web", "mobile"
	rec.Consent = map[string]bool{"sms": true, "email": false}
	return rec
}

// TestDecodeRecordCorrupt: malformed current-form records are refused with
// ErrCorrupt, never a panic.
func TestDecodeRecordCorrupt(t *testing.T) {
	good := mustRecord(t, sampleRecord())
	empty := mustRecord(t, &event.Record{})
	unordered := mustRecord(t, &event.Record{Consent: map[string]bool{"a": true}})
	unordered = append(unordered[:len(unordered)-4], 2, 1, 'b', 1, 1, 'a', 1) // consent b, a
	for name, in := range map[string][]byte{
		"truncated":         good[:len(good)-1],
		"trailing":          append(bytes.Clone(good), 0),
		"version 1":         append([]byte{recordMark, 0x01}, empty[2:]...),
		"no version":        empty[:1],
		"msgpack":           {0x81, 0xa2, 'i', 'd'},
		"unordered consent": unordered,
		"huge count":        append([]byte{recordMark, recordVersion2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}, 0xff, 0xff, 0xff, 0xff, 0x0f),
	} {
		if _, err := decodeRecord(in); !errors.Is(err, ErrCorrupt) {
			t.Errorf("%s: err = %v, want ErrCorrupt", name, err)
		}
	}
	if _, err := decodeRecord(empty); err != nil {
		t.Fatalf("control: %v", err)
	}
}

// FuzzDecodeRecord checks that decoding a stored event record never
// panics, that what decodes holds
// memory bounded by the input's length, and that it re-encodes to a fixed
// point.
func FuzzDecodeRecord(f *testing.F) {
	f.Add(mustRecord(f, sampleRecord()))
	f.Add(mustRecord(f, &event.Record{}))
	f.Add([]byte{0x80})
	f.Add([]byte{recordMark, recordVersion2, 0x10})
	f.Fuzz(func(t *testing.T, in []byte) {
		rec, err := decodeRecord(in)
		if err != nil {
			return
		}
		if got, limit := decodedRecordSize(&rec), 256+64*len(in); got > limit {
			t.Fatalf("%d input bytes decoded into %d bytes of record (limit %d)", len(in), got, limit)
		}
		b1 := encodeRecord(&rec)
		rec2, err := decodeRecord(b1)
		if err != nil {
			t.Fatalf("re-decode: %v", err)
		}
		if b2 := mustRecord(t, &rec2); !bytes.Equal(b1, b2) {
			t.Fatal("encoding is not a fixed point")
		}
	})
}

// decodedRecordSize estimates the memory a decoded record holds, in bytes.
func decodedRecordSize(r *event.Record) int {
	const entry = 48
	n := int(reflect.TypeOf(*r).Size()) + len(r.ID) + len(r.MessageID) + len(r.Source) + len(r.Kind) +
		len(r.Event) + len(r.Name) + len(r.Channel) + len(r.DeviceType) + len(r.Key) + len(r.Private) + len(r.SealedProperties)
	for _, id := range r.IDs {
		n += int(reflect.TypeOf(id).Size()) + len(id.Type) + len(id.Hash) + len(id.Sealed)
	}
	for k, v := range r.Traits {
		n += entry + len(k) + len(v)
	}
	for k := range r.Consent {
		n += entry + len(k)
	}
	return n
}
