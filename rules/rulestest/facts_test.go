package rulestest

import (
	"math/rand/v2"
	"testing"

	"github.com/aurumcdp/aurum/rules"
)

// exhaustive is FunnelStart by trying every assignment of distinct events to steps.
func exhaustive(f *Facts, fu rules.Funnel) (int64, bool) {
	best, found := int64(0), false
	used := make([]bool, len(f.Events))
	var try func(step int, t1, prev int64)
	try = func(step int, t1, prev int64) {
		if step == len(fu.Steps) {
			if !found || t1 > best {
				best, found = t1, true
			}
			return
		}
		for i, e := range f.Events {
			if used[i] || e.Name != fu.Steps[step] || e.Time > f.At {
				continue
			}
			start := t1
			if step == 0 {
				start = e.Time
			} else if e.Time < prev || e.Time-t1 >= fu.Within {
				continue
			}
			used[i] = true
			try(step+1, start, e.Time)
			used[i] = false
		}
	}
	try(0, 0, 0)
	return best, found
}

// TestFunnelStartExhaustive checks the greedy FunnelStart against an
// exhaustive search on random small profiles (ties and repeated step names
// included).
func TestFunnelStartExhaustive(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	names := []string{"A", "B", "C"}
	for iter := range 3000 {
		f := &Facts{At: int64(rng.IntN(12))}
		for range rng.IntN(7) {
			f.Events = append(f.Events, Event{Name: names[rng.IntN(3)], Time: int64(rng.IntN(10))})
		}
		fu := rules.Funnel{Within: int64(1 + rng.IntN(5)), Window: 1}
		for range 2 + rng.IntN(2) {
			fu.Steps = append(fu.Steps, names[rng.IntN(3)])
		}
		g, gok := f.FunnelStart(fu)
		w, wok := exhaustive(f, fu)
		if g != w || gok != wok {
			t.Fatalf("iteration %d: %+v %+v: greedy %d,%v exhaustive %d,%v", iter, f, fu, g, gok, w, wok)
		}
	}
}

func TestAggregates(t *testing.T) {
	f := &Facts{At: 100, Events: []Event{
		{Name: "A", Time: 10, Props: map[string]any{"v": 3.0}},
		{Name: "A", Time: 50, Props: map[string]any{"v": int64(1)}},
		{Name: "A", Time: 60, Props: map[string]any{"v": "x"}},
		{Name: "A", Time: 200, Props: map[string]any{"v": 100.0}}, // after At
		{Name: "B", Time: 70, Props: map[string]any{"v": 7.0}},
	}}
	for _, c := range []struct {
		a  rules.Agg
		v  float64
		ok bool
	}{
		{rules.Agg{Kind: rules.Count, Event: "A"}, 3, true},
		{rules.Agg{Kind: rules.Count, Event: "A", Window: 50}, 1, true},
		{rules.Agg{Kind: rules.Count, Event: "C"}, 0, true},
		{rules.Agg{Kind: rules.Sum, Event: "A", Property: "v"}, 4, true},
		{rules.Agg{Kind: rules.Avg, Event: "A", Property: "v"}, 2, true},
		{rules.Agg{Kind: rules.Min, Event: "A", Property: "v"}, 1, true},
		{rules.Agg{Kind: rules.Max, Event: "A", Property: "v"}, 3, true},
		{rules.Agg{Kind: rules.Max, Event: "A", Property: "v", Window: 10}, 0, false},
		{rules.Agg{Kind: rules.First, Event: "A"}, 10, true},
		{rules.Agg{Kind: rules.Last, Event: "A"}, 60, true},
		{rules.Agg{Kind: rules.Last, Event: "C"}, 0, false},
	} {
		if v, ok := f.Agg(c.a); v != c.v || ok != c.ok {
			t.Errorf("%s = %v, %v; want %v, %v", c.a.Key(), v, ok, c.v, c.ok)
		}
	}
	if o, ok := f.Oldest(rules.Agg{Kind: rules.Count, Event: "A", Window: 60}); o != 50 || !ok {
		t.Errorf("Oldest = %d, %v", o, ok)
	}
	if s, ok := f.Profile("first_seen"); s != 10 || !ok {
		t.Errorf("first_seen = %d, %v", s, ok)
	}
	if s, ok := f.Profile("last_seen"); s != 70 || !ok {
		t.Errorf("last_seen = %d, %v", s, ok)
	}
	if _, ok := f.Profile("other"); ok {
		t.Error("unknown profile field")
	}
}
