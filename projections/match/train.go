package match

import (
	"cmp"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"sort"
)

// TrainOptions bound and seed Train. Zero fields take their defaults.
type TrainOptions struct {
	// MaxIter bounds the EM iterations of each round (default 100).
	MaxIter int
	// RandomPairs is the number of random pairs u is estimated from
	// (default 1,000,000; when the data has no more pairs than this, every
	// pair is compared once instead).
	RandomPairs int
	// Seed seeds the sampling of random pairs and of large blocks.
	Seed int64
	// MaxPairsPerBlock caps the pairs compared in one block: a larger block
	// is sampled (that many pairs drawn at random, each weighted so the
	// sample stands for the whole block). Default 20,000.
	MaxPairsPerBlock int
	// MaxBlockedPairs caps the candidate pairs compared in all (default
	// 5,000,000); rules are visited in order and blocks in key order, and
	// the rest is not compared once the cap is reached.
	MaxBlockedPairs int
	// Tolerance ends EM when no probability moves by more (default 1e-7).
	Tolerance float64
}

// Training defaults.
const (
	DefaultMaxIter          = 100
	DefaultRandomPairs      = 1_000_000
	DefaultMaxPairsPerBlock = 20_000
	DefaultMaxBlockedPairs  = 5_000_000
	DefaultTolerance        = 1e-7
	// MaxTermFreqs bounds the term-frequency list of a field.
	MaxTermFreqs = 1000
	// minProb floors every m and u probability, so no weight is infinite.
	minProb = 1e-9
)

func (o TrainOptions) withDefaults() TrainOptions {
	if o.MaxIter <= 0 {
		o.MaxIter = DefaultMaxIter
	}
	if o.RandomPairs <= 0 {
		o.RandomPairs = DefaultRandomPairs
	}
	if o.MaxPairsPerBlock <= 0 {
		o.MaxPairsPerBlock = DefaultMaxPairsPerBlock
	}
	if o.MaxBlockedPairs <= 0 {
		o.MaxBlockedPairs = DefaultMaxBlockedPairs
	}
	if o.Tolerance <= 0 {
		o.Tolerance = DefaultTolerance
	}
	return o
}

// ErrTooFewRecords is returned by Train when there is nothing to learn from.
var ErrTooFewRecords = errors.New("match: too few records to train")

// Train estimates a model from recs under c:
//
//  1. u: every level's share among random pairs of records (non-missing
//     pairs only); random pairs are mostly non-matches.
//  2. m: for each blocking rule, expectation-maximisation with u held fixed
//     over the rule's candidate pairs with the rule's own fields masked
//     (every pair of a block agrees on them, matching or not, so they tell
//     nothing about which pairs match there); a field's m is the mean of its
//     estimates from the rules it is not in, weighted by the expected
//     matches with a value for it. Without the masking, a field that one
//     rule blocks on and that many non-matches share (a common surname)
//     can become the match class: agreeing on it alone would then score as
//     a match. A field in every rule takes m from EM over all candidate
//     pairs, unmasked.
//  3. The prior: the share of matches λ among the candidate pairs (a pair
//     counted once, under the first rule that finds it), by EM with m and u
//     fixed, times the candidate pairs over all pairs. The random pairs
//     held matches in about that proportion, so u is corrected for them
//     (u = (u_observed - prior·m) / (1 - prior), but never below the share
//     of half a pair, the least the sample can tell apart from nothing), and
//     steps 2 and 3 run again.
//
// Memory is bounded by the records' normalized values, their blocking keys
// and the distinct comparison patterns (at most the product of the field's
// level counts per rule, in practice a few thousand), never by the pairs.
// The result is a deterministic function of c, recs and opts.
func Train(c Config, recs []Record, opts TrainOptions) (*Model, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	if len(recs) < 2 {
		return nil, fmt.Errorf("%w: %d", ErrTooFewRecords, len(recs))
	}
	o := opts.withDefaults()
	p := prepare(c, recs)
	rng := rand.New(rand.NewPCG(uint64(o.Seed), 0x6d61746368))
	n := len(recs)
	allPairs := float64(n) * float64(n-1) / 2

	// u from random pairs.
	uCount := make([][]float64, len(p.fields))
	for f := range p.fields {
		uCount[f] = make([]float64, len(levelNames[p.kinds[f]]))
	}
	randomPairs := 0
	buf := make([]int, len(p.fields))
	countU := func(i, j int) {
		randomPairs++
		p.levels(i, j, buf)
		for f, lv := range buf {
			if lv >= 0 {
				uCount[f][lv]++
			}
		}
	}
	if float64(o.RandomPairs) >= allPairs {
		for i := 0; i < n; i++ {
			for j := i + 1; j < n; j++ {
				countU(i, j)
			}
		}
	} else {
		for range o.RandomPairs {
			i, j := rng.IntN(n), rng.IntN(n-1)
			if j >= i {
				j++
			}
			countU(i, j)
		}
	}

	// Candidate pairs, as weighted comparison patterns: per blocking rule
	// every pair of its blocks, with the rule's own fields masked (its
	// session), and every pair once, under the first rule that finds it (the
	// candidates the prior is estimated over).
	sessions := make([]map[string]float64, p.rules)
	for r := range sessions {
		sessions[r] = map[string]float64{}
	}
	ruleFields := make([][]int, p.rules)
	for r, rule := range c.Blocking {
		for _, t := range rule {
			if f, ok := slices.BinarySearch(p.fields, t); ok {
				ruleFields[r] = append(ruleFields[r], f)
			}
		}
	}
	patterns := map[string]float64{}
	blocked := 0.0
	p.candidates(o, rng, func(i, j, r int, first bool, w float64) {
		pt := p.pattern(i, j, buf)
		if first {
			patterns[string(pt)] += w
			blocked += w
		}
		for _, f := range ruleFields[r] {
			pt[f] = missingLevel
		}
		sessions[r][string(pt)] += w
	})
	if blocked == 0 {
		return nil, fmt.Errorf("%w: no two records share a blocking key", ErrTooFewRecords)
	}
	pats := sortedPatterns(patterns)
	sessionPats := make([][]pattern, p.rules)
	for r := range sessions {
		sessionPats[r] = sortedPatterns(sessions[r])
	}

	m := &Model{Records: n, BlockedPairs: blocked, RandomPairs: randomPairs, Converged: true}
	for f, name := range p.fields {
		k := p.kinds[f]
		fm := FieldModel{Field: name, Comparison: k}
		for _, l := range levelNames[k] {
			fm.Levels = append(fm.Levels, Level{Name: l})
		}
		m.Fields = append(m.Fields, fm)
	}
	uObs := make([][]float64, len(p.fields))
	uFloor := make([]float64, len(p.fields))
	for f := range p.fields {
		uObs[f] = shares(uCount[f], 0.5)
		// The share of a level never seen: half a pair (the pseudo-count).
		total := 0.0
		for _, cnt := range uCount[f] {
			total += cnt
		}
		uFloor[f] = 0.5 / (total + 0.5*float64(len(uCount[f])))
		for l := range m.Fields[f].Levels {
			m.Fields[f].Levels[l].U = uObs[f][l]
		}
	}
	for round := 0; round < 2; round++ {
		// fitM runs whatever the first round's convergence (no && short cut).
		convM := fitM(m, pats, sessionPats, ruleFields, o)
		fit := em(m, pats, 0.1, o, false)
		m.Iterations += fit.iterations
		m.Converged = m.Converged && convM && fit.converged
		m.Prior = clampProb(fit.lambda * blocked / allPairs)
		for f := range m.Fields {
			for l := range m.Fields[f].Levels {
				lv := &m.Fields[f].Levels[l]
				lv.U = max(uFloor[f], (uObs[f][l]-m.Prior*lv.M)/(1-m.Prior))
			}
			renormalize(m.Fields[f].Levels, func(l *Level) *float64 { return &l.U })
		}
	}
	if c.TermFrequency {
		for f := range m.Fields {
			switch m.Fields[f].Comparison {
			case Exact, Name, Text:
				m.Fields[f].TermFreqs, m.Fields[f].TermFloor = termFreqs(p.column(f))
			}
		}
	}
	m.seal()
	return m, nil
}

type pattern struct {
	levels []byte // level per field, 255 missing
	count  float64
}

const missingLevel = 255

func sortedPatterns(counts map[string]float64) []pattern {
	out := make([]pattern, 0, len(counts))
	for k, w := range counts {
		out = append(out, pattern{levels: []byte(k), count: w})
	}
	slices.SortFunc(out, func(a, b pattern) int { return cmp.Compare(string(a.levels), string(b.levels)) })
	return out
}

// fitM sets the m probabilities of m (u held fixed) from the blocking rules'
// sessions: EM over the pairs of each rule with the rule's own fields
// masked, since every pair of a block agrees on them whether it matches or
// not; a field's m is the mean of its estimates from the sessions of the
// rules it is not in, each weighted by the expected matches that had a
// value for it. A field in every rule (or never compared outside its own
// rules' blocks) takes its m from EM over all candidate pairs with no field
// masked. It reports whether every EM run converged.
func fitM(m *Model, pats []pattern, sessions [][]pattern, ruleFields [][]int, o TrainOptions) bool {
	conv := true
	sum := make([][]float64, len(m.Fields))
	weight := make([]float64, len(m.Fields))
	for f := range m.Fields {
		sum[f] = make([]float64, len(m.Fields[f].Levels))
	}
	session := func(ps []pattern) emResult {
		for f := range m.Fields {
			initM := initialM(len(m.Fields[f].Levels))
			for l := range m.Fields[f].Levels {
				m.Fields[f].Levels[l].M = initM[l]
			}
		}
		res := em(m, ps, 0.1, o, true)
		m.Iterations += res.iterations
		conv = conv && res.converged
		return res
	}
	for r, ps := range sessions {
		if len(ps) == 0 {
			continue
		}
		res := session(ps)
		for f := range m.Fields {
			if slices.Contains(ruleFields[r], f) || res.matchesWith[f] <= 0 {
				continue
			}
			weight[f] += res.matchesWith[f]
			for l, lv := range m.Fields[f].Levels {
				sum[f][l] += res.matchesWith[f] * lv.M
			}
		}
	}
	var fallback []int
	for f := range m.Fields {
		if weight[f] == 0 {
			fallback = append(fallback, f)
		}
	}
	var joint [][]float64
	if len(fallback) > 0 {
		session(pats)
		joint = make([][]float64, len(m.Fields))
		for _, f := range fallback {
			for _, lv := range m.Fields[f].Levels {
				joint[f] = append(joint[f], lv.M)
			}
		}
	}
	for f := range m.Fields {
		for l := range m.Fields[f].Levels {
			if weight[f] > 0 {
				m.Fields[f].Levels[l].M = clampProb(sum[f][l] / weight[f])
			} else {
				m.Fields[f].Levels[l].M = joint[f][l]
			}
		}
	}
	return conv
}

type emResult struct {
	lambda     float64
	iterations int
	converged  bool
	// matchesWith[f] is the expected number of matches among the pairs
	// with a value for field f, at the last iteration.
	matchesWith []float64
}

// em runs expectation-maximisation of λ, and of m when fitM is set, with u
// fixed, over the patterns pats (a masked field is a missing one).
func em(m *Model, pats []pattern, lambda float64, o TrainOptions, fitM bool) emResult {
	sums := make([][]float64, len(m.Fields))
	for f := range m.Fields {
		sums[f] = make([]float64, len(m.Fields[f].Levels))
	}
	logM := make([][]float64, len(m.Fields))
	logU := make([][]float64, len(m.Fields))
	res := emResult{matchesWith: make([]float64, len(m.Fields))}
	for it := 1; it <= o.MaxIter; it++ {
		for f := range m.Fields {
			logM[f] = logM[f][:0]
			logU[f] = logU[f][:0]
			for _, l := range m.Fields[f].Levels {
				logM[f] = append(logM[f], math.Log(l.M))
				logU[f] = append(logU[f], math.Log(l.U))
			}
			clear(sums[f])
		}
		var total, matches float64
		lm, lu := math.Log(lambda), math.Log(1-lambda)
		for _, pt := range pats {
			a, b := lm, lu
			for f, lv := range pt.levels {
				if lv != missingLevel {
					a += logM[f][lv]
					b += logU[f][lv]
				}
			}
			post := 1 / (1 + math.Exp(b-a))
			w := post * pt.count
			total += pt.count
			matches += w
			for f, lv := range pt.levels {
				if lv != missingLevel {
					sums[f][lv] += w
				}
			}
		}
		newLambda := clampProb(matches / total)
		delta := math.Abs(newLambda - lambda)
		lambda = newLambda
		for f := range m.Fields {
			res.matchesWith[f] = 0
			for _, s := range sums[f] {
				res.matchesWith[f] += s
			}
			if !fitM {
				continue
			}
			ms := shares(sums[f], 0.5)
			for l := range m.Fields[f].Levels {
				delta = max(delta, math.Abs(ms[l]-m.Fields[f].Levels[l].M))
				m.Fields[f].Levels[l].M = ms[l]
			}
		}
		res.lambda, res.iterations = lambda, it
		if delta < o.Tolerance {
			res.converged = true
			return res
		}
	}
	return res
}

// shares turns counts into probabilities with a pseudo-count per level,
// floored at minProb.
func shares(counts []float64, pseudo float64) []float64 {
	total := 0.0
	for _, c := range counts {
		total += c + pseudo
	}
	out := make([]float64, len(counts))
	for i, c := range counts {
		out[i] = clampProb((c + pseudo) / total)
	}
	return out
}

func renormalize(ls []Level, get func(*Level) *float64) {
	total := 0.0
	for i := range ls {
		total += *get(&ls[i])
	}
	for i := range ls {
		*get(&ls[i]) = clampProb(*get(&ls[i]) / total)
	}
}

// initialM starts EM with matches agreeing exactly nine times in ten.
func initialM(levels int) []float64 {
	out := make([]float64, levels)
	out[0] = 0.9
	for i := 1; i < levels; i++ {
		out[i] = 0.1 / float64(levels-1)
	}
	return out
}

func clampProb(p float64) float64 {
	switch {
	case math.IsNaN(p) || p < minProb:
		return minProb
	case p > 1-minProb:
		return 1 - minProb
	}
	return p
}

// termFreqs returns the MaxTermFreqs most common values with their share of
// the non-missing values, sorted by value, and the share of a value seen
// once (the floor for values not listed).
func termFreqs(values []string) ([]TermFreq, float64) {
	counts := map[string]int{}
	n := 0
	for _, v := range values {
		if v != "" {
			counts[v]++
			n++
		}
	}
	if n == 0 {
		return nil, 0
	}
	type vc struct {
		v string
		c int
	}
	all := make([]vc, 0, len(counts))
	for v, c := range counts {
		all = append(all, vc{v, c})
	}
	slices.SortFunc(all, func(a, b vc) int {
		if a.c != b.c {
			return b.c - a.c
		}
		return cmp.Compare(a.v, b.v)
	})
	all = all[:min(len(all), MaxTermFreqs)]
	out := make([]TermFreq, len(all))
	for i, x := range all {
		out[i] = TermFreq{Value: x.v, Freq: float64(x.c) / float64(n)}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Value < out[j].Value })
	return out, 1 / float64(n)
}
