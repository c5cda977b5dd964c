package projections

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/aurumcdp/aurum/event"
	"github.com/aurumcdp/aurum/projections/features"
	"github.com/aurumcdp/aurum/store"
	"github.com/oklog/ulid/v2"
)

// TestFeaturesFollowMerges: a person's events under two cookies, linked
// later by a login on each (two keychain merges), give the same feature
// row as the same events arriving in another order after the links, in
// one profile from the start: apply A then B, B then A, and merge agree.
func TestFeaturesFollowMerges(t *testing.T) {
	const t0 = 1_700_000_000_000
	const day = 86_400_000
	anon := func(c string) event.IDRef {
		return event.IDRef{Type: event.AnonymousID, Hash: testHash(event.AnonymousID, c)}
	}
	user := event.IDRef{Type: event.UserID, Hash: testHash(event.UserID, "u1")}
	r := rand.New(rand.NewPCG(4, 4))
	var plain []event.Record // the person's events, under cookie a or b
	for i := range 40 {
		name := []string{"Product Viewed", "Product Added", "Order Completed"}[r.IntN(3)]
		props := map[string]any{"category": fmt.Sprint("c", r.IntN(4)), "product_id": fmt.Sprint("p", r.IntN(6))}
		if name == "Order Completed" {
			props["revenue"] = float64(r.IntN(10000)) / 100
		}
		plain = append(plain, event.Record{Kind: event.Track, Event: name, Time: t0 + r.Int64N(90*day),
			IDs: []event.IDRef{anon([]string{"a", "b"}[i%2])}, Properties: props})
	}
	links := []event.Record{
		{Kind: event.Identify, Time: t0 + 91*day, IDs: []event.IDRef{anon("a"), user}},
		{Kind: event.Identify, Time: t0 + 92*day, IDs: []event.IDRef{anon("b"), user}},
	}
	// run applies recs in batches of 7, each with a fresh id and message id
	// (by content: equal events get equal ids in every run).
	run := func(recs []event.Record) *features.Features {
		sm := newSM()
		mem := store.NewMem()
		seq := uint64(0)
		for lo := 0; lo < len(recs); lo += 7 {
			batch := &event.Batch{ID: testHash("b", fmt.Sprint(lo)), Received: t0 + 100*day}
			for _, rec := range recs[lo:min(lo+7, len(recs))] {
				id := ulid.MustNew(uint64(rec.Time), bytes.NewReader(testHash("e", fmt.Sprint(rec.Time, rec.IDs[0].Hash))))
				rec.ID, rec.MessageID, rec.Source, rec.Received, rec.Key = id[:], id.String(), "web", batch.Received, rec.IDs[0].Hash
				batch.Records = append(batch.Records, rec)
			}
			data, err := marshalEntry(batch)
			if err != nil {
				t.Fatal(err)
			}
			seq++
			if _, err := sm.Apply(mem, seq, SubjectEvents, data); err != nil {
				t.Fatal(err)
			}
		}
		root, err := sm.Keychain().Lookup(mem, event.UserID, user.Hash)
		if err != nil {
			t.Fatal(err)
		}
		prof, err := sm.GCR().Get(mem, root)
		if err != nil {
			t.Fatal(err)
		}
		if prof.Stats.Events != int64(len(recs)) {
			t.Fatalf("root has %d events, want %d", prof.Stats.Events, len(recs))
		}
		return prof.Features
	}
	merged := run(append(append([]event.Record{}, plain...), links...)) // cookies first, merged at the end
	shuffled := append([]event.Record{}, plain...)
	r.Shuffle(len(shuffled), func(i, j int) { shuffled[i], shuffled[j] = shuffled[j], shuffled[i] })
	linkedFirst := run(append(append([]event.Record{}, links...), shuffled...)) // one profile throughout
	reversed := append([]event.Record{}, links...)
	for i := len(plain) - 1; i >= 0; i-- {
		reversed = append(reversed, plain[i])
	}
	if !features.Equal(merged, linkedFirst, 1e-12) || !features.Equal(merged, run(reversed), 1e-12) {
		t.Fatalf("feature rows differ:\n%+v\n%+v", merged, linkedFirst)
	}
	v := merged.View(t0+100*day, t0+92*day, true, nil, nil)
	orders := 0
	for _, rec := range plain {
		if rec.Event == features.PurchaseEvent {
			orders++
		}
	}
	// No categories or products: newSM has no Options.InteractionKey (the
	// keyed hash their keys need), so their upkeep is off.
	if v.Orders != int64(orders) || v.Purchases == 0 || len(v.Events) != 3 || len(v.Categories) != 0 || len(v.Products) != 0 {
		t.Fatalf("view of the merged row: %+v", v)
	}
}
