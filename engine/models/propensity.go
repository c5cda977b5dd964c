package models

import (
	"cmp"
	"context"
	"fmt"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/aurumcdp/aurum/event"
	"github.com/aurumcdp/aurum/predict/propensity"
	"github.com/aurumcdp/aurum/projections"
	"github.com/aurumcdp/aurum/projections/features"
	"github.com/aurumcdp/aurum/projections/gcr"
	"github.com/aurumcdp/aurum/store"
)

// Bounds of a propensity request.
const (
	defaultWindowDays = 30
	defaultNames      = 16 // event names taken as features when none are given
	maxNames          = 64
)

// GBTMargin is how much higher the trees' holdout AUC must be than the
// logistic regression's for a fit with algorithm auto to keep the trees:
// on a tie (or within the AUC's noise on a small holdout) the logistic
// regression is kept, the model with fewer moving parts.
const GBTMargin = 0.01

// GBTOptions are the gradient-boosted trees a propensity fit trains: 100
// trees of depth 3 at rate 0.1 over 32 quantile bins, at least 20 rows a
// leaf (within propensity.Forest's bounds; at most about 15 KB a record).
// Their cost is O(trees · depth · rows · columns), for each of the two
// fits (on the training rows, then on the holdout rows when kept).
func GBTOptions() propensity.BoostedOptions {
	return propensity.BoostedOptions{Trees: 100, Depth: 3, LearningRate: 0.1, Bins: 32, L2: 1, MinLeaf: 20}
}

// validatePropensity checks a propensity request and fills its defaults:
// the target (event) is any track event name, Order Completed by default;
// names are distinct, and include the target (added when missing); revenue
// is only for the purchase target. (Fields of other kinds: requestFields.)
func (r *Request) validatePropensity() (job, error) {
	if r.Event == "" {
		r.Event = features.PurchaseEvent
	}
	if len(r.Event) > features.MaxKeyLen || strings.TrimSpace(r.Event) == "" {
		return job{}, &FieldError{"event", fmt.Sprintf("%q: want a track event name of 1..%d bytes", r.Event, features.MaxKeyLen)}
	}
	if r.WindowDays == 0 {
		r.WindowDays = defaultWindowDays
	}
	if r.WindowDays < 1 || r.WindowDays > 366 {
		return job{}, &FieldError{"window_days", fmt.Sprintf("%d: want 1..366", r.WindowDays)}
	}
	seen := map[string]bool{}
	for _, n := range r.Names {
		if n == "" || len(n) > features.MaxKeyLen || seen[n] {
			return job{}, &FieldError{"names", fmt.Sprintf("%q: want distinct event names of 1..%d bytes", n, features.MaxKeyLen)}
		}
		seen[n] = true
	}
	if len(r.Names) > 0 && !seen[r.Event] {
		r.Names = append(slices.Clone(r.Names), r.Event)
	}
	if len(r.Names) > maxNames {
		return job{}, &FieldError{"names", fmt.Sprintf("%d names with the target: want at most %d", len(r.Names), maxNames)}
	}
	switch {
	case r.Revenue != "" && r.Event != features.PurchaseEvent:
		return job{}, &FieldError{"revenue", fmt.Sprintf("only for the purchase target %q (a target's value is its revenue)", features.PurchaseEvent)}
	case r.Revenue != "" && r.Revenue != "revenue":
		return job{}, &FieldError{"revenue", fmt.Sprintf("%q: the feature projection reads the revenue property (properties.revenue, else total)", r.Revenue)}
	}
	r.Revenue = ""
	switch r.Algorithm {
	case "":
		r.Algorithm = projections.AlgorithmAuto
	case projections.AlgorithmAuto, projections.ClassifierLogistic, projections.ClassifierGBT:
	default:
		return job{}, &FieldError{"algorithm", fmt.Sprintf("%q: want one of %s", r.Algorithm, strings.Join(projections.PropensityAlgorithms, ", "))}
	}
	return job{req: *r}, nil
}

// fitPropensity fits a propensity model from the log's own history, at one
// applied position, with a time-based split: with c the start of the day
// of the latest event (at most the log clock) and w the window, training rows are the profiles as of
// c−2w (labels: the event in (c−2w, c−w]) and holdout rows as of c−w
// (labels up to c); both classifiers (L2 logistic regression and
// gradient-boosted trees, GBTOptions) are trained on the first and scored
// on the second, the request's algorithm picks one (auto: the trees when
// their AUC beats the logistic regression's by GBTMargin), and the one
// picked is refitted on the second (the newest labels) and stored. Both
// fits are deterministic (no sampling, rows sorted by profile). The
// rows are propensity.Examples of each profile's stored events, the
// columns FromFeatures computes from a live feature row, so the stored
// model scores live profiles. Memory: one row per profile.
func (s *Service) fitPropensity(ctx context.Context, j job) error {
	if err := s.deps.Synced.Sync(ctx); err != nil {
		return fmt.Errorf("models: fit %q: sync: %w", j.req.Name, err)
	}
	var (
		pos        projections.ModelPosition
		names      = j.req.Names
		train, hol *propensity.Examples
	)
	w := int64(j.req.WindowDays)
	err := s.deps.State.Read(func(r store.Reader, sm *projections.StateMachine) error {
		var err error
		if pos.Seq, err = projections.Applied(r); err != nil {
			return err
		}
		if pos.Time, err = projections.LogClock(r); err != nil {
			return err
		}
		g := sm.GCR()
		top, last, err := scanNames(ctx, r, g, j.req.Event)
		if err != nil {
			return err
		}
		if len(names) == 0 {
			names = top
		}
		// The history ends at the log clock, or at the latest event
		// before it (an imported history ends before its import).
		end := features.DayOf(min(pos.Time, last)) * features.DayMs // the start of that day
		opt := projections.PropensityOptions(j.req.Event, w, names)
		opt.Cutoff = time.UnixMilli(end - w*features.DayMs - 1)
		if hol, err = propensity.NewExamples(opt); err != nil {
			return err
		}
		opt.Cutoff = time.UnixMilli(end - 2*w*features.DayMs - 1)
		if train, err = propensity.NewExamples(opt); err != nil {
			return err
		}
		n := 0
		return g.EachProfile(r, func(p *gcr.Profile) error {
			if n++; n%1024 == 0 && ctx.Err() != nil {
				return ctx.Err()
			}
			id := string(p.ID)
			return g.EachEvent(r, p, 256, func(rec *event.Record) error {
				ev := propensity.Event{Profile: id, Time: time.UnixMilli(rec.Time)}
				if rec.Kind == event.Track {
					ev.Name = rec.Event
				}
				if ev.Name == j.req.Event && ev.Name == features.PurchaseEvent {
					ev.Value = orderValue(p.Features, features.DayOf(rec.Time))
				}
				train.Add(ev)
				hol.Add(ev)
				return nil
			})
		})
	})
	if err != nil {
		return fmt.Errorf("models: fit %q: read: %w", j.req.Name, err)
	}
	td, _ := train.Dataset()
	hd, _ := hol.Dataset()
	for _, c := range []struct {
		what string
		d    *propensity.Dataset
	}{{"training", td}, {"holdout", hd}} {
		pos, neg := classes(c.d)
		if pos == 0 || neg == 0 {
			return fmt.Errorf("models: fit %q: the %s rows (%d profiles) have %d with %q within %d days and %d without: both are needed (more history?)",
				j.req.Name, c.what, len(c.d.Y), pos, j.req.Event, w, neg)
		}
	}
	lr, err := propensity.FitLogistic(td, propensity.LogisticOptions{})
	if err != nil {
		return fmt.Errorf("models: fit %q: logistic: %w", j.req.Name, err)
	}
	gb, err := propensity.FitBoosted(td, GBTOptions())
	if err != nil {
		return fmt.Errorf("models: fit %q: trees: %w", j.req.Name, err)
	}
	aucLR := propensity.AUC(propensity.PredictAll(lr, hd.X), hd.Y)
	aucGB := propensity.AUC(propensity.PredictAll(gb, hd.X), hd.Y)
	positives, _ := classes(hd)
	pp := &projections.PropensityParams{Target: j.req.Event, WindowDays: w, Names: names,
		Examples: int64(len(hd.Y)), Positives: int64(positives),
		Algorithm: j.req.Algorithm, Classifier: chooseClassifier(j.req.Algorithm, aucLR, aucGB), AUCLogistic: aucLR, AUCGBT: aucGB}
	if pp.Classifier == projections.ClassifierGBT {
		if gb, err = propensity.FitBoosted(hd, GBTOptions()); err != nil {
			return fmt.Errorf("models: fit %q: trees: %w", j.req.Name, err)
		}
		if pp.Trees, err = gb.Forest(); err != nil {
			return fmt.Errorf("models: fit %q: trees: %w", j.req.Name, err)
		}
		pp.AUC = aucGB
	} else {
		if lr, err = propensity.FitLogistic(hd, propensity.LogisticOptions{}); err != nil {
			return fmt.Errorf("models: fit %q: logistic: %w", j.req.Name, err)
		}
		pp.Mean, pp.Scale, pp.W, pp.Intercept, pp.AUC = lr.Std.Mean, lr.Std.Scale, lr.W, lr.Intercept, aucLR
	}
	m := projections.Model{
		Name: j.req.Name, Kind: projections.ModelKindPropensity, FittedAsOf: pos, Customers: int64(len(hd.Y)),
		Propensity: pp,
	}
	seq, err := s.put(ctx, j, m)
	if err != nil {
		return err
	}
	s.opts.Logger.Info("models: fitted", "model", j.req.Name, "kind", m.Kind, "classifier", pp.Classifier, "examples", len(hd.Y),
		"auc_logistic", aucLR, "auc_gbt", aucGB, "seq", seq)
	return nil
}

// chooseClassifier is the classifier a fit records: the one asked, or
// (auto) the trees when their holdout AUC beats the logistic regression's
// by more than GBTMargin (false with a NaN: the logistic regression).
func chooseClassifier(algorithm string, aucLR, aucGB float64) string {
	switch {
	case algorithm == projections.ClassifierLogistic || algorithm == projections.ClassifierGBT:
		return algorithm
	case aucGB > aucLR+GBTMargin:
		return projections.ClassifierGBT
	}
	return projections.ClassifierLogistic
}

func classes(d *propensity.Dataset) (pos, neg int) {
	for _, y := range d.Y {
		if y {
			pos++
		} else {
			neg++
		}
	}
	return pos, neg
}

// orderValue is the value of one order of a purchase day as the feature
// row keeps it (the day's revenue over its orders, in units): the orders
// of a day sum to the day's revenue, which FromFeatures reads.
func orderValue(f *features.Features, day int64) float64 {
	if f == nil {
		return 0
	}
	i, ok := slices.BinarySearchFunc(f.Purchases, day, func(p features.PurchaseDay, d int64) int { return cmp.Compare(p.Day, d) })
	if !ok || f.Purchases[i].Orders == 0 {
		return 0
	}
	return float64(f.Purchases[i].Micros) / 1e6 / float64(f.Purchases[i].Orders)
}

// scanNames returns the defaultNames most frequent track event names of
// the profiles (ties: by name; counted for the first 256 names met), and
// target if it is not among them; and the latest event time of any profile.
func scanNames(ctx context.Context, r store.Reader, g *gcr.Projection, target string) ([]string, int64, error) {
	counts := map[string]int64{}
	n := 0
	var last int64 = math.MinInt64
	err := g.EachProfile(r, func(p *gcr.Profile) error {
		if n++; n%4096 == 0 && ctx.Err() != nil {
			return ctx.Err()
		}
		if p.Stats.Events > 0 {
			last = max(last, p.Stats.LastSeen)
		}
		for k, c := range p.Stats.EventCounts {
			if k != "" && len(k) <= features.MaxKeyLen && (len(counts) < 4*maxNames || counts[k] > 0) {
				counts[k] += c
			}
		}
		return nil
	})
	if err != nil {
		return nil, 0, err
	}
	names := make([]string, 0, len(counts))
	for k := range counts {
		names = append(names, k)
	}
	slices.SortFunc(names, func(a, b string) int {
		if c := cmp.Compare(counts[b], counts[a]); c != 0 {
			return c
		}
		return cmp.Compare(a, b)
	})
	names = names[:min(len(names), defaultNames)]
	if !slices.Contains(names, target) {
		names = append(names, target)
	}
	return names, last, nil
}
