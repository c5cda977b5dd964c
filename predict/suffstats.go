package predict

import (
	"cmp"
	"math"
	"slices"
)

// rfmTable is groups laid out for repeated likelihood evaluation: the
// distinct x values and the distinct times (t_x and T together), so that a
// term depending on x alone (log-gammas) or on one time (a logarithm) is
// computed once per distinct value, not once per group. With day-based
// summaries there are at most a few hundred of each, while groups run to
// tens of thousands.
type rfmTable struct {
	xs     []float64 // distinct x, ascending
	xN     []float64 // customers with each x
	times  []float64 // distinct t_x and T values, ascending
	groups []tableGroup
}

type tableGroup struct {
	x, tx, t int32 // indices into xs, times, times
	n        float64
	repeat   bool // x > 0
}

func newRFMTable(groups []Group) *rfmTable {
	tb := &rfmTable{}
	for _, g := range groups {
		tb.xs = append(tb.xs, float64(g.X))
		tb.times = append(tb.times, g.TX, g.T)
	}
	slices.Sort(tb.xs)
	tb.xs = slices.Compact(tb.xs)
	slices.Sort(tb.times)
	tb.times = slices.Compact(tb.times)
	tb.xN = make([]float64, len(tb.xs))
	tb.groups = make([]tableGroup, len(groups))
	for i, g := range groups {
		xi, _ := slices.BinarySearch(tb.xs, float64(g.X))
		txi, _ := slices.BinarySearch(tb.times, g.TX)
		ti, _ := slices.BinarySearch(tb.times, g.T)
		tb.xN[xi] += float64(g.N)
		tb.groups[i] = tableGroup{x: int32(xi), tx: int32(txi), t: int32(ti), n: float64(g.N), repeat: g.X > 0}
	}
	return tb
}

// spendTable is spend groups laid out likewise: log of each mean computed
// once, distinct x values shared.
type spendTable struct {
	xs     []float64
	xN     []float64
	groups []spendRow
}

type spendRow struct {
	x       int32
	n       float64
	mean    float64
	logMean float64
}

func newSpendTable(spends []Spend) *spendTable {
	tb := &spendTable{}
	for _, s := range spends {
		tb.xs = append(tb.xs, float64(s.X))
	}
	slices.SortFunc(tb.xs, cmp.Compare)
	tb.xs = slices.Compact(tb.xs)
	tb.xN = make([]float64, len(tb.xs))
	tb.groups = make([]spendRow, len(spends))
	for i, s := range spends {
		xi, _ := slices.BinarySearch(tb.xs, float64(s.X))
		tb.xN[xi] += float64(s.N)
		tb.groups[i] = spendRow{x: int32(xi), n: float64(s.N), mean: s.Mean, logMean: math.Log(s.Mean)}
	}
	return tb
}

// bgnbdLL returns the log-likelihood of the table under BG/NBD parameters
// p = (r, alpha, a, b): the sum of n × BGNBD.LogLikelihood over the groups.
func (tb *rfmTable) bgnbdLL() func(p []float64) float64 {
	perX := make([]float64, len(tb.xs))    // a1 + a2
	c4 := make([]float64, len(tb.xs))      // log a − log(b+x−1)
	logT := make([]float64, len(tb.times)) // log(alpha + t)
	return func(p []float64) float64 {
		r, alpha, a, b := p[0], p[1], p[2], p[3]
		base := -lgamma(r) + r*math.Log(alpha) + lgamma(a+b) - lgamma(b)
		sum := 0.0
		for i, x := range tb.xs {
			perX[i] = base + lgamma(r+x) + lgamma(b+x) - lgamma(a+b+x)
			if x > 0 {
				c4[i] = math.Log(a) - math.Log(b+x-1)
			}
			sum += tb.xN[i] * perX[i]
		}
		for i, t := range tb.times {
			logT[i] = math.Log(alpha + t)
		}
		for _, g := range tb.groups {
			rx := r + tb.xs[g.x]
			a3 := -rx * logT[g.t]
			if g.repeat {
				a3 = logAddExp(a3, c4[g.x]-rx*logT[g.tx])
			}
			sum += g.n * a3
		}
		return sum
	}
}

// gammaGammaLL returns the log-likelihood of the table under Gamma-Gamma
// parameters p = (p, q, gamma): the sum of n × GammaGamma.LogLikelihood.
func (tb *spendTable) gammaGammaLL() func(p []float64) float64 {
	px := make([]float64, len(tb.xs))
	return func(par []float64) float64 {
		p, q, g := par[0], par[1], par[2]
		base := -lgamma(q) + q*math.Log(g)
		sum := 0.0
		for i, x := range tb.xs {
			px[i] = p * x
			sum += tb.xN[i] * (base + lgamma(px[i]+q) - lgamma(px[i]) + px[i]*math.Log(x))
		}
		for _, r := range tb.groups {
			x := tb.xs[r.x]
			sum += r.n * ((px[r.x]-1)*r.logMean - (px[r.x]+q)*math.Log(g+r.mean*x))
		}
		return sum
	}
}

// pairTable adds to an rfmTable the distinct (x, time) pairs the groups use
// as (x, t_x) and (x, T): Pareto/NBD's hypergeometric terms depend on a
// customer through those pairs only.
type pairTable struct {
	*rfmTable
	pairs []pairKey        // distinct, sorted
	at    []pairGroupIndex // per group: indices of its (x, t_x) and (x, T) pairs
}

type pairKey struct{ x, t int32 }

type pairGroupIndex struct{ tx, t int32 }

func newPairTable(groups []Group) *pairTable {
	tb := &pairTable{rfmTable: newRFMTable(groups)}
	for _, g := range tb.groups {
		tb.pairs = append(tb.pairs, pairKey{g.x, g.tx}, pairKey{g.x, g.t})
	}
	cmpPair := func(a, b pairKey) int {
		if c := cmp.Compare(a.x, b.x); c != 0 {
			return c
		}
		return cmp.Compare(a.t, b.t)
	}
	slices.SortFunc(tb.pairs, cmpPair)
	tb.pairs = slices.Compact(tb.pairs)
	tb.at = make([]pairGroupIndex, len(tb.groups))
	for i, g := range tb.groups {
		a, _ := slices.BinarySearchFunc(tb.pairs, pairKey{g.x, g.tx}, cmpPair)
		b, _ := slices.BinarySearchFunc(tb.pairs, pairKey{g.x, g.t}, cmpPair)
		tb.at[i] = pairGroupIndex{int32(a), int32(b)}
	}
	return tb
}

// paretoNBDLL returns the log-likelihood of the table under Pareto/NBD
// parameters p = (r, alpha, s, beta): the sum of n × ParetoNBD.LogLikelihood.
func (tb *pairTable) paretoNBDLL() func(p []float64) float64 {
	a1 := make([]float64, len(tb.xs))
	lp := make([]float64, len(tb.pairs)) // logA0Term of each pair
	return func(p []float64) float64 {
		r, alpha, s, beta := p[0], p[1], p[2], p[3]
		base := -lgamma(r) + r*math.Log(alpha) + s*math.Log(beta)
		for i, x := range tb.xs {
			a1[i] = base + lgamma(r+x)
		}
		lo, hi, swap := beta, alpha, false
		if alpha < beta {
			lo, hi, swap = alpha, beta, true
		}
		for i, pk := range tb.pairs {
			x, t := tb.xs[pk.x], tb.times[pk.t]
			b := s + 1
			if swap {
				b = r + x
			}
			lp[i] = logA0Term(r+s+x, b, lo, hi, t)
		}
		logS := math.Log(s)
		sum := 0.0
		for i, g := range tb.groups {
			x := tb.xs[g.x]
			alive := a1[g.x] - (r+x)*math.Log(alpha+tb.times[g.t]) - s*math.Log(beta+tb.times[g.t])
			ll := alive
			if g.tx != g.t {
				at := tb.at[i]
				dead := a1[g.x] + logS - math.Log(r+s+x) + logSubExp(lp[at.tx], lp[at.t])
				ll = logAddExp(alive, dead)
			}
			sum += g.n * ll
		}
		return sum
	}
}
