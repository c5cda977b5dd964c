package audience

import (
	"bytes"
	"math"
	"slices"
	"sort"

	"github.com/aurumcdp/aurum/rules"
)

// State is the audience state of one profile: the aggregates its audiences'
// rules read, its memberships and its next timer. It is stored as one value
// per profile (EncodeState, codec.go); every slice is kept sorted so that equal states have
// equal encodings. A new field must be added to the codec too
// (TestStateCodecCoversEveryField fails until it is).
type State struct {
	Aggs    []AggState `msgpack:"a,omitempty"` // sorted by Key
	Members []Member   `msgpack:"m,omitempty"` // sorted by Audience
	Timer   int64      `msgpack:"t,omitempty"` // Unix ms of the next time-driven evaluation; 0 = none
}

// Member is a membership: the profile is in Audience since Since (log
// time), as decided by rule Version.
type Member struct {
	Audience string `msgpack:"n"`
	Since    int64  `msgpack:"s"`
	Version  int64  `msgpack:"v"`
}

// AggState is the incremental state of one aggregate (rules.Agg.Key()).
// Windowed aggregates keep the matching events still inside their window
// (and any dated in the future); all-time aggregates keep running totals.
type AggState struct {
	Key     string     `msgpack:"k"`
	Entries []AggEntry `msgpack:"e,omitempty"` // windowed only; sorted by (T, ID)
	N       int64      `msgpack:"n,omitempty"` // all-time only
	Sum     float64    `msgpack:"s,omitempty"`
	Min     float64    `msgpack:"lo,omitempty"`
	Max     float64    `msgpack:"hi,omitempty"`
	First   int64      `msgpack:"f,omitempty"` // event time of the first/last matching event (all-time)
	Last    int64      `msgpack:"l,omitempty"`
}

// AggEntry is one matching event in a windowed aggregate.
type AggEntry struct {
	T  int64   `msgpack:"t"`
	V  float64 `msgpack:"v,omitempty"`
	ID []byte  `msgpack:"i"`
}

func (s *State) agg(key string) *AggState {
	i, ok := slices.BinarySearchFunc(s.Aggs, key, func(a AggState, k string) int { return cmpStr(a.Key, k) })
	if !ok {
		return nil
	}
	return &s.Aggs[i]
}

func (s *State) addAgg(a AggState) *AggState {
	i, ok := slices.BinarySearchFunc(s.Aggs, a.Key, func(x AggState, k string) int { return cmpStr(x.Key, k) })
	if ok {
		s.Aggs[i] = a
	} else {
		s.Aggs = slices.Insert(s.Aggs, i, a)
	}
	return &s.Aggs[i]
}

func (s *State) member(name string) (Member, bool) {
	i, ok := slices.BinarySearchFunc(s.Members, name, func(m Member, k string) int { return cmpStr(m.Audience, k) })
	if !ok {
		return Member{}, false
	}
	return s.Members[i], true
}

func (s *State) setMember(m Member) {
	i, ok := slices.BinarySearchFunc(s.Members, m.Audience, func(x Member, k string) int { return cmpStr(x.Audience, k) })
	if ok {
		s.Members[i] = m
	} else {
		s.Members = slices.Insert(s.Members, i, m)
	}
}

func (s *State) removeMember(name string) {
	s.Members = slices.DeleteFunc(s.Members, func(m Member) bool { return m.Audience == name })
}

func cmpStr(a, b string) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// add folds one matching event (time t, value v, id) into the aggregate.
func (a *AggState) add(agg rules.Agg, t int64, v float64, id []byte) {
	if agg.Window > 0 {
		e := AggEntry{T: t, V: v, ID: bytes.Clone(id)}
		i, found := sort.Find(len(a.Entries), func(i int) int { return cmpEntry(&e, &a.Entries[i]) })
		if !found {
			a.Entries = slices.Insert(a.Entries, i, e)
		}
		return
	}
	if a.N == 0 {
		a.Min, a.Max, a.First, a.Last = v, v, t, t
	} else {
		a.Min, a.Max = math.Min(a.Min, v), math.Max(a.Max, v)
		a.First, a.Last = min(a.First, t), max(a.Last, t)
	}
	a.N++
	a.Sum += v
}

func cmpEntry(a, b *AggEntry) int {
	if a.T != b.T {
		if a.T < b.T {
			return -1
		}
		return 1
	}
	return bytes.Compare(a.ID, b.ID)
}

// join folds o (the same aggregate of a profile merged into this one).
func (a *AggState) join(agg rules.Agg, o *AggState) {
	if agg.Window > 0 {
		for _, e := range o.Entries {
			a.add(agg, e.T, e.V, e.ID)
		}
		return
	}
	if o.N == 0 {
		return
	}
	if a.N == 0 {
		*a = AggState{Key: a.Key, N: o.N, Sum: o.Sum, Min: o.Min, Max: o.Max, First: o.First, Last: o.Last}
		return
	}
	a.N += o.N
	a.Sum += o.Sum
	a.Min, a.Max = math.Min(a.Min, o.Min), math.Max(a.Max, o.Max)
	a.First, a.Last = min(a.First, o.First), max(a.Last, o.Last)
}

// evict drops entries that can never count again: dated at or before
// now − window.
func (a *AggState) evict(agg rules.Agg, now int64) {
	if agg.Window <= 0 {
		return
	}
	cut := now - agg.Window
	i := sort.Search(len(a.Entries), func(i int) bool { return a.Entries[i].T > cut })
	if i > 0 {
		a.Entries = slices.Delete(a.Entries, 0, i)
	}
}

// value computes the aggregate at now: the events in (now − window, now].
func (a *AggState) value(agg rules.Agg, now int64) (float64, bool) {
	if agg.Window <= 0 {
		switch agg.Kind {
		case rules.Count:
			return float64(a.N), true
		case rules.Sum:
			return a.Sum, true
		}
		if a.N == 0 {
			return 0, false
		}
		switch agg.Kind {
		case rules.Avg:
			return a.Sum / float64(a.N), true
		case rules.Min:
			return a.Min, true
		case rules.Max:
			return a.Max, true
		case rules.First:
			return float64(a.First), true
		case rules.Last:
			return float64(a.Last), true
		}
		return 0, false
	}
	var n int64
	var sum, lo, hi float64
	var first, last int64
	for _, e := range a.Entries {
		if e.T <= now-agg.Window || e.T > now {
			continue
		}
		if n == 0 {
			lo, hi, first, last = e.V, e.V, e.T, e.T
		} else {
			lo, hi = math.Min(lo, e.V), math.Max(hi, e.V)
			first, last = min(first, e.T), max(last, e.T)
		}
		n++
		sum += e.V
	}
	switch agg.Kind {
	case rules.Count:
		return float64(n), true
	case rules.Sum:
		return sum, true
	}
	if n == 0 {
		return 0, false
	}
	switch agg.Kind {
	case rules.Avg:
		return sum / float64(n), true
	case rules.Min:
		return lo, true
	case rules.Max:
		return hi, true
	case rules.First:
		return float64(first), true
	case rules.Last:
		return float64(last), true
	}
	return 0, false
}

// nextChange is the earliest time after now at which the aggregate's value
// changes by time alone: an entry leaving the window, or a future-dated one
// entering it. 0 when none.
func (a *AggState) nextChange(agg rules.Agg, now int64) int64 {
	if agg.Window <= 0 {
		return 0
	}
	next := int64(0)
	for _, e := range a.Entries {
		var t int64
		if e.T > now {
			t = e.T // enters when now reaches it
		} else {
			t = e.T + agg.Window // leaves when now − window reaches it
		}
		if t > now && (next == 0 || t < next) {
			next = t
		}
	}
	return next
}

// Join folds from, the state of a profile merged into this one, into s.
// Aggregates both states have join (windowed entries by union, totals by
// sum); an aggregate only one of them has is dropped, to be rebuilt from the
// merged history on the next evaluation. Memberships are not joined: the
// merged profile is re-evaluated with Step.All.
func (s *Set) Join(into, from *State) {
	kept := into.Aggs[:0]
	for _, a := range into.Aggs {
		g, ok := s.aggs[a.Key]
		fa := from.agg(a.Key)
		if !ok || fa == nil {
			continue
		}
		a.join(g, fa)
		kept = append(kept, a)
	}
	into.Aggs = kept
}
