package identity

import (
	"crypto/sha256"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

var rewrite = flag.Bool("rewrite", false, "rewrite the expected output of data-driven tests in testdata/")

// ddCase is one command of a data-driven file:
//
//	cmd arg arg...
//	optional input lines
//	----
//	expected output lines
//
// Cases are separated by blank lines; lines starting with # between cases are
// comments.
type ddCase struct {
	line  int
	cmd   string
	args  []string
	input string
}

// runDataDriven runs every case of path through run, comparing its output
// with the expected output, or rewriting the file with -rewrite.
func runDataDriven(t *testing.T, path string, run func(c ddCase) string) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	out, mismatches, err := evalDataDriven(string(data), run)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	if *rewrite {
		if err := os.WriteFile(path, []byte(out), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	for _, m := range mismatches {
		t.Errorf("%s:%s", path, m)
	}
}

// evalDataDriven runs the cases of a data-driven file and returns the file
// with the actual output in place of the expected, and one message per
// mismatch.
func evalDataDriven(data string, run func(c ddCase) string) (string, []string, error) {
	lines := strings.Split(strings.TrimRight(data, "\n"), "\n")
	var out strings.Builder
	var mismatches []string
	for i := 0; i < len(lines); {
		l := lines[i]
		if strings.TrimSpace(l) == "" || strings.HasPrefix(l, "#") {
			out.WriteString(l + "\n")
			i++
			continue
		}
		c := ddCase{line: i + 1}
		fields := strings.Fields(l)
		c.cmd, c.args = fields[0], fields[1:]
		out.WriteString(l + "\n")
		i++
		var input []string
		for i < len(lines) && lines[i] != "----" {
			input = append(input, lines[i])
			out.WriteString(lines[i] + "\n")
			i++
		}
		if i == len(lines) {
			return "", nil, fmt.Errorf("line %d: missing ----", c.line)
		}
		i++ // ----
		c.input = strings.Join(input, "\n")
		var expected []string
		for i < len(lines) && strings.TrimSpace(lines[i]) != "" {
			expected = append(expected, lines[i])
			i++
		}
		got := strings.TrimRight(run(c), "\n")
		out.WriteString("----\n")
		if got != "" {
			out.WriteString(got + "\n")
		}
		if want := strings.Join(expected, "\n"); got != want {
			mismatches = append(mismatches, fmt.Sprintf("%d: %s %s\nexpected:\n%s\ngot:\n%s",
				c.line, c.cmd, strings.Join(c.args, " "), want, got))
		}
	}
	return out.String(), mismatches, nil
}

// testHash is the test's stand-in for the keyed identifier hash.
func testHash(typ, value string) []byte {
	s := sha256.Sum256([]byte(typ + ":" + value))
	return s[:IDLen]
}

func testEventID(name string) []byte {
	s := sha256.Sum256([]byte("event/" + name))
	return s[:IDLen]
}

func TestDataDriven(t *testing.T) {
	files, err := filepath.Glob("testdata/*.txt")
	if err != nil {
		t.Fatal(err)
	}
	if len(files) == 0 {
		t.Fatal("no testdata")
	}
	for _, path := range files {
		t.Run(filepath.Base(path), func(t *testing.T) {
			h := newHarness(t, DefaultConfig())
			runDataDriven(t, path, func(c ddCase) string {
				out, err := h.run(c)
				if err != nil {
					t.Fatalf("%s:%d: %v", path, c.line, err)
				}
				return out
			})
		})
	}
}

func TestEvalDataDriven(t *testing.T) {
	in := "# comment\n\nevent e1 t=1 email:a\n----\nwrong\n\nlookup email:a\n----\nP1\n"
	h := newHarness(t, DefaultConfig())
	out, mismatches, err := evalDataDriven(in, func(c ddCase) string {
		out, err := h.run(c)
		if err != nil {
			t.Fatal(err)
		}
		return out
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(mismatches) != 1 || !strings.HasPrefix(mismatches[0], "3: event e1") {
		t.Fatalf("mismatches = %q", mismatches)
	}
	want := "# comment\n\nevent e1 t=1 email:a\n----\nP1 created owns email:a\n\nlookup email:a\n----\nP1\n"
	if out != want {
		t.Fatalf("rewritten:\n%s\nwant:\n%s", out, want)
	}
	if _, _, err := evalDataDriven("event e1 t=1 email:a\n", func(ddCase) string { return "" }); err == nil {
		t.Fatal("missing ---- accepted")
	}
}
