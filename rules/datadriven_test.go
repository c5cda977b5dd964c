package rules_test

import (
	"bufio"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aurumcdp/aurum/rules"
	"github.com/aurumcdp/aurum/rules/rulestest"
)

var rewrite = flag.Bool("rewrite", false, "rewrite the expected output in testdata/*.txt")

// A test file is a sequence of blocks in the style of pebble's datadriven:
//
//	command arg=value ...
//	input lines
//	----
//	expected output
//
// separated by blank lines. Commands:
//
//	rule          input: the rule; output: its canonical form, or the compile error
//	events        input: "<time> <event name> [{json properties}]" per line; appended
//	reset         forget events, traits, audiences and profile stats
//	traits        input: a JSON object; replaces the traits
//	audiences     input: audience names, one per line; replaces them
//	profile       first_seen=<time> last_seen=<time>
//	eval now=<time>  output: true or false, and next=<NextChange> when not 0
//	aggs now=<time>  output: each aggregate and funnel of the rule with its reference value
//
// Times are YYYY-MM-DD, YYYY-MM-DDTHH:MM:SSZ (RFC 3339) or Unix ms.
type block struct {
	line     int
	cmd      string
	args     map[string]string
	input    []string
	expected []string
	got      string
}

func parseFile(t *testing.T, path string) []*block {
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var blocks []*block
	sc := bufio.NewScanner(strings.NewReader(string(data)))
	ln := 0
	var b *block
	inOutput := false
	for sc.Scan() {
		ln++
		line := sc.Text()
		switch {
		case b == nil && (strings.TrimSpace(line) == "" || strings.HasPrefix(line, "#")):
		case b == nil:
			f := strings.Fields(line)
			b = &block{line: ln, cmd: f[0], args: map[string]string{}}
			for _, a := range f[1:] {
				k, v, _ := strings.Cut(a, "=")
				b.args[k] = v
			}
		case !inOutput && line == "----":
			inOutput = true
		case !inOutput:
			b.input = append(b.input, line)
		case strings.TrimSpace(line) == "":
			blocks = append(blocks, b)
			b, inOutput = nil, false
		default:
			b.expected = append(b.expected, line)
		}
	}
	if b != nil {
		if !inOutput {
			t.Fatalf("%s:%d: block without ----", path, b.line)
		}
		blocks = append(blocks, b)
	}
	return blocks
}

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
	files, err := filepath.Glob("testdata/*.txt")
	if err != nil || len(files) == 0 {
		t.Fatalf("no testdata: %v", err)
	}
	for _, path := range files {
		t.Run(filepath.Base(path), func(t *testing.T) {
			blocks := parseFile(t, path)
			var rule *rules.Rule
			facts := &rulestest.Facts{}
			for _, b := range blocks {
				where := fmt.Sprintf("%s:%d", path, b.line)
				b.got = run(t, where, b, &rule, facts)
				if !*rewrite && b.got != strings.Join(b.expected, "\n") {
					t.Errorf("%s: %s\ngot:\n%s\nwant:\n%s", where, b.cmd, b.got, strings.Join(b.expected, "\n"))
				}
			}
			if *rewrite {
				writeFile(t, path, blocks)
			}
		})
	}
}

func run(t *testing.T, where string, b *block, rule **rules.Rule, facts *rulestest.Facts) string {
	switch b.cmd {
	case "rule":
		r, err := rules.Compile(strings.Join(b.input, "\n"))
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
		for _, line := range b.input {
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
		if err := json.Unmarshal([]byte(strings.Join(b.input, "\n")), &facts.Traits); err != nil {
			t.Fatalf("%s: %v", where, err)
		}
		return "ok"
	case "audiences":
		facts.Audiences = map[string]bool{}
		for _, a := range b.input {
			facts.Audiences[strings.TrimSpace(a)] = true
		}
		return "ok"
	case "profile":
		facts.FirstSeen = parseTime(t, where, b.args["first_seen"])
		facts.LastSeen = parseTime(t, where, b.args["last_seen"])
		return "ok"
	case "eval", "aggs":
		if *rule == nil {
			t.Fatalf("%s: no rule", where)
		}
		facts.At = parseTime(t, where, b.args["now"])
		r := *rule
		if b.cmd == "aggs" {
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
	t.Fatalf("%s: unknown command %q", where, b.cmd)
	return ""
}

func writeFile(t *testing.T, path string, blocks []*block) {
	// Keep comments and spacing before each block by re-reading the file.
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(string(data), "\n")
	var out []string
	bi := 0
	for i := 0; i < len(lines); i++ {
		if bi < len(blocks) && i+1 == blocks[bi].line {
			b := blocks[bi]
			out = append(out, lines[i])
			out = append(out, b.input...)
			out = append(out, "----")
			if b.got != "" {
				out = append(out, b.got)
			}
			// skip the old block body
			i += len(b.input) + 1 + len(b.expected)
			bi++
			continue
		}
		out = append(out, lines[i])
	}
	if err := os.WriteFile(path, []byte(strings.Join(out, "\n")), 0o644); err != nil {
		t.Fatal(err)
	}
}
