package engine_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/aurumcdp/aurum/engine"
	"github.com/aurumcdp/aurum/event"
	"github.com/aurumcdp/aurum/internal/testnode"
	"github.com/aurumcdp/aurum/projections/audience"
)

// TestStatsHistory: the node samples its event rates and audience sizes on
// its own; after events are applied a sample shows them, and the history
// stays bounded by HistorySamples. A node restarted on the same data
// directory shows the samples of before its restart at once.
func TestStatsHistory(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	dir := t.TempDir()
	e := testnode.Engine(t, engine.Options{DataDir: dir, HistoryInterval: 20 * time.Millisecond, HistorySamples: 5})
	if _, err := e.Gate().CreateSource(ctx, "web"); err != nil {
		t.Fatal(err)
	}
	if _, err := e.PutAudience(ctx, audience.Definition{Name: "buyers", Rule: `count("Order Completed") >= 1`}); err != nil {
		t.Fatal(err)
	}
	var evs []event.Event
	for i := 0; i < 3; i++ {
		ev, err := event.Parse([]byte(fmt.Sprintf(`{"type":"track","event":"Order Completed","userId":"u%d","messageId":"m%d"}`, i, i)), "", e.Edge().ParseOptions())
		if err != nil {
			t.Fatal(err)
		}
		evs = append(evs, ev)
	}
	if err := e.Edge().Ingest(ctx, "web", evs); err != nil {
		t.Fatal(err)
	}
	var applied, ingested bool
	for ctx.Err() == nil {
		interval, samples := e.StatsHistory()
		if interval != 20*time.Millisecond || len(samples) > 5 {
			t.Fatalf("interval %v, %d samples", interval, len(samples))
		}
		for i, s := range samples {
			if i > 0 && s.Time.Before(samples[i-1].Time) {
				t.Fatalf("samples out of order: %v", samples)
			}
			applied = applied || s.EventsPerSecond > 0
			ingested = ingested || s.IngestedPerSecond > 0
		}
		if n := len(samples); n == 5 && applied && ingested && samples[n-1].Audiences["buyers"] == 3 && samples[n-1].Profiles == 3 {
			if err := e.Close(); err != nil {
				t.Fatal(err)
			}
			_, before := e.StatsHistory()
			// A long interval: no new sample comes before the check.
			again := testnode.Engine(t, engine.Options{DataDir: dir, HistoryInterval: time.Hour, HistorySamples: 5})
			var after []engine.StatsSample
			for ctx.Err() == nil { // the history loads as the node starts its loops
				if _, after = again.StatsHistory(); len(after) > 0 {
					break
				}
				time.Sleep(10 * time.Millisecond)
			}
			if len(after) != len(before) || !after[len(after)-1].Time.Equal(before[len(before)-1].Time) || after[len(after)-1].Audiences["buyers"] != 3 {
				t.Fatalf("after a restart: %+v\nbefore: %+v", after, before)
			}
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	_, samples := e.StatsHistory()
	t.Fatalf("no sample with the events (applied %v, ingested %v): %+v", applied, ingested, samples)
}
