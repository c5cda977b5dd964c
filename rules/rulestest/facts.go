// Package rulestest provides Facts, a brute-force reference implementation of
// rules.Facts computed from a profile's whole event list. It defines what every
// aggregate means; an incremental implementation must agree with it.
package rulestest

import (
	"math"
	"sort"

	"github.com/aurumcdp/aurum/rules"
)

// Event is one event of the profile.
type Event struct {
	Name  string
	Time  int64 // Unix ms
	Props map[string]any
}

// Facts is a profile's facts at time At. The zero value is an empty profile at
// time 0.
type Facts struct {
	At        int64 // Now, Unix ms
	Events    []Event
	Traits    map[string]any
	Audiences map[string]bool
	// FirstSeen and LastSeen are the profile's stats; when zero they are the
	// least and greatest time of the events at or before At (absent if none).
	FirstSeen, LastSeen int64
	// Predictions are the profile's scores, each linear in time.
	Predictions map[string]Prediction
	// Recommendations are the profile's next best products by recommend
	// model: each list is in effect from its From time until the next one's.
	Recommended map[string][]Recommendations
}

// Recommendations is a recommend model's list of a profile (item ids, best
// first), in effect from time From (Unix ms).
type Recommendations struct {
	From  int64
	Items []string
}

// Prediction is a score that is Value at time At and moves by PerDay per
// day (86,400,000 ms) after it.
type Prediction struct {
	At            int64
	Value, PerDay float64
}

var _ rules.Facts = (*Facts)(nil)

// Now implements rules.Facts.
func (f *Facts) Now() int64 { return f.At }

// counted calls fn for every event a counts at At: matching name and filter,
// in the window, and for Sum/Avg/Min/Max with a numeric property.
func (f *Facts) counted(a rules.Agg, fn func(e Event, v float64)) {
	for _, e := range f.Events {
		if !a.InWindow(e.Time, f.At) || !a.Matches(e.Name, e.Props) {
			continue
		}
		var v float64
		if a.Kind >= rules.Sum && a.Kind <= rules.Max {
			var ok bool
			if v, ok = a.Value(e.Props); !ok {
				continue
			}
		}
		fn(e, v)
	}
}

// Agg implements rules.Facts.
func (f *Facts) Agg(a rules.Agg) (float64, bool) {
	n, sum := 0, 0.0
	lo, hi := math.Inf(1), math.Inf(-1)
	first, last := int64(math.MaxInt64), int64(math.MinInt64)
	f.counted(a, func(e Event, v float64) {
		n++
		sum += v
		lo, hi = math.Min(lo, v), math.Max(hi, v)
		first, last = min(first, e.Time), max(last, e.Time)
	})
	switch a.Kind {
	case rules.Count:
		return float64(n), true
	case rules.Sum:
		return sum, true
	}
	if n == 0 {
		return 0, false
	}
	switch a.Kind {
	case rules.Avg:
		return sum / float64(n), true
	case rules.Min:
		return lo, true
	case rules.Max:
		return hi, true
	case rules.First:
		return float64(first), true
	}
	return float64(last), true
}

// Oldest implements rules.Facts.
func (f *Facts) Oldest(a rules.Agg) (int64, bool) {
	t, ok := int64(math.MaxInt64), false
	f.counted(a, func(e Event, _ float64) { t, ok = min(t, e.Time), true })
	return t, ok
}

// FunnelStart implements rules.Facts by trying every first step, latest first,
// and completing it greedily (each next step: the earliest unused event of
// that name at or after the previous step).
func (f *Facts) FunnelStart(fu rules.Funnel) (int64, bool) {
	idx := make([]int, 0, len(f.Events))
	for i, e := range f.Events {
		if e.Time <= f.At {
			idx = append(idx, i)
		}
	}
	sort.SliceStable(idx, func(i, j int) bool { return f.Events[idx[i]].Time < f.Events[idx[j]].Time })
	for s := len(idx) - 1; s >= 0; s-- {
		first := f.Events[idx[s]]
		if first.Name != fu.Steps[0] {
			continue
		}
		used := map[int]bool{idx[s]: true}
		prev, ok := first.Time, true
		for _, step := range fu.Steps[1:] {
			found := -1
			for _, i := range idx {
				e := f.Events[i]
				if e.Name == step && e.Time >= prev && !used[i] {
					found = i
					break
				}
			}
			if found < 0 || f.Events[found].Time-first.Time >= fu.Within {
				ok = false
				break
			}
			used[found] = true
			prev = f.Events[found].Time
		}
		if ok {
			return first.Time, true
		}
	}
	return 0, false
}

// Trait implements rules.Facts.
func (f *Facts) Trait(name string) (any, bool) {
	v, ok := f.Traits[name]
	return v, ok
}

// Profile implements rules.Facts.
func (f *Facts) Profile(field string) (int64, bool) {
	switch {
	case field == "first_seen" && f.FirstSeen != 0:
		return f.FirstSeen, true
	case field == "last_seen" && f.LastSeen != 0:
		return f.LastSeen, true
	}
	t, ok := int64(0), false
	for _, e := range f.Events {
		if e.Time > f.At {
			continue
		}
		switch {
		case !ok:
			t = e.Time
		case field == "first_seen":
			t = min(t, e.Time)
		case field == "last_seen":
			t = max(t, e.Time)
		default:
			return 0, false
		}
		ok = true
	}
	return t, ok && (field == "first_seen" || field == "last_seen")
}

// InAudience implements rules.Facts.
func (f *Facts) InAudience(name string) bool { return f.Audiences[name] }

// Prediction implements rules.Facts.
func (f *Facts) Prediction(name string, at int64) (float64, bool) {
	p, ok := f.Predictions[name]
	if !ok {
		return 0, false
	}
	return p.Value + p.PerDay*float64(at-p.At)/86400000, true
}

// Recommendations implements rules.Facts: the list with the latest From at
// or before at (an empty list before the first).
func (f *Facts) Recommendations(model string, at int64) ([]string, bool) {
	ls, ok := f.Recommended[model]
	if !ok {
		return nil, false
	}
	var items []string
	from := int64(math.MinInt64)
	for _, l := range ls {
		if l.From <= at && l.From >= from {
			items, from = l.Items, l.From
		}
	}
	return items, true
}
