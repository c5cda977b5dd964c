package main

import (
	"encoding/csv"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/aurumcdp/aurum/internal/check"
)

// TestAudienceCLI drives the audience commands against a real node: add
// (a good rule, a bad one with its line and column, a taken name), list,
// show, update, members (one page, and --all following cursors), export
// to a file, rm.
func TestAudienceCLI(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a real aurum process")
	}
	parallelProcess(t)
	n := startNode(t, t.TempDir())
	env := []string{"AURUM_SERVER=" + n.HTTP, "AURUM_ADMIN_TOKEN=" + testAdminToken, "HOME=" + t.TempDir()}
	run := func(want int, args ...string) string {
		t.Helper()
		out, code := aurumCLI(t, env, args...)
		if code != want {
			t.Fatalf("aurum %s: exit %d, want %d:\n%s", strings.Join(args, " "), code, want, out)
		}
		return out
	}

	key := n.createSource("web")
	var batch []map[string]any
	for i, email := range []string{"ann@example.com", "bob@example.com", "cy@example.com", "dee@example.com"} {
		uid := fmt.Sprintf("u%d", i+1)
		batch = append(batch, map[string]any{"type": "identify", "userId": uid, "messageId": "id-" + uid,
			"traits": map[string]any{"email": email}})
		name := "Order Completed"
		if i == 3 {
			name = "Product Viewed" // dee does not buy
		}
		batch = append(batch, map[string]any{"type": "track", "userId": uid, "event": name, "messageId": "ev-" + uid})
	}
	n.mustJSON("POST", "/v1/batch", map[string]any{"batch": batch}, writeKeyAuth(key), 200, nil)

	// A rule that does not compile: the message names line and column and
	// points at the spot; nothing is created.
	out := run(1, "audience", "add", "buyers", "--rule", `count("Order Completed") >=`)
	if !regexp.MustCompile(`line 1, column \d+: `).MatchString(out) || !strings.Contains(out, `count("Order Completed") >=`) || !strings.Contains(out, "^") {
		t.Fatalf("bad rule output:\n%s", out)
	}
	if out := run(1, "audience", "add", "buyers"); !strings.Contains(out, "--rule is required") {
		t.Fatalf("add without --rule:\n%s", out)
	}

	out = run(0, "audience", "add", "buyers", "--rule", `count("Order Completed") >= 1`, "--description", "bought once")
	var a struct {
		Name        string `json:"name"`
		Description string `json:"description"`
		Rule        string `json:"rule"`
		Version     int64  `json:"version"`
		Size        int64  `json:"size"`
	}
	if err := json.Unmarshal([]byte(out), &a); err != nil || a.Name != "buyers" || a.Rule != `count("Order Completed") >= 1` || a.Version != 1 || a.Description != "bought once" {
		t.Fatalf("add printed %+v (%v):\n%s", a, err, out)
	}
	if out := run(1, "audience", "add", "buyers", "--rule", `count("Order Completed") >= 1`); !strings.Contains(out, "409") {
		t.Fatalf("adding a taken name:\n%s", out)
	}

	// The three buyers enter (backfill of the events ingested before).
	check.For(t, 20*time.Second, 20*time.Millisecond, func() error {
		out, code := aurumCLI(t, env, "audience", "show", "buyers", "--output", "json")
		if code != 0 || json.Unmarshal([]byte(out), &a) != nil {
			return fmt.Errorf("show: exit %d: %s", code, out)
		}
		if a.Size != 3 {
			return fmt.Errorf("size %d, want 3", a.Size)
		}
		return nil
	})

	out = run(0, "audience", "list")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 2 || !slices.Equal(strings.Fields(lines[0]), []string{"NAME", "SIZE", "VERSION", "RULE"}) ||
		!slices.Equal(strings.Fields(lines[1])[:3], []string{"buyers", "3", "1"}) || !strings.HasSuffix(lines[1], `count("Order Completed") >= 1`) {
		t.Fatalf("list:\n%s", out)
	}
	var list struct {
		Audiences []struct {
			Name string `json:"name"`
			Size int64  `json:"size"`
		} `json:"audiences"`
	}
	if out := run(0, "audience", "list", "--json"); json.Unmarshal([]byte(out), &list) != nil || len(list.Audiences) != 1 || list.Audiences[0].Size != 3 {
		t.Fatalf("list --json:\n%s", out)
	}
	// The output convention: --output json, RFC 3339 times (created_ms
	// was epoch milliseconds); a table by default.
	out = run(0, "audience", "list", "--output", "json")
	if json.Unmarshal([]byte(out), &list) != nil || len(list.Audiences) != 1 || strings.Contains(out, "_ms") ||
		!regexp.MustCompile(`"created": "\d{4}-\d\d-\d\dT`).MatchString(out) {
		t.Fatalf("list --output json:\n%s", out)
	}
	if out := run(0, "audience", "show", "buyers"); !strings.HasPrefix(out, "FIELD") || !regexp.MustCompile(`(?m)^created +\d{4}-`).MatchString(out) {
		t.Fatalf("show (a table):\n%s", out)
	}

	// update keeps the description when only the rule changes.
	out = run(0, "audience", "update", "buyers", "--rule", `count("Order Completed") >= 1 or count("Product Viewed") >= 1`)
	if err := json.Unmarshal([]byte(out), &a); err != nil || a.Version != 2 || a.Description != "bought once" {
		t.Fatalf("update printed %+v (%v):\n%s", a, err, out)
	}
	ruleFile := filepath.Join(t.TempDir(), "bad.rule")
	if err := os.WriteFile(ruleFile, []byte("count(\"Order Completed\") >= 1 and\n  traits.x ==\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if out := run(1, "audience", "update", "buyers", "--rule-file", ruleFile); !strings.Contains(out, "line 2, column ") || !strings.Contains(out, "traits.x ==") {
		t.Fatalf("update with a bad rule on line 2 of --rule-file:\n%s", out)
	}
	if out := run(1, "audience", "update", "nobody", "--rule", `count("Order Completed") >= 1`); !strings.Contains(out, "404") {
		t.Fatalf("update of an unknown audience:\n%s", out)
	}
	out = run(0, "audience", "update", "buyers", "--rule", `count("Order Completed") >= 1`, "--description", "buyers")
	if err := json.Unmarshal([]byte(out), &a); err != nil || a.Version != 3 || a.Description != "buyers" {
		t.Fatalf("update printed %+v (%v):\n%s", a, err, out)
	}
	check.For(t, 20*time.Second, 20*time.Millisecond, func() error {
		if out, code := aurumCLI(t, env, "audience", "show", "buyers", "--output", "json"); code != 0 || json.Unmarshal([]byte(out), &a) != nil || a.Size != 3 {
			return fmt.Errorf("show: exit %d: %s", code, out)
		}
		return nil
	})

	// members: one page of 2 with a cursor, then --all following cursors
	// one member at a time.
	type page struct {
		Members []struct {
			ProfileID   string    `json:"profile_id"`
			Since       time.Time `json:"since"`
			RuleVersion int64     `json:"rule_version"`
		} `json:"members"`
		Next string `json:"next"`
	}
	var p1, all page
	if out := run(0, "audience", "members", "buyers", "--limit", "2", "--output", "json"); json.Unmarshal([]byte(out), &p1) != nil || len(p1.Members) != 2 || p1.Next == "" {
		t.Fatalf("members --limit 2:\n%s", out)
	}
	if out := run(0, "audience", "members", "buyers", "--all", "--limit", "1", "--output", "json"); json.Unmarshal([]byte(out), &all) != nil || len(all.Members) != 3 {
		t.Fatalf("members --all --limit 1:\n%s", out)
	}
	var ids []string
	for _, m := range all.Members {
		ids = append(ids, m.ProfileID)
	}
	if !slices.IsSorted(ids) || len(slices.Compact(slices.Clone(ids))) != 3 ||
		ids[0] != p1.Members[0].ProfileID || ids[1] != p1.Members[1].ProfileID {
		t.Fatalf("members --all %v, first page %+v", ids, p1.Members)
	}

	// export --format csv --out FILE: the three buyers with their emails.
	file := filepath.Join(t.TempDir(), "buyers.csv")
	if out := run(0, "audience", "export", "buyers", "--channel", "email", "--format", "csv", "--out", file); out != "aurum: buyers for channel email: 3 exported; nobody left out\n" {
		t.Fatalf("export --out printed %q, want only the summary", out)
	}
	f, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	rows, err := csv.NewReader(f).ReadAll()
	f.Close()
	if err != nil || len(rows) != 4 || rows[0][0] != "profile_id" || rows[0][3] != "email" {
		t.Fatalf("export file (%v): %q", err, rows)
	}
	var emails, exported []string
	for _, r := range rows[1:] {
		exported = append(exported, r[0])
		emails = append(emails, r[3])
	}
	slices.Sort(emails)
	if !slices.Equal(emails, []string{"ann@example.com", "bob@example.com", "cy@example.com"}) || !slices.Equal(exported, ids) {
		t.Fatalf("exported ids %v emails %v; members %v", exported, emails, ids)
	}
	// Errors leave no file behind.
	bad := filepath.Join(t.TempDir(), "x.csv")
	if out := run(1, "audience", "export", "nobody", "--channel", "email", "--out", bad); !strings.Contains(out, "404") {
		t.Fatalf("export of an unknown audience:\n%s", out)
	}
	if left, _ := os.ReadDir(filepath.Dir(bad)); len(left) != 0 {
		t.Fatalf("a failed export left %v", left)
	}
	if out := run(1, "audience", "export", "buyers", "--format", "pdf"); !strings.Contains(out, "--format") {
		t.Fatalf("export --format pdf:\n%s", out)
	}
	if out := run(1, "audience", "export", "buyers", "--format", "csv"); !strings.Contains(out, "--channel is required") {
		t.Fatalf("export without --channel:\n%s", out)
	}
	if out := run(1, "audience", "export", "buyers", "--channel", "fax"); !strings.Contains(out, "400") || !strings.Contains(out, `"fax"`) {
		t.Fatalf("export --channel fax:\n%s", out)
	}
	// sms: nobody has a phone number (it listed all three before).
	if out := run(0, "audience", "export", "buyers", "--channel", "sms", "--format", "ndjson"); strings.Contains(out, "profile_id") ||
		!strings.Contains(out, "0 exported; left out: 3 without an address for sms") {
		t.Fatalf("export --channel sms:\n%s", out)
	}
	if out := run(0, "audience", "export", "buyers", "--channel", "none", "--format", "ndjson"); strings.Count(out, "profile_id") != 3 || !strings.Contains(out, `"ann@example.com"`) {
		t.Fatalf("export to stdout:\n%s", out)
	}

	if out := run(0, "audience", "rm", "buyers"); !strings.Contains(out, "deleted audience buyers") {
		t.Fatalf("rm:\n%s", out)
	}
	if out := run(1, "audience", "show", "buyers"); !strings.Contains(out, "404") {
		t.Fatalf("show after rm:\n%s", out)
	}
	if out := run(1, "audience", "rm", "buyers"); !strings.Contains(out, "404") {
		t.Fatalf("rm twice:\n%s", out)
	}
	if out := run(0, "audience", "--help"); !strings.Contains(out, `funnel(["Product Viewed", "Product Added"], "2h")`) {
		t.Fatalf("audience --help lacks the rule examples:\n%s", out)
	}
}
