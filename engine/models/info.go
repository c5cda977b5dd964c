package models

import (
	"cmp"
	"slices"
	"time"

	"github.com/aurumcdp/aurum/predict"
	"github.com/aurumcdp/aurum/projections"
)

// Info is a model as GET /v1/models/{name} shows it (issue #12's shape).
type Info struct {
	Name           string      `json:"name"`
	Kind           string      `json:"kind"`
	Status         string      `json:"status"`          // running, ready or failed
	Error          string      `json:"error,omitempty"` // why the last fit failed
	TimeUnit       string      `json:"time_unit"`       // week or day
	CalibrationEnd string      `json:"calibration_end"` // YYYY-MM-DD
	Scorer         string      `json:"scorer"`          // the model scoring p_alive and the expectations
	Version        int64       `json:"version,omitempty"`
	Params         *Params     `json:"params,omitempty"`
	Customers      int64       `json:"customers"`
	Repeaters      int64       `json:"repeaters"` // customers with x > 0: Gamma-Gamma's
	FittedAsOf     *FittedAsOf `json:"fitted_as_of,omitempty"`
	// Propensity is a propensity model's label, features and holdout AUC.
	Propensity *PropensityInfo `json:"propensity,omitempty"`
	// Recommend is a next-best-product model's counts and tables' sizes.
	Recommend *RecommendInfo `json:"recommend,omitempty"`
	// RefitEvery is the record's refit policy (propensity, recommend),
	// NextRefit when it is due (the record's time plus the period; a
	// failed refit is tried again a period after it).
	RefitEvery string     `json:"refit_every,omitempty"`
	NextRefit  *time.Time `json:"next_refit,omitempty"`
	Started    *time.Time `json:"started,omitempty"` // of the fit in flight or failed
	Created    *time.Time `json:"created,omitempty"`
	Updated    *time.Time `json:"updated,omitempty"`
}

// PropensityInfo is a propensity model as GET /v1/models/{name} shows it.
type PropensityInfo struct {
	Event      string   `json:"event"`       // the target event
	WindowDays int64    `json:"window_days"` // the label: the event within this many days
	Names      []string `json:"names"`       // the event names whose decayed counts are features
	// Classifier is the one that scores: logistic (L2, on standardized
	// features) or gbt (gradient-boosted trees); while a fit of algorithm
	// auto runs, "".
	Classifier string `json:"classifier"`
	// Algorithm is what the fit was asked: auto, logistic or gbt.
	Algorithm string `json:"algorithm,omitempty"`
	// AUC is the holdout AUC of the time-based split of the classifier
	// recorded: trained on the profiles as of two windows before the
	// fit's log time, evaluated on them one window before (null: one
	// class only).
	AUC *float64 `json:"auc"`
	// AUCs are both classifiers' holdout AUCs on the same rows (records
	// written before the trees have none).
	AUCs *PropensityAUCs `json:"aucs,omitempty"`
	// Trees and Depth are the size of a gbt classifier's forest.
	Trees     int   `json:"trees,omitempty"`
	Depth     int   `json:"depth,omitempty"`
	Examples  int64 `json:"examples"`  // training rows of the stored model
	Positives int64 `json:"positives"` // of which with the event in the window
}

// PropensityAUCs are the holdout AUCs of both classifiers of a propensity
// fit (null: not a number).
type PropensityAUCs struct {
	Logistic *float64 `json:"logistic"`
	GBT      *float64 `json:"gbt"`
}

// propensityInfo is a propensity record as GET /v1/models/{name} shows it.
func propensityInfo(p *projections.PropensityParams) *PropensityInfo {
	in := &PropensityInfo{Event: p.Target, WindowDays: p.WindowDays, Names: p.Names, AUC: finite(p.AUC),
		Examples: p.Examples, Positives: p.Positives, Classifier: p.Classifier, Algorithm: p.Algorithm}
	if in.Classifier == "" {
		in.Classifier = projections.ClassifierLogistic
	}
	if p.Algorithm != "" {
		in.AUCs = &PropensityAUCs{Logistic: finite(p.AUCLogistic), GBT: finite(p.AUCGBT)}
	}
	if p.Trees != nil {
		in.Trees, in.Depth = len(p.Trees.Trees), p.Trees.Depth()
	}
	return in
}

// Params are the fitted parameters.
type Params struct {
	BGNBD      BGNBDParams      `json:"bgnbd"`
	ParetoNBD  ParetoNBDParams  `json:"pareto_nbd"`
	GammaGamma GammaGammaParams `json:"gamma_gamma"`
}

// BGNBDParams are BG/NBD's r, α, a, b and the fit's log-likelihood.
type BGNBDParams struct {
	R             float64 `json:"r"`
	Alpha         float64 `json:"alpha"`
	A             float64 `json:"a"`
	B             float64 `json:"b"`
	LogLikelihood float64 `json:"log_likelihood"`
}

// ParetoNBDParams are Pareto/NBD's r, α, s, β and the fit's log-likelihood.
type ParetoNBDParams struct {
	R             float64 `json:"r"`
	Alpha         float64 `json:"alpha"`
	S             float64 `json:"s"`
	Beta          float64 `json:"beta"`
	LogLikelihood float64 `json:"log_likelihood"`
}

// GammaGammaParams are Gamma-Gamma's p, q, γ and the fit's log-likelihood.
type GammaGammaParams struct {
	P             float64 `json:"p"`
	Q             float64 `json:"q"`
	Gamma         float64 `json:"gamma"`
	LogLikelihood float64 `json:"log_likelihood"`
}

// FittedAsOf is the log position and time the fit read up to.
type FittedAsOf struct {
	Seq  uint64    `json:"seq"`
	Time time.Time `json:"time"`
}

func timeUnit(daysPerUnit int64) string {
	switch daysPerUnit {
	case 7:
		return "week"
	case 1:
		return "day"
	}
	return ""
}

func msTime(ms int64) *time.Time {
	t := time.UnixMilli(ms).UTC()
	return &t
}

// infoOf combines a record (nil: none) and this node's fit of the name (nil:
// none): a fit in flight or failed shows its status over the record's.
func (s *Service) infoOf(m *projections.Model, st *jobState) Info {
	var in Info
	if m != nil && m.Kind == projections.ModelKindPropensity && m.Propensity != nil {
		p := m.Propensity
		in = Info{Name: m.Name, Kind: m.Kind, Status: StatusReady, Version: m.Version, Customers: p.Examples,
			FittedAsOf: &FittedAsOf{Seq: m.FittedAsOf.Seq, Time: time.UnixMilli(m.FittedAsOf.Time).UTC()},
			Created:    msTime(m.Created), Updated: msTime(m.Updated),
			Propensity: propensityInfo(p)}
	} else if m != nil && m.Kind == projections.ModelKindRecommend && m.Recommend != nil {
		in = Info{Name: m.Name, Kind: m.Kind, Status: StatusReady, Version: m.Version, Customers: m.Customers,
			FittedAsOf: &FittedAsOf{Seq: m.FittedAsOf.Seq, Time: time.UnixMilli(m.FittedAsOf.Time).UTC()},
			Created:    msTime(m.Created), Updated: msTime(m.Updated), Recommend: recommendInfo(m.Recommend)}
	} else if m != nil && m.Kind == projections.ModelKindCLV {
		in = Info{Name: m.Name, Kind: m.Kind, Status: StatusReady, TimeUnit: timeUnit(m.DaysPerUnit),
			CalibrationEnd: dayString(m.CalibrationEnd), Scorer: m.Scorer, Version: m.Version,
			Params: &Params{
				BGNBD: BGNBDParams{R: m.BGNBD.P[0], Alpha: m.BGNBD.P[1], A: m.BGNBD.P[2], B: m.BGNBD.P[3], LogLikelihood: m.BGNBD.LL},
				ParetoNBD: ParetoNBDParams{R: m.ParetoNBD.P[0], Alpha: m.ParetoNBD.P[1], S: m.ParetoNBD.P[2], Beta: m.ParetoNBD.P[3],
					LogLikelihood: m.ParetoNBD.LL},
				GammaGamma: GammaGammaParams{P: m.GammaGamma.P[0], Q: m.GammaGamma.P[1], Gamma: m.GammaGamma.P[2], LogLikelihood: m.GammaGamma.LL},
			},
			Customers: m.Customers, Repeaters: m.Repeaters,
			FittedAsOf: &FittedAsOf{Seq: m.FittedAsOf.Seq, Time: time.UnixMilli(m.FittedAsOf.Time).UTC()},
			Created:    msTime(m.Created), Updated: msTime(m.Updated)}
	}
	if m != nil && m.Refit != nil && in.Name != "" {
		in.RefitEvery, in.NextRefit = formatEvery(m.Refit.EveryMs), msTime(m.Updated+m.Refit.EveryMs)
	}
	if st != nil {
		in.Status, in.Error = st.status, st.err
		started := st.started
		in.Started = &started
		if m == nil {
			in.Name, in.Kind, in.TimeUnit, in.CalibrationEnd, in.Scorer = st.req.Name, st.req.Kind, st.req.TimeUnit, st.req.CalibrationEnd, st.req.Scorer
			if st.req.Kind == projections.ModelKindPropensity {
				in.Propensity = &PropensityInfo{Event: st.req.Event, WindowDays: int64(st.req.WindowDays), Names: st.req.Names,
					Algorithm: st.req.Algorithm}
				if st.req.Algorithm != projections.AlgorithmAuto {
					in.Propensity.Classifier = st.req.Algorithm
				}
			}
			if st.req.Kind == projections.ModelKindRecommend {
				in.Recommend = &RecommendInfo{MaxItems: st.req.MaxItems}
			}
		}
	}
	return in
}

func sortInfos(in []Info) {
	slices.SortFunc(in, func(a, b Info) int { return cmp.Compare(a.Name, b.Name) })
}

// EvaluationInfo is a back-test as GET /v1/models/{name}/evaluation shows it.
type EvaluationInfo struct {
	Model          string          `json:"model"`
	CalibrationEnd string          `json:"calibration_end"`
	HoldoutEnd     string          `json:"holdout_end"`
	TimeUnit       string          `json:"time_unit"`
	Holdout        float64         `json:"holdout"` // its length in time units
	Customers      int             `json:"customers"`
	Scorer         string          `json:"scorer"`
	BGNBD          ModelEvaluation `json:"bgnbd"`
	ParetoNBD      ModelEvaluation `json:"pareto_nbd"`
}

// ModelEvaluation is one repeat model's back-test (predict.Evaluation).
// A measure without a value (no variance, no holdout purchase) is null.
type ModelEvaluation struct {
	Expected    float64        `json:"expected"` // sum of the conditional expectations
	Actual      int            `json:"actual"`   // holdout purchases (customer-days)
	Correlation *float64       `json:"correlation"`
	MAPE        *float64       `json:"mape"`
	TotalError  *float64       `json:"total_error"`
	ByFrequency []FrequencyRow `json:"by_frequency"`
}

// FrequencyRow is the mean expectation vs the mean actual of the customers
// with calibration frequency X.
type FrequencyRow struct {
	X         int      `json:"x"`
	Customers int      `json:"customers"`
	Expected  *float64 `json:"expected"`
	Actual    *float64 `json:"actual"`
}

func evaluationOf(ev predict.Evaluation) ModelEvaluation {
	out := ModelEvaluation{Expected: ev.Expected, Actual: ev.Actual, Correlation: finite(ev.Correlation),
		MAPE: finite(ev.MAPE), TotalError: finite(ev.TotalError), ByFrequency: make([]FrequencyRow, len(ev.ByFrequency))}
	for i, r := range ev.ByFrequency {
		out.ByFrequency[i] = FrequencyRow{X: r.X, Customers: r.Customers, Expected: finite(r.Expected), Actual: finite(r.Actual)}
	}
	return out
}
