package engine

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aurumcdp/aurum/engine/outbox"
	"github.com/aurumcdp/aurum/event"
	"github.com/aurumcdp/aurum/internal/check"
	"github.com/aurumcdp/aurum/projections/audience"
)

// TestTraceStages: Options.Trace sees every applied entry in a group whose
// times are in stage order, the publisher's pass that carried each
// transition (after the group that wrote it), and a sync of the state
// that began after the last group was committed: with StateWAL, of its
// WAL (the state syncer is asked once the apply loop goes idle, and syncs
// off the loop); without, a checkpoint (checkpointLoop's flush).
func TestTraceStages(t *testing.T) {
	for _, tc := range []struct {
		name string
		opts Options
	}{
		{"wal", Options{StateWAL: true}},
		{"checkpoints", Options{StateCheckpoint: 200 * time.Millisecond}},
	} {
		t.Run(tc.name, func(t *testing.T) { testTraceStages(t, tc.opts) })
	}
}

func testTraceStages(t *testing.T, opts Options) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var (
		mu     sync.Mutex
		groups []GroupTimes
		passes []outbox.PassTimes
		syncs  []time.Time // their starts
	)
	tr := &Trace{
		Group: func(g GroupTimes) { mu.Lock(); groups = append(groups, g); mu.Unlock() },
		Pass: func(p outbox.PassTimes) {
			p.MsgIDs = slices.Clone(p.MsgIDs)
			mu.Lock()
			passes = append(passes, p)
			mu.Unlock()
		},
		StateSync: func(start time.Time, d time.Duration) { mu.Lock(); syncs = append(syncs, start); mu.Unlock() },
	}
	opts.DataDir, opts.NATSListen, opts.Partitions, opts.TickPeriod, opts.Trace = t.TempDir(), "127.0.0.1:-1", 4, -1, tr
	e, err := Open(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	if _, err := e.Gate().CreateSource(ctx, "web"); err != nil {
		t.Fatal(err)
	}
	if _, err := e.PutAudience(ctx, audience.Definition{Name: "buyers", Rule: `count("Order Completed") >= 1`}); err != nil {
		t.Fatal(err)
	}
	const people = 20
	for i := range people {
		ev, err := event.Parse([]byte(fmt.Sprintf(`{"type":"track","event":"Order Completed","userId":"u%d","messageId":"m%d"}`, i, i)), "", e.Edge().ParseOptions())
		if err != nil {
			t.Fatal(err)
		}
		if err := e.Edge().Ingest(ctx, "web", []event.Event{ev}); err != nil {
			t.Fatal(err)
		}
	}
	if err := e.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	last := e.AppliedSeq()
	// Wait for the transitions' passes and for a sync after the last commit.
	check.For(t, 30*time.Second, 10*time.Millisecond, func() error {
		mu.Lock()
		defer mu.Unlock()
		n := 0
		for _, p := range passes {
			for _, id := range p.MsgIDs {
				if strings.HasPrefix(id, "aud:buyers:") {
					n++
				}
			}
		}
		if n < people {
			return fmt.Errorf("%d of %d transitions published", n, people)
		}
		if len(groups) == 0 || groups[len(groups)-1].Last != last {
			return fmt.Errorf("the group of seq %d not traced", last)
		}
		if len(syncs) == 0 || syncs[len(syncs)-1].Before(groups[len(groups)-1].Committed) {
			return fmt.Errorf("no sync of the state after the last commit")
		}
		return nil
	})
	mu.Lock()
	defer mu.Unlock()
	var next uint64
	for _, g := range groups {
		if g.First < next || g.Last < g.First {
			t.Fatalf("group %d-%d after seq %d", g.First, g.Last, next)
		}
		next = g.Last + 1
		ts := []time.Time{g.Read, g.Applied, g.Committed, g.Done}
		if !slices.IsSortedFunc(ts, func(a, b time.Time) int { return a.Compare(b) }) || g.Stored.IsZero() {
			t.Fatalf("group %d-%d: times out of stage order: stored %v read %v applied %v committed %v done %v",
				g.First, g.Last, g.Stored, g.Read, g.Applied, g.Committed, g.Done)
		}
	}
	for _, p := range passes {
		ts := []time.Time{p.Start, p.Sent, p.Acked, p.Committed}
		if !slices.IsSortedFunc(ts, func(a, b time.Time) int { return a.Compare(b) }) || len(p.MsgIDs) == 0 {
			t.Fatalf("pass %+v: times out of order or nothing published", p)
		}
	}
	// Each transition went out after the group that wrote it was applied
	// and its commit began (aud:<audience>:<profile>:<seq>:<idx>). Not
	// after Committed: Pebble makes a batch visible inside Commit, before
	// it returns and the trace takes the time, and the publisher's poll
	// (or a kick from an earlier group) can read the rows in between.
	for _, p := range passes {
		for _, id := range p.MsgIDs {
			var seq uint64
			f := strings.Split(id, ":")
			if len(f) != 5 || f[0] != "aud" {
				continue
			}
			if _, err := fmt.Sscan(f[3], &seq); err != nil {
				t.Fatalf("message id %q: %v", id, err)
			}
			i := slices.IndexFunc(groups, func(g GroupTimes) bool { return g.First <= seq && seq <= g.Last })
			if i < 0 {
				t.Fatalf("no group traced for seq %d", seq)
			}
			if p.Sent.Before(groups[i].Applied) {
				t.Fatalf("%s sent at %v, before its group was applied at %v", id, p.Sent, groups[i].Applied)
			}
		}
	}
}
