package audience

import (
	"slices"
	"testing"

	"github.com/aurumcdp/aurum/rules"
)

// TestFunnelStepKeysCached: the step keys of a compiled rule's funnels come
// from the set's cache (built once at Compile), and any funnel, cached or
// not, gets the keys funnelStepKey builds.
func TestFunnelStepKeysCached(t *testing.T) {
	s, err := Compile([]Definition{
		{Name: "abandoners", Rule: `funnel(["Product Viewed", "Product Added"], "2h") and count("Order Completed", "1d") == 0`},
		{Name: "three", Rule: `funnel(["A", "B", "A"], "1d", "7d")`},
	})
	if err != nil {
		t.Fatal(err)
	}
	seen := 0
	for _, a := range s.list {
		for _, f := range a.Rule.Funnels() {
			seen++
			want := make([]string, len(f.Steps))
			for i := range f.Steps {
				want[i] = funnelStepKey(f, i)
			}
			id, _ := idOfFunnel(f)
			cached, ok := s.funnels[id]
			if !ok {
				t.Fatalf("%s: funnel %s not cached", a.Def.Name, f.Key())
			}
			if got := s.funnelStepKeys(f); !slices.Equal(got, want) || &got[0] != &cached[0] {
				t.Fatalf("%s: keys %q (cached: %v), want %q from the cache", a.Def.Name, got, &got[0] == &cached[0], want)
			}
			// The same funnel in another slice: not cached, same keys.
			g := rules.Funnel{Steps: slices.Clone(f.Steps), Within: f.Within, Window: f.Window}
			if got := s.funnelStepKeys(g); !slices.Equal(got, want) {
				t.Fatalf("%s: uncached keys %q, want %q", a.Def.Name, got, want)
			}
		}
	}
	if seen != 2 {
		t.Fatalf("saw %d funnels, want 2", seen)
	}
}
