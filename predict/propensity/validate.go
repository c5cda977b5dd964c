package propensity

import (
	"fmt"
	"math"
)

// Limits of a model read from outside (a control record): Validate refuses
// larger ones.
const (
	MaxFeatures = 4096
	MaxTrees    = 10000
	MaxNodes    = 1 << 11 // per tree: depth 10
)

func finite(v float64) bool { return !math.IsNaN(v) && !math.IsInf(v, 0) }

// Validate checks a model read from outside before it scores: the
// dimensions agree, every number is finite and every scale positive.
func (m *Logistic) Validate() error {
	d := len(m.Names)
	switch {
	case d == 0 || d > MaxFeatures:
		return fmt.Errorf("propensity: logistic: %d features, want 1..%d", d, MaxFeatures)
	case len(m.W) != d || len(m.Std.Mean) != d || len(m.Std.Scale) != d:
		return fmt.Errorf("propensity: logistic: %d names but %d weights, %d means, %d scales", d, len(m.W), len(m.Std.Mean), len(m.Std.Scale))
	case !finite(m.Intercept):
		return fmt.Errorf("propensity: logistic: intercept %v is not finite", m.Intercept)
	}
	for j := range d {
		if !finite(m.W[j]) || !finite(m.Std.Mean[j]) || !finite(m.Std.Scale[j]) || m.Std.Scale[j] <= 0 {
			return fmt.Errorf("propensity: logistic: feature %q: weight %v, mean %v, scale %v (finite, scale > 0)", m.Names[j], m.W[j], m.Std.Mean[j], m.Std.Scale[j])
		}
	}
	return nil
}

// Validate checks a model read from outside before it scores: every split
// names a feature and has both children after it in its tree (so a walk
// ends), and every number is finite.
func (m *Boosted) Validate() error {
	d := len(m.Names)
	switch {
	case d == 0 || d > MaxFeatures:
		return fmt.Errorf("propensity: boosted: %d features, want 1..%d", d, MaxFeatures)
	case len(m.Trees) == 0 || len(m.Trees) > MaxTrees:
		return fmt.Errorf("propensity: boosted: %d trees, want 1..%d", len(m.Trees), MaxTrees)
	case !finite(m.Base):
		return fmt.Errorf("propensity: boosted: base %v is not finite", m.Base)
	}
	for t, tree := range m.Trees {
		if len(tree) == 0 || len(tree) > MaxNodes {
			return fmt.Errorf("propensity: boosted: tree %d has %d nodes, want 1..%d", t, len(tree), MaxNodes)
		}
		for k, n := range tree {
			switch {
			case n.Feature == -1:
				if !finite(n.Value) {
					return fmt.Errorf("propensity: boosted: tree %d, leaf %d: value %v is not finite", t, k, n.Value)
				}
			case n.Feature < 0 || n.Feature >= d:
				return fmt.Errorf("propensity: boosted: tree %d, node %d: feature %d, want -1 (leaf) or 0..%d", t, k, n.Feature, d-1)
			case n.Left <= k || n.Right <= k || n.Left >= len(tree) || n.Right >= len(tree):
				return fmt.Errorf("propensity: boosted: tree %d, node %d: children %d and %d must lie after it, below %d", t, k, n.Left, n.Right, len(tree))
			case !finite(n.Threshold):
				return fmt.Errorf("propensity: boosted: tree %d, node %d: threshold %v is not finite", t, k, n.Threshold)
			}
		}
	}
	return nil
}
