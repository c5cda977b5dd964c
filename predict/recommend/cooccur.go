package recommend

import (
	"cmp"
	"fmt"
	"math"
	"slices"
	"time"
)

// CoOptions configure a CoOccurrence. Zero fields take their defaults.
type CoOptions struct {
	// From and To are the kinds of the two interactions of a pair: an
	// interaction of a From kind with item a and one of a To kind with item
	// b (a != b) count for b as a neighbour of a. Default: every kind.
	// "Bought together": From = To = [Buy]; "viewed then bought": From =
	// [View], To = [Buy], Ordered.
	From, To []Kind
	// Ordered counts only pairs where the From interaction is not later
	// than the To one.
	Ordered bool
	// Window is the greatest time between the two interactions. Default 24 h.
	Window time.Duration
	// Weights of the To interaction's kind: a pair counts Weights[to.Kind],
	// once per user (the greatest weight among the user's pairs of the two
	// items). Default {1, 3, 6}.
	Weights Weights
	// K is the number of neighbours kept per item. Default 20.
	K int
	// Capacity is the number of counters per item (>= K): a new neighbour
	// of an item whose counters are full takes the place of the least
	// counted one and inherits its count (Space-Saving, Metwally et al.
	// 2005: a neighbour counted more than total/Capacity is never lost).
	// Default 10·K.
	Capacity int
	// MaxHistory is the number of a user's latest interactions paired.
	// Default 200.
	MaxHistory int
	// Damp is the exponent of the normalization of a neighbour's count by
	// the number of users who interacted with the neighbour (To kinds):
	// count(a, b) / users(b)^Damp. 0.5 is the cosine (up to the constant
	// users(a)^0.5 of a's list), 1 the lift (confidence over the
	// neighbour's support); without it the popular items are everybody's
	// neighbours. Default 0.5; a negative value means 0 (raw counts).
	Damp float64
}

func (o *CoOptions) defaults() error {
	if len(o.From) == 0 {
		o.From = []Kind{View, Cart, Buy}
	}
	if len(o.To) == 0 {
		o.To = []Kind{View, Cart, Buy}
	}
	if o.Window == 0 {
		o.Window = 24 * time.Hour
	}
	if o.Weights == (Weights{}) {
		o.Weights = Weights{1, 3, 6}
	}
	if o.K == 0 {
		o.K = 20
	}
	if o.Capacity == 0 {
		o.Capacity = 10 * o.K
	}
	if o.MaxHistory == 0 {
		o.MaxHistory = 200
	}
	if o.Damp == 0 {
		o.Damp = 0.5
	}
	switch {
	case o.Damp > 1 || o.Damp != o.Damp:
		return fmt.Errorf("recommend: co-occurrence: damp %v must be <= 1", o.Damp)
	case o.Window < 0:
		return fmt.Errorf("recommend: co-occurrence: window %v must be > 0", o.Window)
	case o.K < 1 || o.K > 1000:
		return fmt.Errorf("recommend: co-occurrence: K %d must be in 1..1000", o.K)
	case o.Capacity < o.K || o.Capacity > 100_000:
		return fmt.Errorf("recommend: co-occurrence: capacity %d must be in K (%d)..100000", o.Capacity, o.K)
	case o.MaxHistory < 2 || o.MaxHistory > 10_000:
		return fmt.Errorf("recommend: co-occurrence: max history %d must be in 2..10000", o.MaxHistory)
	}
	for _, k := range append(slices.Clone(o.From), o.To...) {
		if k >= numKinds {
			return fmt.Errorf("recommend: co-occurrence: unknown kind %d", k)
		}
	}
	return nil
}

// CoOccurrence counts, per item, its neighbours under one relation, in
// memory bounded by Capacity counters per item. Counts depend on the order
// of the users added only when an item's counters overflow. Not safe for
// concurrent use (Neighbours caches sorted lists).
type CoOccurrence struct {
	opt      CoOptions
	from, to [numKinds]bool
	lists    map[string]*counters
	// users counts, per item, the users with a To interaction of it
	// (memory: one count per item, as the model's popularity).
	users map[string]float64
}

// NewCoOccurrence returns an empty CoOccurrence.
func NewCoOccurrence(opt CoOptions) (*CoOccurrence, error) {
	if err := opt.defaults(); err != nil {
		return nil, err
	}
	c := &CoOccurrence{opt: opt, lists: map[string]*counters{}, users: map[string]float64{}}
	for _, k := range opt.From {
		c.from[k] = true
	}
	for _, k := range opt.To {
		c.to[k] = true
	}
	return c, nil
}

type pair struct{ a, b string }

// AddUser counts the pairs of one user's interactions (any order; the
// latest MaxHistory are paired).
func (c *CoOccurrence) AddUser(history []Interaction) {
	h := sorted(history)
	if len(h) > c.opt.MaxHistory {
		h = h[len(h)-c.opt.MaxHistory:]
	}
	win := c.opt.Window.Milliseconds()
	had := map[string]bool{}
	for _, x := range h {
		if c.to[x.Kind] && !had[x.Item] {
			had[x.Item] = true
			c.users[x.Item]++
		}
	}
	seen := map[pair]float64{}
	for i, x := range h {
		if !c.from[x.Kind] {
			continue
		}
		for j, y := range h {
			if i == j || !c.to[y.Kind] || x.Item == y.Item {
				continue
			}
			d := y.Time - x.Time
			if c.opt.Ordered && d < 0 || d > win || -d > win {
				continue
			}
			p := pair{x.Item, y.Item}
			seen[p] = max(seen[p], c.opt.Weights[y.Kind])
		}
	}
	pairs := make([]pair, 0, len(seen))
	for p := range seen {
		pairs = append(pairs, p)
	}
	slices.SortFunc(pairs, func(p, q pair) int {
		if r := cmp.Compare(p.a, q.a); r != 0 {
			return r
		}
		return cmp.Compare(p.b, q.b)
	})
	for _, p := range pairs {
		l := c.lists[p.a]
		if l == nil {
			l = &counters{idx: map[string]int{}}
			c.lists[p.a] = l
		}
		l.add(p.b, seen[p], c.opt.Capacity)
	}
}

// Neighbours returns the item's top K neighbours, highest normalized count
// first (count / users^Damp; ties by key). The count is the guaranteed one
// (Space-Saving's count less the count inherited from the key replaced), so
// that a rare neighbour which took a full list's last place does not rank
// by its predecessor's count.
func (c *CoOccurrence) Neighbours(item string) []Scored {
	l := c.lists[item]
	if l == nil {
		return nil
	}
	if l.normed == nil {
		l.normed = make([]Scored, len(l.keys))
		for i, key := range l.keys {
			v := l.counts[i] - l.errs[i] // Space-Saving's guaranteed count
			if c.opt.Damp > 0 {
				v /= math.Pow(max(c.users[key], 1), c.opt.Damp)
			}
			l.normed[i] = Scored{key, v}
		}
		slices.SortFunc(l.normed, byScore)
	}
	k := min(c.opt.K, len(l.normed))
	return l.normed[:k:k]
}

// Items is the number of items with neighbours.
func (c *CoOccurrence) Items() int { return len(c.lists) }

// counters are Space-Saving counters: at most capacity keys.
type counters struct {
	keys   []string
	counts []float64
	errs   []float64 // the count each key inherited on taking its place
	idx    map[string]int
	sorted []Scored // cache of the keys by count, nil after a change
	normed []Scored // CoOccurrence's cache of the normalized counts, nil after a change
}

func (l *counters) add(key string, w float64, capacity int) {
	l.sorted, l.normed = nil, nil
	if i, ok := l.idx[key]; ok {
		l.counts[i] += w
		return
	}
	if len(l.keys) < capacity {
		l.idx[key] = len(l.keys)
		l.keys = append(l.keys, key)
		l.counts = append(l.counts, w)
		l.errs = append(l.errs, 0)
		return
	}
	// Replace the least counted key (ties: the greatest key).
	m := 0
	for i := 1; i < len(l.keys); i++ {
		if l.counts[i] < l.counts[m] || l.counts[i] == l.counts[m] && l.keys[i] > l.keys[m] {
			m = i
		}
	}
	delete(l.idx, l.keys[m])
	l.idx[key] = m
	l.keys[m] = key
	l.errs[m] = l.counts[m]
	l.counts[m] += w
}

// top returns the k highest counts (a slice of the cache: not to be
// modified).
func (l *counters) top(k int) []Scored {
	if l.sorted == nil {
		l.sorted = make([]Scored, len(l.keys))
		for i, key := range l.keys {
			l.sorted[i] = Scored{key, l.counts[i]}
		}
		slices.SortFunc(l.sorted, byScore)
	}
	return l.sorted[:min(k, len(l.sorted)):min(k, len(l.sorted))]
}
