package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"runtime"
	"slices"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/aurumcdp/aurum/auth"
	"github.com/aurumcdp/aurum/engine"
	"github.com/aurumcdp/aurum/engine/outbox"
	"github.com/aurumcdp/aurum/engine/query"
	"github.com/aurumcdp/aurum/event"
	"github.com/aurumcdp/aurum/internal/check"
	"github.com/aurumcdp/aurum/internal/testnode"
	"github.com/aurumcdp/aurum/projections"
	"github.com/aurumcdp/aurum/projections/audience"
	"github.com/aurumcdp/aurum/seal"
	"github.com/aurumcdp/aurum/store"
	"github.com/nats-io/nats.go"
	"github.com/vmihailenco/msgpack/v5"
)

// exampleAudiences are the product's eight example audiences, as `aurum
// demo` installs them (cmd/aurum/demo.go) and docs/rules.md lists them
// (TestExampleAudiencesAreTheDocs checks the rules against the docs).
var exampleAudiences = map[string]string{
	"buyers-no-returns": `count("Order Completed", "90d") >= 1 and count("Order Refunded", "90d") == 0`,
	"high-spenders":     `sum("Order Completed", "revenue", "365d") >= 1000`,
	"lapsed":            `count("Order Completed") >= 2 and days_since("Order Completed") > 90`,
	"browsers":          `count("Product Viewed", "7d") >= 5 and count("Order Completed", "30d") == 0`,
	"loyalty":           `traits.loyalty_tier in ["gold", "platinum"] and traits.country == "DK"`,
	"claimers":          `count("Order Refunded", "180d", properties.reason == "damaged") >= 2`,
	"cart-abandoners":   `funnel(["Product Viewed", "Product Added"], "2h") and count("Order Completed", "1d") == 0`,
	"vip":               `in_audience("high-spenders") and not in_audience("claimers")`,
}

// smLog builds a log of event batches (100 events each) for people, with
// views, adds, orders and refunds; identifiers are pre-hashed; properties
// sealed with kr (nil: the identity, see sealedEntry).
func smLog(tb testing.TB, kr *seal.Keyring, people, events int) [][]byte {
	names := []string{"Product Viewed", "Product Viewed", "Product Added", "Order Completed", "Order Refunded"}
	var out [][]byte
	t0 := int64(1_780_000_000_000)
	for lo := 0; lo < events; lo += 100 {
		b := event.Batch{Received: t0 + int64(lo)*1000}
		for i := lo; i < min(lo+100, events); i++ {
			p := (i * 7919) % people
			h := make([]byte, 16)
			copy(h, fmt.Sprintf("u%015d", p))
			id := make([]byte, 16)
			copy(id, fmt.Sprintf("e%015d", i))
			ids := []event.IDRef{{Type: event.UserID, Hash: h}}
			b.Records = append(b.Records, event.Record{ID: id, MessageID: fmt.Sprint(i), Source: "web", Kind: event.Track,
				Event: names[i%len(names)], Time: t0 + int64(i)*1000, Received: b.Received, Key: h, IDs: ids,
				Properties: map[string]any{"revenue": 120.0, "reason": []string{"damaged", "wrong_size"}[i%2]}})
		}
		out = append(out, sealedEntry(tb, kr, &b))
	}
	return out
}

// benchApply applies a synthetic log to a state machine on Pebble, with or
// without the example audiences, and reports the cost per event.
func benchApply(b *testing.B, withAudiences bool, cacheBytes ...int) {
	db, err := store.Open(b.TempDir(), nil)
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	kr := benchKeyring(b) // as the engine: properties sealed, opened by Apply
	opts := projections.Options{Partitions: 16, Open: kr.Open}
	if len(cacheBytes) > 0 {
		opts.CacheBytes = cacheBytes[0]
	}
	sm := projections.New(opts)
	seq := uint64(0)
	apply := func(subject string, data []byte) {
		seq++
		batch := db.NewBatch()
		defer batch.Close()
		if _, err := sm.Apply(batch, seq, subject, data); err != nil {
			b.Fatal(err)
		}
		if err := db.Commit(batch, false); err != nil {
			b.Fatal(err)
		}
	}
	if withAudiences {
		for _, name := range sortedNames(exampleAudiences) {
			c, _ := msgpack.Marshal(&projections.Control{Kind: projections.ControlAudiencePut, Audience: audience.Definition{Name: name, Rule: exampleAudiences[name]}})
			apply(projections.SubjectControl, c)
		}
	}
	n := max(b.N, 100)
	log := smLog(b, kr, max(n/20, 10), n)
	b.ResetTimer()
	cpu0, cpuOK := processCPU()
	start := time.Now()
	for _, data := range log {
		apply(projections.SubjectEvents, data)
	}
	d := time.Since(start)
	b.ReportMetric(float64(d.Nanoseconds())/float64(n), "ns/event")
	if cpu1, ok := processCPU(); ok && cpuOK {
		b.ReportMetric(float64((cpu1-cpu0).Nanoseconds())/float64(n), "cpu-ns/event")
	}
	if st := sm.CacheStats(); st.Hits+st.Misses > 0 {
		b.ReportMetric(100*float64(st.Hits)/float64(st.Hits+st.Misses), "cache-hit-%")
	}
	reportRate(b, n, d)
}

func sortedNames(m map[string]string) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// BenchmarkApplyNoAudiences is the baseline of BenchmarkApplyAudiences: the
// state machine (dedup, identity, GCR) without audiences.
func BenchmarkApplyNoAudiences(b *testing.B) { benchApply(b, false) }

// BenchmarkApplyAudiences applies the same log with the eight example
// audiences: the difference is the cost of incremental rule evaluation.
func BenchmarkApplyAudiences(b *testing.B) { benchApply(b, true) }

// BenchmarkApplyNoCache and BenchmarkApplyAudiencesNoCache are the two
// above without the state machine's state cache (projections.Options.CacheBytes).
func BenchmarkApplyNoCache(b *testing.B)          { benchApply(b, false, -1) }
func BenchmarkApplyAudiencesNoCache(b *testing.B) { benchApply(b, true, -1) }

// transitionLatency offers rate orders/s (each from a new person, so each
// makes one "entered" transition) for d and measures, per transition, the
// time from Ingest's return (accepted, durable) to the subscriber receiving
// it on NATS. It returns the quantiles, the transitions received and the
// rate actually offered (events sent ÷ the time taken to send them: a
// loaded machine may not keep up with rate).
func transitionLatency(tb testing.TB, rate int, d time.Duration) (p50, p99, p999 time.Duration, n int, offered float64) {
	o := runLatency(tb, latencyConfig{rate: rate, d: d})
	return o.q(0.50), o.q(0.99), o.q(0.999), len(o.lat), o.offered
}

// latencyConfig is one run of runLatency.
type latencyConfig struct {
	rate int
	d    time.Duration
	// engine are the engine's options (TickPeriod 0: no ticks; Trace is
	// set by runLatency when trace is).
	engine engine.Options
	// trace records the stages of each transition (latencyOutcome.stages).
	trace bool
}

// latencyOutcome is what runLatency measured.
type latencyOutcome struct {
	lat     []time.Duration // accepted → subscriber, sorted
	offered float64         // events/s sent
	start   time.Time       // the first tick
	// With latencyConfig.trace: per transition, in lat's order of arrival.
	transitions []transitionTimes
	groups      []engine.GroupTimes
	passes      []outbox.PassTimes
	stalls      []storeEvent
	flushes     []storeEvent
	compactions []storeEvent
	syncs       []storeEvent // of the state's WAL
	wals        []time.Time  // new WAL files of the state (memtable rotations)
	gcs         []time.Time  // GC pause ends during the run
}

// q is lat's quantile f.
func (o latencyOutcome) q(f float64) time.Duration {
	return o.lat[min(len(o.lat)-1, int(f*float64(len(o.lat))))]
}

// transitionTimes are one transition's times (runLatency with trace).
type transitionTimes struct {
	accepted, arrived time.Time
	seq               uint64 // log position of its event's entry
	msgID             string
}

// storeEvent is a write stall, flush or compaction of the live state store.
type storeEvent struct {
	at     time.Time // its end
	d      time.Duration
	bytes  uint64
	reason string
}

// runLatency offers c.rate orders/s (each from a new person, so each makes
// one "entered" transition) for c.d and measures, per transition, the time
// from Ingest's return (accepted, durable) to the subscriber receiving it
// on NATS; with c.trace also the engine's stages (engine.Trace).
func runLatency(tb testing.TB, c latencyConfig) latencyOutcome {
	ctx := context.Background()
	var (
		tmu sync.Mutex
		out latencyOutcome
	)
	eo := c.engine
	if eo.TickPeriod == 0 {
		eo.TickPeriod = -1
	}
	if c.trace {
		stall := time.Time{}
		stallReason := ""
		eo.Trace = &engine.Trace{
			Group: func(g engine.GroupTimes) { tmu.Lock(); out.groups = append(out.groups, g); tmu.Unlock() },
			Pass: func(p outbox.PassTimes) {
				p.MsgIDs = slices.Clone(p.MsgIDs)
				tmu.Lock()
				out.passes = append(out.passes, p)
				tmu.Unlock()
			},
			StateStall: func(begin bool, reason string) {
				now := time.Now()
				tmu.Lock()
				defer tmu.Unlock()
				if begin {
					stall, stallReason = now, reason
				} else if !stall.IsZero() {
					out.stalls = append(out.stalls, storeEvent{at: now, d: now.Sub(stall), reason: stallReason})
				}
			},
			StateFlush: func(n uint64, d time.Duration) {
				tmu.Lock()
				out.flushes = append(out.flushes, storeEvent{at: time.Now(), d: d, bytes: n})
				tmu.Unlock()
			},
			StateWAL: func() {
				tmu.Lock()
				out.wals = append(out.wals, time.Now())
				tmu.Unlock()
			},
			StateSync: func(start time.Time, d time.Duration) {
				tmu.Lock()
				out.syncs = append(out.syncs, storeEvent{at: start.Add(d), d: d})
				tmu.Unlock()
			},
			StateCompaction: func(level int, n uint64, d time.Duration) {
				tmu.Lock()
				out.compactions = append(out.compactions, storeEvent{at: time.Now(), d: d, bytes: n, reason: fmt.Sprintf("L%d", level)})
				tmu.Unlock()
			},
		}
	}
	node := testnode.Start(tb, testnode.Options{Engine: eo})
	defer node.Close()
	e := node.Engine
	if _, err := e.Gate().CreateSource(ctx, "web"); err != nil {
		tb.Fatal(err)
	}
	if _, err := e.PutAudience(ctx, audience.Definition{Name: "buyers", Rule: `count("Order Completed", "1d") >= 1`}); err != nil {
		tb.Fatal(err)
	}
	viewer, _, err := e.Gate().CreateToken(ctx, "bench", auth.RoleViewer, time.Time{})
	if err != nil {
		tb.Fatal(err)
	}
	nc, err := nats.Connect(e.NATSURL(), nats.Token(viewer))
	if err != nil {
		tb.Fatal(err)
	}
	defer nc.Close()
	type arrival struct {
		at    time.Time
		seq   uint64
		msgID string
	}
	var mu sync.Mutex
	accepted := map[string]time.Time{}
	arrived := map[string]arrival{}
	sub, err := nc.Subscribe("aurum.audience.buyers.entered", func(m *nats.Msg) {
		now := time.Now()
		var tr struct {
			Identifiers map[string][]string `json:"identifiers"`
			Seq         uint64              `json:"seq"`
		}
		if json.Unmarshal(m.Data, &tr) != nil || len(tr.Identifiers["user_id"]) == 0 {
			return
		}
		mu.Lock()
		// The transition can arrive before Ingest returned to the
		// producer (accepted not yet recorded): its arrival waits.
		arrived[tr.Identifiers["user_id"][0]] = arrival{at: now, seq: tr.Seq, msgID: m.Header.Get(nats.MsgIdHdr)}
		mu.Unlock()
	})
	if err != nil {
		tb.Fatal(err)
	}
	defer sub.Unsubscribe()
	var gc0 runtime.MemStats
	runtime.ReadMemStats(&gc0)
	const tick = 10 * time.Millisecond
	perTick := max(1, c.rate*int(tick)/int(time.Second))
	total := 0
	start := time.Now()
	out.start = start
	for next := start; time.Since(start) < c.d; next = next.Add(tick) {
		time.Sleep(time.Until(next))
		evs := make([]event.Event, perTick)
		users := make([]string, perTick)
		for i := range evs {
			users[i] = fmt.Sprintf("lat-%d", total+i)
			raw := fmt.Sprintf(`{"type":"track","event":"Order Completed","userId":%q,"messageId":%q,"properties":{"revenue":5}}`, users[i], users[i])
			if evs[i], err = event.Parse([]byte(raw), "", e.Edge().ParseOptions()); err != nil {
				tb.Fatal(err)
			}
		}
		if err := e.Edge().Ingest(ctx, "web", evs); err != nil {
			tb.Fatal(err)
		}
		t := time.Now()
		mu.Lock()
		for _, u := range users {
			accepted[u] = t
		}
		mu.Unlock()
		total += perTick
	}
	out.offered = float64(total) / time.Since(start).Seconds()
	// At most 30 s; the latencies of what arrived by then are reported.
	_ = check.Poll(30*time.Second, 20*time.Millisecond, func() error {
		mu.Lock()
		defer mu.Unlock()
		if len(arrived) < total {
			return fmt.Errorf("%d of %d transitions", len(arrived), total)
		}
		return nil
	})
	var gc1 runtime.MemStats
	runtime.ReadMemStats(&gc1)
	for i := gc0.NumGC; i < gc1.NumGC && gc1.NumGC-i <= uint32(len(gc1.PauseEnd)); i++ {
		out.gcs = append(out.gcs, time.Unix(0, int64(gc1.PauseEnd[i%uint32(len(gc1.PauseEnd))])))
	}
	mu.Lock()
	defer mu.Unlock()
	for u, a := range arrived {
		if t, ok := accepted[u]; ok {
			out.lat = append(out.lat, max(0, a.at.Sub(t))) // before Ingest returned: 0
			if c.trace {
				out.transitions = append(out.transitions, transitionTimes{accepted: t, arrived: a.at, seq: a.seq, msgID: a.msgID})
			}
		}
	}
	if len(out.lat) == 0 {
		tb.Fatal("no transition received")
	}
	slices.Sort(out.lat)
	tmu.Lock() // the engine is still running: its trace may still be called
	defer tmu.Unlock()
	res := out
	res.groups, res.passes = slices.Clone(out.groups), slices.Clone(out.passes)
	res.stalls, res.flushes, res.compactions = slices.Clone(out.stalls), slices.Clone(out.flushes), slices.Clone(out.compactions)
	res.syncs, res.wals = slices.Clone(out.syncs), slices.Clone(out.wals)
	return res
}

func BenchmarkTransitionLatency1k(b *testing.B) {
	p50, p99, p999, n, _ := transitionLatency(b, 1000, 3*time.Second)
	b.ReportMetric(float64(p50.Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(p99.Microseconds())/1000, "p99-ms")
	b.ReportMetric(float64(p999.Microseconds())/1000, "p99.9-ms")
	b.ReportMetric(float64(n), "transitions")
}

// BenchmarkTransitionLatency10k is the issue #15 target rate (p99 ≤ 25 ms).
func BenchmarkTransitionLatency10k(b *testing.B) {
	p50, p99, p999, n, _ := transitionLatency(b, latencyTargetRate, 3*time.Second)
	b.ReportMetric(float64(p50.Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(p99.Microseconds())/1000, "p99-ms")
	b.ReportMetric(float64(p999.Microseconds())/1000, "p99.9-ms")
	b.ReportMetric(float64(n), "transitions")
}

func BenchmarkTransitionLatency3k(b *testing.B) {
	p50, p99, p999, n, _ := transitionLatency(b, 3000, 3*time.Second)
	b.ReportMetric(float64(p50.Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(p99.Microseconds())/1000, "p99-ms")
	b.ReportMetric(float64(p999.Microseconds())/1000, "p99.9-ms")
	b.ReportMetric(float64(n), "transitions")
}

// BenchmarkPreview measures POST /v1/audiences/preview's work: a new rule
// evaluated over every profile of a state built from people × 2 events
// (its aggregates come from each profile's event history).
func BenchmarkPreview(b *testing.B) { benchPreview(b, 50_000, 0) }

// BenchmarkPreviewMillion: a million profiles, the preview evaluating its
// default sample (query.PreviewExactLimit) and estimating the size.
// Building the state takes minutes: run it on purpose
// (go test -run '^$' -bench PreviewMillion -benchtime 3x ./bench).
func BenchmarkPreviewMillion(b *testing.B) { benchPreview(b, 1_000_000, query.PreviewExactLimit) }

func benchPreview(b *testing.B, people, maxEval int) {
	db, err := store.Open(b.TempDir(), nil)
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	sm := projections.New(projections.Options{Partitions: 16, Open: openIdentity})
	for i, data := range smLog(b, nil, people, 2*people) {
		batch := db.NewBatch()
		if _, err := sm.Apply(batch, uint64(i+1), projections.SubjectEvents, data); err != nil {
			b.Fatal(err)
		}
		if err := db.Commit(batch, false); err != nil {
			b.Fatal(err)
		}
		batch.Close()
	}
	set, err := audience.Compile([]audience.Definition{{Name: "p", Rule: `count("Order Completed", "30d") >= 1 or count("Product Viewed", "7d") >= 2`, Version: 1}})
	if err != nil {
		b.Fatal(err)
	}
	now, _ := projections.LogClock(db)
	b.ResetTimer()
	start := time.Now()
	var res projections.PreviewResult
	for range b.N {
		snap := db.NewSnapshot()
		res, err = sm.Preview(readOnly{snap}, set, now, 10, maxEval)
		snap.Close()
		if err != nil {
			b.Fatal(err)
		}
	}
	per := time.Since(start) / time.Duration(b.N)
	b.ReportMetric(float64(per.Milliseconds()), "ms/preview")
	b.ReportMetric(float64(per.Nanoseconds())/float64(res.Evaluated)/1000, "µs/evaluated")
	b.ReportMetric(float64(res.Size), "members")
	b.ReportMetric(float64(res.Margin), "margin")
	b.ReportMetric(float64(res.Evaluated), "evaluated")
}

// readOnly adapts a snapshot to the ReadWriter Preview takes.
type readOnly struct{ store.Reader }

func (readOnly) Set(_, _ []byte) error { return nil }
func (readOnly) Delete(_ []byte) error { return nil }
