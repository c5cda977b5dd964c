package api_test

import (
	"bytes"
	"crypto/sha256"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aurumcdp/aurum/api"
	"github.com/aurumcdp/aurum/engine"
	"github.com/aurumcdp/aurum/internal/testnode"
)

// catchingNode is the engine's Node, reporting a catch-up while catching
// is set (a node restarted into a cluster, behind the log it found).
type catchingNode struct {
	*engine.Engine
	catching atomic.Bool
}

func (c *catchingNode) CatchingUp() (applied, target uint64, catching bool) {
	if c.catching.Load() {
		return 3, 10, true
	}
	return c.Engine.CatchingUp()
}

// TestCatchingUpAnswers503: while the node catches up, a credential it does
// not know may be one created meanwhile on another node: 503 with
// Retry-After, not 401. Known credentials work; once caught up, unknown
// ones are 401 again.
func TestCatchingUpAnswers503(t *testing.T) {
	e := testnode.Engine(t, engine.Options{MasterKey: bytes.Repeat([]byte{7}, 32), Partitions: 2})
	node := &catchingNode{Engine: e}
	svc := testnode.Services(e)
	svc.Node = node
	h := sha256.Sum256([]byte(adminToken))
	srv, err := api.New(svc, api.Options{RequestTimeout: 20 * time.Second, AdminTokenHash: h[:]})
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(srv)
	t.Cleanup(hs.Close)
	s := &testServer{t: t, e: e, srv: srv, URL: hs.URL}
	batch := []byte(`{"batch":[{"type":"track","userId":"u1","event":"x","messageId":"m1"}]}`)

	node.catching.Store(true)
	for _, tc := range []struct {
		name string
		req  req
	}{
		{"unknown bearer token", req{method: "GET", path: "/v1/sources", header: map[string]string{"Authorization": "Bearer not-yet-applied-token"}}},
		{"unknown write key", req{method: "POST", path: "/v1/batch", key: "not-yet-applied-key", body: batch}},
	} {
		r := s.do(tc.req)
		if msg, _ := r.errorBody(t); r.code != http.StatusServiceUnavailable || r.header.Get("Retry-After") == "" ||
			!strings.Contains(msg, "catching up") || !strings.Contains(msg, "3 of the 10") {
			t.Errorf("%s while catching up: %s, want 503 catching up with Retry-After", tc.name, r)
		}
	}
	if r := s.do(req{method: "GET", path: "/v1/sources", admin: true}); r.code != http.StatusOK {
		t.Errorf("a known token while catching up: %s", r)
	}

	node.catching.Store(false)
	for _, tc := range []req{
		{method: "GET", path: "/v1/sources", header: map[string]string{"Authorization": "Bearer not-yet-applied-token"}},
		{method: "POST", path: "/v1/batch", key: "not-yet-applied-key", body: batch},
	} {
		if r := s.do(tc); r.code != http.StatusUnauthorized {
			t.Errorf("%s %s once caught up: %s, want 401", tc.method, tc.path, r)
		}
	}
}
