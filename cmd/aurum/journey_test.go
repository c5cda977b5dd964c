package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"testing"
	"time"

	"github.com/aurumcdp/aurum/engine"
	"github.com/aurumcdp/aurum/internal/check"
)

// TestJourney runs `aurum serve` as a real process and sends one person's
// fragmented journey: anonymous browsing on two devices, a login, an identify
// with an email, a POS purchase carrying a loyalty id, an alias from a third
// device and retried messages. Every identifier must find the one GCR, with
// exact event counts.
func TestJourney(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a real aurum process")
	}
	parallelProcess(t)
	n := startNode(t, t.TempDir(), "--memory-limit", "300MiB") // the journey holds under a small limit
	web, pos := n.createSource("web"), n.createSource("pos")
	t0 := time.Date(2026, 11, 1, 9, 0, 0, 0, time.UTC)
	at := func(min int) string { return t0.Add(time.Duration(min) * time.Minute).Format(time.RFC3339) }

	send := func(key, path string, body map[string]any) {
		t.Helper()
		n.mustJSON("POST", path, body, writeKeyAuth(key), http.StatusOK, nil)
	}
	send(web, "/v1/page", map[string]any{"anonymousId": "anon-phone", "messageId": "m1", "name": "Home",
		"timestamp": at(0), "context": map[string]any{"device": map[string]any{"type": "ios"}}})
	send(web, "/v1/page", map[string]any{"anonymousId": "anon-laptop", "messageId": "m2", "name": "Shoes", "timestamp": at(1)})
	viewed := map[string]any{"anonymousId": "anon-laptop", "messageId": "m3", "event": "Product Viewed",
		"properties": map[string]any{"sku": "SH-1"}, "timestamp": at(2)}
	send(web, "/v1/track", viewed)
	send(web, "/v1/track", map[string]any{"userId": "u-1001", "anonymousId": "anon-phone", "messageId": "m4",
		"event": "Signed In", "timestamp": at(3)})
	identify := map[string]any{"userId": "u-1001", "anonymousId": "anon-laptop", "messageId": "m5",
		"traits": map[string]any{"email": "  Rob@Example.COM ", "name": "Rob", "secret": "Plaintext-Canary-7731"}, "timestamp": at(4)}
	send(web, "/v1/identify", identify)
	send(pos, "/v1/track", map[string]any{"messageId": "m6", "event": "Order Completed", "timestamp": at(60),
		"properties": map[string]any{"revenue": 42.5, "store": "CPH-1"},
		"context": map[string]any{"traits": map[string]any{"email": "rob@example.com"},
			"externalIds": []any{map[string]any{"id": "L-77", "type": "loyalty_id", "collection": "users", "encoding": "none"}}}})
	send(web, "/v1/page", map[string]any{"anonymousId": "anon-tablet", "messageId": "m7", "name": "Deals", "timestamp": at(90)})
	send(web, "/v1/alias", map[string]any{"previousId": "anon-tablet", "userId": "u-1001", "messageId": "m8", "timestamp": at(91)})
	// An SDK retry of m3, and a batch holding a new event and a retry of m5.
	send(web, "/v1/track", viewed)
	identify["type"] = "identify"
	var br struct {
		Accepted int   `json:"accepted"`
		Rejected []any `json:"rejected"`
	}
	n.mustJSON("POST", "/v1/batch", map[string]any{"batch": []any{
		map[string]any{"type": "track", "userId": "u-1001", "messageId": "m9", "event": "Product Added", "timestamp": at(92)},
		identify,
	}}, writeKeyAuth(web), http.StatusOK, &br)
	if br.Accepted != 2 || len(br.Rejected) != 0 {
		t.Fatalf("batch: accepted %d rejected %v", br.Accepted, br.Rejected)
	}
	// A marker for someone else, sent last: once it is visible, everything
	// before it on the log has been applied.
	send(web, "/v1/track", map[string]any{"userId": "marker", "messageId": "m-marker", "event": "Marker"})
	check.For(t, 20*time.Second, 20*time.Millisecond, func() error {
		_, err := n.profile("user_id:marker")
		return err
	})

	refs := []string{"email:rob@example.com", "email:ROB@example.com", "user_id:u-1001", "anonymous_id:anon-phone",
		"anonymous_id:anon-laptop", "anonymous_id:anon-tablet", "loyalty_id:L-77"}
	var pid string
	for _, ref := range refs {
		p, err := n.profile(ref)
		if err != nil {
			t.Fatal(err)
		}
		id, _ := p["profile_id"].(string)
		if pid == "" {
			pid = id
		}
		if id != pid || id == "" {
			t.Fatalf("%s found profile %q, want %q", ref, id, pid)
		}
	}
	p, err := n.profile("profile_id:" + pid)
	if err != nil {
		t.Fatal(err)
	}
	stats := p["stats"].(map[string]any)
	if got := stats["total_events"]; got != float64(9) {
		t.Errorf("total_events = %v, want 9 (8 distinct calls + 1 batch event; 2 retries dropped)", got)
	}
	wantCounts := map[string]float64{"Product Viewed": 1, "Signed In": 1, "Order Completed": 1, "Product Added": 1}
	counts := stats["event_counts"].(map[string]any)
	if len(counts) != len(wantCounts) {
		t.Errorf("event_counts = %v, want %v", counts, wantCounts)
	}
	for k, v := range wantCounts {
		if counts[k] != v {
			t.Errorf("event_counts[%q] = %v, want %v", k, counts[k], v)
		}
	}
	if tr := p["traits"].(map[string]any); tr["name"] != "Rob" {
		t.Errorf("traits = %v, want name Rob", tr)
	}
	ids := p["identifiers"].(map[string]any)
	for typ, want := range map[string]int{"email": 1, "user_id": 1, "anonymous_id": 3, "loyalty_id": 1} {
		if got := len(ids[typ].([]any)); got != want {
			t.Errorf("identifiers[%s] has %d values, want %d: %v", typ, got, want, ids[typ])
		}
	}
	if v := ids["email"].([]any)[0].(map[string]any)["value"]; v != "rob@example.com" {
		t.Errorf("email identifier = %v, want the normalised rob@example.com", v)
	}
	rev := p["revenue"].(map[string]any)["Order Completed"].(map[string]any)
	if rev["count"] != float64(1) || rev["total"] != 42.5 {
		t.Errorf("revenue = %v, want 1 order of 42.5", rev)
	}

	// The latest events, newest first.
	var evs struct {
		Events []map[string]any `json:"events"`
	}
	n.mustJSON("GET", "/v1/profiles/user_id:u-1001/events?limit=3", nil, adminAuth, http.StatusOK, &evs)
	if len(evs.Events) != 3 {
		t.Fatalf("events: got %d, want 3", len(evs.Events))
	}
	for i, want := range []string{"m9", "m8", "m7"} {
		if evs.Events[i]["messageId"] != want {
			got, _ := json.Marshal(evs.Events)
			t.Fatalf("events[%d].messageId = %v, want %s; events: %s", i, evs.Events[i]["messageId"], want, got)
		}
	}

	// Unknown identifiers are 404; malformed references 400.
	for ref, want := range map[string]int{"email:nobody@example.com": 404, "loyalty_id:L-78": 404, "nocolon": 400,
		"profile_id:not-a-ulid": 400} {
		code, body, err := n.request("GET", "/v1/profiles/"+ref, nil, adminAuth)
		if err != nil || code != want {
			t.Errorf("GET /v1/profiles/%s: %d %s (%v), want %d", ref, code, body, err, want)
		}
	}

	// Metrics are exported.
	code, metrics, err := n.request("GET", "/metrics", nil, adminAuth)
	if err != nil || code != http.StatusOK || !bytes.Contains(metrics, []byte(`aurum_ingest_events_total{source="pos"} 1`)) {
		t.Errorf("GET /metrics: %d %v; want aurum_ingest_events_total for pos:\n%.2000s", code, err, metrics)
	}
	// --memory-limit reached the engine's bounds and the Go runtime.
	mem := engine.MemorySizesFor(300 << 20)
	got := map[string]float64{}
	for _, m := range regexp.MustCompile(`(?m)^(aurum_memory_bound_bytes\{bound="[a-z_]+"\}|aurum_go_memory_limit_bytes) (\S+)$`).
		FindAllSubmatch(metrics, -1) {
		got[string(m[1])], _ = strconv.ParseFloat(string(m[2]), 64)
	}
	for name, want := range map[string]int64{`aurum_memory_bound_bytes{bound="limit"}`: 300 << 20,
		`aurum_memory_bound_bytes{bound="state_cache"}`: int64(mem.StateCache), `aurum_memory_bound_bytes{bound="state_block_cache"}`: mem.StateBlockCache,
		"aurum_go_memory_limit_bytes": mem.GoLimit} {
		if got[name] != float64(want) {
			t.Errorf("GET /metrics: %s = %v, want %d", name, got[name], want)
		}
	}

	// The node restarts where it stopped: same answers after SIGTERM + start.
	n.stop()
	if code := n.cmd.ProcessState.ExitCode(); code != 0 {
		t.Errorf("aurum serve exited with %d on SIGTERM, want 0", code)
	}
	// Personal data is sealed on the log and in Pebble: neither the email, a
	// trait value nor a property value appears in plain text in any file,
	// while an event name (in clear by design: the control) does.
	found := scanDir(t, n.dataDir, "rob@example.com", "Plaintext-Canary-7731", "CPH-1", "Product Viewed")
	if found["rob@example.com"] != "" || found["Plaintext-Canary-7731"] != "" || found["CPH-1"] != "" {
		t.Errorf("personal data in plain text on disk: %v", found)
	}
	if found["Product Viewed"] == "" {
		t.Errorf("control failed: the event name Product Viewed was not found on disk, so the scan proves nothing")
	}
	n.restart()
	p2, err := n.profile("loyalty_id:L-77")
	if err != nil {
		t.Fatal(err)
	}
	if p2["profile_id"] != pid || p2["stats"].(map[string]any)["total_events"] != float64(9) {
		t.Fatalf("after restart: %v", fmt.Sprint(p2["profile_id"], p2["stats"]))
	}
}

// scanDir reports, for each needle, a file under dir that contains it.
func scanDir(t *testing.T, dir string, needles ...string) map[string]string {
	t.Helper()
	found := map[string]string{}
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if errors.Is(err, fs.ErrNotExist) { // a running node renames temporary files
			return nil
		}
		if err != nil || d.IsDir() {
			return err
		}
		data, err := os.ReadFile(path)
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		if err != nil {
			return err
		}
		for _, nd := range needles {
			if bytes.Contains(data, []byte(nd)) {
				found[nd] = path
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return found
}
