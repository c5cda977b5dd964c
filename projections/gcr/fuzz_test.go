package gcr

import (
	"bytes"
	"reflect"
	"testing"

	"github.com/aurumcdp/aurum/event"
)

// FuzzDecodeProfile checks that decoding a stored GCR never panics, that
// whatever decodes holds memory bounded by the input's length, and that it re-encodes to a fixed
// point.
func FuzzDecodeProfile(f *testing.F) {
	p := &Profile{ID: pid(1), MergedFrom: [][]byte{pid(2)}}
	p.add(withTraits(identify(1, 5), "name", "x"), nil)
	p.add(track(2, 9, "Order Completed", map[string]any{"revenue": 3}), []event.IDRef{ref("email", 1, []byte("s"))})
	consent := track(3, 11, "Consent Updated", nil)
	consent.Consent = map[string]bool{"email": false, "sms": true}
	p.add(consent, nil)
	b, err := encodeProfile(p)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(b)
	f.Add(asVersion2(f, b))
	f.Add(asVersion1(f, b))
	f.Add(mustEncode(f, sampleProfile()))
	f.Add([]byte{0x80})
	f.Add([]byte{profileV1, 0x10})
	f.Fuzz(func(t *testing.T, in []byte) {
		prof, err := decodeProfile(in)
		if err != nil {
			return
		}
		if got, limit := decodedSize(prof), 256+64*len(in); got > limit {
			t.Fatalf("%d input bytes decoded into %d bytes of profile (limit %d)", len(in), got, limit)
		}
		b1, err := encodeProfile(prof)
		if err != nil {
			t.Fatal(err)
		}
		prof2, err := decodeProfile(b1)
		if err != nil {
			t.Fatalf("re-decode: %v", err)
		}
		b2, err := encodeProfile(prof2)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(b1, b2) {
			t.Fatal("encoding is not a fixed point")
		}
	})
}

// decodedSize estimates the memory a decoded profile holds, in bytes (map
// entries counted at their key, value and a bucket overhead).
func decodedSize(p *Profile) int {
	const entry = 48
	n := int(reflect.TypeOf(Profile{}).Size()) + len(p.ID)
	for _, id := range p.MergedFrom {
		n += 24 + len(id)
	}
	for _, id := range p.Identifiers {
		n += int(reflect.TypeOf(id).Size()) + len(id.Type) + len(id.Hash) + len(id.Key) + len(id.Sealed) + len(id.FirstEvent)
	}
	for k, tr := range p.Traits {
		n += entry + len(k) + int(reflect.TypeOf(tr).Size()) + len(tr.Key) + len(tr.Sealed) + len(tr.Event)
	}
	for _, m := range []map[string]int64{p.Stats.EventCounts, p.Stats.KindCounts, p.Stats.Sources, p.Stats.Channels, p.Stats.Devices, p.Audiences} {
		for k := range m {
			n += entry + len(k) + 8
		}
	}
	for k := range p.Revenue {
		n += entry + len(k) + 16
	}
	for k := range p.Predictions {
		n += entry + len(k) + 8
	}
	for k, c := range p.Consent {
		n += entry + len(k) + int(reflect.TypeOf(c).Size()) + len(c.Event) + len(c.Source)
	}
	return n
}

func TestOptions(t *testing.T) {
	if got := New(nil).parts; got != DefaultPartitions {
		t.Errorf("default partitions = %d", got)
	}
	if got := New(&Options{Partitions: 1 << 16}).parts; got != 1<<16 {
		t.Errorf("partitions = %d", got)
	}
	for _, n := range []int{-1, 1<<16 + 1} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("Partitions %d: no panic", n)
				}
			}()
			New(&Options{Partitions: n})
		}()
	}
}
