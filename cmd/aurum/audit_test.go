package main

import (
	"encoding/json"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"testing"
)

// TestAuditSurvivesRestart: management actions, refused ones included, are
// on the audit log after a restart, and `aurum audit` lists them.
func TestAuditSurvivesRestart(t *testing.T) {
	parallelProcess(t)
	n := startNode(t, t.TempDir(), "--tick", "0")
	n.createSource("web")
	code, _, err := n.request("DELETE", "/v1/audiences/vip", nil, func(r *http.Request) { r.Header.Set("Authorization", "Bearer wrong-token-0123456789") })
	if err != nil || code != http.StatusUnauthorized {
		t.Fatalf("bad token: %d %v", code, err)
	}
	n.stop()
	n.restart()

	type entry struct {
		Seq    uint64            `json:"seq"`
		Actor  string            `json:"actor"`
		Action string            `json:"action"`
		Object map[string]string `json:"object"`
		Status int               `json:"status"`
		Result string            `json:"result"`
	}
	var page struct {
		Entries []entry `json:"entries"`
		Next    string  `json:"next"`
	}
	n.mustJSON("GET", "/v1/audit?limit=2", nil, adminAuth, http.StatusOK, &page)
	if len(page.Entries) != 2 || page.Next != "3" {
		t.Fatalf("after restart: %+v", page)
	}
	e0, e1 := page.Entries[0], page.Entries[1]
	if e0.Actor != "bootstrap" || e0.Action != "POST /v1/sources" || e0.Object["name"] != "web" || e0.Status != 201 || e0.Result != "ok" {
		t.Errorf("entry 1: %+v", e0)
	}
	if e1.Actor != "" || e1.Action != "DELETE /v1/audiences/{name}" || e1.Object["name"] != "vip" || e1.Status != 401 || e1.Result != "unauthenticated" {
		t.Errorf("entry 2: %+v", e1)
	}

	cmd := exec.Command(aurumBin, "audit", "--server", n.HTTP, "--limit", "10")
	cmd.Env = append(os.Environ(), "AURUM_ADMIN_TOKEN="+testAdminToken)
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("aurum audit: %v: %s", err, out)
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	if len(lines) != 4 || !strings.HasPrefix(lines[0], "SEQ") ||
		!strings.Contains(lines[1], "POST /v1/sources") || !strings.Contains(lines[1], "name=web") ||
		!strings.Contains(lines[2], "unauthenticated") || !strings.Contains(lines[3], "GET /v1/audit") {
		t.Fatalf("aurum audit printed:\n%s", out)
	}
	// --limit without --since shows the newest entries (it showed the
	// oldest): the three above and this run's own GET, newest last.
	cmd = exec.Command(aurumBin, "audit", "--server", n.HTTP, "--limit", "2")
	cmd.Env = append(os.Environ(), "AURUM_ADMIN_TOKEN="+testAdminToken)
	out, err = cmd.Output()
	if err != nil {
		t.Fatalf("aurum audit --limit 2: %v: %s", err, out)
	}
	lines = strings.Split(strings.TrimSpace(string(out)), "\n")
	if len(lines) != 3 || !strings.HasPrefix(lines[1], "3 ") || !strings.Contains(lines[1], "GET /v1/audit") ||
		!strings.HasPrefix(lines[2], "4 ") || !strings.Contains(lines[2], "GET /v1/audit") {
		t.Fatalf("aurum audit --limit 2 printed (want the newest two, seq 3 and 4):\n%s", out)
	}
	cmd = exec.Command(aurumBin, "audit", "--server", n.HTTP, "--since", "yesterday")
	cmd.Env = append(os.Environ(), "AURUM_ADMIN_TOKEN="+testAdminToken)
	if out, err := cmd.CombinedOutput(); err == nil || !strings.Contains(string(out), "since") {
		t.Errorf("aurum audit --since yesterday: %v: %s", err, out)
	}
	var js any
	cmd = exec.Command(aurumBin, "audit", "--server", n.HTTP, "--json")
	cmd.Env = append(os.Environ(), "AURUM_ADMIN_TOKEN="+testAdminToken)
	if out, err := cmd.Output(); err != nil || json.Unmarshal(out, &js) != nil {
		t.Errorf("aurum audit --json: %v: %s", err, out)
	}
}
