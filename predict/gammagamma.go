package predict

import (
	"fmt"
	"math"
)

// GammaGamma is the Gamma-Gamma model of monetary value (Fader, Hardie and
// Lee 2005, "RFM and CLV"; Fader and Hardie 2013, note 025): a customer's
// transaction values are Gamma(P, ν) around their mean P/ν, and ν ~
// Gamma(Q, Gamma) across customers. Spend is assumed independent of the
// purchase process.
type GammaGamma struct {
	P, Q, Gamma float64
}

// Validate reports whether every parameter is a finite number > 0.
func (m GammaGamma) Validate() error {
	return positive("gamma_gamma", []string{"p", "q", "gamma"}, []float64{m.P, m.Q, m.Gamma})
}

// LogLikelihood is the log-likelihood of one customer's mean spend mean over
// x > 0 repeat purchases (the density of the mean, as the published fit).
func (m GammaGamma) LogLikelihood(x int, mean float64) float64 {
	p, q, g := m.P, m.Q, m.Gamma
	fx := float64(x)
	px := p * fx
	return lgamma(px+q) - lgamma(px) - lgamma(q) + q*math.Log(g) +
		(px-1)*math.Log(mean) + px*math.Log(fx) - (px+q)*math.Log(g+mean*fx)
}

// MeanSpend is the expected transaction value of a customer with no repeat
// purchases yet: pγ/(q−1), +Inf when q <= 1 (the population mean does not exist).
func (m GammaGamma) MeanSpend() float64 {
	if m.Q <= 1 {
		return math.Inf(1)
	}
	return m.P * m.Gamma / (m.Q - 1)
}

// ConditionalSpend is E[M | x, mean]: the expected transaction value of a
// customer whose x repeat purchases averaged mean, a weighted average of the
// population mean and theirs. With x = 0 it is MeanSpend.
func (m GammaGamma) ConditionalSpend(x int, mean float64) float64 {
	if x <= 0 {
		return m.MeanSpend()
	}
	px := m.P * float64(x)
	return m.P * (m.Gamma + mean*float64(x)) / (px + m.Q - 1)
}

// FitGammaGamma fits the model to customers with repeat purchases by
// maximum likelihood.
func FitGammaGamma(spends []Spend, o FitOptions) (GammaGamma, Fit, error) {
	if err := o.Validate(); err != nil {
		return GammaGamma{}, Fit{}, err
	}
	n := 0
	for i, g := range spends {
		if g.N <= 0 || g.X <= 0 || !(g.Mean > 0) || math.IsInf(g.Mean, 0) {
			return GammaGamma{}, Fit{}, fmt.Errorf("predict: spend group %d: count %d, x %d, mean %v: want all > 0 and finite", i, g.N, g.X, g.Mean)
		}
		n += g.N
	}
	if n == 0 {
		return GammaGamma{}, Fit{}, ErrNoData
	}
	p, best, evals, err := maximize(newSpendTable(spends).gammaGammaLL(), []float64{0, 0, 0}, o.withDefaults())
	if err != nil {
		return GammaGamma{}, Fit{}, fmt.Errorf("predict: gamma_gamma: %w", err)
	}
	return GammaGamma{P: p[0], Q: p[1], Gamma: p[2]}, Fit{LogLikelihood: best, Customers: n, Evaluations: evals}, nil
}
