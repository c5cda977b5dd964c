package projections

import (
	"errors"
	"fmt"
	"math"

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
	ControlModelPut    = "model.put"    // Model: create or replace (Version, Created, Updated assigned by Apply)
	ControlModelDelete = "model.delete" // Model.Name
	ModelKindCLV       = "clv"          // BG/NBD + Pareto/NBD + Gamma-Gamma
)

var prefixModel = []byte("md/") // md/<name> → msgpack Model

func modelKey(name string) []byte { return append(append([]byte(nil), prefixModel...), name...) }

// Validate checks a model as a put would store it: a name like an
// audience's, kind clv, 4, 4 and 3 finite positive parameters, a time unit
// > 0, a known scorer.
func (m *Model) Validate() error {
	switch {
	case !audienceName.MatchString(m.Name):
		return fmt.Errorf("projections: model name %q: want [a-z0-9][a-z0-9_-]{0,63}", m.Name)
	case m.Kind != ModelKindCLV:
		return fmt.Errorf("projections: model %q: kind %q, want %q", m.Name, m.Kind, ModelKindCLV)
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
	res.Models = true
	return nil
}
