package propensity

import (
	"fmt"
	"math"

	"gonum.org/v1/gonum/mat"
)

// LogisticOptions configure FitLogistic. Zero fields take their defaults.
type LogisticOptions struct {
	// L2 is the penalty λ·Σw² on the weights of the standardized features
	// (the intercept is not penalized). Default 1.
	L2 float64
	// MaxIter bounds the Newton steps. Default 50.
	MaxIter int
	// Tol stops the iteration when no weight moves by more than it.
	// Default 1e-10.
	Tol float64
}

func (o *LogisticOptions) defaults() {
	if o.L2 == 0 {
		o.L2 = 1
	}
	if o.MaxIter == 0 {
		o.MaxIter = 50
	}
	if o.Tol == 0 {
		o.Tol = 1e-10
	}
}

// Logistic is a fitted logistic regression on standardized features:
// P(y) = σ(Intercept + Σ W[j]·z[j]), z = Std.Apply(x).
type Logistic struct {
	Names     []string
	Std       Standardizer
	Intercept float64
	W         []float64
	// Iterations is the number of Newton steps taken.
	Iterations int
}

// FitLogistic fits an L2-regularized logistic regression by Newton's method
// (iteratively reweighted least squares): each step solves the penalized
// Hessian system by Cholesky. The loss is convex and strictly so with L2 > 0,
// the start is all zeros and the arithmetic is serial: the same data give the
// same weights.
func FitLogistic(d *Dataset, opt LogisticOptions) (*Logistic, error) {
	opt.defaults()
	if err := d.Validate(); err != nil {
		return nil, err
	}
	if opt.L2 < 0 {
		return nil, fmt.Errorf("propensity: logistic: L2 %v must be > 0", opt.L2)
	}
	std := FitStandardizer(d.X)
	n, p := len(d.X), len(d.Names)+1 // intercept last
	z := mat.NewDense(n, p, nil)
	for i, row := range d.X {
		zi := z.RawRowView(i)
		for j, v := range row {
			zi[j] = (v - std.Mean[j]) / std.Scale[j]
		}
		zi[p-1] = 1
	}
	w := mat.NewVecDense(p, nil)
	eta := mat.NewVecDense(n, nil)
	r := mat.NewVecDense(n, nil)
	a := mat.NewDense(n, p, nil) // rows of z scaled by √(μ(1−μ))
	h := mat.NewSymDense(p, nil)
	g := mat.NewVecDense(p, nil)
	step := mat.NewVecDense(p, nil)
	m := &Logistic{Names: d.Names, Std: std}
	for it := 1; it <= opt.MaxIter; it++ {
		eta.MulVec(z, w)
		for i := range n {
			mu := sigmoid(eta.AtVec(i))
			res := mu
			if d.Y[i] {
				res = mu - 1
			}
			r.SetVec(i, res)
			sq := math.Sqrt(math.Max(mu*(1-mu), 1e-12))
			ai, zi := a.RawRowView(i), z.RawRowView(i)
			for j, v := range zi {
				ai[j] = sq * v
			}
		}
		g.MulVec(z.T(), r)
		h.SymOuterK(1, a.T())
		for j := 0; j < p-1; j++ {
			g.SetVec(j, g.AtVec(j)+2*opt.L2*w.AtVec(j))
			h.SetSym(j, j, h.At(j, j)+2*opt.L2)
		}
		var ch mat.Cholesky
		if !ch.Factorize(h) {
			return nil, fmt.Errorf("propensity: logistic: Hessian not positive definite at step %d", it)
		}
		if err := ch.SolveVecTo(step, g); err != nil {
			return nil, fmt.Errorf("propensity: logistic: step %d: %w", it, err)
		}
		var moved float64
		for j := range p {
			w.SetVec(j, w.AtVec(j)-step.AtVec(j))
			moved = math.Max(moved, math.Abs(step.AtVec(j)))
		}
		m.Iterations = it
		if moved < opt.Tol {
			break
		}
	}
	ws := w.RawVector().Data
	m.W, m.Intercept = ws[:p-1], ws[p-1]
	return m, nil
}

// Predict returns P(y = true | x); x has one value per feature (Names).
func (m *Logistic) Predict(x []float64) float64 {
	eta := m.Intercept
	for j, v := range x {
		eta += m.W[j] * (v - m.Std.Mean[j]) / m.Std.Scale[j]
	}
	return sigmoid(eta)
}

// PredictAll scores every row of x.
func PredictAll(m interface{ Predict([]float64) float64 }, x [][]float64) []float64 {
	out := make([]float64, len(x))
	for i, row := range x {
		out[i] = m.Predict(row)
	}
	return out
}
