package rules_test

import (
	"reflect"
	"testing"

	"github.com/aurumcdp/aurum/rules"
	"github.com/aurumcdp/aurum/rules/rulestest"
)

// FuzzCompile: Compile never panics; an accepted rule's canonical form
// compiles to itself with the same aggregates, and evaluation does not panic
// or fail.
func FuzzCompile(f *testing.F) {
	for _, s := range examples {
		f.Add(s)
	}
	for _, s := range []string{
		`avg("A", "v", "1d", properties.x > 1) > -2 * (3 - traits.y) / 4`,
		`within(last_seen, "30d") and first_seen < date("2000-01-01T10:00:00Z")`,
		`matches(traits.email, "^a+$") or contains(traits.s, "\u00e9\n") and not exists(traits["a b"].c)`,
		`funnel(["A", "B", "C"], "1h", "2w") and days_since(traits.t) >= 1e3`,
		`traits.x in [1, 2.5, -3e-7] or "v" in traits.tags`,
		`count("A", properties.x == 1, "1d") > 1`,
		`not not (traits.a or traits.b) and --traits.c == 0`,
		`predictions.churn_risk > 0.7 and predictions.vip["clv_365d"] >= 5e2 or exists(predictions.p_alive)`,
		`"sku-1" in predictions.next_best_products and predictions.next_best_product != "sku-2"`,
		`predictions.nbp2.next_best_product == traits.x or traits.fav in predictions["nbp2"]["next_best_products"]`,
		`exists(predictions.next_best_product) and not ("a" in predictions.next_best_products)`,
	} {
		f.Add(s)
	}
	facts := &rulestest.Facts{
		At:     86400000 * 30,
		Events: []rulestest.Event{{Name: "A", Time: 86400000, Props: map[string]any{"v": 1.5, "x": int64(1)}}, {Name: "B", Time: 86400000 * 2}},
		Traits: map[string]any{"x": float64(1), "email": "a@b", "tags": []any{"v"}, "t": "2020-01-01"},
		Predictions: map[string]rulestest.Prediction{"churn_risk": {At: 86400000 * 30, Value: 0.6, PerDay: 0.01},
			"vip.clv_365d": {At: 86400000 * 30, Value: 600, PerDay: -5}},
		Recommended: map[string][]rulestest.Recommendations{"nbp": {{From: 0, Items: []string{"sku-1", "sku-3"}},
			{From: 86400000 * 31, Items: []string{"sku-2"}}}, "nbp2": {{From: 0, Items: []string{"a"}}}},
	}
	f.Fuzz(func(t *testing.T, src string) {
		r, err := rules.Compile(src)
		if err != nil {
			if _, ok := err.(*rules.Error); !ok {
				t.Fatalf("error of type %T: %v", err, err)
			}
			return
		}
		c := r.String()
		r2, err := rules.Compile(c)
		if err != nil {
			t.Fatalf("canonical form %q of %q does not compile: %v", c, src, err)
		}
		if r2.String() != c {
			t.Fatalf("canonical form %q compiles to %q", c, r2.String())
		}
		if !reflect.DeepEqual(keys(r.Aggregates()), keys(r2.Aggregates())) || !reflect.DeepEqual(r.Events(), r2.Events()) ||
			!reflect.DeepEqual(r.Traits(), r2.Traits()) || r.UsesTime() != r2.UsesTime() || r.Cost() != r2.Cost() {
			t.Fatalf("%q and its canonical form %q read different facts", src, c)
		}
		a, err := r.Eval(facts)
		if err != nil {
			t.Fatalf("Eval(%q): %v", src, err)
		}
		if b, _ := r2.Eval(facts); a != b {
			t.Fatalf("%q = %v but its canonical form %q = %v", src, a, c, b)
		}
		if n := r.NextChange(facts); n != 0 && n <= facts.At {
			t.Fatalf("NextChange(%q) = %d, not after now", src, n)
		}
	})
}

func keys(aggs []rules.Agg) []string {
	var out []string
	for _, a := range aggs {
		out = append(out, a.Key())
	}
	return out
}

// BenchmarkEval evaluates each product example against the reference Facts
// (whose brute-force aggregates over 200 events dominate the time).
func BenchmarkEval(b *testing.B) {
	const d = 86400000
	facts := &rulestest.Facts{At: 400 * d, Traits: map[string]any{"loyalty_tier": "gold", "country": "DK"},
		Audiences: map[string]bool{"high-spenders": true}}
	names := []string{"Order Completed", "Order Refunded", "Product Viewed", "Product Added"}
	for i := range 200 {
		facts.Events = append(facts.Events, rulestest.Event{Name: names[i%4], Time: int64(i) * 2 * d,
			Props: map[string]any{"revenue": float64(i), "reason": "damaged"}})
	}
	for i, src := range examples {
		r := mustCompile(b, src)
		b.Run(string(rune('1'+i)), func(b *testing.B) {
			for b.Loop() {
				if _, err := r.Eval(facts); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkCompile compiles the product examples.
func BenchmarkCompile(b *testing.B) {
	for b.Loop() {
		for _, src := range examples {
			if _, err := rules.Compile(src); err != nil {
				b.Fatal(err)
			}
		}
	}
}

// fixedFacts answers from precomputed maps: BenchmarkEvalOnly measures the
// evaluator without the reference implementation's brute force.
type fixedFacts struct {
	aggs   map[string]float64
	traits map[string]any
}

func (f *fixedFacts) Now() int64 { return 1e12 }
func (f *fixedFacts) Agg(a rules.Agg) (float64, bool) {
	v, ok := f.aggs[a.Key()]
	return v, ok
}
func (f *fixedFacts) Oldest(rules.Agg) (int64, bool)           { return 0, false }
func (f *fixedFacts) FunnelStart(rules.Funnel) (int64, bool)   { return 1e12 - 1, true }
func (f *fixedFacts) Prediction(string, int64) (float64, bool) { return 0.5, true }
func (f *fixedFacts) Recommendations(string, int64) ([]string, bool) {
	return []string{"sku-1", "sku-2", "sku-3"}, true
}
func (f *fixedFacts) Trait(name string) (any, bool) {
	v, ok := f.traits[name]
	return v, ok
}
func (f *fixedFacts) Profile(string) (int64, bool) { return 0, false }
func (f *fixedFacts) InAudience(name string) bool  { return name == "high-spenders" }

func BenchmarkEvalOnly(b *testing.B) {
	facts := &fixedFacts{aggs: map[string]float64{}, traits: map[string]any{"loyalty_tier": "gold", "country": "DK"}}
	for i, src := range examples {
		r := mustCompile(b, src)
		for _, a := range r.Aggregates() {
			facts.aggs[a.Key()] = 1
		}
		b.Run(string(rune('1'+i)), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := r.Eval(facts); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
