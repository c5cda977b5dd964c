package event_test

import (
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/aurumcdp/aurum/event"
	"github.com/aurumcdp/aurum/internal/workload"
)

func workloadBodies(cfg workload.Config, limit int) (events [][]byte, bodies [][]byte) {
	g := workload.New(cfg)
	var items []string
	for {
		w, ok := g.Next()
		if ok {
			events = append(events, w.JSON)
			items = append(items, string(w.JSON))
		}
		if len(items) == 100 || (!ok && len(items) > 0) {
			bodies = append(bodies, []byte(`{"batch":[`+strings.Join(items, ",")+`]}`))
			items = items[:0]
		}
		if !ok || (limit > 0 && len(bodies) == limit) {
			return events, bodies
		}
	}
}

func workloadOpts() event.ParseOptions {
	return event.ParseOptions{Now: time.Date(2026, 2, 1, 0, 0, 0, 0, time.UTC)}
}

// TestParseBatchFastMatchesStdWorkload: on a generated workload, ParseBatch
// (which the scanner path takes for every body) and the encoding/json path
// give identical events and rejections, and so do Parse and Parse with
// encoding/json for each event.
func TestParseBatchFastMatchesStdWorkload(t *testing.T) {
	events, bodies := workloadBodies(workload.Config{People: 300, Seed: 11, Days: 5, SharedDeviceRate: 0.2}, 0)
	opts := workloadOpts()
	for i, ev := range events {
		got, err := event.Parse(ev, "", opts)
		want, werr := event.ParseStd(ev, "", opts)
		if fmt.Sprint(err) != fmt.Sprint(werr) || !reflect.DeepEqual(got, want) {
			t.Fatalf("event %d: Parse %#v %v, encoding/json %#v %v", i, got, err, want, werr)
		}
	}
	accepted := 0
	for i, body := range bodies {
		if !event.ParseBatchFastTakes(body, opts) {
			t.Fatalf("body %d: the scanner path declined it", i)
		}
		acc, rej, err := event.ParseBatch(body, opts)
		sacc, srej, serr := event.ParseBatchStd(body, event.WithDefaults(opts))
		if fmt.Sprint(err) != fmt.Sprint(serr) || !reflect.DeepEqual(acc, sacc) || !reflect.DeepEqual(rej, srej) {
			t.Fatalf("body %d differs: %v / %v, %d / %d accepted, %v / %v", i, err, serr, len(acc), len(sacc), rej, srej)
		}
		accepted += len(acc)
	}
	if len(bodies) == 0 || accepted != len(events) {
		t.Fatalf("%d bodies, %d of %d events accepted", len(bodies), accepted, len(events))
	}
}

// BenchmarkParseBatch compares the scanner path (fast) with the
// encoding/json path (std) on generated /v1/batch bodies of 100 events, in
// one binary: go test -run '^$' -bench ParseBatch ./event/
func BenchmarkParseBatch(b *testing.B) {
	_, bodies := workloadBodies(workload.Config{People: 1000, Seed: 3, Days: 3}, 50)
	opts := event.WithDefaults(workloadOpts())
	for _, path := range []struct {
		name string
		fn   func([]byte, event.ParseOptions) ([]event.Accepted, []event.Rejection, error)
	}{{"std", event.ParseBatchStd}, {"fast", event.ParseBatch}} {
		b.Run(path.name, func(b *testing.B) {
			b.ReportAllocs()
			cpu0, cpuOK := processCPU()
			for i := 0; b.Loop(); i++ {
				if _, _, err := path.fn(bodies[i%len(bodies)], opts); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*100), "ns/event")
			if cpu1, ok := processCPU(); ok && cpuOK {
				// Every goroutine of the process (the GC's too): steadier
				// than wall time on a shared machine.
				b.ReportMetric(float64((cpu1-cpu0).Nanoseconds())/float64(b.N*100), "cpu-ns/event")
			}
		})
	}
}
