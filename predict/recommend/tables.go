package recommend

import (
	"cmp"
	"fmt"
	"math"
	"slices"
)

// List is a key (an item or a category) with its scored items, best first.
type List struct {
	Key   string
	Items []Scored
}

// Tables are what the ranking reads of a trained Model, exported in
// bounded size so that a model can be kept as a record (docs/predictions.md,
// "As a model kind"): the neighbours of the most popular items, the
// popular items of the most popular categories, the most popular items and
// the sum of every popularity count, and the model's options. Tables.Recommend
// ranks as Model.Recommend did when nothing was cut: every item with
// neighbours and every category kept, and n plus the profile's bought items
// at most len(Popular) (TestTablesRecommendAlike).
type Tables struct {
	Options      ModelOptions // with their defaults; Co is not kept
	Neighbours   []List       // by Key, ascending: an item's top K neighbours by normalized count
	Categories   []List       // by Key, ascending: a category's PerCategory most popular items
	Popular      []Scored     // best first (score descending, then key)
	PopularTotal float64      // the sum of every item's popularity count
	// Items is the number of items with a popularity count; Cut the lists
	// of neighbours and categories left out by the bounds.
	Items int
	Cut   int
}

// TableOptions bound Tables. Zero fields take their defaults.
type TableOptions struct {
	// MaxItems is the number of items whose neighbours are kept, the most
	// popular first. Default 1000.
	MaxItems int
	// MaxCategories is the number of categories kept, the most popular
	// (sum of their kept items' counts) first. Default 64.
	MaxCategories int
	// MaxPopular is the number of popular items kept. Default 256.
	MaxPopular int
}

func (o *TableOptions) defaults() {
	if o.MaxItems <= 0 {
		o.MaxItems = 1000
	}
	if o.MaxCategories <= 0 {
		o.MaxCategories = 64
	}
	if o.MaxPopular <= 0 {
		o.MaxPopular = 256
	}
}

// Tables exports the model's tables within the bounds of o.
func (m *Model) Tables(o TableOptions) Tables {
	o.defaults()
	opt := m.opt
	opt.Co = CoOptions{}
	t := Tables{Options: opt, Items: len(m.popularity), PopularTotal: m.popTotal()}
	all := m.Popular(len(m.popularity), nil)
	t.Popular = slices.Clone(all[:min(o.MaxPopular, len(all))])
	for _, s := range all {
		if len(t.Neighbours) == o.MaxItems {
			break
		}
		if nb := m.co.Neighbours(s.Key); len(nb) > 0 {
			t.Neighbours = append(t.Neighbours, List{s.Key, slices.Clone(nb)})
		}
	}
	t.Cut = m.co.Items() - len(t.Neighbours)
	cats := make([]Scored, 0, len(m.byCategory))
	for c, l := range m.byCategory {
		var sum float64
		for _, s := range l.top(opt.PerCategory) {
			sum += s.Score
		}
		cats = append(cats, Scored{c, sum})
	}
	slices.SortFunc(cats, byScore)
	for _, c := range cats[:min(o.MaxCategories, len(cats))] {
		t.Categories = append(t.Categories, List{c.Key, slices.Clone(m.byCategory[c.Key].top(opt.PerCategory))})
	}
	t.Cut += len(cats) - len(t.Categories)
	byKey := func(a, b List) int { return cmp.Compare(a.Key, b.Key) }
	slices.SortFunc(t.Neighbours, byKey)
	slices.SortFunc(t.Categories, byKey)
	return t
}

// Validate checks tables from outside (a record): options as NewModel
// accepts them, lists strictly ascending by key, items best first, every
// score finite and > 0, and the popularity total positive when there are
// popular items.
func (t *Tables) Validate() error {
	o := t.Options
	err := o.defaults()
	if err != nil || t.Options.Co.K != 0 || !sameOptions(o, t.Options) {
		return fmt.Errorf("recommend: tables: options %+v: incomplete or invalid (%v)", t.Options, err)
	}
	for _, ls := range []struct {
		what string
		l    []List
	}{{"neighbours", t.Neighbours}, {"categories", t.Categories}} {
		for i, l := range ls.l {
			if l.Key == "" || i > 0 && ls.l[i-1].Key >= l.Key {
				return fmt.Errorf("recommend: tables: %s: key %q empty or out of order", ls.what, l.Key)
			}
			if err := checkScored(l.Items); err != nil {
				return fmt.Errorf("recommend: tables: %s of %q: %w", ls.what, l.Key, err)
			}
		}
	}
	if err := checkScored(t.Popular); err != nil {
		return fmt.Errorf("recommend: tables: popular: %w", err)
	}
	if len(t.Popular) > 0 && !(t.PopularTotal > 0) || math.IsInf(t.PopularTotal, 0) || math.IsNaN(t.PopularTotal) {
		return fmt.Errorf("recommend: tables: popularity total %v: want finite, > 0 with popular items", t.PopularTotal)
	}
	return nil
}

// sameOptions compares the options the ranking reads.
func sameOptions(a, b ModelOptions) bool {
	return a.HalfLife == b.HalfLife && a.Weights == b.Weights && a.Blend == b.Blend &&
		a.Recent == b.Recent && a.Categories == b.Categories && a.PerCategory == b.PerCategory
}

func checkScored(s []Scored) error {
	for i, x := range s {
		if x.Key == "" || !(x.Score > 0) || math.IsInf(x.Score, 0) {
			return fmt.Errorf("item %q score %v: want a key and a finite score > 0", x.Key, x.Score)
		}
		if i > 0 && byScore(s[i-1], x) >= 0 {
			return fmt.Errorf("item %q: out of order (best first, then by key)", x.Key)
		}
	}
	return nil
}

// Recommend is Model.Recommend over the tables (valid ones: Validate).
func (t *Tables) Recommend(history []Interaction, asOf int64, n int) []Scored {
	return rank(t, t.Options, history, asOf, n)
}

func find(ls []List, key string) []Scored {
	i, ok := slices.BinarySearchFunc(ls, key, func(l List, k string) int { return cmp.Compare(l.Key, k) })
	if !ok {
		return nil
	}
	return ls[i].Items
}

func (t *Tables) neighbours(item string) []Scored { return find(t.Neighbours, item) }

func (t *Tables) categoryTop(cat string, k int) []Scored {
	l := find(t.Categories, cat)
	if l == nil {
		return nil
	}
	return l[:min(k, len(l)):min(k, len(l))]
}

func (t *Tables) topPopular(n int) []Scored { return t.Popular[:min(max(n, 0), len(t.Popular))] }

func (t *Tables) popTotal() float64 { return t.PopularTotal }
