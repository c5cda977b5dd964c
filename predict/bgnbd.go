package predict

import (
	"fmt"
	"math"
)

// BGNBD is the beta-geometric/NBD model of Fader, Hardie and Lee (2005),
// "Counting Your Customers the Easy Way": while alive a customer buys at a
// Poisson rate λ ~ Gamma(R, Alpha); after each purchase they drop out with
// probability p ~ Beta(A, B).
type BGNBD struct {
	R, Alpha, A, B float64
}

// Validate reports whether every parameter is a finite number > 0.
func (m BGNBD) Validate() error {
	return positive("bgnbd", []string{"r", "alpha", "a", "b"}, []float64{m.R, m.Alpha, m.A, m.B})
}

// positive checks that every named parameter is finite and > 0.
func positive(model string, names []string, vals []float64) error {
	for i, v := range vals {
		if !(v > 0) || math.IsInf(v, 0) {
			return fmt.Errorf("predict: %s: %s = %v is not a finite number > 0", model, names[i], v)
		}
	}
	return nil
}

// LogLikelihood is the log-likelihood of one customer's summary (FHL 2005, eq. 6).
func (m BGNBD) LogLikelihood(c RFM) float64 {
	r, alpha, a, b := m.R, m.Alpha, m.A, m.B
	x := float64(c.X)
	a1 := lgamma(r+x) - lgamma(r) + r*math.Log(alpha)
	a2 := lgamma(a+b) + lgamma(b+x) - lgamma(b) - lgamma(a+b+x)
	a3 := -(r + x) * math.Log(alpha+c.T)
	if c.X == 0 {
		return a1 + a2 + a3
	}
	a4 := math.Log(a) - math.Log(b+x-1) - (r+x)*math.Log(alpha+c.TX)
	return a1 + a2 + logAddExp(a3, a4)
}

// PAlive is the probability that a customer with summary c is still alive
// at the end of calibration.
func (m BGNBD) PAlive(c RFM) float64 {
	if c.X == 0 {
		return 1
	}
	x := float64(c.X)
	// log of (a/(b+x-1)) ((alpha+T)/(alpha+t_x))^(r+x)
	l := math.Log(m.A) - math.Log(m.B+x-1) + (m.R+x)*(math.Log(m.Alpha+c.T)-math.Log(m.Alpha+c.TX))
	return 1 / (1 + math.Exp(l))
}

// ExpectedPurchases is E[X(t)], the expected purchases of a new customer in
// their first t time units (repeat purchases: the trial is not counted).
func (m BGNBD) ExpectedPurchases(t float64) float64 {
	r, alpha, a, b := m.R, m.Alpha, m.A, m.B
	h := hyp2f1(r, b, a+b-1, t/(alpha+t))
	return (a + b - 1) / (a - 1) * (1 - math.Pow(alpha/(alpha+t), r)*h)
}

// ConditionalExpected is E[Y(t) | x, t_x, T]: the expected purchases in the
// next t time units of a customer with summary c (FHL 2005, eq. 10).
func (m BGNBD) ConditionalExpected(t float64, c RFM) float64 {
	if t <= 0 {
		return 0
	}
	r, alpha, a, b := m.R, m.Alpha, m.A, m.B
	x := float64(c.X)
	z := t / (alpha + c.T + t)
	u := (alpha + c.T) / (alpha + c.T + t) // 1 − z
	// FHL's u^(r+x) 2F1(r+x, b+x; a+b+x−1; z) through Euler's transformation
	// 2F1(A, B; C; z) = (1−z)^(C−A−B) 2F1(C−A, C−B; C; z): u^(a−1)
	// 2F1(a+b−1−r, a−1; a+b+x−1; z). The same value, but its first two
	// parameters do not grow with x, so the series neither overflows nor
	// cancels for frequent buyers (2F1(r+x, b+x; ...) overflows at x ~ 1000).
	h := math.Pow(u, a-1) * hyp2f1(a+b-1-r, a-1, a+b+x-1, z)
	return (a + b + x - 1) / (a - 1) * (1 - h) * m.PAlive(c)
}

// FitBGNBD fits the model to the groups by maximum likelihood.
func FitBGNBD(groups []Group, o FitOptions) (BGNBD, Fit, error) {
	if err := o.Validate(); err != nil {
		return BGNBD{}, Fit{}, err
	}
	n, err := countGroups(groups)
	if err != nil {
		return BGNBD{}, Fit{}, err
	}
	p, best, evals, err := maximize(newRFMTable(groups).bgnbdLL(), []float64{0, 0, 0, 0}, o.withDefaults())
	if err != nil {
		return BGNBD{}, Fit{}, fmt.Errorf("predict: bgnbd: %w", err)
	}
	return BGNBD{R: p[0], Alpha: p[1], A: p[2], B: p[3]}, Fit{LogLikelihood: best, Customers: n, Evaluations: evals}, nil
}

// countGroups validates the groups and returns the customers they hold.
func countGroups(groups []Group) (int, error) {
	n := 0
	for i, g := range groups {
		if g.N <= 0 {
			return 0, fmt.Errorf("predict: group %d: count %d <= 0", i, g.N)
		}
		if err := g.RFM.Validate(); err != nil {
			return 0, fmt.Errorf("predict: group %d: %w", i, err)
		}
		n += g.N
	}
	if n == 0 {
		return 0, ErrNoData
	}
	return n, nil
}
