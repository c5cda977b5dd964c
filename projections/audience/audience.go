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

	// The dependency index (see Step.Settled).
	pos        int             // index in Set.list
	traitNames map[string]bool // top-level traits the rule reads
	aggIdx     []int           // indices in Set.sorted of the aggregates (and funnel steps) it reads
	// stable: the result depends on no clock (rules.Rule.UsesTime is
	// false), the audience is outside every in_audience cycle, and the rule
	// is false for a profile with no inputs at all (no events, traits,
	// stats or memberships). On a settled profile such an audience's
	// membership always equals its rule's value, so it needs evaluating
	// only when one of its inputs changed.
	stable bool
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

	// The dependency index.
	sorted  []keyedAgg        // every aggregate (funnel steps included), by key
	aggPos  map[string]int    // key → index in sorted
	intern  map[string]string // aggregate keys and audience names, so decoding does not allocate them
	acyclic bool              // no in_audience cycle among the audiences
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
		a := &Audience{Def: d, Rule: r, events: map[string]bool{}, traits: len(r.Traits()) > 0, deps: r.Audiences(),
			traitNames: map[string]bool{}}
		for _, e := range r.Events() {
			a.events[e] = true
		}
		for _, t := range r.Traits() {
			a.traitNames[t] = true
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
	s.acyclic = true
	var visit func(a *Audience)
	visit = func(a *Audience) {
		if state[a.Def.Name] != 0 {
			return
		}
		state[a.Def.Name] = 1
		for _, d := range a.deps {
			if da, ok := s.byName[d]; ok {
				da.dependents = append(da.dependents, a.Def.Name)
				if state[d] == 1 {
					s.acyclic = false
				}
				visit(da)
			}
		}
		state[a.Def.Name] = 2
		s.list = append(s.list, a)
	}
	for _, d := range sorted {
		visit(s.byName[d.Name])
	}
	s.buildIndex()
	return s, nil
}

// buildIndex builds the dependency index: aggregates in key order, what each
// audience reads, and which audiences are stable.
func (s *Set) buildIndex() {
	s.aggPos = make(map[string]int, len(s.aggs))
	s.intern = make(map[string]string, len(s.aggs)+len(s.list))
	for _, k := range sortedKeys(s.aggs) {
		s.aggPos[k] = len(s.sorted)
		s.sorted = append(s.sorted, keyedAgg{k, s.aggs[k]})
		s.intern[k] = k
	}
	for i, a := range s.list {
		a.pos = i
		s.intern[a.Def.Name] = a.Def.Name
		for _, g := range a.Rule.Aggregates() {
			a.aggIdx = append(a.aggIdx, s.aggPos[s.keys[g]])
		}
		for _, f := range a.Rule.Funnels() {
			for _, k := range s.funnelStepKeys(f) {
				a.aggIdx = append(a.aggIdx, s.aggPos[k])
			}
		}
		if s.acyclic && !a.Rule.UsesTime() {
			in, err := a.Rule.Eval(emptyFacts{})
			a.stable = err == nil && !in
		}
	}
}

// emptyFacts are the facts of a profile with no inputs: no events, traits,
// stats or memberships.
type emptyFacts struct{}

func (emptyFacts) Now() int64 { return 0 }
func (emptyFacts) Agg(g rules.Agg) (float64, bool) {
	return 0, g.Kind == rules.Count || g.Kind == rules.Sum
}
func (emptyFacts) Oldest(rules.Agg) (int64, bool)                 { return 0, false }
func (emptyFacts) FunnelStart(rules.Funnel) (int64, bool)         { return 0, false }
func (emptyFacts) Trait(string) (any, bool)                       { return nil, false }
func (emptyFacts) Profile(string) (int64, bool)                   { return 0, false }
func (emptyFacts) InAudience(string) bool                         { return false }
func (emptyFacts) Prediction(string, int64) (float64, bool)       { return 0, false }
func (emptyFacts) Recommendations(string, int64) ([]string, bool) { return nil, false }

// Stable reports whether the audience is evaluated only when its inputs
// change on a settled profile (Step.Settled): its rule does not depend on
// time, it is outside every in_audience cycle, and it is false for a
// profile with no inputs.
func (a *Audience) Stable() bool { return a.stable }

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

// ReadsPredictions reports whether a rule of the set reads predictions.
func (s *Set) ReadsPredictions() bool {
	for _, a := range s.list {
		if len(a.Rule.Predictions()) > 0 {
			return true
		}
	}
	return false
}

// Get returns the audience named name.
func (s *Set) Get(name string) (*Audience, bool) { a, ok := s.byName[name]; return a, ok }

// Event is a new event of the profile, as the evaluation sees it.
type Event struct {
	Name      string // track event name; "" for other kinds
	Time      int64  // event time, Unix ms
	ID        []byte
	Props     map[string]any
	HasTraits bool // the event set traits
	// Traits names the traits the event set (top level), when the caller
	// knows them; nil with HasTraits means any trait may have changed.
	Traits []string
}

// Step is the input of one evaluation of one profile.
type Step struct {
	Now    int64   // log time, Unix ms
	Events []Event // the profile's new events in this step
	// Reason names what caused the step ("event", "time", "backfill",
	// "merge", ...) for transitions not caused by one event.
	Reason string
	// All re-evaluates every audience (merges, backfills); otherwise only
	// those whose rules read what the events changed.
	All bool
	// Timer says a timer of the profile fired: every audience is
	// re-evaluated, or on a settled profile those that are not stable
	// (Audience.Stable) and those whose inputs the events changed.
	Timer bool
	// Settled says the profile's state was last written under this very
	// set (a definition change bumps the generation; the partition's
	// backfill has re-evaluated the profile since) and every audience was
	// evaluated at least once since. Then a stable audience's membership is
	// its rule's value over the current inputs, so Apply skips it unless an
	// input of its own changed this step: an aggregate it reads got an
	// event (name, filter and numeric property matching), a trait it reads
	// was set, its rule reads the profile's stats and there are events, or
	// an audience it reads changed membership. The result is the same as
	// without Settled (TestAudienceIndexEquivalence).
	Settled bool
	// Traits reads the profile's current trait values (plaintext).
	Traits func(name string) (any, bool)
	// Predictions returns the profile's score name (rules.Facts.Prediction)
	// as of time at; nil: none. Called only by rules that read predictions.
	Predictions func(name string, at int64) (float64, bool)
	// Recommendations returns the profile's next best products under the
	// named recommend model (rules.Facts.Recommendations) as of time at;
	// nil: none. Called only by rules that read them.
	Recommendations func(model string, at int64) ([]string, bool)
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
	var fedBuf [64]bool // aggregates (by index in s.sorted) that got an event
	fed := fedBuf[:0]
	if len(s.sorted) <= len(fedBuf) {
		fed = fedBuf[:len(s.sorted)]
	} else {
		fed = make([]bool, len(s.sorted))
	}
	for _, ev := range step.Events {
		for _, ka := range s.byEvent[ev.Name] {
			i := s.aggPos[ka.key]
			if fresh != nil && fresh[i] {
				fed[i] = true // built from the history, this event included
				continue
			}
			if addEvent(st.agg(ka.key), ka.agg, ev) {
				fed[i] = true
			}
		}
	}
	unknown := false
	for i := range st.Aggs {
		if g, ok := s.aggs[st.Aggs[i].Key]; ok {
			st.Aggs[i].evict(g, step.Now)
		} else {
			unknown = true
		}
	}
	var out []Transition
	if !step.Preview && unknown {
		st.Aggs = slices.DeleteFunc(st.Aggs, func(a AggState) bool { _, ok := s.aggs[a.Key]; return !ok })
	}
	// Memberships of audiences that no longer exist end.
	if !step.Preview {
		for i := 0; i < len(st.Members); {
			m := st.Members[i]
			if _, ok := s.byName[m.Audience]; ok {
				i++
				continue
			}
			st.Members = slices.Delete(st.Members, i, i+1)
			out = append(out, Transition{Audience: m.Audience, Version: m.Version, Reason: "audience deleted", Time: step.Now})
		}
	}
	hasTraits := false
	for _, ev := range step.Events {
		hasTraits = hasTraits || ev.HasTraits
	}
	var dueBuf [64]bool
	due := dueBuf[:0]
	if len(s.list) <= len(dueBuf) {
		due = dueBuf[:len(s.list)]
	} else {
		due = make([]bool, len(s.list))
	}
	for i, a := range s.list {
		if !(step.All || step.Timer || (hasTraits && a.traits) || a.readsProfile() && len(step.Events) > 0 || a.readsAny(step.Events)) {
			continue
		}
		if step.Settled && !step.All && a.stable && !a.inputsChanged(step, fed) {
			continue // its membership is its rule's value: it cannot change
		}
		due[i] = true
	}
	var f *facts
	reason := step.Reason
	if reason == "" && len(step.Events) == 1 {
		reason = "event"
	}
	for i, a := range s.list {
		if !due[i] {
			continue
		}
		if f == nil {
			f = &facts{set: s, st: st, step: step}
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
			due[s.byName[d].pos] = true
		}
	}
	st.Timer = s.nextTimer(st, step)
	return out, nil
}

// readsProfile reports whether the rule reads what any event of the
// profile may change besides its aggregates: the profile's stats, or its
// predictions (a purchase changes them, an event with a product the next
// best products; other events are cheap to pass).
func (a *Audience) readsProfile() bool {
	return len(a.Rule.Profile()) > 0 || len(a.Rule.Predictions()) > 0
}

func (a *Audience) readsAny(events []Event) bool {
	for i := range events {
		if a.events[events[i].Name] {
			return true
		}
	}
	return false
}

// inputsChanged reports whether the step changed an input of a stable
// audience other than memberships (those are followed through dependents):
// an aggregate it reads got an event, a trait it reads was set, or it reads
// the profile's stats and there are events. fed marks the aggregates (by
// index in Set.sorted) that got an event; nil: none did.
func (a *Audience) inputsChanged(step Step, fed []bool) bool {
	for _, i := range a.aggIdx {
		if i < len(fed) && fed[i] {
			return true
		}
	}
	if len(step.Events) > 0 && a.readsProfile() {
		return true
	}
	if len(a.traitNames) > 0 {
		for i := range step.Events {
			ev := &step.Events[i]
			if !ev.HasTraits {
				continue
			}
			if ev.Traits == nil {
				return true
			}
			for _, t := range ev.Traits {
				if a.traitNames[t] {
					return true
				}
			}
		}
	}
	return false
}

// Quiet reports whether evaluating a settled profile (Step.Settled) for
// events (no merge, no timer) could change nothing but the aggregates'
// evictions and the timer: no event feeds an aggregate and no audience
// would be evaluated. The caller then checks the stored state with
// StateUnchanged to skip the evaluation altogether.
func (s *Set) Quiet(events []Event) bool {
	for i := range events {
		ev := &events[i]
		for _, ka := range s.byEvent[ev.Name] {
			if feeds(ka.agg, *ev) {
				return false
			}
		}
	}
	step := Step{Events: events, Settled: true}
	hasTraits := false
	for i := range events {
		hasTraits = hasTraits || events[i].HasTraits
	}
	for _, a := range s.list {
		if !((hasTraits && a.traits) || a.readsProfile() && len(events) > 0 || a.readsAny(events)) {
			continue
		}
		if !a.stable || a.inputsChanged(step, nil) {
			return false
		}
	}
	return true
}

// ensureAggs creates the aggregates the state lacks from the profile's
// history; it returns which (by index in s.sorted; nil: none), since the
// step's events are already in the history and must not be added again.
func (s *Set) ensureAggs(st *State, step Step) ([]bool, error) {
	var missingBuf [32]int
	missing := missingBuf[:0] // indices in s.sorted
	j := 0                    // st.Aggs and s.sorted are both sorted by key
	for i, ka := range s.sorted {
		for j < len(st.Aggs) && st.Aggs[j].Key < ka.key {
			j++
		}
		if j == len(st.Aggs) || st.Aggs[j].Key != ka.key {
			missing = append(missing, i)
		}
	}
	if len(missing) == 0 {
		return nil, nil
	}
	// Merge the new aggregates into st.Aggs (both sorted by key): what
	// adding them one by one gives, in one allocation.
	aggs := make([]AggState, 0, len(st.Aggs)+len(missing))
	for a, m := 0, 0; a < len(st.Aggs) || m < len(missing); {
		if m < len(missing) && (a == len(st.Aggs) || s.sorted[missing[m]].key < st.Aggs[a].Key) {
			aggs = append(aggs, AggState{Key: s.sorted[missing[m]].key})
			m++
		} else {
			aggs = append(aggs, st.Aggs[a])
			a++
		}
	}
	st.Aggs = aggs
	if step.History == nil {
		return nil, nil // no history: the step's events are added as usual
	}
	fresh := make([]bool, len(s.sorted))
	for _, i := range missing {
		fresh[i] = true
	}
	err := step.History(func(ev Event) bool {
		for _, i := range missing {
			if ka := s.sorted[i]; ka.agg.Event == ev.Name {
				addEvent(st.agg(ka.key), ka.agg, ev)
			}
		}
		return true
	})
	return fresh, err
}

// addEvent folds ev into a if the aggregate reads it: its name and filter
// match and, for sums and extremes, its property is a number. It reports
// whether it did.
func addEvent(a *AggState, g rules.Agg, ev Event) bool {
	if !g.Matches(ev.Name, ev.Props) {
		return false
	}
	v := 0.0
	if g.Kind >= rules.Sum && g.Kind <= rules.Max {
		var ok bool
		if v, ok = g.Value(ev.Props); !ok {
			return false
		}
	}
	a.add(g, ev.Time, v, ev.ID)
	return true
}

// feeds reports whether addEvent would fold ev into the aggregate g.
func feeds(g rules.Agg, ev Event) bool {
	if !g.Matches(ev.Name, ev.Props) {
		return false
	}
	if g.Kind >= rules.Sum && g.Kind <= rules.Max {
		_, ok := g.Value(ev.Props)
		return ok
	}
	return true
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

func (f *facts) Prediction(name string, at int64) (float64, bool) {
	if f.step.Predictions == nil {
		return 0, false
	}
	return f.step.Predictions(name, at)
}

func (f *facts) Recommendations(model string, at int64) ([]string, bool) {
	if f.step.Recommendations == nil {
		return nil, false
	}
	return f.step.Recommendations(model, at)
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
	var buf [rules.MaxSteps][]AggEntry
	var steps [][]AggEntry
	if len(fn.Steps) <= len(buf) {
		steps = buf[:len(fn.Steps)]
	} else {
		steps = make([][]AggEntry, len(fn.Steps))
	}
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
