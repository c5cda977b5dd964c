package gcr

import (
	"encoding/binary"
	"fmt"
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

// BenchmarkTxnFeatures is the GCR's share of the feature upkeep (issue
// #12) on the events of bench.BenchmarkApplyFeatures, with and without
// the feature row (Options.NoFeatures): 1,000 profiles, every event a
// track event with a category and a product_id (views, adds, orders of
// two products, refunds), one Txn per 6 events (a partition's share of an
// entry of 100 events over 16 partitions), on the in-memory store, keys
// of 16 hex digits from a cache as engine.InteractionKey keeps them. The
// store's copies, the batch and Pebble are not in it: the fold, the
// encode and the row cache are.
func BenchmarkTxnFeatures(b *testing.B) {
	const people, products, t0, step = 1_000, 500, 1_780_000_000_000, 259_200 // 60 days over 20,000 events
	names := []string{"Product Viewed", "Product Viewed", "Product Viewed", "Product Added", "Order Completed", "Order Refunded"}
	for _, bc := range []struct {
		name       string
		noFeatures bool
	}{{"with", false}, {"without", true}} {
		b.Run(bc.name, func(b *testing.B) {
			cached := map[string]map[string]string{"category": {}, "product": {}}
			key := func(kind, value string) string {
				k, ok := cached[kind][value]
				if !ok {
					k = hexKey(kind, value)
					cached[kind][value] = k
				}
				return k
			}
			p, mem := New(&Options{Partitions: 1, NoFeatures: bc.noFeatures, InteractionKey: key}), store.NewMem()
			ids := make([][]byte, people)
			for i := range ids {
				ids[i] = make([]byte, 16)
				binary.BigEndian.PutUint64(ids[i][8:], uint64(i))
			}
			var scratch Scratch // as a partition lends its Txns
			tx := p.BeginScratch(mem, &scratch)
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				prod := (i * 31) % products
				props := map[string]any{"product_id": fmt.Sprint("sku-", prod), "category": fmt.Sprint("cat-", prod%40)}
				name := names[i%len(names)]
				if name == "Order Completed" {
					props = map[string]any{"revenue": 120.0, "products": []any{
						map[string]any{"product_id": fmt.Sprint("sku-", prod), "category": fmt.Sprint("cat-", prod%40)},
						map[string]any{"product_id": fmt.Sprint("sku-", (prod+7)%products), "category": fmt.Sprint("cat-", (prod+7)%40)},
					}}
				}
				rec := &event.Record{ID: make([]byte, 16), Kind: event.Track, Event: name, Source: "web", Channel: "web",
					Key: testKey, Time: int64(t0 + i*step), Properties: props}
				binary.BigEndian.PutUint64(rec.ID[8:], uint64(i))
				if err := tx.Add(ids[(i*7919)%people], rec, nil); err != nil {
					b.Fatal(err)
				}
				if i++; i%6 == 0 {
					if err := tx.Flush(); err != nil {
						b.Fatal(err)
					}
					tx = p.BeginScratch(mem, &scratch)
				}
			}
		})
	}
}
