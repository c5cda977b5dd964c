// Package bench measures Aurum against the physical limits of the machine:
// every figure is reported beside a baseline measured in the same run (raw
// JetStream publish), because shared machines are noisy.
//
//	make bench    (go test -run TestReport -report ./bench)
package bench

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sort"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aurumcdp/aurum/api"
	"github.com/aurumcdp/aurum/engine"
	"github.com/aurumcdp/aurum/event"
	"github.com/aurumcdp/aurum/internal/testnode"
	alog "github.com/aurumcdp/aurum/log"
)

const (
	batchSize   = 100 // events per ingest call / HTTP request
	concurrency = 8   // concurrent producers
)

// workload makes Segment JSON events for people: anonymous browsing, logins
// with user ids, identifies with emails, orders.
func workload(people, n int) [][]byte {
	out := make([][]byte, n)
	for i := range n {
		p := (i * 7919) % people
		ev := map[string]any{"messageId": fmt.Sprintf("b-%d", i), "anonymousId": fmt.Sprintf("anon-%d", p),
			"timestamp": time.Date(2026, 11, 1, 0, 0, i%86400, 0, time.UTC).Format(time.RFC3339)}
		switch i % 4 {
		case 0:
			ev["type"], ev["event"] = "track", "Product Viewed"
			ev["properties"] = map[string]any{"sku": fmt.Sprintf("SKU-%d", i%500), "price": 19.99, "category": "shoes"}
		case 1:
			ev["type"], ev["name"] = "page", "Product"
			ev["context"] = map[string]any{"page": map[string]any{"url": "https://shop.example/p/1"}, "userAgent": "Mozilla/5.0"}
		case 2:
			ev["type"], ev["userId"] = "identify", fmt.Sprintf("user-%d", p)
			ev["traits"] = map[string]any{"email": fmt.Sprintf("person%d@example.com", p), "name": "Person", "plan": "gold"}
		case 3:
			ev["type"], ev["event"], ev["userId"] = "track", "Order Completed", fmt.Sprintf("user-%d", p)
			ev["properties"] = map[string]any{"revenue": 42.5, "order_id": fmt.Sprintf("o-%d", i)}
		}
		out[i], _ = json.Marshal(ev)
	}
	return out
}

func parseAll(b testing.TB, raw [][]byte) []event.Event {
	evs := make([]event.Event, len(raw))
	for i, r := range raw {
		ev, err := event.Parse(r, "", event.ParseOptions{Now: time.Now()})
		if err != nil {
			b.Fatalf("workload event %d: %v", i, err)
		}
		evs[i] = ev
	}
	return evs
}

func openEngine(b testing.TB, fsyncAlways bool) *engine.Engine {
	b.Helper()
	e := testnode.Engine(b, engine.Options{FsyncAlways: fsyncAlways})
	return e
}

// runParallel splits n items into chunks of size and runs fn on them from
// concurrency goroutines.
func runParallel(n, size int, fn func(lo, hi int) error) error {
	var next atomic.Int64
	var wg sync.WaitGroup
	var firstErr error
	var once sync.Once
	for range concurrency {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				lo := int(next.Add(int64(size))) - size
				if lo >= n {
					return
				}
				if err := fn(lo, min(lo+size, n)); err != nil {
					once.Do(func() { firstErr = err })
					return
				}
			}
		}()
	}
	wg.Wait()
	return firstErr
}

func reportRate(b *testing.B, events int, d time.Duration) {
	b.ReportMetric(float64(events)/d.Seconds(), "events/s")
}

// cpuMeter reports the process CPU time per event since it was started
// (cpu-ns/event): on a shared machine it is steadier than wall time. It
// counts every goroutine of the process (server, engine, apply loop).
type cpuMeter struct {
	cpu0 time.Duration
	ok   bool
}

func startCPU() cpuMeter {
	c, ok := processCPU()
	return cpuMeter{cpu0: c, ok: ok}
}

func (m cpuMeter) report(b *testing.B, events int) {
	if c, ok := processCPU(); ok && m.ok && events > 0 {
		b.ReportMetric(float64((c-m.cpu0).Nanoseconds())/float64(events), "cpu-ns/event")
	}
}

// BenchmarkJetStreamPublish is the baseline: one JetStream message per event
// (the event's JSON), with a message id, published asynchronously by
// concurrent producers, all acknowledged — the raw cost of the log.
func BenchmarkJetStreamPublish(b *testing.B) {
	benchJetStream(b, alog.FsyncDefault)
}

func BenchmarkJetStreamPublishFsyncAlways(b *testing.B) {
	benchJetStream(b, alog.FsyncAlways)
}

func benchJetStream(b *testing.B, mode alog.FsyncMode) {
	l, err := alog.Open(context.Background(), alog.Options{Dir: b.TempDir(), Listen: "127.0.0.1:-1", Fsync: mode})
	if err != nil {
		b.Fatal(err)
	}
	defer l.Close()
	raw := workload(10_000, 10_000)
	b.ResetTimer()
	cpu := startCPU()
	start := time.Now()
	err = runParallel(b.N, batchSize, func(lo, hi int) error {
		futs := make([]*alog.Future, 0, hi-lo)
		for i := lo; i < hi; i++ {
			f, err := l.AppendAsync("aurum.log.bench", fmt.Sprintf("m-%d", i), raw[i%len(raw)])
			if err != nil {
				return err
			}
			futs = append(futs, f)
		}
		for _, f := range futs {
			if _, _, err := f.Wait(context.Background()); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		b.Fatal(err)
	}
	reportRate(b, b.N, time.Since(start))
	cpu.report(b, b.N)
}

// BenchmarkIngest measures the ingest edge, (*ingest.Edge).Ingest (seal,
// group commit, durable append), from concurrent producers, events already
// parsed.
func BenchmarkIngest(b *testing.B)            { benchIngest(b, false) }
func BenchmarkIngestFsyncAlways(b *testing.B) { benchIngest(b, true) }

func benchIngest(b *testing.B, fsyncAlways bool) {
	e := openEngine(b, fsyncAlways)
	if _, err := e.Gate().CreateSource(context.Background(), "web"); err != nil {
		b.Fatal(err)
	}
	evs := parseAll(b, workload(10_000, 20_000))
	b.ResetTimer()
	cpu := startCPU()
	start := time.Now()
	err := runParallel(b.N, batchSize, func(lo, hi int) error {
		batch := make([]event.Event, 0, hi-lo)
		for i := lo; i < hi; i++ {
			ev := evs[i%len(evs)]
			ev.MessageID = fmt.Sprintf("i-%d", i)
			batch = append(batch, ev)
		}
		return e.Edge().Ingest(context.Background(), "web", batch)
	})
	if err != nil {
		b.Fatal(err)
	}
	reportRate(b, b.N, time.Since(start))
	cpu.report(b, b.N)
}

// httpBodies pre-encodes /v1/batch bodies of batchSize events.
func httpBodies(raw [][]byte) [][]byte {
	var bodies [][]byte
	for lo := 0; lo < len(raw); lo += batchSize {
		var buf bytes.Buffer
		buf.WriteString(`{"batch":[`)
		for i := lo; i < min(lo+batchSize, len(raw)); i++ {
			if i > lo {
				buf.WriteByte(',')
			}
			buf.Write(raw[i])
		}
		buf.WriteString(`]}`)
		bodies = append(bodies, buf.Bytes())
	}
	return bodies
}

func startAPI(b testing.TB, e *engine.Engine) (*httptest.Server, string) {
	b.Helper()
	h := sha256.Sum256([]byte("bench-admin-token-xxxxxxxx"))
	srv, err := api.New(testnode.Services(e), api.Options{AdminTokenHash: h[:]})
	if err != nil {
		b.Fatal(err)
	}
	ts := httptest.NewServer(srv)
	b.Cleanup(ts.Close)
	key, err := e.Gate().CreateSource(context.Background(), "web")
	if err != nil {
		b.Fatal(err)
	}
	return ts, key
}

func postBatch(client *http.Client, url, key string, body []byte) error {
	req, err := http.NewRequest("POST", url+"/v1/batch", bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.SetBasicAuth(key, "")
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		return fmt.Errorf("batch: status %d", resp.StatusCode)
	}
	return nil
}

// BenchmarkIngestHTTP measures the whole edge: HTTP, Segment JSON parsing and
// validation, sealing and the durable append. b.N counts events; every event
// has a distinct messageId per iteration round.
func BenchmarkIngestHTTP(b *testing.B) {
	e := openEngine(b, false)
	ts, key := startAPI(b, e)
	bodies := httpBodies(workload(10_000, 20_000))
	client := ts.Client()
	b.ResetTimer()
	cpu := startCPU()
	start := time.Now()
	rounds := (b.N + batchSize - 1) / batchSize
	err := runParallel(rounds, 1, func(lo, _ int) error {
		return postBatch(client, ts.URL, key, bodies[lo%len(bodies)])
	})
	if err != nil {
		b.Fatal(err)
	}
	reportRate(b, rounds*batchSize, time.Since(start))
	cpu.report(b, rounds*batchSize)
}

// BenchmarkEndToEnd measures sustained throughput of ingest and apply
// together: HTTP batches in, and the clock stops only when the state machine
// has applied every event (identity, dedup, GCR).
func BenchmarkEndToEnd(b *testing.B) {
	e := openEngine(b, false)
	ts, key := startAPI(b, e)
	n := max(b.N, batchSize)
	bodies := httpBodies(workload(max(n/10, 100), n))
	client := ts.Client()
	b.ResetTimer()
	start := time.Now()
	err := runParallel(len(bodies), 1, func(lo, _ int) error {
		return postBatch(client, ts.URL, key, bodies[lo])
	})
	if err != nil {
		b.Fatal(err)
	}
	if err := e.Sync(context.Background()); err != nil {
		b.Fatal(err)
	}
	reportRate(b, n, time.Since(start))
}

// BenchmarkProfileLookup measures GCR look-ups by identifier (keyed hash,
// keychain, GCR read, decryption of the view) on 10k profiles, reporting
// p50 and p99 besides the mean.
func BenchmarkProfileLookup(b *testing.B) {
	const people = 10_000
	e := openEngine(b, false)
	if _, err := e.Gate().CreateSource(context.Background(), "web"); err != nil {
		b.Fatal(err)
	}
	evs := parseAll(b, workload(people, people*4))
	for lo := 0; lo < len(evs); lo += 1000 {
		if err := e.Edge().Ingest(context.Background(), "web", evs[lo:min(lo+1000, len(evs))]); err != nil {
			b.Fatal(err)
		}
	}
	if err := e.Sync(context.Background()); err != nil {
		b.Fatal(err)
	}
	lat := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for i := range b.N {
		t0 := time.Now()
		if _, err := e.Reader().Profile(fmt.Sprintf("anonymous_id:anon-%d", (i*31)%people)); err != nil {
			b.Fatal(err)
		}
		lat = append(lat, time.Since(t0))
	}
	b.StopTimer()
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50-µs")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99-µs")
}
