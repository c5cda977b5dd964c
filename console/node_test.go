package console_test

import (
	"bytes"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/aurumcdp/aurum/api"
	"github.com/aurumcdp/aurum/console"
	"github.com/aurumcdp/aurum/engine"
	"github.com/aurumcdp/aurum/internal/testnode"
)

const adminToken = "console-test-admin-token-0123456789"

// startNode starts an in-process node with its API.
func startNode(t *testing.T) *testnode.Node {
	t.Helper()
	return testnode.Start(t, testnode.Options{
		Engine:     engine.Options{MasterKey: bytes.Repeat([]byte{7}, 32), Partitions: 2},
		API:        &api.Options{RequestTimeout: 20 * time.Second},
		AdminToken: adminToken,
	})
}

// serveConsole serves the console in front of n's API, as aurum serve
// does, and returns its base URL.
func serveConsole(t *testing.T, n *testnode.Node) string {
	t.Helper()
	h, err := console.New(console.Options{API: n.API})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv.URL
}
