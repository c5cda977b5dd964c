//go:build unix

package log

import (
	"context"
	"fmt"
	"syscall"
	"testing"
	"time"

	"github.com/aurumcdp/aurum/internal/check"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// processCPU is the CPU time (user + system) the process has used so far.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkConsumeIngest is the gateway's own JetStream cost per raw
// message: b.N messages published (with message ids, not timed) on
// aurum.ingest.web, then drained by ConsumeIngestPipelined as the gateway
// runs it (pulls of 500, 4 in flight) with a handler that does nothing:
// fetch, deliver and purge, without parse, seal or append. The raw publish
// of the same messages is reported beside it (publish-cpu-ns/msg), so
// ratios come from one run.
func BenchmarkConsumeIngest(b *testing.B) {
	ctx := context.Background()
	l := openLog(b, testOptions(b.TempDir()))
	nc, err := nats.Connect(l.ClientURL())
	if err != nil {
		b.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		b.Fatal(err)
	}
	n := b.N
	cpu0, t0 := processCPU(), time.Now()
	for lo := 0; lo < n; lo += 1000 { // windows of 1,000 (the client's async bound is 4,000)
		futs := make([]jetstream.PubAckFuture, 0, 1000)
		for i := lo; i < min(lo+1000, n); i++ {
			f, err := js.PublishAsync("aurum.ingest.web", payload(i), jetstream.WithMsgID(fmt.Sprintf("m-%d", i)))
			if err != nil {
				b.Fatal(err)
			}
			futs = append(futs, f)
		}
		for _, f := range futs {
			select {
			case <-f.Ok():
			case err := <-f.Err():
				b.Fatal(err)
			}
		}
	}
	pubCPU, pubWall := processCPU()-cpu0, time.Since(t0)
	b.ResetTimer()
	cpu0, t0 = processCPU(), time.Now()
	cctx, stop := context.WithCancel(ctx)
	got := 0
	done := make(chan error, 1)
	go func() {
		done <- l.ConsumeIngestPipelined(cctx, 500, 4, func(raws []RawMsg) func() error {
			got += len(raws)
			if got >= n {
				stop()
			}
			return func() error { return nil }
		})
	}()
	if err := <-done; err != nil {
		b.Fatal(err)
	}
	cpu, wall := processCPU()-cpu0, time.Since(t0)
	b.StopTimer()
	if got < n {
		b.Fatalf("consumed %d of %d", got, n)
	}
	// Each batch is purged once handled: nothing is left.
	check.For(b, 30*time.Second, 5*time.Millisecond, func() error {
		left, err := ingestPending(ctx, l)
		if err == nil && left != 0 {
			err = fmt.Errorf("%d messages left in AURUM_INGEST", left)
		}
		return err
	})
	b.ReportMetric(float64(cpu.Nanoseconds())/float64(n), "cpu-ns/msg")
	b.ReportMetric(float64(pubCPU.Nanoseconds())/float64(n), "publish-cpu-ns/msg")
	b.ReportMetric(float64(n)/wall.Seconds(), "msgs/s")
	b.ReportMetric(float64(n)/pubWall.Seconds(), "publish-msgs/s")
}
