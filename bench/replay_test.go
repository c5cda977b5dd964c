package bench

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/aurumcdp/aurum/engine"
	"github.com/aurumcdp/aurum/event"
	"github.com/aurumcdp/aurum/internal/testnode"
	wlg "github.com/aurumcdp/aurum/internal/workload"
	"github.com/aurumcdp/aurum/projections/audience"
)

// BenchmarkReplay measures engine.Replay (offline, from the first log
// entry) of a stopped node's log of workload events with the eight example
// audiences, and reports events/s and CPU per event. The log is built once
// into $AURUM_BENCH_REPLAY_DIR (reused when it exists, so that binaries
// built from different commits replay the same log; default: a temporary
// directory) from $AURUM_BENCH_REPLAY_EVENTS events (default 20000) ingested
// $AURUM_BENCH_REPLAY_PER_ENTRY per log entry (default 200).
func BenchmarkReplay(b *testing.B) {
	ctx := context.Background()
	dir := os.Getenv("AURUM_BENCH_REPLAY_DIR")
	if dir == "" {
		dir = b.TempDir()
	}
	events := readOrBuildReplayLog(b, ctx, dir)
	b.ResetTimer()
	for range b.N {
		cpu0, cpuOK := processCPU()
		start := time.Now()
		res, err := engine.Replay(ctx, engine.ReplayOptions{DataDir: dir})
		if err != nil {
			b.Fatal(err)
		}
		d := time.Since(start)
		if res.Applied == 0 {
			b.Fatal("replay applied nothing")
		}
		b.ReportMetric(float64(events)/d.Seconds(), "events/s")
		if cpu1, ok := processCPU(); ok && cpuOK {
			b.ReportMetric(float64((cpu1-cpu0).Nanoseconds())/float64(events), "cpu-ns/event")
		}
	}
}

func readOrBuildReplayLog(b testing.TB, ctx context.Context, dir string) int {
	countFile := filepath.Join(dir, "bench-events")
	if data, err := os.ReadFile(countFile); err == nil {
		n, err := strconv.Atoi(string(data))
		if err != nil {
			b.Fatal(err)
		}
		return n
	}
	want := envInt("AURUM_BENCH_REPLAY_EVENTS", 20_000)
	perEntry := envInt("AURUM_BENCH_REPLAY_PER_ENTRY", 200)
	node := testnode.Start(b, testnode.Options{Engine: engine.Options{DataDir: dir, TickPeriod: -1}})
	defer node.Close()
	e := node.Engine
	for _, name := range sortedNames(exampleAudiences) {
		if _, err := e.PutAudience(ctx, audience.Definition{Name: name, Rule: exampleAudiences[name]}); err != nil {
			b.Fatal(err)
		}
	}
	for _, s := range wlg.Sources {
		if _, err := e.Gate().CreateSource(ctx, s); err != nil {
			b.Fatal(err)
		}
	}
	g := wlg.New(wlg.Config{People: max(want/20, 10), Seed: 4, Days: 30})
	pending := map[string][]event.Event{}
	n := 0
	flush := func(src string) {
		if len(pending[src]) == 0 {
			return
		}
		if err := e.Edge().Ingest(ctx, src, pending[src]); err != nil {
			b.Fatal(err)
		}
		pending[src] = pending[src][:0]
	}
	for n < want {
		ev, ok := g.Next()
		if !ok {
			break
		}
		parsed, err := event.Parse(ev.JSON, "", e.Edge().ParseOptions())
		if err != nil {
			continue // the workload's invalid events go to dead letters at the edge
		}
		pending[ev.Source] = append(pending[ev.Source], parsed)
		if n++; len(pending[ev.Source]) >= perEntry {
			flush(ev.Source)
		}
	}
	for _, s := range wlg.Sources {
		flush(s)
	}
	if err := e.Sync(ctx); err != nil {
		b.Fatal(err)
	}
	if err := e.Close(); err != nil {
		b.Fatal(err)
	}
	if err := os.WriteFile(countFile, []byte(strconv.Itoa(n)), 0o644); err != nil {
		b.Fatal(err)
	}
	return n
}
