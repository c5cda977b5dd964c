package main

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/aurumcdp/aurum/internal/check"
	"github.com/spf13/cobra"
)

// helpExample is one example line of a command's --help.
type helpExample struct {
	cmd  string // the command's path, e.g. "aurum audience export"
	line string
}

// helpExamples collects the Example lines of every command (continuation
// lines ending in "\" joined), in the order of the command tree.
func helpExamples() []helpExample {
	var out []helpExample
	var walk func(c *cobra.Command)
	walk = func(c *cobra.Command) {
		var cur string
		for _, l := range strings.Split(c.Example, "\n") {
			l = strings.TrimSpace(l)
			if l == "" {
				continue
			}
			if strings.HasSuffix(l, "\\") {
				cur += strings.TrimSuffix(l, "\\")
				continue
			}
			out = append(out, helpExample{c.CommandPath(), cur + l})
			cur = ""
		}
		for _, sub := range c.Commands() {
			walk(sub)
		}
	}
	walk(newRoot())
	return out
}

// exampleNotRun are the examples that are not executed, each with why;
// they still have to parse (TestHelpExamplesParse).
var exampleNotRun = map[string]string{
	"aurum model fit clv --calibration-end 1997-09-30 --wait":  "needs purchase history; TestCDNOWThroughTheProduct runs it on CDNOW",
	"aurum model show clv --output json":                       "needs a fitted model; TestCDNOWThroughTheProduct fits one",
	"aurum model evaluate clv --holdout-end 1998-06-30 --json": "needs a fitted model; TestCDNOWThroughTheProduct runs it on CDNOW",
	"aurum model rm clv":                                       "needs a fitted model; engine/models TestFitMatchesPredict deletes one",
	"aurum identity train --sample 100000":                     "needs a probabilistic identity config; api TestRouteRoles and TestIdentityExplainReviewConstraints train",
	"aurum identity model --output json":                       "needs a trained identity model; api TestRouteRoles reads one",
	"aurum identity review 01JABCDEF... --merge":               "a placeholder id; api TestIdentityExplainReviewConstraints decides reviews",
	"aurum identity explain crm_id:12345":                      "a placeholder identifier; api TestIdentityExplainReviewConstraints explains profiles",
	"aurum profile split user_id:42 --identifier crm_id:9 --identifier email:ann@example.com --output json": "placeholder identifiers; TestSplitRealProcess splits a wrong merge with this command",
	"aurum token revoke 01JABCDEF...":      "a placeholder id",
	"aurum digest --data-dir ./aurum-data": "reads a stopped node; the test node runs",
	"aurum replay --data-dir ./aurum-data --memory-limit 1GiB   # a stopped node, offline: prints the rebuilt digest":                                        "reads a stopped node; TestReplayAndDigest runs it on one",
	"aurum digest --server http://127.0.0.1:8080 --partitions":                                                                                               "a fixed address; run below with the node's",
	"aurum serve --data-dir /var/lib/aurum --http 0.0.0.0:8080":                                                                                              "runs a node",
	"aurum serve --config docs/serve.example.yaml --log-level debug   # flags win over the file":                                                             "runs a node; TestServeConfigFile loads the file",
	"aurum serve --memory-limit 2GiB   # caches, memtables and the Go runtime's soft limit sized to fit 2 GiB":                                               "runs a node; TestJourney runs one with --memory-limit and reads its bounds on /metrics",
	"aurum serve --oidc-issuer https://idp.example.com --oidc-client-id aurum --oidc-client-secret-file /etc/aurum/oidc-secret --oidc-role-claim aurum_role": "runs a node against a provider; TestServeOIDCFlags checks the flags, api TestSSOSignIn signs in through a real provider",
}

// TestHelpExamples runs every example of every command's --help against a
// real node (the example of aurum audience --help failed: --channel is
// required), in a directory holding the files they name.
func TestHelpExamples(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a real aurum process")
	}
	parallelProcess(t)
	n, dir, env := exampleFixture(t, "crm", "pos", "web")
	ran := 0
	for _, ex := range helpExamples() {
		if why, skip := exampleNotRun[ex.line]; skip || strings.HasPrefix(ex.line, "aurum serve") || strings.HasPrefix(ex.line, "aurum demo") {
			if !skip {
				t.Errorf("%s --help example %q runs a node: list it in exampleNotRun", ex.cmd, ex.line)
			}
			t.Logf("not run (%s): %s", why, ex.line)
			continue
		}
		if strings.Contains(ex.line, "| jq") {
			if _, err := exec.LookPath("jq"); err != nil {
				t.Logf("not run (no jq): %s", ex.line)
				continue
			}
		}
		line := ex.line
		if strings.Contains(line, "aurum user add --name ada") && ran > 0 && strings.HasPrefix(line, "printf") {
			line = strings.Replace(line, "--name ada", "--name bea", 1) // ada exists: the example before made her
		}
		run := func() error {
			cmd := exec.Command("bash", "-o", "pipefail", "-c", line)
			cmd.Dir, cmd.Env = dir, env
			if out, err := cmd.CombinedOutput(); err != nil {
				return fmt.Errorf("%s --help example failed: %s\n%v\n%s", ex.cmd, ex.line, err, out)
			}
			return nil
		}
		if strings.HasPrefix(line, "aurum profile ") { // the imports above are applied asynchronously
			check.For(t, 20*time.Second, 20*time.Millisecond, run)
		} else if err := run(); err != nil {
			t.Error(err)
		}
		ran++
	}
	if out, code := aurumCLI(t, env, "digest", "--server", n.HTTP, "--partitions"); code != 0 || !regexp.MustCompile(`^[0-9a-f]{64} applied=\d+\n`).MatchString(out) {
		t.Errorf("aurum digest --server --partitions: exit %d\n%s", code, out)
	}
	if ran < 15 {
		t.Fatalf("ran %d examples; the examples were not found", ran)
	}
	checkExportExamples(t, env, filepath.Join(dir, "exports"))
}

// exampleFixture starts a node with the sources given and a working
// directory holding the files the examples name; env runs the aurum
// binary (on PATH) against the node.
func exampleFixture(t *testing.T, sources ...string) (*node, string, []string) {
	t.Helper()
	dir := t.TempDir()
	n := startNode(t, t.TempDir(), "--export-dir", filepath.Join(dir, "exports")) // aurum export's examples
	for _, s := range sources {
		n.createSource(s)
	}
	writeFile(t, dir, "crm.csv", "email,crm_id,first_name\nrob@example.com,C1,Rob\n")
	writeFile(t, dir, "pos.csv", "card,amount,date\nL1,12.5,2026-01-02T10:00:00Z\n")
	writeFile(t, dir, "events.ndjson", `{"type":"track","userId":"u1","event":"Order Completed","properties":{"revenue":5}}`+"\n")
	writeFile(t, dir, "abandoners.rule", `funnel(["Product Viewed", "Product Added"], "2h") and count("Order Completed", "1d") == 0`)
	writeFile(t, dir, "ada.pw", "correct horse battery staple\n")
	writeFile(t, dir, "hook.secret", "a-signing-secret-of-32-characters\n")
	writeFile(t, dir, "twilio.json", `{"account_sid":"AC1","auth_token":"token-0123456789","from":"+4512345678","body":"Hi {{.Traits.first_name}}","api_url":"http://127.0.0.1:9"}`)
	env := append(os.Environ(), "AURUM_SERVER="+n.HTTP, "AURUM_ADMIN_TOKEN="+testAdminToken, "HOME="+t.TempDir(),
		"PATH="+filepath.Dir(aurumBin)+string(os.PathListSeparator)+os.Getenv("PATH"), "PASSWORD=another horse battery staple")
	return n, dir, env
}

// TestHelpExamplesParse: every --help example names a command that exists,
// with flags it has and the arguments it takes.
func TestHelpExamplesParse(t *testing.T) {
	for _, ex := range helpExamples() {
		if err := parseExample(ex.line); err != nil {
			t.Errorf("%s --help example %q: %v", ex.cmd, ex.line, err)
		}
	}
}

// parseExample checks the aurum command of a shell line (the part of a
// pipe that runs aurum) against a fresh command tree, without running it.
func parseExample(line string) error {
	if i := strings.Index(line, " # "); i >= 0 { // a trailing comment
		line = line[:i]
	}
	for _, part := range strings.Split(line, "|") {
		words, err := shellWords(part)
		if err != nil {
			return err
		}
		for i, w := range words {
			if w == "<" && i+1 < len(words) { // an input redirection
				words = append(words[:i:i], words[i+2:]...)
				break
			}
		}
		if len(words) == 0 || words[0] != "aurum" {
			continue
		}
		root := newRoot()
		c, rest, err := root.Find(words[1:])
		if err != nil {
			return err
		}
		if c == root {
			return fmt.Errorf("no such command")
		}
		if err := c.ParseFlags(rest); err != nil {
			return err
		}
		if err := c.ValidateRequiredFlags(); err != nil {
			return err
		}
		return c.ValidateArgs(c.Flags().Args())
	}
	return fmt.Errorf("runs no aurum command")
}

// shellWords splits a shell command line into words: blanks separate,
// single and double quotes group ($VAR stays as written).
func shellWords(s string) ([]string, error) {
	var words []string
	var cur strings.Builder
	in, quote := false, byte(0)
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case quote != 0 && c == quote:
			quote = 0
		case quote != 0:
			cur.WriteByte(c)
		case c == '\'' || c == '"':
			quote, in = c, true
		case c == ' ' || c == '\t':
			if in {
				words = append(words, cur.String())
				cur.Reset()
				in = false
			}
		default:
			cur.WriteByte(c)
			in = true
		}
	}
	if quote != 0 {
		return nil, fmt.Errorf("unterminated quote")
	}
	if in {
		words = append(words, cur.String())
	}
	return words, nil
}

// TestREADMEExamplesParse: every aurum command in the README's sh blocks
// names a command that exists, with flags it has and the arguments it
// takes (TestHelpExamples runs the --help examples, which cover the same
// commands, against a node).
func TestREADMEExamplesParse(t *testing.T) {
	checked := 0
	for _, c := range readmeCommands(t) {
		if !strings.HasPrefix(c, "aurum ") {
			continue
		}
		if err := parseExample(c); err != nil {
			t.Errorf("README: %q: %v", c, err)
		}
		checked++
	}
	if checked < 15 {
		t.Fatalf("checked %d README commands; the sh blocks were not found", checked)
	}
}

// readmeNotRun are the README commands that are not run, by a substring,
// each with why (TestREADMEExamplesParse still parses the aurum ones).
var readmeNotRun = map[string]string{
	"make test":                   "the test suite itself",
	"export AURUM_ADMIN_TOKEN":    "the test sets the environment",
	"aurum serve":                 "runs a node; the test started one",
	"aurum demo":                  "runs a demo node",
	"nats --server":               "needs the nats CLI",
	"aurum token revoke ID":       "a placeholder id",
	"/v1/login":                   "needs a TOTP code",
	"https://aurum.internal:8080": "a TLS deployment (TestTLS)",
	"aurum source add web":        "run first, apart: its write key is used below",
}

// readmeCommands are the README's sh-block commands in order:
// continuation lines joined, "cmd ; cmd" split, trailing comments and "&"
// removed.
func readmeCommands(t *testing.T) []string {
	t.Helper()
	data, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	inSh, cont := false, ""
	for _, l := range strings.Split(string(data), "\n") {
		switch {
		case strings.HasPrefix(l, "```sh"):
			inSh = true
			continue
		case strings.HasPrefix(l, "```"):
			inSh = false
			continue
		case !inSh:
			continue
		}
		if i := strings.Index(l, " # "); i >= 0 {
			l = l[:i]
		}
		if strings.HasSuffix(strings.TrimSpace(l), "\\") {
			cont += strings.TrimSuffix(strings.TrimSpace(l), "\\") + " "
			continue
		}
		l, cont = cont+l, ""
		for _, c := range strings.Split(l, " ; ") {
			c = strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(c), "&"))
			if c != "" {
				out = append(out, strings.Replace(c, "go run ./cmd/aurum ", "aurum ", 1))
			}
		}
	}
	return out
}

// TestREADMEExamples runs the README's commands against a real node, in
// order (the quick start's write key and address substituted, curl failing
// on an HTTP error), except those readmeNotRun lists.
func TestREADMEExamples(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a real aurum process")
	}
	parallelProcess(t)
	n, dir, env := exampleFixture(t, "crm", "pos")
	run := func(line string) (string, error) {
		cmd := exec.Command("bash", "-o", "pipefail", "-c", line)
		cmd.Dir, cmd.Env = dir, env
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	out, err := run("aurum source add web")
	var src struct {
		WriteKey string `json:"write_key"`
	}
	if err != nil || json.Unmarshal([]byte(out), &src) != nil || src.WriteKey == "" {
		t.Fatalf("aurum source add web: %v\n%s", err, out)
	}
	subst := strings.NewReplacer("wk_...:", src.WriteKey+":", "http://127.0.0.1:8080", n.HTTP, " localhost:8080", " "+n.HTTP)
	ran := 0
lines:
	for _, c := range readmeCommands(t) {
		for sub, why := range readmeNotRun {
			if strings.Contains(c, sub) {
				t.Logf("not run (%s): %s", why, c)
				continue lines
			}
		}
		line := subst.Replace(c)
		if strings.HasPrefix(line, "curl ") {
			line = "curl -sSf " + strings.TrimPrefix(line, "curl ")
		}
		if strings.HasPrefix(line, "aurum profile ") { // the events above are applied asynchronously
			check.For(t, 20*time.Second, 20*time.Millisecond, func() error {
				if out, err := run(line); err != nil {
					return fmt.Errorf("%s: %v\n%s", c, err, out)
				}
				return nil
			})
			ran++
			continue
		}
		if out, err := run(line); err != nil {
			t.Errorf("README command failed: %s\n%v\n%s", c, err, out)
		}
		ran++
	}
	if ran < 12 {
		t.Fatalf("ran %d README commands; want the quick start, imports, audiences and tokens", ran)
	}
}
