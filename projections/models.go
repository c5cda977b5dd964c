package projections

import (
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/aurumcdp/aurum/predict"
	"github.com/aurumcdp/aurum/predict/propensity"
	"github.com/aurumcdp/aurum/projections/features"
	"github.com/aurumcdp/aurum/projections/gcr"
	"github.com/aurumcdp/aurum/rules"
	"github.com/aurumcdp/aurum/store"
	"github.com/vmihailenco/msgpack/v5"
)

// Model is a fitted prediction model as kept on the log (control record
// model.put) and in the state (md/<name>): what was asked, the fitted
// parameters, and the log position the fit read up to. Replays read the
// parameters from the record; they never refit (docs/predictions.md).
type Model struct {
	Name    string `msgpack:"n"`
	Kind    string `msgpack:"k"` // ModelKindCLV
	Version int64  `msgpack:"v"` // assigned by Apply: 1, then +1 per put of the name
	// CalibrationEnd is the last day (days since 1970-01-01 UTC) of the
	// fit's calibration period; DaysPerUnit its time unit (7: weeks).
	CalibrationEnd int64 `msgpack:"ce"`
	DaysPerUnit    int64 `msgpack:"du"`
	// Scorer names the model that scores p_alive and the expectations:
	// "pareto_nbd" (the default: BG/NBD gives P(alive) = 1 to every
	// one-time buyer) or "bgnbd".
	Scorer     string        `msgpack:"sc"`
	BGNBD      ModelParams   `msgpack:"bg"` // r, alpha, a, b
	ParetoNBD  ModelParams   `msgpack:"pn"` // r, alpha, s, beta
	GammaGamma ModelParams   `msgpack:"gg"` // p, q, gamma
	FittedAsOf ModelPosition `msgpack:"a"`
	Customers  int64         `msgpack:"c"`
	Repeaters  int64         `msgpack:"cx"` // customers with x > 0 (Gamma-Gamma's fit)
	Created    int64         `msgpack:"cr"`
	Updated    int64         `msgpack:"up"`

	// Propensity (kind propensity) is the classifier of a propensity
	// model; nil for clv.
	Propensity *PropensityParams `msgpack:"pp,omitempty"`
	// Recommend (kind recommend) is a next-best-product model's tables;
	// nil for the other kinds.
	Recommend *RecommendParams `msgpack:"rc,omitempty"`
	// Refit is the model's refit policy (kinds propensity and recommend);
	// nil: refitted only when asked.
	Refit *ModelRefit `msgpack:"rf,omitempty"`
}

// ModelRefit is a refit policy: the fit job refits the model (on the
// cluster's leader) once EveryMs has passed since the record's Updated
// time, with the request it was fitted from, and appends the result as a
// model.put like any fit: a replay reads the records and never refits.
type ModelRefit struct {
	EveryMs    int64    `msgpack:"e"`
	Event      string   `msgpack:"ev,omitempty"` // propensity: the target
	WindowDays int64    `msgpack:"w,omitempty"`  // propensity
	Names      []string `msgpack:"n,omitempty"`  // propensity: as requested (none: the most frequent at each fit)
	MaxItems   int64    `msgpack:"mi,omitempty"` // recommend
	Algorithm  string   `msgpack:"al,omitempty"` // propensity: as requested (auto, logistic, gbt)
}

// Bounds of a refit policy.
const (
	MinRefitEvery = int64(1000)             // 1 s
	MaxRefitEvery = int64(366 * 86_400_000) // 366 days
)

func (r *ModelRefit) validate(m *Model) error {
	if r == nil {
		return nil
	}
	switch {
	case m.Kind != ModelKindPropensity && m.Kind != ModelKindRecommend:
		return fmt.Errorf("projections: model %q: a refit policy on kind %q, want propensity or recommend", m.Name, m.Kind)
	case r.EveryMs < MinRefitEvery || r.EveryMs > MaxRefitEvery:
		return fmt.Errorf("projections: model %q: refit every %d ms, want %d..%d", m.Name, r.EveryMs, MinRefitEvery, MaxRefitEvery)
	case len(r.Event) > features.MaxKeyLen || len(r.Names) > 64 || r.WindowDays < 0 || r.WindowDays > 366 || r.MaxItems < 0 || r.MaxItems > MaxRecommendItems:
		return fmt.Errorf("projections: model %q: refit request out of bounds", m.Name)
	case r.Algorithm != "" && !slices.Contains(PropensityAlgorithms, r.Algorithm):
		return fmt.Errorf("projections: model %q: refit algorithm %q, want one of %v", m.Name, r.Algorithm, PropensityAlgorithms)
	}
	for _, n := range r.Names {
		if len(n) > features.MaxKeyLen {
			return fmt.Errorf("projections: model %q: refit name of %d bytes, want at most %d", m.Name, len(n), features.MaxKeyLen)
		}
	}
	return nil
}

// PropensityParams are a fitted propensity model: P(Target within
// WindowDays days) over the row propensity.FromFeatures computes from the
// profile's feature row (columns: propensity.Columns of
// PropensityOptions), as of the time it is read. The classifier is
// logistic regression, σ(Intercept + Σ W[j]·(x[j] − Mean[j])/Scale[j]), or
// gradient-boosted trees (Trees: propensity.Forest, over the same
// columns). Target is any track event; one other than the purchase has no
// dated columns and must be among Names.
type PropensityParams struct {
	Target     string    `msgpack:"t"`
	WindowDays int64     `msgpack:"w"`
	Names      []string  `msgpack:"n"`
	Mean       []float64 `msgpack:"m"` // logistic
	Scale      []float64 `msgpack:"s"` // logistic
	W          []float64 `msgpack:"x"` // logistic
	Intercept  float64   `msgpack:"i"` // logistic
	// AUC is the holdout AUC of the time-based split (trained at cutoff
	// c−2w, evaluated at c−w, c the fit's log clock) of the classifier
	// recorded; Examples and Positives count the rows the stored model
	// was trained on (cutoff c−w).
	AUC       float64 `msgpack:"a"`
	Examples  int64   `msgpack:"e"`
	Positives int64   `msgpack:"p"`

	// Classifier is the classifier that scores: ClassifierLogistic (W,
	// Mean, Scale, Intercept; "" in records written before the trees) or
	// ClassifierGBT (Trees; no weights).
	Classifier string `msgpack:"cl,omitempty"`
	// Algorithm is what the fit was asked: AlgorithmAuto (the trees when
	// their holdout AUC beats the logistic regression's by the fit's
	// margin, else the logistic regression), ClassifierLogistic or
	// ClassifierGBT; "" in records written before the trees.
	Algorithm string `msgpack:"rq,omitempty"`
	// Trees are the gradient-boosted trees of classifier gbt, in their
	// compact bounded binary form (propensity.Forest: at most
	// MaxForestTrees trees of depth MaxForestDepth, checked when the
	// record is decoded).
	Trees *propensity.Forest `msgpack:"g,omitempty"`
	// AUCLogistic and AUCGBT are the holdout AUCs of both classifiers,
	// trained on the same rows (the fit trains both; 0 in records written
	// before the trees).
	AUCLogistic float64 `msgpack:"al,omitempty"`
	AUCGBT      float64 `msgpack:"ag,omitempty"`
}

// Propensity classifiers and the algorithms a fit may be asked for.
const (
	ClassifierLogistic = "logistic" // L2 logistic regression (propensity.Logistic)
	ClassifierGBT      = "gbt"      // gradient-boosted trees (propensity.Forest)
	AlgorithmAuto      = "auto"     // the better on the holdout; the logistic regression on a tie
)

// PropensityAlgorithms are the values of a propensity request's algorithm.
var PropensityAlgorithms = []string{AlgorithmAuto, ClassifierLogistic, ClassifierGBT}

// classifier is the record's classifier ("" reads as logistic).
func (p *PropensityParams) classifier() string {
	if p.Classifier == "" {
		return ClassifierLogistic
	}
	return p.Classifier
}

// options are the propensity.ExampleOptions of the model's rows: a target
// other than the feature row's purchase has no dated columns (Undated).
func (p *PropensityParams) options() propensity.ExampleOptions {
	return PropensityOptions(p.Target, p.WindowDays, p.Names)
}

// PropensityOptions are the propensity.ExampleOptions of a propensity model
// of target within windowDays over names: the columns the fit trains on
// and the live feature row gives (propensity.FromFeatures). A target other
// than the purchase (features.PurchaseEvent) is Undated: the feature row
// dates only purchases, and the target's decayed counts (names include it)
// stand for its days.
func PropensityOptions(target string, windowDays int64, names []string) propensity.ExampleOptions {
	return propensity.ExampleOptions{Target: target, Horizon: time.Duration(windowDays) * 24 * time.Hour, Names: names,
		Undated: target != features.PurchaseEvent}
}

// validate checks the classifier's shape: logistic, one weight, mean and
// scale per column, every number finite, scales > 0, no trees; gbt, trees
// over as many features as columns (propensity.Forest.Validate: bounded,
// proper trees, finite values), no weights; the AUCs in [0, 1] or NaN.
func (p *PropensityParams) validate(name string) error {
	if p == nil {
		return fmt.Errorf("projections: model %q: kind propensity without its parameters", name)
	}
	cols := len(propensity.Columns(p.options()))
	switch {
	case p.Target == "" || len(p.Target) > features.MaxKeyLen:
		return fmt.Errorf("projections: model %q: target of %d bytes, want 1..%d", name, len(p.Target), features.MaxKeyLen)
	case p.Target != features.PurchaseEvent && !slices.Contains(p.Names, p.Target):
		return fmt.Errorf("projections: model %q: target %q is not among the names (its decayed counts stand for its days)", name, p.Target)
	case p.WindowDays < 1 || p.WindowDays > 366:
		return fmt.Errorf("projections: model %q: window %d days, want 1..366", name, p.WindowDays)
	case len(p.Names) == 0 || len(p.Names) > 64:
		return fmt.Errorf("projections: model %q: %d event names, want 1..64", name, len(p.Names))
	case p.Algorithm != "" && !slices.Contains(PropensityAlgorithms, p.Algorithm):
		return fmt.Errorf("projections: model %q: algorithm %q, want one of %v", name, p.Algorithm, PropensityAlgorithms)
	}
	for _, a := range []float64{p.AUC, p.AUCLogistic, p.AUCGBT} {
		if !math.IsNaN(a) && !(a >= 0 && a <= 1) {
			return fmt.Errorf("projections: model %q: AUC %v, want 0..1 or NaN", name, a)
		}
	}
	switch p.classifier() {
	case ClassifierGBT:
		switch {
		case p.Trees == nil:
			return fmt.Errorf("projections: model %q: classifier gbt without its trees", name)
		case len(p.W) != 0 || len(p.Mean) != 0 || len(p.Scale) != 0 || p.Intercept != 0:
			return fmt.Errorf("projections: model %q: classifier gbt with logistic weights", name)
		case p.Trees.Features != cols:
			return fmt.Errorf("projections: model %q: trees over %d features, want %d columns", name, p.Trees.Features, cols)
		}
		if err := p.Trees.Validate(); err != nil {
			return fmt.Errorf("projections: model %q: %w", name, err)
		}
		return nil
	case ClassifierLogistic:
	default:
		return fmt.Errorf("projections: model %q: classifier %q, want %s or %s", name, p.Classifier, ClassifierLogistic, ClassifierGBT)
	}
	switch {
	case p.Trees != nil:
		return fmt.Errorf("projections: model %q: classifier logistic with trees", name)
	case len(p.W) != cols || len(p.Mean) != cols || len(p.Scale) != cols:
		return fmt.Errorf("projections: model %q: %d/%d/%d weights/means/scales, want %d", name, len(p.W), len(p.Mean), len(p.Scale), cols)
	}
	for _, vs := range [][]float64{p.W, p.Mean, p.Scale, {p.Intercept}} {
		for _, v := range vs {
			if math.IsNaN(v) || math.IsInf(v, 0) {
				return fmt.Errorf("projections: model %q: parameter %v, want finite", name, v)
			}
		}
	}
	for _, v := range p.Scale {
		if !(v > 0) {
			return fmt.Errorf("projections: model %q: scale %v, want > 0", name, v)
		}
	}
	return nil
}

// PropensityScore is the propensity of a profile (its feature row and its
// first and last seen times) under a propensity model as of now (Unix ms),
// by its classifier (logistic regression or trees): a pure function of them, moving with time (the decayed counts and the
// days since fall as silence lasts). ok is false for a model of another
// kind, one that does not validate, or a profile with no event by now.
func PropensityScore(m *Model, f *features.Features, firstSeen, lastSeen, now int64) (float64, bool) {
	if m.Kind != ModelKindPropensity || m.Validate() != nil || f == nil || len(f.ActiveDays) == 0 && f.FoldedActiveDays == 0 || firstSeen > now {
		return 0, false
	}
	p := m.Propensity
	row, err := propensity.FromFeatures(f, firstSeen, min(lastSeen, now), now, p.options())
	if err != nil {
		return 0, false
	}
	if p.Trees != nil { // classifier gbt (Validate: the trees have the row's width)
		return p.Trees.Predict(row), true
	}
	lr := propensity.Logistic{Names: p.Names, Std: propensity.Standardizer{Mean: p.Mean, Scale: p.Scale}, Intercept: p.Intercept, W: p.W}
	return lr.Predict(row), true
}

// ModelParams are one model's fitted parameters, in the order its
// documentation names them, and the log-likelihood of the fit.
type ModelParams struct {
	P  []float64 `msgpack:"p"`
	LL float64   `msgpack:"ll"`
}

// ModelPosition is the log position (sequence) and log time of the last
// entry a fit read.
type ModelPosition struct {
	Seq  uint64 `msgpack:"q"`
	Time int64  `msgpack:"t"`
}

// Model control kinds and kinds of models.
const (
	ControlModelPut     = "model.put"    // Model: create or replace (Version, Created, Updated assigned by Apply)
	ControlModelDelete  = "model.delete" // Model.Name
	ModelKindCLV        = "clv"          // BG/NBD + Pareto/NBD + Gamma-Gamma
	ModelKindPropensity = "propensity"   // P(target event within a window): logistic regression or gradient-boosted trees on the feature row
	ModelKindRecommend  = "recommend"    // next best product: co-occurrence and popularity tables (recommend.Tables)
)

var prefixModel = []byte("md/") // md/<name> → msgpack Model

func modelKey(name string) []byte { return append(append([]byte(nil), prefixModel...), name...) }

// Validate checks a model as a put would store it: a name like an
// audience's; kind clv with 4, 4 and 3 finite positive parameters, a time
// unit > 0 and a known scorer, kind propensity with its classifier, or
// kind recommend with its tables (bounded: RecommendParams).
func (m *Model) Validate() error {
	switch {
	case ValidateModelName(m.Name) != nil:
		return ValidateModelName(m.Name)
	case m.Refit.validate(m) != nil:
		return m.Refit.validate(m)
	case m.Kind == ModelKindPropensity:
		return m.Propensity.validate(m.Name)
	case m.Kind == ModelKindRecommend:
		return m.Recommend.validate(m.Name)
	case m.Kind != ModelKindCLV:
		return fmt.Errorf("projections: model %q: kind %q, want %q, %q or %q", m.Name, m.Kind, ModelKindCLV, ModelKindPropensity, ModelKindRecommend)
	case m.DaysPerUnit < 1 || m.DaysPerUnit > 366:
		return fmt.Errorf("projections: model %q: days per unit %d, want 1..366", m.Name, m.DaysPerUnit)
	case m.Scorer != "pareto_nbd" && m.Scorer != "bgnbd":
		return fmt.Errorf("projections: model %q: scorer %q, want pareto_nbd or bgnbd", m.Name, m.Scorer)
	}
	for _, c := range []struct {
		what string
		p    ModelParams
		n    int
	}{{"bgnbd", m.BGNBD, 4}, {"pareto_nbd", m.ParetoNBD, 4}, {"gamma_gamma", m.GammaGamma, 3}} {
		if len(c.p.P) != c.n {
			return fmt.Errorf("projections: model %q: %s has %d parameters, want %d", m.Name, c.what, len(c.p.P), c.n)
		}
		for _, v := range c.p.P {
			if !(v > 0) || math.IsInf(v, 0) {
				return fmt.Errorf("projections: model %q: %s parameter %v, want finite > 0", m.Name, c.what, v)
			}
		}
	}
	return nil
}

// ValidateModelName checks a model name: like an audience's.
func ValidateModelName(name string) error {
	if !audienceName.MatchString(name) {
		return fmt.Errorf("projections: model name %q: want [a-z0-9][a-z0-9_-]{0,63}", name)
	}
	return nil
}

// Repeat returns the model's repeat-purchase model that scores p_alive and
// the expectations (Scorer), and its spend model.
func (m *Model) Repeat() (predict.RepeatModel, predict.GammaGamma) {
	var rm predict.RepeatModel = predict.ParetoNBD{R: m.ParetoNBD.P[0], Alpha: m.ParetoNBD.P[1], S: m.ParetoNBD.P[2], Beta: m.ParetoNBD.P[3]}
	if m.Scorer == "bgnbd" {
		rm = predict.BGNBD{R: m.BGNBD.P[0], Alpha: m.BGNBD.P[1], A: m.BGNBD.P[2], B: m.BGNBD.P[3]}
	}
	return rm, predict.GammaGamma{P: m.GammaGamma.P[0], Q: m.GammaGamma.P[1], Gamma: m.GammaGamma.P[2]}
}

// FeaturePurchases returns the purchase days of a feature row up to day
// (inclusive) as the models' purchases (one customer, amounts in units).
// Folded days (beyond the row's cap) are left out.
func FeaturePurchases(f *features.Features, day int64) []predict.Purchase {
	if f == nil {
		return nil
	}
	ps := make([]predict.Purchase, 0, len(f.Purchases))
	for _, p := range f.Purchases {
		if p.Day > day {
			break
		}
		ps = append(ps, predict.Purchase{Day: int(p.Day), Amount: float64(p.Micros) / 1e6})
	}
	return ps
}

// ModelScores computes the scores of a feature row under a valid clv model
// as of now (Unix ms): the customer is the row's purchase days up to now's
// day (x, t_x as predict.Summarize counts them), and T runs from the start
// of the first purchase day to now itself, to the millisecond: the scores
// move continuously with time (P(alive) falls with silence), so a rule's
// threshold is crossed at a time rules.NextChange can find. ok is false
// for a row without purchases by then (the models describe customers) or
// a model that does not validate. A pure function of the row, the model
// and now: the profile view and the rules read the same numbers.
func ModelScores(m *Model, f *features.Features, now int64) (s predict.Scores, ok bool) {
	if f == nil || len(f.Purchases) == 0 || m.Kind != ModelKindCLV || m.Validate() != nil {
		return s, false
	}
	today := features.DayOf(now)
	cs, err := predict.Summarize(FeaturePurchases(f, today), predict.SummaryOptions{CalibrationEnd: int(today), DaysPerUnit: int(m.DaysPerUnit)})
	if err != nil || len(cs) != 1 {
		return s, false
	}
	c := cs[0]
	first := f.Purchases[0].Day // Summarize's first purchase day: the row is sorted
	c.T = max(c.TX, float64(now-first*features.DayMs)/float64(m.DaysPerUnit*features.DayMs))
	rm, gg := m.Repeat()
	s, err = predict.Score(rm, gg, c, int(m.DaysPerUnit))
	return s, err == nil
}

// Models lists the stored models by name.
func Models(r store.Reader) ([]Model, error) {
	out, err := scanValues[Model](r, prefixModel, 0)
	if err != nil {
		return nil, fmt.Errorf("projections: list models: %w", err)
	}
	return out, nil
}

// GetModel returns the stored model name, or an error wrapping
// store.ErrNotFound.
func GetModel(r store.Reader, name string) (*Model, error) {
	v, err := r.Get(modelKey(name))
	if err != nil {
		return nil, fmt.Errorf("projections: model %q: %w", name, err)
	}
	var m Model
	if err := msgpack.Unmarshal(v, &m); err != nil {
		return nil, fmt.Errorf("projections: model %q: %w", name, err)
	}
	return &m, nil
}

func (sm *StateMachine) applyModelControl(rw store.ReadWriter, c *Control, res *Result) error {
	m := c.Model
	key := modelKey(m.Name)
	prev, err := GetModel(rw, m.Name)
	exists := err == nil
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		return err
	}
	switch c.Kind {
	case ControlModelPut:
		if m.Validate() != nil {
			return nil // invalid on the log: ignored alike by every replay
		}
		m.Version, m.Created, m.Updated = 1, c.Time, c.Time
		if exists {
			m.Version, m.Created = prev.Version+1, prev.Created
		}
		if err := setMsgpack(rw, key, &m); err != nil {
			return err
		}
	case ControlModelDelete:
		if !exists {
			return nil
		}
		if err := rw.Delete(key); err != nil {
			return err
		}
	}
	if err := sm.loadModels(rw); err != nil {
		return err
	}
	if sm.audiences.Load().ReadsPredictions() {
		// The scores change: the audiences that read them are evaluated
		// again (the backfill), and their timers computed anew.
		gen, err := readUint64(rw, keyAudienceGen)
		if err != nil {
			return err
		}
		if err := setUint64(rw, keyAudienceGen, gen+1); err != nil {
			return err
		}
	}
	res.Models = true
	return nil
}

// loadModels keeps the stored models in memory: the rules read their
// scores at every evaluation.
func (sm *StateMachine) loadModels(r store.Reader) error {
	ms, err := Models(r)
	if err != nil {
		return err
	}
	sm.models.Store(&ms)
	return nil
}

// prediction is rules.Facts.Prediction of a profile: the score name
// ("churn_risk": of the model named clv; "<model>.<score>": of another;
// "<model>.propensity": of a propensity model; rules.AffinityKey's keys:
// an affinity) as of time at.
func (sm *StateMachine) prediction(prof *gcr.Profile, name string, at int64) (float64, bool) {
	f := prof.Features
	if kind, value, ok := rules.ParseAffinityKey(name); ok {
		if sm.opts.InteractionKey == nil {
			return 0, false
		}
		return features.Affinity(f, kind, sm.opts.InteractionKey(kind, value), at)
	}
	model, score := "clv", name
	if i := strings.LastIndexByte(name, '.'); i >= 0 {
		model, score = name[:i], name[i+1:]
	}
	ms := *sm.models.Load()
	i, ok := slices.BinarySearchFunc(ms, model, func(m Model, name string) int { return strings.Compare(m.Name, name) })
	if !ok {
		return 0, false
	}
	if score == "propensity" {
		if prof.Stats.Events == 0 {
			return 0, false
		}
		return PropensityScore(&ms[i], f, prof.Stats.FirstSeen, prof.Stats.LastSeen, at)
	}
	s, ok := ModelScores(&ms[i], f, at)
	if !ok {
		return 0, false
	}
	switch score {
	case "p_alive":
		return s.PAlive, true
	case "churn_risk":
		return s.ChurnRisk, true
	case "expected_purchases_30d":
		return s.Expected30, true
	case "expected_purchases_90d":
		return s.Expected90, true
	case "expected_purchases_365d":
		return s.Expected365, true
	case "clv_365d":
		return s.CLV365, true
	}
	return 0, false
}
