package api_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/aurumcdp/aurum/internal/check"
)

// TestProfileExport: the export holds the whole GCR view (the same object
// GET /v1/profiles returns, so fields other projections add, e.g. consent,
// come along), every event decrypted and oldest first (more than one
// internal page), and the audience history with the entry and the exit.
// Unknown and erased people are 404, malformed references 400.
func TestProfileExport(t *testing.T) {
	s := newTestServer(t)
	s.do(req{method: http.MethodPost, path: "/v1/audiences", admin: true,
		body: jsonBody(t, map[string]string{"name": "fresh", "rule": `count("Viewed") >= 1 and count("Refunded") == 0`})})
	t0 := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
	var batch []map[string]any
	batch = append(batch, map[string]any{"type": "identify", "userId": "u-x", "messageId": "id-0",
		"timestamp": t0.Format(time.RFC3339), "traits": map[string]any{"email": "X@Example.com", "name": "Xavia"}})
	for i := 1; i <= 299; i++ {
		batch = append(batch, map[string]any{"type": "track", "userId": "u-x", "messageId": fmt.Sprintf("v-%d", i), "event": "Viewed",
			"timestamp": t0.Add(time.Duration(i) * time.Minute).Format(time.RFC3339)})
	}
	if r := s.do(req{method: http.MethodPost, path: "/v1/batch", key: s.webKey, body: jsonBody(t, map[string]any{"batch": batch})}); r.code != http.StatusOK {
		t.Fatal(r)
	}
	s.do(req{method: http.MethodPost, path: "/v1/track", key: s.webKey, body: jsonBody(t, map[string]any{"userId": "u-x",
		"messageId": "r-1", "event": "Refunded", "timestamp": t0.Add(400 * time.Minute).Format(time.RFC3339)})})
	check.For(t, 15*time.Second, 10*time.Millisecond, func() error {
		if _, p := s.profile("user_id:u-x"); totalEvents(p) != 301 {
			return fmt.Errorf("%v events", totalEvents(p))
		}
		return nil
	})
	_, view := s.profile("email:x@example.com")

	r := s.do(req{method: http.MethodGet, path: "/v1/profiles/email:X@EXAMPLE.COM/export", admin: true})
	if r.code != http.StatusOK || !strings.HasPrefix(r.header.Get("Content-Type"), "application/json") {
		t.Fatal(r)
	}
	var exp struct {
		Profile map[string]any   `json:"profile"`
		History []map[string]any `json:"audience_history"`
		Events  []map[string]any `json:"events"`
	}
	if err := json.Unmarshal(r.body, &exp); err != nil {
		t.Fatalf("export is not JSON: %v", err)
	}
	if !reflect.DeepEqual(exp.Profile, view) {
		t.Errorf("export profile differs from the GCR view:\n%v\n%v", exp.Profile, view)
	}
	if len(exp.Events) != 301 {
		t.Fatalf("export has %d events, want 301", len(exp.Events))
	}
	if tr, _ := exp.Events[0]["traits"].(map[string]any); tr["name"] != "Xavia" || tr["email"] != "X@Example.com" {
		t.Errorf("first event not decrypted or not the oldest: %v", exp.Events[0])
	}
	for i := 1; i < len(exp.Events); i++ {
		if exp.Events[i]["timestamp"].(string) < exp.Events[i-1]["timestamp"].(string) {
			t.Fatalf("events not oldest first at %d: %v then %v", i, exp.Events[i-1]["timestamp"], exp.Events[i]["timestamp"])
		}
	}
	if exp.Events[300]["event"] != "Refunded" {
		t.Errorf("last event %v, want Refunded", exp.Events[300])
	}
	if len(exp.History) != 2 || exp.History[0]["event"] != "entered" || exp.History[1]["event"] != "exited" ||
		exp.History[0]["audience"] != "fresh" {
		t.Errorf("audience history %v: want entered then exited fresh", exp.History)
	}

	for ref, want := range map[string]int{"email:nobody@example.com": 404, "nocolon": 400, "profile_id:bad": 400} {
		if r := s.do(req{method: http.MethodGet, path: "/v1/profiles/" + ref + "/export", admin: true}); r.code != want {
			t.Errorf("export %s: %s, want %d", ref, r, want)
		}
	}
	if r := s.do(req{method: http.MethodGet, path: "/v1/profiles/user_id:u-x/export"}); r.code != http.StatusUnauthorized {
		t.Errorf("export without a token: %s", r)
	}

	// Erased: 404, and the erasure's status is readable.
	r = s.do(req{method: http.MethodPost, path: "/v1/privacy/erasures", admin: true, body: jsonBody(t, map[string]string{"identifier": "user_id:u-x"})})
	var info struct {
		ID     string `json:"id"`
		Status string `json:"status"`
	}
	if r.code != http.StatusAccepted || json.Unmarshal(r.body, &info) != nil || info.ID == "" {
		t.Fatal(r)
	}
	if r := s.do(req{method: http.MethodGet, path: "/v1/profiles/email:x@example.com/export", admin: true}); r.code != http.StatusNotFound {
		t.Errorf("export of an erased person: %s", r)
	}
	check.For(t, 30*time.Second, 10*time.Millisecond, func() error {
		r := s.do(req{method: http.MethodGet, path: "/v1/privacy/erasures/" + info.ID, admin: true})
		if r.code != http.StatusOK || json.Unmarshal(r.body, &info) != nil || info.Status != "completed" {
			return fmt.Errorf("%s", r)
		}
		return nil
	})
	for id, want := range map[string]int{"not-a-ulid": 400, "01ARZ3NDEKTSV4RRFFQ69G5FAV": 404} {
		if r := s.do(req{method: http.MethodGet, path: "/v1/privacy/erasures/" + id, admin: true}); r.code != want {
			t.Errorf("GET erasure %s: %s, want %d", id, r, want)
		}
	}
}
