package gcr

import (
	"bytes"
	"testing"

	"github.com/aurumcdp/aurum/event"
)

// FuzzDecodeProfile checks that decoding never panics and that whatever
// decodes re-encodes to a fixed point.
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
	f.Add([]byte{0x80})
	f.Fuzz(func(t *testing.T, in []byte) {
		prof, err := decodeProfile(in)
		if err != nil {
			return
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
