package engine_test

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"testing"
	"time"

	"github.com/aurumcdp/aurum/engine"
	"github.com/aurumcdp/aurum/engine/access"
	"github.com/aurumcdp/aurum/event"
	"github.com/aurumcdp/aurum/internal/check"
	"github.com/aurumcdp/aurum/internal/testnode"
	"github.com/aurumcdp/aurum/projections/audience"
)

// TestCloseStopsEverything: an engine that ingested, applied, ticked and ran
// an audience leaves no goroutine behind after Close, and a reopened engine
// continues where it stopped.
func TestCloseStopsEverything(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	run := func() {
		e := testnode.Engine(t, engine.Options{DataDir: dir, TickPeriod: 20 * time.Millisecond})
		if _, err := e.Gate().CreateSource(ctx, "web"); err != nil && !errors.Is(err, access.ErrSourceExists) {
			t.Fatal(err)
		}
		if _, err := e.PutAudience(ctx, audience.Definition{Name: "any", Rule: `count("E", "1h") >= 1`}); err != nil {
			t.Fatal(err)
		}
		ev, err := event.Parse([]byte(`{"type":"track","event":"E","userId":"u"}`), "", e.Edge().ParseOptions())
		if err != nil {
			t.Fatal(err)
		}
		if err := e.Edge().Ingest(ctx, "web", []event.Event{ev}); err != nil {
			t.Fatal(err)
		}
		if err := e.Sync(ctx); err != nil {
			t.Fatal(err)
		}
		if err := e.Close(); err != nil {
			t.Fatal(err)
		}
	}
	run() // warm-up: lazily started runtime and library goroutines
	before := runtime.NumGoroutine()
	run()
	_ = check.Poll(10*time.Second, 20*time.Millisecond, func() error {
		if n := runtime.NumGoroutine(); n > before {
			return fmt.Errorf("%d goroutines", n)
		}
		return nil
	})
	if n := runtime.NumGoroutine(); n > before {
		buf := make([]byte, 1<<20)
		t.Fatalf("%d goroutines after Close, %d before:\n%s", n, before, buf[:runtime.Stack(buf, true)])
	}
	e := testnode.Engine(t, engine.Options{DataDir: dir, TickPeriod: -1})
	p, err := e.Reader().Profile("user_id:u")
	if err != nil || p.Stats.TotalEvents != 2 {
		t.Fatalf("after reopening: %+v %v (want the 2 events of both runs)", p, err)
	}
}
