package main

import (
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"
)

// TestDestinationCLI: aurum destination add|list|show|rm against a real
// node (webhooks were curl-only); the secret comes from stdin; list and
// show print a table, or with --output json the API's JSON, whose
// statistics are snake_case without a zero time (they were Go field names
// with "LastErrorTime": "0001-01-01T00:00:00Z").
func TestDestinationCLI(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a real aurum process")
	}
	parallelProcess(t)
	n := startNode(t, t.TempDir())
	env := []string{"AURUM_SERVER=" + n.HTTP, "AURUM_ADMIN_TOKEN=" + testAdminToken, "HOME=" + t.TempDir()}
	if out, code := aurumCLI(t, env, "audience", "add", "buyers", "--rule", `count("Order Completed") >= 1`); code != 0 {
		t.Fatalf("audience add: exit %d: %s", code, out)
	}
	out, code := aurumCLIStdin(t, env, "a-signing-secret-of-32-characters\n", "destination", "add", "crm", "--url", "http://127.0.0.1:9/hook",
		"--audience", "buyers", "--channel", "email")
	if code != 0 || !strings.Contains(out, "created destination crm") {
		t.Fatalf("destination add: exit %d: %s", code, out)
	}
	if out, code := aurumCLIStdin(t, env, "short\n", "destination", "add", "bad", "--url", "http://127.0.0.1:9/hook",
		"--audience", "buyers", "--channel", "email"); code == 0 || !strings.Contains(out, "secret") {
		t.Fatalf("destination add with a short secret: exit %d: %s", code, out)
	}
	if out, code := aurumCLI(t, env, "destination", "add", "nochan", "--url", "http://x", "--audience", "buyers"); code == 0 || !strings.Contains(out, "channel") {
		t.Fatalf("destination add without --channel: exit %d: %s", code, out)
	}
	// A connector: its config from a file, the credential sealed and never
	// shown, a bad field named.
	dir := t.TempDir()
	writeFile(t, dir, "sms.json", `{"account_sid":"AC1","auth_token":"token-0123456789","from":"+4512345678","body":"Hi","api_url":"http://127.0.0.1:9"}`)
	writeFile(t, dir, "bad.json", `{"account_sid":"AC1","auth_token":"token-0123456789","body":"Hi"}`)
	if out, code := aurumCLI(t, env, "destination", "add", "texts", "--kind", "sms", "--audience", "buyers", "--config-file", filepath.Join(dir, "sms.json")); code != 0 || !strings.Contains(out, "created destination texts → sms") {
		t.Fatalf("destination add --kind sms: exit %d: %s", code, out)
	}
	if out, code := aurumCLI(t, env, "destination", "add", "bad", "--kind", "sms", "--audience", "buyers", "--config-file", filepath.Join(dir, "bad.json")); code == 0 || !strings.Contains(out, "config.from") {
		t.Fatalf("destination add with a bad config: exit %d: %s", code, out)
	}
	if out, code := aurumCLI(t, env, "destination", "show", "texts", "--output", "json"); code != 0 || strings.Contains(out, "token-0123456789") ||
		!strings.Contains(out, `"kind": "sms"`) || !strings.Contains(out, `"channel": "sms"`) {
		t.Fatalf("destination show texts: exit %d (the credential must not show):\n%s", code, out)
	}
	if out, code := aurumCLI(t, env, "destination", "rm", "texts"); code != 0 {
		t.Fatalf("destination rm texts: exit %d:\n%s", code, out)
	}
	out, code = aurumCLI(t, env, "destination", "list")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if code != 0 || len(lines) != 2 || !strings.HasPrefix(lines[0], "NAME") || !strings.HasPrefix(lines[1], "crm ") || !strings.Contains(lines[1], "email") {
		t.Fatalf("destination list: exit %d:\n%s", code, out)
	}
	out, code = aurumCLI(t, env, "destination", "show", "crm", "--output", "json")
	var d map[string]any
	if code != 0 || json.Unmarshal([]byte(out), &d) != nil || d["name"] != "crm" {
		t.Fatalf("destination show --output json: exit %d:\n%s", code, out)
	}
	stats, _ := d["stats"].(map[string]any)
	for _, k := range []string{"delivered", "failed_attempts", "dead_lettered", "skipped", "last_seq", "lag", "running"} {
		if _, ok := stats[k]; !ok {
			t.Errorf("stats lack %q: %v", k, stats)
		}
	}
	if strings.Contains(out, "Delivered") || strings.Contains(out, "0001-01-01") || strings.Contains(out, "secret") {
		t.Errorf("destination JSON shows Go field names, a zero time or the secret:\n%s", out)
	}
	if out, code := aurumCLI(t, env, "destination", "show", "crm"); code != 0 || !strings.Contains(out, "http://127.0.0.1:9/hook") {
		t.Fatalf("destination show: exit %d:\n%s", code, out)
	}
	if out, code := aurumCLI(t, env, "destination", "list", "--output", "yaml"); code == 0 || !strings.Contains(out, "--output") {
		t.Fatalf("destination list --output yaml: exit %d:\n%s", code, out)
	}
	if out, code := aurumCLI(t, env, "destination", "rm", "crm"); code != 0 || !strings.Contains(out, "deleted destination crm") {
		t.Fatalf("destination rm: exit %d:\n%s", code, out)
	}
	if out, code := aurumCLI(t, env, "destination", "show", "crm"); code == 0 || !strings.Contains(out, "404") {
		t.Fatalf("destination show after rm: exit %d:\n%s", code, out)
	}
}
