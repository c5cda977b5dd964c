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
	envMemLim  = "AURUM_BENCH_MEMLIMIT" // engine process: Go soft memory limit, bytes ("" = none)
)

// sizeResult is what one size run measures.
type sizeResult struct {
	People      int     `json:"people"`
	Events      int     `json:"events"` // workload events sent over HTTP
	Accepted    int     `json:"accepted"`
	Rejected    int     `json:"rejected"`
	RejectedWhy string  `json:"rejected_why,omitempty"`
	Identifiers int     `json:"identifiers"`
	Profiles    int     `json:"profiles"`
	Missing     int     `json:"missing"` // identifiers without a profile
	E2ESeconds  float64 `json:"e2e_seconds"`
	E2ERate     float64 `json:"e2e_rate"`
	Precision   float64 `json:"precision"`
	Recall      float64 `json:"recall"`
	F1          float64 `json:"f1"`
	Lookups     int     `json:"lookups"`
	LookupP50us float64 `json:"lookup_p50_us"`
	LookupP99us float64 `json:"lookup_p99_us"`
	LoadRate    float64 `json:"load_rate"` // achieved background events/s
	Applied     int     `json:"applied"`   // events applied before the node stopped
	LogBytes    int64   `json:"log_bytes"` // JetStream directory size
	ReplaySecs  float64 `json:"replay_seconds"`
	ReplayRate  float64 `json:"replay_rate"`
	PebbleRate  float64 `json:"pebble_rate"` // raw batch writes of the same bytes
	// Peak resident sets (VmHWM) of the three processes of a size.
	EngineRSSBytes    int64 `json:"engine_rss_bytes"`     // the engine: API, ingest, apply, look-ups
	EngineE2ERSSBytes int64 `json:"engine_e2e_rss_bytes"` // the engine's VmHWM at the end of the end-to-end phase
	ReplayRSSBytes    int64 `json:"replay_rss_bytes"`     // engine.Replay's own process
	GenRSSBytes       int64 `json:"gen_rss_bytes"`        // generator, ground truth, scorer, raw Pebble baseline
	// CPU time of the engine process per workload event in the end-to-end
	// phase, and of the replay process per applied event.
	E2ECPUPerEvent    float64 `json:"e2e_cpu_ns_per_event"`
	ReplayCPUPerEvent float64 `json:"replay_cpu_ns_per_event"`
}

// TestReportSize is one size of the -report run, in a child process (see
// TestReport); it is skipped unless AURUM_BENCH_SIZE is set. It runs the
// workload generator and the scorer; the engine runs in a process of its
// own (TestReportEngine) that it drives over HTTP (the events) and a
// command pipe (sync, look-ups, close).
func TestReportSize(t *testing.T) {
	people, _ := strconv.Atoi(os.Getenv(envSize))
	if people <= 0 {
		t.Skip("run by TestReport -report in a child process")
	}
	days := envInt(envDays, 3)
	load := envInt(envLoad, 2000)
	looks := envInt(envLooks, 20_000)
	res, err := runSize(t, people, days, load, looks, os.Getenv(envProfile))
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

func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}

func runSize(t *testing.T, people, days, load, looks int, profDir string) (sizeResult, error) {
	res := sizeResult{People: people}
	dir := t.TempDir()
	ep, err := startEngineProc(t, "serve", dir, profDir, people)
	if err != nil {
		return res, err
	}
	defer ep.kill()
	ready, err := ep.reply()
	if err != nil {
		return res, fmt.Errorf("engine start: %w", err)
	}
	keys := ready.Keys
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
	defer client.CloseIdleConnections()

	// Sustained end-to-end: the generator streams Segment JSON; one poster
	// per source keeps each source's events in order (all identity
	// resolution needs) and posts /v1/batch requests of 200 events; the
	// clock stops when the engine has applied everything (sync).
	r0, err := ep.call(engineCmd{Op: "cpu-start", Name: fmt.Sprintf("e2e-%d", people)})
	if err != nil {
		return res, err
	}
	g := wlg.New(wlg.Config{People: people, Seed: 4, Days: days})
	const perRequest = 200
	queues := map[string]chan []byte{}
	var wg sync.WaitGroup
	var postErr, firstWhy atomic.Value
	var nAccepted, nRejected atomic.Int64
	for _, s := range wlg.Sources {
		q := make(chan []byte, 4) // bounded: the generator waits for slow posters
		queues[s] = q
		wg.Add(1)
		go func() {
			defer wg.Done()
			for body := range q {
				if postErr.Load() != nil {
					continue
				}
				acc, rej, why, err := postCounted(client, ready.URL, keys[s], body)
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
	pending := map[string][][]byte{}
	flush := func(s string) {
		if len(pending[s]) == 0 {
			return
		}
		var body bytes.Buffer
		body.WriteString(`{"batch":[`)
		body.Write(bytes.Join(pending[s], []byte{','}))
		body.WriteString(`]}`)
		queues[s] <- body.Bytes()
		pending[s] = pending[s][:0]
	}
	start := time.Now()
	for {
		w, ok := g.Next()
		if !ok {
			break
		}
		res.Events++
		pending[w.Source] = append(pending[w.Source], w.JSON)
		if len(pending[w.Source]) == perRequest {
			flush(w.Source)
		}
	}
	for _, s := range wlg.Sources {
		flush(s)
		close(queues[s])
	}
	wg.Wait()
	if err, _ := postErr.Load().(error); err != nil {
		return res, fmt.Errorf("post: %w", err)
	}
	r, err := ep.call(engineCmd{Op: "sync"})
	if err != nil {
		return res, err
	}
	d := time.Since(start)
	res.E2ECPUPerEvent = float64(r.Mem.CPUns-r0.Mem.CPUns) / float64(max(res.Events, 1))
	res.Accepted, res.Rejected = int(nAccepted.Load()), int(nRejected.Load())
	if res.Rejected > 0 {
		res.RejectedWhy, _ = firstWhy.Load().(string)
	}
	if r, err = ep.call(engineCmd{Op: "cpu-stop", Name: fmt.Sprintf("e2e-%d", people)}); err != nil {
		return res, err
	}
	res.EngineE2ERSSBytes = r.Mem.VmHWM
	res.E2ESeconds = d.Seconds()
	res.E2ERate = float64(res.Events) / d.Seconds()
	t.Logf("%d people: %d events end-to-end in %v (%.0f events/s, engine CPU %.0f µs/event); engine memory %s",
		people, res.Events, d.Round(time.Millisecond), res.E2ERate, res.E2ECPUPerEvent/1000, r.Mem)

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
	if r, err = ep.call(engineCmd{Op: "resolve", In: in, Out: out}); err != nil {
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
	t.Logf("%d people: resolved %d identifiers; engine memory %s", people, len(ids), r.Mem)

	// GCR look-ups (in the engine process, as before) while a producer
	// there ingests at a fixed rate. The generator picks the identifiers.
	rng := rand.New(rand.NewPCG(1, 2))
	if err := writeLines(in, looks, func(int) string { return ids[rng.IntN(len(ids))].String() }); err != nil {
		return res, err
	}
	if r, err = ep.call(engineCmd{Op: "lookups", In: in, Rate: load}); err != nil {
		return res, err
	}
	res.Lookups, res.LookupP50us, res.LookupP99us, res.LoadRate = r.Lookups, r.LookupP50us, r.LookupP99us, r.LoadRate
	t.Logf("%d people: %d look-ups under load; engine memory %s", people, r.Lookups, r.Mem)
	if r, err = ep.call(engineCmd{Op: "heap", Name: fmt.Sprintf("e2e-%d", people)}); err != nil {
		return res, err
	}
	res.Applied = r.Applied
	if r, err = ep.call(engineCmd{Op: "close"}); err != nil {
		return res, err
	}
	res.EngineRSSBytes = r.Mem.VmHWM
	t.Logf("%d people: engine closed; engine memory %s", people, r.Mem)
	if err := ep.wait(); err != nil {
		return res, err
	}

	// Offline replay of the stopped node's log, in a process of its own,
	// against raw Pebble batch writes of as many events carrying the log's
	// bytes (here).
	if res.LogBytes, err = dirSize(filepath.Join(dir, "jetstream")); err != nil {
		return res, err
	}
	rp, err := startEngineProc(t, "replay", dir, profDir, people)
	if err != nil {
		return res, err
	}
	defer rp.kill()
	if r, err = rp.reply(); err != nil {
		return res, fmt.Errorf("replay: %w", err)
	}
	if err := rp.wait(); err != nil {
		return res, err
	}
	if r.Applied == 0 {
		return res, fmt.Errorf("replay applied nothing")
	}
	res.ReplayRSSBytes = r.Mem.VmHWM
	res.ReplaySecs = r.Seconds
	res.ReplayRate = float64(res.Applied) / r.Seconds
	res.ReplayCPUPerEvent = float64(r.Mem.CPUns) / float64(max(res.Applied, 1))
	t.Logf("%d people: replay in %.1f s (process CPU %.0f µs/event); replay memory %s", people, r.Seconds, res.ReplayCPUPerEvent/1000, r.Mem)
	valueSize := max(16, int(res.LogBytes/int64(max(res.Applied, 1))))
	pd := pebbleWrite(t, res.Applied, valueSize, batchSize)
	res.PebbleRate = float64(res.Applied) / pd.Seconds()
	return res, nil
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
	f, err := os.Create(filepath.Join(dir, "cpu-"+name+".pprof"))
	if err != nil {
		return nil, err
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, err
	}
	return func() { pprof.StopCPUProfile(); f.Close() }, nil
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
