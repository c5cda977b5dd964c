package recommend

import (
	"cmp"
	"fmt"
	"math"
	"slices"
	"time"
)

// Kind is the kind of an interaction.
type Kind uint8

// The kinds, weakest first.
const (
	View Kind = iota
	Cart
	Buy
	numKinds
)

func (k Kind) String() string {
	switch k {
	case View:
		return "view"
	case Cart:
		return "cart"
	case Buy:
		return "buy"
	}
	return fmt.Sprintf("Kind(%d)", uint8(k))
}

// Interaction is one event of a user with an item.
type Interaction struct {
	User     string
	Item     string
	Category string // "" when unknown
	Kind     Kind
	Time     int64 // Unix ms
}

// Scored is a key with its score.
type Scored struct {
	Key   string
	Score float64
}

// byScore orders by score, highest first, then by key.
func byScore(a, b Scored) int {
	if c := cmp.Compare(b.Score, a.Score); c != 0 {
		return c
	}
	return cmp.Compare(a.Key, b.Key)
}

// Weights are the weights of the kinds (view, cart, buy).
type Weights [numKinds]float64

// DefaultWeights are the feature projection's: 1 for a view, 3 for a cart,
// 5 for a purchase.
var DefaultWeights = Weights{1, 3, 5}

// AffinityOptions configure Affinities. Zero fields take their defaults.
type AffinityOptions struct {
	// HalfLife of the decay. Default (also for values under 1 ms) 30 days,
	// the feature projection's longer half-life.
	HalfLife time.Duration
	// Weights of the kinds. Default DefaultWeights.
	Weights Weights
	// Top bounds each list. Default 10.
	Top int
}

func (o *AffinityOptions) defaults() {
	if o.HalfLife < time.Millisecond {
		o.HalfLife = 30 * 24 * time.Hour
	}
	if o.Weights == (Weights{}) {
		o.Weights = DefaultWeights
	}
	if o.Top == 0 {
		o.Top = 10
	}
}

// Affinity is a profile's top categories and items. A score is the key's
// share of the profile's decayed, weighted interactions, in [0, 1]: the
// categories' scores sum to at most 1 (interactions without a category are
// in the total), as do the items'.
type Affinity struct {
	Categories, Items []Scored
}

// Affinities computes a profile's affinities as of asOf (Unix ms) from its
// interactions: each weighs Weights[kind] · 2^(−(asOf − t)/HalfLife);
// interactions after asOf are left out.
func Affinities(history []Interaction, asOf int64, opt AffinityOptions) Affinity {
	opt.defaults()
	items, cats, total := decayed(history, asOf, opt.HalfLife, opt.Weights)
	return Affinity{Categories: top(cats, total, opt.Top), Items: top(items, total, opt.Top)}
}

// decayed sums the decayed weights per item and per category. The sums run
// over history in a fixed order (time, item, kind) so that the result does
// not depend on the order given.
func decayed(history []Interaction, asOf int64, halfLife time.Duration, w Weights) (items, cats map[string]float64, total float64) {
	h := sorted(history)
	items, cats = map[string]float64{}, map[string]float64{}
	for _, it := range h {
		if it.Time > asOf || it.Kind >= numKinds {
			continue
		}
		v := w[it.Kind] * math.Exp2(-float64(asOf-it.Time)/float64(halfLife.Milliseconds()))
		items[it.Item] += v
		if it.Category != "" {
			cats[it.Category] += v
		}
		total += v
	}
	return items, cats, total
}

func sorted(h []Interaction) []Interaction {
	out := slices.Clone(h)
	slices.SortStableFunc(out, func(a, b Interaction) int {
		if c := cmp.Compare(a.Time, b.Time); c != 0 {
			return c
		}
		if c := cmp.Compare(a.Item, b.Item); c != 0 {
			return c
		}
		return cmp.Compare(a.Kind, b.Kind)
	})
	return out
}

// top returns the n highest of m, each divided by total.
func top(m map[string]float64, total float64, n int) []Scored {
	out := make([]Scored, 0, len(m))
	for k, v := range m {
		out = append(out, Scored{k, v / total})
	}
	slices.SortFunc(out, byScore)
	return out[:min(n, len(out))]
}
