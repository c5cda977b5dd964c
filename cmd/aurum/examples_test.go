package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

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
	"aurum token revoke 01JABCDEF...":                                                            "a placeholder id",
	"aurum digest --data-dir ./aurum-data":                                                       "reads a stopped node; the test node runs",
	"aurum digest --server http://127.0.0.1:8080 --partitions":                                   "a fixed address; run below with the node's",
	"aurum serve --data-dir /var/lib/aurum --http 0.0.0.0:8080":                                  "runs a node",
	"aurum serve --config docs/serve.example.yaml --log-level debug   # flags win over the file": "runs a node; TestServeConfigFile loads the file",
}

// TestHelpExamples runs every example of every command's --help against a
// real node (the example of aurum audience --help failed: --channel is
// required), in a directory holding the files they name.
func TestHelpExamples(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a real aurum process")
	}
	n := startNode(t, t.TempDir())
	for _, s := range []string{"crm", "pos", "web"} {
		n.createSource(s)
	}
	dir := t.TempDir()
	writeFile(t, dir, "crm.csv", "email,crm_id,first_name\nrob@example.com,C1,Rob\n")
	writeFile(t, dir, "pos.csv", "card,amount,date\nL1,12.5,2026-01-02T10:00:00Z\n")
	writeFile(t, dir, "events.ndjson", `{"type":"track","userId":"u1","event":"Order Completed","properties":{"revenue":5}}`+"\n")
	writeFile(t, dir, "abandoners.rule", `funnel(["Product Viewed", "Product Added"], "2h") and count("Order Completed", "1d") == 0`)
	writeFile(t, dir, "ada.pw", "correct horse battery staple\n")
	writeFile(t, dir, "hook.secret", "a-signing-secret-of-32-characters\n")
	env := append(os.Environ(), "AURUM_SERVER="+n.HTTP, "AURUM_ADMIN_TOKEN="+testAdminToken, "HOME="+t.TempDir(),
		"PATH="+filepath.Dir(aurumBin)+string(os.PathListSeparator)+os.Getenv("PATH"), "PASSWORD=another horse battery staple")
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
		cmd := exec.Command("bash", "-o", "pipefail", "-c", line)
		cmd.Dir, cmd.Env = dir, env
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Errorf("%s --help example failed: %s\n%v\n%s", ex.cmd, ex.line, err, out)
		}
		ran++
	}
	if out, code := aurumCLI(t, env, "digest", "--server", n.HTTP, "--partitions"); code != 0 || !regexp.MustCompile(`^[0-9a-f]{64} applied=\d+\n`).MatchString(out) {
		t.Errorf("aurum digest --server --partitions: exit %d\n%s", code, out)
	}
	if ran < 15 {
		t.Fatalf("ran %d examples; the examples were not found", ran)
	}
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
	data, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	inSh, checked, cont := false, 0, ""
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
		if i := strings.Index(l, " # "); i >= 0 { // a trailing comment
			l = l[:i]
		}
		if strings.HasSuffix(strings.TrimSpace(l), "\\") { // continued on the next line
			cont += strings.TrimSuffix(strings.TrimSpace(l), "\\") + " "
			continue
		}
		l, cont = cont+l, ""
		for _, cmdLine := range strings.Split(l, " ; ") {
			cmdLine = strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(cmdLine), "&"))
			cmdLine = strings.Replace(cmdLine, "go run ./cmd/aurum ", "aurum ", 1)
			if !strings.HasPrefix(cmdLine, "aurum ") {
				continue
			}
			if err := parseExample(cmdLine); err != nil {
				t.Errorf("README: %q: %v", cmdLine, err)
			}
			checked++
		}
	}
	if checked < 15 {
		t.Fatalf("checked %d README commands; the sh blocks were not found", checked)
	}
}
