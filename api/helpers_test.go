package api_test

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/aurumcdp/aurum/api"
	"github.com/aurumcdp/aurum/engine"
	"github.com/aurumcdp/aurum/internal/check"
	"github.com/aurumcdp/aurum/internal/testnode"
)

const adminToken = "api-test-admin-token-0123456789"

// testServer is an in-process engine behind the API on an httptest server,
// with one source "web".
type testServer struct {
	t      *testing.T
	e      *engine.Engine
	srv    *api.Server
	URL    string
	webKey string
}

func newTestServer(t *testing.T) *testServer {
	t.Helper()
	n := testnode.Start(t, testnode.Options{
		Engine:     engine.Options{MasterKey: bytes.Repeat([]byte{7}, 32), Partitions: 4},
		API:        &api.Options{RequestTimeout: 20 * time.Second},
		AdminToken: adminToken,
	})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	key, err := n.Engine.Gate().CreateSource(ctx, "web")
	if err != nil {
		t.Fatalf("CreateSource: %v", err)
	}
	return &testServer{t: t, e: n.Engine, srv: n.API, URL: n.URL, webKey: key}
}

// req describes one HTTP request of a test.
type req struct {
	method string
	path   string
	body   []byte
	header map[string]string
	key    string // write key as the Basic user name
	admin  bool   // admin bearer token
}

type resp struct {
	code    int
	header  http.Header
	trailer http.Header // read after the body
	body    []byte
}

func (r resp) String() string { return fmt.Sprintf("%d %s", r.code, bytes.TrimSpace(r.body)) }

// errorBody decodes the JSON error shape; it fails the test if the body is
// not that shape.
func (r resp) errorBody(t *testing.T) (msg, field string) {
	t.Helper()
	if ct := r.header.Get("Content-Type"); ct != "application/json" {
		t.Fatalf("Content-Type %q, want application/json (%s)", ct, r)
	}
	var e struct {
		Error *string `json:"error"`
		Field string  `json:"field"`
	}
	if err := json.Unmarshal(r.body, &e); err != nil || e.Error == nil || *e.Error == "" {
		t.Fatalf("not a JSON error body (%v): %s", err, r)
	}
	return *e.Error, e.Field
}

func (s *testServer) do(r req) resp {
	s.t.Helper()
	if r.method == "" {
		r.method = http.MethodPost
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	hr, err := http.NewRequestWithContext(ctx, r.method, s.URL+r.path, bytes.NewReader(r.body))
	if err != nil {
		s.t.Fatal(err)
	}
	if r.body != nil {
		hr.Header.Set("Content-Type", "application/json")
	}
	if r.key != "" {
		hr.SetBasicAuth(r.key, "")
	}
	if r.admin {
		hr.Header.Set("Authorization", "Bearer "+adminToken)
	}
	for k, v := range r.header {
		hr.Header.Set(k, v)
	}
	res, err := http.DefaultClient.Do(hr)
	if err != nil {
		s.t.Fatalf("%s %s: %v", r.method, r.path, err)
	}
	defer res.Body.Close()
	body, err := io.ReadAll(res.Body)
	if err != nil {
		s.t.Fatalf("%s %s: read: %v", r.method, r.path, err)
	}
	return resp{code: res.StatusCode, header: res.Header, trailer: res.Trailer, body: body}
}

func jsonBody(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func gzipped(t *testing.T, b []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw, err := gzip.NewWriterLevel(&buf, gzip.BestCompression)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := zw.Write(b); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// deadLetter is the JSON of one GET /v1/deadletters record.
type deadLetter struct {
	Source     string          `json:"source"`
	Reason     string          `json:"reason"`
	Field      string          `json:"field"`
	Index      int             `json:"index"`
	Payload    json.RawMessage `json:"payload"`
	PayloadRaw []byte          `json:"payload_raw"`
}

func (d deadLetter) payload() string {
	if len(d.Payload) > 0 {
		return string(d.Payload)
	}
	return string(d.PayloadRaw)
}

// deadLetters returns every dead letter (GET /v1/deadletters, admin).
func (s *testServer) deadLetters() []deadLetter {
	s.t.Helper()
	r := s.do(req{method: http.MethodGet, path: "/v1/deadletters?limit=1000", admin: true})
	if r.code != http.StatusOK {
		s.t.Fatalf("GET /v1/deadletters: %s", r)
	}
	var out struct {
		DeadLetters []deadLetter `json:"dead_letters"`
	}
	if err := json.Unmarshal(r.body, &out); err != nil {
		s.t.Fatalf("decode dead letters: %v: %s", err, r)
	}
	return out.DeadLetters
}

// findDeadLetter returns the dead letter whose payload contains marker. The
// dead letter is written before the API answers, so no polling is needed.
func (s *testServer) findDeadLetter(marker string) (deadLetter, bool) {
	s.t.Helper()
	for _, d := range s.deadLetters() {
		if strings.Contains(d.payload(), marker) {
			return d, true
		}
	}
	return deadLetter{}, false
}

// profile fetches a GCR; it returns the status code and the decoded body.
func (s *testServer) profile(ref string) (int, map[string]any) {
	s.t.Helper()
	r := s.do(req{method: http.MethodGet, path: "/v1/profiles/" + ref, admin: true})
	var p map[string]any
	if r.code == http.StatusOK {
		if err := json.Unmarshal(r.body, &p); err != nil {
			s.t.Fatalf("decode profile: %v: %s", err, r)
		}
	}
	return r.code, p
}

// waitProfile polls until ref has a profile with at least one event.
func (s *testServer) waitProfile(ref string) map[string]any {
	s.t.Helper()
	var p map[string]any
	check.For(s.t, 15*time.Second, 10*time.Millisecond, func() error {
		var code int
		if code, p = s.profile(ref); code != http.StatusOK {
			return fmt.Errorf("GET /v1/profiles/%s: %d", ref, code)
		}
		return nil
	})
	return p
}

func totalEvents(p map[string]any) float64 {
	st, _ := p["stats"].(map[string]any)
	n, _ := st["total_events"].(float64)
	return n
}

func basic(user string) string {
	return "Basic " + base64.StdEncoding.EncodeToString([]byte(user+":"))
}
