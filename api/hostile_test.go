package api_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
)

// bodyRoutes returns every POST and PUT route of the server with its
// wildcards filled in, and whether it takes a write key (tracking) or the
// admin token.
func (s *testServer) bodyRoutes() []req {
	s.t.Helper()
	var out []req
	for _, rt := range s.srv.Routes() {
		method, path, _ := strings.Cut(rt.Pattern, " ")
		if method != http.MethodPost && method != http.MethodPut {
			continue
		}
		path = strings.NewReplacer("{source}", "web", "{name}", "hostile", "{ref}", "user_id:h", "{id}", "01JABCDEFGHJKMNPQRSTVWXYZ0").Replace(path)
		if strings.Contains(path, "{") {
			s.t.Fatalf("route %s: unknown wildcard", rt.Pattern)
		}
		r := req{method: method, path: path}
		if strings.HasPrefix(path, "/v1/import/") || !isTracking(path) {
			r.admin = true
		} else {
			r.key = s.webKey
		}
		out = append(out, r)
	}
	if len(out) < 10 {
		s.t.Fatalf("only %d POST/PUT routes: %v", len(out), s.srv.Routes())
	}
	return out
}

func isTracking(path string) bool {
	switch path {
	case "/v1/track", "/v1/identify", "/v1/page", "/v1/screen", "/v1/group", "/v1/alias", "/v1/batch":
		return true
	}
	return false
}

// checkHealthyAfter: the engine is healthy and a normal event still ingests
// and shows on its profile.
func (s *testServer) checkHealthyAfter(marker string) {
	s.t.Helper()
	if r := s.do(req{method: http.MethodGet, path: "/healthz"}); r.code != http.StatusOK {
		s.t.Fatalf("healthz after hostile input: %s", r)
	}
	if err := s.e.Healthy(); err != nil {
		s.t.Fatalf("engine: %v", err)
	}
	body := fmt.Sprintf(`{"userId":%q,"event":"After Hostile"}`, marker)
	if r := s.do(req{path: "/v1/track", key: s.webKey, body: []byte(body)}); r.code != http.StatusOK {
		s.t.Fatalf("normal event after hostile input: %s", r)
	}
	p := s.waitProfile("user_id:" + marker)
	if totalEvents(p) != 1 {
		s.t.Fatalf("profile of %s: %v", marker, p)
	}
}

// TestOverLimitBodies: a 2 MB body to every POST/PUT route gets 413, with
// and without a Content-Length, and nothing else.
func TestOverLimitBodies(t *testing.T) {
	s := newTestServer(t)
	big := bytes.Repeat([]byte(" "), 2<<20)
	big[0] = '{'
	for _, r := range s.bodyRoutes() {
		for _, chunked := range []bool{false, true} {
			r := r
			r.body = big
			if chunked {
				r.header = map[string]string{"Transfer-Encoding": "chunked"}
			}
			res := s.doStream(r, chunked)
			if res.code != http.StatusRequestEntityTooLarge {
				t.Errorf("%s %s (chunked %v): %s, want 413", r.method, r.path, chunked, res)
				continue
			}
			res.errorBody(t)
		}
	}
	s.checkHealthyAfter("after-2mb")
}

// doStream is do with the body sent as a stream of unknown length when
// chunked.
func (s *testServer) doStream(r req, chunked bool) resp {
	s.t.Helper()
	if !chunked {
		return s.do(r)
	}
	hr, err := http.NewRequest(r.method, s.URL+r.path, struct{ *bytes.Reader }{bytes.NewReader(r.body)})
	if err != nil {
		s.t.Fatal(err)
	}
	hr.ContentLength = -1
	hr.Header.Set("Content-Type", "application/json")
	if r.key != "" {
		hr.SetBasicAuth(r.key, "")
	}
	if r.admin {
		hr.Header.Set("Authorization", "Bearer "+adminToken)
	}
	res, err := http.DefaultClient.Do(hr)
	if err != nil {
		s.t.Fatalf("%s %s: %v", r.method, r.path, err)
	}
	defer res.Body.Close()
	var buf bytes.Buffer
	_, _ = buf.ReadFrom(res.Body)
	return resp{code: res.StatusCode, header: res.Header, body: buf.Bytes()}
}

// TestHostileBodies sends each hostile body to every POST/PUT route: each
// gets a 4xx with a JSON error (naming the field where there is one), and
// the engine stays healthy.
func TestHostileBodies(t *testing.T) {
	s := newTestServer(t)
	deep := strings.Repeat("[", 5000) + strings.Repeat("]", 5000)
	bomb := gzipped(t, bytes.Repeat([]byte(" "), 20<<20)) // 20 MB of spaces, ~20 KB compressed
	hostile := []struct {
		name string
		body []byte
		gzip bool
		// trackingOK: the tracking API accepts the body by design (the
		// event package keeps a number beyond float64 as its text, as a
		// Segment-compatible API must accept numeric ids).
		trackingOK bool
	}{
		{"deep nesting", []byte(deep), false, false},
		{"deep nesting in a field", []byte(`{"name":` + deep + `,"rule":` + deep + `,"event":` + deep + `}`), false, false},
		{"deep object", []byte(strings.Repeat(`{"a":`, 3000) + "1" + strings.Repeat("}", 3000)), false, false},
		{"huge numbers", []byte(`{"name":1e999,"rule":1e999,"sample":1e999,"event":1e999,"userId":1e999,"batch":1e999,"from":1e999}`), false, true},
		{"huge number in properties", []byte(`{"userId":"u","event":"E","name":"n","rule":"r","properties":{"revenue":1e400},"batch":[{"userId":"u","event":"E","properties":{"revenue":1e400}}]}`), false, true},
		{"invalid UTF-8", []byte("{\"name\":\"\xff\xfe\",\"event\":\"\xc3\x28\",\"userId\":\"\xa0\xa1\"}"), false, false},
		{"NUL bytes", []byte("{\"name\":\"a\x00b\",\"event\":\"E\x00\",\"userId\":\"\x00\"}"), false, false},
		{"NUL only", bytes.Repeat([]byte{0}, 1000), false, false},
		{"wrong types", []byte(`{"name":42,"rule":["x"],"audiences":"a","sample":"many","event":{"x":1},"userId":[1],"batch":"b","from":7,"dry_run":"yes"}`), false, false},
		{"gzip bomb", bomb, true, false},
		{"not gzip", []byte("not gzip at all"), true, false},
		{"truncated", []byte(`{"name":"x","rule":"count(`), false, false},
	}
	for _, h := range hostile {
		for _, r := range s.bodyRoutes() {
			r.body = h.body
			if h.gzip {
				r.header = map[string]string{"Content-Encoding": "gzip"}
			}
			res := s.do(r)
			if h.trackingOK && r.key != "" && res.code == http.StatusOK {
				continue
			}
			if res.code < 400 || res.code >= 500 {
				t.Errorf("%s → %s %s: %s, want a 4xx", h.name, r.method, r.path, res)
				continue
			}
			checkErrorShape(t, res)
		}
	}
	// Wrong types are named.
	for _, tc := range []struct {
		path, body, field string
		method            string
	}{
		{"/v1/sources", `{"name":42}`, "name", "POST"},
		{"/v1/audiences", `{"name":"a","rule":42}`, "rule", "POST"},
		{"/v1/audiences/a", `{"rule":["x"]}`, "rule", "PUT"},
		{"/v1/audiences/preview", `{"rule":"count(\"E\") >= 1","sample":"many"}`, "sample", "POST"},
		{"/v1/audiences/preview", `{"rule":"count(\"E\") >= 1","sample":1e999}`, "sample", "POST"},
		{"/v1/destinations", `{"name":"d","audiences":"a"}`, "audiences", "POST"},
		{"/v1/replay", `{"dry_run":"yes"}`, "dry_run", "POST"},
		{"/v1/snapshots", `{"x":1}`, "x", "POST"},
	} {
		res := s.do(req{method: tc.method, path: tc.path, body: []byte(tc.body), admin: true})
		if res.code != http.StatusBadRequest {
			t.Errorf("%s %s: %s, want 400", tc.path, tc.body, res)
			continue
		}
		if _, field := res.errorBody(t); field != tc.field {
			t.Errorf("%s %s: field %q, want %q (%s)", tc.path, tc.body, field, tc.field, res)
		}
	}
	s.checkHealthyAfter("after-hostile")
}

// checkErrorShape accepts the JSON error body, or a batch answer whose
// rejections each name a reason.
func checkErrorShape(t *testing.T, res resp) {
	t.Helper()
	var batch struct {
		Success  *bool `json:"success"`
		Rejected []struct {
			Field  string `json:"field"`
			Reason string `json:"reason"`
		} `json:"rejected"`
	}
	if json.Unmarshal(res.body, &batch) == nil && batch.Success != nil && !*batch.Success && len(batch.Rejected) > 0 {
		for _, rj := range batch.Rejected {
			if rj.Reason == "" {
				t.Errorf("rejection without a reason: %s", res)
			}
		}
		return
	}
	res.errorBody(t)
}
