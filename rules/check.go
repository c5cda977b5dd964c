package rules

import (
	"fmt"
	"regexp"
	"strings"
	"time"
)

// typ is a static type. tyAny is a trait or property value, whose type is
// known only at evaluation.
type typ uint8

const (
	tyAny typ = iota
	tyNum
	tyStr
	tyBool
	tyTime
	tyList
	tyNull
)

func (t typ) String() string {
	return [...]string{"value", "number", "string", "bool", "time", "list", "null"}[t]
}

type fnKind uint8

const (
	fnNone fnKind = iota
	fnAgg         // count, sum, avg, min, max, first_seen(...), last_seen(...): node.agg
	fnDaysSinceEvent
	fnDaysSince
	fnFunnel
	fnInAudience
	fnExists
	fnContains
	fnStartsWith
	fnEndsWith
	fnMatches
	fnDate
	fnWithin
	fnPropensity // propensity("model"): predictions.<model>.propensity
	fnAffinity   // affinity("category", "shoes"), affinity("shoes"): an affinity key
)

// functions maps every function name to its kind (aggregates to fnAgg).
var functions = map[string]fnKind{
	"count": fnAgg, "sum": fnAgg, "avg": fnAgg, "min": fnAgg, "max": fnAgg,
	"first_seen": fnAgg, "last_seen": fnAgg, "days_since": fnDaysSince,
	"funnel": fnFunnel, "in_audience": fnInAudience, "exists": fnExists,
	"contains": fnContains, "starts_with": fnStartsWith, "ends_with": fnEndsWith,
	"matches": fnMatches, "date": fnDate, "within": fnWithin,
	"propensity": fnPropensity, "affinity": fnAffinity,
}

var aggKinds = map[string]AggKind{"count": Count, "sum": Sum, "avg": Avg, "min": Min, "max": Max,
	"first_seen": First, "last_seen": Last}

type context uint8

const (
	ctxRule   context = iota
	ctxFilter         // an event filter: properties only
)

type checker struct {
	aggs      map[string]Agg
	funnels   map[string]Funnel
	traits    map[string]bool
	audiences map[string]bool
	events    map[string]bool
	profile   map[string]bool
	preds     map[string]bool
	usesTime  bool
	cost      int
}

// short renders n for error messages, with call arguments elided.
func short(n *node) string {
	s := format(n, true)
	if len(s) > 60 {
		s = s[:57] + "..."
	}
	return s
}

func (c *checker) check(n *node, ctx context) (typ, error) {
	t, err := c.check1(n, ctx)
	n.typ = t
	c.cost++
	return t, err
}

func (c *checker) check1(n *node, ctx context) (typ, error) {
	switch n.kind {
	case nNum:
		return tyNum, nil
	case nStr:
		return tyStr, nil
	case nBool:
		return tyBool, nil
	case nNull:
		return tyNull, nil
	case nList:
		lits := make([]value, 0, len(n.args))
		for _, a := range n.args {
			if _, err := c.check(a, ctx); err != nil {
				return 0, err
			}
			switch a.kind {
			case nNum:
				lits = append(lits, value{k: vNum, n: a.num})
			case nStr:
				lits = append(lits, value{k: vStr, s: a.str})
			case nBool:
				lits = append(lits, boolean(a.b))
			}
		}
		if len(lits) == len(n.args) {
			n.lits = lits
		}
		return tyList, nil
	case nPath:
		switch {
		case n.name == "predictions":
			return c.checkPrediction(n, ctx)
		case n.name == "affinity":
			if len(n.path) != 1 {
				return 0, errAt(n.pos, "affinity.%s: want affinity.<category> (or affinity(\"product\", \"<id>\"))", strings.Join(n.path, "."))
			}
			n.str = AffinityKey("category", strings.TrimSpace(n.path[0]))
			return c.checkScore(n, ctx, "affinity")
		case n.name == "traits" && ctx == ctxFilter:
			return 0, errAt(n.pos, "an event filter can read only properties.<name>, not traits")
		case n.name == "properties" && ctx == ctxRule:
			return 0, errAt(n.pos, "properties.%s can only be used in an event filter (the last argument of count, sum, ...)", n.path[0])
		case n.name == "traits":
			c.traits[n.path[0]] = true
		}
		return tyAny, nil
	case nProfile:
		if ctx == ctxFilter {
			return 0, errAt(n.pos, "an event filter can read only properties.<name>, not %s", n.name)
		}
		c.profile[n.name] = true
		return tyTime, nil
	case nNot:
		t, err := c.check(n.args[0], ctx)
		if err != nil {
			return 0, err
		}
		if t != tyBool && t != tyAny {
			return 0, errAt(n.opPos, "%s: not needs a bool, got %s", short(n), t)
		}
		return tyBool, nil
	case nNeg:
		t, err := c.check(n.args[0], ctx)
		if err != nil {
			return 0, err
		}
		if t != tyNum && t != tyAny {
			return 0, errAt(n.opPos, "%s: - needs a number, got %s", short(n), t)
		}
		return tyNum, nil
	case nAnd, nOr:
		for _, a := range n.args {
			t, err := c.check(a, ctx)
			if err != nil {
				return 0, err
			}
			if t != tyBool && t != tyAny {
				op := "and"
				if n.kind == nOr {
					op = "or"
				}
				return 0, errAt(a.pos, "%s: %s needs bool operands, got %s", short(a), op, t)
			}
		}
		return tyBool, nil
	case nIn:
		lt, err := c.check(n.args[0], ctx)
		if err != nil {
			return 0, err
		}
		r := n.args[1]
		rt, err := c.check(r, ctx)
		if err != nil {
			return 0, err
		}
		if lt == tyList {
			return 0, errAt(n.opPos, "%s: the left side of in cannot be a list", short(n))
		}
		if lt == tyNull {
			return 0, errAt(n.opPos, "%s: comparison with null is always false (use exists(...))", short(n))
		}
		switch rt {
		case tyList:
			if r.kind == nPath { // a recommend model's list: item ids
				if err := compatible(lt, tyStr); err != nil {
					return 0, errAt(n.opPos, "%s: %s", short(n), err)
				}
			}
			for _, e := range r.args {
				if err := compatible(lt, e.typ); err != nil {
					return 0, errAt(e.pos, "%s in %s: %s", short(n.args[0]), short(e), err)
				}
			}
			c.cost += len(r.args)
		case tyAny:
			c.cost += MaxList / 4
		default:
			return 0, errAt(n.opPos, "%s: in needs a list on the right, got %s", short(n), rt)
		}
		return tyBool, nil
	case nBinary:
		lt, err := c.check(n.args[0], ctx)
		if err != nil {
			return 0, err
		}
		rt, err := c.check(n.args[1], ctx)
		if err != nil {
			return 0, err
		}
		op := opText[n.op]
		if isCmp(n.op) {
			if err := compatible(lt, rt); err != nil {
				return 0, errAt(n.opPos, "%s: %s", short(n), err)
			}
			if n.op != tEq && n.op != tNe && (lt == tyBool || rt == tyBool) {
				return 0, errAt(n.opPos, "%s: %s cannot order bools", short(n), op)
			}
			return tyBool, nil
		}
		for _, t := range []typ{lt, rt} {
			if t != tyNum && t != tyAny {
				return 0, errAt(n.opPos, "%s: %s needs numbers, got %s", short(n), op, t)
			}
		}
		return tyNum, nil
	case nCall:
		return c.checkCall(n, ctx)
	}
	return 0, errAt(n.pos, "internal error: unknown node kind %d", n.kind)
}

// compatible reports whether values of static types a and b can be compared.
func compatible(a, b typ) error {
	switch {
	case a == tyNull || b == tyNull:
		return fmt.Errorf("comparison with null is always false (use exists(...))")
	case a == tyList || b == tyList:
		return fmt.Errorf("cannot compare lists (use in)")
	case a == tyAny || b == tyAny || a == b:
		return nil
	}
	return fmt.Errorf("cannot compare %s with %s", a, b)
}

func arity(n *node, lo, hi int) error {
	if len(n.args) >= lo && len(n.args) <= hi {
		return nil
	}
	want := fmt.Sprintf("%d to %d arguments", lo, hi)
	switch {
	case lo == hi && lo == 1:
		want = "1 argument"
	case lo == hi:
		want = fmt.Sprintf("%d arguments", lo)
	}
	return errAt(n.opPos, "%s takes %s, got %d", n.name, want, len(n.args))
}

// literal returns the value of a string-literal argument.
func literal(n *node, fn, what string) (string, error) {
	if n.kind != nStr {
		return "", errAt(n.pos, "%s: %s must be a string literal", fn, what)
	}
	return n.str, nil
}

func window(n *node, fn string) (int64, error) {
	s, err := literal(n, fn, "the window")
	if err != nil {
		return 0, err
	}
	w, werr := ParseWindow(s)
	if werr != nil {
		return 0, errAt(n.pos, "%s: %s", fn, werr)
	}
	n.str = FormatWindow(w) // canonical form
	return w, nil
}

func (c *checker) filter(n *node, fn string) (*Filter, error) {
	if n.kind == nStr {
		return nil, errAt(n.pos, "%s: unexpected string %s (a window comes before the filter; a filter is a condition on properties.<name>)", fn, format(n, false))
	}
	t, err := c.check(n, ctxFilter)
	if err != nil {
		return nil, err
	}
	if t != tyBool && t != tyAny {
		return nil, errAt(n.pos, "%s: the filter must be a condition (bool), got %s", fn, t)
	}
	return &Filter{root: n, src: format(n, false)}, nil
}

// aggTail checks the optional [window] [filter] arguments from args[i:].
func (c *checker) aggTail(n *node, i int, allowWindow bool) (int64, *Filter, error) {
	var w int64
	var f *Filter
	var err error
	if i < len(n.args) && allowWindow && n.args[i].kind == nStr {
		if w, err = window(n.args[i], n.name); err != nil {
			return 0, nil, err
		}
		i++
	}
	if i < len(n.args) {
		if f, err = c.filter(n.args[i], n.name); err != nil {
			return 0, nil, err
		}
		i++
	}
	if i < len(n.args) {
		return 0, nil, errAt(n.args[i].pos, "%s: too many arguments", n.name)
	}
	return w, f, nil
}

func (c *checker) addAgg(a Agg) {
	c.aggs[a.Key()] = a
	c.events[a.Event] = true
	c.cost += 10
	if a.Window > 0 {
		c.usesTime = true
	}
}

func (c *checker) checkCall(n *node, ctx context) (typ, error) {
	fn, ok := functions[n.name]
	if !ok {
		return 0, errAt(n.opPos, "unknown function %q", n.name)
	}
	if ctx == ctxFilter {
		switch fn {
		case fnAgg, fnDaysSince, fnFunnel, fnInAudience, fnWithin:
			return 0, errAt(n.opPos, "%s cannot be used in an event filter", n.name)
		}
	}
	n.fn = fn
	switch fn {
	case fnPropensity:
		return c.checkPropensity(n, ctx)
	case fnAffinity:
		return c.checkAffinity(n, ctx)
	case fnAgg:
		kind := aggKinds[n.name]
		lo, hi := 1, 3
		if kind >= Sum && kind <= Max {
			lo, hi = 2, 4
		}
		if err := arity(n, lo, hi); err != nil {
			return 0, err
		}
		ev, err := literal(n.args[0], n.name, "the event name")
		if err != nil {
			return 0, err
		}
		a := Agg{Kind: kind, Event: ev}
		i := 1
		if lo == 2 {
			if a.Property, err = literal(n.args[1], n.name, "the property name"); err != nil {
				return 0, err
			}
			i = 2
		}
		if a.Window, a.Filter, err = c.aggTail(n, i, true); err != nil {
			return 0, err
		}
		n.agg = a
		c.addAgg(a)
		if kind == First || kind == Last {
			return tyTime, nil
		}
		return tyNum, nil
	case fnDaysSince:
		if err := arity(n, 1, 2); err != nil {
			return 0, err
		}
		c.usesTime = true
		if n.args[0].kind == nStr {
			a := Agg{Kind: Last, Event: n.args[0].str}
			var err error
			if _, a.Filter, err = c.aggTail(n, 1, false); err != nil {
				return 0, err
			}
			n.fn = fnDaysSinceEvent
			n.agg = a
			c.addAgg(a)
			return tyNum, nil
		}
		if len(n.args) != 1 {
			return 0, errAt(n.args[1].pos, "days_since: a filter needs an event name as the first argument")
		}
		t, err := c.check(n.args[0], ctx)
		if err != nil {
			return 0, err
		}
		if t != tyTime && t != tyAny {
			return 0, errAt(n.args[0].pos, "days_since needs an event name or a time, got %s", t)
		}
		return tyNum, nil
	case fnFunnel:
		if err := arity(n, 2, 3); err != nil {
			return 0, err
		}
		l := n.args[0]
		if l.kind != nList || len(l.args) < 2 {
			return 0, errAt(l.pos, "funnel: the first argument must be a list of at least 2 event names")
		}
		if len(l.args) > MaxSteps {
			return 0, errAt(l.pos, "funnel: more than %d steps", MaxSteps)
		}
		var f Funnel
		for _, s := range l.args {
			name, err := literal(s, "funnel", "each step")
			if err != nil {
				return 0, err
			}
			f.Steps = append(f.Steps, name)
			c.events[name] = true
		}
		var err error
		if f.Within, err = window(n.args[1], "funnel"); err != nil {
			return 0, err
		}
		f.Window = f.Within
		if len(n.args) == 3 {
			if f.Window, err = window(n.args[2], "funnel"); err != nil {
				return 0, err
			}
			if f.Window == f.Within {
				n.args = n.args[:2] // canonical form: the default is not written
			}
		}
		n.funnel = f
		c.funnels[f.Key()] = f
		c.usesTime = true
		c.cost += 10
		return tyBool, nil
	case fnInAudience:
		if err := arity(n, 1, 1); err != nil {
			return 0, err
		}
		name, err := literal(n.args[0], "in_audience", "the audience name")
		if err != nil {
			return 0, err
		}
		c.audiences[name] = true
		return tyBool, nil
	case fnExists:
		if err := arity(n, 1, 1); err != nil {
			return 0, err
		}
		if a := n.args[0]; a.kind != nPath && !(a.kind == nCall && (a.name == "propensity" || a.name == "affinity")) {
			return 0, errAt(n.args[0].pos, "exists needs traits.<name>, properties.<name>, predictions.<score>, propensity(...) or affinity(...)")
		}
		if _, err := c.check(n.args[0], ctx); err != nil {
			return 0, err
		}
		return tyBool, nil
	case fnContains, fnStartsWith, fnEndsWith, fnMatches:
		if err := arity(n, 2, 2); err != nil {
			return 0, err
		}
		for _, a := range n.args {
			t, err := c.check(a, ctx)
			if err != nil {
				return 0, err
			}
			if t != tyStr && t != tyAny {
				return 0, errAt(a.pos, "%s needs strings, got %s", n.name, t)
			}
		}
		c.cost += 4
		if fn == fnMatches {
			pat, err := literal(n.args[1], "matches", "the pattern")
			if err != nil {
				return 0, err
			}
			if len(pat) > MaxPattern {
				return 0, errAt(n.args[1].pos, "matches: pattern longer than %d bytes", MaxPattern)
			}
			re, rerr := regexp.Compile(pat)
			if rerr != nil {
				return 0, errAt(n.args[1].pos, "matches: %s", strings.TrimPrefix(rerr.Error(), "error parsing regexp: "))
			}
			n.re = re
			c.cost += len(pat)
		}
		return tyBool, nil
	case fnDate:
		if err := arity(n, 1, 1); err != nil {
			return 0, err
		}
		s, err := literal(n.args[0], "date", "the date")
		if err != nil {
			return 0, err
		}
		t, ok := parseTime(s)
		if !ok {
			return 0, errAt(n.args[0].pos, "date: invalid date %q (want YYYY-MM-DD or RFC 3339)", s)
		}
		n.time = t
		return tyTime, nil
	case fnWithin:
		if err := arity(n, 2, 2); err != nil {
			return 0, err
		}
		t, err := c.check(n.args[0], ctx)
		if err != nil {
			return 0, err
		}
		if t != tyTime && t != tyAny {
			return 0, errAt(n.args[0].pos, "within needs a time, got %s", t)
		}
		if n.win, err = window(n.args[1], "within"); err != nil {
			return 0, err
		}
		c.usesTime = true
		return tyBool, nil
	}
	return 0, errAt(n.opPos, "internal error: function %q", n.name)
}

// parseTime parses YYYY-MM-DD (midnight UTC) or RFC 3339, to Unix ms.
func parseTime(s string) (int64, bool) {
	if t, err := time.Parse("2006-01-02", s); err == nil {
		return t.UnixMilli(), true
	}
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t.UnixMilli(), true
	}
	return 0, false
}

var modelName = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,63}$`)

// PredictionScores are the per-profile scores a rule may read as
// predictions.<score> (of the model named clv) or
// predictions.<model>.<score> (docs/predictions.md).
var PredictionScores = []string{"p_alive", "churn_risk", "expected_purchases_30d", "expected_purchases_90d",
	"expected_purchases_365d", "clv_365d", "propensity", NextBestProducts, NextBestProduct}

// What a rule reads of a recommend model (docs/predictions.md):
// predictions.next_best_products is the list of the profile's next best
// products (item ids, best first) under the model named
// DefaultRecommendModel, predictions.<model>.next_best_products under
// another; predictions.next_best_product is its first item (null when
// the list is empty). Both are asked of Facts.Recommendations.
const (
	NextBestProducts      = "next_best_products"
	NextBestProduct       = "next_best_product"
	DefaultRecommendModel = "nbp"
)

// RecommendKey is the key Rule.Predictions lists for a rule reading the
// recommend model named model: "<model>.next_best_products".
func RecommendKey(model string) string { return model + "." + NextBestProducts }

// ParseRecommendKey returns the model of a RecommendKey.
func ParseRecommendKey(k string) (model string, ok bool) {
	return strings.CutSuffix(k, "."+NextBestProducts)
}

// AffinityKinds are the kinds affinity(...) reads.
var AffinityKinds = []string{"category", "product"}

const affinityPrefix = "affinity:"

// AffinityKey is the key Facts.Prediction is asked for the affinity of a
// profile for one category or product (kind "category" or "product"):
// "affinity:<kind>:<value>". Model names hold no ':', so no model score
// has such a key.
func AffinityKey(kind, value string) string { return affinityPrefix + kind + ":" + value }

// ParseAffinityKey splits a key of AffinityKey.
func ParseAffinityKey(k string) (kind, value string, ok bool) {
	rest, ok := strings.CutPrefix(k, affinityPrefix)
	if !ok {
		return "", "", false
	}
	kind, value, ok = strings.Cut(rest, ":")
	return kind, value, ok && value != ""
}

// checkScore records a prediction key n reads (n.str): a number that may
// change with time.
func (c *checker) checkScore(n *node, ctx context, what string) (typ, error) {
	if ctx == ctxFilter {
		return 0, errAt(n.pos, "an event filter can read only properties.<name>, not %s", what)
	}
	c.preds[n.str] = true
	c.usesTime = true
	return tyNum, nil
}

// checkPropensity checks propensity("model"): the score of a propensity
// model, as predictions.<model>.propensity.
func (c *checker) checkPropensity(n *node, ctx context) (typ, error) {
	if err := arity(n, 1, 1); err != nil {
		return 0, err
	}
	m, err := literal(n.args[0], "propensity", "the model name")
	if err != nil {
		return 0, err
	}
	if !modelName.MatchString(m) {
		return 0, errAt(n.args[0].pos, "propensity: %q is not a model name", m)
	}
	n.str = m + ".propensity"
	return c.checkScore(n, ctx, "propensity(...)")
}

// checkAffinity checks affinity("category", "shoes"), affinity("product",
// "sku-1") and affinity("shoes") (a category): the profile's affinity, in
// [0, 1] (docs/predictions.md).
func (c *checker) checkAffinity(n *node, ctx context) (typ, error) {
	if err := arity(n, 1, 2); err != nil {
		return 0, err
	}
	kind := "category"
	v := n.args[len(n.args)-1]
	if len(n.args) == 2 {
		k, err := literal(n.args[0], "affinity", "the kind")
		if err != nil {
			return 0, err
		}
		if k != "category" && k != "product" {
			return 0, errAt(n.args[0].pos, "affinity: kind %q, want one of %s", k, strings.Join(AffinityKinds, ", "))
		}
		kind = k
	}
	value, err := literal(v, "affinity", "the "+kind)
	if err != nil {
		return 0, err
	}
	if value = strings.TrimSpace(value); value == "" || len(value) > 128 {
		return 0, errAt(v.pos, "affinity: the %s must be 1..128 bytes", kind)
	}
	n.str = AffinityKey(kind, value)
	return c.checkScore(n, ctx, "affinity(...)")
}

// checkPrediction checks predictions.<score> or predictions.<model>.<score>:
// a number that changes with time (P(alive) falls with silence). n.str
// gets the key Facts.Prediction is asked for: "<score>" or "<model>.<score>".
func (c *checker) checkPrediction(n *node, ctx context) (typ, error) {
	if ctx == ctxFilter {
		return 0, errAt(n.pos, "an event filter can read only properties.<name>, not predictions")
	}
	if len(n.path) > 2 {
		return 0, errAt(n.pos, "predictions.%s: want predictions.<score> or predictions.<model>.<score>", strings.Join(n.path, "."))
	}
	score := n.path[len(n.path)-1]
	known := false
	for _, s := range PredictionScores {
		known = known || s == score
	}
	if !known {
		return 0, errAt(n.pos, "unknown prediction %q (want one of %s)", score, strings.Join(PredictionScores, ", "))
	}
	if len(n.path) == 2 && !modelName.MatchString(n.path[0]) {
		return 0, errAt(n.pos, "predictions.%s: %q is not a model name", strings.Join(n.path, "."), n.path[0])
	}
	if score == NextBestProducts || score == NextBestProduct {
		// A recommend model's list: its items are strings, it changes with
		// events and the model's record (and, as events dated in the
		// future come within reach, with time).
		model := DefaultRecommendModel
		if len(n.path) == 2 {
			model = n.path[0]
		}
		n.str = RecommendKey(model)
		if _, err := c.checkScore(n, ctx, "predictions"); err != nil {
			return 0, err
		}
		if score == NextBestProduct {
			return tyStr, nil
		}
		c.cost += MaxList / 4 // the list an in searches
		return tyList, nil
	}
	n.str = strings.Join(n.path, ".")
	return c.checkScore(n, ctx, "predictions")
}
