package rules_test

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/aurumcdp/aurum/rules"
	"github.com/aurumcdp/aurum/rules/rulestest"
	"github.com/cockroachdb/datadriven"
)

// The files in testdata/ are run by github.com/cockroachdb/datadriven
// (go test -rewrite rewrites the expected output). Each block is
//
//	command arg=value ...
//	input lines
//	----
//	expected output
//
// Commands:
//
//	rule          input: the rule; output: its canonical form, or the compile error
//	events        input: "<time> <event name> [{json properties}]" per line; appended
//	reset         forget events, traits, audiences and profile stats
//	traits        input: a JSON object; replaces the traits
//	audiences     input: audience names, one per line; replaces them
//	profile       first_seen=<time> last_seen=<time>
//	predict       name=<key> at=<time> value=<v> per_day=<d>: a score linear in time
//	recommend     model=<name> from=<time>; input: item ids, one a line: the model's list from then on
//	eval now=<time>  output: true or false, and next=<NextChange> when not 0
//	aggs now=<time>  output: each aggregate and funnel of the rule with its reference value
//
// Times are YYYY-MM-DD, YYYY-MM-DDTHH:MM:SSZ (RFC 3339) or Unix ms.

func parseTime(t *testing.T, where, s string) int64 {
	t.Helper()
	if tm, err := time.Parse("2006-01-02", s); err == nil {
		return tm.UnixMilli()
	}
	if tm, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return tm.UnixMilli()
	}
	var ms int64
	if _, err := fmt.Sscan(s, &ms); err == nil {
		return ms
	}
	t.Fatalf("%s: bad time %q", where, s)
	return 0
}

func formatTime(ms int64) string {
	return time.UnixMilli(ms).UTC().Format("2006-01-02T15:04:05.999Z")
}

func TestDataDriven(t *testing.T) {
	datadriven.Walk(t, "testdata", func(t *testing.T, path string) {
		var rule *rules.Rule
		facts := &rulestest.Facts{}
		datadriven.RunTest(t, path, func(t *testing.T, d *datadriven.TestData) string {
			return run(t, d, &rule, facts)
		})
	})
}

func run(t *testing.T, d *datadriven.TestData, rule **rules.Rule, facts *rulestest.Facts) string {
	where := d.Pos
	var input []string
	if d.Input != "" {
		input = strings.Split(d.Input, "\n")
	}
	arg := func(key string) string {
		var v string
		d.ScanArgs(t, key, &v)
		return v
	}
	switch d.Cmd {
	case "rule":
		r, err := rules.Compile(d.Input)
		if err != nil {
			*rule = nil
			return "error: " + err.Error()
		}
		*rule = r
		return r.String()
	case "reset":
		*facts = rulestest.Facts{}
		return "ok"
	case "events":
		for _, line := range input {
			ts, rest, _ := strings.Cut(strings.TrimSpace(line), " ")
			name, props := rest, ""
			if i := strings.Index(rest, "{"); i >= 0 {
				name, props = rest[:i], rest[i:]
			}
			e := rulestest.Event{Name: strings.TrimSpace(name), Time: parseTime(t, where, ts)}
			if props != "" {
				if err := json.Unmarshal([]byte(props), &e.Props); err != nil {
					t.Fatalf("%s: %v", where, err)
				}
			}
			facts.Events = append(facts.Events, e)
		}
		return fmt.Sprintf("%d events", len(facts.Events))
	case "traits":
		facts.Traits = nil
		if err := json.Unmarshal([]byte(d.Input), &facts.Traits); err != nil {
			t.Fatalf("%s: %v", where, err)
		}
		return "ok"
	case "audiences":
		facts.Audiences = map[string]bool{}
		for _, a := range input {
			facts.Audiences[strings.TrimSpace(a)] = true
		}
		return "ok"
	case "profile":
		facts.FirstSeen = parseTime(t, where, arg("first_seen"))
		facts.LastSeen = parseTime(t, where, arg("last_seen"))
		return "ok"
	case "predict":
		var v, perDay float64
		d.ScanArgs(t, "value", &v)
		d.ScanArgs(t, "per_day", &perDay)
		if facts.Predictions == nil {
			facts.Predictions = map[string]rulestest.Prediction{}
		}
		facts.Predictions[arg("name")] = rulestest.Prediction{At: parseTime(t, where, arg("at")), Value: v, PerDay: perDay}
		return "ok"
	case "recommend":
		// recommend model=<name> from=<time>: the input's item ids (one a
		// line; none: an empty list) are the model's list from then on.
		if facts.Recommended == nil {
			facts.Recommended = map[string][]rulestest.Recommendations{}
		}
		m := arg("model")
		items := []string{}
		for _, l := range input {
			items = append(items, strings.TrimSpace(l))
		}
		facts.Recommended[m] = append(facts.Recommended[m], rulestest.Recommendations{From: parseTime(t, where, arg("from")), Items: items})
		return "ok"
	case "eval", "aggs":
		if *rule == nil {
			t.Fatalf("%s: no rule", where)
		}
		facts.At = parseTime(t, where, arg("now"))
		r := *rule
		if d.Cmd == "aggs" {
			var out []string
			for _, a := range r.Aggregates() {
				v, ok := facts.Agg(a)
				s := "none"
				switch {
				case ok && (a.Kind == rules.First || a.Kind == rules.Last):
					s = formatTime(int64(v))
				case ok:
					s = fmt.Sprint(v)
				}
				out = append(out, a.Key()+" = "+s)
			}
			for _, f := range r.Funnels() {
				s := "none"
				if t1, ok := facts.FunnelStart(f); ok {
					s = "start " + formatTime(t1)
				}
				out = append(out, f.Key()+" = "+s)
			}
			return strings.Join(out, "\n")
		}
		ok, err := r.Eval(facts)
		if err != nil {
			t.Fatalf("%s: %v", where, err)
		}
		out := fmt.Sprint(ok)
		if next := r.NextChange(facts); next != 0 {
			out += " next=" + formatTime(next)
		}
		return out
	}
	t.Fatalf("%s: unknown command %q", where, d.Cmd)
	return ""
}
