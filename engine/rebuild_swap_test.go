package engine_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/aurumcdp/aurum/engine"
	"github.com/aurumcdp/aurum/engine/access"
	"github.com/aurumcdp/aurum/event"
	"github.com/aurumcdp/aurum/internal/check"
	"github.com/aurumcdp/aurum/internal/testnode"
)

// TestReplaySwapWhileSyncPending: a replay that swaps the live state in the
// moments after an apply, while the apply loop waits to sync that apply's
// commits, does not hand the loop a closed store (it used to panic with
// "pebble: closed" in the idle sync).
func TestReplaySwapWhileSyncPending(t *testing.T) {
	ctx := context.Background()
	e := testnode.Engine(t, engine.Options{DataDir: t.TempDir(), TickPeriod: -1})
	if _, err := e.Gate().CreateSource(ctx, "web"); err != nil && !errors.Is(err, access.ErrSourceExists) {
		t.Fatal(err)
	}
	ingest := func(i int) {
		t.Helper()
		ev, err := event.Parse([]byte(fmt.Sprintf(`{"type":"track","event":"E","userId":"u%d"}`, i)), "", e.Edge().ParseOptions())
		if err != nil {
			t.Fatal(err)
		}
		if err := e.Edge().Ingest(ctx, "web", []event.Event{ev}); err != nil {
			t.Fatal(err)
		}
		if err := e.Sync(ctx); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 12 {
		ingest(i) // a commit not yet synced: the loop syncs it when idle
		if err := e.StartRebuild(engine.RebuildOptions{}); err != nil {
			t.Fatal(err)
		}
		check.For(t, 30*time.Second, 5*time.Millisecond, func() error {
			switch st := e.RebuildStatus(); st.Status {
			case "done":
				return nil
			case "failed":
				t.Fatalf("replay %d failed: %s", i, st.Error)
			}
			return errors.New("replay running")
		})
	}
	ingest(12)
	p, err := e.Reader().Profile("user_id:u12")
	if err != nil || p.Stats.TotalEvents != 1 {
		t.Fatalf("after the replays: %+v %v", p, err)
	}
}
