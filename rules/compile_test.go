package rules_test

import (
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/aurumcdp/aurum/rules"
	"github.com/aurumcdp/aurum/rules/rulestest"
)

// The product's examples, accepted exactly as written.
var examples = []string{
	`count("Order Completed", "90d") >= 1 and count("Order Refunded", "90d") == 0`,
	`sum("Order Completed", "revenue", "365d") >= 1000`,
	`count("Order Completed") >= 2 and days_since("Order Completed") > 90`,
	`count("Product Viewed", "7d") >= 5 and count("Order Completed", "30d") == 0`,
	`traits.loyalty_tier in ["gold", "platinum"] and traits.country == "DK"`,
	`count("Order Refunded", "180d", properties.reason == "damaged") >= 2`,
	`funnel(["Product Viewed", "Product Added"], "2h") and count("Order Completed", "1d") == 0`,
	`in_audience("high-spenders") and not in_audience("claimers")`,
}

func mustCompile(t testing.TB, src string) *rules.Rule {
	t.Helper()
	r, err := rules.Compile(src)
	if err != nil {
		t.Fatalf("Compile(%q): %v", src, err)
	}
	return r
}

func TestExamples(t *testing.T) {
	type want struct {
		aggs, traits, audiences, events []string
		usesTime                        bool
	}
	wants := []want{
		{aggs: []string{`count("Order Completed","90d")`, `count("Order Refunded","90d")`},
			events: []string{"Order Completed", "Order Refunded"}, usesTime: true},
		{aggs: []string{`sum("Order Completed","revenue","365d")`}, events: []string{"Order Completed"}, usesTime: true},
		{aggs: []string{`count("Order Completed")`, `last_seen("Order Completed")`}, events: []string{"Order Completed"}, usesTime: true},
		{aggs: []string{`count("Order Completed","30d")`, `count("Product Viewed","7d")`},
			events: []string{"Order Completed", "Product Viewed"}, usesTime: true},
		{traits: []string{"country", "loyalty_tier"}},
		{aggs: []string{`count("Order Refunded","180d",properties.reason == "damaged")`}, events: []string{"Order Refunded"}, usesTime: true},
		{aggs: []string{`count("Order Completed","1d")`}, events: []string{"Order Completed", "Product Added", "Product Viewed"}, usesTime: true},
		{audiences: []string{"claimers", "high-spenders"}},
	}
	for i, src := range examples {
		r := mustCompile(t, src)
		if r.String() != src {
			t.Errorf("example %d: String() = %q, want the source (already canonical)", i+1, r.String())
		}
		r2 := mustCompile(t, r.String())
		if r2.String() != r.String() || !reflect.DeepEqual(r2.Aggregates(), r.Aggregates()) {
			t.Errorf("example %d: does not round-trip", i+1)
		}
		var keys []string
		for _, a := range r.Aggregates() {
			keys = append(keys, a.Key())
		}
		w := wants[i]
		for _, c := range []struct {
			name      string
			got, want []string
		}{{"Aggregates", keys, w.aggs}, {"Traits", r.Traits(), w.traits},
			{"Audiences", r.Audiences(), w.audiences}, {"Events", r.Events(), w.events}} {
			if !reflect.DeepEqual(c.got, c.want) {
				t.Errorf("example %d: %s = %q, want %q", i+1, c.name, c.got, c.want)
			}
		}
		if r.UsesTime() != w.usesTime {
			t.Errorf("example %d: UsesTime = %v", i+1, r.UsesTime())
		}
		if r.Cost() <= 0 || r.Cost() > rules.MaxCost {
			t.Errorf("example %d: Cost = %d", i+1, r.Cost())
		}
	}
	r := mustCompile(t, examples[6])
	if f := r.Funnels(); len(f) != 1 || f[0].Key() != `funnel(["Product Viewed","Product Added"],"2h","2h")` {
		t.Errorf("Funnels = %+v", f)
	}
	if p := mustCompile(t, `within(last_seen, "1d") and first_seen < date("2020-01-01")`).Profile(); !reflect.DeepEqual(p, []string{"first_seen", "last_seen"}) {
		t.Errorf("Profile = %q", p)
	}
}

// TestCanonical: String() normalises spacing, parentheses, windows and
// numbers, and the canonical form compiles to itself.
func TestCanonical(t *testing.T) {
	for _, c := range []struct{ src, want string }{
		{`count( "A" ,"2160h")>=1`, `count("A", "90d") >= 1`},
		{`count("A", "2w") >= 1`, `count("A", "14d") >= 1`},
		{`count("A", "90m") >= 1`, `count("A", "90m") >= 1`},
		{`count("A", "3600s") >= 1`, `count("A", "1h") >= 1`},
		{`((traits.a == 1)) and (traits.b == 2 and (traits.c == 3))`, `traits.a == 1 and traits.b == 2 and traits.c == 3`},
		{`(traits.a == 1 or traits.b == 2) and traits.c == 3`, `(traits.a == 1 or traits.b == 2) and traits.c == 3`},
		{`traits.a == 1 or (traits.b == 2 and traits.c == 3)`, `traits.a == 1 or traits.b == 2 and traits.c == 3`},
		{`not (traits.a == 1)`, `not traits.a == 1`},
		{`not (traits.a or traits.b)`, `not (traits.a or traits.b)`},
		{`traits.a - (traits.b - traits.c) == 1.50`, `traits.a - (traits.b - traits.c) == 1.5`},
		{`(traits.a - traits.b) - traits.c == 1e3`, `traits.a - traits.b - traits.c == 1000`},
		{`traits.a / (traits.b * traits.c) == 1e21`, `traits.a / (traits.b * traits.c) == 1e+21`},
		{`-(traits.a) == - -2`, `-traits.a == 2`},
		{`-(-traits.a) == 2`, `--traits.a == 2`},
		{`traits["a"] == traits["b c"]`, `traits.a == traits["b c"]`},
		{"traits.x == \"tab\\there\\u00e9\"", "traits.x == \"tab\\there\u00e9\""},
		{`funnel(["A", "B"], "60m", "1h")`, `funnel(["A", "B"], "1h")`},
		{`funnel(["A", "B"], "60m", "1d")`, `funnel(["A", "B"], "1h", "1d")`},
		{"count(\"A\")\n\t>= 1", `count("A") >= 1`},
	} {
		r := mustCompile(t, c.src)
		if r.String() != c.want {
			t.Errorf("Compile(%q).String() = %q, want %q", c.src, r.String(), c.want)
		}
		if r2 := mustCompile(t, r.String()); r2.String() != r.String() {
			t.Errorf("%q: canonical form %q compiles to %q", c.src, r.String(), r2.String())
		}
	}
}

func TestCompileErrors(t *testing.T) {
	for _, c := range []struct {
		src          string
		line, column int
		reason       string
	}{
		{"", 1, 1, "empty rule"},
		{"   ", 1, 4, "empty rule"},
		{`cnt("Order Completed") > 1`, 1, 1, `unknown function "cnt"`},
		{`count("Order Completed") >= 1 and cnt("x") > 1`, 1, 35, `unknown function "cnt"`},
		{`count("Order Completed") >= "x"`, 1, 26, `count(...) >= "x": cannot compare number with string`},
		{`count("Order Completed") > 1 &&  traits.x == 1`, 1, 30, `unexpected "&&" (use and)`},
		{`count("Order Completed") > 1 || true`, 1, 30, `unexpected "||" (use or)`},
		{`traits.country = "DK"`, 1, 16, `unexpected "=" (use == to compare)`},
		{`!in_audience("a")`, 1, 1, `unexpected "!" (use not, or != to compare)`},
		{`traits.country == 'DK'`, 1, 19, `unexpected "'" (strings use double quotes)`},
		{`count("Order Completed", 90d) > 1`, 1, 26, `invalid number "90d" (windows are strings, like "90d")`},
		{`count("Order Completed", "90x") > 1`, 1, 26, `count: invalid window "90x" (want a number and a unit s, m, h, d or w, like "90d")`},
		{`count("Order Completed", "0d") > 1`, 1, 26, `count: window "0d" out of range (1s to 36600d)`},
		{`count("Order Completed", "99999d") > 1`, 1, 26, `count: window "99999d" out of range (1s to 36600d)`},
		{`count(Order) > 1`, 1, 7, `unknown name "Order" (traits are written traits.Order)`},
		{`count("Order Completed")`, 1, 1, `rule must be a condition (bool), got number`},
		{`count("A") > 1 and`, 1, 19, `expected a value, found end of rule`},
		{`(count("A") > 1`, 1, 16, `expected ")", found end of rule`},
		{`count("A") > 1)`, 1, 15, `unexpected ")" after the end of the expression`},
		{`count("A" > 1`, 1, 14, `expected "," or ")", found end of rule`},
		{`count("A", "1d", "2d") > 1`, 1, 18, `count: unexpected string "2d" (a window comes before the filter; a filter is a condition on properties.<name>)`},
		{`count("A", properties.x == 1, "1d") > 1`, 1, 31, `count: too many arguments`},
		{`count("A", traits.x == 1) > 1`, 1, 12, `an event filter can read only properties.<name>, not traits`},
		{`count("A", count("B") > 1) > 1`, 1, 12, `count cannot be used in an event filter`},
		{`count("A", last_seen > date("2024-01-01")) > 1`, 1, 12, `an event filter can read only properties.<name>, not last_seen`},
		{`count("A", properties.n + 1) > 1`, 1, 12, `count: the filter must be a condition (bool), got number`},
		{`sum("A") > 1`, 1, 1, `sum takes 2 to 4 arguments, got 1`},
		{`sum("A", revenue) > 1`, 1, 10, `unknown name "revenue" (traits are written traits.revenue)`},
		{`sum("A", "revenue", "1d", properties.x, 1) > 1`, 1, 1, `sum takes 2 to 4 arguments, got 5`},
		{`properties.x == 1`, 1, 1, `properties.x can only be used in an event filter (the last argument of count, sum, ...)`},
		{`traits.x == null`, 1, 10, `traits.x == null: comparison with null is always false (use exists(...))`},
		{`traits.x in "abc"`, 1, 10, `traits.x in "abc": in needs a list on the right, got string`},
		{`traits.x in [1, null]`, 1, 17, `traits.x in null: comparison with null is always false (use exists(...))`},
		{`1 < 2 < 3`, 1, 7, `comparisons cannot be chained (use and)`},
		{`traits.x == 1 == true`, 1, 15, `comparisons cannot be chained (use and)`},
		{`traits`, 1, 7, `expected "." and a name after traits`},
		{`traits.`, 1, 8, `expected a name after ".", found end of rule`},
		{`traits.1a == 1`, 1, 8, `a name cannot start with a digit (write ["1a"])`},
		{`traits[1] == 1`, 1, 8, `expected a quoted name after "[", found 1`},
		{`"a" + 1 > 0`, 1, 5, `"a" + 1: + needs numbers, got string`},
		{`not 1`, 1, 1, `not 1: not needs a bool, got number`},
		{`-"a" < 0`, 1, 1, `-"a": - needs a number, got string`},
		{`true < false`, 1, 6, `true < false: < cannot order bools`},
		{`traits.a and 1`, 1, 14, `1: and needs bool operands, got number`},
		{`first_seen > 1`, 1, 12, `first_seen > 1: cannot compare time with number`},
		{`days_since("A") > date("2024-01-01")`, 1, 17, `days_since(...) > date(...): cannot compare number with time`},
		{`date("yesterday") < last_seen`, 1, 6, `date: invalid date "yesterday" (want YYYY-MM-DD or RFC 3339)`},
		{`matches(traits.email, traits.pattern)`, 1, 23, `matches: the pattern must be a string literal`},
		{`matches(traits.email, "(")`, 1, 23, "matches: missing closing ): `(`"},
		{`matches(traits.email, "` + strings.Repeat("a", 257) + `")`, 1, 23, `matches: pattern longer than 256 bytes`},
		{`contains(traits.email, 1)`, 1, 24, `contains needs strings, got number`},
		{`funnel(["A"], "1h")`, 1, 8, `funnel: the first argument must be a list of at least 2 event names`},
		{`funnel("A", "1h")`, 1, 8, `funnel: the first argument must be a list of at least 2 event names`},
		{`funnel(["A", 1], "1h")`, 1, 14, `funnel: each step must be a string literal`},
		{`funnel(["A", "B"])`, 1, 1, `funnel takes 2 to 3 arguments, got 1`},
		{`in_audience(traits.x)`, 1, 13, `in_audience: the audience name must be a string literal`},
		{`exists("x")`, 1, 8, `exists needs traits.<name>, properties.<name>, predictions.<score>, propensity(...) or affinity(...)`},
		{`days_since("A", "1d") > 1`, 1, 17, `days_since: unexpected string "1d" (a window comes before the filter; a filter is a condition on properties.<name>)`},
		{`days_since(1) > 1`, 1, 12, `days_since needs an event name or a time, got number`},
		{`within(traits.x, 30)`, 1, 18, `within: the window must be a string literal`},
		{"count(\"A\") > 1 and\n  traits.x == \"unterminated", 2, 15, `unterminated string`},
		{"count(\"A\") > 1\n  and traits.x ==  \"a\\q\"", 2, 20, `invalid escape in string "a\q"`},
		{"traits.x ==\n\n    cnt(1)", 3, 5, `unknown function "cnt"`},
		{`traits.x == 1e999`, 1, 13, `number 1e999 out of range`},
		{`[1, 2] == [1, 2]`, 1, 8, `[1, 2] == [1, 2]: cannot compare lists (use in)`},
		{`traits.x == 1 2`, 1, 15, `unexpected 2 after the end of the expression`},
		{`first_seen() > date("2024-01-01")`, 1, 1, `first_seen takes 1 to 3 arguments, got 0`},
		{`count > 1`, 1, 7, `expected "(" after count`},
		{`count("A") + 1`, 1, 1, `rule must be a condition (bool), got number`},
		{`traits.x € 1`, 1, 10, `unexpected character '€'`},
		{`traits.é == 1 and traits.x € 1`, 1, 8, `unexpected character 'é'`},
		{`traits.x == "é" and traits.x € 1`, 1, 30, `unexpected character '€'`},
		{`traits.x == 1.`, 1, 13, `invalid number "1." (windows are strings, like "90d")`},
		{`traits.x == and`, 1, 13, `unexpected "and"`},
		{"traits.x == \"\xff\"", 1, 1, `rule is not valid UTF-8`},
		{strings.Repeat("(", 33) + "true" + strings.Repeat(")", 33), 1, 33, `nesting deeper than 32`},
		{strings.Repeat("not ", 33) + "true", 1, 129, `nesting deeper than 32`},
		{`traits.x == 1 or ` + strings.Repeat(" ", rules.MaxSource), 1, 1, `rule is longer than 4096 bytes`},
		{manyAggregates(65), 1, 1, `rule reads 65 aggregates, more than 64`},
	} {
		_, err := rules.Compile(c.src)
		var e *rules.Error
		if !errors.As(err, &e) {
			t.Errorf("Compile(%q) = %v, want an *Error", c.src, err)
			continue
		}
		if e.Line != c.line || e.Column != c.column || e.Reason != c.reason {
			t.Errorf("Compile(%q):\n got %d:%d %s\nwant %d:%d %s", c.src, e.Line, e.Column, e.Reason, c.line, c.column, c.reason)
		}
	}
	_, err := rules.Compile(`cnt("x") > 1`)
	if err == nil || err.Error() != `line 1, column 1: unknown function "cnt"` {
		t.Errorf("Error() = %v", err)
	}
}

func manyAggregates(n int) string {
	var parts []string
	for i := range n {
		parts = append(parts, `count("E`+strings.Repeat("x", i)+`") > 0`)
	}
	return strings.Join(parts, " or ")
}

func TestCost(t *testing.T) {
	small := mustCompile(t, `traits.a == 1`).Cost()
	agg := mustCompile(t, `count("A") == 1`).Cost()
	re := mustCompile(t, `matches(traits.a, "`+strings.Repeat("a", 200)+`")`).Cost()
	if !(small < agg && agg < re) {
		t.Errorf("costs: compare %d, aggregate %d, regex %d", small, agg, re)
	}
	// 60 aggregates with 200-byte patterns in their filters pass every other limit but cost.
	var parts []string
	for i := range 10 {
		parts = append(parts, `count("E", matches(properties.x, "`+strings.Repeat("a", 190+i)+`")) > 0`)
	}
	_, err := rules.Compile(strings.Join(parts, " or "))
	var e *rules.Error
	if !errors.As(err, &e) || !strings.HasPrefix(e.Reason, "rule costs ") {
		t.Errorf("expensive rule: %v", err)
	}
}

func TestWindow(t *testing.T) {
	for _, c := range []struct {
		s  string
		ms int64
		f  string
	}{{"30s", 30000, "30s"}, {"90s", 90000, "90s"}, {"120s", 120000, "2m"}, {"30m", 1800000, "30m"},
		{"24h", 86400000, "1d"}, {"90d", 90 * 86400000, "90d"}, {"1w", 7 * 86400000, "7d"}} {
		ms, err := rules.ParseWindow(c.s)
		if err != nil || ms != c.ms || rules.FormatWindow(ms) != c.f {
			t.Errorf("ParseWindow(%q) = %d, %v; FormatWindow = %q", c.s, ms, err, rules.FormatWindow(ms))
		}
	}
	for _, s := range []string{"", "d", "1", "1y", "-1d", "1.5d", "0s", "1 d", "99999999999999999999d", "36601d"} {
		if _, err := rules.ParseWindow(s); err == nil {
			t.Errorf("ParseWindow(%q) accepted", s)
		}
	}
}

// TestFilterMatch: property values as msgpack and JSON decode them.
func TestFilterMatch(t *testing.T) {
	r := mustCompile(t, `count("A", properties.n >= 2 and properties.s in ["x", "y"] and properties.m.k == true) > 0`)
	f := r.Aggregates()[0].Filter
	var jsonNum map[string]any
	d := json.NewDecoder(strings.NewReader(`{"n": 2.0, "s": "y", "m": {"k": true}}`))
	d.UseNumber()
	if err := d.Decode(&jsonNum); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		props map[string]any
		want  bool
	}{
		{map[string]any{"n": int64(2), "s": "x", "m": map[string]any{"k": true}}, true},
		{map[string]any{"n": uint64(3), "s": "x", "m": map[string]any{"k": true}}, true},
		{map[string]any{"n": float64(2.5), "s": "x", "m": map[string]any{"k": true}}, true},
		{map[string]any{"n": int8(2), "s": "x", "m": map[string]any{"k": true}}, true},
		{map[string]any{"n": float32(2), "s": "x", "m": map[string]any{"k": true}}, true},
		{jsonNum, true},
		{map[string]any{"n": json.Number("1.5"), "s": "x", "m": map[string]any{"k": true}}, false},
		{map[string]any{"n": "2", "s": "x", "m": map[string]any{"k": true}}, false},
		{map[string]any{"n": int64(2), "s": "z", "m": map[string]any{"k": true}}, false},
		{map[string]any{"n": int64(2), "s": "x", "m": map[string]any{"k": "true"}}, false},
		{map[string]any{"n": int64(2), "s": "x", "m": true}, false},
		{map[string]any{"n": int64(2), "s": "x"}, false},
		{nil, false},
	} {
		if got := f.Match(c.props); got != c.want {
			t.Errorf("Match(%v) = %v, want %v", c.props, got, c.want)
		}
	}
	a := mustCompile(t, `sum("A", "revenue") > 0`).Aggregates()[0]
	for _, c := range []struct {
		props map[string]any
		v     float64
		ok    bool
	}{{map[string]any{"revenue": int64(4)}, 4, true}, {map[string]any{"revenue": json.Number("4.25")}, 4.25, true},
		{map[string]any{"revenue": "4"}, 0, false}, {map[string]any{}, 0, false}} {
		if v, ok := a.Value(c.props); v != c.v || ok != c.ok {
			t.Errorf("Value(%v) = %v, %v", c.props, v, ok)
		}
	}
	if !a.Matches("A", nil) || a.Matches("B", nil) || !a.InWindow(5, 5) || a.InWindow(6, 5) {
		t.Error("Matches/InWindow")
	}
	w := mustCompile(t, `count("A", "1s") > 0`).Aggregates()[0]
	if w.InWindow(4000, 5000) || !w.InWindow(4001, 5000) {
		t.Error("window is not (now - 1s, now]")
	}
}

// TestNextChange checks NextChange against brute force: evaluating the rule at
// every millisecond step between now and the predicted time gives the same
// result, and the result is re-evaluated at that time (a lower bound).
func TestNextChange(t *testing.T) {
	const h = 3600 * 1000
	facts := &rulestest.Facts{
		Events: []rulestest.Event{
			{Name: "A", Time: 1 * h}, {Name: "A", Time: 5 * h}, {Name: "B", Time: 7 * h},
			{Name: "C", Time: 2 * h}, {Name: "D", Time: 3 * h},
		},
		Traits: map[string]any{"t": float64(9 * h)}, // in the future at first
	}
	for _, src := range []string{
		`count("A", "6h") >= 1`,
		`count("A", "6h") >= 1 and count("B", "2h") == 0`,
		`days_since("A") >= 1`,
		`within(traits.t, "3h")`,
		`funnel(["C", "D"], "2h", "8h")`,
		`days_since(traits.t) == 0 or count("B", "1h") == 1`,
	} {
		r := mustCompile(t, src)
		changes := 0
		for now := int64(8 * h); now < 60*h; { // after every event: NextChange does not foresee later events
			facts.At = now
			want, _ := r.Eval(facts)
			next := r.NextChange(facts)
			end := next
			if end == 0 {
				end = 60 * h
			}
			if next != 0 && next <= now {
				t.Fatalf("%s at %d: NextChange %d not after now", src, now, next)
			}
			// Sample the interval (now, end): the result must not change.
			for at := now + 1; at < end; at = min(at+h/4, end-1) {
				facts.At = at
				if got, _ := r.Eval(facts); got != want {
					t.Fatalf("%s: result changed at %d, before NextChange %d (now %d)", src, at, next, now)
				}
				if at == end-1 {
					break
				}
			}
			facts.At = end
			if got, _ := r.Eval(facts); got != want {
				changes++
			}
			if next == 0 {
				break
			}
			now = next
		}
		if changes == 0 {
			t.Errorf("%s: the result never changed at a NextChange time", src)
		}
	}
	if n := mustCompile(t, `traits.t > 1`).NextChange(facts); n != 0 {
		t.Errorf("time-independent rule: NextChange = %d", n)
	}
}

// TestEvalNoError: every example evaluates without error on an empty profile.
func TestEvalNoError(t *testing.T) {
	for _, src := range examples {
		ok, err := mustCompile(t, src).Eval(&rulestest.Facts{At: 1})
		if err != nil || ok {
			t.Errorf("%s on an empty profile = %v, %v", src, ok, err)
		}
	}
}
