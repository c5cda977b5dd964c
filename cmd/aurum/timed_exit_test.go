package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"testing"
	"time"
)

// TestTimedExitRealProcess: against a real `aurum serve`, a subscriber on
// aurum.audience.> sees a profile enter an audience and then, with no new
// event sent, leave it when its qualifying purchase ages out of the window.
func TestTimedExitRealProcess(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a real aurum process")
	}
	n := startNode(t, t.TempDir(), "--tick", "100ms")
	key := n.createSource("web")
	n.mustJSON("POST", "/v1/audiences", map[string]string{"name": "recent-buyers", "rule": `count("Order Completed", "3s") >= 1`},
		adminAuth, http.StatusCreated, nil)

	msgs := n.followAudiences(t, 16)

	sent := time.Now()
	n.mustJSON("POST", "/v1/track", map[string]any{"userId": "u-9", "event": "Order Completed", "messageId": "o-9",
		"timestamp": sent.UTC().Format(time.RFC3339Nano), "properties": map[string]any{"revenue": 12}}, writeKeyAuth(key), http.StatusOK, nil)

	next := func() (map[string]any, string, time.Duration) {
		t.Helper()
		select {
		case m := <-msgs:
			var v map[string]any
			if err := json.Unmarshal(m.Data, &v); err != nil {
				t.Fatal(err)
			}
			return v, m.Subject, time.Since(sent)
		case <-time.After(15 * time.Second):
			t.Fatal("no transition within 15 s")
		}
		return nil, "", 0
	}
	in, subj, _ := next()
	if subj != "aurum.audience.recent-buyers.entered" || in["type"] != "audience.entered" {
		t.Fatalf("first message %s: %v", subj, in)
	}
	out, subj, after := next()
	if subj != "aurum.audience.recent-buyers.exited" || out["reason"] != "time" || out["profile_id"] != in["profile_id"] {
		t.Fatalf("second message %s: %v", subj, out)
	}
	if after < 3*time.Second-10*time.Millisecond || after > 10*time.Second { // event times are whole milliseconds
		t.Fatalf("exit after %v; want just after the 3 s window ran out", after)
	}
	ids, _ := out["identifiers"].(map[string]any)
	if fmt.Sprint(ids["user_id"]) != "[u-9]" {
		t.Fatalf("exit carries identifiers %v", out["identifiers"])
	}
	// No third message (a repeated exit, say), without waiting a guessed
	// time: a new order re-enters the profile, and the profile's outputs
	// are published in log order, so whatever the first two entries or the
	// ticks before the order derived arrives before its entry.
	n.mustJSON("POST", "/v1/track", map[string]any{"userId": "u-9", "event": "Order Completed", "messageId": "o-10",
		"timestamp": time.Now().UTC().Format(time.RFC3339Nano), "properties": map[string]any{"revenue": 5}}, writeKeyAuth(key), http.StatusOK, nil)
	again, subj, _ := next()
	if subj != "aurum.audience.recent-buyers.entered" || again["profile_id"] != in["profile_id"] {
		t.Fatalf("third message %s: %v, want the re-entry after the new order", subj, again)
	}
}
