package main

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/aurumcdp/aurum/engine/export"
)

// checkExportExamples checks, after TestHelpExamples ran aurum export's
// examples against its node (started with --export-dir exportDir), what
// they did: two runs listed newest first (the second personal, with all
// the transitions), each run's files on disk as its manifest says, the
// schedule the last example set, and a too-short interval refused naming
// the flag.
func checkExportExamples(t *testing.T, env []string, exportDir string) {
	t.Helper()
	out, code := aurumCLI(t, env, "export", "list", "--output", "json")
	var list struct {
		Runs []exportRunOut `json:"runs"`
	}
	if code != 0 || json.Unmarshal([]byte(out), &list) != nil {
		t.Fatalf("aurum export list --output json: exit %d\n%s", code, out)
	}
	if len(list.Runs) != 2 {
		t.Fatalf("aurum export list: %d runs, want the 2 the examples wrote\n%s", len(list.Runs), out)
	}
	newest, first := list.Runs[0], list.Runs[1]
	if !newest.Personal || newest.TransitionsAfterSeq != 0 || first.Personal || newest.ID <= first.ID ||
		newest.Trigger != "request" {
		t.Fatalf("runs: newest %+v, first %+v", newest, first)
	}
	for _, r := range list.Runs {
		if r.Directory != filepath.Join(exportDir, r.ID) {
			t.Fatalf("run %s in %s, want under %s", r.ID, r.Directory, exportDir)
		}
		b, err := os.ReadFile(filepath.Join(r.Directory, export.ManifestFile))
		var m export.Manifest
		if err != nil || json.Unmarshal(b, &m) != nil || m.Run != r.ID || m.AppliedSeq != r.AppliedSeq || m.Personal != r.Personal {
			t.Fatalf("manifest of %s: %v\n%s", r.ID, err, b)
		}
		names := []string{}
		for _, f := range m.Files {
			names = append(names, f.Name)
			data, err := os.ReadFile(filepath.Join(r.Directory, f.Name))
			if err != nil {
				t.Fatal(err)
			}
			sum := sha256.Sum256(data)
			if int64(len(data)) != f.Bytes || hex.EncodeToString(sum[:]) != f.SHA256 {
				t.Fatalf("%s/%s: %d bytes, sha256 %x on disk; manifest %+v", r.ID, f.Name, len(data), sum, f)
			}
		}
		if strings.Join(names, ",") != "profiles.parquet,memberships.parquet,transitions.parquet" {
			t.Fatalf("run %s files %v", r.ID, names)
		}
	}
	if out, code := aurumCLI(t, env, "export", "list"); code != 0 || !strings.HasPrefix(out, "RUN ") ||
		strings.Index(out, newest.ID) > strings.Index(out, first.ID) {
		t.Fatalf("aurum export list (table): exit %d\n%s", code, out)
	}

	out, code = aurumCLI(t, env, "export", "schedule", "--output", "json")
	var sc struct {
		Interval string `json:"interval"`
		Keep     int    `json:"keep"`
		Personal bool   `json:"personal"`
		Source   string `json:"source"`
	}
	if code != 0 || json.Unmarshal([]byte(out), &sc) != nil || sc.Interval != "6h0m0s" || sc.Keep != 8 || !sc.Personal || sc.Source != "log" {
		t.Fatalf("aurum export schedule: exit %d\n%s", code, out)
	}
	if out, code := aurumCLI(t, env, "export", "schedule", "--interval", "30s"); code == 0 || !strings.Contains(out, "interval") ||
		!strings.Contains(out, "1m0s") {
		t.Fatalf("aurum export schedule --interval 30s: exit %d, want a refusal naming the interval\n%s", code, out)
	}
	if out, code := aurumCLI(t, env, "export", "schedule", "--keep", "0"); code == 0 || !strings.Contains(out, "keep") {
		t.Fatalf("aurum export schedule --keep 0: exit %d, want a refusal naming keep\n%s", code, out)
	}
}
