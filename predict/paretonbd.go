package predict

import (
	"fmt"
	"math"
)

// ParetoNBD is the Pareto/NBD model of Schmittlein, Morrison and Colombo
// (1987) in the parametrization of Fader and Hardie: while alive a customer
// buys at a Poisson rate λ ~ Gamma(R, Alpha); their lifetime is exponential
// with rate μ ~ Gamma(S, Beta), so they may drop out at any time.
type ParetoNBD struct {
	R, Alpha, S, Beta float64
}

// Validate reports whether every parameter is a finite number > 0.
func (m ParetoNBD) Validate() error {
	return positive("pareto_nbd", []string{"r", "alpha", "s", "beta"}, []float64{m.R, m.Alpha, m.S, m.Beta})
}

// logA0 is log A₀ of Fader and Hardie's "A Note on Deriving the Pareto/NBD
// Model and Related Expressions" (2005, eq. 19–20): the integral over the
// dropout time between t_x and T, through the Gauss hypergeometric function
// of the smaller of α, β against the larger (so its argument is in [0, 1)).
func (m ParetoNBD) logA0(c RFM) float64 {
	r, alpha, s, beta := m.R, m.Alpha, m.S, m.Beta
	x := float64(c.X)
	lo, hi, b := beta, alpha, s+1
	if alpha < beta {
		lo, hi, b = alpha, beta, r+x
	}
	rsx := r + s + x
	return logSubExp(logA0Term(rsx, b, lo, hi, c.TX), logA0Term(rsx, b, lo, hi, c.T))
}

// logA0Term is log 2F1(rsx, b; rsx+1; z) − rsx log(hi+t), z = (hi−lo)/(hi+t),
// through Euler's transformation 2F1(A, B; C; z) = (1−z)^(C−A−B) 2F1(C−A,
// C−B; C; z) with 1 − z = (lo+t)/(hi+t): the factor that overflows for
// frequent buyers when z is near 1 is taken in log space, and the series
// left, 2F1(1, rsx+1−b; rsx+1; z), has a first parameter of 1.
func logA0Term(rsx, b, lo, hi, t float64) float64 {
	q := hi + t
	lq := math.Log(q)
	return (1-b)*(math.Log(lo+t)-lq) + math.Log(hyp2f1(1, rsx+1-b, rsx+1, (hi-lo)/q)) - rsx*lq
}

// logLikelihoodParts returns the log-likelihood of one customer and the log
// of its "alive through T" term, whose difference is log P(alive).
func (m ParetoNBD) logLikelihoodParts(c RFM) (ll, alive float64) {
	r, alpha, s, beta := m.R, m.Alpha, m.S, m.Beta
	x := float64(c.X)
	a1 := lgamma(r+x) - lgamma(r) + r*math.Log(alpha) + s*math.Log(beta)
	alive = a1 - (r+x)*math.Log(alpha+c.T) - s*math.Log(beta+c.T)
	if c.TX == c.T { // bought at the very end: no room to drop out unseen
		return alive, alive
	}
	dead := a1 + math.Log(s) - math.Log(r+s+x) + m.logA0(c)
	return logAddExp(alive, dead), alive
}

// LogLikelihood is the log-likelihood of one customer's summary.
func (m ParetoNBD) LogLikelihood(c RFM) float64 {
	ll, _ := m.logLikelihoodParts(c)
	return ll
}

// PAlive is the probability that a customer with summary c is still alive
// at the end of calibration.
func (m ParetoNBD) PAlive(c RFM) float64 {
	ll, alive := m.logLikelihoodParts(c)
	return math.Exp(alive - ll)
}

// ExpectedPurchases is E[X(t)], the expected purchases of a new customer in
// their first t time units.
func (m ParetoNBD) ExpectedPurchases(t float64) float64 {
	return m.R * m.Beta / m.Alpha * powm1Ratio(m.Beta/(m.Beta+t), m.S-1)
}

// ConditionalExpected is E[Y(t) | x, t_x, T]: the expected purchases in the
// next t time units of a customer with summary c.
func (m ParetoNBD) ConditionalExpected(t float64, c RFM) float64 {
	if t <= 0 {
		return 0
	}
	x := float64(c.X)
	bt := m.Beta + c.T
	rate := (m.R + x) / (m.Alpha + c.T) // E[λ | data, alive]
	// E[min(lifetime left, t)] given alive: bt × (1 − (bt/(bt+t))^(s−1)) / (s−1).
	return m.PAlive(c) * rate * bt * powm1Ratio(bt/(bt+t), m.S-1)
}

// FitParetoNBD fits the model to the groups by maximum likelihood.
func FitParetoNBD(groups []Group, o FitOptions) (ParetoNBD, Fit, error) {
	if err := o.Validate(); err != nil {
		return ParetoNBD{}, Fit{}, err
	}
	n, err := countGroups(groups)
	if err != nil {
		return ParetoNBD{}, Fit{}, err
	}
	p, best, evals, err := maximize(newPairTable(groups).paretoNBDLL(), []float64{0, 0, 0, 0}, o.withDefaults())
	if err != nil {
		return ParetoNBD{}, Fit{}, fmt.Errorf("predict: pareto_nbd: %w", err)
	}
	return ParetoNBD{R: p[0], Alpha: p[1], S: p[2], Beta: p[3]}, Fit{LogLikelihood: best, Customers: n, Evaluations: evals}, nil
}
