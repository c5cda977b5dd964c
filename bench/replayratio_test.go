package bench

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/aurumcdp/aurum/engine"
	alog "github.com/aurumcdp/aurum/log"
)

// Issue #15's replay target: `aurum replay` at ≥ 0.5× a raw ordered consume
// of as many messages. TestReplayRatio measures it in one process, rounds
// interleaved, medians:
//
//   - raw msgs: an ordered consume (log.Reader, as the replay reads) of N
//     messages of one event each (N = the events in the replay log, each of
//     the log's mean bytes per event), from a scratch log kept beside it;
//   - raw log: an ordered consume of the replay log itself (its entries
//     hold many events each: the floor of what reading costs the replay);
//   - replay: engine.Replay of that log (offline, from the first entry).
//
// Each phase opens its log (embedded server on the directory) as the replay
// does, and is timed from before the open to after the last entry. CPU is
// the process's (every goroutine, the embedded server's included).
//
//	AURUM_BENCH=replay go test -run '^TestReplayRatio$' -v ./bench/
//
// $AURUM_BENCH_REPLAY_DIR, _EVENTS and _PER_ENTRY choose the log as for
// BenchmarkReplay; $AURUM_BENCH_REPLAY_ROUNDS the rounds (default 3).
// $AURUM_BENCH_REPLAY_MEMLIMIT (MiB; default none) gives the replay a
// memory limit as `aurum serve --memory-limit` gives the engine: its
// caches sized from it and the Go soft limit set (and put back after each
// replay); $AURUM_BENCH_REPLAY_GROUP_BYTES overrides its group bound;
// $AURUM_BENCH_REPLAY_PROFILE_DIR writes a CPU profile of each replay
// there. Each replay's GC share of the process CPU and GC cycles are
// reported beside it (runtime/metrics). `make bench-replay` runs it.
func TestReplayRatio(t *testing.T) {
	if os.Getenv("AURUM_BENCH") != "replay" {
		t.Skip("set AURUM_BENCH=replay (make bench-replay)")
	}
	ctx := context.Background()
	dir := os.Getenv("AURUM_BENCH_REPLAY_DIR")
	if dir == "" {
		dir = t.TempDir()
	}
	r, err := measureReplayRatio(ctx, t, dir, envInt("AURUM_BENCH_REPLAY_ROUNDS", 3))
	if err != nil {
		t.Fatal(err)
	}
	t.Log("\n" + r.table())
}

// replayPhase is one timed phase of a round.
type replayPhase struct {
	Seconds float64 `json:"seconds"`
	CPUns   int64   `json:"cpu_ns"`
	// GCns and UserNs are the runtime's estimates of the CPU the garbage
	// collector and the Go code took (runtime/metrics /cpu/classes: to be
	// compared with each other only), GCs the GC's completed cycles.
	GCns   int64  `json:"gc_cpu_ns"`
	UserNs int64  `json:"user_cpu_ns"`
	GCs    uint64 `json:"gc_cycles"`
}

// replayRatio is what measureReplayRatio found: per round and phase, and
// the medians the report prints.
type replayRatio struct {
	Events     int     `json:"events"`      // in the replay log
	Entries    uint64  `json:"log_entries"` // of the replay log
	EventBytes int     `json:"event_bytes"` // mean bytes per event in the log (the raw messages' size)
	Load       string  `json:"load"`        // /proc/loadavg before and after
	Rounds     []round `json:"rounds"`

	// Medians over the rounds: events (or messages) per second and CPU
	// nanoseconds per event.
	RawMsgsRate, RawLogRate, ReplayRate float64
	RawMsgsCPU, RawLogCPU, ReplayCPU    float64
	// The replay's GC: median share of its CPU and cycles.
	ReplayGCShare float64
	ReplayGCs     float64
	MemLimit      int64 // the replay's memory limit (bytes; 0: none)
	GroupBytes    int   // its group bound (0: the default)
}

type round struct {
	RawMsgs, RawLog, Replay replayPhase
}

// measureReplayRatio builds (or reuses) the replay log in dir and a scratch
// log of as many one-event messages in dir/raw-msgs, then runs rounds of
// the three phases, interleaved. TestReport can call it with a size's data
// directory after its engine stopped.
func measureReplayRatio(ctx context.Context, tb testing.TB, dir string, rounds int) (replayRatio, error) {
	var res replayRatio
	res.Events = readOrBuildReplayLog(tb, ctx, dir)
	// The replay log's size: its entries and bytes.
	entries, logBytes, _, err := consumeLog(ctx, filepath.Join(dir, "jetstream"))
	if err != nil {
		return res, fmt.Errorf("read the replay log: %w", err)
	}
	res.Entries = entries
	res.EventBytes = max(int(logBytes/int64(max(res.Events, 1))), 1)
	rawDir := filepath.Join(dir, "raw-msgs")
	if err := buildRawLog(ctx, rawDir, res.Events, res.EventBytes); err != nil {
		return res, err
	}
	res.MemLimit = int64(envInt("AURUM_BENCH_REPLAY_MEMLIMIT", 0)) << 20
	res.GroupBytes = envInt("AURUM_BENCH_REPLAY_GROUP_BYTES", 0)
	profDir := os.Getenv("AURUM_BENCH_REPLAY_PROFILE_DIR")
	load0 := loadavg()
	for range rounds {
		var rd round
		var n uint64
		if rd.RawMsgs, n, err = timed(func() (uint64, error) {
			n, _, _, err := consumeLog(ctx, rawDir)
			return n, err
		}); err != nil {
			return res, err
		}
		if n != uint64(res.Events) {
			return res, fmt.Errorf("raw msgs: consumed %d of %d", n, res.Events)
		}
		if rd.RawLog, n, err = timed(func() (uint64, error) {
			n, _, _, err := consumeLog(ctx, filepath.Join(dir, "jetstream"))
			return n, err
		}); err != nil {
			return res, err
		}
		if n != entries {
			return res, fmt.Errorf("raw log: consumed %d of %d entries", n, entries)
		}
		if rd.Replay, n, err = timed(func() (uint64, error) {
			stop, err := startCPUProfile(profDir, fmt.Sprintf("replayratio-r%d", len(res.Rounds)+1))
			if err != nil {
				return 0, err
			}
			defer stop()
			if res.MemLimit > 0 { // as aurum serve does, for the replay only
				defer debug.SetMemoryLimit(debug.SetMemoryLimit(engine.MemorySizesFor(res.MemLimit).GoLimit))
			}
			rr, err := engine.Replay(ctx, engine.ReplayOptions{DataDir: dir, MemoryLimit: res.MemLimit, GroupBytes: res.GroupBytes})
			return rr.Applied, err
		}); err != nil {
			return res, fmt.Errorf("replay: %w", err)
		}
		if n != entries {
			return res, fmt.Errorf("replay applied up to %d of %d entries", n, entries)
		}
		res.Rounds = append(res.Rounds, rd)
		tb.Logf("round %d: raw msgs %.3f s, raw log %.3f s, replay %.3f s (CPU %.1f / %.1f / %.1f µs/event; replay GC %.0f%% of its Go CPU, %d cycles; load %s)",
			len(res.Rounds), rd.RawMsgs.Seconds, rd.RawLog.Seconds, rd.Replay.Seconds,
			float64(rd.RawMsgs.CPUns)/float64(res.Events)/1e3, float64(rd.RawLog.CPUns)/float64(res.Events)/1e3,
			float64(rd.Replay.CPUns)/float64(res.Events)/1e3, 100*rd.Replay.gcShare(), rd.Replay.GCs, loadavg())
	}
	res.Load = load0 + " → " + loadavg()
	ev := float64(res.Events)
	med := func(f func(round) replayPhase, cpu bool) float64 {
		var xs []float64
		for _, rd := range res.Rounds {
			p := f(rd)
			if cpu {
				xs = append(xs, float64(p.CPUns)/ev)
			} else {
				xs = append(xs, ev/p.Seconds)
			}
		}
		return medianF(xs)
	}
	rawMsgs := func(r round) replayPhase { return r.RawMsgs }
	rawLog := func(r round) replayPhase { return r.RawLog }
	replay := func(r round) replayPhase { return r.Replay }
	res.RawMsgsRate, res.RawMsgsCPU = med(rawMsgs, false), med(rawMsgs, true)
	res.RawLogRate, res.RawLogCPU = med(rawLog, false), med(rawLog, true)
	res.ReplayRate, res.ReplayCPU = med(replay, false), med(replay, true)
	var shares, cycles []float64
	for _, rd := range res.Rounds {
		shares, cycles = append(shares, rd.Replay.gcShare()), append(cycles, float64(rd.Replay.GCs))
	}
	res.ReplayGCShare, res.ReplayGCs = medianF(shares), medianF(cycles)
	return res, nil
}

// gcShare is the GC's share of the CPU the Go runtime saw in the phase
// (GC and Go code).
func (p replayPhase) gcShare() float64 {
	if p.GCns+p.UserNs <= 0 {
		return 0
	}
	return float64(p.GCns) / float64(p.GCns+p.UserNs)
}

// gcCPU reads the runtime's estimates of the CPU the GC and the Go code
// took so far, and the GC's completed cycles.
func gcCPU() (gc, user time.Duration, cycles uint64) {
	s := []metrics.Sample{{Name: "/cpu/classes/gc/total:cpu-seconds"}, {Name: "/cpu/classes/user:cpu-seconds"}, {Name: "/gc/cycles/total:gc-cycles"}}
	metrics.Read(s)
	if s[0].Value.Kind() != metrics.KindFloat64 || s[1].Value.Kind() != metrics.KindFloat64 || s[2].Value.Kind() != metrics.KindUint64 {
		return 0, 0, 0
	}
	sec := func(v float64) time.Duration { return time.Duration(v * 1e9) }
	return sec(s[0].Value.Float64()), sec(s[1].Value.Float64()), s[2].Value.Uint64()
}

// table prints the medians and the ratios.
func (r replayRatio) table() string {
	var b strings.Builder
	fmt.Fprintf(&b, "replay log: %d events in %d entries, %d bytes per event; %d rounds; load %s\n",
		r.Events, r.Entries, r.EventBytes, len(r.Rounds), r.Load)
	fmt.Fprintf(&b, "| phase | events/s (median) | CPU µs/event (median) | replay ÷ phase, events/s |\n|---|---|---|---|\n")
	row := func(name string, rate, cpu float64) {
		fmt.Fprintf(&b, "| %s | %.0f | %.2f | %.3f× |\n", name, rate, cpu/1e3, r.ReplayRate/rate)
	}
	row("raw ordered consume, 1 event per message", r.RawMsgsRate, r.RawMsgsCPU)
	row("raw ordered consume of the replay log", r.RawLogRate, r.RawLogCPU)
	row("engine.Replay", r.ReplayRate, r.ReplayCPU)
	fmt.Fprintf(&b, "replay: memory limit %d MiB, group bytes %d (0: the default); GC %.0f%% of its Go CPU (runtime/metrics), %.0f cycles (medians)\n",
		r.MemLimit>>20, r.GroupBytes, 100*r.ReplayGCShare, r.ReplayGCs)
	return b.String()
}

// timed runs fn after a GC and returns its wall and process CPU time.
func timed(fn func() (uint64, error)) (replayPhase, uint64, error) {
	runtime.GC()
	gc0, user0, cycles0 := gcCPU()
	cpu0, _ := processCPU()
	start := time.Now()
	n, err := fn()
	d := time.Since(start)
	cpu1, _ := processCPU()
	gc1, user1, cycles1 := gcCPU()
	return replayPhase{Seconds: d.Seconds(), CPUns: (cpu1 - cpu0).Nanoseconds(), GCns: (gc1 - gc0).Nanoseconds(),
		UserNs: (user1 - user0).Nanoseconds(), GCs: cycles1 - cycles0}, n, err
}

// consumeLog opens the log whose embedded server stores in jsDir and reads
// AURUM_LOG from the first entry to the last through a log.Reader (an
// ordered consumer, as the replay reads it). It returns the entries, their
// bytes and the time the reading took after the open.
func consumeLog(ctx context.Context, jsDir string) (uint64, int64, time.Duration, error) {
	l, err := alog.Open(ctx, alog.Options{Dir: jsDir, Listen: "127.0.0.1:-1"})
	if err != nil {
		return 0, 0, 0, err
	}
	defer l.Close()
	last, err := l.LastSeq(ctx)
	if err != nil {
		return 0, 0, 0, err
	}
	r, err := l.NewReader(1)
	if err != nil {
		return 0, 0, 0, err
	}
	defer r.Close()
	start := time.Now()
	var n uint64
	var bytes int64
	for n < last {
		rctx, cancel := context.WithTimeout(ctx, time.Minute)
		ent, err := r.Next(rctx)
		cancel()
		if err != nil {
			return n, bytes, 0, err
		}
		n++
		bytes += int64(len(ent.Data))
		if ent.Seq >= last {
			break
		}
	}
	return n, bytes, time.Since(start), nil
}

// buildRawLog makes, once, a log in dir of n messages of size bytes each
// (AURUM_LOG; a subject the state machine would skip), marked done by
// dir/messages.
func buildRawLog(ctx context.Context, dir string, n, size int) error {
	mark := filepath.Join(dir, "messages")
	if data, err := os.ReadFile(mark); err == nil && string(data) == strconv.Itoa(n) {
		return nil
	}
	if err := os.RemoveAll(dir); err != nil {
		return err
	}
	l, err := alog.Open(ctx, alog.Options{Dir: dir, Listen: "127.0.0.1:-1"})
	if err != nil {
		return err
	}
	defer l.Close()
	payload := make([]byte, size)
	for i := range payload {
		payload[i] = byte(i*31 + 7)
	}
	const inFlight = 1000
	futs := make([]*alog.Future, 0, inFlight)
	wait := func() error {
		for _, f := range futs {
			if _, _, err := f.Wait(ctx); err != nil {
				return err
			}
		}
		futs = futs[:0]
		return nil
	}
	for i := range n {
		f, err := l.AppendAsync("aurum.log.bench", "raw-"+strconv.Itoa(i), payload)
		if err != nil {
			return err
		}
		if futs = append(futs, f); len(futs) == inFlight {
			if err := wait(); err != nil {
				return err
			}
		}
	}
	if err := wait(); err != nil {
		return err
	}
	return os.WriteFile(mark, []byte(strconv.Itoa(n)), 0o644)
}

// loadavg is the first three fields of /proc/loadavg ("" elsewhere).
func loadavg() string {
	data, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return ""
	}
	f := strings.Fields(string(data))
	if len(f) < 3 {
		return ""
	}
	return strings.Join(f[:3], " ")
}
