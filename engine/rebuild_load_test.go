package engine

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/aurumcdp/aurum/event"
	"github.com/aurumcdp/aurum/internal/check"
	"github.com/aurumcdp/aurum/projections/audience"
)

// TestReplaySwapsUnderLoad: live replays that swap in while the apply loop
// is busy (events arriving all along) leave the state a clean replay of the
// same log gives: the swap catches up to what the live state committed, not
// to the position the loop had announced (it announces a commit after it
// let go of the state lock, so a swap could take the lock in between and
// miss the entries of that commit).
func TestReplaySwapsUnderLoad(t *testing.T) {
	if testing.Short() {
		t.Skip("several replays under load")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	dir := t.TempDir()
	// afterCommit widens the moment between a commit and its
	// announcement, where a swap used to take the lock and catch up to
	// the announced position.
	opts := Options{DataDir: dir, NATSListen: "127.0.0.1:-1", Partitions: 4, TickPeriod: -1,
		afterCommit: func() { time.Sleep(time.Millisecond) }}
	e, err := Open(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { e.Close() }()
	if _, err := e.Gate().CreateSource(ctx, "web"); err != nil {
		t.Fatal(err)
	}
	if _, err := e.PutAudience(ctx, audience.Definition{Name: "viewers", Rule: `count("Product Viewed") >= 3`}); err != nil {
		t.Fatal(err)
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var ingestErr error
	var stopOnce sync.Once
	halt := func() { stopOnce.Do(func() { close(stop) }); wg.Wait() }
	defer halt() // before Close, on a failure too
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			js := fmt.Sprintf(`{"type":"track","event":"Product Viewed","userId":"u%d","messageId":"m%d"}`, i%23, i)
			ev, err := event.Parse([]byte(js), "", e.Edge().ParseOptions())
			if err == nil {
				err = e.Edge().Ingest(ctx, "web", []event.Event{ev})
			}
			if err != nil {
				ingestErr = err
				return
			}
			time.Sleep(time.Millisecond) // a replay catches up with a steady stream
		}
	}()
	const replays = 8
	for i := range replays {
		if err := e.StartRebuild(RebuildOptions{}); err != nil {
			t.Fatal(err)
		}
		check.For(t, time.Minute, 2*time.Millisecond, func() error {
			switch st := e.RebuildStatus(); st.Status {
			case "done":
				return nil
			case "failed":
				t.Fatalf("replay %d failed: %s", i, st.Error)
			}
			return errors.New("replay running")
		})
	}
	halt()
	if ingestErr != nil {
		t.Fatal(ingestErr)
	}
	if err := e.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	live, err := e.Digest()
	if err != nil {
		t.Fatal(err)
	}
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	res, err := Replay(ctx, ReplayOptions{DataDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	if res.Applied != live.Applied || fmt.Sprintf("%x", res.Digest) != live.All {
		t.Fatalf("after %d live replays under load: live state at %d digest %s, a clean replay at %d gives %x", replays, live.Applied, live.All, res.Applied, res.Digest)
	}
	t.Logf("%d live replays under load; %d log entries; live state equals a clean replay", replays, live.Applied)
}
