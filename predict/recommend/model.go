package recommend

import (
	"fmt"
	"slices"
	"time"
)

// Blend weighs the parts of a next-best-product score (each part is a
// distribution over items, summing to 1, before weighing).
type Blend struct {
	// Self: the item's own decayed interactions (viewed or carted, not
	// bought).
	Self float64
	// Neighbours: the normalized co-occurrence counts (CoOptions.Damp) from
	// the profile's recent items, each weighed by that item's decayed
	// interactions.
	Neighbours float64
	// Category: the item's popularity within the profile's top categories,
	// weighed by the category's affinity.
	Category float64
	// Popularity: the item's overall popularity (fills the list, breaks ties).
	Popularity float64
}

// ModelOptions configure a Model. Zero fields take their defaults.
type ModelOptions struct {
	// Co is the relation behind the neighbours. Default: every kind within
	// 24 hours (CoOptions defaults).
	Co CoOptions
	// HalfLife of the decay of a profile's interactions. Default 7 days.
	HalfLife time.Duration
	// Weights of the kinds in a profile's interactions and in popularity.
	// Default DefaultWeights.
	Weights Weights
	// Blend of the parts of the score. Default {1, 0.3, 1, 0.3}: the
	// profile's own items first, as the winning OTTO solutions found, then
	// its categories' popular items; co-occurrence and popularity fill.
	Blend Blend
	// Recent is the number of a profile's top items whose neighbours are
	// candidates. Default 20.
	Recent int
	// Categories is the number of a profile's top categories whose popular
	// items are candidates; PerCategory the items kept per category.
	// Defaults 3 and 50.
	Categories, PerCategory int
}

func (o *ModelOptions) defaults() error {
	if o.HalfLife == 0 {
		o.HalfLife = 7 * 24 * time.Hour
	}
	if o.Weights == (Weights{}) {
		o.Weights = DefaultWeights
	}
	if o.Blend == (Blend{}) {
		o.Blend = Blend{Self: 1, Neighbours: 0.3, Category: 1, Popularity: 0.3}
	}
	if o.Recent == 0 {
		o.Recent = 20
	}
	if o.Categories == 0 {
		o.Categories = 3
	}
	if o.PerCategory == 0 {
		o.PerCategory = 50
	}
	switch {
	case o.HalfLife < time.Millisecond:
		return fmt.Errorf("recommend: model: half-life %v must be at least 1ms", o.HalfLife)
	case o.Recent < 1 || o.Categories < 0 || o.PerCategory < 1:
		return fmt.Errorf("recommend: model: recent %d, categories %d and per-category %d must be positive", o.Recent, o.Categories, o.PerCategory)
	case o.Blend.Self < 0 || o.Blend.Neighbours < 0 || o.Blend.Category < 0 || o.Blend.Popularity < 0:
		return fmt.Errorf("recommend: model: blend weights %+v must be >= 0", o.Blend)
	}
	return nil
}

// Model is trained on users' interactions (AddUser) and ranks next best
// products. Not safe for concurrent use (reads cache sorted lists). Memory: the co-occurrence counters (Capacity per item), one
// popularity count and one category per item, and PerCategory·10 counters
// per category.
type Model struct {
	opt        ModelOptions
	co         *CoOccurrence
	popularity map[string]float64
	category   map[string]string
	byCategory map[string]*counters
	popular    []Scored // cache of popularity, sorted; nil after a change
	popularSum float64  // their sum, with the cache
}

// NewModel returns an untrained model.
func NewModel(opt ModelOptions) (*Model, error) {
	if err := opt.defaults(); err != nil {
		return nil, err
	}
	co, err := NewCoOccurrence(opt.Co)
	if err != nil {
		return nil, err
	}
	return &Model{opt: opt, co: co, popularity: map[string]float64{}, category: map[string]string{},
		byCategory: map[string]*counters{}}, nil
}

// AddUser trains the model on one user's interactions.
func (m *Model) AddUser(history []Interaction) {
	m.popular = nil
	m.co.AddUser(history)
	for _, it := range sorted(history) {
		if it.Kind >= numKinds {
			continue
		}
		w := m.opt.Weights[it.Kind]
		m.popularity[it.Item] += w
		if it.Category == "" {
			continue
		}
		m.category[it.Item] = it.Category
		l := m.byCategory[it.Category]
		if l == nil {
			l = &counters{idx: map[string]int{}}
			m.byCategory[it.Category] = l
		}
		l.add(it.Item, w, 10*m.opt.PerCategory)
	}
}

// Popular returns the n most popular items not in exclude (the popularity
// baseline).
func (m *Model) Popular(n int, exclude map[string]bool) []Scored {
	if m.popular == nil {
		m.popular = make([]Scored, 0, len(m.popularity))
		for k, v := range m.popularity {
			m.popular = append(m.popular, Scored{k, v})
		}
		slices.SortFunc(m.popular, byScore)
		m.popularSum = 0
		for _, s := range m.popular {
			m.popularSum += s.Score
		}
	}
	out := make([]Scored, 0, n)
	for _, s := range m.popular {
		if len(out) == n {
			break
		}
		if !exclude[s.Key] {
			out = append(out, s)
		}
	}
	return out
}

// Bought returns the items a history bought at or before asOf.
func Bought(history []Interaction, asOf int64) map[string]bool {
	b := map[string]bool{}
	for _, it := range history {
		if it.Kind == Buy && it.Time <= asOf {
			b[it.Item] = true
		}
	}
	return b
}

// Recommend returns a profile's n next best products as of asOf: the
// highest-scoring items it has not bought (Blend), best first (ties by
// item). Interactions after asOf are left out.
//
// Each part of the score is a distribution over items (it sums to 1), so
// the Blend weights are the parts' shares of a mixture.
func (m *Model) Recommend(history []Interaction, asOf int64, n int) []Scored {
	o := m.opt
	items, cats, total := decayed(history, asOf, o.HalfLife, o.Weights)
	bought := Bought(history, asOf)
	score := map[string]float64{}
	own := top(items, total, len(items)) // descending by decayed weight, summing to 1
	if o.Blend.Self > 0 {
		for _, s := range own {
			score[s.Key] += o.Blend.Self * s.Score
		}
	}
	if len(own) > 0 && o.Blend.Neighbours > 0 {
		// A weighted mean over the recent items of their neighbours'
		// shares.
		recent := own[:min(o.Recent, len(own))]
		var sum float64
		for _, h := range recent {
			sum += h.Score
		}
		for _, h := range recent {
			nb := m.co.Neighbours(h.Key)
			var t float64
			for _, s := range nb {
				t += s.Score
			}
			for _, s := range nb {
				score[s.Key] += o.Blend.Neighbours * h.Score / sum * s.Score / t
			}
		}
	}
	if o.Blend.Category > 0 && total > 0 {
		for _, c := range top(cats, total, o.Categories) {
			l := m.byCategory[c.Key]
			if l == nil {
				continue
			}
			best := l.top(o.PerCategory)
			var t float64
			for _, s := range best {
				t += s.Score
			}
			for _, s := range best {
				score[s.Key] += o.Blend.Category * c.Score * s.Score / t
			}
		}
	}
	if o.Blend.Popularity > 0 {
		pop := m.Popular(n+len(bought), nil)
		t := m.popTotal()
		for _, s := range pop {
			score[s.Key] += o.Blend.Popularity * s.Score / t
		}
	}
	// The n best by byScore (a total order: keys are distinct), kept
	// sorted while scanning: the same as sorting every candidate.
	out := make([]Scored, 0, n+1)
	for k, v := range score {
		if bought[k] || n < 1 {
			continue
		}
		c := Scored{k, v}
		if len(out) == n && byScore(c, out[n-1]) >= 0 {
			continue
		}
		i, _ := slices.BinarySearchFunc(out, c, byScore)
		out = slices.Insert(out, i, c)
		if len(out) > n {
			out = out[:n]
		}
	}
	return out
}

// popTotal is the sum of the popularity counts.
func (m *Model) popTotal() float64 {
	m.Popular(0, nil)
	return m.popularSum
}
