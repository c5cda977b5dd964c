package propensity

import (
	"math"
	"strings"
	"testing"
)

func TestValidate(t *testing.T) {
	d := synthetic(400, []float64{1, -1}, 0, false, 8)
	lin, err := FitLogistic(d, LogisticOptions{})
	if err != nil {
		t.Fatal(err)
	}
	gb, err := FitBoosted(d, BoostedOptions{Trees: 5})
	if err != nil {
		t.Fatal(err)
	}
	if err := lin.Validate(); err != nil {
		t.Fatalf("fitted logistic: %v", err)
	}
	if err := gb.Validate(); err != nil {
		t.Fatalf("fitted trees: %v", err)
	}
	cloneTrees := func() *Boosted {
		c := *gb
		c.Trees = make([][]Node, len(gb.Trees))
		for i, tr := range gb.Trees {
			c.Trees[i] = append([]Node(nil), tr...)
		}
		return &c
	}
	for _, tc := range []struct {
		name  string
		model interface{ Validate() error }
		want  string
	}{
		{"weights", &Logistic{Names: []string{"a"}, W: nil, Std: Standardizer{Mean: []float64{0}, Scale: []float64{1}}}, "0 weights"},
		{"scale", &Logistic{Names: []string{"a"}, W: []float64{1}, Std: Standardizer{Mean: []float64{0}, Scale: []float64{0}}}, `feature "a"`},
		{"nan intercept", &Logistic{Names: []string{"a"}, W: []float64{1}, Intercept: math.NaN(), Std: Standardizer{Mean: []float64{0}, Scale: []float64{1}}}, "intercept"},
		{"cycle", func() *Boosted { c := cloneTrees(); c.Trees[0][0].Left = 0; return c }(), "children 0"},
		{"feature", func() *Boosted { c := cloneTrees(); c.Trees[0][0].Feature = 9; return c }(), "feature 9"},
		{"leaf", func() *Boosted { c := cloneTrees(); c.Trees[1][len(c.Trees[1])-1].Value = math.Inf(1); return c }(), "not finite"},
		{"no trees", &Boosted{Names: []string{"a"}}, "0 trees"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.model.Validate()
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want %q", err, tc.want)
			}
		})
	}
}
