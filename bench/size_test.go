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

	wlg "github.com/aurumcdp/aurum/bench/workload"
	"github.com/aurumcdp/aurum/engine"
	"github.com/aurumcdp/aurum/event"
	"github.com/aurumcdp/aurum/projections/audience"
)

// Environment of a size run: TestReport re-executes the test binary once per
// size so that each size's peak RSS is its own process's.
const (
	envSize    = "AURUM_BENCH_SIZE"    // people
	envDays    = "AURUM_BENCH_DAYS"    // simulated days of the workload
	envOut     = "AURUM_BENCH_OUT"     // file the JSON sizeResult is written to
	envProfile = "AURUM_BENCH_PROFILE" // directory for CPU profiles ("" = none)
	envLoad    = "AURUM_BENCH_LOAD"    // background events/s during the look-ups
	envLooks   = "AURUM_BENCH_LOOKUPS" // look-ups under load
)

// sizeResult is what one size run measures.
type sizeResult struct {
	People       int     `json:"people"`
	Events       int     `json:"events"` // workload events sent over HTTP
	Accepted     int     `json:"accepted"`
	Rejected     int     `json:"rejected"`
	RejectedWhy  string  `json:"rejected_why,omitempty"`
	Identifiers  int     `json:"identifiers"`
	Profiles     int     `json:"profiles"`
	Missing      int     `json:"missing"` // identifiers without a profile
	E2ESeconds   float64 `json:"e2e_seconds"`
	E2ERate      float64 `json:"e2e_rate"`
	Precision    float64 `json:"precision"`
	Recall       float64 `json:"recall"`
	F1           float64 `json:"f1"`
	Lookups      int     `json:"lookups"`
	LookupP50us  float64 `json:"lookup_p50_us"`
	LookupP99us  float64 `json:"lookup_p99_us"`
	LoadRate     float64 `json:"load_rate"` // achieved background events/s
	Applied      int     `json:"applied"`   // events applied before the node stopped
	LogBytes     int64   `json:"log_bytes"` // JetStream directory size
	ReplaySecs   float64 `json:"replay_seconds"`
	ReplayRate   float64 `json:"replay_rate"`
	PebbleRate   float64 `json:"pebble_rate"` // raw batch writes of the same bytes
	PeakRSSBytes int64   `json:"peak_rss_bytes"`
}

// TestReportSize is one size of the -report run, in a child process (see
// TestReport); it is skipped unless AURUM_BENCH_SIZE is set.
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
	if res.PeakRSSBytes, err = peakRSS(); err != nil {
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
	ctx := context.Background()
	res := sizeResult{People: people}
	dir := t.TempDir()
	e, err := engine.Open(ctx, engine.Options{DataDir: dir, NATSListen: "127.0.0.1:-1"})
	if err != nil {
		return res, err
	}
	closed := false
	defer func() {
		if !closed {
			e.Close()
		}
	}()
	for _, name := range sortedNames(exampleAudiences) {
		if _, err := e.PutAudience(ctx, audience.Definition{Name: name, Rule: exampleAudiences[name]}); err != nil {
			return res, fmt.Errorf("audience %s: %w", name, err)
		}
	}
	ts, webKey := startAPI(t, e) // creates "web"
	keys := map[string]string{"web": webKey}
	for _, s := range wlg.Sources {
		if s == "web" {
			continue
		}
		k, err := e.CreateSource(ctx, s)
		if err != nil {
			return res, fmt.Errorf("source %s: %w", s, err)
		}
		keys[s] = k
	}

	// Sustained end-to-end: the generator streams Segment JSON; one poster
	// per source keeps each source's events in order (all identity
	// resolution needs) and posts /v1/batch requests of 200 events; the
	// clock stops when the engine has applied everything (Sync).
	stopProf := startCPUProfile(t, profDir, fmt.Sprintf("e2e-%d", people))
	g := wlg.New(wlg.Config{People: people, Seed: 4, Days: days})
	const perRequest = 200
	queues := map[string]chan []byte{}
	var wg sync.WaitGroup
	var postErr, firstWhy atomic.Value
	var nAccepted, nRejected atomic.Int64
	client := ts.Client()
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
				acc, rej, why, err := postCounted(client, ts.URL, keys[s], body)
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
	if err := e.Sync(ctx); err != nil {
		return res, err
	}
	d := time.Since(start)
	res.Accepted, res.Rejected = int(nAccepted.Load()), int(nRejected.Load())
	if res.Rejected > 0 {
		res.RejectedWhy, _ = firstWhy.Load().(string)
	}
	stopProf()
	res.E2ESeconds = d.Seconds()
	res.E2ERate = float64(res.Events) / d.Seconds()
	t.Logf("%d people: %d events end-to-end in %v (%.0f events/s)", people, res.Events, d.Round(time.Millisecond), res.E2ERate)

	// Identity quality: each identifier's profile is its cluster.
	truth := g.Truth()
	res.Identifiers = truth.Len()
	byProfile := map[string][]wlg.Identifier{}
	var clusters [][]wlg.Identifier
	ids := truth.Identifiers()
	for _, id := range ids {
		v, err := e.Profile(id.String())
		if errors.Is(err, engine.ErrNotFound) {
			res.Missing++
			clusters = append(clusters, []wlg.Identifier{id})
			continue
		}
		if err != nil {
			return res, fmt.Errorf("profile %s: %w", id, err)
		}
		byProfile[v.ProfileID] = append(byProfile[v.ProfileID], id)
	}
	for _, c := range byProfile {
		clusters = append(clusters, c)
	}
	res.Profiles = len(byProfile)
	res.Precision, res.Recall, res.F1 = truth.Score(clusters)

	// GCR look-ups while a producer ingests at a fixed rate.
	lat, achieved, err := lookupsUnderLoad(ctx, e, ids, load, looks)
	if err != nil {
		return res, err
	}
	res.Lookups = len(lat)
	res.LookupP50us = float64(lat[len(lat)/2].Nanoseconds()) / 1000
	res.LookupP99us = float64(lat[len(lat)*99/100].Nanoseconds()) / 1000
	res.LoadRate = achieved
	if err := e.Sync(ctx); err != nil {
		return res, err
	}
	applied, err := counterValue(e.Registry(), "aurum_apply_events_total")
	if err != nil {
		return res, err
	}
	res.Applied = int(applied)
	closed = true
	if err := e.Close(); err != nil {
		return res, err
	}

	// Offline replay of the stopped node's log against raw Pebble batch
	// writes of as many events carrying the log's bytes.
	if res.LogBytes, err = dirSize(filepath.Join(dir, "jetstream")); err != nil {
		return res, err
	}
	stopProf = startCPUProfile(t, profDir, fmt.Sprintf("replay-%d", people))
	start = time.Now()
	rr, err := engine.Replay(ctx, engine.ReplayOptions{DataDir: dir})
	if err != nil {
		return res, fmt.Errorf("replay: %w", err)
	}
	d = time.Since(start)
	stopProf()
	if rr.Applied == 0 {
		return res, fmt.Errorf("replay applied nothing")
	}
	res.ReplaySecs = d.Seconds()
	res.ReplayRate = float64(res.Applied) / d.Seconds()
	valueSize := max(16, int(res.LogBytes/int64(max(res.Applied, 1))))
	pd := pebbleWrite(t, res.Applied, valueSize, batchSize)
	res.PebbleRate = float64(res.Applied) / pd.Seconds()
	return res, nil
}

// lookupsUnderLoad runs looks GCR look-ups of random identifiers (at most
// 10 s of them) while a producer ingests rate events/s in 10 ms ticks; it
// returns the sorted latencies and the achieved background rate.
func lookupsUnderLoad(ctx context.Context, e *engine.Engine, ids []wlg.Identifier, rate, looks int) ([]time.Duration, float64, error) {
	pool := parseAll(nopTB{}, workload(5_000, 20_000))
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
			batch := make([]event.Event, perTick)
			for j := range batch {
				batch[j] = pool[i%len(pool)]
				batch[j].MessageID = fmt.Sprintf("load-%d", i)
				i++
			}
			if err := e.Ingest(ctx, "web", batch); err != nil {
				loadErr = err
				return
			}
			sent.Add(int64(perTick))
		}
	}()
	rng := rand.New(rand.NewPCG(1, 2))
	lat := make([]time.Duration, 0, looks)
	start := time.Now()
	for range looks {
		if time.Since(start) > 10*time.Second {
			break
		}
		id := ids[rng.IntN(len(ids))]
		t0 := time.Now()
		_, err := e.Profile(id.String())
		if err != nil && !errors.Is(err, engine.ErrNotFound) {
			close(stop)
			<-done
			return nil, 0, fmt.Errorf("look-up %s: %w", id, err)
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

// nopTB lets parseAll run outside a benchmark; the workload always parses.
type nopTB struct{ testing.TB }

func (nopTB) Fatalf(format string, args ...any) { panic(fmt.Sprintf(format, args...)) }

func startCPUProfile(t *testing.T, dir, name string) (stop func()) {
	if dir == "" {
		return func() {}
	}
	f, err := os.Create(filepath.Join(dir, "cpu-"+name+".pprof"))
	if err != nil {
		t.Fatal(err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		t.Fatal(err)
	}
	return func() { pprof.StopCPUProfile(); f.Close() }
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

func parseVmHWM(status []byte) (int64, error) {
	sc := bufio.NewScanner(bytes.NewReader(status))
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, "VmHWM:") {
			continue
		}
		f := strings.Fields(line[len("VmHWM:"):])
		if len(f) != 2 || f[1] != "kB" {
			return 0, fmt.Errorf("bench: malformed %q", line)
		}
		kb, err := strconv.ParseInt(f[0], 10, 64)
		if err != nil {
			return 0, fmt.Errorf("bench: malformed %q: %w", line, err)
		}
		return kb << 10, nil
	}
	return 0, errors.New("bench: no VmHWM in /proc/self/status")
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
