// Package rules is Aurum's audience rule language: it compiles a rule such as
//
//	count("Order Completed", "90d") >= 1 and count("Order Refunded", "90d") == 0
//
// into a Rule that says which facts it reads (event aggregates, funnels, traits,
// profile stats, other audiences) and evaluates it against a profile's Facts.
//
// The package is pure: no I/O, no clock (the time comes from Facts.Now, Unix
// ms), no global state, deterministic. The language is described in
// docs/rules.md.
package rules

import (
	"fmt"
	"sort"
	"strconv"
	"strings"
)

// Limits. Compile refuses rules beyond them.
const (
	MaxSource     = 4096 // bytes of source
	MaxDepth      = 32   // nesting depth (parentheses, calls, lists, not, unary minus)
	MaxAggregates = 64   // distinct aggregates plus funnels
	MaxPattern    = 256  // bytes of a matches() pattern
	MaxList       = 256  // elements of a list literal
	MaxSteps      = 16   // steps of a funnel
	MaxCost       = 2000 // Rule.Cost
	MaxWindow     = 100 * 366 * day
)

const day = 86400000

// Error is a compile error at a 1-based line and column (columns count
// Unicode code points).
type Error struct {
	Line, Column int
	Reason       string
}

func (e *Error) Error() string {
	return fmt.Sprintf("line %d, column %d: %s", e.Line, e.Column, e.Reason)
}

// AggKind is the kind of an event aggregate.
type AggKind int

// The aggregate kinds.
const (
	Count AggKind = iota // number of matching events (0 when none)
	Sum                  // sum of a numeric property (0 when none)
	Avg                  // mean of a numeric property
	Min                  // least value of a numeric property
	Max                  // greatest value of a numeric property
	First                // time (Unix ms) of the earliest matching event
	Last                 // time (Unix ms) of the latest matching event
)

var aggNames = [...]string{"count", "sum", "avg", "min", "max", "first_seen", "last_seen"}

func (k AggKind) String() string {
	if k < 0 || int(k) >= len(aggNames) {
		return "AggKind(" + strconv.Itoa(int(k)) + ")"
	}
	return aggNames[k]
}

// Agg is one event aggregate a rule reads. Events that count are those named
// Event, whose time lies in the window (see InWindow) and that match Filter.
// For Sum/Avg/Min/Max only events whose Property is a number count (see Value).
type Agg struct {
	Kind     AggKind
	Event    string
	Property string // top-level property name, for Sum/Avg/Min/Max
	Window   int64  // milliseconds; 0 = all time
	Filter   *Filter
}

// Key is a stable canonical key of the aggregate, e.g.
// `count("Order Refunded","180d",properties.reason == "damaged")`.
func (a Agg) Key() string {
	var b strings.Builder
	b.WriteString(a.Kind.String())
	b.WriteByte('(')
	b.WriteString(strconv.Quote(a.Event))
	if a.Kind >= Sum && a.Kind <= Max {
		b.WriteByte(',')
		b.WriteString(strconv.Quote(a.Property))
	}
	if a.Window > 0 {
		b.WriteByte(',')
		b.WriteString(strconv.Quote(FormatWindow(a.Window)))
	}
	if a.Filter != nil {
		b.WriteByte(',')
		b.WriteString(a.Filter.String())
	}
	b.WriteByte(')')
	return b.String()
}

// Matches reports whether an event named name with properties props is one the
// aggregate reads (time aside; see InWindow).
func (a Agg) Matches(name string, props map[string]any) bool {
	return name == a.Event && (a.Filter == nil || a.Filter.Match(props))
}

// InWindow reports whether an event at time t (Unix ms) lies in the
// aggregate's window at now: t in (now − Window, now], or t <= now when Window
// is 0. Events later than now never count.
func (a Agg) InWindow(t, now int64) bool {
	return t <= now && (a.Window == 0 || t > now-a.Window)
}

// Value returns the numeric value of the aggregate's property in props (for
// Sum/Avg/Min/Max). ok is false when the property is absent or not a number
// (int*, uint*, float*, json.Number); such events are skipped by those kinds.
func (a Agg) Value(props map[string]any) (float64, bool) {
	v, ok := props[a.Property]
	if !ok {
		return 0, false
	}
	return toNumber(v)
}

// Funnel is a funnel condition: steps in order, each within Within ms of the
// first step, with the first step in the last Window ms. See Facts.FunnelStart.
type Funnel struct {
	Steps  []string
	Within int64
	Window int64
}

// Key is a stable canonical key, e.g. `funnel(["Product Viewed","Product Added"],"2h","2h")`.
func (f Funnel) Key() string {
	var b strings.Builder
	b.WriteString("funnel([")
	for i, s := range f.Steps {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(strconv.Quote(s))
	}
	b.WriteString("],")
	b.WriteString(strconv.Quote(FormatWindow(f.Within)))
	b.WriteByte(',')
	b.WriteString(strconv.Quote(FormatWindow(f.Window)))
	b.WriteByte(')')
	return b.String()
}

// Filter is a compiled event filter: a condition over properties.<name>.
type Filter struct {
	root *node
	src  string
}

// String returns the canonical form of the filter.
func (f *Filter) String() string { return f.src }

// Match evaluates the filter against one event's properties. props are as
// decoded from msgpack or JSON; numbers may be any Go integer or float type or
// json.Number. A nil map has no properties.
func (f *Filter) Match(props map[string]any) bool {
	e := evaluator{props: props}
	return e.eval(f.root).truth()
}

// Facts is what evaluation reads about one profile. The caller implements it
// from its stored aggregates; rulestest.Facts is a brute-force reference.
type Facts interface {
	// Now is the evaluation time, Unix ms.
	Now() int64
	// Agg returns the aggregate over the events a reads (Agg.Matches and
	// Agg.InWindow at Now). Count and Sum: ok is ignored and a missing value is
	// 0. Avg/Min/Max/First/Last: ok=false when no event counts.
	Agg(a Agg) (value float64, ok bool)
	// Oldest returns the time of the oldest event counted by a windowed
	// aggregate (the one that leaves the window first). Only NextChange calls
	// it, and only for aggregates with Window > 0.
	Oldest(a Agg) (t int64, ok bool)
	// FunnelStart returns the greatest t1 such that the profile has distinct
	// events e1..en, ei named f.Steps[i], with times t1 <= t2 <= ... <= tn <= Now
	// and tn − t1 < f.Within. ok=false when there is none. Window is not
	// applied here: the rule holds when t1 > Now − f.Window.
	FunnelStart(f Funnel) (t1 int64, ok bool)
	// Trait returns a trait's value as decoded JSON (string, float64, int64,
	// bool, nil, []any, map[string]any).
	Trait(name string) (any, bool)
	// Profile returns "first_seen" or "last_seen" of the profile, Unix ms.
	Profile(field string) (int64, bool)
	// InAudience reports whether the profile is in the named audience.
	InAudience(name string) bool
	// Prediction returns the score name ("churn_risk", or "<model>.<score>"
	// of a model other than clv) of the profile as of time at (Unix ms, at
	// >= Now), the profile's events being those it has now: the scores
	// change with time alone (P(alive) falls with silence). ok=false when
	// the profile has no such score (no such model, no purchase).
	Prediction(name string, at int64) (float64, bool)
	// Recommendations returns the next best products (item ids, best
	// first) of the profile under the recommend model named model, as of
	// time at (Unix ms, at >= Now), the profile's events being those it
	// has now. ok=false when there is no such model. The list changes with
	// the profile's events and the model's record; with time alone only
	// as events dated after Now come within reach.
	Recommendations(model string, at int64) ([]string, bool)
}

// Rule is a compiled rule. It is immutable and safe for concurrent use.
type Rule struct {
	root      *node
	src       string
	aggs      []Agg
	funnels   []Funnel
	traits    []string
	audiences []string
	events    []string
	profile   []string
	preds     []string
	usesTime  bool
	cost      int
}

// String returns the canonical form of the rule; Compile(r.String()) gives an
// equal rule.
func (r *Rule) String() string { return r.src }

// Aggregates returns the event aggregates the rule reads, deduplicated, sorted
// by Key. The caller must not modify the slice.
func (r *Rule) Aggregates() []Agg { return r.aggs }

// Funnels returns the funnels the rule reads, deduplicated, sorted by Key.
func (r *Rule) Funnels() []Funnel { return r.funnels }

// Traits returns the (top-level) trait names the rule reads, sorted.
func (r *Rule) Traits() []string { return r.traits }

// Audiences returns the audiences named by in_audience, sorted.
func (r *Rule) Audiences() []string { return r.audiences }

// Events returns every event name the rule depends on, sorted: an event of
// another name cannot change the result.
func (r *Rule) Events() []string { return r.events }

// Profile returns the profile fields ("first_seen", "last_seen") the rule
// reads, sorted.
func (r *Rule) Profile() []string { return r.profile }

// Predictions returns the prediction keys the rule reads ("churn_risk",
// "<model>.<score>", "<model>.next_best_products" for a rule reading a
// recommend model's list), sorted.
func (r *Rule) Predictions() []string { return r.preds }

// UsesTime reports whether the result can change with time alone (windows,
// funnels, days_since, within).
func (r *Rule) UsesTime() bool { return r.usesTime }

// Cost is a bound on evaluation work: one per syntax node, plus 10 per
// aggregate or funnel read, plus the pattern length of each matches(), plus the
// length of each list searched by in. Compile refuses a Cost over MaxCost.
func (r *Rule) Cost() int { return r.cost }

// Eval evaluates the rule against f. Runtime type mismatches, missing values and
// nulls are not errors (the comparison is false); an error means a bug.
func (r *Rule) Eval(f Facts) (bool, error) {
	e := evaluator{facts: f, now: f.Now()}
	v := e.eval(r.root)
	if r.root.typ == tyBool && v.k != vBool {
		return false, fmt.Errorf("rules: eval %s: result is %s, not bool", r.src, v.k)
	}
	return v.truth(), nil
}

// NextChange returns the earliest time after f.Now() at which the result could
// change without a new event, or 0 when no time-dependent input will change.
// It is a lower bound: the caller re-evaluates at that time and asks again.
// The candidates are: a windowed aggregate's oldest counted event leaving the
// window (Oldest + Window); a funnel's start leaving its window; a days_since
// value reaching its next whole day; a within() time entering (if in the
// future) or leaving its window; the rule's result changing as its
// predictions move with time (predictionChange). Events timed after Now are not foreseen: the
// caller evaluates again when it reaches them (or when they arrive).
func (r *Rule) NextChange(f Facts) int64 {
	if !r.usesTime {
		return 0
	}
	e := evaluator{facts: f, now: f.Now()}
	e.next(r.root)
	if len(r.preds) > 0 {
		e.candidate(r.predictionChange(f))
	}
	return e.nextAt
}

// Compile parses and type-checks src. Errors are *Error.
func Compile(src string) (*Rule, error) {
	if len(src) > MaxSource {
		return nil, &Error{Line: 1, Column: 1, Reason: fmt.Sprintf("rule is longer than %d bytes", MaxSource)}
	}
	p, err := newParser(src)
	if err != nil {
		return nil, err
	}
	root, err := p.parseRule()
	if err != nil {
		return nil, err
	}
	c := checker{aggs: map[string]Agg{}, funnels: map[string]Funnel{}, traits: map[string]bool{},
		audiences: map[string]bool{}, events: map[string]bool{}, profile: map[string]bool{}, preds: map[string]bool{}}
	t, err := c.check(root, ctxRule)
	if err != nil {
		return nil, err
	}
	if t != tyBool && t != tyAny {
		return nil, errAt(root.pos, "rule must be a condition (bool), got %s", t)
	}
	if n := len(c.aggs) + len(c.funnels); n > MaxAggregates {
		return nil, errAt(root.pos, "rule reads %d aggregates, more than %d", n, MaxAggregates)
	}
	if c.cost > MaxCost {
		return nil, errAt(root.pos, "rule costs %d, more than %d", c.cost, MaxCost)
	}
	r := &Rule{root: root, src: format(root, false), usesTime: c.usesTime, cost: c.cost}
	for _, k := range sortedKeys(c.aggs) {
		r.aggs = append(r.aggs, c.aggs[k])
	}
	for _, k := range sortedKeys(c.funnels) {
		r.funnels = append(r.funnels, c.funnels[k])
	}
	r.traits = sortedKeys(c.traits)
	r.audiences = sortedKeys(c.audiences)
	r.events = sortedKeys(c.events)
	r.profile = sortedKeys(c.profile)
	r.preds = sortedKeys(c.preds)
	return r, nil
}

func sortedKeys[V any](m map[string]V) []string {
	if len(m) == 0 {
		return nil
	}
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// ParseWindow parses a window such as "90d": a positive integer followed by
// s, m, h, d or w. It returns milliseconds.
func ParseWindow(s string) (int64, error) {
	if len(s) < 2 {
		return 0, fmt.Errorf("invalid window %q (want a number and a unit s, m, h, d or w, like \"90d\")", s)
	}
	var unit int64
	switch s[len(s)-1] {
	case 's':
		unit = 1000
	case 'm':
		unit = 60 * 1000
	case 'h':
		unit = 3600 * 1000
	case 'd':
		unit = day
	case 'w':
		unit = 7 * day
	default:
		return 0, fmt.Errorf("invalid window %q (want a number and a unit s, m, h, d or w, like \"90d\")", s)
	}
	digits := s[:len(s)-1]
	for _, c := range digits {
		if c < '0' || c > '9' {
			return 0, fmt.Errorf("invalid window %q (want a number and a unit s, m, h, d or w, like \"90d\")", s)
		}
	}
	n, err := strconv.ParseInt(digits, 10, 64)
	if err != nil || n <= 0 || n > MaxWindow/unit {
		return 0, fmt.Errorf("window %q out of range (1s to 36600d)", s)
	}
	return n * unit, nil
}

// FormatWindow is the canonical form of a window of ms milliseconds: the
// largest of d, h, m, s that divides it ("2w" becomes "14d").
func FormatWindow(ms int64) string {
	for _, u := range []struct {
		n int64
		s string
	}{{day, "d"}, {3600 * 1000, "h"}, {60 * 1000, "m"}, {1000, "s"}} {
		if ms%u.n == 0 {
			return strconv.FormatInt(ms/u.n, 10) + u.s
		}
	}
	return strconv.FormatInt(ms, 10) + "ms" // not produced by ParseWindow
}
