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
	report        = flag.Bool("report", false, "run every issue #15 measurement and print the RESULTS.md table")
	reportN       = flag.Int("report-events", 50_000, "events per ingest measurement in -report mode")
	reportRounds  = flag.Int("rounds", 3, "rounds of each throughput ratio in -report mode (ingest; end to end and replay at sizes up to -rounds-max-size): baseline and measurement alternate, medians")
	reportRndMax  = flag.Int("rounds-max-size", 100_000, "largest size (people) whose end to end and replay run -rounds rounds; larger sizes run one round")
	reportLooks   = flag.Int("report-lookups", 20_000, "look-ups per look-up measurement in -report mode")
	reportSizes   = flag.String("sizes", "10000,100000,1000000", "comma-separated workload sizes (people) in -report mode (make bench passes SIZES)")
	reportDays    = flag.Int("days", 3, "simulated days of the workload per size in -report mode")
	reportLoad    = flag.Int("load-rate", 2000, "background ingest events/s during the look-ups under load")
	reportProf    = flag.String("profile-dir", "", "write CPU and heap profiles of each size's end-to-end and replay rounds here")
	reportLatDur  = flag.Duration("latency-duration", 3*time.Second, "offered-load duration per latency rate")
	reportMemLim  = flag.Int("engine-memory-limit", 0, "memory limit (MiB) of each size's engine and replay processes, as `aurum serve --memory-limit` takes it (0 = the engine's default)")
	reportNoFsync = flag.Bool("no-fsync", false, "skip the --fsync always rows (not issue #15 targets)")
	reportOut     = flag.String("report-out", "", "also write the report (header, table, per-round figures) to this file")
)

// Targets of issue #15 (each a ratio to a baseline measured in the same
// run), and issue #4's identity guard.
const (
	targetIngestRatio  = 0.60  // HTTP and NATS ingest ÷ raw JetStream publish with message ids
	targetE2ERatio     = 0.50  // end to end ÷ raw publish of the same events
	targetReplayRatio  = 0.50  // replay ÷ raw ordered consume of the same log
	targetLatencyP99   = 25.0  // ms, at latencyTargetRate offered
	targetRSSGrowth    = 1.25  // engine peak RSS at the largest size ÷ at the smallest (#15: 1M ÷ 10k)
	targetPrecision    = 0.999 // issue #4: identity must not merge people
	latencyTargetRate  = 10_000
	reportChildTimeout = 2 * time.Hour
	reportFsyncDivisor = 10 // raw publish with fsync per message is slow
	reportLatencyLabel = "event → audience transition"
)

// table accumulates the report's rows.
type table struct {
	rows       [][7]string
	pass, miss []string // the issue #15 rows met and missed
}

// add adds a row. result is PASS, MISS or —; target15 marks the rows of
// issue #15's targets, which the summary counts.
func (t *table) add(measurement, size, target, measured, baseline, ratio, result string, target15 bool) {
	t.rows = append(t.rows, [7]string{measurement, size, target, measured, baseline, ratio, result})
	if !target15 {
		return
	}
	name := measurement
	if i := strings.IndexAny(name, ":("); i > 0 {
		name = strings.TrimSpace(name[:i])
	}
	if size != "—" {
		name += " @" + size
	}
	switch result {
	case "PASS":
		t.pass = append(t.pass, name)
	case "MISS":
		t.miss = append(t.miss, name)
	}
}

func (t *table) String() string {
	var b strings.Builder
	fmt.Fprintln(&b, "| measurement | profiles | target (issue #15) | measured | baseline (same run) | ratio | result |")
	fmt.Fprintln(&b, "|---|---:|---|---:|---:|---|---|")
	for _, r := range t.rows {
		fmt.Fprintf(&b, "| %s |\n", strings.Join(r[:], " | "))
	}
	fmt.Fprintf(&b, "\nIssue #15 targets: %d PASS, %d MISS", len(t.pass), len(t.miss))
	if len(t.miss) > 0 {
		fmt.Fprintf(&b, " (missed: %s)", strings.Join(t.miss, "; "))
	}
	b.WriteString(".\n")
	return b.String()
}

// roundsTable is the per-round figures behind the medians.
type roundsTable struct{ rows []string }

func (t *roundsTable) add(phase, size string, rounds [][]fig, base, meas int) {
	for r := range rounds {
		b, m := rounds[r][base], rounds[r][meas]
		order := "forward"
		if roundOrder(r, len(rounds), len(rounds[r]))[0] != 0 {
			order = "reversed"
		}
		ratio := "—"
		if b.rate() > 0 {
			ratio = fmt.Sprintf("%.2f×", m.rate()/b.rate())
		}
		t.rows = append(t.rows, fmt.Sprintf("| %s | %s | %d (%s) | %.1f / %.1f | %s | %s | %s |", phase, size, r+1, order,
			b.Load, m.Load, rateCPU(b), rateCPU(m), ratio))
	}
}

func (t *roundsTable) String() string {
	var b strings.Builder
	fmt.Fprintln(&b, "| ratio | profiles | round | load average (baseline / measured) | baseline | measured | ratio |")
	fmt.Fprintln(&b, "|---|---:|---|---|---:|---:|---:|")
	for _, r := range t.rows {
		fmt.Fprintln(&b, r)
	}
	return b.String()
}

// rateCPU is "N events/s, C µs CPU/event" (the CPU where known).
func rateCPU(f fig) string {
	if c := f.cpuUs(); c > 0 {
		return fmt.Sprintf("%.0f events/s, %.1f µs CPU/event", f.rate(), c)
	}
	return fmt.Sprintf("%.0f events/s", f.rate())
}

// medians is "N events/s, C µs CPU/event" of the medians of figs.
func medians(figs []fig) string {
	if c := medianCPU(figs); c > 0 {
		return fmt.Sprintf("%.0f events/s, %.1f µs CPU/event", medianRate(figs), c)
	}
	return fmt.Sprintf("%.0f events/s", medianRate(figs))
}

// ratioVerdict is the ratio of the medians of meas and base with its
// verdict against the target.
func ratioVerdict(meas, base []fig, target float64, what string) (string, string) {
	b := medianRate(base)
	if b <= 0 {
		return "—", "MISS"
	}
	v := medianRate(meas) / b
	return fmt.Sprintf("%.2f× %s", v, what), verdict(v >= target)
}

func memLimitText(mib int) string {
	if mib <= 0 {
		return "the engine's default"
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

// verdict is PASS or MISS.
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

// benchFig runs fn once over n events and returns its figure: events/s
// and process CPU per event as the benchmark reports them.
func benchFig(n int, fn func(*testing.B)) fig {
	r := bench(n, fn)
	rate := r.Extra["events/s"]
	if rate <= 0 {
		return fig{Events: n}
	}
	return fig{Events: n, Seconds: float64(n) / rate, CPUns: int64(r.Extra["cpu-ns/event"] * float64(n))}
}

// TestReport runs every measurement of issue #15 in one run and prints
// one markdown table, ready for bench/RESULTS.md: each figure with its
// target, the baseline measured in the same run, the ratio and PASS/MISS,
// then the per-round figures behind the medians. Ingest and its baseline
// run here, in rounds (runRounds: baseline and measurements alternate,
// medians, the ratio of the medians); so does the transition latency. Each
// workload size runs in a child process of this test binary
// (TestReportSize: generator, ground truth, scorer), which runs the engine
// (TestReportEngine serve: HTTP API, ingest, apply, look-ups), the offline
// replay and the two baselines (raw publish, raw ordered consume) in
// processes of their own, so that each peak RSS and CPU figure is that
// process's own. `make bench` runs it.
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
	began, load0 := time.Now(), loadAverage()
	var tb table
	var rt roundsTable
	n := *reportN
	rounds := max(*reportRounds, 1)

	// Ingest against raw JetStream publish with message ids, in rounds.
	ingest := []struct {
		short, name string
		fn          func(*testing.B)
		target      bool
	}{
		{"raw publish", "raw JetStream publish", BenchmarkJetStreamPublish, false},
		{"HTTP ingest", "ingest, HTTP /v1/batch (100/request, 8 clients; parse, validate, seal, durable append)", BenchmarkIngestHTTP, true},
		{"NATS ingest", "ingest, NATS (8 producers publish to aurum.ingest.web, with message ids, async; until on the event log)", BenchmarkIngestNATS, true},
		{"engine.Ingest", "ingest, engine.Ingest (seal, group commit, durable append; 100/call, 8 producers; no HTTP or NATS; not a #15 target)", BenchmarkIngest, false},
	}
	steps := make([]func(int) (fig, error), len(ingest))
	for i, m := range ingest {
		steps[i] = func(r int) (fig, error) {
			f := benchFig(n, m.fn)
			t.Logf("ingest round %d: %s: %s", r+1, m.name, rateCPU(f))
			return f, nil
		}
	}
	ir, err := runRounds(rounds, steps...)
	if err != nil {
		t.Fatal(err)
	}
	raw := column(ir, 0)
	tb.add(fmt.Sprintf("raw JetStream publish (baseline): 1 msg per event, msg id, async, 8 producers; %d events, median of %d rounds", n, rounds),
		"—", "—", medians(raw), "—", "baseline", "—", false)
	for i, m := range ingest[1:] {
		col := column(ir, i+1)
		target, ratio, res := "—", "", "—"
		if m.target {
			target = fmt.Sprintf("≥ %.2f× raw publish", targetIngestRatio)
			ratio, res = ratioVerdict(col, raw, targetIngestRatio, "raw publish")
		} else {
			ratio, _ = ratioVerdict(col, raw, 0, "raw publish")
		}
		tb.add(m.name, "—", target, medians(col), fmt.Sprintf("%.0f events/s", medianRate(raw)), ratio, res, m.target)
		rt.add(m.short+" ÷ raw publish", "—", ir, 0, i+1)
	}
	if !*reportNoFsync {
		rawF := benchFig(n/reportFsyncDivisor, BenchmarkJetStreamPublishFsyncAlways)
		ingF := benchFig(n, BenchmarkIngestFsyncAlways)
		t.Logf("fsync always: raw %s, ingest %s", rateCPU(rawF), rateCPU(ingF))
		tb.add("ingest, engine.Ingest, --fsync always (not a #15 target; #4 asked ≥ 50,000 events/s)", "—", "—", rateCPU(ingF),
			fmt.Sprintf("raw publish, fsync per message: %.0f events/s", rawF.rate()), fmt.Sprintf("%.2f× raw publish with fsync", ingF.rate()/rawF.rate()), "—", false)
	}

	// Event → audience transition latency at fixed offered rates. The
	// target holds only if the rate was offered (a loaded machine may not
	// send 10,000 events/s).
	for _, r := range []int{1000, 5000, latencyTargetRate} {
		load := loadAverage()
		p50, p99, p999, got, offered := transitionLatency(t, r, *reportLatDur)
		ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
		target, res := "—", "—"
		if r == latencyTargetRate {
			target, res = fmt.Sprintf("p99 ≤ %.0f ms at %d events/s", targetLatencyP99, r), verdict(ms(p99) <= targetLatencyP99 && offered >= 0.95*float64(r))
		}
		t.Logf("latency at %d/s (sent %.0f/s): p50 %.1f p99 %.1f p99.9 %.1f ms (%d; load %.1f)", r, offered, ms(p50), ms(p99), ms(p999), got, load)
		tb.add(fmt.Sprintf("%s at %d events/s offered (sent %.0f/s; %d transitions; accepted → subscriber; load %.1f)", reportLatencyLabel, r, offered, got, load), "—", target,
			fmt.Sprintf("p50 %.1f / p99 %.1f / p99.9 %.1f ms", ms(p50), ms(p99), ms(p999)), "—", "—", res, r == latencyTargetRate)
	}

	// Each size in its own process.
	var results []sizeResult
	for _, people := range sizes {
		sr := 1
		if people <= *reportRndMax {
			sr = rounds
		}
		res, err := runChild(t, people, sr)
		if err != nil {
			t.Fatalf("size %d: %v", people, err)
		}
		results = append(results, res)
		addSize(&tb, &rt, res, results[0], len(sizes), people == sizes[len(sizes)-1])
	}

	var b strings.Builder
	fmt.Fprintf(&b, "Run %s on %s/%s, %d CPUs, %s; sizes %s, %d simulated days per size; %d rounds (end to end and replay: sizes up to %d, larger ones 1); engine memory limit %s; load average %.1f at the start, %.1f at the end; took %v.\n\n",
		began.UTC().Format("2006-01-02 15:04 MST"), runtime.GOOS, runtime.GOARCH, runtime.NumCPU(), runtime.Version(),
		*reportSizes, *reportDays, rounds, *reportRndMax, memLimitText(*reportMemLim), load0, loadAverage(), time.Since(began).Round(time.Second))
	b.WriteString(tb.String())
	b.WriteString("\nPer round (the baselines and the measurement back to back; forward: the baselines first, then the measurement; reversed: the other way round; the table above has the medians and the ratios of the medians; ingest rounds run raw publish, HTTP, NATS, engine.Ingest; replay rounds the consume of the log, of the one-event messages, then the replay):\n\n")
	b.WriteString(rt.String())
	fmt.Fprint(os.Stdout, "\n"+b.String())
	if *reportOut != "" {
		if err := os.WriteFile(*reportOut, []byte(b.String()), 0o644); err != nil {
			t.Error(err)
		} else {
			fmt.Fprintf(os.Stdout, "\n(written to %s)\n", *reportOut)
		}
	}
}

// addSize adds the rows of one size; first is the smallest size's result,
// largest says whether res is the largest size (the RSS target's).
func addSize(tb *table, rt *roundsTable, res, first sizeResult, sizes int, largest bool) {
	sz := fmt.Sprint(res.People)
	pub, e2e := column(res.E2E, 0), column(res.E2E, 1)
	cons, msgs, rep := column(res.Replay, 0), column(res.Replay, 1), column(res.Replay, 2)
	ratio, result := ratioVerdict(e2e, pub, targetE2ERatio, "raw publish")
	tb.add(fmt.Sprintf("end to end: %d workload events over HTTP /v1/batch (200/request, one client per source), the 8 example audiences and the feature projection on, until applied; median of %d", res.Events, len(res.E2E)),
		sz, fmt.Sprintf("≥ %.2f× raw publish", targetE2ERatio), medians(e2e),
		fmt.Sprintf("raw publish of the same events: %s", medians(pub)), ratio, result, true)
	rt.add("end to end ÷ raw publish", sz, res.E2E, 0, 1)
	block, state := engineCaches(int64(*reportMemLim) << 20)
	cpuGrowth := "baseline (smallest size)"
	if sizes > 1 && res.People != first.People {
		if c0 := medianCPU(column(first.E2E, 1)); c0 > 0 {
			cpuGrowth = fmt.Sprintf("%.2f× the %d-profile run", medianCPU(e2e)/c0, first.People)
		}
	}
	tb.add("engine CPU per event, end to end (engine process CPU ÷ events; must not grow with profiles beyond what the cache size explains)", sz, "—",
		fmt.Sprintf("%.1f µs/event", medianCPU(e2e)),
		fmt.Sprintf("state store %.0f MB = %.1f× the caches (state block cache %d MiB + state cache %d MiB)", float64(res.StateBytes)/1e6,
			float64(res.StateBytes)/float64(block+state), block>>20, state>>20),
		cpuGrowth, "—", false)
	tb.add(fmt.Sprintf("identity: pairwise precision (%d identifiers → %d profiles, %d not found; issue #4's guard)", res.Identifiers, res.Profiles, res.Missing), sz,
		fmt.Sprintf("≥ %.3f (#4)", targetPrecision), fmt.Sprintf("%.5f", res.Precision), "—", "—", verdict(res.Precision >= targetPrecision), false)
	tb.add("identity: pairwise recall / F1 (devices that never sign in cannot be linked)", sz, "—",
		fmt.Sprintf("%.4f / %.4f", res.Recall, res.F1), "—", "—", "—", false)
	tb.add(fmt.Sprintf("GCR look-up by identifier under %.0f events/s of ingest (%d look-ups)", res.LoadRate, res.Lookups), sz, "—",
		fmt.Sprintf("p50 %.0f µs / p99 %.0f µs", res.LookupP50us, res.LookupP99us), "—", "—", "—", false)
	ratio, result = ratioVerdict(rep, cons, targetReplayRatio, "raw consume")
	tb.add(fmt.Sprintf("offline replay (engine.Replay, its own process) of %d events in %d log entries (%.0f MB); median of %d", res.Applied, res.LogEntries, float64(res.LogBytes)/1e6, len(res.Replay)), sz,
		fmt.Sprintf("≥ %.2f× raw ordered consume", targetReplayRatio), medians(rep),
		fmt.Sprintf("raw ordered consume of the same log: %s", medians(cons)), ratio, result, true)
	rt.add("replay ÷ raw ordered consume of the log", sz, res.Replay, 0, 2)
	ratio, _ = ratioVerdict(rep, msgs, 0, "raw consume of one-event messages")
	tb.add(fmt.Sprintf("offline replay against a raw ordered consume of as many one-event messages (the raw publish's stream of the same %d events; the reading of the issue's opening 0.07×; not the target's baseline)", res.Events), sz,
		"—", medians(rep), fmt.Sprintf("raw ordered consume of one-event messages: %s", medians(msgs)), ratio, "—", false)
	rt.add("replay ÷ raw ordered consume of one-event messages", sz, res.Replay, 1, 2)
	rssRatio, rssResult := "baseline (smallest size)", "—"
	if sizes > 1 && res.People != first.People && first.EngineRSSBytes > 0 {
		g := float64(res.EngineRSSBytes) / float64(first.EngineRSSBytes)
		rssRatio = fmt.Sprintf("%.2f× the %d-profile run", g, first.People)
		if largest {
			rssResult = verdict(g <= targetRSSGrowth)
		}
	}
	tb.add(fmt.Sprintf("peak RSS of the engine (VmHWM of the last round's engine process: HTTP API, ingest, apply, look-ups; memory limit %s)", memLimitText(*reportMemLim)), sz,
		fmt.Sprintf("largest size ≤ %.2f× the smallest (1M ÷ 10k)", targetRSSGrowth), mib(res.EngineRSSBytes), mib(first.EngineRSSBytes), rssRatio, rssResult, rssResult != "—")
	tb.add("peak RSS of the engine at the end of the end to end (largest over the rounds)", sz, "—", mib(res.EngineE2ERSSBytes), "—",
		growth(res.EngineE2ERSSBytes, first.EngineE2ERSSBytes, first.People, sizes), "—", false)
	tb.add("peak RSS of the offline replay (largest VmHWM of engine.Replay's processes)", sz, "—", mib(res.ReplayRSSBytes), "—",
		growth(res.ReplayRSSBytes, first.ReplayRSSBytes, first.People, sizes), "—", false)
	tb.add("peak RSS of the generator and scorer (workload, ground truth, scoring; not the engine)", sz, "—", mib(res.GenRSSBytes), "—",
		growth(res.GenRSSBytes, first.GenRSSBytes, first.People, sizes), "—", false)
}

// runChild runs TestReportSize for people, with rounds rounds, in a child
// process of this test binary and returns its result.
func runChild(t *testing.T, people, rounds int) (sizeResult, error) {
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
		envRounds+"="+strconv.Itoa(rounds),
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
