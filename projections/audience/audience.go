// Package audience evaluates audiences: rule-based segments a profile is in
// exactly while its rule holds. It keeps, per profile, the incremental
// aggregates the rules read (windowed aggregates keep the matching events
// inside their window; all-time ones keep running totals) and the
// memberships, and turns each evaluation into entry and exit transitions.
//
// The package is pure and deterministic: time is the log time passed in
// (Step.Now), never the wall clock.
package audience

import (
	"bytes"
	"fmt"
	"slices"
	"sort"

	"github.com/aurumcdp/aurum/rules"
)

// Definition is an audience as defined through the API (and on the log).
type Definition struct {
	Name        string `msgpack:"n" json:"name"`
	Description string `msgpack:"d,omitempty" json:"description,omitempty"`
	Rule        string `msgpack:"r" json:"rule"`
	Version     int64  `msgpack:"v" json:"version"`
	Created     int64  `msgpack:"c" json:"created_ms"`
	Updated     int64  `msgpack:"u" json:"updated_ms"`
}

// Audience is a compiled definition.
type Audience struct {
	Def        Definition
	Rule       *rules.Rule
	events     map[string]bool
	traits     bool
	deps       []string
	dependents []string
}

// Set is the compiled set of live audiences in evaluation order: an
// audience comes after those its rule references with in_audience (an
// audience in a reference cycle is evaluated in name order and reads the
// memberships as they stand).
type Set struct {
	list    []*Audience
	byName  map[string]*Audience
	aggs    map[string]rules.Agg // key → aggregate, over every audience
	byEvent map[string][]keyedAgg
	keys    map[rules.Agg]string  // aggregate → key, so evaluation does not rebuild keys
	funnels map[funnelID][]string // compiled funnel → its step keys (likewise)
}

// funnelID identifies a funnel of one of the set's compiled rules without
// building its key: the compiled rule hands FunnelStart the same Steps
// slice every time, and the set keeps that slice alive (so its address
// cannot be reused by another funnel while the set exists).
type funnelID struct {
	steps          *string
	n              int
	within, window int64
}

func idOfFunnel(f rules.Funnel) (funnelID, bool) {
	if len(f.Steps) == 0 {
		return funnelID{}, false
	}
	return funnelID{&f.Steps[0], len(f.Steps), f.Within, f.Window}, true
}

// funnelStepKeys returns the state keys of the steps of f.
func (s *Set) funnelStepKeys(f rules.Funnel) []string {
	if id, ok := idOfFunnel(f); ok {
		if keys, ok := s.funnels[id]; ok {
			return keys
		}
	}
	keys := make([]string, len(f.Steps))
	for i := range f.Steps {
		keys[i] = funnelStepKey(f, i)
	}
	return keys
}

// keyOf returns the state key of an aggregate of one of the set's rules.
func (s *Set) keyOf(g rules.Agg) string {
	if k, ok := s.keys[g]; ok {
		return k
	}
	return g.Key()
}

// Compile compiles defs. A definition whose rule does not compile is an
// error (definitions are validated before they reach the log).
func Compile(defs []Definition) (*Set, error) {
	s := &Set{byName: map[string]*Audience{}, aggs: map[string]rules.Agg{}, byEvent: map[string][]keyedAgg{}, keys: map[rules.Agg]string{}, funnels: map[funnelID][]string{}}
	sorted := slices.Clone(defs)
	sort.Slice(sorted, func(i, j int) bool { return sorted[i].Name < sorted[j].Name })
	for _, d := range sorted {
		r, err := rules.Compile(d.Rule)
		if err != nil {
			return nil, fmt.Errorf("audience %q: %w", d.Name, err)
		}
		a := &Audience{Def: d, Rule: r, events: map[string]bool{}, traits: len(r.Traits()) > 0, deps: r.Audiences()}
		for _, e := range r.Events() {
			a.events[e] = true
		}
		for _, g := range r.Aggregates() {
			s.keys[g] = g.Key()
			s.addAgg(s.keys[g], g)
		}
		for _, f := range r.Funnels() {
			// Each step keeps its events of the funnel's window, as a
			// windowed count under a key of its own.
			keys := make([]string, len(f.Steps))
			for i, step := range f.Steps {
				keys[i] = funnelStepKey(f, i)
				s.addAgg(keys[i], rules.Agg{Kind: rules.Count, Event: step, Window: f.Window})
			}
			if id, ok := idOfFunnel(f); ok {
				s.funnels[id] = keys
			}
		}
		s.byName[d.Name] = a
	}
	// Dependency order (depth-first, names in order; cycles broken by name).
	state := map[string]int{} // 0 new, 1 visiting, 2 done
	var visit func(a *Audience)
	visit = func(a *Audience) {
		if state[a.Def.Name] != 0 {
			return
		}
		state[a.Def.Name] = 1
		for _, d := range a.deps {
			if da, ok := s.byName[d]; ok {
				da.dependents = append(da.dependents, a.Def.Name)
				visit(da)
			}
		}
		state[a.Def.Name] = 2
		s.list = append(s.list, a)
	}
	for _, d := range sorted {
		visit(s.byName[d.Name])
	}
	return s, nil
}

func (s *Set) addAgg(key string, g rules.Agg) {
	if _, ok := s.aggs[key]; !ok {
		s.aggs[key] = g
		s.byEvent[g.Event] = append(s.byEvent[g.Event], keyedAgg{key, g})
	}
}

func funnelStepKey(f rules.Funnel, i int) string { return fmt.Sprintf("%s#%d", f.Key(), i) }

// keyedAgg is an aggregate with the key its state is stored under.
type keyedAgg struct {
	key string
	agg rules.Agg
}

// Audiences lists the compiled audiences in evaluation order.
func (s *Set) Audiences() []*Audience { return s.list }

// Get returns the audience named name.
func (s *Set) Get(name string) (*Audience, bool) { a, ok := s.byName[name]; return a, ok }

// Event is a new event of the profile, as the evaluation sees it.
type Event struct {
	Name      string // track event name; "" for other kinds
	Time      int64  // event time, Unix ms
	ID        []byte
	Props     map[string]any
	HasTraits bool // the event set traits
}

// Step is the input of one evaluation of one profile.
type Step struct {
	Now    int64   // log time, Unix ms
	Events []Event // the profile's new events in this step
	// Reason names what caused the step ("event", "time", "backfill",
	// "merge", ...) for transitions not caused by one event.
	Reason string
	// All re-evaluates every audience (merges, backfills, timers);
	// otherwise only those whose rules read what the events changed.
	All bool
	// Traits reads the profile's current trait values (plaintext).
	Traits func(name string) (any, bool)
	// Stats returns the profile's first and last seen times (Unix ms) and
	// whether it has events at all; called only by rules that read them.
	Stats func() (first, last int64, seen bool)
	// History iterates the profile's stored events (any order), to
	// initialise an aggregate the state does not have yet (a new audience).
	History func(fn func(Event) bool) error
	// Preview evaluates without housekeeping: memberships of audiences
	// outside the set stay (in_audience reads them) and aggregates outside
	// the set are kept.
	Preview bool
}

// Transition is a change of membership.
type Transition struct {
	Audience string
	Version  int64
	Entered  bool
	Reason   string
	Time     int64
}

// Apply folds the step's events into st's aggregates and re-evaluates the
// audiences concerned, returning the transitions in evaluation order.
func (s *Set) Apply(st *State, step Step) ([]Transition, error) {
	fresh, err := s.ensureAggs(st, step)
	if err != nil {
		return nil, err
	}
	changed := map[string]bool{}
	for _, ev := range step.Events {
		changed[ev.Name] = true
		for _, ka := range s.byEvent[ev.Name] {
			if fresh[ka.key] {
				continue
			}
			addEvent(st.agg(ka.key), ka.agg, ev)
		}
	}
	for i := range st.Aggs {
		if g, ok := s.aggs[st.Aggs[i].Key]; ok {
			st.Aggs[i].evict(g, step.Now)
		}
	}
	var out []Transition
	if !step.Preview {
		st.Aggs = slices.DeleteFunc(st.Aggs, func(a AggState) bool { _, ok := s.aggs[a.Key]; return !ok })
	}
	// Memberships of audiences that no longer exist end.
	for _, m := range slices.Clone(st.Members) {
		if step.Preview {
			break
		}
		if _, ok := s.byName[m.Audience]; !ok {
			st.removeMember(m.Audience)
			out = append(out, Transition{Audience: m.Audience, Version: m.Version, Reason: "audience deleted", Time: step.Now})
		}
	}
	hasTraits := false
	for _, ev := range step.Events {
		hasTraits = hasTraits || ev.HasTraits
	}
	due := map[string]bool{}
	for _, a := range s.list {
		if step.All || (hasTraits && a.traits) || len(a.Rule.Profile()) > 0 && len(step.Events) > 0 || a.readsAny(changed) {
			due[a.Def.Name] = true
		}
	}
	f := &facts{set: s, st: st, step: step}
	reason := step.Reason
	if reason == "" && len(step.Events) == 1 {
		reason = "event"
	}
	for _, a := range s.list {
		if !due[a.Def.Name] {
			continue
		}
		in, err := a.Rule.Eval(f)
		if err != nil {
			return nil, fmt.Errorf("audience %q: %w", a.Def.Name, err)
		}
		m, was := st.member(a.Def.Name)
		switch {
		case in && !was:
			st.setMember(Member{Audience: a.Def.Name, Since: step.Now, Version: a.Def.Version})
			out = append(out, Transition{Audience: a.Def.Name, Version: a.Def.Version, Entered: true, Reason: reason, Time: step.Now})
		case !in && was:
			st.removeMember(a.Def.Name)
			out = append(out, Transition{Audience: a.Def.Name, Version: a.Def.Version, Reason: reason, Time: step.Now})
		case in && m.Version != a.Def.Version:
			m.Version = a.Def.Version
			st.setMember(m)
		default:
			continue
		}
		for _, d := range a.dependents { // a membership changed: audiences reading it follow
			due[d] = true
		}
	}
	st.Timer = s.nextTimer(st, step)
	return out, nil
}

func (a *Audience) readsAny(events map[string]bool) bool {
	for e := range events {
		if a.events[e] {
			return true
		}
	}
	return false
}

// ensureAggs creates the aggregates the state lacks from the profile's
// history; it returns their keys (the step's events are already in the
// history, so they must not be added again).
func (s *Set) ensureAggs(st *State, step Step) (map[string]bool, error) {
	var missing []keyedAgg
	for _, k := range sortedKeys(s.aggs) {
		if st.agg(k) == nil {
			missing = append(missing, keyedAgg{k, s.aggs[k]})
		}
	}
	if len(missing) == 0 {
		return nil, nil
	}
	for _, ka := range missing {
		st.addAgg(AggState{Key: ka.key})
	}
	if step.History == nil {
		return nil, nil // no history: the step's events are added as usual
	}
	fresh := map[string]bool{}
	for _, ka := range missing {
		fresh[ka.key] = true
	}
	err := step.History(func(ev Event) bool {
		for _, ka := range missing {
			if ka.agg.Event == ev.Name {
				addEvent(st.agg(ka.key), ka.agg, ev)
			}
		}
		return true
	})
	return fresh, err
}

// addEvent folds ev into a if the aggregate reads it: its name and filter
// match and, for sums and extremes, its property is a number.
func addEvent(a *AggState, g rules.Agg, ev Event) {
	if !g.Matches(ev.Name, ev.Props) {
		return
	}
	v := 0.0
	if g.Kind >= rules.Sum && g.Kind <= rules.Max {
		var ok bool
		if v, ok = g.Value(ev.Props); !ok {
			return
		}
	}
	a.add(g, ev.Time, v, ev.ID)
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// nextTimer is the earliest time after now at which an audience of the
// profile could change with no new event: what the rules foresee
// (rules.Rule.NextChange: windows running out, days passing), and events
// dated in the future reaching now.
func (s *Set) nextTimer(st *State, step Step) int64 {
	next := int64(0)
	consider := func(t int64) {
		if t > step.Now && (next == 0 || t < next) {
			next = t
		}
	}
	f := &facts{set: s, st: st, step: step}
	for _, a := range s.list {
		if a.Rule.UsesTime() {
			consider(a.Rule.NextChange(f))
		}
	}
	for i := range st.Aggs {
		for _, e := range st.Aggs[i].Entries {
			if e.T > step.Now {
				consider(e.T)
				break // entries are sorted: the first future one is the earliest
			}
		}
	}
	return next
}

// facts implements rules.Facts over a profile's state.
type facts struct {
	set  *Set
	st   *State
	step Step
}

func (f *facts) Now() int64 { return f.step.Now }

func (f *facts) Agg(g rules.Agg) (float64, bool) {
	a := f.st.agg(f.set.keyOf(g))
	if a == nil {
		return 0, g.Kind == rules.Count || g.Kind == rules.Sum
	}
	return a.value(g, f.step.Now)
}

func (f *facts) Trait(name string) (any, bool) {
	if f.step.Traits == nil {
		return nil, false
	}
	return f.step.Traits(name)
}

func (f *facts) Profile(field string) (int64, bool) {
	if f.step.Stats == nil {
		return 0, false
	}
	first, last, seen := f.step.Stats()
	if !seen {
		return 0, false
	}
	switch field {
	case "first_seen":
		return first, true
	case "last_seen":
		return last, true
	}
	return 0, false
}

func (f *facts) InAudience(name string) bool {
	_, ok := f.st.member(name)
	return ok
}

func (f *facts) Oldest(g rules.Agg) (int64, bool) {
	a := f.st.agg(f.set.keyOf(g))
	if a == nil {
		return 0, false
	}
	for _, e := range a.Entries {
		if g.InWindow(e.T, f.step.Now) {
			return e.T, true
		}
	}
	return 0, false
}

// FunnelStart finds the greatest t1 such that the profile has distinct
// events of the steps in order, t1 <= t2 <= ... <= tn <= now, tn − t1 <
// Within (rules.Facts). Step events are kept for the funnel's window, which
// is all a start inside the window needs.
func (f *facts) FunnelStart(fn rules.Funnel) (int64, bool) {
	steps := make([][]AggEntry, len(fn.Steps))
	for i, key := range f.set.funnelStepKeys(fn) {
		a := f.st.agg(key)
		if a == nil {
			return 0, false
		}
		steps[i] = a.Entries
	}
	now := f.step.Now
	for i := len(steps[0]) - 1; i >= 0; i-- { // candidate starts, latest first
		first := steps[0][i]
		if first.T > now {
			continue
		}
		prev := first
		ok := true
		for j := 1; j < len(steps) && ok; j++ {
			ok = false
			for _, e := range steps[j] { // earliest event after prev
				if e.T > now {
					break
				}
				if e.T > prev.T || e.T == prev.T && (fn.Steps[j] != fn.Steps[j-1] || bytes.Compare(e.ID, prev.ID) > 0) {
					if e.T-first.T < fn.Within {
						prev, ok = e, true
					}
					break
				}
			}
		}
		if ok {
			return first.T, true
		}
	}
	return 0, false
}
