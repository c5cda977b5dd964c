package projections

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"slices"
	"testing"

	"github.com/aurumcdp/aurum/event"
	"github.com/aurumcdp/aurum/predict/propensity"
	"github.com/aurumcdp/aurum/projections/audience"
	"github.com/aurumcdp/aurum/projections/features"
	"github.com/aurumcdp/aurum/rules"
	"github.com/aurumcdp/aurum/store"
	"github.com/oklog/ulid/v2"
)

// testInteractionKey stands for the engine's keyed hash.
func testInteractionKey(kind, value string) string {
	h := sha256.Sum256([]byte("test-key:" + kind + ":" + value))
	return hex.EncodeToString(h[:16])
}

// buyModel is a propensity model whose score rises with recent product
// views and falls as they age.
func buyModel() Model {
	names := []string{"Product Viewed", features.PurchaseEvent}
	cols := len(propensity.Columns(propensity.ExampleOptions{Names: names}))
	p := &PropensityParams{Target: features.PurchaseEvent, WindowDays: 30, Names: names,
		Mean: make([]float64, cols), Scale: slices.Repeat([]float64{1}, cols), W: make([]float64, cols), Intercept: -2}
	p.W[0] = 1.5 // decayed_7d:Product Viewed
	return Model{Name: "buy", Kind: ModelKindPropensity, Propensity: p, FittedAsOf: ModelPosition{Seq: 1, Time: 1}}
}

// TestPropensityAndAffinityInAudiences: a propensity model record on the
// log scores profiles from their feature rows, and audiences on
// propensity("buy") and affinity("shoes") take the people they should; a
// person leaves the propensity audience by time alone (ticks) as the views
// age; the feature row keeps no category in clear; a second apply of the
// same log gives the same digest.
func TestPropensityAndAffinityInAudiences(t *testing.T) {
	const t0 = 1_700_000_000_000
	const day = 86_400_000
	type person struct {
		name string
		cats []string
	}
	people := []person{{"shoe-fan", []string{"shoes", "shoes", "shoes", "hats"}}, {"hat-fan", []string{"hats", "hats", "shoes"}}, {"idle", nil}}
	var log []entry
	add := func(subject string, v any) {
		data, err := marshalEntry(v)
		if err != nil {
			t.Fatal(err)
		}
		log = append(log, entry{seq: uint64(len(log) + 1), subject: subject, data: data})
	}
	add(SubjectControl, &Control{Kind: ControlModelPut, Time: t0, Model: buyModel()})
	for _, a := range []struct{ name, rule string }{{"likely", `propensity("buy") > 0.5`}, {"shoe_lovers", `affinity("category", "shoes") >= 0.5`}} {
		add(SubjectControl, &Control{Kind: ControlAudiencePut, Time: t0, Audience: audience.Definition{Name: a.name, Rule: a.rule}})
	}
	hash := func(p string) []byte { return testHash(event.UserID, p) }
	batch := &event.Batch{ID: testHash("b", "1"), Received: t0 + day}
	for i, p := range people {
		evs := []string{"Page Viewed"}
		if p.cats != nil {
			evs = nil
			for range p.cats {
				evs = append(evs, "Product Viewed")
			}
		}
		for j, name := range evs {
			id := ulid.MustNew(uint64(t0+i*10+j), bytes.NewReader(testHash("e", fmt.Sprint(i, j))))
			rec := event.Record{ID: id[:], MessageID: id.String(), Source: "web", Kind: event.Track, Event: name,
				Time: int64(t0 + j*1000), Received: t0 + day, Key: hash(p.name), IDs: []event.IDRef{{Type: event.UserID, Hash: hash(p.name)}}}
			if p.cats != nil {
				rec.Properties = map[string]any{"category": p.cats[j], "product_id": fmt.Sprint("sku-", j)}
			}
			batch.Records = append(batch.Records, rec)
		}
	}
	add(SubjectEvents, batch)
	add(SubjectControl, &Control{Kind: ControlTick, Time: t0 + day})

	run := func(upto int) (*StateMachine, store.ReadWriter) {
		sm := New(Options{Partitions: 4, Open: openIdentity, InteractionKey: testInteractionKey})
		mem := store.NewMem()
		applyAll(t, sm, mem, log[:upto])
		return sm, mem
	}
	members := func(sm *StateMachine, mem store.Reader) map[string][]string {
		out := map[string][]string{}
		for _, p := range people {
			root, err := sm.Keychain().Lookup(mem, event.UserID, hash(p.name))
			if err != nil {
				t.Fatal(err)
			}
			ms, err := sm.Memberships(mem, root)
			if err != nil {
				t.Fatal(err)
			}
			for _, m := range ms {
				out[m.Audience] = append(out[m.Audience], p.name)
			}
		}
		return out
	}
	sm, mem := run(len(log))
	got := members(sm, mem)
	if !slices.Equal(got["likely"], []string{"shoe-fan", "hat-fan"}) || !slices.Equal(got["shoe_lovers"], []string{"shoe-fan"}) {
		t.Fatalf("members after the events: %v", got)
	}
	root, _ := sm.Keychain().Lookup(mem, event.UserID, hash("shoe-fan"))
	prof, err := sm.GCR().Get(mem, root)
	if err != nil {
		t.Fatal(err)
	}
	if a, ok := sm.prediction(prof, rules.AffinityKey("category", "shoes"), t0+day); !ok || a < 0.74 || a > 0.76 {
		t.Errorf("affinity for shoes %v %v, want about 3/4", a, ok)
	}
	for _, k := range append(slices.Clone(prof.Features.Categories), prof.Features.Products...) {
		if k.Key == "shoes" || k.Key == "hats" || k.Key == "sku-0" {
			t.Errorf("the feature row keeps %q in clear", k.Key)
		}
	}
	p1, ok1 := sm.prediction(prof, "buy.propensity", t0+day)
	p2, ok2 := sm.prediction(prof, "buy.propensity", t0+40*day)
	if !ok1 || !ok2 || !(p1 > 0.5) || !(p2 < p1) {
		t.Fatalf("propensity %v (%v) then %v (%v): want > 0.5, falling with time", p1, ok1, p2, ok2)
	}
	d1, _ := Digest(mem)

	// Time alone: the views age, the propensity falls under 0.5.
	add(SubjectControl, &Control{Kind: ControlTick, Time: t0 + 40*day})
	sm2, mem2 := run(len(log) - 1)
	if d, _ := Digest(mem2); !bytes.Equal(d, d1) {
		t.Error("a second apply of the same log gives another digest")
	}
	applyAll(t, sm2, mem2, log[len(log)-1:])
	got = members(sm2, mem2)
	if len(got["likely"]) != 0 || !slices.Equal(got["shoe_lovers"], []string{"shoe-fan"}) {
		t.Fatalf("members 40 days later: %v", got)
	}
}
