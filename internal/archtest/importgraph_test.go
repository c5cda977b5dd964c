// Package archtest holds the test that keeps ARCHITECTURE.md true: the
// package table there is the dependency rule of the code, and this test
// enforces it.
package archtest

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
)

const module = "github.com/aurumcdp/aurum/"

// owners are third-party import prefixes that exactly one Aurum package may
// import (ARCHITECTURE.md: the single importers).
var owners = map[string]string{
	"github.com/cockroachdb/pebble":  "store",
	"github.com/nats-io/nats-server": "log",
	"github.com/nats-io/nats.go":     "log",
	"github.com/hashicorp/raft":      "cluster",
}

// rule is one row of the package table: the package and what it may import.
type rule struct {
	pkg      string
	anything bool     // "anything": no constraint (bench)
	allowed  []string // Aurum packages; "x/*" matches every package under x
	line     int      // line in ARCHITECTURE.md; rows are ordered from the base up
}

// readTable parses the "Packages and their dependencies" table of
// ARCHITECTURE.md. The third column lists the Aurum packages a package may
// import, each in backticks, or says "anything", or "—" for none.
func readTable(path string) (map[string]rule, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	const heading = "## Packages and their dependencies"
	tick := regexp.MustCompile("`([^`]+)`")
	rules := map[string]rule{}
	in := false
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		switch {
		case line == heading:
			in = true
			continue
		case !in:
			continue
		case strings.HasPrefix(line, "## "):
			return rules, nil
		case !strings.HasPrefix(line, "| `"):
			continue
		}
		cells := strings.Split(strings.Trim(line, "|"), "|")
		if len(cells) < 3 {
			return nil, fmt.Errorf("%s:%d: a package row needs three cells", path, n)
		}
		name := tick.FindStringSubmatch(cells[0])
		if name == nil {
			return nil, fmt.Errorf("%s:%d: no package name in backticks", path, n)
		}
		r := rule{pkg: name[1], line: n}
		may := strings.TrimSpace(cells[len(cells)-1])
		switch {
		case may == "anything":
			r.anything = true
		case strings.HasPrefix(may, "—"):
		default:
			for _, m := range tick.FindAllStringSubmatch(may, -1) {
				r.allowed = append(r.allowed, m[1])
			}
			if len(r.allowed) == 0 {
				return nil, fmt.Errorf("%s:%d: %s: say `anything`, — or list packages in backticks", path, n, r.pkg)
			}
		}
		if _, dup := rules[r.pkg]; dup {
			return nil, fmt.Errorf("%s:%d: %s listed twice", path, n, r.pkg)
		}
		rules[r.pkg] = r
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	if !in {
		return nil, fmt.Errorf("%s: no %q section", path, heading)
	}
	return rules, nil
}

func (r rule) matches(allowed, imp string) bool {
	if base, ok := strings.CutSuffix(allowed, "/*"); ok {
		return strings.HasPrefix(imp, base+"/")
	}
	return imp == allowed
}

type goPackage struct {
	ImportPath string
	Imports    []string
}

// listPackages returns every package of the module with its (non-test)
// imports, paths relative to the module.
func listPackages(t *testing.T, root string) map[string][]string {
	cmd := exec.Command("go", "list", "-json=ImportPath,Imports", "./...")
	cmd.Dir = root
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	pkgs := map[string][]string{}
	dec := json.NewDecoder(strings.NewReader(string(out)))
	for dec.More() {
		var p goPackage
		if err := dec.Decode(&p); err != nil {
			t.Fatalf("go list output: %v", err)
		}
		pkgs[strings.TrimPrefix(p.ImportPath, module)] = p.Imports
	}
	return pkgs
}

// TestImportGraph enforces ARCHITECTURE.md's package table on the code:
// every package of the module has a row and every row a package; a package
// imports only the Aurum packages its row allows, and its row allows only
// what it imports (so the table says what the code does); the single
// importers of Pebble, NATS and Raft are the only ones.
func TestImportGraph(t *testing.T) {
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	rules, err := readTable(filepath.Join(root, "ARCHITECTURE.md"))
	if err != nil {
		t.Fatal(err)
	}
	pkgs := listPackages(t, root)
	var names []string
	for p := range pkgs {
		names = append(names, p)
	}
	sort.Strings(names)
	for _, pkg := range names {
		r, ok := rules[pkg]
		if !ok {
			t.Errorf("package %s has no row in ARCHITECTURE.md's package table", pkg)
			continue
		}
		used := make([]bool, len(r.allowed))
		for _, imp := range pkgs[pkg] {
			for prefix, owner := range owners {
				if strings.HasPrefix(imp, prefix) && pkg != owner {
					t.Errorf("%s imports %s; only %s may (ARCHITECTURE.md)", pkg, imp, owner)
				}
			}
			aurum, ok := strings.CutPrefix(imp, module)
			if !ok || r.anything {
				continue
			}
			allowed := false
			for i, a := range r.allowed {
				if r.matches(a, aurum) {
					used[i], allowed = true, true
				}
			}
			if !allowed {
				t.Errorf("%s imports %s, which its row in ARCHITECTURE.md (line %d) does not allow", pkg, aurum, r.line)
			}
		}
		for i, a := range r.allowed {
			if !used[i] {
				t.Errorf("ARCHITECTURE.md line %d lets %s import %s, but it does not: drop it from the row", r.line, pkg, a)
			}
		}
	}
	for pkg, r := range rules {
		if _, ok := pkgs[pkg]; !ok {
			t.Errorf("ARCHITECTURE.md line %d: package %s does not exist", r.line, pkg)
		}
		// Dependencies point up the table: every package a row lists
		// has its own row above it.
		for _, a := range r.allowed {
			found := false
			for other, o := range rules {
				if r.matches(a, other) {
					found = true
					if o.line >= r.line {
						t.Errorf("ARCHITECTURE.md line %d: %s may import %s, whose row (line %d) is not above it", r.line, pkg, other, o.line)
					}
				}
			}
			if !found {
				t.Errorf("ARCHITECTURE.md line %d: %s lists %s, which has no row", r.line, pkg, a)
			}
		}
	}
}

// TestReadTable checks the table reader on a small table, so that a
// malformed row fails loudly rather than allowing everything.
func TestReadTable(t *testing.T) {
	dir := t.TempDir()
	write := func(s string) string {
		p := filepath.Join(dir, "A.md")
		if err := os.WriteFile(p, []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	good := "# x\n## Packages and their dependencies\n\n| package | job | may import |\n|---|---|---|\n" +
		"| `a` | job with `code` in it | — (none) |\n| `b` | j | `a`, `c/*` |\n| `bench` | j | anything |\n## Next\n| `z` | not | `a` |\n"
	rules, err := readTable(write(good))
	if err != nil {
		t.Fatal(err)
	}
	if len(rules) != 3 || len(rules["a"].allowed) != 0 || rules["a"].anything ||
		strings.Join(rules["b"].allowed, ",") != "a,c/*" || !rules["bench"].anything {
		t.Fatalf("rules = %+v", rules)
	}
	if r := rules["b"]; !r.matches("c/*", "c/d") || r.matches("c/*", "c") || r.matches("c/*", "cd/e") || r.matches("a", "ab") {
		t.Fatal("matches: wildcard or exact match wrong")
	}
	for _, bad := range []string{
		"## Packages and their dependencies\n| `a` | j | some words |\n",
		"## Packages and their dependencies\n| `a` | j | — |\n| `a` | j | — |\n",
		"## Packages and their dependencies\n| `a` | j |\n",
		"# no section\n",
	} {
		if _, err := readTable(write(bad)); err == nil {
			t.Errorf("readTable(%q): no error", bad)
		}
	}
}
