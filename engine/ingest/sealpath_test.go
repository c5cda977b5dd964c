package ingest

import (
	"bytes"
	"context"
	"fmt"
	"reflect"
	"testing"
	"time"

	"github.com/aurumcdp/aurum/engine/base"
	"github.com/aurumcdp/aurum/event"
	"github.com/aurumcdp/aurum/internal/testkeys"
	"github.com/aurumcdp/aurum/projections/identity"
	"github.com/aurumcdp/aurum/seal"
)

// sealEdge is an Edge with a keyring and no log: enough to seal.
type sealEdge struct {
	*Edge
	keys *seal.Keyring
}

func newSealEdge(t testing.TB) sealEdge {
	t.Helper()
	keys := testkeys.Keyring(t)
	cfg := identity.DefaultConfig()
	e := New(context.Background(), Options{Identity: &cfg, MaxBatchBytes: 1 << 20, Now: time.Now}, nil, keys, base.NewIDSource(), nil)
	return sealEdge{Edge: e, keys: keys}
}

// sealEvents returns n Segment events of every kind, with traits,
// properties of every JSON shape, context and sentAt; two rounds share
// people (the same anchor keys).
func sealEvents(t testing.TB, round, n int) []event.Event {
	t.Helper()
	now := time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC)
	evs := make([]event.Event, 0, n)
	for i := range n {
		p := i % 7
		var js string
		switch i % 4 {
		case 0:
			js = fmt.Sprintf(`{"type":"track","event":"Order Completed","userId":"u-%d","messageId":"m-%d-%d",
				"properties":{"revenue":%d.5,"neg":-%d,"big":12345678901,"none":null,"items":[{"sku":"S-%d"},[]]},
				"sentAt":"2026-11-01T11:59:00Z"}`, p, round, i, i, i, i)
		case 1:
			js = fmt.Sprintf(`{"type":"identify","userId":"u-%d","messageId":"m-%d-%d","traits":{"email":"P%d@Example.com",
				"name":"Person %d","consent":{"email":true}},"context":{"ip":"10.0.0.%d"}}`, p, round, i, p, p, i%250)
		case 2:
			js = fmt.Sprintf(`{"type":"page","name":"Home","anonymousId":"a-%d-%d","messageId":"m-%d-%d"}`, round, i, round, i)
		case 3:
			js = fmt.Sprintf(`{"type":"alias","userId":"u-%d","previousId":"a-%d-%d","messageId":"m-%d-%d"}`, p, round, i-1, round, i)
		}
		ev, err := event.Parse([]byte(js), "", event.ParseOptions{Now: now})
		if err != nil {
			t.Fatalf("event %d: %v\n%s", i, err, js)
		}
		evs = append(evs, ev)
	}
	return evs
}

// TestSealerPathMatchesPerValue seals the same events with seal.Sealer (the
// default) and with Keyring.Hash/Seal per value (the reference) and requires
// the same records: equal hashes, keys and fields, sealed values of equal
// length that open to equal plaintexts, and the same events dropped for a
// destroyed anchor key. Only record ids and nonces (random) may differ.
func TestSealerPathMatchesPerValue(t *testing.T) {
	e := newSealEdge(t)
	evs := append(sealEvents(t, 0, 60), sealEvents(t, 1, 60)...)
	received := time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC)

	run := func(perValue bool) []event.Record {
		t.Helper()
		e.sealPerValue = perValue
		defer func() { e.sealPerValue = false }()
		recs, size, err := e.seal("web", evs, received)
		if err != nil {
			t.Fatalf("seal (per value %v): %v", perValue, err)
		}
		data := event.AppendBatchHeader(nil, make([]byte, 16), received.UnixMilli(), len(recs))
		n := 0
		for _, r := range recs {
			data = append(data, r...)
			n += len(r)
		}
		if n != size {
			t.Fatalf("seal (per value %v): size %d, records hold %d bytes", perValue, size, n)
		}
		b, err := event.DecodeBatch(data)
		if err != nil {
			t.Fatalf("decode (per value %v): %v", perValue, err)
		}
		return b.Records
	}
	// open replaces every sealed value of r by its plaintext, and the record
	// id by nil.
	open := func(r event.Record, what string) event.Record {
		t.Helper()
		dec := func(s []byte) []byte {
			pt, err := e.keys.Open(r.Key, s)
			if err != nil {
				t.Fatalf("%s: open: %v", what, err)
			}
			return pt
		}
		r.ID = nil
		r.IDs = append([]event.IDRef(nil), r.IDs...)
		for i := range r.IDs {
			r.IDs[i].Sealed = dec(r.IDs[i].Sealed)
		}
		tr := make(map[string][]byte, len(r.Traits))
		for k, v := range r.Traits {
			tr[k] = dec(v)
		}
		r.Traits, r.Private = tr, dec(r.Private)
		if r.SealedProperties != nil {
			r.SealedProperties = dec(r.SealedProperties)
		}
		return r
	}
	compare := func(phase string) int {
		t.Helper()
		ref, fast := run(true), run(false)
		if len(ref) != len(fast) {
			t.Fatalf("%s: %d records per value, %d with the sealer", phase, len(ref), len(fast))
		}
		for i := range ref {
			if !bytes.Equal(ref[i].Private, fast[i].Private) && len(ref[i].Private) != len(fast[i].Private) {
				t.Fatalf("%s: record %d: sealed Private of %d and %d bytes", phase, i, len(ref[i].Private), len(fast[i].Private))
			}
			if bytes.Equal(ref[i].Private, fast[i].Private) {
				t.Fatalf("%s: record %d: equal sealed Private: nonce reused", phase, i)
			}
			a, b := open(ref[i], phase), open(fast[i], phase)
			if !reflect.DeepEqual(a, b) {
				t.Fatalf("%s: record %d differs:\nper value %+v\nsealer    %+v", phase, i, a, b)
			}
		}
		return len(ref)
	}

	all := compare("all keys")
	if all != len(evs) {
		t.Fatalf("%d records of %d events", all, len(evs))
	}
	// Destroy the anchor key of the first event: both paths drop its events.
	first := run(false)[0]
	if err := e.keys.Destroy(first.Key); err != nil {
		t.Fatal(err)
	}
	if left := compare("destroyed key"); left >= all || left == 0 {
		t.Fatalf("after destroying one anchor key %d of %d records remain; want fewer, not none", left, all)
	}
}

// BenchmarkSeal measures Edge.seal on batches of 100 events (all keys
// cached), per value (the reference) against seal.Sealer, in one binary.
func BenchmarkSeal(b *testing.B) {
	for _, perValue := range []bool{true, false} {
		name := "sealer"
		if perValue {
			name = "perValue"
		}
		b.Run(name, func(b *testing.B) {
			e := newSealEdge(b)
			e.sealPerValue = perValue
			evs := append(sealEvents(b, 0, 60), sealEvents(b, 1, 60)...)[:100]
			received := time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC)
			if _, _, err := e.seal("web", evs, received); err != nil { // creates the keys
				b.Fatal(err)
			}
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				if _, _, err := e.seal("web", evs, received); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(evs)), "ns/event")
		})
	}
}
