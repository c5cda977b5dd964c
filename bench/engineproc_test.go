package bench

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"runtime/pprof"
	"strconv"
	"testing"
	"time"

	"github.com/aurumcdp/aurum/engine"
	"github.com/aurumcdp/aurum/engine/base"
	wlg "github.com/aurumcdp/aurum/internal/workload"
	"github.com/aurumcdp/aurum/projections/audience"
)

// The engine process of a size run (TestReportEngine) is driven by the size
// process (TestReportSize) through two pipes: JSON commands on file
// descriptor 3, one JSON reply per command on descriptor 4. The first reply
// is sent unasked, once the engine is ready. The events themselves arrive
// over the engine's HTTP API, as in production.
const (
	engineCmdFD   = 3
	engineReplyFD = 4
)

// engineCmd is a command to the engine process.
type engineCmd struct {
	Op   string `json:"op"` // cpu-start, cpu-stop, sync, resolve, lookups, heap, close
	Name string `json:"name,omitempty"`
	In   string `json:"in,omitempty"`  // resolve, lookups: identifiers, one a line
	Out  string `json:"out,omitempty"` // resolve: profile ids, one a line ("" = none)
	Rate int    `json:"rate,omitempty"`
}

// engineReply answers a command.
type engineReply struct {
	Err  string            `json:"err,omitempty"`
	URL  string            `json:"url,omitempty"`  // ready: the HTTP API
	Keys map[string]string `json:"keys,omitempty"` // ready: write key per source
	Mem  memSample         `json:"mem"`

	Applied     int     `json:"applied,omitempty"` // heap: aurum_apply_events_total; replay: last position
	Lookups     int     `json:"lookups,omitempty"`
	LookupP50us float64 `json:"lookup_p50_us,omitempty"`
	LookupP99us float64 `json:"lookup_p99_us,omitempty"`
	LoadRate    float64 `json:"load_rate,omitempty"`
	Seconds     float64 `json:"seconds,omitempty"` // replay, publish, consume: the timed phase
	CPUns       int64   `json:"cpu_ns,omitempty"`  // replay, publish, consume: process CPU in the timed phase
	Bytes       int64   `json:"bytes,omitempty"`   // consume: the messages' bytes
}

// memSample is the engine process's memory when it replied.
type memSample struct {
	VmHWM, VmRSS int64  // bytes, /proc/self/status
	HeapInuse    uint64 // runtime.MemStats
	HeapSys      uint64
	GoSys        uint64 // runtime.MemStats.Sys: all the Go runtime got from the OS
	NextGC       uint64
	CPUns        int64 // process CPU time so far (user + system)
}

func (m memSample) String() string {
	mib := func(v int64) float64 { return float64(v) / (1 << 20) }
	return fmt.Sprintf("VmHWM %.0f MiB, VmRSS %.0f MiB, Go heap in use %.0f MiB, Go sys %.0f MiB",
		mib(m.VmHWM), mib(m.VmRSS), mib(int64(m.HeapInuse)), mib(int64(m.GoSys)))
}

func sampleMem() memSample {
	var m memSample
	if data, err := os.ReadFile("/proc/self/status"); err == nil {
		m.VmHWM, _ = parseStatusKB(data, "VmHWM")
		m.VmRSS, _ = parseStatusKB(data, "VmRSS")
	}
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	m.HeapInuse, m.HeapSys, m.GoSys, m.NextGC = ms.HeapInuse, ms.HeapSys, ms.Sys, ms.NextGC
	if cpu, ok := processCPU(); ok {
		m.CPUns = cpu.Nanoseconds()
	}
	return m
}

// engineProc is a running engine process, owned by the size process.
type engineProc struct {
	cmd  *exec.Cmd
	enc  *json.Encoder
	dec  *json.Decoder
	cmdW *os.File
	repR *os.File
}

// startEngineProc re-executes this test binary as TestReportEngine in mode
// ("serve", "replay", "publish" or "consume") on the data directory dir;
// tag names the size and round in its profile files; file is the workload
// file of mode "publish".
func startEngineProc(t *testing.T, mode, dir, profDir, tag, file string) (*engineProc, error) {
	cmdR, cmdW, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	repR, repW, err := os.Pipe()
	if err != nil {
		cmdR.Close()
		cmdW.Close()
		return nil, err
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestReportEngine$", "-test.count=1", "-test.v",
		"-test.timeout="+reportChildTimeout.String())
	cmd.Env = append(os.Environ(),
		envEngine+"="+mode,
		envDir+"="+dir,
		envFile+"="+file,
		envSize+"=", // not a size process
		envProfile+"="+profDir,
		envSizeTag+"="+tag)
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	cmd.ExtraFiles = []*os.File{cmdR, repW} // descriptors 3 and 4
	err = cmd.Start()
	cmdR.Close()
	repW.Close()
	if err != nil {
		cmdW.Close()
		repR.Close()
		return nil, fmt.Errorf("engine process: %w", err)
	}
	return &engineProc{cmd: cmd, enc: json.NewEncoder(cmdW), dec: json.NewDecoder(bufio.NewReader(repR)), cmdW: cmdW, repR: repR}, nil
}

// runOnce runs a one-shot mode of TestReportEngine ("replay", "publish",
// "consume") to its end and returns its one reply.
func runOnce(t *testing.T, mode, dir, profDir, tag, file string) (engineReply, error) {
	p, err := startEngineProc(t, mode, dir, profDir, tag, file)
	if err != nil {
		return engineReply{}, err
	}
	defer p.kill()
	r, err := p.reply()
	if err != nil {
		return r, fmt.Errorf("%s: %w", mode, err)
	}
	return r, p.wait()
}

// envSizeTag names the size and round in the engine process's profile
// files; envFile is the workload file a "publish" process publishes.
const (
	envSizeTag = "AURUM_BENCH_SIZE_TAG"
	envFile    = "AURUM_BENCH_FILE"
)

// reply reads the next reply; a reply with Err is an error.
func (p *engineProc) reply() (engineReply, error) {
	var r engineReply
	if err := p.dec.Decode(&r); err != nil {
		return r, fmt.Errorf("engine process: reply: %w", err)
	}
	if r.Err != "" {
		return r, fmt.Errorf("engine process: %s", r.Err)
	}
	return r, nil
}

// call sends c and waits for its reply.
func (p *engineProc) call(c engineCmd) (engineReply, error) {
	if err := p.enc.Encode(c); err != nil {
		return engineReply{}, fmt.Errorf("engine process: %s: %w", c.Op, err)
	}
	r, err := p.reply()
	if err != nil {
		return r, fmt.Errorf("%s: %w", c.Op, err)
	}
	return r, nil
}

// wait closes the command pipe (the process ends on its end) and waits for
// the process to exit.
func (p *engineProc) wait() error {
	p.cmdW.Close()
	err := p.cmd.Wait()
	p.repR.Close()
	if err != nil {
		return fmt.Errorf("engine process: %w", err)
	}
	return nil
}

// kill ends the process if it is still running (an error path).
func (p *engineProc) kill() {
	if p.cmd.ProcessState == nil {
		p.cmd.Process.Kill()
		p.cmd.Wait()
	}
	p.cmdW.Close()
	p.repR.Close()
}

// TestReportEngine is the engine process of a size run (see
// TestReportSize), or one of its baselines; it is skipped unless
// AURUM_BENCH_ENGINE is set.
func TestReportEngine(t *testing.T) {
	mode := os.Getenv(envEngine)
	if mode == "" {
		t.Skip("run by TestReportSize in a child process")
	}
	memLimit, _ := strconv.ParseInt(os.Getenv(envMemLim), 10, 64)
	in, out := os.NewFile(engineCmdFD, "commands"), os.NewFile(engineReplyFD, "replies")
	defer in.Close()
	defer out.Close()
	enc := json.NewEncoder(out)
	tag, dir, profDir := os.Getenv(envSizeTag), os.Getenv(envDir), os.Getenv(envProfile)
	if profDir != "" && (mode == "serve" || mode == "replay") {
		stop := heapPeaks(t, profDir, mode+"-"+tag)
		defer stop()
	}
	ctx := context.Background()
	var err error
	switch mode {
	case "serve":
		err = serveEngine(t, engineOptions(dir, memLimit), profDir, json.NewDecoder(bufio.NewReader(in)), enc)
	case "replay":
		err = replayEngine(replayOptions(dir, memLimit), profDir, tag, enc)
	case "publish":
		var f fig
		if f, err = publishFile(ctx, dir, os.Getenv(envFile)); err == nil {
			err = enc.Encode(engineReply{Applied: f.Events, Seconds: f.Seconds, CPUns: f.CPUns, Mem: sampleMem()})
		}
	case "consume":
		var f fig
		var n int64
		if f, n, err = rawConsume(ctx, dir); err == nil {
			err = enc.Encode(engineReply{Applied: f.Events, Seconds: f.Seconds, CPUns: f.CPUns, Bytes: n, Mem: sampleMem()})
		}
	default:
		err = fmt.Errorf("unknown mode %q", mode)
	}
	if err != nil {
		enc.Encode(engineReply{Err: err.Error(), Mem: sampleMem()})
		t.Fatal(err)
	}
}

// engineOptions are the engine process's options: the data directory, an
// embedded NATS server on a free port, and the memory limit (bytes; 0 =
// none) as `aurum serve --memory-limit` applies it.
func engineOptions(dir string, memLimit int64) engine.Options {
	// Options.MemoryLimit sizes the engine's caches; the Go soft limit they
	// leave is set here, as serve sets it.
	o := engine.Options{DataDir: dir, NATSListen: "127.0.0.1:-1", MemoryLimit: memLimit,
		StateWAL: os.Getenv(envStateWAL) == "1"}
	setGoMemoryLimit(engine.MemorySizesFor(memLimit).GoLimit)
	return o
}

// envStateWAL=1 runs the engine processes with engine.Options.StateWAL
// (the live state's WAL, as before write-back state): for A/B runs.
const envStateWAL = "AURUM_BENCH_STATE_WAL"

// replayOptions are the replay process's options, its memory limit
// applied as `aurum replay` would.
func replayOptions(dir string, memLimit int64) engine.ReplayOptions {
	o := engine.ReplayOptions{DataDir: dir, MemoryLimit: memLimit}
	setGoMemoryLimit(engine.MemorySizesFor(memLimit).GoLimit)
	return o
}

// engineCaches are the engine's two caches that decide how its cost per
// event grows with the profiles, for the memory limit (bytes; 0 = none):
// the state store's block cache and the state machine's cache of hot
// values.
func engineCaches(memLimit int64) (block, state int64) {
	s := engine.MemorySizesFor(memLimit)
	return s.StateBlockCache, int64(s.StateCache)
}

// setGoMemoryLimit sets this process's Go soft memory limit (bytes; 0 or
// less: none). The process is the whole engine: the limit is its own.
func setGoMemoryLimit(v int64) {
	if v > 0 {
		debug.SetMemoryLimit(v)
	}
}

// replayEngine runs engine.Replay with opts and replies with its time and
// CPU, its last position and this process's memory.
func replayEngine(opts engine.ReplayOptions, profDir, tag string, enc *json.Encoder) error {
	stop, err := startCPUProfile(profDir, "replay-"+tag)
	if err != nil {
		return err
	}
	cpu0, _ := processCPU()
	start := time.Now()
	rr, err := engine.Replay(context.Background(), opts)
	d := time.Since(start)
	cpu1, _ := processCPU()
	stop()
	if err != nil {
		return fmt.Errorf("replay: %w", err)
	}
	if err := writeHeapProfile(profDir, "replay-"+tag); err != nil {
		return err
	}
	return enc.Encode(engineReply{Applied: int(rr.Applied), Seconds: d.Seconds(), CPUns: (cpu1 - cpu0).Nanoseconds(), Mem: sampleMem()})
}

// serveEngine opens an engine on dir with the example audiences, its HTTP
// API and the workload's sources, replies ready, then runs commands until
// close or the end of the command pipe.
func serveEngine(t *testing.T, opts engine.Options, profDir string, dec *json.Decoder, enc *json.Encoder) error {
	ctx := context.Background()
	e, err := engine.Open(ctx, opts)
	if err != nil {
		return err
	}
	closed := false
	defer func() {
		if !closed {
			e.Close()
		}
	}()
	for _, name := range sortedNames(exampleAudiences) {
		if _, err := e.PutAudience(ctx, audience.Definition{Name: name, Rule: exampleAudiences[name]}); err != nil {
			return fmt.Errorf("audience %s: %w", name, err)
		}
	}
	ts, webKey := startAPI(t, e) // creates "web"
	defer ts.Close()
	keys := map[string]string{"web": webKey}
	for _, s := range wlg.Sources {
		if s == "web" {
			continue
		}
		k, err := e.Gate().CreateSource(ctx, s)
		if err != nil {
			return fmt.Errorf("source %s: %w", s, err)
		}
		keys[s] = k
	}
	if err := enc.Encode(engineReply{URL: ts.URL, Keys: keys, Mem: sampleMem()}); err != nil {
		return err
	}
	stopProf := func() {}
	defer func() { stopProf() }()
	for {
		var c engineCmd
		if err := dec.Decode(&c); err != nil {
			if errors.Is(err, io.EOF) {
				return nil // the size process is gone or done
			}
			return fmt.Errorf("command: %w", err)
		}
		var r engineReply
		switch c.Op {
		case "cpu-start":
			stopProf()
			if stopProf, err = startCPUProfile(profDir, c.Name); err != nil {
				return err
			}
		case "cpu-stop":
			stopProf()
			stopProf = func() {}
		case "sync":
			err = e.Sync(ctx)
		case "resolve":
			err = resolveFile(e, c.In, c.Out)
		case "lookups":
			var refs []string
			if refs, err = readLines(c.In); err != nil {
				break
			}
			var lat []time.Duration
			if lat, r.LoadRate, err = lookupsUnderLoad(ctx, e, refs, c.Rate); err != nil {
				break
			}
			if len(lat) == 0 {
				err = errors.New("no look-ups")
				break
			}
			r.Lookups = len(lat)
			r.LookupP50us = float64(lat[len(lat)/2].Nanoseconds()) / 1000
			r.LookupP99us = float64(lat[len(lat)*99/100].Nanoseconds()) / 1000
			err = e.Sync(ctx)
		case "heap":
			if err = writeHeapProfile(profDir, c.Name); err != nil {
				break
			}
			var applied float64
			applied, err = counterValue(e.Registry(), "aurum_apply_events_total")
			r.Applied = int(applied)
		case "close":
			closed = true
			err = e.Close()
		default:
			err = fmt.Errorf("unknown command %q", c.Op)
		}
		if err != nil {
			return fmt.Errorf("%s: %w", c.Op, err)
		}
		r.Mem = sampleMem()
		if err := enc.Encode(r); err != nil {
			return err
		}
	}
}

// resolveFile looks up each identifier of the file in (one a line) and
// writes its profile id, or an empty line, to the file out, streaming.
func resolveFile(e *engine.Engine, in, out string) error {
	f, err := os.Open(in)
	if err != nil {
		return err
	}
	defer f.Close()
	o, err := os.Create(out)
	if err != nil {
		return err
	}
	w := bufio.NewWriter(o)
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		v, err := e.Reader().Profile(sc.Text())
		switch {
		case errors.Is(err, base.ErrNotFound):
		case err != nil:
			o.Close()
			return fmt.Errorf("profile %s: %w", sc.Text(), err)
		default:
			w.WriteString(v.ProfileID)
		}
		w.WriteByte('\n')
	}
	if err := sc.Err(); err != nil {
		o.Close()
		return err
	}
	if err := w.Flush(); err != nil {
		o.Close()
		return err
	}
	return o.Close()
}

// heapPeaks watches the process's memory every 100 ms until stop. Each
// time the Go heap in use passes 1.1× the largest seen, it writes the heap
// profile (live objects as of the last GC) to dir/heap-peak-<name>.pprof,
// so that the profile of the peak survives it; once a second it appends
// a line to dir/mem-<name>.tsv: seconds, VmRSS, Go heap in use, Go heap
// held from the OS (sys - released), Go runtime total (sys) and the
// resident memory outside the Go runtime's (VmRSS - Go sys + released:
// Pebble's caches and memtables), all in MiB.
func heapPeaks(t *testing.T, dir, name string) (stop func()) {
	done, quit := make(chan struct{}), make(chan struct{})
	tsv, err := os.Create(filepath.Join(dir, "mem-"+name+".tsv"))
	if err != nil {
		t.Log(err)
		return func() {}
	}
	fmt.Fprintln(tsv, "s\tvmrss\theap_inuse\theap_held\tgo_sys\toutside_go")
	go func() { // owned: ended by stop
		defer close(done)
		defer tsv.Close()
		tk := time.NewTicker(100 * time.Millisecond)
		defer tk.Stop()
		start := time.Now()
		var peak uint64
		for i := 0; ; i++ {
			select {
			case <-quit:
				return
			case <-tk.C:
			}
			var ms runtime.MemStats
			runtime.ReadMemStats(&ms)
			if i%10 == 0 {
				m := sampleMem()
				mb := func(v int64) float64 { return float64(v) / (1 << 20) }
				fmt.Fprintf(tsv, "%.0f\t%.0f\t%.0f\t%.0f\t%.0f\t%.0f\n", time.Since(start).Seconds(), mb(m.VmRSS),
					mb(int64(ms.HeapInuse)), mb(int64(ms.HeapSys-ms.HeapReleased)), mb(int64(ms.Sys)),
					mb(m.VmRSS-int64(ms.Sys-ms.HeapReleased)))
			}
			if ms.HeapInuse < peak+peak/10 {
				continue
			}
			peak = ms.HeapInuse
			f, err := os.Create(filepath.Join(dir, "heap-peak-"+name+".pprof"))
			if err != nil {
				t.Log(err)
				return
			}
			pprof.Lookup("heap").WriteTo(f, 0)
			f.Close()
		}
	}()
	return func() { close(quit); <-done }
}

// writeHeapProfile writes dir/heap-<name>.pprof after a GC; without a dir
// it does nothing.
func writeHeapProfile(dir, name string) error {
	if dir == "" {
		return nil
	}
	f, err := os.Create(filepath.Join(dir, "heap-"+name+".pprof"))
	if err != nil {
		return err
	}
	runtime.GC()
	if err := pprof.Lookup("heap").WriteTo(f, 0); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// TestSizeRunSmall runs one tiny size the way -report does: the generator
// and scorer here; the engine, its replay and the baselines (raw publish,
// raw ordered consumes of the log and of the published messages) in
// processes of their own; one round.
func TestSizeRunSmall(t *testing.T) {
	if testing.Short() {
		t.Skip("starts five engine processes")
	}
	res, err := runSize(t, sizeOptions{People: 150, Days: 1, Load: 500, Looks: 50, Rounds: 1})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%+v", res)
	e2e, rep := res.E2E, res.Replay
	switch {
	case res.Events == 0 || res.Accepted != res.Events || res.Rejected != 0:
		t.Errorf("events %d, accepted %d, rejected %d (%s)", res.Events, res.Accepted, res.Rejected, res.RejectedWhy)
	case res.Applied < res.Accepted:
		t.Errorf("applied %d < accepted %d", res.Applied, res.Accepted)
	case res.Missing != 0 || res.Profiles == 0 || res.Precision != 1:
		t.Errorf("identity: %d identifiers, %d profiles, %d missing, precision %v", res.Identifiers, res.Profiles, res.Missing, res.Precision)
	case res.Lookups != 50:
		t.Errorf("look-ups %d, want 50", res.Lookups)
	case len(e2e) != 1 || e2e[0][0].Events != res.Events || e2e[0][1].Events != res.Events || e2e[0][0].rate() <= 0 || e2e[0][1].rate() <= 0:
		t.Errorf("end to end against raw publish of the same %d events: %+v", res.Events, e2e)
	case e2e[0][1].CPUns <= 0 || e2e[0][0].CPUns <= 0:
		t.Errorf("process CPU of the end to end and its baseline: %+v", e2e)
	case len(rep) != 1 || rep[0][0].Events != res.Applied || rep[0][2].Events != res.Applied || rep[0][0].rate() <= 0 || rep[0][2].rate() <= 0:
		t.Errorf("replay against a raw consume of the same log (%d events): %+v", res.Applied, rep)
	case rep[0][1].Events != res.Events || rep[0][1].rate() <= 0:
		t.Errorf("raw consume of the %d one-event messages of the raw publish: %+v", res.Events, rep[0][1])
	case res.LogEntries < 2 || res.LogEntries > res.Applied+len(exampleAudiences)+10:
		// The log holds the audiences, the events in batches of at most
		// 200, the look-ups' load and ticks.
		t.Errorf("the consumer read %d log entries for %d events", res.LogEntries, res.Applied)
	case res.StateBytes <= 0 || res.LogBytes <= 0:
		t.Errorf("state %d bytes, log %d bytes", res.StateBytes, res.LogBytes)
	case res.EngineE2ERSSBytes <= 0 || res.EngineRSSBytes < res.EngineE2ERSSBytes || res.ReplayRSSBytes <= 0 || res.GenRSSBytes != 0:
		t.Errorf("peak RSS: engine %d (end to end %d), replay %d, generator %d (set by TestReportSize only)",
			res.EngineRSSBytes, res.EngineE2ERSSBytes, res.ReplayRSSBytes, res.GenRSSBytes)
	}
}

// TestEngineProcEndsWithPipe checks the engine process's owner: when the
// command pipe closes (the size process is done or gone), the engine
// process closes the engine and exits cleanly; a command it does not know
// ends it with an error reply and a failed exit.
func TestEngineProcEndsWithPipe(t *testing.T) {
	if testing.Short() {
		t.Skip("starts engine processes")
	}
	for _, bad := range []bool{false, true} {
		ep, err := startEngineProc(t, "serve", t.TempDir(), "", "1", "")
		if err != nil {
			t.Fatal(err)
		}
		defer ep.kill()
		r, err := ep.reply()
		if err != nil {
			t.Fatal(err)
		}
		if r.URL == "" || len(r.Keys) != len(wlg.Sources) || r.Mem.VmHWM <= 0 {
			t.Fatalf("ready: %+v", r)
		}
		if bad {
			if _, err := ep.call(engineCmd{Op: "no-such-op"}); err == nil {
				t.Fatal("an unknown command did not fail")
			}
		}
		if err := ep.wait(); (err != nil) != bad {
			t.Fatalf("unknown command sent %v: exit %v", bad, err)
		}
	}
}
