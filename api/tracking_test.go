package api_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/aurumcdp/aurum/api"
)

// validBodies holds one valid body per tracking endpoint.
var validBodies = map[string]string{
	"/v1/track":    `{"userId":"auth-u","event":"Signed In"}`,
	"/v1/identify": `{"userId":"auth-u","traits":{"name":"A"}}`,
	"/v1/page":     `{"anonymousId":"auth-a","name":"Home"}`,
	"/v1/screen":   `{"anonymousId":"auth-a","name":"Main"}`,
	"/v1/group":    `{"userId":"auth-u","groupId":"g-1"}`,
	"/v1/alias":    `{"userId":"auth-u","previousId":"auth-a"}`,
	"/v1/batch":    `{"batch":[{"type":"track","userId":"auth-u","event":"Signed In"}]}`,
}

var trackingPaths = []string{"/v1/track", "/v1/identify", "/v1/page", "/v1/screen", "/v1/group", "/v1/alias", "/v1/batch"}

// withWriteKey adds "writeKey" to a JSON object body.
func withWriteKey(t *testing.T, body, key string) []byte {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal([]byte(body), &m); err != nil {
		t.Fatal(err)
	}
	m["writeKey"] = key
	return jsonBody(t, m)
}

// TestTrackingAuth: every tracking endpoint answers 401 without a write key
// or with an unknown one, and accepts the key as the Basic user name or as
// the body's writeKey (analytics.js).
func TestTrackingAuth(t *testing.T) {
	s := newTestServer(t)
	for _, path := range trackingPaths {
		body := validBodies[path]
		cases := []struct {
			name   string
			r      req
			want   int
			reason string // substring of the error message
		}{
			{"no key", req{path: path, body: []byte(body)}, http.StatusUnauthorized, "missing write key"},
			{"unknown key", req{path: path, body: []byte(body), key: "wk_nope"}, http.StatusUnauthorized, "unknown write key"},
			{"unknown key in body", req{path: path, body: withWriteKey(t, body, "wk_nope")}, http.StatusUnauthorized, "unknown write key"},
			{"admin token is not a write key", req{path: path, body: []byte(body), admin: true}, http.StatusUnauthorized, "missing write key"},
			{"empty basic user", req{path: path, body: []byte(body), header: map[string]string{"Authorization": basic("")}}, http.StatusUnauthorized, "missing write key"},
			{"basic auth", req{path: path, body: []byte(body), key: s.webKey}, http.StatusOK, ""},
			{"writeKey in body", req{path: path, body: withWriteKey(t, body, s.webKey)}, http.StatusOK, ""},
			{"basic auth wins over body", req{path: path, body: withWriteKey(t, body, "wk_nope"), key: s.webKey}, http.StatusOK, ""},
		}
		for _, c := range cases {
			t.Run(path+"/"+c.name, func(t *testing.T) {
				r := s.do(c.r)
				if r.code != c.want {
					t.Fatalf("got %s, want %d", r, c.want)
				}
				if c.want == http.StatusOK {
					return
				}
				msg, field := r.errorBody(t)
				if field != "Authorization" || !strings.Contains(msg, c.reason) {
					t.Errorf("error %q field %q, want %q field Authorization", msg, field, c.reason)
				}
				if !strings.HasPrefix(r.header.Get("WWW-Authenticate"), "Basic") {
					t.Errorf("WWW-Authenticate = %q, want Basic", r.header.Get("WWW-Authenticate"))
				}
			})
		}
	}
	// The writeKey-in-body events arrived under source web.
	p := s.waitProfile("user_id:auth-u")
	if src := p["stats"].(map[string]any)["sources"].(map[string]any); src["web"] == nil {
		t.Errorf("sources = %v, want web", src)
	}
}

// TestTrackingNotJSON: a body that is not JSON (or not an object) gets a 400
// that says why, and is dead-lettered.
func TestTrackingNotJSON(t *testing.T) {
	s := newTestServer(t)
	cases := []struct {
		name, body string
		reason     string // substring of the error message
	}{
		{"garbage", `nojson-garbage`, "not valid JSON"},
		{"truncated", `{"userId": "x", "event": "nojson-trunc`, "not valid JSON"},
		{"empty", ``, "empty"},
		{"array", `["nojson-array"]`, "not a JSON object"},
		{"string", `"nojson-string"`, "not a JSON object"},
	}
	for _, path := range trackingPaths {
		for _, c := range cases {
			t.Run(path+"/"+c.name, func(t *testing.T) {
				r := s.do(req{path: path, body: []byte(c.body), key: s.webKey})
				if r.code != http.StatusBadRequest {
					t.Fatalf("got %s, want 400", r)
				}
				msg, _ := r.errorBody(t)
				if path == "/v1/batch" && c.name != "garbage" && c.name != "truncated" && c.name != "empty" {
					// A valid JSON value of the wrong shape.
					if !strings.Contains(msg, "batch") {
						t.Errorf("error %q does not name the batch shape", msg)
					}
					return
				}
				if !strings.Contains(msg, c.reason) {
					t.Errorf("error %q does not say %q", msg, c.reason)
				}
				if path != "/v1/batch" && c.body != "" {
					marker := strings.Trim(strings.Fields(c.body)[len(strings.Fields(c.body))-1], `"[]`)
					d, ok := s.findDeadLetter(marker)
					if !ok {
						t.Fatalf("no dead letter holds %q", marker)
					}
					if d.Source != "web" || d.Reason != msg {
						t.Errorf("dead letter source %q reason %q, want web and %q", d.Source, d.Reason, msg)
					}
				}
			})
		}
	}
}

// TestTrackingInvalidEvent: an invalid single event gets a 400 naming the
// field, and is kept on the dead-letter stream with the same reason.
func TestTrackingInvalidEvent(t *testing.T) {
	s := newTestServer(t)
	cases := []struct {
		name, path, body, field string
	}{
		{"track without event", "/v1/track", `{"userId":"u"}`, "event"},
		{"track with blank event", "/v1/track", `{"userId":"u","event":"  "}`, "event"},
		{"track event not a string", "/v1/track", `{"userId":"u","event":7}`, "event"},
		{"no identifier", "/v1/identify", `{"traits":{"name":"x"}}`, "userId"},
		{"only blocked identifiers", "/v1/track", `{"userId":"null","anonymousId":"undefined","event":"E"}`, "userId"},
		{"alias without previousId", "/v1/alias", `{"userId":"u"}`, "previousId"},
		{"alias without userId", "/v1/alias", `{"previousId":"p"}`, "userId"},
		{"group without groupId", "/v1/group", `{"userId":"u"}`, "groupId"},
		{"bad timestamp", "/v1/track", `{"userId":"u","event":"E","timestamp":"yesterday"}`, "timestamp"},
		{"bad sentAt", "/v1/page", `{"anonymousId":"a","sentAt":"2024-13-45T99:00:00Z"}`, "sentAt"},
		{"timestamp not a time", "/v1/screen", `{"anonymousId":"a","timestamp":{"t":1}}`, "timestamp"},
		{"properties not an object", "/v1/track", `{"userId":"u","event":"E","properties":[1,2]}`, "properties"},
		{"traits not an object", "/v1/identify", `{"userId":"u","traits":"rob"}`, "traits"},
		{"context not an object", "/v1/page", `{"anonymousId":"a","context":5}`, "context"},
		{"type contradicts endpoint", "/v1/track", `{"type":"identify","userId":"u","event":"E"}`, "type"},
		{"unknown type", "/v1/identify", `{"type":"purchase","userId":"u"}`, "type"},
		{"userId an object", "/v1/identify", `{"userId":{"id":1}}`, "userId"},
		{"messageId a number", "/v1/identify", `{"userId":"u","messageId":42}`, "messageId"},
		{"externalIds not an array", "/v1/track", `{"event":"E","context":{"externalIds":{"id":"x"}}}`, "context.externalIds"},
		{"externalId without type", "/v1/track", `{"event":"E","context":{"externalIds":[{"id":"x"}]}}`, "context.externalIds[0].type"},
		{"userId too long", "/v1/identify", `{"userId":"` + strings.Repeat("x", 300) + `"}`, "userId"},
	}
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			// A unique property marks the dead letter of this case.
			marker := fmt.Sprintf("case-%d", i)
			var m map[string]any
			if err := json.Unmarshal([]byte(c.body), &m); err != nil {
				t.Fatal(err)
			}
			m["integrations"] = map[string]any{"marker": marker}
			r := s.do(req{path: c.path, body: jsonBody(t, m), key: s.webKey})
			if r.code != http.StatusBadRequest {
				t.Fatalf("got %s, want 400", r)
			}
			msg, field := r.errorBody(t)
			if field != c.field {
				t.Errorf("field %q (%s), want %q", field, msg, c.field)
			}
			d, ok := s.findDeadLetter(marker)
			if !ok {
				t.Fatalf("event not dead-lettered")
			}
			if d.Source != "web" || d.Field != c.field || d.Reason != msg || d.Index != 0 {
				t.Errorf("dead letter %+v, want source web, field %q, reason %q, index 0", d, c.field, msg)
			}
		})
	}
}

// TestTrackingLimits: 32 KB per event, 500 KB per request, also after gzip
// decoding; corrupt gzip is a 400.
func TestTrackingLimits(t *testing.T) {
	s := newTestServer(t)
	// padded returns a JSON object of exactly n bytes.
	padded := func(prefix string, n int) []byte {
		b := []byte(prefix + `}`)
		if len(b) > n {
			t.Fatalf("prefix longer than %d", n)
		}
		return append([]byte(prefix), append(bytes.Repeat([]byte{' '}, n-len(b)), '}')...)
	}
	event := func(user string, n int) []byte { // a track event of n bytes
		return padded(`{"type":"track","userId":"`+user+`","event":"E"`, n)
	}
	batch := func(n int, items ...[]byte) []byte { // a batch body of n bytes
		return padded(`{"batch":[`+string(bytes.Join(items, []byte(",")))+`]`, n)
	}
	bigEvent := event("lim-big", api.MaxEventBytes+1)
	bomb := func(n int) []byte { // a gzip body inflating to n bytes
		return gzipped(t, padded(`{"batch":[{"type":"track","userId":"lim-bomb","event":"E"}]`, n))
	}
	gz := map[string]string{"Content-Encoding": "gzip"}
	cases := []struct {
		name   string
		path   string
		body   []byte
		header map[string]string
		want   int
		reason string
	}{
		{"event at 32 KB", "/v1/track", event("lim-at", api.MaxEventBytes), nil, 200, ""},
		{"event over 32 KB", "/v1/track", bigEvent, nil, 413, "32 KB"},
		{"request at 500 KB", "/v1/batch", batch(api.MaxRequestBytes, event("lim-batch-at", 100)), nil, 200, ""},
		{"request over 500 KB", "/v1/batch", batch(api.MaxRequestBytes+1, event("lim-batch-over", 100)), nil, 413, "500 KB"},
		{"many events over 500 KB", "/v1/batch", batch(api.MaxRequestBytes+100<<10,
			bytes.Split(bytes.Repeat(append(event("lim-many", 30<<10), '\n'), 17), []byte("\n"))[:17]...), nil, 413, "500 KB"},
		{"gzip event", "/v1/track", gzipped(t, event("lim-gzip", 200)), gz, 200, ""},
		{"gzip batch", "/v1/batch", gzipped(t, batch(1000, event("lim-gzip-batch", 200))), gz, 200, ""},
		{"gzip content-encoding case", "/v1/identify", gzipped(t, []byte(`{"userId":"lim-gzip-case"}`)),
			map[string]string{"Content-Encoding": "GZIP"}, 200, ""},
		{"gzip event over 32 KB", "/v1/track", gzipped(t, bigEvent), gz, 413, "32 KB"},
		{"gzip bomb", "/v1/batch", bomb(8 << 20), gz, 413, "500 KB"},
		{"gzip just over 500 KB", "/v1/batch", bomb(api.MaxRequestBytes + 1), gz, 413, "500 KB"},
		{"corrupt gzip", "/v1/batch", []byte("this is not gzip at all"), gz, 400, "gzip"},
		{"truncated gzip", "/v1/track", gzipped(t, event("lim-trunc", 2000))[:40], gz, 400, ""},
		{"gzip of garbage", "/v1/track", gzipped(t, []byte("garbage")), gz, 400, "not valid JSON"},
		{"unsupported encoding", "/v1/track", event("lim-br", 100), map[string]string{"Content-Encoding": "br"}, 400, "Content-Encoding"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := s.do(req{path: c.path, body: c.body, header: c.header, key: s.webKey})
			if r.code != c.want {
				t.Fatalf("got %.300s, want %d", r, c.want)
			}
			if c.want == 200 {
				return
			}
			if msg, _ := r.errorBody(t); !strings.Contains(msg, c.reason) {
				t.Errorf("error %q does not mention %q", msg, c.reason)
			}
		})
	}
	// Accepted ones are on their profiles; refused ones are not.
	for _, u := range []string{"lim-at", "lim-batch-at", "lim-gzip", "lim-gzip-batch", "lim-gzip-case"} {
		s.waitProfile("user_id:" + u)
	}
	for _, u := range []string{"lim-big", "lim-batch-over", "lim-many", "lim-bomb", "lim-br"} {
		if code, _ := s.profile("user_id:" + u); code != http.StatusNotFound {
			t.Errorf("user_id:%s: %d, want 404", u, code)
		}
	}
}

// batchAnswer is the JSON answer of /v1/batch.
type batchAnswer struct {
	Success  bool `json:"success"`
	Accepted int  `json:"accepted"`
	Rejected []struct {
		Index  int    `json:"index"`
		Field  string `json:"field"`
		Reason string `json:"reason"`
	} `json:"rejected"`
}

// TestBatchPartial: the valid events of a batch are accepted and each
// invalid one is listed and dead-lettered; a batch of only invalid events is
// a 400 with the list.
func TestBatchPartial(t *testing.T) {
	s := newTestServer(t)
	items := []string{
		`{"type":"track","userId":"bp-1","event":"Ok","messageId":"bp-m0"}`,
		`{"type":"track","userId":"bp-x","messageId":"bp-m1"}`,
		`{"type":"identify","userId":"bp-2","traits":{"name":"B"},"messageId":"bp-m2"}`,
		`{"type":"track","userId":"bp-x","event":"E","timestamp":"not a time","messageId":"bp-m3"}`,
		`"bp-m4"`,
		`{"userId":"bp-x","messageId":"bp-m5"}`,
		`{"type":"alias","userId":"bp-1","messageId":"bp-m6"}`,
		`{"type":"page","anonymousId":"bp-3","properties":"x","messageId":"bp-m7"}`,
		`{"type":"track","userId":"bp-x","event":"E","messageId":"bp-m8","properties":{"p":"` + strings.Repeat("x", api.MaxEventBytes) + `"}}`,
	}
	wantRejected := map[int]string{1: "event", 3: "timestamp", 4: "", 5: "type", 6: "previousId", 7: "properties", 8: ""}
	body := []byte(`{"batch":[` + strings.Join(items, ",") + `]}`)
	r := s.do(req{path: "/v1/batch", body: body, key: s.webKey})
	if r.code != http.StatusOK {
		t.Fatalf("got %.300s, want 200", r)
	}
	var a batchAnswer
	if err := json.Unmarshal(r.body, &a); err != nil {
		t.Fatal(err)
	}
	if !a.Success || a.Accepted != 2 || len(a.Rejected) != len(wantRejected) {
		t.Fatalf("answer %s: want success, 2 accepted, %d rejected", r, len(wantRejected))
	}
	dls := s.deadLetters()
	for _, rj := range a.Rejected {
		field, ok := wantRejected[rj.Index]
		if !ok || rj.Field != field || rj.Reason == "" {
			t.Errorf("rejected %+v, want index in %v with field %q and a reason", rj, wantRejected, field)
			continue
		}
		marker := fmt.Sprintf("bp-m%d", rj.Index)
		found := false
		for _, d := range dls {
			if d.Index == rj.Index && strings.Contains(d.payload(), marker) {
				found = true
				if d.Source != "web" || d.Field != rj.Field || d.Reason != rj.Reason {
					t.Errorf("dead letter %+v, want source web, field %q reason %q", d, rj.Field, rj.Reason)
				}
			}
		}
		if !found {
			t.Errorf("rejected index %d (%s) not dead-lettered", rj.Index, marker)
		}
	}
	if p := s.waitProfile("user_id:bp-1"); totalEvents(p) != 1 {
		t.Errorf("bp-1 has %v events, want 1", totalEvents(p))
	}
	s.waitProfile("user_id:bp-2")
	if code, _ := s.profile("user_id:bp-x"); code != http.StatusNotFound {
		t.Errorf("user_id:bp-x (only in invalid events): %d, want 404", code)
	}

	t.Run("only invalid", func(t *testing.T) {
		r := s.do(req{path: "/v1/batch", key: s.webKey,
			body: []byte(`{"batch":[{"type":"track","userId":"bp-y"},{"type":"group","userId":"bp-y"}]}`)})
		if r.code != http.StatusBadRequest {
			t.Fatalf("got %s, want 400", r)
		}
		var a batchAnswer
		if err := json.Unmarshal(r.body, &a); err != nil {
			t.Fatal(err)
		}
		if a.Success || a.Accepted != 0 || len(a.Rejected) != 2 ||
			a.Rejected[0].Index != 0 || a.Rejected[0].Field != "event" ||
			a.Rejected[1].Index != 1 || a.Rejected[1].Field != "groupId" {
			t.Errorf("answer %s: want 2 rejected (event, groupId)", r)
		}
	})

	shapes := []struct{ name, body, reason string }{
		{"no batch", `{"events":[]}`, `"batch"`},
		{"batch not an array", `{"batch":{"type":"track"}}`, "batch"},
		{"batch null", `{"batch":null}`, `"batch"`},
		{"context not an object", `{"batch":[],"context":[1]}`, "context"},
		{"bad sentAt", `{"batch":[],"sentAt":"soon"}`, "sentAt"},
	}
	for _, c := range shapes {
		t.Run(c.name, func(t *testing.T) {
			r := s.do(req{path: "/v1/batch", key: s.webKey, body: []byte(c.body)})
			if r.code != http.StatusBadRequest {
				t.Fatalf("got %s, want 400", r)
			}
			if msg, _ := r.errorBody(t); !strings.Contains(msg, c.reason) {
				t.Errorf("error %q does not mention %s", msg, c.reason)
			}
		})
	}
	t.Run("empty batch", func(t *testing.T) {
		r := s.do(req{path: "/v1/batch", key: s.webKey, body: []byte(`{"batch":[]}`)})
		var a batchAnswer
		if r.code != http.StatusOK || json.Unmarshal(r.body, &a) != nil || a.Accepted != 0 || len(a.Rejected) != 0 {
			t.Errorf("got %s, want 200 with nothing accepted or rejected", r)
		}
	})
}

// TestRoutes: wrong methods are 405, unknown routes a JSON 404, and CORS
// preflights of the tracking endpoints succeed.
func TestRoutes(t *testing.T) {
	s := newTestServer(t)
	cases := []struct {
		method, path string
		admin        bool
		want         int
		allow        string // expected in the Allow header of a 405
	}{
		{"GET", "/v1/track", false, 405, "POST"},
		{"PUT", "/v1/identify", false, 405, "POST"},
		{"DELETE", "/v1/batch", false, 405, "POST"},
		{"GET", "/v1/alias", false, 405, "POST"},
		{"DELETE", "/v1/sources", true, 405, "GET"},
		{"POST", "/v1/profiles/user_id:x", true, 405, "GET"},
		{"GET", "/v1/import/web", true, 405, "POST"},
		{"POST", "/healthz", false, 405, "GET"},
		{"GET", "/v1/nothing", false, 404, ""},
		{"POST", "/v2/track", false, 404, ""},
		{"GET", "/", false, 404, ""},
		{"POST", "/v1/track/extra", false, 404, ""},
	}
	for _, c := range cases {
		t.Run(c.method+" "+c.path, func(t *testing.T) {
			r := s.do(req{method: c.method, path: c.path, admin: c.admin, key: map[bool]string{false: s.webKey}[c.admin]})
			if r.code != c.want {
				t.Fatalf("got %s, want %d", r, c.want)
			}
			msg, _ := r.errorBody(t)
			if !strings.Contains(msg, c.path) {
				t.Errorf("error %q does not name the path", msg)
			}
			if c.want == 405 && !strings.Contains(r.header.Get("Allow"), c.allow) {
				t.Errorf("Allow = %q, want it to contain %s", r.header.Get("Allow"), c.allow)
			}
		})
	}

	for _, path := range trackingPaths {
		t.Run("preflight "+path, func(t *testing.T) {
			r := s.do(req{method: "OPTIONS", path: path, header: map[string]string{
				"Origin": "https://shop.example", "Access-Control-Request-Method": "POST",
				"Access-Control-Request-Headers": "authorization, content-type"}})
			if r.code != http.StatusNoContent && r.code != http.StatusOK {
				t.Fatalf("got %s, want 204", r)
			}
			h := r.header
			if h.Get("Access-Control-Allow-Origin") != "https://shop.example" ||
				!strings.Contains(h.Get("Access-Control-Allow-Methods"), "POST") ||
				!strings.Contains(strings.ToLower(h.Get("Access-Control-Allow-Headers")), "authorization") ||
				!strings.Contains(strings.ToLower(h.Get("Access-Control-Allow-Headers")), "content-type") {
				t.Errorf("CORS headers %v", h)
			}
		})
	}
	t.Run("CORS on the answer", func(t *testing.T) {
		r := s.do(req{path: "/v1/track", key: s.webKey, body: []byte(validBodies["/v1/track"]),
			header: map[string]string{"Origin": "https://shop.example"}})
		if r.code != 200 || r.header.Get("Access-Control-Allow-Origin") != "https://shop.example" {
			t.Errorf("got %s with Access-Control-Allow-Origin %q", r, r.header.Get("Access-Control-Allow-Origin"))
		}
		r = s.do(req{path: "/v1/track", body: []byte(validBodies["/v1/track"]),
			header: map[string]string{"Origin": "https://shop.example"}})
		if r.code != 401 || r.header.Get("Access-Control-Allow-Origin") != "https://shop.example" {
			t.Errorf("a 401 must carry CORS headers too (the browser shows it): %s %v", r, r.header)
		}
	})
}
