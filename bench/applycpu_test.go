package bench

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"os"
	"runtime"
	"runtime/pprof"
	"testing"
	"time"

	"github.com/aurumcdp/aurum/engine"
	"github.com/aurumcdp/aurum/event"
	"github.com/aurumcdp/aurum/projections"
	"github.com/aurumcdp/aurum/seal"
	"github.com/aurumcdp/aurum/store"
)

// applyCPUMemoryLimit is the engine memory limit the apply-cost benchmark
// sizes its stores and caches for: the one `make bench` runs the engine
// with (bench -engine-memory-limit).
const applyCPUMemoryLimit = 320 << 20

// newPeopleLog is a log of event batches (100 events each) in which every
// event is the first of a new person: an order with revenue and two
// products, carrying a user id and an anonymous id, as a shop's first
// purchase does.
func newPeopleLog(tb testing.TB, kr *seal.Keyring, first, events int) [][]byte {
	var out [][]byte
	t0 := int64(1_780_000_000_000)
	for lo := 0; lo < events; lo += 100 {
		b := event.Batch{Received: t0 + int64(lo)}
		for i := lo; i < min(lo+100, events); i++ {
			p := first + i
			uid, anon, id := make([]byte, 16), make([]byte, 16), make([]byte, 16)
			copy(uid, fmt.Sprintf("u%015d", p))
			copy(anon, fmt.Sprintf("a%015d", p))
			copy(id, fmt.Sprintf("n%015d", i))
			prod := (i * 31) % 500
			props := map[string]any{"revenue": 120.0, "products": []any{
				map[string]any{"product_id": fmt.Sprint("sku-", prod), "category": fmt.Sprint("cat-", prod%40)},
				map[string]any{"product_id": fmt.Sprint("sku-", (prod+7)%500), "category": fmt.Sprint("cat-", (prod+7)%40)},
			}}
			b.Records = append(b.Records, event.Record{ID: id, MessageID: fmt.Sprint("n", i), Source: "web", Kind: event.Track,
				Event: "Order Completed", Time: t0 + int64(i), Received: b.Received, Key: uid,
				IDs: []event.IDRef{{Type: event.UserID, Hash: uid}, {Type: event.AnonymousID, Hash: anon}}, Properties: props})
		}
		out = append(out, sealedEntry(tb, kr, &b))
	}
	return out
}

// applyCPUStore applies warm (not measured) and then log to a fresh state
// machine on Pebble as the engine's apply loop does under load: the eight
// example audiences, the feature projection with the engine's interaction
// keys, the partitions at once, group entries per Pebble batch, the store
// and cache sizes of an engine at applyCPUMemoryLimit. It returns the
// process CPU time and the allocations (count and bytes) per event of log,
// and a SHA-256 over every key and value of the store at the end (outboxes
// included), which must not change with an optimisation.
func applyCPUStore(tb testing.TB, kr *seal.Keyring, warm, log [][]byte, events, group int) (cpu time.Duration, allocs, bytes float64, disk uint64, digest string) {
	mem := engine.MemorySizesFor(applyCPUMemoryLimit)
	// AURUM_BENCH_COMPRESSION (snappy, fastest, none) overrides the
	// store's compression, to measure it.
	db, err := store.Open(tb.TempDir(), &store.Options{CacheSize: mem.StateBlockCache, MemTableSize: mem.StateMemTable,
		Compression: store.Compression(os.Getenv("AURUM_BENCH_COMPRESSION"))})
	if err != nil {
		tb.Fatal(err)
	}
	closed := false
	defer func() {
		if !closed {
			db.Close()
		}
	}()
	opts := projections.Options{Partitions: 16,
		CacheBytes: mem.StateCache, DedupFilterBytes: mem.DedupFilter, KeychainFilterBytes: mem.KeychainFilter}
	if kr != nil {
		opts.Open, opts.InteractionKey = kr.Open, engine.InteractionKey(kr)
	} else { // AURUM_BENCH_PLAIN: nothing sealed, the digest is the same in every process
		opts.Open = func(_, sealed []byte) ([]byte, error) { return sealed, nil }
	}
	sm := projections.New(opts)
	apply := groupApplier(tb, db, sm)
	for i, data := range warm {
		apply(projections.SubjectEvents, data, (i+1)%group == 0 || i == len(warm)-1)
	}
	runtime.GC()
	var ms0, ms1 runtime.MemStats
	runtime.ReadMemStats(&ms0)
	cpu0, cpuOK := processCPU()
	start := time.Now()
	// Labelled for a CPU profile (-cpuprofile; pprof -tagfocus applycpu=).
	pprof.Do(context.Background(), pprof.Labels("applycpu", "measured"), func(context.Context) {
		for i, data := range log {
			apply(projections.SubjectEvents, data, (i+1)%group == 0 || i == len(log)-1)
		}
		// The background work the measured writes caused (flushes and
		// compactions) is part of their cost: wait for it.
		if err := db.Flush(); err != nil {
			tb.Fatal(err)
		}
	})
	cpu = time.Since(start)
	cpu1, ok := processCPU()
	if ok && cpuOK {
		cpu = cpu1 - cpu0
	}
	runtime.ReadMemStats(&ms1)
	disk = db.Metrics().DiskSpaceUsage
	h := sha256.New()
	var lenBuf [8]byte
	if err := db.Scan(nil, nil, false, func(k, v []byte) bool {
		binary.BigEndian.PutUint32(lenBuf[:4], uint32(len(k)))
		binary.BigEndian.PutUint32(lenBuf[4:], uint32(len(v)))
		h.Write(lenBuf[:])
		h.Write(k)
		h.Write(v)
		return true
	}); err != nil {
		tb.Fatal(err)
	}
	// Close waits for the compactions under way: theirs is work of the
	// measured writes too.
	c0, ok0 := processCPU()
	closed = true
	if err := db.Close(); err != nil {
		tb.Fatal(err)
	}
	if c1, ok1 := processCPU(); ok && cpuOK && ok0 && ok1 {
		cpu += c1 - c0
	}
	n := float64(events)
	return cpu / time.Duration(events), float64(ms1.Mallocs-ms0.Mallocs) / n, float64(ms1.TotalAlloc-ms0.TotalAlloc) / n,
		disk, hex.EncodeToString(h.Sum(nil))[:16]
}

// BenchmarkApplyCPU measures the apply path's cost per event for two
// workloads (issue #15, session 10): "new", 20,000 events each the first
// of a new person (an order with a user id and an anonymous id: two new
// identifiers, a new profile, audience entries); "returning", 20,000
// events of 2,000 people who were all seen before (a warm-up log, not
// measured, gave each one a view), the e-commerce mix of
// BenchmarkApplyFeatures. Both as the engine applies: see applyCPUStore.
// Each of b.N rounds (-benchtime Nx) applies both on fresh stores; it reports
// the medians of CPU, allocations and allocated bytes per event, and logs
// each round with a digest of the resulting store (keys and values,
// outboxes included): comparing two builds (old and new test binaries run
// in alternation, bench/RESULTS.md) it must be equal.
func BenchmarkApplyCPU(b *testing.B) {
	const events, people, group = 20_000, 2_000, 8
	// AURUM_BENCH_PLAIN=1: nothing sealed (no keyring), so that the
	// digests of two builds can be compared (sealing draws random nonces).
	var kr *seal.Keyring
	if os.Getenv("AURUM_BENCH_PLAIN") == "" {
		kr = benchKeyring(b)
	}
	fresh := newPeopleLog(b, kr, 0, events)
	warm := newPeopleLog(b, kr, 0, people)
	returning := featuresLog(b, kr, people, events)
	// featuresLog's people carry only a user id u<p>; newPeopleLog gave
	// them the same user ids, so every event of returning is of a known
	// person.
	rounds := b.N
	type figs struct {
		cpu            []time.Duration
		allocs, nbytes []float64
	}
	var nw, rt figs
	b.ResetTimer()
	for r := range rounds {
		c, a, by, disk, d := applyCPUStore(b, kr, nil, fresh, events, group)
		nw.cpu, nw.allocs, nw.nbytes = append(nw.cpu, c), append(nw.allocs, a), append(nw.nbytes, by)
		b.Logf("round %d new:       %v CPU/event, %.0f allocs/event, %.0f B/event, %.1f MB on disk, digest %s", r, c, a, by, float64(disk)/1e6, d)
		c, a, by, disk, d = applyCPUStore(b, kr, warm, returning, events, group)
		rt.cpu, rt.allocs, rt.nbytes = append(rt.cpu, c), append(rt.allocs, a), append(rt.nbytes, by)
		b.Logf("round %d returning: %v CPU/event, %.0f allocs/event, %.0f B/event, %.1f MB on disk, digest %s", r, c, a, by, float64(disk)/1e6, d)
	}
	b.ReportMetric(float64(median(nw.cpu).Nanoseconds()), "cpu-ns/event-new")
	b.ReportMetric(medianF(nw.allocs), "allocs/event-new")
	b.ReportMetric(medianF(nw.nbytes), "B/event-new")
	b.ReportMetric(float64(median(rt.cpu).Nanoseconds()), "cpu-ns/event-returning")
	b.ReportMetric(medianF(rt.allocs), "allocs/event-returning")
	b.ReportMetric(medianF(rt.nbytes), "B/event-returning")
}
