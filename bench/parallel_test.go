package bench

import (
	"context"
	"runtime/pprof"
	"testing"
	"time"

	"github.com/aurumcdp/aurum/engine"
	"github.com/aurumcdp/aurum/projections"
	"github.com/aurumcdp/aurum/projections/audience"
	"github.com/aurumcdp/aurum/seal"
	"github.com/aurumcdp/aurum/store"
	"github.com/vmihailenco/msgpack/v5"
)

// applyGrouped applies log (after the eight example audiences) to a fresh
// state machine on Pebble as the engine's apply loop does under load: group
// entries per Pebble batch, the feature projection on with the engine's
// interaction keys. It returns the process CPU time and the wall time per
// event.
func applyGrouped(tb testing.TB, kr *seal.Keyring, log [][]byte, events, workers, group int) (cpu, wall time.Duration) {
	db, err := store.Open(tb.TempDir(), engine.StateStoreOptions(nil))
	if err != nil {
		tb.Fatal(err)
	}
	defer db.Close()
	sm := projections.New(projections.Options{Partitions: 16, Open: kr.Open, InteractionKey: engine.InteractionKey(kr), ApplyWorkers: workers})
	apply := groupApplier(tb, db, sm)
	cpu0, cpuOK := processCPU()
	start := time.Now()
	// Labelled for a CPU profile (-cpuprofile; pprof -tagfocus
	// apply=sequential or apply=parallel); the workers inherit the label.
	mode := "sequential"
	if workers > 1 {
		mode = "parallel"
	}
	pprof.Do(context.Background(), pprof.Labels("apply", mode), func(context.Context) {
		for i, data := range log {
			apply(projections.SubjectEvents, data, (i+1)%group == 0 || i == len(log)-1)
		}
	})
	wall = time.Since(start)
	cpu = wall
	if cpu1, ok := processCPU(); ok && cpuOK {
		cpu = cpu1 - cpu0
	}
	return cpu / time.Duration(events), wall / time.Duration(events)
}

// groupApplier puts the eight example audiences through sm into db (each
// committed) and returns apply, which applies the next log entry into the
// current Pebble batch and commits it when last (a group's end), as the
// engine's apply loop does.
func groupApplier(tb testing.TB, db *store.DB, sm *projections.StateMachine) func(subject string, data []byte, last bool) {
	seq := uint64(0)
	var batch *store.Batch
	apply := func(subject string, data []byte, last bool) {
		if batch == nil {
			batch = db.NewBatch()
		}
		seq++
		if _, err := sm.Apply(batch, seq, subject, data); err != nil {
			tb.Fatal(err)
		}
		if last {
			if err := db.Commit(batch, false); err != nil {
				tb.Fatal(err)
			}
			batch.Close()
			batch = nil
		}
	}
	for _, name := range sortedNames(exampleAudiences) {
		c, _ := msgpack.Marshal(&projections.Control{Kind: projections.ControlAudiencePut, Audience: audience.Definition{Name: name, Rule: exampleAudiences[name]}})
		apply(projections.SubjectControl, c, true)
	}
	return apply
}

// BenchmarkApplyParallel measures the partitions applied at once
// (projections.Options.ApplyWorkers, default) against one after the other
// (ApplyWorkers 1, the order before issue #15): the e-commerce log of
// BenchmarkApplyFeatures (40,000 events of 4,000 people in entries of 100)
// with the eight example audiences, 8 entries per Pebble batch. Each of
// b.N rounds (at least 5) applies it both ways in alternating order on fresh
// stores; it reports the medians of CPU per event and of wall-clock events/s
// and the medians of the per-round ratios (parallel / sequential). On a
// loaded machine the wall-clock gain cannot show: read the CPU figures.
func BenchmarkApplyParallel(b *testing.B) {
	const events, people, group = 40_000, 4_000, 8
	kr := benchKeyring(b)
	log := featuresLog(b, kr, people, events)
	workers := projections.DefaultApplyWorkers()
	rounds := max(b.N, 5)
	var seqCPU, parCPU, seqWall, parWall []time.Duration
	var cpuRatios, rateRatios []float64
	b.ResetTimer()
	for r := range rounds {
		var sc, sw, pc, pw time.Duration
		if r%2 == 0 {
			sc, sw = applyGrouped(b, kr, log, events, 1, group)
			pc, pw = applyGrouped(b, kr, log, events, workers, group)
		} else {
			pc, pw = applyGrouped(b, kr, log, events, workers, group)
			sc, sw = applyGrouped(b, kr, log, events, 1, group)
		}
		seqCPU, parCPU = append(seqCPU, sc), append(parCPU, pc)
		seqWall, parWall = append(seqWall, sw), append(parWall, pw)
		cpuRatios = append(cpuRatios, float64(pc)/float64(sc))
		rateRatios = append(rateRatios, float64(sw)/float64(pw))
		b.Logf("round %d: sequential %v CPU/event %.0f events/s; %d workers %v CPU/event %.0f events/s; CPU ratio %.3f, rate ratio %.3f",
			r, sc, 1/sw.Seconds(), workers, pc, 1/pw.Seconds(), cpuRatios[r], rateRatios[r])
	}
	b.ReportMetric(float64(median(seqCPU).Nanoseconds()), "cpu-ns/event-seq")
	b.ReportMetric(float64(median(parCPU).Nanoseconds()), "cpu-ns/event-par")
	b.ReportMetric(1/median(seqWall).Seconds(), "events/s-seq")
	b.ReportMetric(1/median(parWall).Seconds(), "events/s-par")
	b.ReportMetric(medianF(cpuRatios), "cpu-ratio")
	b.ReportMetric(medianF(rateRatios), "rate-ratio")
}
