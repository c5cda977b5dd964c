package engine_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/aurumcdp/aurum/auth"
	"github.com/aurumcdp/aurum/engine"
	"github.com/aurumcdp/aurum/event"
	"github.com/aurumcdp/aurum/projections/audience"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// TestOutputsAfterStateRollback: the live state store goes back to an
// older copy of itself, which is what a crash between two checkpoints does
// to a store without a write-ahead log (engine.Options.StateWAL false), and
// the engine applies the log again from there. The transitions it derives
// again must not be published a second time, also when AURUM_OUT's
// duplicate window has passed (the publisher's progress recorded on the
// log stops them), and the transitions of later events must still go out.
func TestOutputsAfterStateRollback(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	dir := t.TempDir()
	const window = 2 * time.Second
	open := func() *engine.Engine {
		t.Helper()
		e, err := engine.Open(ctx, engine.Options{DataDir: dir, NATSListen: "127.0.0.1:-1", TickPeriod: -1,
			OutDuplicateWindow: window})
		if err != nil {
			t.Fatal(err)
		}
		return e
	}
	buy := func(e *engine.Engine, from, to int) { t.Helper(); ingestOrders(ctx, t, e, from, to) }
	// entries waits until AURUM_OUT holds want audience transitions (and
	// no more arrive for a second), and returns their message ids.
	entries := func(e *engine.Engine, want int) []string {
		t.Helper()
		js, err := jetstream.New(natsReader(t, e, auth.RoleViewer))
		if err != nil {
			t.Fatal(err)
		}
		cons, err := js.OrderedConsumer(ctx, "AURUM_OUT", jetstream.OrderedConsumerConfig{FilterSubjects: []string{"aurum.audience.>"}})
		if err != nil {
			t.Fatal(err)
		}
		var ids []string
		deadline := time.Now().Add(20 * time.Second)
		for time.Now().Before(deadline) {
			msg, err := cons.Next(jetstream.FetchMaxWait(time.Second))
			if errors.Is(err, jetstream.ErrNoMessages) || errors.Is(err, nats.ErrTimeout) {
				if len(ids) >= want {
					break
				}
				continue
			}
			if err != nil {
				t.Fatal(err)
			}
			ids = append(ids, msg.Headers().Get(jetstream.MsgIDHeader))
		}
		return ids
	}

	e := open()
	if _, err := e.Gate().CreateSource(ctx, "web"); err != nil {
		t.Fatal(err)
	}
	if _, err := e.PutAudience(ctx, audience.Definition{Name: "buyers", Rule: `count("Order Completed") >= 1`}); err != nil {
		t.Fatal(err)
	}
	buy(e, 1, 2)
	if got := entries(e, 2); len(got) != 2 {
		t.Fatalf("before the copy: %d transitions published, want 2: %v", len(got), got)
	}
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	state := filepath.Join(dir, "state")
	backup := filepath.Join(t.TempDir(), "state")
	if err := os.CopyFS(backup, os.DirFS(state)); err != nil {
		t.Fatal(err)
	}

	e = open()
	buy(e, 3, 5)
	if got := entries(e, 5); len(got) != 5 {
		t.Fatalf("after more orders: %d transitions published, want 5: %v", len(got), got)
	}
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	// The rollback: the state as it was before orders 3-5 were applied
	// and their transitions published.
	if err := os.RemoveAll(state); err != nil {
		t.Fatal(err)
	}
	if err := os.CopyFS(state, os.DirFS(backup)); err != nil {
		t.Fatal(err)
	}
	time.Sleep(window + 500*time.Millisecond) // AURUM_OUT would take the same ids again

	e = open()
	defer e.Close()
	if err := e.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	buy(e, 6, 6)
	got := entries(e, 6)
	seen := map[string]int{}
	for _, id := range got {
		seen[id]++
	}
	if len(got) != 6 || len(seen) != 6 {
		t.Fatalf("after the rollback: %d transitions published (%d distinct), want each of 6 once: %v", len(got), len(seen), got)
	}
	p, err := e.Reader().Profile("user_id:u4")
	if err != nil {
		t.Fatal(err)
	}
	if _, in := p.Audiences["buyers"]; len(p.Audiences) != 1 || !in {
		t.Fatalf("u4 after the rollback: audiences %v, want [buyers] (the log applied again)", p.Audiences)
	}
}

// ingestOrders ingests an "Order Completed" of user u<i> (message id m<i>)
// for i in [from, to] on source web, in one append, and waits until the
// engine applied it.
func ingestOrders(ctx context.Context, t *testing.T, e *engine.Engine, from, to int) {
	t.Helper()
	var evs []event.Event
	for i := from; i <= to; i++ {
		ev, err := event.Parse(fmt.Appendf(nil, `{"type":"track","event":"Order Completed","userId":"u%d","messageId":"m%d","properties":{"revenue":10}}`, i, i), "", e.Edge().ParseOptions())
		if err != nil {
			t.Fatal(err)
		}
		evs = append(evs, ev)
	}
	if err := e.Edge().Ingest(ctx, "web", evs); err != nil {
		t.Fatal(err)
	}
	if err := e.Sync(ctx); err != nil {
		t.Fatal(err)
	}
}
