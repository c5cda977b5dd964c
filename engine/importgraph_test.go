package engine

import (
	"os/exec"
	"strings"
	"testing"
)

// TestImportRules enforces ARCHITECTURE.md: exactly one package imports
// Pebble (store) and exactly one imports NATS (log); bench may import
// anything; nothing below engine imports engine or api; auth imports no
// other Aurum package.
func TestImportRules(t *testing.T) {
	out, err := exec.Command("go", "list", "-f", `{{.ImportPath}} {{join .Imports " "}}`, "github.com/aurumcdp/aurum/...").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	const mod = "github.com/aurumcdp/aurum/"
	owners := map[string]string{ // import prefix → the only package allowed to import it
		"github.com/cockroachdb/pebble":  mod + "store",
		"github.com/nats-io/nats-server": mod + "log",
		"github.com/nats-io/nats.go":     mod + "log",
		"github.com/hashicorp/raft":      mod + "cluster",
	}
	lower := map[string]bool{mod + "event": true, mod + "store": true, mod + "seal": true, mod + "log": true,
		mod + "importer": true, mod + "projections": true, mod + "projections/identity": true, mod + "projections/gcr": true,
		mod + "projections/audience": true, mod + "rules": true, mod + "activation": true, mod + "auth": true}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		fields := strings.Fields(line)
		pkg, imports := fields[0], fields[1:]
		if strings.HasPrefix(pkg, mod+"bench") {
			continue
		}
		for _, imp := range imports {
			for prefix, owner := range owners {
				if strings.HasPrefix(imp, prefix) && pkg != owner {
					t.Errorf("%s imports %s; only %s may", pkg, imp, owner)
				}
			}
			if (pkg == mod+"auth" || pkg == mod+"internal/wire") && strings.HasPrefix(imp, mod) {
				t.Errorf("%s imports %s: it imports no other Aurum package", pkg, imp)
			}
			if lower[pkg] && (strings.HasPrefix(imp, mod+"engine") || strings.HasPrefix(imp, mod+"api") || strings.HasPrefix(imp, mod+"cmd")) {
				t.Errorf("%s imports %s: dependencies point down (see ARCHITECTURE.md)", pkg, imp)
			}
		}
	}
}
