package gcr

import (
	"encoding/binary"
	"math/rand/v2"
	"testing"

	"github.com/aurumcdp/aurum/event"
	"github.com/aurumcdp/aurum/store"
)

// BenchmarkTxnAdd adds events with an identifier and a trait to 10k profiles
// chosen at random, flushing every 1000 events, on the in-memory store.
func BenchmarkTxnAdd(b *testing.B) {
	const profiles, flushEvery = 10_000, 1000
	r := rand.New(rand.NewPCG(1, 2))
	ids := make([][]byte, profiles)
	for i := range ids {
		ids[i] = make([]byte, 16)
		binary.BigEndian.PutUint64(ids[i][8:], uint64(i))
	}
	p, mem := New(nil), store.NewMem()
	tx := p.Begin(mem)
	rec := &event.Record{
		ID: make([]byte, 16), Kind: event.Track, Event: "Order Completed", Source: "web", Channel: "web",
		Key: testKey, Properties: map[string]any{"revenue": "19.99", "sku": "A-1"},
		Traits: map[string][]byte{"name": []byte("sealed-name")},
	}
	owned := []event.IDRef{{Type: "email", Hash: make([]byte, 16), Sealed: []byte("sealed-email")}}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		prof := r.IntN(profiles)
		binary.BigEndian.PutUint64(rec.ID[8:], uint64(i))
		binary.BigEndian.PutUint64(owned[0].Hash[8:], uint64(prof))
		rec.Time = int64(1_700_000_000_000 + i)
		if err := tx.Add(ids[prof], rec, owned); err != nil {
			b.Fatal(err)
		}
		if (i+1)%flushEvery == 0 {
			if err := tx.Flush(); err != nil {
				b.Fatal(err)
			}
		}
	}
	if err := tx.Flush(); err != nil {
		b.Fatal(err)
	}
}
