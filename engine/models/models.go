// Package models is the prediction models' jobs (issue #12,
// docs/predictions.md): Fit reads the feature rows at one applied position
// in bounded memory (grouped sufficient statistics, predict.Grouper), fits
// BG/NBD, Pareto/NBD and Gamma-Gamma in the background and appends the
// result as a model.put control record, so that scoring is a pure function
// of the log and replays score alike; Model and Models answer from the
// records and the jobs in flight; Delete appends model.delete; Evaluate
// back-tests a fitted model on a holdout period, writing nothing.
package models

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/aurumcdp/aurum/engine/base"
	"github.com/aurumcdp/aurum/predict"
	"github.com/aurumcdp/aurum/projections"
	"github.com/aurumcdp/aurum/projections/features"
	"github.com/aurumcdp/aurum/projections/gcr"
	"github.com/aurumcdp/aurum/store"
)

// Status values of a model.
const (
	StatusRunning = "running" // a fit is in progress
	StatusReady   = "ready"   // fitted: the model.put record is in effect
	StatusFailed  = "failed"  // the last fit failed (Error says why)
)

// Control appends a control record to the log and returns its position.
type Control interface {
	AppendControl(ctx context.Context, c projections.Control) (uint64, error)
}

// Applied waits until the state machine has applied log position seq.
type Applied interface {
	WaitApplied(ctx context.Context, seq uint64) error
}

// Synced waits until everything appended to the log so far is applied.
type Synced interface {
	Sync(ctx context.Context) error
}

// State runs fn on a consistent snapshot of the projections.
type State interface {
	Read(fn func(r store.Reader, sm *projections.StateMachine) error) error
}

// Options configure a Service.
type Options struct {
	Logger *slog.Logger
	// Leader reports whether this node may fit (nil: always). In a cluster
	// one node fits: the others refuse with ErrNotLeader.
	Leader func() bool
	// Fit bounds the optimizer (predict.FitOptions; zero: its defaults).
	Fit predict.FitOptions
	// QueueLen bounds the fits waiting to run; 0 means 4.
	QueueLen int
	// Now is the clock the refit policies are due by (the clock that
	// stamps the control records' times); nil: time.Now.
	Now func() time.Time
	// RefitCheck is how often the records are read for refits due (a due
	// time known sooner is waited for exactly); 0 means 1 minute.
	RefitCheck time.Duration
}

// Deps are what the service is handed by the engine.
type Deps struct {
	State   State
	Control Control
	Applied Applied
	Synced  Synced
	// Open unseals an event's properties (the recommend fit reads their
	// products); failures that will never change wrap
	// projections.ErrUnreadable.
	Open func(keyID, sealed []byte) ([]byte, error)
}

// ErrNotLeader is returned by Fit on a node that is not the cluster's leader.
var ErrNotLeader = errors.New("models: this node is not the cluster leader: fit on the leader")

// ErrBusy is returned by Fit when a fit of the name is running or the queue
// is full.
var ErrBusy = errors.New("models: a fit is already running")

// FieldError is a request that does not validate: which field and why.
type FieldError struct{ Field, Reason string }

func (e *FieldError) Error() string { return fmt.Sprintf("models: %s: %s", e.Field, e.Reason) }

// Unwrap makes a FieldError a base.ErrInvalid.
func (e *FieldError) Unwrap() error { return base.ErrInvalid }

// Request is the body of POST /v1/models. Which fields each kind takes is
// one table, requestFields.
type Request struct {
	Name           string `json:"name"`
	Kind           string `json:"kind"`            // clv (default), propensity or recommend
	Event          string `json:"event"`           // clv: the purchase event, "Order Completed" (the feature projection's); propensity: the target, any track event
	Revenue        string `json:"revenue"`         // the revenue property: "revenue" (gcr's revenue)
	CalibrationEnd string `json:"calibration_end"` // YYYY-MM-DD, the last day of calibration
	TimeUnit       string `json:"time_unit"`       // week (default) or day
	Scorer         string `json:"scorer"`          // pareto_nbd (default) or bgnbd

	// Propensity (kind propensity): the label is "does Event happen within
	// WindowDays days" (default: Order Completed within 30 days); Names are
	// the event names whose decayed counts are features (default: the 16
	// most frequent; Event is always among them).
	WindowDays int      `json:"window_days,omitempty"`
	Names      []string `json:"names,omitempty"`
	// Algorithm (kind propensity) is the classifier to record: auto (the
	// default: both are trained on the same rows and the trees are kept
	// when their holdout AUC beats the logistic regression's by
	// GBTMargin), logistic or gbt (the one named, the other's AUC still
	// shown).
	Algorithm string `json:"algorithm,omitempty"`

	// MaxItems (kind recommend) bounds the items whose neighbours the
	// record keeps, the most popular first (default and at most
	// projections.MaxRecommendItems).
	MaxItems int `json:"max_items,omitempty"`

	// RefitEvery (kinds propensity and recommend) is the refit policy: the
	// model is fitted again, with this request, once this long has passed
	// since its record was appended ("7d", "12h", "30m", "90s": 1s to
	// 366d). The policy is kept on the record; a fit of the name without
	// it ends it.
	RefitEvery string `json:"refit_every,omitempty"`
}

// job is a validated request.
type job struct {
	req         Request
	calEnd      int64 // day number
	daysPerUnit int64
	refit       *projections.ModelRefit // the request's refit policy, or nil
}

// Validate checks a request and fills its defaults; the error is a
// *FieldError naming the field.
func (r *Request) validate() (job, error) {
	if r.Name == "" {
		return job{}, &FieldError{"name", "required"}
	}
	if err := projections.ValidateModelName(r.Name); err != nil {
		return job{}, &FieldError{"name", "want [a-z0-9][a-z0-9_-]{0,63}"}
	}
	if r.Kind == "" {
		r.Kind = projections.ModelKindCLV
	}
	if !slices.Contains(kinds, r.Kind) {
		return job{}, &FieldError{"kind", fmt.Sprintf("%q: want one of %s", r.Kind, strings.Join(kinds, ", "))}
	}
	if err := r.checkFields(); err != nil {
		return job{}, err
	}
	switch r.Kind {
	case projections.ModelKindPropensity, projections.ModelKindRecommend:
		validate := r.validatePropensity
		if r.Kind == projections.ModelKindRecommend {
			validate = r.validateRecommend
		}
		j, err := validate()
		if err != nil || r.RefitEvery == "" {
			return j, err
		}
		every, err := parseEvery(r.RefitEvery)
		if err != nil {
			return job{}, &FieldError{"refit_every", err.Error()}
		}
		j.refit = &projections.ModelRefit{EveryMs: every.Milliseconds(), Event: r.Event, WindowDays: int64(r.WindowDays),
			Names: r.Names, MaxItems: int64(r.MaxItems), Algorithm: r.Algorithm}
		return j, nil
	}
	if r.Event == "" {
		r.Event = features.PurchaseEvent
	}
	if r.Event != features.PurchaseEvent {
		return job{}, &FieldError{"event", fmt.Sprintf("%q: the feature projection counts %q as the purchase", r.Event, features.PurchaseEvent)}
	}
	if r.Revenue == "" {
		r.Revenue = "revenue"
	}
	if r.Revenue != "revenue" {
		return job{}, &FieldError{"revenue", fmt.Sprintf("%q: the feature projection reads the revenue property (properties.revenue, else total)", r.Revenue)}
	}
	if r.CalibrationEnd == "" {
		return job{}, &FieldError{"calibration_end", "required (YYYY-MM-DD)"}
	}
	ce, err := parseDay(r.CalibrationEnd)
	if err != nil {
		return job{}, &FieldError{"calibration_end", err.Error()}
	}
	j := job{calEnd: ce}
	switch r.TimeUnit {
	case "", "week":
		r.TimeUnit, j.daysPerUnit = "week", 7
	case "day":
		j.daysPerUnit = 1
	default:
		return job{}, &FieldError{"time_unit", fmt.Sprintf("%q: want week or day", r.TimeUnit)}
	}
	switch r.Scorer {
	case "":
		r.Scorer = "pareto_nbd"
	case "pareto_nbd", "bgnbd":
	default:
		return job{}, &FieldError{"scorer", fmt.Sprintf("%q: want pareto_nbd or bgnbd", r.Scorer)}
	}
	j.req = *r
	return j, nil
}

// kinds are the model kinds a request may name.
var kinds = []string{projections.ModelKindCLV, projections.ModelKindPropensity, projections.ModelKindRecommend}

// requestFields is the one table of the request's fields that only some
// kinds take: a field set for a kind outside its list is a *FieldError
// naming it ("only for kind ..."), with the reason when there is one.
var requestFields = []struct {
	field string
	kinds []string
	set   func(*Request) bool
	why   string // appended to "only for kind ...", or ""
}{
	{"event", []string{projections.ModelKindCLV, projections.ModelKindPropensity}, func(r *Request) bool { return r.Event != "" },
		"the next best product reads every event with a product_id"},
	{"revenue", []string{projections.ModelKindCLV, projections.ModelKindPropensity}, func(r *Request) bool { return r.Revenue != "" }, ""},
	{"calibration_end", []string{projections.ModelKindCLV}, func(r *Request) bool { return r.CalibrationEnd != "" },
		"the other kinds split by time themselves"},
	{"time_unit", []string{projections.ModelKindCLV}, func(r *Request) bool { return r.TimeUnit != "" }, ""},
	{"scorer", []string{projections.ModelKindCLV}, func(r *Request) bool { return r.Scorer != "" }, ""},
	{"window_days", []string{projections.ModelKindPropensity}, func(r *Request) bool { return r.WindowDays != 0 }, ""},
	{"names", []string{projections.ModelKindPropensity}, func(r *Request) bool { return len(r.Names) > 0 }, ""},
	{"algorithm", []string{projections.ModelKindPropensity}, func(r *Request) bool { return r.Algorithm != "" }, ""},
	{"max_items", []string{projections.ModelKindRecommend}, func(r *Request) bool { return r.MaxItems != 0 }, ""},
	{"refit_every", []string{projections.ModelKindPropensity, projections.ModelKindRecommend}, func(r *Request) bool { return r.RefitEvery != "" },
		"a clv fit has a fixed calibration_end"},
}

// parseEvery reads a refit period: a Go duration ("12h", "30m", "90s") or
// whole days ("7d"), within projections' bounds (1s..366d).
func parseEvery(s string) (time.Duration, error) {
	var d time.Duration
	if n, ok := strings.CutSuffix(s, "d"); ok {
		days, err := strconv.Atoi(n)
		if err != nil {
			return 0, fmt.Errorf("%q: want a duration like 7d, 12h or 30m", s)
		}
		d = time.Duration(days) * 24 * time.Hour
	} else {
		var err error
		if d, err = time.ParseDuration(s); err != nil {
			return 0, fmt.Errorf("%q: want a duration like 7d, 12h or 30m", s)
		}
	}
	if ms := d.Milliseconds(); ms < projections.MinRefitEvery || ms > projections.MaxRefitEvery || d%time.Millisecond != 0 {
		return 0, fmt.Errorf("%q: want 1s to 366d", s)
	}
	return d, nil
}

// formatEvery is the inverse of parseEvery: whole days as "7d", else Go's
// form.
func formatEvery(ms int64) string {
	d := time.Duration(ms) * time.Millisecond
	if d%(24*time.Hour) == 0 {
		return strconv.FormatInt(int64(d/(24*time.Hour)), 10) + "d"
	}
	return d.String()
}

// request is the request a refit policy refits with.
func refitRequest(m *projections.Model) Request {
	r := m.Refit
	return Request{Name: m.Name, Kind: m.Kind, Event: r.Event, WindowDays: int(r.WindowDays), Names: r.Names,
		MaxItems: int(r.MaxItems), Algorithm: r.Algorithm, RefitEvery: formatEvery(r.EveryMs)}
}

// checkFields refuses a field the request's kind does not take
// (requestFields).
func (r *Request) checkFields() error {
	for _, f := range requestFields {
		if !f.set(r) || slices.Contains(f.kinds, r.Kind) {
			continue
		}
		reason := "only for kind " + strings.Join(f.kinds, " and ")
		if len(f.kinds) > 1 {
			reason = "only for kinds " + strings.Join(f.kinds, " and ")
		}
		if f.why != "" {
			reason += " (" + f.why + ")"
		}
		return &FieldError{f.field, reason}
	}
	return nil
}

// parseDay reads YYYY-MM-DD as a day number (days since 1970-01-01 UTC).
func parseDay(s string) (int64, error) {
	t, err := time.Parse(time.DateOnly, s)
	if err != nil {
		return 0, fmt.Errorf("%q: want a date YYYY-MM-DD", s)
	}
	if t.Year() < 1900 || t.Year() > 9999 {
		return 0, fmt.Errorf("%q: year out of range 1900..9999", s)
	}
	return features.DayOf(t.UnixMilli()), nil
}

func dayString(d int64) string { return time.UnixMilli(d * features.DayMs).UTC().Format(time.DateOnly) }

// jobState is the in-memory state of a model's latest fit on this node.
type jobState struct {
	status  string
	err     string
	started time.Time
	req     Request
}

// Service runs fits and answers about models. It is safe for concurrent use.
type Service struct {
	opts  Options
	deps  Deps
	queue chan job

	mu   sync.Mutex
	jobs map[string]*jobState
	// refitTried is, per model, when (ms) its policy last queued a
	// refit: the next is due a period after the later of that and the
	// record's time, so a failed refit is tried again a period later.
	// Owned by Run.
	refitTried map[string]int64
}

// New returns a service; Run executes its fits.
func New(opts Options, deps Deps) *Service {
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Leader == nil {
		opts.Leader = func() bool { return true }
	}
	if opts.QueueLen <= 0 {
		opts.QueueLen = 4
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.RefitCheck <= 0 {
		opts.RefitCheck = time.Minute
	}
	return &Service{opts: opts, deps: deps, queue: make(chan job, opts.QueueLen), jobs: map[string]*jobState{},
		refitTried: map[string]int64{}}
}

// Run executes the queued fits one at a time until ctx ends (the engine
// owns it), and the refit policies (refitDue). A failed fit marks its
// model failed; it does not stop Run.
func (s *Service) Run(ctx context.Context) error {
	refit := time.NewTimer(0)
	defer refit.Stop()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-refit.C:
			refit.Reset(s.refitDue())
		case j := <-s.queue:
			err := s.fit(ctx, j)
			s.mu.Lock()
			st := s.jobs[j.req.Name]
			if err != nil {
				st.status, st.err = StatusFailed, err.Error()
				s.opts.Logger.Warn("models: fit failed", "model", j.req.Name, "err", err)
			} else {
				delete(s.jobs, j.req.Name) // the record answers from now on
			}
			s.mu.Unlock()
			// A new record may have a refit policy: its due time is
			// waited for exactly.
			if !refit.Stop() {
				select {
				case <-refit.C:
				default:
				}
			}
			refit.Reset(0)
			if ctx.Err() != nil {
				return ctx.Err()
			}
		}
	}
}

// refitDue queues the refits due (a leader only: in a cluster the leader
// fits): every model whose record has a refit policy and was appended,
// and last refitted by its policy, at least its period ago (refitTried),
// unless a fit of the name is running. It returns how long to wait before
// looking again: until the next due time, at most RefitCheck.
func (s *Service) refitDue() time.Duration {
	wait := s.opts.RefitCheck
	if !s.opts.Leader() || s.deps.State == nil {
		return wait
	}
	var ms []projections.Model
	err := s.deps.State.Read(func(r store.Reader, _ *projections.StateMachine) error {
		var err error
		ms, err = projections.Models(r)
		return err
	})
	if err != nil {
		s.opts.Logger.Warn("models: read the models for their refits", "err", err)
		return wait
	}
	now := s.opts.Now().UnixMilli()
	for i := range ms {
		m := &ms[i]
		if m.Refit == nil {
			continue
		}
		due := max(m.Updated, s.refitTried[m.Name]) + m.Refit.EveryMs
		if now < due {
			wait = min(wait, time.Duration(due-now)*time.Millisecond)
			continue
		}
		if _, err := s.Fit(refitRequest(m)); err != nil {
			if !errors.Is(err, ErrBusy) {
				s.opts.Logger.Warn("models: refit not queued", "model", m.Name, "err", err)
				s.refitTried[m.Name] = now
			}
			continue // busy: looked at again at the next check
		}
		s.refitTried[m.Name] = now
		s.opts.Logger.Info("models: refit queued", "model", m.Name, "every", formatEvery(m.Refit.EveryMs), "last_fit", time.UnixMilli(m.Updated).UTC())
	}
	return max(wait, 10*time.Millisecond)
}

// Fit validates the request and queues its fit; the answer is the model
// with status running. A request that does not validate is a *FieldError.
func (s *Service) Fit(req Request) (Info, error) {
	j, err := req.validate()
	if err != nil {
		return Info{}, err
	}
	if !s.opts.Leader() {
		return Info{}, ErrNotLeader
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if st := s.jobs[j.req.Name]; st != nil && st.status == StatusRunning {
		return Info{}, fmt.Errorf("%w: model %q", ErrBusy, j.req.Name)
	}
	st := &jobState{status: StatusRunning, started: time.Now().UTC(), req: j.req}
	select {
	case s.queue <- j:
	default:
		return Info{}, fmt.Errorf("%w: %d fits queued", ErrBusy, cap(s.queue))
	}
	s.jobs[j.req.Name] = st
	return s.infoOf(nil, st), nil
}

// fit runs the job's fit: fitCLV or fitPropensity.
func (s *Service) fit(ctx context.Context, j job) error {
	if j.req.Kind == projections.ModelKindPropensity {
		return s.fitPropensity(ctx, j)
	}
	if j.req.Kind == projections.ModelKindRecommend {
		return s.fitRecommend(ctx, j)
	}
	return s.fitCLV(ctx, j)
}

// fitCLV reads the summaries, fits the three models and appends model.put.
func (s *Service) fitCLV(ctx context.Context, j job) error {
	var (
		g         predict.Grouper
		sg        predict.SpendGrouper
		customers int64
		repeaters int64
		pos       projections.ModelPosition
		opts      = predict.SummaryOptions{CalibrationEnd: int(j.calEnd), DaysPerUnit: int(j.daysPerUnit)}
	)
	// The fit reads everything on the log when it starts (an import just
	// acknowledged included), at one applied position.
	if err := s.deps.Synced.Sync(ctx); err != nil {
		return fmt.Errorf("models: fit %q: sync: %w", j.req.Name, err)
	}
	err := s.deps.State.Read(func(r store.Reader, sm *projections.StateMachine) error {
		var err error
		if pos.Seq, err = projections.Applied(r); err != nil {
			return err
		}
		if pos.Time, err = projections.LogClock(r); err != nil {
			return err
		}
		n := 0
		return eachCustomer(r, sm.GCR(), opts, func(c predict.Customer) error {
			if n++; n%4096 == 0 && ctx.Err() != nil {
				return ctx.Err()
			}
			if err := g.Add(c.RFM); err != nil {
				return err
			}
			customers++
			if c.X > 0 && c.MeanSpend > 0 {
				repeaters++
				return sg.Add(c.X, c.MeanSpend)
			}
			return nil
		})
	})
	if err != nil {
		return fmt.Errorf("models: fit %q: read: %w", j.req.Name, err)
	}
	if customers == 0 {
		return fmt.Errorf("models: fit %q: no profile made a first purchase on or before %s", j.req.Name, j.req.CalibrationEnd)
	}
	groups, spends := g.Groups(), sg.Groups()
	bg, bgFit, err := predict.FitBGNBD(groups, s.opts.Fit)
	if err != nil {
		return fmt.Errorf("models: fit %q: bgnbd: %w", j.req.Name, err)
	}
	pn, pnFit, err := predict.FitParetoNBD(groups, s.opts.Fit)
	if err != nil {
		return fmt.Errorf("models: fit %q: pareto_nbd: %w", j.req.Name, err)
	}
	if len(spends) == 0 {
		return fmt.Errorf("models: fit %q: gamma_gamma: no customer with a repeat purchase of a positive amount", j.req.Name)
	}
	gg, ggFit, err := predict.FitGammaGamma(spends, s.opts.Fit)
	if err != nil {
		return fmt.Errorf("models: fit %q: gamma_gamma: %w", j.req.Name, err)
	}
	m := projections.Model{
		Name: j.req.Name, Kind: j.req.Kind, CalibrationEnd: j.calEnd, DaysPerUnit: j.daysPerUnit, Scorer: j.req.Scorer,
		BGNBD:      projections.ModelParams{P: []float64{bg.R, bg.Alpha, bg.A, bg.B}, LL: bgFit.LogLikelihood},
		ParetoNBD:  projections.ModelParams{P: []float64{pn.R, pn.Alpha, pn.S, pn.Beta}, LL: pnFit.LogLikelihood},
		GammaGamma: projections.ModelParams{P: []float64{gg.P, gg.Q, gg.Gamma}, LL: ggFit.LogLikelihood},
		FittedAsOf: pos, Customers: customers, Repeaters: repeaters,
	}
	seq, err := s.put(ctx, j, m)
	if err != nil {
		return err
	}
	s.opts.Logger.Info("models: fitted", "model", j.req.Name, "customers", customers, "seq", seq,
		"bgnbd_ll", bgFit.LogLikelihood, "pareto_nbd_ll", pnFit.LogLikelihood)
	return nil
}

// put validates a fitted model, appends its model.put (with the job's
// refit policy) and waits until it is applied; it returns the record's log
// position.
func (s *Service) put(ctx context.Context, j job, m projections.Model) (uint64, error) {
	m.Refit = j.refit
	if err := m.Validate(); err != nil {
		return 0, fmt.Errorf("models: fit %q: %w", m.Name, err)
	}
	seq, err := s.deps.Control.AppendControl(ctx, projections.Control{Kind: projections.ControlModelPut, Model: m})
	if err != nil {
		return 0, fmt.Errorf("models: fit %q: append: %w", m.Name, err)
	}
	if err := s.deps.Applied.WaitApplied(ctx, seq); err != nil {
		return 0, fmt.Errorf("models: fit %q: wait applied: %w", m.Name, err)
	}
	return seq, nil
}

// eachCustomer calls fn with the summary of every profile whose first kept
// purchase day is on or before the calibration end, partition by partition
// (one profile in memory at a time).
func eachCustomer(r store.Reader, g *gcr.Projection, o predict.SummaryOptions, fn func(predict.Customer) error) error {
	last := int64(o.CalibrationEnd)
	if o.HoldoutEnd != 0 {
		last = int64(o.HoldoutEnd)
	}
	return g.EachProfile(r, func(p *gcr.Profile) error {
		if p.Features == nil || len(p.Features.Purchases) == 0 || p.Features.Purchases[0].Day > int64(o.CalibrationEnd) {
			return nil
		}
		cs, err := predict.Summarize(projections.FeaturePurchases(p.Features, last), o)
		if err != nil {
			return err
		}
		for _, c := range cs {
			if err := fn(c); err != nil {
				return err
			}
		}
		return nil
	})
}

// Delete removes a model through the log (model.delete). A name with only
// a failed fit on this node (no record) is forgotten.
func (s *Service) Delete(ctx context.Context, name string) error {
	if _, err := s.record(name); err != nil {
		s.mu.Lock()
		defer s.mu.Unlock()
		if st := s.jobs[name]; errors.Is(err, base.ErrNotFound) && st != nil && st.status == StatusFailed {
			delete(s.jobs, name)
			return nil
		}
		return err
	}
	seq, err := s.deps.Control.AppendControl(ctx, projections.Control{Kind: projections.ControlModelDelete, Model: projections.Model{Name: name}})
	if err != nil {
		return fmt.Errorf("models: delete %q: %w", name, err)
	}
	s.mu.Lock()
	if st := s.jobs[name]; st != nil && st.status != StatusRunning {
		delete(s.jobs, name)
	}
	s.mu.Unlock()
	return s.deps.Applied.WaitApplied(ctx, seq)
}

func (s *Service) record(name string) (*projections.Model, error) {
	var m *projections.Model
	err := s.deps.State.Read(func(r store.Reader, _ *projections.StateMachine) error {
		var err error
		m, err = projections.GetModel(r, name)
		return err
	})
	if errors.Is(err, store.ErrNotFound) {
		return nil, fmt.Errorf("%w: model %q", base.ErrNotFound, name)
	}
	return m, err
}

// Model returns a model: its fit in flight or failed on this node, else
// its record.
func (s *Service) Model(name string) (Info, error) {
	m, err := s.record(name)
	if err != nil && !errors.Is(err, base.ErrNotFound) {
		return Info{}, err
	}
	var st *jobState
	s.mu.Lock()
	if j := s.jobs[name]; j != nil {
		c := *j // Run changes it under the lock
		st = &c
	}
	s.mu.Unlock()
	if m == nil && st == nil {
		return Info{}, err
	}
	return s.infoOf(m, st), nil
}

// Models lists the models: the records and the fits without one yet, by name.
func (s *Service) Models() ([]Info, error) {
	var ms []projections.Model
	if err := s.deps.State.Read(func(r store.Reader, _ *projections.StateMachine) error {
		var err error
		ms, err = projections.Models(r)
		return err
	}); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Info, 0, len(ms)+len(s.jobs))
	seen := map[string]bool{}
	for i := range ms {
		seen[ms[i].Name] = true
		out = append(out, s.infoOf(&ms[i], s.jobs[ms[i].Name]))
	}
	for name, st := range s.jobs {
		if !seen[name] {
			out = append(out, s.infoOf(nil, st))
		}
	}
	sortInfos(out)
	return out, nil
}

// EvaluationRequest is a back-test: the holdout period's last day.
type EvaluationRequest struct {
	HoldoutEnd string // YYYY-MM-DD, after the model's calibration end
	MaxX       int    // rows of the by-frequency table: x = 0..MaxX (0: 5)
}

// Evaluate back-tests the fitted model name over (calibration end,
// holdout end]: both repeat models' conditional expectations against the
// purchases the customers made. It reads the feature rows as they are now
// (the purchases up to the holdout end) and writes nothing.
func (s *Service) Evaluate(name string, req EvaluationRequest) (EvaluationInfo, error) {
	if req.HoldoutEnd == "" {
		return EvaluationInfo{}, &FieldError{"holdout_end", "required (YYYY-MM-DD)"}
	}
	he, err := parseDay(req.HoldoutEnd)
	if err != nil {
		return EvaluationInfo{}, &FieldError{"holdout_end", err.Error()}
	}
	if req.MaxX == 0 {
		req.MaxX = 5
	}
	if req.MaxX < 0 || req.MaxX > 100 {
		return EvaluationInfo{}, &FieldError{"max_x", fmt.Sprintf("%d: want 1..100", req.MaxX)}
	}
	m, err := s.record(name)
	if err != nil {
		return EvaluationInfo{}, err
	}
	if m.Kind != projections.ModelKindCLV {
		return EvaluationInfo{}, &FieldError{"name", fmt.Sprintf("model %q is of kind %s: its holdout AUC is in the model (GET /v1/models/%s)", name, m.Kind, name)}
	}
	if he <= m.CalibrationEnd {
		return EvaluationInfo{}, &FieldError{"holdout_end", fmt.Sprintf("%s is not after the calibration end %s", req.HoldoutEnd, dayString(m.CalibrationEnd))}
	}
	// Evaluate needs each customer's expectation and actual count: the
	// summaries are kept (about 56 bytes a customer; the ids are not).
	var cs []predict.Customer
	opts := predict.SummaryOptions{CalibrationEnd: int(m.CalibrationEnd), HoldoutEnd: int(he), DaysPerUnit: int(m.DaysPerUnit)}
	err = s.deps.State.Read(func(r store.Reader, sm *projections.StateMachine) error {
		return eachCustomer(r, sm.GCR(), opts, func(c predict.Customer) error {
			cs = append(cs, c)
			return nil
		})
	})
	if err != nil {
		return EvaluationInfo{}, fmt.Errorf("models: evaluate %q: %w", name, err)
	}
	holdout := float64(he-m.CalibrationEnd) / float64(m.DaysPerUnit)
	out := EvaluationInfo{Model: name, CalibrationEnd: dayString(m.CalibrationEnd), HoldoutEnd: dayString(he),
		TimeUnit: timeUnit(m.DaysPerUnit), Holdout: holdout, Customers: len(cs)}
	for _, c := range []struct {
		dst *ModelEvaluation
		m   predict.RepeatModel
	}{
		{&out.BGNBD, predict.BGNBD{R: m.BGNBD.P[0], Alpha: m.BGNBD.P[1], A: m.BGNBD.P[2], B: m.BGNBD.P[3]}},
		{&out.ParetoNBD, predict.ParetoNBD{R: m.ParetoNBD.P[0], Alpha: m.ParetoNBD.P[1], S: m.ParetoNBD.P[2], Beta: m.ParetoNBD.P[3]}},
	} {
		if len(cs) == 0 {
			*c.dst = ModelEvaluation{ByFrequency: make([]FrequencyRow, req.MaxX+1)}
			for x := range c.dst.ByFrequency {
				c.dst.ByFrequency[x].X = x
			}
			continue
		}
		ev, err := predict.Evaluate(c.m, cs, holdout, req.MaxX)
		if err != nil {
			return EvaluationInfo{}, fmt.Errorf("models: evaluate %q: %w", name, err)
		}
		*c.dst = evaluationOf(ev)
	}
	out.Scorer = m.Scorer
	return out, nil
}

// finite returns v, or nil when v is NaN or infinite (JSON has no NaN).
func finite(v float64) *float64 {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return nil
	}
	return &v
}
