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

// hyp2f1 is the Gauss hypergeometric function 2F1(a, b; c; z) for 0 <= z < 1
// (gonum's port of Cephes, the routine scipy and the published fits use).
func hyp2f1(a, b, c, z float64) float64 {
	return mathext.Hypergeo(a, b, c, z)
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
