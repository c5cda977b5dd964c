package rules

import (
	"encoding/json"
	"math"
	"strings"
)

type vkind uint8

const (
	vNull vkind = iota // null, missing, or a value no operator reads (a map)
	vNum
	vStr
	vBool
	vTime
	vList
)

func (k vkind) String() string {
	return [...]string{"null", "number", "string", "bool", "time", "list"}[k]
}

// value is a runtime value. Times are Unix ms in t.
type value struct {
	k vkind
	b bool
	n float64
	t int64
	s string
	l []value
}

var null = value{}

func (v value) truth() bool { return v.k == vBool && v.b }

func boolean(b bool) value { return value{k: vBool, b: b} }

// toNumber converts a decoded JSON/msgpack number.
func toNumber(x any) (float64, bool) {
	switch v := x.(type) {
	case float64:
		return v, true
	case int64:
		return float64(v), true
	case int:
		return float64(v), true
	case uint64:
		return float64(v), true
	case float32:
		return float64(v), true
	case int32:
		return float64(v), true
	case int16:
		return float64(v), true
	case int8:
		return float64(v), true
	case uint:
		return float64(v), true
	case uint32:
		return float64(v), true
	case uint16:
		return float64(v), true
	case uint8:
		return float64(v), true
	case json.Number:
		f, err := v.Float64()
		return f, err == nil
	}
	return 0, false
}

func fromAny(x any) value {
	switch v := x.(type) {
	case string:
		return value{k: vStr, s: v}
	case bool:
		return boolean(v)
	case []any:
		l := make([]value, len(v))
		for i, e := range v {
			l[i] = fromAny(e)
		}
		return value{k: vList, l: l}
	}
	if f, ok := toNumber(x); ok {
		return value{k: vNum, n: f}
	}
	return null
}

// asTime converts a value to a time: a time, a number (Unix ms) or a string
// (YYYY-MM-DD or RFC 3339).
func asTime(v value) (int64, bool) {
	switch v.k {
	case vTime:
		return v.t, true
	case vNum:
		if v.n != v.n || math.IsInf(v.n, 0) || math.Abs(v.n) > 1<<62 {
			return 0, false
		}
		return int64(v.n), true
	case vStr:
		return parseTime(v.s)
	}
	return 0, false
}

type evaluator struct {
	facts  Facts
	props  map[string]any
	now    int64
	predAt int64 // the time predictions are read at (0: now)
	predOK bool  // a prediction had a value
	nextAt int64 // NextChange: the least candidate so far, 0 = none
}

func floorDiv(a, b int64) int64 {
	q := a / b
	if a%b != 0 && (a < 0) != (b < 0) {
		q--
	}
	return q
}

func (e *evaluator) lookup(n *node) (any, bool) {
	var x any
	var ok bool
	if n.name == "traits" {
		if e.facts == nil {
			return nil, false
		}
		x, ok = e.facts.Trait(n.path[0])
	} else {
		x, ok = e.props[n.path[0]]
	}
	for _, s := range n.path[1:] {
		if !ok {
			return nil, false
		}
		m, isMap := x.(map[string]any)
		if !isMap {
			return nil, false
		}
		x, ok = m[s]
	}
	return x, ok
}

func (e *evaluator) eval(n *node) value {
	switch n.kind {
	case nNum:
		return value{k: vNum, n: n.num}
	case nStr:
		return value{k: vStr, s: n.str}
	case nBool:
		return boolean(n.b)
	case nNull:
		return null
	case nList:
		if n.lits != nil {
			return value{k: vList, l: n.lits}
		}
		l := make([]value, len(n.args))
		for i, a := range n.args {
			l[i] = e.eval(a)
		}
		return value{k: vList, l: l}
	case nPath:
		if n.name == "predictions" || n.name == "affinity" {
			return e.predValue(n)
		}
		x, ok := e.lookup(n)
		if !ok {
			return null
		}
		return fromAny(x)
	case nProfile:
		t, ok := e.facts.Profile(n.name)
		if !ok {
			return null
		}
		return value{k: vTime, t: t}
	case nNot:
		return boolean(!e.eval(n.args[0]).truth())
	case nNeg:
		v := e.eval(n.args[0])
		if v.k != vNum {
			return null
		}
		return value{k: vNum, n: -v.n}
	case nAnd:
		for _, a := range n.args {
			if !e.eval(a).truth() {
				return boolean(false)
			}
		}
		return boolean(true)
	case nOr:
		for _, a := range n.args {
			if e.eval(a).truth() {
				return boolean(true)
			}
		}
		return boolean(false)
	case nIn:
		x := e.eval(n.args[0])
		l := e.eval(n.args[1])
		if x.k == vNull || l.k != vList {
			return boolean(false)
		}
		for _, y := range l.l {
			if c, ok := compare(x, y); ok && c == 0 {
				return boolean(true)
			}
		}
		return boolean(false)
	case nBinary:
		x, y := e.eval(n.args[0]), e.eval(n.args[1])
		if isCmp(n.op) {
			c, ok := compare(x, y)
			if !ok {
				// Values of different kinds are unequal; null compares false.
				return boolean(n.op == tNe && x.k != vNull && y.k != vNull && c == 2)
			}
			switch n.op {
			case tEq:
				return boolean(c == 0)
			case tNe:
				return boolean(c != 0)
			}
			if x.k == vBool {
				return boolean(false)
			}
			switch n.op {
			case tLt:
				return boolean(c < 0)
			case tLe:
				return boolean(c <= 0)
			case tGt:
				return boolean(c > 0)
			}
			return boolean(c >= 0)
		}
		if x.k != vNum || y.k != vNum {
			return null
		}
		var r float64
		switch n.op {
		case tPlus:
			r = x.n + y.n
		case tMinus:
			r = x.n - y.n
		case tStar:
			r = x.n * y.n
		case tSlash:
			if y.n == 0 {
				return null
			}
			r = x.n / y.n
		}
		if r != r {
			return null
		}
		return value{k: vNum, n: r}
	case nCall:
		return e.call(n)
	}
	return null
}

// compare orders x and y. ok is false when they are not comparable: c is 2
// when both are non-null values of different kinds (so != holds).
func compare(x, y value) (c int, ok bool) {
	if x.k == vNull || y.k == vNull {
		return 0, false
	}
	if x.k != y.k && (x.k == vTime || y.k == vTime) {
		xt, ok1 := asTime(x)
		yt, ok2 := asTime(y)
		if !ok1 || !ok2 {
			return 2, false
		}
		x, y = value{k: vTime, t: xt}, value{k: vTime, t: yt}
	}
	if x.k != y.k {
		return 2, false
	}
	switch x.k {
	case vNum:
		return cmp3(x.n < y.n, x.n > y.n), x.n == x.n && y.n == y.n
	case vStr:
		return strings.Compare(x.s, y.s), true
	case vTime:
		return cmp3(x.t < y.t, x.t > y.t), true
	case vBool:
		if x.b == y.b {
			return 0, true
		}
		return 1, true
	}
	return 2, false // lists
}

func cmp3(lt, gt bool) int {
	switch {
	case lt:
		return -1
	case gt:
		return 1
	}
	return 0
}

func (e *evaluator) call(n *node) value {
	switch n.fn {
	case fnAgg:
		v, ok := e.facts.Agg(n.agg)
		switch n.agg.Kind {
		case Count, Sum:
			if !ok {
				v = 0
			}
			return value{k: vNum, n: v}
		case First, Last:
			if !ok {
				return null
			}
			return value{k: vTime, t: int64(v)}
		}
		if !ok {
			return null
		}
		return value{k: vNum, n: v}
	case fnDaysSinceEvent:
		v, ok := e.facts.Agg(n.agg)
		if !ok {
			return null
		}
		return value{k: vNum, n: float64(floorDiv(e.now-int64(v), day))}
	case fnDaysSince:
		t, ok := asTime(e.eval(n.args[0]))
		if !ok {
			return null
		}
		return value{k: vNum, n: float64(floorDiv(e.now-t, day))}
	case fnFunnel:
		t1, ok := e.facts.FunnelStart(n.funnel)
		return boolean(ok && t1 <= e.now && t1 > e.now-n.funnel.Window)
	case fnInAudience:
		return boolean(e.facts.InAudience(n.args[0].str))
	case fnPropensity, fnAffinity:
		return e.prediction(n)
	case fnExists:
		if a := n.args[0]; a.name == "predictions" || a.name == "affinity" || a.kind == nCall {
			return boolean(e.predValue(a).k != vNull)
		}
		_, ok := e.lookup(n.args[0])
		return boolean(ok)
	case fnContains, fnStartsWith, fnEndsWith, fnMatches:
		s, sub := e.eval(n.args[0]), e.eval(n.args[1])
		if s.k != vStr || sub.k != vStr {
			return boolean(false)
		}
		switch n.fn {
		case fnContains:
			return boolean(strings.Contains(s.s, sub.s))
		case fnStartsWith:
			return boolean(strings.HasPrefix(s.s, sub.s))
		case fnEndsWith:
			return boolean(strings.HasSuffix(s.s, sub.s))
		}
		return boolean(n.re.MatchString(s.s))
	case fnDate:
		return value{k: vTime, t: n.time}
	case fnWithin:
		t, ok := asTime(e.eval(n.args[0]))
		return boolean(ok && t <= e.now && t > e.now-n.win)
	}
	return null
}

// next walks the whole tree (no short-circuit) collecting NextChange candidates.
func (e *evaluator) next(n *node) {
	for _, a := range n.args {
		if n.kind == nCall && (n.fn == fnAgg || n.fn == fnDaysSinceEvent) {
			break // arguments are literals and filters
		}
		e.next(a)
	}
	if n.kind != nCall {
		return
	}
	switch n.fn {
	case fnAgg:
		if n.agg.Window > 0 {
			if t, ok := e.facts.Oldest(n.agg); ok {
				e.candidate(t + n.agg.Window)
			}
		}
	case fnDaysSinceEvent:
		if v, ok := e.facts.Agg(n.agg); ok {
			e.daysCandidate(int64(v))
		}
	case fnDaysSince:
		if t, ok := asTime(e.eval(n.args[0])); ok {
			e.daysCandidate(t)
		}
	case fnFunnel:
		if t1, ok := e.facts.FunnelStart(n.funnel); ok {
			e.candidate(t1 + n.funnel.Window)
		}
	case fnWithin:
		if t, ok := asTime(e.eval(n.args[0])); ok {
			if t > e.now {
				e.candidate(t)
			} else {
				e.candidate(t + n.win)
			}
		}
	}
}

func (e *evaluator) daysCandidate(t int64) {
	d := floorDiv(e.now-t, day)
	e.candidate(t + (d+1)*day)
}

func (e *evaluator) candidate(t int64) {
	if t > e.now && (e.nextAt == 0 || t < e.nextAt) {
		e.nextAt = t
	}
}

// predValue reads a prediction node: a score (prediction), or a
// recommend model's list or its first item (recommendations).
func (e *evaluator) predValue(n *node) value {
	if n.typ == tyList || n.typ == tyStr {
		return e.recommendations(n)
	}
	return e.prediction(n)
}

// recommendations reads a recommend model's list at predAt (or now): the
// list of item ids (predictions.next_best_products), or its first item
// (predictions.next_best_product; null when the list is empty).
func (e *evaluator) recommendations(n *node) value {
	at := e.now
	if e.predAt != 0 {
		at = e.predAt
	}
	model, _ := ParseRecommendKey(n.str)
	items, ok := e.facts.Recommendations(model, at)
	if !ok {
		return null
	}
	e.predOK = true
	if n.typ == tyStr {
		if len(items) == 0 {
			return null
		}
		return value{k: vStr, s: items[0]}
	}
	l := make([]value, len(items))
	for i, it := range items {
		l[i] = value{k: vStr, s: it}
	}
	return value{k: vList, l: l}
}

// prediction reads a prediction at predAt (or now), rounded to 1e-9: the
// last bits of a float computation must not decide a threshold
// (docs/predictions.md, "Deterministic floats").
func (e *evaluator) prediction(n *node) value {
	at := e.now
	if e.predAt != 0 {
		at = e.predAt
	}
	v, ok := e.facts.Prediction(n.str, at)
	if !ok || math.IsNaN(v) || math.IsInf(v, 0) {
		return null
	}
	e.predOK = true
	return value{k: vNum, n: math.Round(v*1e9) / 1e9}
}

// PredictionHorizon bounds how far ahead NextChange looks for a rule's
// result to change as its predictions move: without a change by then, the
// rule is evaluated again at now + PredictionHorizon.
const PredictionHorizon = (1 << 22) * 1000 // about 48.5 days

// predictionChange returns the earliest time in (now, now +
// PredictionHorizon] at which the rule's result, its predictions read at
// that time and every other input as at now, differs from its result at
// now, to the millisecond; now + PredictionHorizon when there is none;
// 0 when the profile has none of the rule's predictions (no purchase, no
// model): they appear with an event or a model record, not with time.
// Times are probed at now + 1 s, 2 s, 4 s, ... and the first change
// bisected: a result that changes and changes back between two probes is
// not seen (scores move monotonically with silence for fixed purchases,
// so only a band narrower than a probe interval is missed).
func (r *Rule) predictionChange(f Facts) int64 {
	now := f.Now()
	e := evaluator{facts: f, now: now}
	at := func(t int64) bool {
		e.predAt = t
		return e.eval(r.root).truth()
	}
	base := at(now)
	if !e.predOK {
		return 0
	}
	lo := now
	for step := int64(1000); step <= PredictionHorizon; step *= 2 {
		hi := now + step
		if at(hi) == base {
			lo = hi
			continue
		}
		for hi-lo > 1 {
			mid := lo + (hi-lo)/2
			if at(mid) == base {
				lo = mid
			} else {
				hi = mid
			}
		}
		return hi
	}
	return now + PredictionHorizon
}
