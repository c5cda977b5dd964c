package engine_test

import (
	"context"
	"runtime"
	"testing"
	"time"
	"weak"

	"github.com/aurumcdp/aurum/engine"
)

// TestClosedEngineIsFreed: once Close returns, nothing keeps the engine
// reachable, so its caches, filters and stores' memory go back to the
// garbage collector. nats-server keeps timers of its own running after
// Shutdown (a service export's 2-minute response threshold) that held the
// stopped server, the log's authenticator and through it the whole engine
// for two minutes (25-60 MiB per engine: tests and benchmarks that open
// engines one after another grew by that much each time).
func TestClosedEngineIsFreed(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	wp := openUseAndClose(ctx, t)
	for range 10 {
		runtime.GC()
		if wp.Value() == nil {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatal("the closed engine is still reachable after 10 GCs")
}

// openUseAndClose opens an engine with NATS authentication on, ingests and
// applies a few events (so that the log's service imports and the
// authenticator have been used), closes it and returns a weak pointer to
// it: the caller holds no other reference.
func openUseAndClose(ctx context.Context, t *testing.T) weak.Pointer[engine.Engine] {
	t.Helper()
	e, err := engine.Open(ctx, engine.Options{DataDir: t.TempDir(), NATSListen: "127.0.0.1:-1", TickPeriod: -1})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.Gate().CreateSource(ctx, "web"); err != nil {
		t.Fatal(err)
	}
	ingestOrders(ctx, t, e, 1, 50)
	nc := natsReader(t, e, "viewer")
	nc.Close()
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	return weak.Make(e)
}
