package bench

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"testing"
	"time"

	"github.com/aurumcdp/aurum/internal/check"
	"github.com/aurumcdp/aurum/store"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
)

// pebbleWrite writes n keys with values of valueSize bytes into a fresh
// Pebble store in batches of perBatch keys (one Commit each, no fsync) and
// returns the elapsed time: the raw storage cost that replay is compared with.
func pebbleWrite(tb testing.TB, n, valueSize, perBatch int) time.Duration {
	tb.Helper()
	db, err := store.Open(tb.TempDir(), nil)
	if err != nil {
		tb.Fatal(err)
	}
	defer db.Close()
	val := make([]byte, valueSize)
	for i := range val {
		val[i] = byte(i*31 + 7)
	}
	key := make([]byte, 16)
	start := time.Now()
	for lo := 0; lo < n; lo += perBatch {
		b := db.NewBatch()
		for i := lo; i < min(lo+perBatch, n); i++ {
			// Keys spread like profile ids: a mixed prefix, then the index.
			binary.BigEndian.PutUint64(key, uint64(i)*0x9E3779B97F4A7C15)
			binary.BigEndian.PutUint64(key[8:], uint64(i))
			binary.BigEndian.PutUint32(val, uint32(i))
			if err := b.Set(key, val); err != nil {
				b.Close()
				tb.Fatal(err)
			}
		}
		if err := db.Commit(b, false); err != nil {
			b.Close()
			tb.Fatal(err)
		}
		b.Close()
	}
	return time.Since(start)
}

// BenchmarkPebbleBatch is the replay baseline: raw Pebble batch writes, 100
// keys of 430 bytes (a workload event's size) per batch, b.N keys.
func BenchmarkPebbleBatch(b *testing.B) {
	n := max(b.N, 100)
	b.ResetTimer()
	d := pebbleWrite(b, n, 430, batchSize)
	b.SetBytes(430)
	reportRate(b, n, d)
}

// BenchmarkIngestNATS measures the NATS producer path: JetStream publishes
// (with message ids, async, 8 producers) to aurum.ingest.web, every one
// acknowledged by the raw ingest stream; the clock stops when the engine's
// gateway has validated, sealed and durably appended every event to the
// event log (aurum_ingest_events_total).
func BenchmarkIngestNATS(b *testing.B) {
	e := openEngine(b, false)
	key, err := e.Gate().CreateSource(context.Background(), "web")
	if err != nil {
		b.Fatal(err)
	}
	nc, err := nats.Connect(e.NATSURL(), nats.UserInfo("web", key))
	if err != nil {
		b.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		b.Fatal(err)
	}
	raw := workload(10_000, 10_000)
	n := b.N
	b.ResetTimer()
	cpu := startCPU()
	start := time.Now()
	err = runParallel(n, batchSize, func(lo, hi int) error {
		futs := make([]jetstream.PubAckFuture, 0, hi-lo)
		for i := lo; i < hi; i++ {
			data := withMessageID(raw[i%len(raw)], fmt.Sprintf("n-%d", i))
			f, err := js.PublishAsync("aurum.ingest.web", data, jetstream.WithMsgID(fmt.Sprintf("n-%d", i)))
			if err != nil {
				return err
			}
			futs = append(futs, f)
		}
		for _, f := range futs {
			select {
			case <-f.Ok():
			case err := <-f.Err():
				return err
			case <-time.After(30 * time.Second):
				return fmt.Errorf("publish ack timeout")
			}
		}
		return nil
	})
	if err != nil {
		b.Fatal(err)
	}
	check.For(b, 2*time.Minute, 2*time.Millisecond, func() error {
		got, err := counterValue(e.Registry(), "aurum_ingest_events_total")
		if err != nil {
			b.Fatal(err)
		}
		if got < float64(n) {
			return fmt.Errorf("gateway ingested %.0f of %d events", got, n)
		}
		return nil
	})
	reportRate(b, n, time.Since(start))
	cpu.report(b, n)
	// Bigger appends make fewer log entries: the apply's cost per entry
	// (a group, its commit) is shared by more events.
	if appends, err := counterValue(e.Registry(), "aurum_log_appends_total"); err == nil && appends > 0 {
		b.ReportMetric(float64(n)/appends, "events/append")
	}
}

// withMessageID replaces the "messageId":"b-..." of a workload event.
func withMessageID(raw []byte, id string) []byte {
	const key = `"messageId":"`
	i := bytes.Index(raw, []byte(key))
	if i < 0 {
		return raw
	}
	j := i + len(key)
	k := j
	for k < len(raw) && raw[k] != '"' {
		k++
	}
	out := make([]byte, 0, len(raw)+len(id))
	out = append(out, raw[:j]...)
	out = append(out, id...)
	return append(out, raw[k:]...)
}

// counterValue sums every series of the counter name in reg.
func counterValue(reg *prometheus.Registry, name string) (float64, error) {
	mfs, err := reg.Gather()
	if err != nil {
		return 0, err
	}
	var sum float64
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			sum += m.GetCounter().GetValue()
		}
	}
	return sum, nil
}
