package recommend

import (
	"fmt"
	"math"
	"math/rand/v2"
	"reflect"
	"strings"
	"testing"
	"time"
)

const hour = int64(3_600_000)

func TestAffinities(t *testing.T) {
	day := 24 * hour
	h := []Interaction{
		{Item: "p1", Category: "shoes", Kind: View, Time: 0},
		{Item: "p1", Category: "shoes", Kind: Buy, Time: 30 * day},
		{Item: "p2", Category: "bags", Kind: Cart, Time: 30 * day},
		{Item: "p3", Kind: View, Time: 30 * day},                  // no category
		{Item: "p4", Category: "kids", Kind: Buy, Time: 31 * day}, // after asOf
	}
	a := Affinities(h, 30*day, AffinityOptions{})
	// Weights: p1 view 1 · 2^-1 (30 days old, half-life 30 d) + buy 5;
	// p2 cart 3; p3 view 1. Total 9.5.
	total := 0.5 + 5 + 3 + 1
	want := Affinity{
		Categories: []Scored{{"shoes", 5.5 / total}, {"bags", 3 / total}},
		Items:      []Scored{{"p1", 5.5 / total}, {"p2", 3 / total}, {"p3", 1 / total}},
	}
	if !near(a, want) {
		t.Fatalf("Affinities = %+v, want %+v", a, want)
	}
	// Any order of the history gives the same bits.
	rev := append([]Interaction(nil), h...)
	for i, j := 0, len(rev)-1; i < j; i, j = i+1, j-1 {
		rev[i], rev[j] = rev[j], rev[i]
	}
	if b := Affinities(rev, 30*day, AffinityOptions{}); !reflect.DeepEqual(a, b) {
		t.Fatalf("reversed history: %+v, want %+v", b, a)
	}
	if a := Affinities(h, 30*day, AffinityOptions{Top: 1}); len(a.Items) != 1 || a.Items[0].Key != "p1" {
		t.Fatalf("Top 1: %+v", a)
	}
}

func near(a, b Affinity) bool {
	eq := func(x, y []Scored) bool {
		if len(x) != len(y) {
			return false
		}
		for i := range x {
			if x[i].Key != y[i].Key || math.Abs(x[i].Score-y[i].Score) > 1e-12 {
				return false
			}
		}
		return true
	}
	return eq(a.Categories, b.Categories) && eq(a.Items, b.Items)
}

func TestCoOccurrenceRelations(t *testing.T) {
	u1 := []Interaction{
		{Item: "a", Kind: View, Time: 0},
		{Item: "b", Kind: Buy, Time: 1 * hour},
		{Item: "c", Kind: Buy, Time: 1 * hour},
		{Item: "d", Kind: View, Time: 30 * hour}, // outside the 24 h window of the rest
	}
	u2 := []Interaction{
		{Item: "b", Kind: Buy, Time: 0},
		{Item: "c", Kind: Buy, Time: 0},
		{Item: "c", Kind: Buy, Time: hour}, // twice in one user: counted once
		{Item: "a", Kind: View, Time: 2 * hour},
	}
	for _, tc := range []struct {
		name string
		opt  CoOptions
		item string
		want []Scored
	}{
		{"bought together", CoOptions{From: []Kind{Buy}, To: []Kind{Buy}, Damp: -1}, "b", []Scored{{"c", 12}}},
		{"viewed then bought", CoOptions{From: []Kind{View}, To: []Kind{Buy}, Ordered: true, Damp: -1}, "a", []Scored{{"b", 6}, {"c", 6}}},
		// In u2 the view of a comes after the purchases: only unordered counts it.
		{"viewed with bought", CoOptions{From: []Kind{View}, To: []Kind{Buy}, Damp: -1}, "a", []Scored{{"b", 12}, {"c", 12}}},
		{"any, a", CoOptions{Damp: -1}, "a", []Scored{{"b", 12}, {"c", 12}}},
		{"any, d alone", CoOptions{Damp: -1}, "d", nil},
		// Normalized (the default, cosine): b and c each have 2 users with
		// a To interaction, so 12 / √2.
		{"any, a, cosine", CoOptions{}, "a", []Scored{{"b", 12 / math.Sqrt2}, {"c", 12 / math.Sqrt2}}},
		{"bought then viewed", CoOptions{From: []Kind{Buy}, To: []Kind{View}, Ordered: true, Damp: -1}, "b", []Scored{{"a", 1}}}, // u2 only
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := NewCoOccurrence(tc.opt)
			if err != nil {
				t.Fatal(err)
			}
			c.AddUser(u1)
			c.AddUser(u2)
			if got := c.Neighbours(tc.item); !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("Neighbours(%q) = %v, want %v", tc.item, got, tc.want)
			}
		})
	}
}

// TestCoOccurrenceNormalized: a neighbour everybody views ranks first by
// raw counts and below a specific one once normalized by its users.
func TestCoOccurrenceNormalized(t *testing.T) {
	var users [][]Interaction
	for u := range 3 {
		users = append(users, []Interaction{{Item: "x", Kind: View, Time: 0}, {Item: "pop", Kind: View, Time: int64(u + 1)}})
	}
	for u := range 2 {
		users = append(users, []Interaction{{Item: "x", Kind: View, Time: 0}, {Item: "niche", Kind: View, Time: int64(u + 1)}})
	}
	for range 50 {
		users = append(users, []Interaction{{Item: "pop", Kind: View, Time: 0}})
	}
	for _, tc := range []struct {
		damp  float64
		first string
		want  float64
	}{
		{-1, "pop", 3},
		{0.5, "niche", 2 / math.Sqrt(2)},
		{1, "niche", 1},
	} {
		c, err := NewCoOccurrence(CoOptions{Damp: tc.damp})
		if err != nil {
			t.Fatal(err)
		}
		for _, u := range users {
			c.AddUser(u)
		}
		nb := c.Neighbours("x")
		if len(nb) != 2 || nb[0].Key != tc.first || math.Abs(nb[0].Score-tc.want) > 1e-12 {
			t.Errorf("damp %v: Neighbours(x) = %v, want %s first with %v", tc.damp, nb, tc.first, tc.want)
		}
	}
	if _, err := NewCoOccurrence(CoOptions{Damp: 2}); err == nil {
		t.Error("damp 2 accepted")
	}
}

// TestCoOccurrenceBounded feeds one item many distinct neighbours, a few of
// them frequent: the counters stay at Capacity and the frequent ones stay
// on top (Space-Saving's guarantee).
func TestCoOccurrenceBounded(t *testing.T) {
	c, err := NewCoOccurrence(CoOptions{K: 3, Capacity: 10})
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(1, 1))
	for u := range 2000 {
		nb := fmt.Sprintf("rare%04d", u)
		if r := rng.IntN(10); r < 3 {
			nb = fmt.Sprintf("hot%d", r)
		}
		c.AddUser([]Interaction{{Item: "x", Kind: View, Time: 0}, {Item: nb, Kind: View, Time: 1}})
	}
	if n := len(c.lists["x"].keys); n != 10 {
		t.Fatalf("x has %d counters, want the capacity 10", n)
	}
	got := c.Neighbours("x")
	for i, s := range got {
		if want := fmt.Sprintf("hot%d", i); !strings.HasPrefix(s.Key, "hot") {
			t.Fatalf("top %d = %v, want the hot neighbours first (e.g. %s): %v", i, s, want, got)
		}
	}
}

func TestOptionErrors(t *testing.T) {
	for _, tc := range []struct {
		opt  CoOptions
		want string
	}{
		{CoOptions{K: 5, Capacity: 2}, "capacity 2"},
		{CoOptions{K: -1}, "K -1"},
		{CoOptions{From: []Kind{7}}, "unknown kind 7"},
		{CoOptions{Window: -time.Hour}, "window"},
	} {
		if _, err := NewCoOccurrence(tc.opt); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: error %v, want %q", tc.opt, err, tc.want)
		}
	}
	if _, err := NewModel(ModelOptions{Blend: Blend{Self: -1}}); err == nil {
		t.Error("negative blend weight accepted")
	}
	if _, err := Evaluate(nil, EvalOptions{Holdout: 1}); err == nil {
		t.Error("holdout 1 accepted")
	}
}

func TestRecommendExcludesBought(t *testing.T) {
	m, err := NewModel(ModelOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for range 5 {
		m.AddUser([]Interaction{{Item: "a", Kind: Buy, Time: 0}, {Item: "b", Kind: Buy, Time: 1}})
	}
	m.AddUser([]Interaction{{Item: "z", Kind: View, Time: 0}})
	h := []Interaction{{Item: "a", Kind: Buy, Time: 10}, {Item: "q", Kind: View, Time: 11}}
	got := m.Recommend(h, 20, 10)
	keys := []string{}
	for _, s := range got {
		keys = append(keys, s.Key)
	}
	// b: bought with a; q: viewed, not bought; z: popularity. Never a.
	if want := []string{"b", "q", "z"}; !reflect.DeepEqual(keys, want) {
		t.Fatalf("Recommend = %v (%v), want %v", keys, got, want)
	}
}

// TestEvaluatePlantedPreferences: with a planted favourite category the
// model must beat popularity at least twofold on unseen later items; with
// one category (no preference to find) it must not claim a gain.
func TestEvaluatePlantedPreferences(t *testing.T) {
	users := Planted(PlantedConfig{Users: 600, Categories: 20, PerCategory: 100, Seed: 1})
	r, err := Evaluate(users, EvalOptions{Holdout: 0.3})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("planted: %+v", r)
	if r.NewHitRate < 2*r.NewPopHitRate || r.HitRate < 2*r.PopHitRate {
		t.Errorf("hit rate %.3f (new items %.3f) vs popularity %.3f (%.3f): want >= 2x", r.HitRate, r.NewHitRate, r.PopHitRate, r.NewPopHitRate)
	}
	one, _ := Evaluate(users[:200], EvalOptions{Holdout: 0.3})
	two, _ := Evaluate(users[:200], EvalOptions{Holdout: 0.3})
	if one != two {
		t.Fatalf("two evaluations differ: %+v vs %+v", one, two)
	}
	flat := Planted(PlantedConfig{Users: 600, Categories: 1, PerCategory: 2000, Seed: 2})
	f, err := Evaluate(flat, EvalOptions{Holdout: 0.3, Model: ModelOptions{Blend: Blend{Neighbours: 1, Category: 0.3, Popularity: 0.01}}})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("no preference: %+v", f)
	if f.NewHitRate > 1.3*f.NewPopHitRate {
		t.Errorf("no planted preference, yet hit rate on new items %.3f vs popularity %.3f", f.NewHitRate, f.NewPopHitRate)
	}
}

// TestEvaluateCases: every held-out interaction is a case but repeats of
// the item just before and items bought before; "new" counts items not
// touched before; popularity excludes what the user bought.
func TestEvaluateCases(t *testing.T) {
	u := []Interaction{
		{Item: "a", Kind: View, Time: 1},
		{Item: "b", Kind: Cart, Time: 2},
		{Item: "a", Kind: Buy, Time: 3},
		{Item: "d", Kind: View, Time: 4},
		// Held out (the later half):
		{Item: "b", Kind: Cart, Time: 5}, // a case: the model's top 1 (b, carted), not popularity's (c)
		{Item: "b", Kind: View, Time: 6}, // a repeat of b: no case
		{Item: "a", Kind: View, Time: 7}, // bought before: no case
		{Item: "c", Kind: View, Time: 8}, // a new item: popularity's top 1, not the model's (still b)
	}
	users := [][]Interaction{u}
	for range 5 { // single interactions: training only, c the most popular item not bought
		users = append(users, []Interaction{{Item: "c", Kind: View, Time: 1}})
	}
	r, err := Evaluate(users, EvalOptions{K: 1})
	if err != nil {
		t.Fatal(err)
	}
	want := EvalResult{Users: 1, Cases: 2, HitRate: 0.5, PopHitRate: 0.5, NewCases: 1, NewHitRate: 0, NewPopHitRate: 1,
		AnyHitRate: 1, AnyPopHitRate: 1}
	if r != want {
		t.Fatalf("Evaluate = %+v, want %+v", r, want)
	}
}
