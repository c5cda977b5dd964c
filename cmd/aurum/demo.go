package main

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"net/http"
	"os"
	"runtime/debug"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/aurumcdp/aurum/api"
	"github.com/aurumcdp/aurum/console"
	"github.com/aurumcdp/aurum/engine"
	"github.com/aurumcdp/aurum/engine/access"
	"github.com/aurumcdp/aurum/internal/workload"
	"github.com/aurumcdp/aurum/projections/audience"
	"github.com/spf13/cobra"
)

type demoFlags struct {
	dataDir, httpAddr, natsAddr string
	memoryLimit                 string // --memory-limit as serve reads it; "": serve's default
	keep                        bool
	nodes                       int
	people                      int
	rate                        float64
	duration                    time.Duration
	seed                        uint64
}

// audienceSizes reports the current size of each audience by name.
//
// Every status line ends with "audiences name=size ..."; nil prints none.
type audienceSizes func(ctx context.Context, e *engine.Engine) (map[string]int64, error)

// demoAudiences are the product's example audiences, installed by the demo.
var demoAudiences = []audience.Definition{
	{Name: "buyers-no-returns", Description: "bought without returning, last 90 days", Rule: `count("Order Completed", "90d") >= 1 and count("Order Refunded", "90d") == 0`},
	{Name: "high-spenders", Description: "high spenders", Rule: `sum("Order Completed", "revenue", "365d") >= 1000`},
	{Name: "lapsed", Description: "lapsed buyers (churners)", Rule: `count("Order Completed") >= 2 and days_since("Order Completed") > 90`},
	{Name: "browsers", Description: "browsers", Rule: `count("Product Viewed", "7d") >= 5 and count("Order Completed", "30d") == 0`},
	{Name: "loyalty", Description: "loyalty", Rule: `traits.loyalty_tier in ["gold", "platinum"] and traits.country == "DK"`},
	{Name: "claimers", Description: "claimers", Rule: `count("Order Refunded", "180d", properties.reason == "damaged") >= 2`},
	{Name: "cart-abandoners", Description: "cart abandoners", Rule: `funnel(["Product Viewed", "Product Added"], "2h") and count("Order Completed", "1d") == 0`},
	{Name: "vip", Description: "high spenders who do not claim", Rule: `in_audience("high-spenders") and not in_audience("claimers")`},
}

// exampleAudienceSizes installs the example audiences on first use and then
// reports their sizes.
func exampleAudienceSizes() audienceSizes {
	var once sync.Once
	var installErr error
	return func(ctx context.Context, e *engine.Engine) (map[string]int64, error) {
		once.Do(func() {
			for _, d := range demoAudiences {
				if _, err := e.PutAudience(ctx, d); err != nil {
					installErr = fmt.Errorf("install audience %s: %w", d.Name, err)
					return
				}
			}
		})
		if installErr != nil {
			return nil, installErr
		}
		list, err := e.Reader().Audiences()
		if err != nil {
			return nil, err
		}
		sizes := make(map[string]int64, len(list))
		for _, a := range list {
			sizes[a.Name] = a.Size
		}
		return sizes, nil
	}
}

// demoHooks are the optional parts of the demo's status line.
type demoHooks struct {
	audiences audienceSizes
}

func newDemoCmd() *cobra.Command {
	var f demoFlags
	cmd := &cobra.Command{
		Use:   "demo",
		Short: "Run a node fed by a synthetic store's customers",
		Long: `Run an Aurum node (embedded NATS and Pebble, HTTP API) and stream a synthetic store's
events into it: --people customers browsing on the web and in the app, signing in, ordering and
refunding, buying in stores with loyalty cards, and CRM rows (see internal/workload). Every second
it prints the events sent, the event rate, the profiles, merges and dead letters.

The demo generates an admin token and prints it with curl examples. The data lives in a fresh
temporary directory removed at exit unless --keep is given (a --data-dir you name is kept).
Ctrl-C stops it; --duration stops it after a while.

With --nodes N (2..5) it starts a cluster instead: N "aurum serve --cluster" processes of this
binary on this machine (HTTP and NATS ports counting up from --http and --nats, the cluster file,
master key and node logs in the data directory), installs the example audiences and streams the
store over HTTP to the nodes in turn. Kill a node (kill -9 PID, printed at start) to watch its
partitions move; "aurum cluster status" shows the cluster.

--memory-limit (e.g. 512MiB, 2GiB) is the resident memory the node may use, as for aurum serve:
the caches and memtables are sized from it and the Go runtime's soft limit is set to what they
leave. Same default: $GOMEMLIMIT if set, else 80% of the cgroup memory limit, else half the
physical memory. With --nodes, each node gets it.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if f.nodes != 1 {
				return runDemoCluster(cmd.Context(), cmd.OutOrStdout(), f)
			}
			return runDemo(cmd.Context(), cmd.OutOrStdout(), f, demoHooks{audiences: exampleAudienceSizes()})
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&f.dataDir, "data-dir", "", "data directory (default: a fresh temporary directory, removed at exit unless --keep)")
	fl.BoolVar(&f.keep, "keep", false, "keep the temporary data directory at exit")
	fl.StringVar(&f.httpAddr, "http", "127.0.0.1:8080", "HTTP API listen address (port 0 picks a free port)")
	fl.StringVar(&f.natsAddr, "nats", "127.0.0.1:4222", "embedded NATS client listen address (port -1 picks a free port)")
	fl.IntVar(&f.people, "people", 5000, "customers in the synthetic store")
	fl.Float64Var(&f.rate, "rate", 2000, "events per second offered (0 = as fast as possible)")
	fl.DurationVar(&f.duration, "duration", 0, "stop after this long (0 = until Ctrl-C)")
	fl.Uint64Var(&f.seed, "seed", 1, "workload seed (the same seed gives the same events)")
	fl.IntVar(&f.nodes, "nodes", 1, fmt.Sprintf("run a cluster of this many serve processes (2..%d; their HTTP and NATS ports count up from --http and --nats)", maxDemoNodes))
	fl.StringVar(&f.memoryLimit, "memory-limit", "", "resident memory the node may use (with --nodes: each node), e.g. 512MiB or 2GiB, as aurum serve --memory-limit: sizes its caches and sets the Go runtime's soft limit (default $GOMEMLIMIT, else 80% of the cgroup's memory limit, else half the physical memory; at least 256MiB)")
	return cmd
}

// workload checks the flags both demos share and returns the store's
// configuration.
func (f demoFlags) workload() (workload.Config, error) {
	if f.rate < 0 {
		return workload.Config{}, fmt.Errorf("--rate: must not be negative, got %v", f.rate)
	}
	if f.duration < 0 {
		return workload.Config{}, fmt.Errorf("--duration: must not be negative, got %v", f.duration)
	}
	wcfg := workload.Config{People: f.people, Seed: f.seed, Start: time.Now().UTC().Add(-30 * 24 * time.Hour).Truncate(24 * time.Hour), Days: 30}
	wcfg.EnsureDefaults()
	if err := wcfg.Validate(); err != nil {
		return workload.Config{}, fmt.Errorf("--people: %w", err)
	}
	return wcfg, nil
}

// dataDirFor returns --data-dir (created) or a fresh temporary directory
// named after prefix, and whether it is removed at exit (a temporary one
// without --keep).
func (f demoFlags) dataDirFor(prefix string) (dir string, remove bool, err error) {
	if f.dataDir != "" {
		if err := os.MkdirAll(f.dataDir, 0o700); err != nil {
			return "", false, fmt.Errorf("--data-dir: %w", err)
		}
		return f.dataDir, false, nil
	}
	if dir, err = os.MkdirTemp("", prefix); err != nil {
		return "", false, fmt.Errorf("demo: data dir: %w", err)
	}
	return dir, !f.keep, nil
}

// removeDemoDir removes dir when remove is set; a failure becomes *err
// unless that holds an error already.
func removeDemoDir(dir string, remove bool, err *error) {
	if !remove {
		return
	}
	if rerr := os.RemoveAll(dir); rerr != nil && *err == nil {
		*err = fmt.Errorf("demo: remove data dir: %w", rerr)
	}
}

// Bounds of the demo's producer.
const (
	demoMaxBatch = 500                   // events per Ingest call
	demoTick     = 50 * time.Millisecond // producer pacing interval
	// demoBurst is the most the producer sends at once after a slow
	// spell, in seconds of its rate (a second's worth put 536 events in
	// one second of a 300/s run on a loaded machine).
	demoBurst = 200 * time.Millisecond
)

func runDemo(ctx context.Context, out io.Writer, f demoFlags, hooks demoHooks) (err error) {
	wcfg, err := f.workload()
	if err != nil {
		return err
	}
	limit, _, err := memoryLimit(f.memoryLimit, readMachineMemory())
	if err != nil {
		return err
	}

	dataDir, removeDir, err := f.dataDirFor("aurum-demo-")
	if err != nil {
		return err
	}
	defer removeDemoDir(dataDir, removeDir, &err)

	raw := make([]byte, 24)
	if _, err := rand.Read(raw); err != nil {
		return fmt.Errorf("demo: admin token: %w", err)
	}
	token := "at_" + base64.RawURLEncoding.EncodeToString(raw)
	tokenHash := sha256.Sum256([]byte(token))

	// The Go runtime's soft limit, as aurum serve sets it (the demo owns
	// the process).
	defer debug.SetMemoryLimit(debug.SetMemoryLimit(engine.MemorySizesFor(limit).GoLimit))
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError}))
	e, err := engine.Open(ctx, engine.Options{DataDir: dataDir, NATSListen: f.natsAddr, Logger: logger, AdminTokenHash: tokenHash[:], MemoryLimit: limit})
	if err != nil {
		return err
	}
	defer func() {
		if cerr := e.Close(); cerr != nil && err == nil {
			err = cerr
		}
	}()
	keys := map[string]string{}
	for _, s := range workload.Sources {
		k, err := e.Gate().CreateSource(ctx, s)
		switch {
		case errors.Is(err, access.ErrSourceExists): // a kept data dir: the key was shown before
		case err != nil:
			return fmt.Errorf("demo: create source %s: %w", s, err)
		default:
			keys[s] = k
		}
	}

	if hooks.audiences != nil { // install the audiences before the stream starts
		if _, err := hooks.audiences(ctx, e); err != nil {
			return fmt.Errorf("demo: %w", err)
		}
	}

	srv, err := api.New(apiServices(e), api.Options{AdminTokenHash: tokenHash[:], Logger: logger})
	if err != nil {
		return err
	}
	web, err := console.New(console.Options{API: srv})
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", f.httpAddr)
	if err != nil {
		return fmt.Errorf("--http: %w", err)
	}
	hs := &http.Server{Handler: web, ReadHeaderTimeout: 10 * time.Second, ReadTimeout: time.Minute, IdleTimeout: 2 * time.Minute}
	httpErr := make(chan error, 1)
	go func() { httpErr <- hs.Serve(ln) }()
	defer func() {
		sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = hs.Shutdown(sctx)
		if herr := <-httpErr; herr != nil && !errors.Is(herr, http.ErrServerClosed) && err == nil {
			err = fmt.Errorf("http: %w", herr)
		}
	}()

	base := "http://" + reachable(ln.Addr())
	printDemoBanner(out, demoBanner{cfg: wcfg, rate: f.rate, http: base, nats: e.NATSURL(), dataDir: dataDir,
		removed: removeDir, token: token, keys: keys, examples: exampleRefs(wcfg)})

	runCtx, stop := context.WithCancel(ctx)
	defer stop()
	if f.duration > 0 {
		var cancel context.CancelFunc
		runCtx, cancel = context.WithTimeout(runCtx, f.duration)
		defer cancel()
	}
	p := &demoProducer{e: e, gen: workload.New(wcfg), rate: f.rate, done: make(chan struct{})}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); p.run(runCtx) }()
	defer func() { stop(); wg.Wait() }()

	start := time.Now()
	done := p.done
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	var last demoStatus
	doneSeen := false
	for {
		select {
		case <-runCtx.Done():
			stop()
			wg.Wait()
			if perr := p.failure(); perr != nil {
				return perr
			}
			fmt.Fprintf(out, "stopping after %s: %d events sent\n", time.Since(start).Round(time.Second), p.sentCount())
			return nil
		case herr := <-httpErr:
			httpErr <- herr // for the deferred shutdown
			return fmt.Errorf("http: %w", herr)
		case <-done:
			if perr := p.failure(); perr != nil {
				return perr
			}
			if !doneSeen {
				doneSeen = true
				fmt.Fprintf(out, "workload complete: %d events from %d people; serving until Ctrl-C\n", p.sentCount(), wcfg.People)
			}
			done = nil // receive once
		case <-tick.C:
			// The count and its time together, before the status read
			// (slow on a loaded machine) and not at the tick's time.
			sent, elapsed := p.sentCount(), time.Since(start)
			st, serr := readStatus(runCtx, e, hooks)
			if serr != nil {
				return serr
			}
			st.elapsed, st.sent = elapsed, sent
			// Per second of the time since the last line: a status read
			// that took long (a loaded machine) must not make a rate.
			if d := (st.elapsed - last.elapsed).Seconds(); d > 0 {
				st.rate = int64(math.Round(float64(st.sent-last.sent) / d))
			}
			// Once the workload is complete, print only when something
			// still changes (the apply loop catching up).
			if !doneSeen || st.changed(last) {
				fmt.Fprintln(out, st.line())
			}
			last = st
		}
	}
}

// reachable turns a listener address into one a client can dial
// (":8080" → "127.0.0.1:8080").
func reachable(a net.Addr) string {
	host, port, err := net.SplitHostPort(a.String())
	if err != nil {
		return a.String()
	}
	if ip := net.ParseIP(host); host == "" || ip != nil && ip.IsUnspecified() {
		host = "127.0.0.1"
	}
	return net.JoinHostPort(host, port)
}

// exampleRefs returns a user id and an email that appear early in the
// workload, for the printed examples (a second generator with the same
// config replays the same events).
func exampleRefs(cfg workload.Config) []string {
	g := workload.New(cfg)
	var user, email string
	for range 5000 {
		w, ok := g.Next()
		if !ok || user != "" && email != "" {
			break
		}
		var m struct {
			UserID string `json:"userId"`
			Traits struct {
				Email string `json:"email"`
			} `json:"traits"`
		}
		if json.Unmarshal(w.JSON, &m) != nil {
			continue
		}
		if user == "" && m.UserID != "" {
			user = "user_id:" + m.UserID
		}
		if email == "" && m.Traits.Email != "" {
			email = "email:" + m.Traits.Email
		}
	}
	var out []string
	for _, r := range []string{email, user} {
		if r != "" {
			out = append(out, r)
		}
	}
	return out
}

type demoBanner struct {
	cfg        workload.Config
	rate       float64
	http, nats string
	dataDir    string
	removed    bool
	token      string
	keys       map[string]string
	examples   []string
}

func printDemoBanner(w io.Writer, b demoBanner) {
	rate := fmt.Sprintf("%g events/s", b.rate)
	if b.rate == 0 {
		rate = "as fast as possible"
	}
	fmt.Fprintf(w, "Aurum demo: a synthetic store of %d customers over %d days, streamed at %s. Ctrl-C stops.\n\n", b.cfg.People, b.cfg.Days, rate)
	fmt.Fprintf(w, "  HTTP API  %s\n  console   %s/ (sign in with the admin token)\n  NATS      %s\n  data dir  %s", b.http, b.http, b.nats, b.dataDir)
	if b.removed {
		fmt.Fprint(w, " (removed at exit; --keep keeps it)")
	}
	fmt.Fprintf(w, "\n\nAdmin token (generated for this run):\n\n    export AURUM_ADMIN_TOKEN=%s\n    export AURUM_SERVER=%s\n\n", b.token, b.http)
	fmt.Fprintln(w, "Try:")
	ref := "email:someone@example.com"
	if len(b.examples) > 0 {
		ref = b.examples[0]
	}
	for _, r := range b.examples {
		fmt.Fprintf(w, "    curl -H \"Authorization: Bearer $AURUM_ADMIN_TOKEN\" %s/v1/profiles/%s\n", b.http, r)
	}
	fmt.Fprintf(w, "    curl -H \"Authorization: Bearer $AURUM_ADMIN_TOKEN\" '%s/v1/profiles/%s/events?limit=5'\n", b.http, ref)
	if k := b.keys["web"]; k != "" {
		fmt.Fprintf(w, "    curl -u %s: %s/v1/track -d '{\"anonymousId\": \"c-1\", \"event\": \"Demo Clicked\"}'\n", k, b.http)
	}
	if k := b.keys["web"]; k != "" {
		fmt.Fprintf(w, "    nats --server %s --user web --password %s pub aurum.ingest.web '{\"type\":\"track\",\"anonymousId\":\"c-2\",\"event\":\"Demo Clicked\"}'\n", b.nats, k)
	}
	fmt.Fprintf(w, "    nats --server %s --token \"$AURUM_ADMIN_TOKEN\" sub 'aurum.audience.>'\n", b.nats)
	fmt.Fprintf(w, "    curl -s -H \"Authorization: Bearer $AURUM_ADMIN_TOKEN\" %s/metrics | grep aurum_identity\n", b.http)
	fmt.Fprintf(w, "    aurum profile get %s\n", ref)
	if len(b.keys) > 0 {
		names := make([]string, 0, len(b.keys))
		for n := range b.keys {
			names = append(names, n)
		}
		slices.Sort(names)
		fmt.Fprint(w, "\nWrite keys:")
		for _, n := range names {
			fmt.Fprintf(w, " %s=%s", n, b.keys[n])
		}
		fmt.Fprintln(w)
	}
	fmt.Fprintln(w)
}

// demoStatus is one status line.
type demoStatus struct {
	elapsed     time.Duration
	sent        int64
	rate        int64 // events sent per second since the last line
	profiles    int64
	merges      int64
	deadLetters int64
	audiences   map[string]int64
}

func (s demoStatus) changed(o demoStatus) bool {
	return s.sent != o.sent || s.profiles != o.profiles || s.merges != o.merges || s.deadLetters != o.deadLetters
}

func (s demoStatus) line() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%6s  sent %d  %d ev/s  profiles %d  merges %d  dead letters %d",
		s.elapsed.Round(time.Second), s.sent, s.rate, s.profiles, s.merges, s.deadLetters)
	if len(s.audiences) > 0 {
		names := make([]string, 0, len(s.audiences))
		for n := range s.audiences {
			names = append(names, n)
		}
		slices.Sort(names)
		b.WriteString("  audiences")
		for _, n := range names {
			fmt.Fprintf(&b, " %s=%d", n, s.audiences[n])
		}
	}
	return b.String()
}

// readStatus reads the counts from the engine's Prometheus registry:
// profiles = profiles created - merges (both since this process started).
func readStatus(ctx context.Context, e *engine.Engine, hooks demoHooks) (demoStatus, error) {
	mfs, err := e.Registry().Gather()
	if err != nil {
		return demoStatus{}, fmt.Errorf("demo: metrics: %w", err)
	}
	sum := map[string]float64{}
	for _, mf := range mfs {
		switch name := mf.GetName(); name {
		case "aurum_identity_profiles_created_total", "aurum_identity_merges_total", "aurum_ingest_dead_letters_total":
			for _, m := range mf.GetMetric() {
				sum[name] += m.GetCounter().GetValue()
			}
		}
	}
	st := demoStatus{
		merges:      int64(sum["aurum_identity_merges_total"]),
		deadLetters: int64(sum["aurum_ingest_dead_letters_total"]),
	}
	st.profiles = int64(sum["aurum_identity_profiles_created_total"]) - st.merges
	if hooks.audiences != nil {
		if st.audiences, err = hooks.audiences(ctx, e); err != nil && ctx.Err() == nil {
			return demoStatus{}, fmt.Errorf("demo: audiences: %w", err)
		}
	}
	return st, nil
}

// demoProducer streams the workload into the engine at the offered rate.
// It is owned by runDemo, which cancels its context and waits for run.
type demoProducer struct {
	e    *engine.Engine
	gen  *workload.Generator
	rate float64 // events/s; 0 = as fast as possible
	done chan struct{}

	mu   sync.Mutex
	sent int64
	err  error
}

func (p *demoProducer) sentCount() int64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.sent
}

func (p *demoProducer) failure() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.err
}

// run sends until the workload is exhausted (then closes done), the
// context ends, or an ingest fails (recorded for failure, then done). The
// rate is a token bucket holding at most demoBurst of events (and at least
// one), so a slow spell is followed by a burst of at most that much.
func (p *demoProducer) run(ctx context.Context) {
	defer close(p.done)
	tick := time.NewTicker(demoTick)
	defer tick.Stop()
	credit, lastTime := 0.0, time.Now()
	batch := make([]workload.Event, 0, demoMaxBatch)
	for {
		n := demoMaxBatch
		if p.rate > 0 {
			now := time.Now()
			credit = min(credit+p.rate*now.Sub(lastTime).Seconds(), max(p.rate*demoBurst.Seconds(), 1))
			lastTime = now
			if credit < 1 {
				select {
				case <-ctx.Done():
					return
				case <-tick.C:
				}
				continue
			}
			n = min(n, int(credit))
		} else if ctx.Err() != nil {
			return
		}
		batch = batch[:0]
		for len(batch) < n {
			w, ok := p.gen.Next()
			if !ok {
				break
			}
			batch = append(batch, w)
		}
		if len(batch) == 0 {
			return
		}
		if err := p.send(ctx, batch); err != nil {
			if ctx.Err() == nil {
				p.mu.Lock()
				p.err = fmt.Errorf("demo: %w", err)
				p.mu.Unlock()
			}
			return
		}
		credit -= float64(len(batch))
	}
}

// send ingests a batch with one IngestJSON call per source, each source's
// events in order (identity resolution needs no more: the order-sensitive
// case, a shared device's owner signing in before a family member uses it,
// happens on one device and so within one source). The edge parses the
// workload's JSON as it parses what producers publish on NATS.
func (p *demoProducer) send(ctx context.Context, batch []workload.Event) error {
	edge := p.e.Edge()
	docs := make([][]byte, 0, len(batch))
	for _, src := range workload.Sources {
		docs = docs[:0]
		for _, w := range batch {
			if w.Source == src {
				docs = append(docs, w.JSON)
			}
		}
		if len(docs) == 0 {
			continue
		}
		if err := edge.IngestJSON(ctx, src, docs); err != nil {
			return err
		}
		p.mu.Lock()
		p.sent += int64(len(docs))
		p.mu.Unlock()
	}
	return nil
}
