package projections

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
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
// views and falls as they age: by logistic regression (classifier
// logistic) or by trees (gbt: σ(−2 + 4) over 0.5 product views in the
// 7-day decayed count, σ(−2) else, and a second tree on days since last
// that never changes the side of 0.5).
func buyModel(classifier string) Model {
	names := []string{"Product Viewed", features.PurchaseEvent}
	cols := len(propensity.Columns(propensity.ExampleOptions{Names: names}))
	p := &PropensityParams{Target: features.PurchaseEvent, WindowDays: 30, Names: names, Classifier: classifier, Algorithm: classifier}
	if classifier == ClassifierGBT {
		p.Trees = &propensity.Forest{Features: cols, Base: -2, Trees: [][]propensity.Node{
			{{Feature: 0, Threshold: 0.5, Left: 1, Right: 2}, {Feature: -1}, {Feature: -1, Value: 4}},                 // decayed_7d:Product Viewed
			{{Feature: 5, Threshold: 10, Left: 1, Right: 2}, {Feature: -1, Value: 0.25}, {Feature: -1, Value: -0.25}}, // days_since_last
		}}
		p.AUC, p.AUCGBT, p.AUCLogistic = 0.8, 0.8, 0.6
	} else {
		p.Mean, p.Scale, p.W, p.Intercept = make([]float64, cols), slices.Repeat([]float64{1}, cols), make([]float64, cols), -2
		p.W[0] = 1.5 // decayed_7d:Product Viewed
	}
	return Model{Name: "buy", Kind: ModelKindPropensity, Propensity: p, FittedAsOf: ModelPosition{Seq: 1, Time: 1}}
}

// TestPropensityAndAffinityInAudiences: a propensity model record on the
// log (logistic regression, or trees decoded from their binary form)
// scores profiles from their feature rows, and audiences on
// propensity("buy") and affinity("shoes") take the people they should; a
// person leaves the propensity audience by time alone (ticks) as the views
// age; the feature row keeps no category in clear; a second apply of the
// same log gives the same digest.
func TestPropensityAndAffinityInAudiences(t *testing.T) {
	for _, c := range []string{ClassifierLogistic, ClassifierGBT} {
		t.Run(c, func(t *testing.T) { testPropensityAndAffinityInAudiences(t, c) })
	}
}

func testPropensityAndAffinityInAudiences(t *testing.T, classifier string) {
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
	add(SubjectControl, &Control{Kind: ControlModelPut, Time: t0, Model: buyModel(classifier)})
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
	// The score is the stored classifier's on the row FromFeatures gives.
	stored, err := GetModel(mem, "buy")
	if err != nil {
		t.Fatal(err)
	}
	row, err := propensity.FromFeatures(prof.Features, prof.Stats.FirstSeen, prof.Stats.LastSeen, t0+day, stored.Propensity.options())
	if err != nil {
		t.Fatal(err)
	}
	if classifier == ClassifierGBT {
		if want := 1 / (1 + math.Exp(-(-2 + 4 + 0.25))); stored.Propensity.Trees == nil || stored.Propensity.Trees.Predict(row) != p1 || math.Abs(p1-want) > 1e-12 {
			t.Fatalf("trees score %v, want %v", p1, want)
		}
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

// TestPropensityRecordValidate: a propensity record from outside is
// validated like the other model records: one whose classifier does not
// match its parameters, whose trees do not fit its columns, or whose
// numbers are out of range is ignored by Apply (no model stored, alike
// in every replay); bytes of trees that do not decode make the entry
// corrupt (skipped by every replay; trees out of bounds have no
// encoding); a valid one is stored with its trees as they were.
func TestPropensityRecordValidate(t *testing.T) {
	edit := func(fn func(p *PropensityParams)) Model {
		m := buyModel(ClassifierGBT)
		fn(m.Propensity)
		return m
	}
	for _, tc := range []struct {
		name  string
		model Model
		want  string
	}{
		{"gbt without trees", edit(func(p *PropensityParams) { p.Trees = nil }), "without its trees"},
		{"gbt with weights", edit(func(p *PropensityParams) { p.W = []float64{1} }), "with logistic weights"},
		{"trees too narrow", edit(func(p *PropensityParams) { p.Names = append(p.Names, "Cart Viewed") }), "want 12 columns"},
		{"classifier", edit(func(p *PropensityParams) { p.Classifier = "forest" }), `classifier "forest"`},
		{"algorithm", edit(func(p *PropensityParams) { p.Algorithm = "best" }), `algorithm "best"`},
		{"auc", edit(func(p *PropensityParams) { p.AUCGBT = 1.5 }), "AUC 1.5"},
		{"tree", edit(func(p *PropensityParams) { p.Trees.Trees[0][0].Left = 0 }), "children 0"},
		{"refit algorithm", func() Model {
			m := buyModel(ClassifierGBT)
			m.Refit = &ModelRefit{EveryMs: 60_000, Algorithm: "best"}
			return m
		}(), `refit algorithm "best"`},
		{"logistic with trees", func() Model {
			m := buyModel(ClassifierLogistic)
			m.Propensity.Trees = buyModel(ClassifierGBT).Propensity.Trees
			return m
		}(), "logistic with trees"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := tc.model.Validate(); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Validate: %v, want %q", err, tc.want)
			}
			data, err := marshalEntry(&Control{Kind: ControlModelPut, Time: 1, Model: tc.model})
			if err != nil {
				// Trees out of bounds have no encoding: from outside they
				// come as bytes that do not decode (below).
				if !strings.Contains(err.Error(), tc.want) || tc.model.Propensity.Trees.Validate() == nil {
					t.Fatalf("encode: %v", err)
				}
				return
			}
			sm, mem := newSM(), store.NewMem()
			applyAll(t, sm, mem, []entry{{seq: 1, subject: SubjectControl, data: data}})
			if _, err := GetModel(mem, "buy"); !errors.Is(err, store.ErrNotFound) {
				t.Fatalf("an invalid record was stored: %v", err)
			}
		})
	}

	good := buyModel(ClassifierGBT)
	data := mustMarshal(t, &Control{Kind: ControlModelPut, Time: 1, Model: good})
	sm, mem := newSM(), store.NewMem()
	applyAll(t, sm, mem, []entry{{seq: 1, subject: SubjectControl, data: data}})
	m, err := GetModel(mem, "buy")
	if err != nil {
		t.Fatal(err)
	}
	if p := m.Propensity; p.Classifier != ClassifierGBT || p.Trees == nil || !slices.EqualFunc(p.Trees.Trees, good.Propensity.Trees.Trees, slices.Equal) || p.Trees.Base != -2 {
		t.Fatalf("stored record %+v", m.Propensity)
	}
	blob, err := good.Propensity.Trees.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	i := bytes.Index(data, blob)
	if i < 0 {
		t.Fatal("the trees' bytes are not in the record")
	}
	bad := bytes.Clone(data)
	bad[i] = 9 // the version byte
	if _, err := newSM().Apply(store.NewMem(), 1, SubjectControl, bad); !errors.Is(err, ErrCorruptEntry) {
		t.Fatalf("trees of version 9: %v, want a corrupt entry", err)
	}
}

func mustMarshal(t *testing.T, v any) []byte {
	t.Helper()
	b, err := marshalEntry(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
