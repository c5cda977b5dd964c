package api_test

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/aurumcdp/aurum/api"
	"github.com/aurumcdp/aurum/engine"
	"github.com/aurumcdp/aurum/internal/testnode"
)

// fuzzRoutes are the request bodies FuzzManagementBodies sends: audience
// and destination definitions, previews, sources, replay options and
// imports.
var fuzzRoutes = []struct{ method, path string }{
	{"POST", "/v1/audiences"},
	{"PUT", "/v1/audiences/fz"},
	{"POST", "/v1/audiences/preview"},
	{"POST", "/v1/destinations"},
	{"POST", "/v1/sources"},
	{"POST", "/v1/import/web"},
}

// FuzzManagementBodies: whatever the body, a management route answers a
// 2xx or a 4xx with a JSON body, never a 5xx or a panic, and the engine
// stays healthy.
func FuzzManagementBodies(f *testing.F) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	n := testnode.Start(f, testnode.Options{Engine: engine.Options{MasterKey: bytes.Repeat([]byte{7}, 32), Partitions: 2, TickPeriod: -1},
		API: &api.Options{}, AdminToken: adminToken})
	e, srv := n.Engine, n.API
	if _, err := e.Gate().CreateSource(ctx, "web"); err != nil {
		f.Fatal(err)
	}
	for i, body := range []string{
		`{"name":"buyers","rule":"count(\"Order Completed\", \"30d\") >= 1"}`,
		`{"rule":"sum(\"Order Completed\", \"revenue\", \"365d\") >= 1000 and not in_audience(\"x\")"}`,
		`{"rule":"funnel([\"A\", \"B\"], \"2h\")","sample":5,"exact":true}`,
		`{"name":"hook","url":"https://example.com/h","secret":"0123456789abcdef0123456789abcdef","audiences":["buyers"],"channel":"email"}`,
		`{"name":"crm"}`,
		`{"batch":[{"type":"track","event":"E","userId":"u","properties":{"revenue":"12.5"}}]}`,
	} {
		f.Add(uint8(i), []byte(body))
	}
	f.Add(uint8(0), []byte(`{"name":"a","rule":"`+string(bytes.Repeat([]byte("("), 2000))+`"}`))
	f.Fuzz(func(t *testing.T, route uint8, body []byte) {
		rt := fuzzRoutes[int(route)%len(fuzzRoutes)]
		r := httptest.NewRequest(rt.method, rt.path, bytes.NewReader(body))
		r.Header.Set("Authorization", "Bearer "+adminToken)
		w := httptest.NewRecorder()
		srv.ServeHTTP(w, r)
		if w.Code >= 500 {
			t.Fatalf("%s %s %q: %d %s", rt.method, rt.path, body, w.Code, w.Body)
		}
		if w.Code >= 400 {
			var eb struct {
				Error string `json:"error"`
			}
			var batch struct {
				Rejected []json.RawMessage `json:"rejected"`
			}
			if json.Unmarshal(w.Body.Bytes(), &eb) != nil || (eb.Error == "" && json.Unmarshal(w.Body.Bytes(), &batch) != nil) {
				t.Fatalf("%s %s %q: %d without a JSON error: %s", rt.method, rt.path, body, w.Code, w.Body)
			}
		}
		if err := e.Healthy(); err != nil {
			t.Fatalf("engine unhealthy after %s %s %q: %v", rt.method, rt.path, body, err)
		}
	})
}
