// Package testnode is test support: it starts an Aurum node in-process (an
// engine on a temporary data directory and a free NATS port, optionally
// with its HTTP API on an httptest server) and closes it when the test
// ends, as nats-server's tests start a server with Port -1 and StoreDir
// t.TempDir().
//
// It imports engine and api, so engine's internal tests (package engine)
// cannot use it: they open their engine themselves. External test packages
// (engine_test, api_test, ...) can.
package testnode

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/aurumcdp/aurum/api"
	"github.com/aurumcdp/aurum/engine"
)

// OpenTimeout bounds engine.Open (the embedded NATS server and the
// recovery of the state).
const OpenTimeout = 30 * time.Second

// Options of a test node. The zero value is an engine with engine's
// defaults on t.TempDir(), NATS on a free local port, and no HTTP API.
type Options struct {
	// Engine is handed to engine.Open. An empty DataDir is t.TempDir(), an
	// empty NATSListen "127.0.0.1:-1" (a free port).
	Engine engine.Options
	// API, when set, serves the engine's HTTP API on an httptest server
	// (Node.URL). AdminToken, when not empty, sets API.AdminTokenHash.
	API        *api.Options
	AdminToken string
	// Cluster, when set, is handed to the API as api.Services.Cluster.
	Cluster api.Cluster
}

// Node is a running test node.
type Node struct {
	Engine *engine.Engine
	API    *api.Server // nil without Options.API
	URL    string      // base URL of the HTTP API ("" without Options.API)

	closeOnce sync.Once
	closeErr  error
	http      *httptest.Server
}

// Start opens a node and registers its Close with t.Cleanup (a Close error
// fails the test). It fails the test if the node cannot start.
func Start(t testing.TB, opts Options) *Node {
	t.Helper()
	n, err := start(t, opts)
	if err != nil {
		t.Fatalf("testnode: %v", err)
	}
	t.Cleanup(func() {
		if err := n.Close(); err != nil {
			t.Errorf("testnode: close: %v", err)
		}
	})
	return n
}

// Engine is Start without the HTTP API: the engine of a node opened on
// opts, closed when the test ends.
func Engine(t testing.TB, opts engine.Options) *engine.Engine {
	t.Helper()
	return Start(t, Options{Engine: opts}).Engine
}

func start(t testing.TB, opts Options) (*Node, error) {
	eo := opts.Engine
	if eo.DataDir == "" {
		eo.DataDir = t.TempDir()
	}
	if eo.NATSListen == "" {
		eo.NATSListen = "127.0.0.1:-1"
	}
	ctx, cancel := context.WithTimeout(context.Background(), OpenTimeout)
	defer cancel()
	e, err := engine.Open(ctx, eo)
	if err != nil {
		return nil, fmt.Errorf("engine.Open: %w", err)
	}
	n := &Node{Engine: e}
	if opts.API == nil {
		return n, nil
	}
	ao := *opts.API
	if opts.AdminToken != "" {
		h := sha256.Sum256([]byte(opts.AdminToken))
		ao.AdminTokenHash = h[:]
	}
	svc := Services(e)
	svc.Cluster = opts.Cluster
	srv, err := api.New(svc, ao)
	if err != nil {
		return nil, errors.Join(fmt.Errorf("api.New: %w", err), e.Close())
	}
	n.API, n.http = srv, httptest.NewServer(srv)
	n.URL = n.http.URL
	return n, nil
}

// Services hands the API each concern from the engine's stage that owns
// it, as cmd/aurum's serve does: for tests and benchmarks that build an
// api.Server on an engine of their own.
func Services(e *engine.Engine) api.Services {
	return api.Services{Ingest: e.Edge(), Access: e.Gate(), Reads: e.Reader(), Audiences: e, Destinations: e,
		Privacy: e.Privacy(), Replay: e, Models: e.Models(), Identity: e.Matching(), Audit: e.Recorder(), Node: e,
		Exports: e.Exporter()}
}

// Close stops the HTTP server, then the engine. It may be called more than
// once (t.Cleanup calls it too); every call returns the first one's error.
func (n *Node) Close() error {
	n.closeOnce.Do(func() {
		if n.http != nil {
			n.http.Close()
		}
		n.closeErr = n.Engine.Close()
	})
	return n.closeErr
}
