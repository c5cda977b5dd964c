package predict

import (
	"math"

	"gonum.org/v1/gonum/mathext"
)

// logAddExp returns log(exp(a) + exp(b)) without overflow.
func logAddExp(a, b float64) float64 {
	if math.IsInf(a, -1) {
		return b
	}
	if math.IsInf(b, -1) {
		return a
	}
	if a < b {
		a, b = b, a
	}
	return a + math.Log1p(math.Exp(b-a))
}

// logSubExp returns log(exp(a) - exp(b)) for a >= b (-Inf when equal, NaN
// when a < b).
func logSubExp(a, b float64) float64 {
	if math.IsInf(b, -1) {
		return a
	}
	if a < b {
		return math.NaN()
	}
	if a == b {
		return math.Inf(-1)
	}
	return a + math.Log(-math.Expm1(b-a))
}

// lgamma is log Γ(x) for x > 0.
func lgamma(x float64) float64 {
	v, _ := math.Lgamma(x)
	return v
}

// hyp2f1 is the Gauss hypergeometric function 2F1(a, b; c; z) for
// 0 <= z < 1 and c > 0. It sums the power series while that converges
// within hyp2f1Terms terms (always, for the moderate z and the large c of
// the models' frequent buyers). Otherwise it falls back on gonum's port of
// Cephes (the routine scipy and the published fits use), which transforms
// z near 1. Cephes loops without a bound when c − a − b is an integer and z
// is near 1, so then c is moved by a relative 1e-9 first (2F1 is continuous
// in c; the error is of that order).
func hyp2f1(a, b, c, z float64) float64 {
	if v, ok := hyp2f1Series(a, b, c, z); ok {
		return v
	}
	if d := c - a - b; d == math.Trunc(d) {
		c += math.Max(math.Abs(c), 1) * 1e-9
	}
	return mathext.Hypergeo(a, b, c, z)
}

// hyp2f1Terms bounds the terms summed by hyp2f1Series.
const hyp2f1Terms = 20000

// hyp2f1Series sums Σ (a)k (b)k / ((c)k k!) z^k until the tail, bounded by
// the last term over (1 − ratio), is below 1e-16 of the sum. ok is false if
// that does not happen within hyp2f1Terms terms.
func hyp2f1Series(a, b, c, z float64) (v float64, ok bool) {
	if z == 0 {
		return 1, true
	}
	sum, term := 1.0, 1.0
	for k := 0.0; k < hyp2f1Terms; k++ {
		ratio := (a + k) * (b + k) / ((c + k) * (k + 1)) * z
		term *= ratio
		sum += term
		if term == 0 {
			return sum, true
		}
		if r := math.Abs(ratio); r < 1 && math.Abs(term)/(1-r) <= 1e-16*math.Abs(sum) {
			return sum, !math.IsInf(sum, 0) && !math.IsNaN(sum)
		}
		if math.IsInf(sum, 0) || math.IsNaN(sum) {
			return 0, false
		}
	}
	return 0, false
}

// powm1Ratio returns (1 - u^e)/e for u in (0, 1], and its limit -log u as e
// goes to 0, without cancellation near e = 0.
func powm1Ratio(u, e float64) float64 {
	l := math.Log(u)
	if math.Abs(e*l) < 1e-8 {
		return -l * (1 - e*l/2)
	}
	return -math.Expm1(e*l) / e
}
