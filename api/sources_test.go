package api_test

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"
)

// TestSourceRotateAndDelete: a write-key rotation returns a new key that
// works at once while the old one keeps working for the grace period (and
// not at all with a grace of 0s); deleting a source stops its keys; both
// refuse unknown sources and bad graces, naming the field.
func TestSourceRotateAndDelete(t *testing.T) {
	s := newTestServer(t)
	track := func(key string) int {
		t.Helper()
		return s.do(req{path: "/v1/track", key: key, body: []byte(`{"userId":"u1","event":"E"}`)}).code
	}
	rotate := func(name, body string) (int, string, time.Time) {
		t.Helper()
		r := s.do(req{path: "/v1/sources/" + name + "/rotate-key", admin: true, body: []byte(body)})
		var out struct {
			WriteKey string    `json:"write_key"`
			Until    time.Time `json:"old_key_valid_until"`
		}
		if r.code == http.StatusOK {
			if err := json.Unmarshal(r.body, &out); err != nil || !strings.HasPrefix(out.WriteKey, "wk_") {
				t.Fatalf("rotate: %s", r)
			}
		}
		return r.code, out.WriteKey, out.Until
	}
	old := s.webKey
	code, k2, until := rotate("web", `{"grace":"1h"}`)
	if code != http.StatusOK || until.Before(time.Now().Add(59*time.Minute)) {
		t.Fatalf("rotate with a grace of 1h: %d, until %v", code, until)
	}
	if c1, c2 := track(old), track(k2); c1 != http.StatusOK || c2 != http.StatusOK {
		t.Fatalf("within the grace period: old key %d, new key %d; want both 200", c1, c2)
	}
	r := s.do(req{method: http.MethodGet, path: "/v1/sources", admin: true})
	if !strings.Contains(string(r.body), `"old_key_valid_until"`) {
		t.Errorf("sources do not show the old key's end: %s", r)
	}
	code, k3, _ := rotate("web", `{"grace":"0s"}`)
	if code != http.StatusOK {
		t.Fatalf("rotate with no grace: %d", code)
	}
	if c2, c3 := track(k2), track(k3); c2 != http.StatusUnauthorized || c3 != http.StatusOK {
		t.Fatalf("no grace: the previous key %d (want 401), the new one %d", c2, c3)
	}
	if c := track(old); c != http.StatusUnauthorized {
		t.Fatalf("a key two rotations old: %d, want 401", c)
	}
	for body, field := range map[string]string{`{"grace":"forever"}`: "grace", `{"grace":"-1h"}`: "grace", `{"grace":"1000h"}`: "grace"} {
		r := s.do(req{path: "/v1/sources/web/rotate-key", admin: true, body: []byte(body)})
		if _, f := r.errorBody(t); r.code != http.StatusBadRequest || f != field {
			t.Errorf("rotate %s: %s, want 400 on %s", body, r, field)
		}
	}
	if code, _, _ := rotate("nope", `{}`); code != http.StatusNotFound {
		t.Errorf("rotate an unknown source: %d, want 404", code)
	}

	if r := s.do(req{method: http.MethodDelete, path: "/v1/sources/web", admin: true}); r.code != http.StatusNoContent {
		t.Fatalf("delete: %s", r)
	}
	if c := track(k3); c != http.StatusUnauthorized {
		t.Errorf("the key of a deleted source: %d, want 401", c)
	}
	if r := s.do(req{method: http.MethodGet, path: "/v1/sources", admin: true}); strings.Contains(string(r.body), `"web"`) {
		t.Errorf("a deleted source is listed: %s", r)
	}
	if r := s.do(req{method: http.MethodDelete, path: "/v1/sources/web", admin: true}); r.code != http.StatusNotFound {
		t.Errorf("delete twice: %s", r)
	}
	if r := s.do(req{path: "/v1/sources", admin: true, body: []byte(`{"name":"web"}`)}); r.code != http.StatusCreated {
		t.Errorf("re-create a deleted source: %s", r)
	}
}
