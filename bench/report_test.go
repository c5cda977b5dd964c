package bench

import (
	"flag"
	"fmt"
	"os"
	"runtime"
	"strings"
	"testing"
	"time"
)

var (
	report      = flag.Bool("report", false, "run every benchmark once and print the RESULTS.md table")
	reportN     = flag.Int("report-events", 50_000, "events per throughput measurement in -report mode")
	reportLooks = flag.Int("report-lookups", 20_000, "look-ups in -report mode")
)

// TestReport runs the benchmarks in one process, one after the other, and
// prints a markdown table with each figure as a ratio of the baseline
// measured in the same run. `make bench` runs it.
func TestReport(t *testing.T) {
	if !*report {
		t.Skip("run with -report (make bench)")
	}
	type row struct {
		name, what string
		fn         func(*testing.B)
		n          int
		base       string
	}
	rows := []row{
		{"raw JetStream publish", "1 msg per event, msg id, async, 8 producers", BenchmarkJetStreamPublish, *reportN, ""},
		{"Aurum ingest (engine)", "seal + group commit, batches of 100, 8 producers", BenchmarkIngest, *reportN, "raw JetStream publish"},
		{"Aurum ingest (HTTP /v1/batch)", "HTTP + Segment JSON validation + seal + group commit", BenchmarkIngestHTTP, *reportN, "raw JetStream publish"},
		{"Aurum end-to-end", "HTTP ingest until applied (dedup, identity, GCR)", BenchmarkEndToEnd, *reportN, "raw JetStream publish"},
		{"raw JetStream publish, fsync always", "as above, server fsyncs every write", BenchmarkJetStreamPublishFsyncAlways, *reportN / 10, ""},
		{"Aurum ingest (engine), --fsync always", "one fsync per group-commit append", BenchmarkIngestFsyncAlways, *reportN, "raw JetStream publish, fsync always"},
	}
	rates := map[string]float64{}
	var b strings.Builder
	fmt.Fprintf(&b, "Run %s on %s/%s, %d CPUs, %s.\n\n", time.Now().UTC().Format("2006-01-02 15:04 MST"), runtime.GOOS, runtime.GOARCH, runtime.NumCPU(), runtime.Version())
	fmt.Fprintln(&b, "| measurement | what | events | events/s | ratio to baseline |")
	fmt.Fprintln(&b, "|---|---|---:|---:|---:|")
	for _, r := range rows {
		n := r.n
		res := testing.Benchmark(func(b *testing.B) {
			b.N = n
			r.fn(b)
		})
		rate := res.Extra["events/s"]
		rates[r.name] = rate
		ratio := "baseline"
		if r.base != "" && rates[r.base] > 0 {
			ratio = fmt.Sprintf("%.2f× %s", rate/rates[r.base], r.base)
		}
		fmt.Fprintf(&b, "| %s | %s | %d | %.0f | %s |\n", r.name, r.what, res.N, rate, ratio)
	}
	res := testing.Benchmark(func(b *testing.B) {
		b.N = *reportLooks
		BenchmarkProfileLookup(b)
	})
	fmt.Fprintf(&b, "\nGCR look-up by identifier (10k profiles, idle node): mean %.1f µs, p50 %.0f µs, p99 %.0f µs over %d look-ups.\n",
		float64(res.NsPerOp())/1000, res.Extra["p50-µs"], res.Extra["p99-µs"], res.N)
	fmt.Fprint(os.Stdout, "\n"+b.String())
}
