package testnode_test

import (
	"context"
	"io"
	"net/http"
	"testing"

	"github.com/aurumcdp/aurum/api"
	"github.com/aurumcdp/aurum/engine"
	"github.com/aurumcdp/aurum/internal/testnode"
)

// TestStartWithAPI: a node with its API answers over HTTP with the admin
// token given, refuses another, and its data directory can be opened
// again once the node is closed (Close released it).
func TestStartWithAPI(t *testing.T) {
	dir := t.TempDir()
	n := testnode.Start(t, testnode.Options{Engine: engine.Options{DataDir: dir, TickPeriod: -1},
		API: &api.Options{}, AdminToken: "testnode-admin-token-0123456789"})
	if n.URL == "" || n.API == nil {
		t.Fatalf("node without its API: %+v", n)
	}
	if _, err := n.Engine.Gate().CreateSource(context.Background(), "web"); err != nil {
		t.Fatal(err)
	}
	get := func(token string) int {
		req, err := http.NewRequest("GET", n.URL+"/v1/sources", nil)
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Authorization", "Bearer "+token)
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, res.Body)
		res.Body.Close()
		return res.StatusCode
	}
	if code := get("testnode-admin-token-0123456789"); code != http.StatusOK {
		t.Fatalf("GET /v1/sources with the admin token: %d", code)
	}
	if code := get("another-token-0123456789"); code != http.StatusUnauthorized {
		t.Fatalf("GET /v1/sources with another token: %d, want 401", code)
	}
	if err := n.Close(); err != nil {
		t.Fatal(err)
	}
	if err := n.Close(); err != nil { // and again, as t.Cleanup will
		t.Fatal(err)
	}
	e := testnode.Engine(t, engine.Options{DataDir: dir, TickPeriod: -1})
	if srcs := e.Gate().Sources(); len(srcs) != 1 || srcs[0].Name != "web" {
		t.Fatalf("reopened: sources %+v, want web", srcs)
	}
}
