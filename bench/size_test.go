package bench

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"runtime/pprof"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aurumcdp/aurum/engine"
	"github.com/aurumcdp/aurum/engine/base"
	"github.com/aurumcdp/aurum/event"
	wlg "github.com/aurumcdp/aurum/internal/workload"
)

// Environment of a size run: TestReport re-executes the test binary once per
// size (TestReportSize: the workload generator and the scorer), which
// re-executes it again for the engine (TestReportEngine), so that the
// engine's peak RSS is its own process's and not the generator's.
const (
	envSize    = "AURUM_BENCH_SIZE"     // people
	envDays    = "AURUM_BENCH_DAYS"     // simulated days of the workload
	envOut     = "AURUM_BENCH_OUT"      // file the JSON sizeResult is written to
	envProfile = "AURUM_BENCH_PROFILE"  // directory for CPU and heap profiles ("" = none)
	envLoad    = "AURUM_BENCH_LOAD"     // background events/s during the look-ups
	envLooks   = "AURUM_BENCH_LOOKUPS"  // look-ups under load
	envEngine  = "AURUM_BENCH_ENGINE"   // engine process: "serve" or "replay"
	envDir     = "AURUM_BENCH_DIR"      // engine process: data directory
	envMemLim  = "AURUM_BENCH_MEMLIMIT" // engine process: its memory limit (engine.Options.MemoryLimit), bytes ("" = none)
)

// sizeResult is what one size run measures.
type sizeResult struct {
	People      int     `json:"people"`
	Events      int     `json:"events"` // workload events sent over HTTP per round
	Accepted    int     `json:"accepted"`
	Rejected    int     `json:"rejected"`
	RejectedWhy string  `json:"rejected_why,omitempty"`
	Identifiers int     `json:"identifiers"`
	Profiles    int     `json:"profiles"`
	Missing     int     `json:"missing"` // identifiers without a profile
	Precision   float64 `json:"precision"`
	Recall      float64 `json:"recall"`
	F1          float64 `json:"f1"`
	Lookups     int     `json:"lookups"`
	LookupP50us float64 `json:"lookup_p50_us"`
	LookupP99us float64 `json:"lookup_p99_us"`
	LoadRate    float64 `json:"load_rate"` // achieved background events/s
	Applied     int     `json:"applied"`   // events applied before the node stopped
	LogBytes    int64   `json:"log_bytes"` // JetStream directory size
	LogEntries  int     `json:"log_entries"`
	StateBytes  int64   `json:"state_bytes"` // state store directory size after the node stopped
	// Rounds: [r][0] is the baseline, the last the measurement. End to
	// end: raw JetStream publish of the workload's events, then HTTP until
	// applied. Replay: a raw ordered consume of the stopped node's log,
	// one of the raw publish's one-event messages, then engine.Replay of
	// the log.
	E2E    [][]fig `json:"e2e"`
	Replay [][]fig `json:"replay"`
	// Peak resident sets (VmHWM) of the processes of a size.
	EngineRSSBytes    int64 `json:"engine_rss_bytes"`     // the engine of the last round: API, ingest, apply, look-ups
	EngineE2ERSSBytes int64 `json:"engine_e2e_rss_bytes"` // the largest engine VmHWM at the end of an end-to-end round
	ReplayRSSBytes    int64 `json:"replay_rss_bytes"`     // the largest of engine.Replay's processes
	GenRSSBytes       int64 `json:"gen_rss_bytes"`        // generator, ground truth, scorer
}

// sizeOptions configure one size run.
type sizeOptions struct {
	People, Days int
	Load         int    // background events/s during the look-ups
	Looks        int    // look-ups under load
	Rounds       int    // end-to-end and replay rounds, each beside its baseline (≥ 1)
	ProfDir      string // CPU and heap profiles ("" = none)
}

// TestReportSize is one size of the -report run, in a child process (see
// TestReport); it is skipped unless AURUM_BENCH_SIZE is set. It runs the
// workload generator and the scorer; the engine runs in a process of its
// own (TestReportEngine) that it drives over HTTP (the events) and a
// command pipe (sync, look-ups, close), and so do the baselines.
func TestReportSize(t *testing.T) {
	people, _ := strconv.Atoi(os.Getenv(envSize))
	if people <= 0 {
		t.Skip("run by TestReport -report in a child process")
	}
	res, err := runSize(t, sizeOptions{People: people, Days: envInt(envDays, 3), Load: envInt(envLoad, 2000),
		Looks: envInt(envLooks, 20_000), Rounds: envInt(envRounds, 1), ProfDir: os.Getenv(envProfile)})
	if err != nil {
		t.Fatal(err)
	}
	if res.GenRSSBytes, err = peakRSS(); err != nil {
		t.Fatal(err)
	}
	data, _ := json.Marshal(res)
	if err := os.WriteFile(os.Getenv(envOut), data, 0o644); err != nil {
		t.Fatal(err)
	}
}

// envRounds is the size process's number of rounds.
const envRounds = "AURUM_BENCH_ROUNDS"

func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}

// runSize runs one size: the workload generated once into a file; o.Rounds
// rounds of raw publish (baseline) and end to end, interleaved (runRounds),
// the last round's engine kept for identity quality and look-ups under
// load; then o.Rounds rounds of a raw ordered consume of its log (baseline)
// and engine.Replay of it.
func runSize(t *testing.T, o sizeOptions) (sizeResult, error) {
	res := sizeResult{People: o.People}
	rounds := max(o.Rounds, 1)
	g := wlg.New(wlg.Config{People: o.People, Seed: 4, Days: o.Days})
	evFile := filepath.Join(t.TempDir(), "events")
	var err error
	if res.Events, err = writeWorkload(evFile, g); err != nil {
		return res, err
	}
	t.Logf("%d people: %d workload events", o.People, res.Events)

	// End to end, against raw publish of the same events.
	var (
		ep  *engineProc // the last round's engine, kept
		dir string
	)
	defer func() {
		if ep != nil {
			ep.kill()
		}
	}()
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
	defer client.CloseIdleConnections()
	var pubDir string // the last round's raw publish: one message per event, kept for a replay baseline
	res.E2E, err = runRounds(rounds,
		func(r int) (fig, error) {
			pdir := t.TempDir()
			if r < rounds-1 {
				defer os.RemoveAll(pdir) // as big as the log: free it now
			} else {
				pubDir = pdir
			}
			rp, err := runOnce(t, "publish", pdir, "", "", evFile)
			if err != nil {
				return fig{}, err
			}
			if rp.Applied != res.Events {
				return fig{}, fmt.Errorf("publish: %d of %d events", rp.Applied, res.Events)
			}
			f := fig{Events: rp.Applied, Seconds: rp.Seconds, CPUns: rp.CPUns}
			t.Logf("%d people, round %d: raw publish %.0f events/s, %.1f µs CPU/event", o.People, r+1, f.rate(), f.cpuUs())
			return f, nil
		},
		func(r int) (fig, error) {
			rdir := t.TempDir()
			p, f, err := e2eRound(t, o, r, rdir, evFile, client, &res)
			if err != nil {
				if p != nil {
					p.kill()
				}
				return f, err
			}
			if r < rounds-1 { // not kept: stop it and free its data
				_, err := p.call(engineCmd{Op: "close"})
				if err == nil {
					err = p.wait()
				}
				p.kill()
				os.RemoveAll(rdir)
				return f, err
			}
			ep, dir = p, rdir
			return f, nil
		})
	if err != nil {
		return res, fmt.Errorf("end to end: %w", err)
	}
	if ep == nil {
		return res, errors.New("end to end: no engine kept")
	}

	// Identity quality: each identifier's profile is its cluster. The
	// engine resolves a file of identifiers into a file of profile ids,
	// one a line, streaming (its memory does not grow with the list).
	truth := g.Truth()
	res.Identifiers = truth.Len()
	ids := truth.Identifiers()
	in, out := filepath.Join(t.TempDir(), "ids"), filepath.Join(t.TempDir(), "profiles")
	if err := writeLines(in, len(ids), func(i int) string { return ids[i].String() }); err != nil {
		return res, err
	}
	r, err := ep.call(engineCmd{Op: "resolve", In: in, Out: out})
	if err != nil {
		return res, err
	}
	profiles, err := readLines(out)
	if err != nil {
		return res, err
	}
	if len(profiles) != len(ids) {
		return res, fmt.Errorf("resolve: %d profile ids for %d identifiers", len(profiles), len(ids))
	}
	byProfile := map[string][]wlg.Identifier{}
	var clusters [][]wlg.Identifier
	for i, id := range ids {
		if profiles[i] == "" {
			res.Missing++
			clusters = append(clusters, []wlg.Identifier{id})
			continue
		}
		byProfile[profiles[i]] = append(byProfile[profiles[i]], id)
	}
	for _, c := range byProfile {
		clusters = append(clusters, c)
	}
	res.Profiles = len(byProfile)
	res.Precision, res.Recall, res.F1 = truth.Score(clusters)
	t.Logf("%d people: resolved %d identifiers; engine memory %s", o.People, len(ids), r.Mem)

	// GCR look-ups (in the engine process, as before) while a producer
	// there ingests at a fixed rate. The generator picks the identifiers.
	rng := rand.New(rand.NewPCG(1, 2))
	if err := writeLines(in, o.Looks, func(int) string { return ids[rng.IntN(len(ids))].String() }); err != nil {
		return res, err
	}
	if r, err = ep.call(engineCmd{Op: "lookups", In: in, Rate: o.Load}); err != nil {
		return res, err
	}
	res.Lookups, res.LookupP50us, res.LookupP99us, res.LoadRate = r.Lookups, r.LookupP50us, r.LookupP99us, r.LoadRate
	t.Logf("%d people: %d look-ups under load; engine memory %s", o.People, r.Lookups, r.Mem)
	if r, err = ep.call(engineCmd{Op: "heap", Name: fmt.Sprintf("e2e-%d", o.People)}); err != nil {
		return res, err
	}
	res.Applied = r.Applied
	if r, err = ep.call(engineCmd{Op: "close"}); err != nil {
		return res, err
	}
	res.EngineRSSBytes = r.Mem.VmHWM
	t.Logf("%d people: engine closed; engine memory %s", o.People, r.Mem)
	if err := ep.wait(); err != nil {
		return res, err
	}
	if res.LogBytes, err = dirSize(filepath.Join(dir, "jetstream")); err != nil {
		return res, err
	}
	if res.StateBytes, err = dirSize(filepath.Join(dir, "state")); err != nil {
		return res, err
	}

	// Offline replay of the stopped node's log, against a raw ordered
	// consume of the same log (the target's baseline) and of as many
	// one-event messages (the raw publish's stream of the same events: the
	// reading of issue #15's opening figures); each in a process of its own.
	res.Replay, err = runRounds(rounds,
		func(r int) (fig, error) {
			rc, err := runOnce(t, "consume", dir, "", "", "")
			if err != nil {
				return fig{}, err
			}
			res.LogEntries = rc.Applied
			// The consumer reads the messages replay applies: its
			// events are the events replay applies.
			f := fig{Events: res.Applied, Seconds: rc.Seconds, CPUns: rc.CPUns}
			t.Logf("%d people, round %d: raw ordered consume of %d log entries (%.0f MB) in %.2f s: %.0f events/s, %.1f µs CPU/event",
				o.People, r+1, rc.Applied, float64(rc.Bytes)/1e6, rc.Seconds, f.rate(), f.cpuUs())
			return f, nil
		},
		func(r int) (fig, error) {
			rc, err := runOnce(t, "consume", pubDir, "", "", "")
			if err != nil {
				return fig{}, err
			}
			if rc.Applied != res.Events {
				return fig{}, fmt.Errorf("consume of the raw publish: %d of %d messages", rc.Applied, res.Events)
			}
			f := fig{Events: rc.Applied, Seconds: rc.Seconds, CPUns: rc.CPUns}
			t.Logf("%d people, round %d: raw ordered consume of %d one-event messages (%.0f MB) in %.2f s: %.0f events/s, %.1f µs CPU/event",
				o.People, r+1, rc.Applied, float64(rc.Bytes)/1e6, rc.Seconds, f.rate(), f.cpuUs())
			return f, nil
		},
		func(r int) (fig, error) {
			rr, err := runOnce(t, "replay", dir, o.ProfDir, fmt.Sprintf("%d-r%d", o.People, r+1), "")
			if err != nil {
				return fig{}, err
			}
			if rr.Applied == 0 {
				return fig{}, errors.New("replay applied nothing")
			}
			res.ReplayRSSBytes = max(res.ReplayRSSBytes, rr.Mem.VmHWM)
			f := fig{Events: res.Applied, Seconds: rr.Seconds, CPUns: rr.CPUns}
			t.Logf("%d people, round %d: replay in %.1f s: %.0f events/s, %.1f µs CPU/event; replay memory %s",
				o.People, r+1, rr.Seconds, f.rate(), f.cpuUs(), rr.Mem)
			return f, nil
		})
	if err != nil {
		return res, fmt.Errorf("replay: %w", err)
	}
	return res, nil
}

// e2eRound starts an engine process on dir, posts the workload file to its
// HTTP API (/v1/batch, perRequest events a request, one client per source
// so that each source's events stay in order) and stops the clock when the
// engine has applied everything (sync). It returns the engine process,
// still running, and the round's figure.
func e2eRound(t *testing.T, o sizeOptions, r int, dir, evFile string, client *http.Client, res *sizeResult) (*engineProc, fig, error) {
	tag := fmt.Sprintf("%d-r%d", o.People, r+1)
	ep, err := startEngineProc(t, "serve", dir, o.ProfDir, tag, "")
	if err != nil {
		return nil, fig{}, err
	}
	ready, err := ep.reply()
	if err != nil {
		return ep, fig{}, fmt.Errorf("engine start: %w", err)
	}
	r0, err := ep.call(engineCmd{Op: "cpu-start", Name: "e2e-" + tag})
	if err != nil {
		return ep, fig{}, err
	}
	start := time.Now()
	acc, rej, why, err := postWorkload(client, ready.URL, ready.Keys, evFile)
	if err != nil {
		return ep, fig{}, err
	}
	r1, err := ep.call(engineCmd{Op: "sync"})
	if err != nil {
		return ep, fig{}, err
	}
	d := time.Since(start)
	if _, err := ep.call(engineCmd{Op: "cpu-stop"}); err != nil {
		return ep, fig{}, err
	}
	if r > 0 && (acc != res.Accepted || rej != res.Rejected) {
		return ep, fig{}, fmt.Errorf("round %d accepted %d and rejected %d events, round 1 %d and %d", r+1, acc, rej, res.Accepted, res.Rejected)
	}
	res.Accepted, res.Rejected, res.RejectedWhy = acc, rej, why
	res.EngineE2ERSSBytes = max(res.EngineE2ERSSBytes, r1.Mem.VmHWM)
	f := fig{Events: res.Events, Seconds: d.Seconds(), CPUns: r1.Mem.CPUns - r0.Mem.CPUns}
	t.Logf("%d people, round %d: %d events end to end in %v (%.0f events/s, engine CPU %.1f µs/event); engine memory %s",
		o.People, r+1, res.Events, d.Round(time.Millisecond), f.rate(), f.cpuUs(), r1.Mem)
	return ep, f, nil
}

// postWorkload posts the events of the workload file to the API at url,
// perRequest a /v1/batch request, one client per source (each source's
// events in order, all identity resolution needs), and returns how many
// events the API accepted and rejected, with the first rejection's reason.
func postWorkload(client *http.Client, url string, keys map[string]string, evFile string) (accepted, rejected int, why string, err error) {
	const perRequest = 200
	queues := make([]chan []byte, len(wlg.Sources))
	var wg sync.WaitGroup
	var postErr, firstWhy atomic.Value
	var nAccepted, nRejected atomic.Int64
	for i, s := range wlg.Sources {
		q := make(chan []byte, 4) // bounded: the reader waits for slow posters
		queues[i] = q
		wg.Add(1)
		go func() { // owned: ends when q is closed
			defer wg.Done()
			for body := range q {
				if postErr.Load() != nil {
					continue
				}
				acc, rej, why, err := postCounted(client, url, keys[s], body)
				if err != nil {
					postErr.Store(err)
					continue
				}
				nAccepted.Add(int64(acc))
				if rej > 0 && nRejected.Add(int64(rej)) == int64(rej) {
					firstWhy.Store(why)
				}
			}
		}()
	}
	pending := make([]*bytes.Buffer, len(wlg.Sources))
	counts := make([]int, len(wlg.Sources))
	flush := func(i int) {
		if counts[i] == 0 {
			return
		}
		pending[i].WriteString(`]}`)
		queues[i] <- pending[i].Bytes()
		pending[i], counts[i] = nil, 0
	}
	err = readWorkload(evFile, func(i int, js []byte) error {
		if pending[i] == nil {
			pending[i] = bytes.NewBufferString(`{"batch":[`)
		} else {
			pending[i].WriteByte(',')
		}
		pending[i].Write(js)
		if counts[i]++; counts[i] == perRequest {
			flush(i)
		}
		return nil
	})
	for i := range queues {
		flush(i)
		close(queues[i])
	}
	wg.Wait()
	if err != nil {
		return 0, 0, "", err
	}
	if err, _ := postErr.Load().(error); err != nil {
		return 0, 0, "", fmt.Errorf("post: %w", err)
	}
	why, _ = firstWhy.Load().(string)
	return int(nAccepted.Load()), int(nRejected.Load()), why, nil
}

func writeLines(path string, n int, line func(i int) string) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	w := bufio.NewWriter(f)
	for i := range n {
		w.WriteString(line(i))
		w.WriteByte('\n')
	}
	if err := w.Flush(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func readLines(path string) ([]string, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	lines := strings.Split(string(data), "\n")
	if n := len(lines); n > 0 && lines[n-1] == "" {
		lines = lines[:n-1]
	}
	return lines, nil
}

// lookupsUnderLoad runs a GCR look-up of each of refs in turn (at most 10 s
// of them) while a producer ingests rate events/s in 10 ms ticks; it returns
// the sorted latencies and the achieved background rate. The producer's
// events are parsed per tick from a pool of raw JSON, so that the pool adds
// a few MiB, not tens, to the engine process's resident set.
func lookupsUnderLoad(ctx context.Context, e *engine.Engine, refs []string, rate int) ([]time.Duration, float64, error) {
	pool := workload(5_000, 20_000)
	stop := make(chan struct{})
	var sent atomic.Int64
	var loadErr error
	done := make(chan struct{})
	go func() { // owned: stopped by close(stop), waited for on done
		defer close(done)
		const tick = 10 * time.Millisecond
		perTick := max(1, rate*int(tick)/int(time.Second))
		tk := time.NewTicker(tick)
		defer tk.Stop()
		i := 0
		for {
			select {
			case <-stop:
				return
			case <-tk.C:
			}
			batch := make([]event.Event, 0, perTick)
			for range perTick {
				ev, err := event.Parse(pool[i%len(pool)], "", event.ParseOptions{Now: time.Now()})
				if err != nil {
					loadErr = fmt.Errorf("workload event %d: %w", i%len(pool), err)
					return
				}
				ev.MessageID = fmt.Sprintf("load-%d", i)
				batch = append(batch, ev)
				i++
			}
			if err := e.Edge().Ingest(ctx, "web", batch); err != nil {
				loadErr = err
				return
			}
			sent.Add(int64(perTick))
		}
	}()
	lat := make([]time.Duration, 0, len(refs))
	start := time.Now()
	for _, ref := range refs {
		if time.Since(start) > 10*time.Second {
			break
		}
		t0 := time.Now()
		_, err := e.Reader().Profile(ref)
		if err != nil && !errors.Is(err, base.ErrNotFound) {
			close(stop)
			<-done
			return nil, 0, fmt.Errorf("look-up %s: %w", ref, err)
		}
		lat = append(lat, time.Since(t0))
	}
	d := time.Since(start)
	close(stop)
	<-done
	if loadErr != nil {
		return nil, 0, fmt.Errorf("background ingest: %w", loadErr)
	}
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	return lat, float64(sent.Load()) / d.Seconds(), nil
}

// startCPUProfile writes a CPU profile to dir/cpu-<name>.pprof until stop
// is called; without a dir it does nothing.
func startCPUProfile(dir, name string) (stop func(), err error) {
	if dir == "" {
		return func() {}, nil
	}
	return startCPUWindows(dir, name, profileWindow())
}

// profileWindow is how long one CPU profile file covers
// (AURUM_BENCH_PROFILE_WINDOW, a Go duration; default 60 s; 0: the whole
// run in one file). The profiler's own table of stacks grows with the
// time a profile runs: over a 34-minute end to end at 1M profiles it held
// 38 MB of the engine's 170 MB heap (bench/RESULTS.md, "Issue #15: `make
// bench` with 1M profiles"), which windows keep to one window's worth.
func profileWindow() time.Duration {
	if v := os.Getenv("AURUM_BENCH_PROFILE_WINDOW"); v != "" {
		if d, err := time.ParseDuration(v); err == nil && d >= 0 {
			return d
		}
	}
	return time.Minute
}

// startCPUWindows profiles the CPU into dir/cpu-<name>.pprof and, every
// window (0: never), goes on in a new file cpu-<name>.w<N>.pprof (N from
// 2), so no profile holds more than a window's stacks. `go tool pprof`
// given several files merges them: cpu-<name>*.pprof is the whole run.
// stop ends the profile and the goroutine that rotates it.
func startCPUWindows(dir, name string, window time.Duration) (stop func(), err error) {
	open := func(n int) (*os.File, error) {
		file := "cpu-" + name + ".pprof"
		if n > 1 {
			file = fmt.Sprintf("cpu-%s.w%d.pprof", name, n)
		}
		f, err := os.Create(filepath.Join(dir, file))
		if err != nil {
			return nil, err
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			f.Close()
			return nil, err
		}
		return f, nil
	}
	f, err := open(1)
	if err != nil {
		return nil, err
	}
	if window <= 0 {
		return func() { pprof.StopCPUProfile(); f.Close() }, nil
	}
	done, exited := make(chan struct{}), make(chan struct{})
	go func(cur *os.File) {
		defer close(exited)
		t := time.NewTicker(window)
		defer t.Stop()
		for n := 2; ; n++ {
			select {
			case <-done:
				pprof.StopCPUProfile()
				cur.Close()
				return
			case <-t.C:
			}
			pprof.StopCPUProfile()
			cur.Close()
			next, err := open(n)
			if err != nil {
				fmt.Fprintf(os.Stderr, "bench: CPU profile window %d of %s: %v\n", n, name, err)
				<-done
				return
			}
			cur = next
		}
	}(f)
	return func() { close(done); <-exited }, nil
}

func dirSize(dir string) (int64, error) {
	var n int64
	err := filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		n += info.Size()
		return nil
	})
	return n, err
}

// peakRSS returns this process's peak resident set (VmHWM).
func peakRSS() (int64, error) {
	data, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0, err
	}
	return parseVmHWM(data)
}

func parseVmHWM(status []byte) (int64, error) { return parseStatusKB(status, "VmHWM") }

// parseStatusKB returns the field of /proc/<pid>/status (a "kB" figure)
// in bytes.
func parseStatusKB(status []byte, field string) (int64, error) {
	sc := bufio.NewScanner(bytes.NewReader(status))
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, field+":") {
			continue
		}
		f := strings.Fields(line[len(field)+1:])
		if len(f) != 2 || f[1] != "kB" {
			return 0, fmt.Errorf("bench: malformed %q", line)
		}
		kb, err := strconv.ParseInt(f[0], 10, 64)
		if err != nil {
			return 0, fmt.Errorf("bench: malformed %q: %w", line, err)
		}
		return kb << 10, nil
	}
	return 0, fmt.Errorf("bench: no %s in /proc/self/status", field)
}

// postCounted posts a /v1/batch body and returns how many events the API
// accepted and the first rejection's reason.
func postCounted(client *http.Client, url, key string, body []byte) (accepted, rejected int, why string, err error) {
	req, err := http.NewRequest("POST", url+"/v1/batch", bytes.NewReader(body))
	if err != nil {
		return 0, 0, "", err
	}
	req.SetBasicAuth(key, "")
	resp, err := client.Do(req)
	if err != nil {
		return 0, 0, "", err
	}
	defer resp.Body.Close()
	var r struct {
		Accepted int `json:"accepted"`
		Rejected []struct {
			Field  string `json:"field"`
			Reason string `json:"reason"`
		} `json:"rejected"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&r); err != nil {
		return 0, 0, "", fmt.Errorf("batch: status %d: %w", resp.StatusCode, err)
	}
	if resp.StatusCode != http.StatusOK && r.Accepted == 0 && len(r.Rejected) == 0 {
		return 0, 0, "", fmt.Errorf("batch: status %d", resp.StatusCode)
	}
	if len(r.Rejected) > 0 {
		why = r.Rejected[0].Field + ": " + r.Rejected[0].Reason
	}
	return r.Accepted, len(r.Rejected), why, nil
}
