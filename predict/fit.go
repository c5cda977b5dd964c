package predict

import (
	"errors"
	"fmt"
	"math"

	"gonum.org/v1/gonum/diff/fd"
	"gonum.org/v1/gonum/optimize"
)

// FitOptions bounds a maximum-likelihood fit.
type FitOptions struct {
	// MaxEvaluations bounds the likelihood evaluations of each optimizer
	// pass; 0 means 20,000.
	MaxEvaluations int
}

func (o FitOptions) withDefaults() FitOptions {
	if o.MaxEvaluations == 0 {
		o.MaxEvaluations = 20000
	}
	return o
}

// Validate checks the options.
func (o FitOptions) Validate() error {
	if o.MaxEvaluations < 0 {
		return fmt.Errorf("predict: max evaluations %d < 0", o.MaxEvaluations)
	}
	return nil
}

// Fit describes a fit's result.
type Fit struct {
	LogLikelihood float64 // at the fitted parameters, summed over the customers
	Customers     int
	Evaluations   int // likelihood evaluations of all passes
}

// ErrNoData is returned when a fit has no customers to learn from.
var ErrNoData = errors.New("predict: no customers to fit")

// ErrNotConverged is returned when the optimizer ends without a finite optimum.
var ErrNotConverged = errors.New("predict: fit did not converge")

// maximize finds the log-parameters maximizing ll (a log-likelihood of the
// parameters exp(theta)) from start: Nelder-Mead (robust where the
// likelihood is flat or not finite), then BFGS with central-difference
// gradients from its optimum, restarted until a pass no longer improves. It
// is deterministic: serial evaluations, fixed starts.
func maximize(ll func(params []float64) float64, start []float64, o FitOptions) ([]float64, float64, int, error) {
	dim := len(start)
	params := make([]float64, dim)
	neg := func(theta []float64) float64 {
		for i, t := range theta {
			params[i] = math.Exp(t)
		}
		v := ll(params)
		if math.IsNaN(v) || math.IsInf(v, 0) {
			return math.Inf(1)
		}
		return -v
	}
	settings := &optimize.Settings{
		FuncEvaluations: o.MaxEvaluations,
		Converger:       &optimize.FunctionConverge{Absolute: 1e-10, Relative: 1e-13, Iterations: 200},
	}
	x := append([]float64(nil), start...)
	best := neg(x)
	evals := 1
	for pass := 0; pass < 8; pass++ {
		improved := false
		res, err := optimize.Minimize(optimize.Problem{Func: neg}, x, settings, &optimize.NelderMead{})
		if res != nil {
			evals += res.FuncEvaluations
			if res.F < best {
				improved = best-res.F > 1e-9
				best, x = res.F, append(x[:0], res.X...)
			}
		}
		if err != nil && res == nil {
			return nil, 0, evals, fmt.Errorf("%w: %v", ErrNotConverged, err)
		}
		grad := func(g, theta []float64) {
			fd.Gradient(g, neg, theta, &fd.Settings{Formula: fd.Central})
		}
		res, err = optimize.Minimize(optimize.Problem{Func: neg, Grad: grad}, x, &optimize.Settings{
			FuncEvaluations: o.MaxEvaluations,
			Converger:       &optimize.FunctionConverge{Absolute: 1e-10, Relative: 1e-13, Iterations: 50},
		}, &optimize.BFGS{})
		if res != nil {
			evals += res.FuncEvaluations + res.GradEvaluations*2*dim
			if res.F < best && !math.IsInf(res.F, 0) {
				improved = improved || best-res.F > 1e-9
				best, x = res.F, append(x[:0], res.X...)
			}
		}
		_ = err // a failed line search leaves the best point found so far
		if !improved {
			break
		}
	}
	if math.IsInf(best, 0) || math.IsNaN(best) {
		return nil, 0, evals, ErrNotConverged
	}
	out := make([]float64, dim)
	for i, t := range x {
		out[i] = math.Exp(t)
	}
	return out, -best, evals, nil
}
