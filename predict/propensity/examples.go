package propensity

import (
	"errors"
	"fmt"
	"math"
	"slices"
	"time"
)

// Event is one entry of a log-like history, as Examples reads it.
type Event struct {
	Profile string
	Time    time.Time
	Name    string
	// Value is the event's amount (revenue for purchases); 0 if none.
	Value float64
}

// ExampleOptions configure Examples. Zero fields take their defaults.
type ExampleOptions struct {
	// Target is the event the label asks about. Default "Order Completed".
	Target string
	// Cutoff is the time the features are taken at: events at or before it
	// are features, events in (Cutoff, Cutoff+Horizon] give the label.
	// Required.
	Cutoff time.Time
	// Horizon is the label window after the cutoff. Default 30 days.
	Horizon time.Duration
	// Names are the event names turned into features, in this order.
	// Required (the Target is usually one of them); at most 64.
	Names []string
	// HalfLives of the decayed counts. Default 7 and 30 days.
	HalfLives []time.Duration
	// Undated leaves the target's dated columns (target_days,
	// days_since_target, target_value) out of the rows: the target's
	// decayed counts (Names must then include it) stand for its recency.
	// The feature projection dates only purchases, so FromFeatures needs
	// it for any other target.
	Undated bool
}

func (o *ExampleOptions) defaults() error {
	if o.Target == "" {
		o.Target = "Order Completed"
	}
	if o.Horizon == 0 {
		o.Horizon = 30 * 24 * time.Hour
	}
	if len(o.HalfLives) == 0 {
		o.HalfLives = []time.Duration{7 * 24 * time.Hour, 30 * 24 * time.Hour}
	}
	switch {
	case o.Cutoff.IsZero():
		return errors.New("propensity: examples: cutoff is required")
	case o.Horizon < 0:
		return fmt.Errorf("propensity: examples: horizon %v must be > 0", o.Horizon)
	case len(o.Names) == 0 || len(o.Names) > 64:
		return fmt.Errorf("propensity: examples: names: %d given, want 1..64", len(o.Names))
	case o.Undated && !slices.Contains(o.Names, o.Target):
		return fmt.Errorf("propensity: examples: names must include the target %q when its days are not columns (Undated)", o.Target)
	}
	for _, h := range o.HalfLives {
		if h <= 0 {
			return fmt.Errorf("propensity: examples: half-life %v must be > 0", h)
		}
	}
	return nil
}

// Examples accumulates a history, one event at a time, into one training
// row per profile: features as of the cutoff and the label from the horizon
// after it. Memory grows with profiles × (names + distinct active days), not
// with events; events may come in any order. Profiles whose first event is after the cutoff are left
// out (nothing is known of them at the cutoff). Events after the horizon are
// ignored.
//
// The time-based split: fit on Examples at cutoff c − horizon (its labels
// end at c) and evaluate on Examples at c, so that no label of the training
// rows lies after the features of the evaluation rows.
type Examples struct {
	opt      ExampleOptions
	nameIdx  map[string]int
	profiles map[string]*acc
}

type acc struct {
	first, last int64     // ms of the first and last event at or before the cutoff; first = MaxInt64 if none
	decayed     []float64 // names × half-lives
	targetValue float64
	activeDays  map[int64]struct{}
	targetDays  map[int64]struct{}
	label       bool
}

// NewExamples returns an empty accumulator.
func NewExamples(opt ExampleOptions) (*Examples, error) {
	if err := opt.defaults(); err != nil {
		return nil, err
	}
	e := &Examples{opt: opt, nameIdx: map[string]int{}, profiles: map[string]*acc{}}
	for i, n := range opt.Names {
		if _, dup := e.nameIdx[n]; dup {
			return nil, fmt.Errorf("propensity: examples: name %q given twice", n)
		}
		e.nameIdx[n] = i
	}
	return e, nil
}

// Add adds one event of the history.
func (e *Examples) Add(ev Event) {
	cut := e.opt.Cutoff.UnixMilli()
	t := ev.Time.UnixMilli()
	if t > cut+e.opt.Horizon.Milliseconds() {
		return
	}
	a := e.profiles[ev.Profile]
	if a == nil {
		a = &acc{first: math.MaxInt64, decayed: make([]float64, len(e.opt.Names)*len(e.opt.HalfLives)),
			activeDays: map[int64]struct{}{}, targetDays: map[int64]struct{}{}}
		e.profiles[ev.Profile] = a
	}
	if t > cut {
		if ev.Name == e.opt.Target {
			a.label = true
		}
		return
	}
	a.first, a.last = min(a.first, t), max(a.last, t)
	day := floorDiv(t, dayMs)
	a.activeDays[day] = struct{}{}
	if ev.Name == e.opt.Target {
		a.targetDays[day] = struct{}{}
		a.targetValue += ev.Value
	}
	j, ok := e.nameIdx[ev.Name]
	if !ok {
		return
	}
	age := float64(cut - t)
	for k, h := range e.opt.HalfLives {
		a.decayed[j*len(e.opt.HalfLives)+k] += math.Exp2(-age / float64(h.Milliseconds()))
	}
}

const dayMs = 86_400_000

func floorDiv(a, b int64) int64 {
	q := a / b
	if a%b != 0 && (a < 0) != (b < 0) {
		q--
	}
	return q
}

// Dataset returns one row per profile known at the cutoff, sorted by
// profile, and the profiles in the same order. The columns (Columns) are,
// per name, its decayed counts (one per half-life), then days_since_first,
// days_since_last, active_days (distinct UTC days with an event),
// target_days (distinct UTC days with the target event), days_since_target
// (from the start of the last target day; days_since_first + 1 without one)
// and target_value (the sum of the target events' values), those three
// left out with Undated. Times are in
// days before the cutoff. These are what the feature projection keeps, so
// that FromFeatures computes the same row for a live profile.
func (e *Examples) Dataset() (*Dataset, []string) {
	d := &Dataset{Names: Columns(e.opt)}
	var ids []string
	for id, a := range e.profiles {
		if a.first != math.MaxInt64 {
			ids = append(ids, id)
		}
	}
	slices.Sort(ids)
	cut := e.opt.Cutoff.UnixMilli()
	for _, id := range ids {
		a := e.profiles[id]
		lastTargetDay := int64(math.MinInt64)
		for day := range a.targetDays {
			lastTargetDay = max(lastTargetDay, day)
		}
		row := slices.Clone(a.decayed)
		row = append(row, tail(e.opt.Undated, cut, a.first, a.last, len(a.activeDays), len(a.targetDays), lastTargetDay, a.targetValue)...)
		d.X = append(d.X, row)
		d.Y = append(d.Y, a.label)
	}
	return d, ids
}

// Columns names the columns of the rows Examples and FromFeatures give.
func Columns(opt ExampleOptions) []string {
	if len(opt.HalfLives) == 0 {
		opt.HalfLives = []time.Duration{7 * 24 * time.Hour, 30 * 24 * time.Hour}
	}
	var names []string
	for _, n := range opt.Names {
		for _, h := range opt.HalfLives {
			names = append(names, fmt.Sprintf("decayed_%s:%s", formatDays(h), n))
		}
	}
	names = append(names, "days_since_first", "days_since_last", "active_days")
	if opt.Undated {
		return names
	}
	return append(names, "target_days", "days_since_target", "target_value")
}

// tail computes the columns after the decayed counts; lastTargetDay is
// math.MinInt64 without a target event. undated leaves the target's
// columns out (ExampleOptions.Undated).
func tail(undated bool, cut, first, last int64, activeDays, targetDays int, lastTargetDay int64, value float64) []float64 {
	days := func(ms int64) float64 { return float64(ms) / dayMs }
	if undated {
		return []float64{days(cut - first), days(cut - last), float64(activeDays)}
	}
	sinceTarget := days(cut-first) + 1
	if targetDays > 0 {
		sinceTarget = days(cut - lastTargetDay*dayMs)
	}
	return []float64{days(cut - first), days(cut - last), float64(activeDays), float64(targetDays), sinceTarget, value}
}

func formatDays(h time.Duration) string {
	if h%(24*time.Hour) == 0 {
		return fmt.Sprintf("%dd", h/(24*time.Hour))
	}
	return h.String()
}
