package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aurumcdp/aurum/engine"
	"github.com/aurumcdp/aurum/internal/check"
)

// TestReplayAndDigest: on a real `aurum serve` data dir, `aurum replay`
// rebuilds the projections while events keep arriving, draws its progress
// bar and swaps the rebuild in; digests before and after agree with a clean
// rebuild; --dry-run finds nothing to differ; a replay from a snapshot
// gives the same state; `aurum digest` offline equals online.
func TestReplayAndDigest(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a real aurum process")
	}
	parallelProcess(t)
	dataDir := t.TempDir()
	n := startNode(t, dataDir, "--tick", "0")
	key := n.createSource("web")
	n.mustJSON("POST", "/v1/audiences", map[string]string{"name": "buyers", "rule": `count("Order Completed") >= 1`}, adminAuth, http.StatusCreated, nil)
	send := func(lo, hi int) {
		var batch []map[string]any
		for i := lo; i < hi; i++ {
			ev := map[string]any{"type": "track", "userId": fmt.Sprintf("r-%d", i%300), "anonymousId": fmt.Sprintf("c-%d", i%450),
				"messageId": fmt.Sprintf("r-%d", i), "event": []string{"Product Viewed", "Order Completed"}[i%2]}
			batch = append(batch, ev)
			if len(batch) == 50 {
				n.mustJSON("POST", "/v1/batch", map[string]any{"batch": batch}, writeKeyAuth(key), http.StatusOK, nil)
				batch = nil
			}
		}
	}
	send(0, 3000)
	env := []string{"AURUM_SERVER=" + n.HTTP, "AURUM_ADMIN_TOKEN=" + testAdminToken}
	digest := func() string {
		t.Helper()
		out, code := aurumCLI(t, env, "digest", "--server", n.HTTP, "--partitions")
		if code != 0 {
			t.Fatalf("aurum digest --server: exit %d: %s", code, out)
		}
		return strings.TrimSpace(out)
	}
	waitIdle := func() {
		// Everything sent is applied once the marker is visible.
		marker := fmt.Sprintf("marker-%d", time.Now().UnixNano())
		n.mustJSON("POST", "/v1/track", map[string]any{"userId": marker, "event": "M", "messageId": marker}, writeKeyAuth(key), http.StatusOK, nil)
		check.For(t, 20*time.Second, 20*time.Millisecond, func() error { _, err := n.profile("user_id:" + marker); return err })
	}
	waitIdle()

	// A replay while events keep arriving.
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); send(3000, 6000) }()
	out, code := aurumCLI(t, env, "replay", "--output", "json")
	wg.Wait()
	if code != 0 || !strings.Contains(out, `"status": "done"`) || !strings.Contains(out, "replay") || !strings.Contains(out, "entries") {
		t.Fatalf("aurum replay: exit %d:\n%s", code, out)
	}
	waitIdle()
	for i := range 300 {
		p, err := n.profile(fmt.Sprintf("user_id:r-%d", i))
		if err != nil {
			t.Fatal(err)
		}
		if got := p["stats"].(map[string]any)["total_events"]; got != float64(20) {
			t.Fatalf("r-%d: %v events after the replay, want 20", i, got)
		}
	}
	var a struct {
		Size int `json:"size"`
	}
	n.mustJSON("GET", "/v1/audiences/buyers", nil, adminAuth, http.StatusOK, &a)
	if a.Size != 150 { // odd user ids buy
		t.Fatalf("buyers: %d after the replay, want 150", a.Size)
	}
	swapped := digest()

	// A dry run at the same position finds nothing different.
	out, code = aurumCLI(t, env, "replay", "--dry-run", "--no-progress", "--output", "json")
	if code != 0 {
		t.Fatalf("aurum replay --dry-run: exit %d:\n%s", code, out)
	}
	var st struct {
		Status string `json:"status"`
		Diff   struct {
			KeysChanged int `json:"keys_changed"`
		} `json:"diff"`
	}
	if err := json.Unmarshal([]byte(out[strings.Index(out, "{"):]), &st); err != nil || st.Status != "done" || st.Diff.KeysChanged != 0 {
		t.Fatalf("dry run: %v\n%s", err, out)
	}
	if got := digest(); got != swapped {
		t.Fatalf("a dry run changed the state:\n%s\n%s", got, swapped)
	}

	// Rebuilding one projection leaves the state as it was (same log).
	if out, code := aurumCLI(t, env, "replay", "--projections", "audiences", "--no-progress", "--output", "json"); code != 0 || !strings.Contains(out, `"status": "done"`) {
		t.Fatalf("replay --projections audiences: exit %d: %s", code, out)
	}
	if got := digest(); got != swapped {
		t.Fatalf("replay of the audiences changed the state:\n%s\n%s", got, swapped)
	}
	if out, code := aurumCLI(t, env, "replay", "--projections", "features"); code == 0 || !strings.Contains(out, "projection") {
		t.Fatalf("replay of an unknown projection: exit %d: %s", code, out)
	}

	// A replay from a snapshot ends in the same state.
	if out, code := aurumCLI(t, env, "snapshot", "create"); code != 0 {
		t.Fatalf("snapshot create: %s", out)
	}
	if out, code := aurumCLI(t, env, "replay", "--from", "snapshot", "--no-progress"); code != 0 {
		t.Fatalf("replay --from snapshot: exit %d: %s", code, out)
	}
	if got := digest(); got != swapped {
		t.Fatalf("replay from a snapshot differs:\n%s\n%s", got, swapped)
	}

	// Offline digest of the stopped node equals the online one, and a clean
	// rebuild from the log (state removed) gives it again.
	n.stop()
	offline := digestOf(t, dataDir)
	if offline != strings.SplitN(swapped, "\n", 2)[0] {
		t.Fatalf("offline digest %q, online %q", offline, swapped)
	}

	// An offline replay of the stopped node, within a memory limit, derives
	// that digest again from its log.
	out, code = aurumCLI(t, nil, "replay", "--data-dir", dataDir, "--memory-limit", "256MiB", "--output", "json")
	var off offlineReplay
	if code != 0 || json.Unmarshal([]byte(out), &off) != nil {
		t.Fatalf("aurum replay --data-dir: exit %d:\n%s", code, out)
	}
	if got := fmt.Sprintf("%s applied=%d", off.Digest, off.Applied); got != offline || off.MemoryLimit != "256MiB" || off.MemoryLimitFrom != "--memory-limit" {
		t.Fatalf("offline replay: %+v, want digest %q within 256MiB", off, offline)
	}
}

// TestReplayFlags: --memory-limit is read as serve reads it and belongs to
// the offline replay; the online flags do not go with --data-dir; a
// directory without Aurum state is refused before anything is written.
func TestReplayFlags(t *testing.T) {
	empty := t.TempDir()
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"replay", "--memory-limit", "1GiB"}, "--memory-limit: only with --data-dir"},
		{[]string{"replay", "--data-dir", empty, "--dry-run"}, "--dry-run: not with --data-dir"},
		{[]string{"replay", "--data-dir", empty}, "--data-dir " + empty},
		{[]string{"replay", "--data-dir", empty, "--output", "yaml"}, "--output"},
		{[]string{"demo", "--memory-limit", "12MiB"}, "--memory-limit: at least 256MiB"},
		{[]string{"demo", "--memory-limit", "lots"}, "--memory-limit: \"lots\" is not a size"},
		{[]string{"demo", "--nodes", "3", "--memory-limit", "1"}, "--memory-limit: at least 256MiB"},
	} {
		_, _, err := runInProcess(t, nil, tc.args...)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("aurum %s: %v, want an error with %q", strings.Join(tc.args, " "), err, tc.want)
		}
	}
	if ents, _ := os.ReadDir(empty); len(ents) != 0 {
		t.Fatalf("replay wrote into the empty directory: %v", ents)
	}
}

// TestReplayStatusLine: the --no-progress status lines count log entries
// only, show no ETA before there is a rate (they began with "eta 0s"), and
// a dry run says "comparing" where a replay swaps (it swaps nothing).
func TestReplayStatusLine(t *testing.T) {
	for _, tt := range []struct {
		st   engine.RebuildStatus
		want string
	}{
		{engine.RebuildStatus{Status: "running", Applied: 0, Target: 500}, "replay running: 0/500 entries  0 entries/s  eta -"},
		{engine.RebuildStatus{Status: "running", Applied: 100, Target: 500, Rate: 200, ETA: 2}, "replay running: 100/500 entries  200 entries/s  eta 2s"},
		{engine.RebuildStatus{Status: "swapping", DryRun: true, Applied: 500, Target: 500, Rate: 250}, "replay (dry run) comparing: 500/500 entries  250 entries/s"},
		{engine.RebuildStatus{Status: "swapping", Applied: 500, Target: 500, Rate: 250}, "replay swapping: 500/500 entries  250 entries/s"},
		{engine.RebuildStatus{Status: "done", DryRun: true, Applied: 500, Target: 500, Rate: 250}, "replay (dry run) done: 500/500 entries  250 entries/s"},
	} {
		if got := replayLine(tt.st); got != tt.want {
			t.Errorf("%+v: %q, want %q", tt.st, got, tt.want)
		}
	}
}
