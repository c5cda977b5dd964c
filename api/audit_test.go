package api_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/aurumcdp/aurum/engine/audit"
	"github.com/aurumcdp/aurum/internal/check"
)

// auditSince returns the audit entries from cursor on (engine side, so that
// reading does not itself add entries).
func (s *testServer) auditSince(cursor uint64) ([]audit.AuditEntry, uint64) {
	s.t.Helper()
	entries, next, err := s.e.Recorder().AuditLog(context.Background(), audit.AuditQuery{Cursor: cursor, Limit: 1000})
	if err != nil {
		s.t.Fatalf("AuditLog: %v", err)
	}
	return entries, next
}

// TestAuditEachAction: every kind of management action leaves exactly one
// audit entry with who, what, on which object, and the result.
func TestAuditEachAction(t *testing.T) {
	s := newTestServer(t)
	_, cursor := s.auditSince(1)
	// The tracking API is not audited.
	if r := s.do(req{path: "/v1/identify", key: s.webKey, body: []byte(`{"userId":"u1","traits":{"email":"Jane@X.com"}}`)}); r.code != http.StatusOK {
		t.Fatalf("identify: %s", r)
	}
	check.For(t, 15*time.Second, 10*time.Millisecond, func() error { _, err := s.e.Reader().Profile("email:jane@x.com"); return err })
	if got, _ := s.auditSince(cursor); len(got) != 0 {
		t.Fatalf("the tracking API left audit entries: %+v", got)
	}
	type want struct {
		actor, role, action string
		object              map[string]string
		status              int
		result              string
	}
	ok := func(action string, status int, object map[string]string) want {
		return want{"bootstrap", "admin", action, object, status, audit.AuditOK}
	}
	refHash := s.e.Recorder().RefHash("email:jane@x.com")
	for _, tc := range []struct {
		name string
		req  req
		want want
	}{
		{"create source", req{path: "/v1/sources", admin: true, body: []byte(`{"name":"crm"}`)},
			ok("POST /v1/sources", 201, map[string]string{"name": "crm"})},
		{"create source again", req{path: "/v1/sources", admin: true, body: []byte(`{"name":"crm"}`)},
			want{"bootstrap", "admin", "POST /v1/sources", map[string]string{"name": "crm"}, 409, audit.AuditError}},
		{"create audience", req{path: "/v1/audiences", admin: true, body: []byte(`{"name":"buyers","rule":"count(\"Order Completed\") >= 1"}`)},
			ok("POST /v1/audiences", 201, map[string]string{"name": "buyers"})},
		{"put audience", req{method: "PUT", path: "/v1/audiences/buyers", admin: true, body: []byte(`{"rule":"count(\"Order Completed\") >= 2"}`)},
			ok("PUT /v1/audiences/{name}", 200, map[string]string{"name": "buyers"})},
		{"create destination", req{path: "/v1/destinations", admin: true,
			body: []byte(`{"name":"hook","url":"https://example.com/h","secret":"0123456789abcdef0123456789abcdef","audiences":["buyers"],"channel":"email"}`)},
			ok("POST /v1/destinations", 201, map[string]string{"name": "hook"})},
		{"delete destination", req{method: "DELETE", path: "/v1/destinations/hook", admin: true},
			ok("DELETE /v1/destinations/{name}", 204, map[string]string{"name": "hook"})},
		{"delete audience", req{method: "DELETE", path: "/v1/audiences/buyers", admin: true},
			ok("DELETE /v1/audiences/{name}", 204, map[string]string{"name": "buyers"})},
		{"delete missing audience", req{method: "DELETE", path: "/v1/audiences/nope", admin: true},
			want{"bootstrap", "admin", "DELETE /v1/audiences/{name}", map[string]string{"name": "nope"}, 404, audit.AuditError}},
		{"snapshot", req{path: "/v1/snapshots", admin: true},
			ok("POST /v1/snapshots", 201, nil)},
		{"profile read", req{method: "GET", path: "/v1/profiles/email:jane@x.com", admin: true},
			ok("GET /v1/profiles/{ref}", 200, map[string]string{"ref": refHash})},
		{"profile events", req{method: "GET", path: "/v1/profiles/EMAIL:Jane@X.com/events", admin: true},
			ok("GET /v1/profiles/{ref}/events", 200, map[string]string{"ref": refHash})},
		{"import", req{path: "/v1/import/crm", admin: true, body: []byte(`{"batch":[{"type":"track","event":"E","userId":"u2"}]}`)},
			ok("POST /v1/import/{source}", 200, map[string]string{"source": "crm"})},
		{"bad token", req{method: "DELETE", path: "/v1/audiences/vip", header: map[string]string{"Authorization": "Bearer not-the-token-at-all"}},
			want{"", "", "DELETE /v1/audiences/{name}", map[string]string{"name": "vip"}, 401, audit.AuditUnauthenticated}},
		{"no token", req{method: "GET", path: "/v1/profiles/email:jane@x.com"},
			want{"", "", "GET /v1/profiles/{ref}", map[string]string{"ref": refHash}, 401, audit.AuditUnauthenticated}},
		{"replay", req{path: "/v1/replay", admin: true, body: []byte(`{}`)},
			ok("POST /v1/replay", 202, nil)},
	} {
		r := s.do(tc.req)
		if r.code != tc.want.status {
			t.Fatalf("%s: %s, want status %d", tc.name, r, tc.want.status)
		}
		got, next := s.auditSince(cursor)
		if len(got) != 1 {
			t.Fatalf("%s: %d audit entries, want 1: %+v", tc.name, len(got), got)
		}
		a := got[0]
		g := want{a.Actor, a.Role, a.Action, a.Object, a.Status, a.Result}
		if !reflect.DeepEqual(g, tc.want) {
			t.Errorf("%s:\n got %+v\nwant %+v", tc.name, g, tc.want)
		}
		if a.Remote != "127.0.0.1" || a.ID == "" || time.Since(a.Time) > time.Minute {
			t.Errorf("%s: remote %q id %q time %v", tc.name, a.Remote, a.ID, a.Time)
		}
		cursor = next
	}
	// Wait for the replay to finish before the server closes.
	check.For(t, 30*time.Second, 10*time.Millisecond, func() error {
		if st := s.e.RebuildStatus(); st.Status == "running" || st.Status == "swapping" {
			return fmt.Errorf("replay %s", st.Status)
		}
		return nil
	})

	// No entry holds the plaintext identifier, as the API shows them.
	r := s.do(req{method: "GET", path: "/v1/audit?limit=1000", admin: true})
	if r.code != http.StatusOK {
		t.Fatalf("GET /v1/audit: %s", r)
	}
	if low := strings.ToLower(string(r.body)); strings.Contains(low, "jane") || strings.Contains(low, "x.com") {
		t.Errorf("audit log holds the plaintext identifier: %s", r.body)
	}
}

// TestAuditAPI: GET /v1/audit pages by cursor and time, refuses bad
// parameters naming them, is admin only, and nothing edits or deletes
// entries.
func TestAuditAPI(t *testing.T) {
	s := newTestServer(t)
	start := time.Now().UTC()
	for _, name := range []string{"a", "b", "c"} {
		if r := s.do(req{path: "/v1/sources", admin: true, body: []byte(`{"name":"` + name + `"}`)}); r.code != http.StatusCreated {
			t.Fatalf("create source %s: %s", name, r)
		}
	}
	type page struct {
		Entries []audit.AuditEntry `json:"entries"`
		Next    string             `json:"next"`
	}
	get := func(query string) page {
		t.Helper()
		r := s.do(req{method: "GET", path: "/v1/audit" + query, admin: true})
		if r.code != http.StatusOK {
			t.Fatalf("GET /v1/audit%s: %s", query, r)
		}
		var p page
		if err := json.Unmarshal(r.body, &p); err != nil {
			t.Fatalf("decode: %v: %s", err, r)
		}
		return p
	}
	p := get("?limit=2")
	if len(p.Entries) != 2 || p.Entries[0].Seq != 1 || p.Entries[1].Seq != 2 || p.Next != "3" {
		t.Fatalf("first page: %+v", p)
	}
	for i, name := range []string{"a", "b"} {
		if e := p.Entries[i]; e.Action != "POST /v1/sources" || e.Status != 201 || e.Actor != "bootstrap" {
			t.Errorf("entry %d (%s): %+v", i, name, e)
		}
	}
	// The next page holds source c and the first GET /v1/audit.
	p = get("?since=" + p.Next)
	if len(p.Entries) != 2 || p.Entries[0].Seq != 3 || p.Entries[1].Action != "GET /v1/audit" || p.Next != "5" {
		t.Fatalf("second page: %+v", p)
	}
	p = get("?since=" + start.Add(-time.Minute).Format(time.RFC3339Nano))
	if len(p.Entries) < 5 {
		t.Fatalf("since a minute before: %+v", p)
	}
	p = get("?since=" + time.Now().Add(time.Hour).UTC().Format(time.RFC3339))
	if len(p.Entries) != 0 {
		t.Fatalf("since the future: %+v", p)
	}
	for _, q := range []struct{ query, field string }{
		{"?since=yesterday", "since"},
		{"?since=0", "since"},
		{"?since=-1", "since"},
		{"?limit=0", "limit"},
		{"?limit=1001", "limit"},
		{"?limit=x", "limit"},
	} {
		r := s.do(req{method: "GET", path: "/v1/audit" + q.query, admin: true})
		if r.code != http.StatusBadRequest {
			t.Errorf("%s: %s, want 400", q.query, r)
			continue
		}
		if _, field := r.errorBody(t); field != q.field {
			t.Errorf("%s: field %q, want %q", q.query, field, q.field)
		}
	}
	if r := s.do(req{method: "GET", path: "/v1/audit"}); r.code != http.StatusUnauthorized {
		t.Errorf("without a token: %s", r)
	}
	for _, m := range []string{"DELETE", "PUT", "POST", "PATCH"} {
		if r := s.do(req{method: m, path: "/v1/audit", admin: true}); r.code != http.StatusMethodNotAllowed {
			t.Errorf("%s /v1/audit: %s, want 405", m, r)
		}
	}
	for _, path := range []string{"/v1/audit/1", "/v1/audit/entries"} {
		if r := s.do(req{method: "DELETE", path: path, admin: true}); r.code != http.StatusNotFound {
			t.Errorf("DELETE %s: %s, want 404", path, r)
		}
	}
	// Nothing was removed.
	if all, _ := s.auditSince(1); all[0].Seq != 1 || all[0].Action != "POST /v1/sources" {
		t.Errorf("first entry: %+v", all[0])
	}
}
