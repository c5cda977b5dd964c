package bench

import (
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"
)

var (
	report       = flag.Bool("report", false, "run every benchmark once and print the RESULTS.md table")
	reportN      = flag.Int("report-events", 50_000, "events per throughput measurement in -report mode")
	reportLooks  = flag.Int("report-lookups", 20_000, "look-ups per look-up measurement in -report mode")
	reportSizes  = flag.String("sizes", "10000,100000,1000000", "comma-separated workload sizes (people) in -report mode (make bench passes SIZES)")
	reportDays   = flag.Int("days", 3, "simulated days of the workload per size in -report mode")
	reportLoad   = flag.Int("load-rate", 2000, "background ingest events/s during the look-ups under load")
	reportProf   = flag.String("profile-dir", "", "write CPU profiles of each size's end-to-end and replay phases here")
	reportLatDur = flag.Duration("latency-duration", 3*time.Second, "offered-load duration per latency rate")
	reportMemLim = flag.Int("engine-memory-limit", 0, "soft memory limit (MiB) of each size's engine and replay processes, as GOMEMLIMIT would set it (0 = none)")
)

// Targets of issue #4.
const (
	targetIngestRatio   = 0.60    // of raw JetStream publish with message ids
	targetFsyncRate     = 50_000  // events/s, --fsync always
	targetE2ERate       = 50_000  // events/s sustained end-to-end
	targetLatencyP99    = 25.0    // ms at 10k events/s
	targetReplayRate    = 150_000 // events/s
	targetPrecision     = 0.999
	targetRSSGrowth     = 1.25 // peak RSS of the largest size / of the smallest
	latencyTargetRate   = 10_000
	reportChildTimeout  = 2 * time.Hour
	reportFsyncDivisor  = 10 // raw publish with fsync per message is slow
	reportLatencyPrefix = "event → audience transition"
)

// table accumulates the report's rows.
type table struct{ rows [][6]string }

func (t *table) add(measurement, size, target, measured, ratio, result string) {
	t.rows = append(t.rows, [6]string{measurement, size, target, measured, ratio, result})
}

func (t *table) String() string {
	var b strings.Builder
	fmt.Fprintln(&b, "| measurement | profiles | target | measured | ratio to baseline (same run) | result |")
	fmt.Fprintln(&b, "|---|---:|---|---:|---|---|")
	for _, r := range t.rows {
		fmt.Fprintf(&b, "| %s |\n", strings.Join(r[:], " | "))
	}
	return b.String()
}

func memLimitText(mib int) string {
	if mib <= 0 {
		return "none"
	}
	return fmt.Sprintf("%d MiB", mib)
}

func mib(b int64) string { return fmt.Sprintf("%.0f MiB", float64(b)/(1<<20)) }

// growth is v as a ratio to the smallest size's figure.
func growth(v, first int64, firstPeople, sizes int) string {
	if sizes == 1 || first <= 0 {
		return "baseline (smallest size)"
	}
	return fmt.Sprintf("%.2f× the %d-profile run", float64(v)/float64(first), firstPeople)
}

// verdict is PASS or MISS, or "—" without a target.
func verdict(ok bool) string {
	if ok {
		return "PASS"
	}
	return "MISS"
}

// parseSizes parses the -sizes flag: positive people counts, ascending as
// given, at least one.
func parseSizes(s string) ([]int, error) {
	var out []int
	for _, f := range strings.Split(s, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		n, err := strconv.Atoi(f)
		if err != nil || n < 1 || n > 10_000_000 {
			return nil, fmt.Errorf("bench: size %q: want a people count in [1, 10000000]", f)
		}
		out = append(out, n)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("bench: no sizes in %q", s)
	}
	return out, nil
}

func bench(n int, fn func(*testing.B)) testing.BenchmarkResult {
	return testing.Benchmark(func(b *testing.B) {
		b.N = n
		fn(b)
	})
}

// TestReport runs every measurement of issue #4 in one run and prints one
// markdown table: each figure with its target, the baseline measured in the
// same run and PASS/MISS. Throughput baselines and latency run in this
// process. Each workload size runs in a child process of this test binary
// (TestReportSize: generator, ground truth, scorer), which runs the engine
// in a grandchild (TestReportEngine: HTTP API, ingest, apply, look-ups) and
// the offline replay in another (engine.Replay), so that each peak RSS row
// is that process's own. `make bench` runs it.
func TestReport(t *testing.T) {
	if !*report {
		t.Skip("run with -report (make bench)")
	}
	sizes, err := parseSizes(*reportSizes)
	if err != nil {
		t.Fatal(err)
	}
	// One run per measurement: each benchmark sets its own b.N, and
	// testing.Benchmark must not grow it to fill -test.benchtime.
	if err := flag.Set("test.benchtime", "1x"); err != nil {
		t.Fatal(err)
	}
	began := time.Now()
	var tb table
	n := *reportN
	rate := func(r testing.BenchmarkResult) float64 { return r.Extra["events/s"] }

	// Ingest against raw JetStream publish, default mode.
	raw := rate(bench(n, BenchmarkJetStreamPublish))
	t.Logf("raw JetStream publish: %.0f events/s", raw)
	tb.add("raw JetStream publish (baseline): 1 msg per event, msg id, async, 8 producers", "—", "—", fmt.Sprintf("%.0f events/s", raw), "baseline", "—")
	for _, r := range []struct {
		name string
		fn   func(*testing.B)
	}{
		{"Aurum ingest, engine.Ingest (seal + group commit, 100/call, 8 producers)", BenchmarkIngest},
		{"Aurum ingest, NATS (JetStream publish to aurum.ingest.web until on the event log)", BenchmarkIngestNATS},
		{"Aurum ingest, HTTP /v1/batch (100/request, 8 clients)", BenchmarkIngestHTTP},
	} {
		v := rate(bench(n, r.fn))
		t.Logf("%s: %.0f events/s", r.name, v)
		tb.add(r.name, "—", fmt.Sprintf("≥ %.2f× raw publish", targetIngestRatio), fmt.Sprintf("%.0f events/s", v),
			fmt.Sprintf("%.2f× raw publish", v/raw), verdict(v >= targetIngestRatio*raw))
	}
	rawF := rate(bench(n/reportFsyncDivisor, BenchmarkJetStreamPublishFsyncAlways))
	tb.add("raw JetStream publish, fsync per message (baseline)", "—", "—", fmt.Sprintf("%.0f events/s", rawF), "baseline", "—")
	ingF := rate(bench(n, BenchmarkIngestFsyncAlways))
	t.Logf("fsync always: raw %.0f, ingest %.0f events/s", rawF, ingF)
	tb.add("Aurum ingest, engine.Ingest, --fsync always", "—", fmt.Sprintf("≥ %d events/s", targetFsyncRate), fmt.Sprintf("%.0f events/s", ingF),
		fmt.Sprintf("%.2f× raw publish with fsync", ingF/rawF), verdict(ingF >= targetFsyncRate))

	// Event → audience transition latency at fixed offered rates.
	for _, r := range []int{1000, 5000, latencyTargetRate} {
		p50, p99, p999, got := transitionLatency(t, r, *reportLatDur)
		ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
		target, res := "—", "—"
		if r == latencyTargetRate {
			target, res = fmt.Sprintf("p99 ≤ %.0f ms", targetLatencyP99), verdict(ms(p99) <= targetLatencyP99)
		}
		t.Logf("latency at %d/s: p50 %.1f p99 %.1f p99.9 %.1f ms (%d)", r, ms(p50), ms(p99), ms(p999), got)
		tb.add(fmt.Sprintf("%s at %d events/s offered (%d transitions)", reportLatencyPrefix, r, got), "—", target,
			fmt.Sprintf("p50 %.1f / p99 %.1f / p99.9 %.1f ms", ms(p50), ms(p99), ms(p999)), "—", res)
	}

	// Each size in its own process.
	var results []sizeResult
	for _, people := range sizes {
		res, err := runChild(t, people)
		if err != nil {
			t.Fatalf("size %d: %v", people, err)
		}
		results = append(results, res)
		sz := fmt.Sprint(people)
		t.Logf("size %d: %+v", people, res)
		tb.add(fmt.Sprintf("sustained end-to-end: %d workload events over HTTP, 8 audiences, until applied", res.Events), sz,
			fmt.Sprintf("≥ %d events/s", targetE2ERate), fmt.Sprintf("%.0f events/s", res.E2ERate),
			fmt.Sprintf("%.2f× raw publish", res.E2ERate/raw), verdict(res.E2ERate >= targetE2ERate))
		tb.add(fmt.Sprintf("identity: pairwise precision (%d identifiers → %d profiles, %d not found)", res.Identifiers, res.Profiles, res.Missing), sz,
			fmt.Sprintf("≥ %.3f", targetPrecision), fmt.Sprintf("%.5f", res.Precision), "—", verdict(res.Precision >= targetPrecision))
		tb.add("identity: pairwise recall / F1 (devices that never sign in cannot be linked)", sz, "—",
			fmt.Sprintf("%.4f / %.4f", res.Recall, res.F1), "—", "—")
		tb.add(fmt.Sprintf("GCR look-up by identifier under %.0f events/s of ingest (%d look-ups)", res.LoadRate, res.Lookups), sz, "—",
			fmt.Sprintf("p50 %.0f µs / p99 %.0f µs", res.LookupP50us, res.LookupP99us), "—", "—")
		tb.add(fmt.Sprintf("raw Pebble batch writes (baseline): %d keys carrying the log's %.0f MB, 100/batch", res.Applied, float64(res.LogBytes)/1e6), sz, "—",
			fmt.Sprintf("%.0f events/s", res.PebbleRate), "baseline", "—")
		tb.add(fmt.Sprintf("offline replay (engine.Replay) of %d events", res.Applied), sz,
			fmt.Sprintf("≥ %d events/s", targetReplayRate), fmt.Sprintf("%.0f events/s", res.ReplayRate),
			fmt.Sprintf("%.3f× raw Pebble", res.ReplayRate/res.PebbleRate), verdict(res.ReplayRate >= targetReplayRate))
		first := results[0]
		ratio, res4 := "baseline (smallest size)", "—"
		if len(results) > 1 {
			g := float64(res.EngineRSSBytes) / float64(first.EngineRSSBytes)
			ratio = fmt.Sprintf("%.2f× the %d-profile run", g, first.People)
			res4 = verdict(g <= targetRSSGrowth)
		}
		tb.add("peak RSS of the engine (VmHWM of the engine's own process: HTTP API, ingest, apply, look-ups)", sz,
			fmt.Sprintf("independent of profiles (≤ %.2f× smallest)", targetRSSGrowth), mib(res.EngineRSSBytes), ratio, res4)
		tb.add("peak RSS of the engine at the end of the end-to-end phase", sz, "—", mib(res.EngineE2ERSSBytes),
			growth(res.EngineE2ERSSBytes, first.EngineE2ERSSBytes, first.People, len(results)), "—")
		tb.add("peak RSS of the offline replay (VmHWM of engine.Replay's own process)", sz, "—", mib(res.ReplayRSSBytes),
			growth(res.ReplayRSSBytes, first.ReplayRSSBytes, first.People, len(results)), "—")
		tb.add("peak RSS of the generator and scorer (workload, ground truth, scoring; not the engine)", sz, "—", mib(res.GenRSSBytes),
			growth(res.GenRSSBytes, first.GenRSSBytes, first.People, len(results)), "—")
	}

	var b strings.Builder
	fmt.Fprintf(&b, "Run %s on %s/%s, %d CPUs, %s; sizes %s, %d simulated days per size; engine memory limit %s; took %v.\n\n",
		began.UTC().Format("2006-01-02 15:04 MST"), runtime.GOOS, runtime.GOARCH, runtime.NumCPU(), runtime.Version(),
		*reportSizes, *reportDays, memLimitText(*reportMemLim), time.Since(began).Round(time.Second))
	b.WriteString(tb.String())
	fmt.Fprint(os.Stdout, "\n"+b.String())
}

// runChild runs TestReportSize for people in a child process of this test
// binary and returns its result.
func runChild(t *testing.T, people int) (sizeResult, error) {
	var res sizeResult
	out := filepath.Join(t.TempDir(), fmt.Sprintf("size-%d.json", people))
	cmd := exec.Command(os.Args[0], "-test.run=^TestReportSize$", "-test.count=1", "-test.v",
		"-test.timeout="+reportChildTimeout.String())
	cmd.Env = append(os.Environ(),
		envSize+"="+strconv.Itoa(people),
		envDays+"="+strconv.Itoa(*reportDays),
		envOut+"="+out,
		envLoad+"="+strconv.Itoa(*reportLoad),
		envLooks+"="+strconv.Itoa(*reportLooks),
		envMemLim+"="+strconv.FormatInt(int64(*reportMemLim)<<20, 10),
		envProfile+"="+*reportProf)
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		return res, fmt.Errorf("child: %w", err)
	}
	data, err := os.ReadFile(out)
	if err != nil {
		return res, err
	}
	if err := json.Unmarshal(data, &res); err != nil {
		return res, fmt.Errorf("child result: %w", err)
	}
	return res, nil
}
