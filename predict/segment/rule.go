package segment

import (
	"fmt"
	"slices"
	"strings"

	"github.com/aurumcdp/aurum/rules"
)

// cond is "feature >= t" (ge) or "feature <= t".
type cond struct {
	f  int
	ge bool
	t  float64
}

func (c cond) holds(r []float64) bool {
	if c.ge {
		return r[c.f] >= c.t
	}
	return r[c.f] <= c.t
}

// maxCandidates bounds the thresholds tried per feature.
const maxCandidates = 32

// candidates returns, per feature, the thresholds tried: the distinct
// values rounded to 3 significant digits when there are few, else as many
// quantiles, rounded alike.
func candidates(rows [][]float64, feats []Feature) [][]float64 {
	out := make([][]float64, len(feats))
	col := make([]float64, len(rows))
	for j := range feats {
		for i, r := range rows {
			col[i] = r[j]
		}
		s := slices.Clone(col)
		slices.Sort(s)
		var c []float64
		for q := 0; q < maxCandidates; q++ {
			c = append(c, roundSig(s[q*(len(s)-1)/(maxCandidates-1)]))
		}
		slices.Sort(c)
		out[j] = slices.Compact(c)
	}
	return out
}

// f1 scores conditions against membership.
func f1(rows [][]float64, in []bool, conds []cond) (f, precision, recall float64) {
	var tp, sel, pos int
	for i, r := range rows {
		ok := true
		for _, c := range conds {
			if !c.holds(r) {
				ok = false
				break
			}
		}
		if in[i] {
			pos++
		}
		if ok {
			sel++
			if in[i] {
				tp++
			}
		}
	}
	if tp == 0 {
		return 0, 0, 0
	}
	precision, recall = float64(tp)/float64(sel), float64(tp)/float64(pos)
	return 2 * precision * recall / (precision + recall), precision, recall
}

// chooseRule grows a conjunction greedily: each step adds the condition
// (feature, direction, threshold) that most improves F1 against the
// cluster, while it improves F1 by at least 0.01. Ties go to the first
// candidate (feature order, >= before <=, ascending thresholds).
func chooseRule(rows [][]float64, in []bool, cands [][]float64, maxConds int) []cond {
	var conds []cond
	bestF := 0.0
	sel := make([]bool, len(rows)) // rows the conditions so far select
	pos := 0
	for i := range rows {
		sel[i] = true
		if in[i] {
			pos++
		}
	}
	for len(conds) < maxConds {
		var pick cond
		found := false
		stepBest := bestF + 0.01
		for j, ts := range cands {
			for _, ge := range []bool{true, false} {
				for _, t := range ts {
					c := cond{j, ge, t}
					var tp, n int
					for i, r := range rows {
						if sel[i] && c.holds(r) {
							n++
							if in[i] {
								tp++
							}
						}
					}
					if tp == 0 {
						continue
					}
					f := 2 * float64(tp) / float64(n+pos) // F1 = 2·tp / (selected + members)
					if f >= stepBest && (!found || f > stepBest) {
						pick, stepBest, found = c, f, true
					}
				}
			}
		}
		if !found {
			break
		}
		conds, bestF = append(conds, pick), stepBest
		for i, r := range rows {
			sel[i] = sel[i] && pick.holds(r)
		}
	}
	return conds
}

// ruleOf writes the conditions as a rule (sorted by feature, >= before
// <=), in the canonical form rules.Compile gives it, and scores it.
func ruleOf(rows [][]float64, in []bool, feats []Feature, conds []cond) (string, float64, float64, error) {
	if len(conds) == 0 {
		return "", 0, 0, nil
	}
	slices.SortFunc(conds, func(a, b cond) int {
		if a.f != b.f {
			return a.f - b.f
		}
		if a.ge != b.ge {
			if a.ge {
				return -1
			}
			return 1
		}
		return 0
	})
	var parts []string
	for _, c := range conds {
		op := "<="
		if c.ge {
			op = ">="
		}
		parts = append(parts, fmt.Sprintf("(%s) %s %s", feats[c.f].Expr, op, num(c.t)))
	}
	r, err := rules.Compile(strings.Join(parts, " and "))
	if err != nil {
		return "", 0, 0, fmt.Errorf("segment: membership rule: %w", err)
	}
	_, p, rc := f1(rows, in, conds)
	return r.String(), p, rc, nil
}
