package bench

import (
	"context"
	"flag"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/aurumcdp/aurum/engine/matching"
	"github.com/aurumcdp/aurum/event"
	"github.com/aurumcdp/aurum/projections"
	"github.com/aurumcdp/aurum/projections/identity"
	"github.com/aurumcdp/aurum/projections/match"
	"github.com/aurumcdp/aurum/seal"
	"github.com/aurumcdp/aurum/store"
	"github.com/oklog/ulid/v2"
	"github.com/vmihailenco/msgpack/v5"
)

// Issue #13, must-show 2: the matcher's cost per event at growing numbers
// of profiles, bounded by blocking, and the apply cost of identify events
// with matching on against off (bench/RESULTS.md "Issue #13: matching
// cost"; make bench-match).
var (
	matchSizes  = flag.String("match-sizes", "10000,100000", "comma-separated profile counts of the matching cost measurement (make bench-match passes MATCHSIZES)")
	matchProbe  = flag.Int("match-probe", 2000, "identify events matched per size (half duplicates of existing people with typos)")
	matchOnOff  = flag.Int("match-onoff-events", 20_000, "identify events per on/off apply round")
	matchRounds = flag.Int("match-rounds", 3, "interleaved on/off rounds")

	matchBlockSizes = flag.String("match-block-sizes", "10000,100000,1000000", "comma-separated profile counts of TestMatchBlockSizes")
)

// matchConfig is issue #13's example (without phone, email, address_1,
// suburb and soc_sec_id, which the generator does not make): name, date
// and exact comparisons, three blocking rules.
func matchConfig() *match.Config {
	return &match.Config{
		Fields: map[string]match.Comparison{"given_name": match.Name, "surname": match.Name, "date_of_birth": match.Date,
			"street_number": match.Exact, "postcode": match.Exact, "state": match.Exact},
		Blocking: [][]string{{"surname"}, {"given_name", "date_of_birth"}, {"postcode", "street_number"}},
	}
}

// febrlGen makes FEBRL-like people deterministically by index: given names
// and surnames drawn partly by a Zipf law (a few very common values: at 1M
// people, blocks far larger than the candidate cap), dates of birth, postcodes,
// street numbers, states; and duplicates of them with typos.
type febrlGen struct {
	given, surnames []string
}

func newFebrlGen() *febrlGen {
	rng := rand.New(rand.NewPCG(13, 2))
	syl := []string{"ka", "ro", "mi", "ten", "vol", "sar", "bel", "dor", "fin", "gul", "har", "lin", "mos", "nor", "pet",
		"quin", "ril", "sto", "tur", "wen", "ash", "bry", "cal", "den", "el", "fo", "gra", "hol", "ig", "jo"}
	word := func(n int) string {
		var b strings.Builder
		for range n {
			b.WriteString(syl[rng.IntN(len(syl))])
		}
		return b.String()
	}
	g := &febrlGen{}
	for range 2_000 {
		g.given = append(g.given, word(2))
	}
	for range 50_000 {
		g.surnames = append(g.surnames, word(3))
	}
	return g
}

// zipf picks an index of n with P(k) ∝ 1/(k+1), from u in [0, 1).
func zipf(u float64, n int) int {
	return min(n-1, int(math.Exp(u*math.Log(float64(n+1))))-1)
}

// skewed picks an index of n: with probability share by a Zipf law (a few
// very common values), otherwise uniformly.
func skewed(rng *rand.Rand, n int, share float64) int {
	if rng.Float64() < share {
		return zipf(rng.Float64(), n)
	}
	return rng.IntN(n)
}

// person returns person i's traits.
func (g *febrlGen) person(i int) map[string]string {
	rng := rand.New(rand.NewPCG(uint64(i), 77))
	return map[string]string{
		"given_name":    g.given[skewed(rng, len(g.given), 0.3)],       // the commonest ≈ 2.7 %
		"surname":       g.surnames[skewed(rng, len(g.surnames), 0.1)], // the commonest ≈ 0.6 %
		"date_of_birth": fmt.Sprintf("19%02d%02d%02d", 30+rng.IntN(70), 1+rng.IntN(12), 1+rng.IntN(28)),
		"street_number": fmt.Sprint(1 + rng.IntN(300)),
		"postcode":      fmt.Sprint(2000 + rng.IntN(8000)),
		"state":         []string{"nsw", "vic", "qld", "wa", "sa", "tas", "act", "nt"}[rng.IntN(8)],
	}
}

// duplicate returns a record of person i with one or two typos (a letter of
// the surname or the given name, a digit of the date of birth) and, now
// and then, a field missing.
func (g *febrlGen) duplicate(i, salt int) map[string]string {
	p := g.person(i)
	rng := rand.New(rand.NewPCG(uint64(i), uint64(salt)))
	typo := func(f string) {
		b := []byte(p[f])
		j := 1 + rng.IntN(len(b)-1)
		if b[j] >= '0' && b[j] <= '9' {
			b[j] = '0' + (b[j]-'0'+1+byte(rng.IntN(8)))%10
		} else {
			b[j] = 'a' + (b[j]-'a'+1+byte(rng.IntN(24)))%26
		}
		p[f] = string(b)
	}
	fields := []string{"surname", "given_name", "date_of_birth"}
	for range 1 + rng.IntN(2) {
		typo(fields[rng.IntN(len(fields))])
	}
	if rng.IntN(5) == 0 {
		delete(p, []string{"street_number", "state", "postcode"}[rng.IntN(3)])
	}
	return p
}

// identifyEntry is one log entry of identify events, each with its own
// crm_id (crm-<id>) and traits sealed under its key, as the edge writes.
func identifyEntry(tb testing.TB, kr *seal.Keyring, at int64, ids []string, traits []map[string]string) []byte {
	b := event.Batch{ID: benchULID(at, 0), Received: at}
	var keys [][]byte
	for _, id := range ids {
		keys = append(keys, kr.Hash("crm_id", id))
	}
	if err := kr.Ensure(keys); err != nil {
		tb.Fatal(err)
	}
	for j, id := range ids {
		h := keys[j]
		rec := event.Record{ID: benchULID(at, j+1), MessageID: id, Source: "crm", Kind: event.Identify, Time: at, Received: at,
			Key: h, IDs: []event.IDRef{{Type: "crm_id", Hash: h}}, Traits: map[string][]byte{}}
		for k, v := range traits[j] {
			pt, _ := msgpack.Marshal(v)
			s, err := kr.Seal(h, pt)
			if err != nil {
				tb.Fatal(err)
			}
			rec.Traits[k] = s
		}
		b.Records = append(b.Records, rec)
	}
	return event.EncodeBatch(&b)
}

func benchULID(ms int64, n int) []byte {
	var entropy [10]byte
	entropy[0], entropy[1], entropy[2] = byte(n), byte(n>>8), byte(n>>16)
	u, _ := ulid.New(uint64(ms), strings.NewReader(string(entropy[:])))
	return u[:]
}

// matchState is a state machine on Pebble, applied entry by entry: the
// State of a matching.Service for the benchmark.
type matchState struct {
	tb  testing.TB
	db  *store.DB
	sm  *projections.StateMachine
	seq uint64
	t   int64 // log time
}

func newMatchState(tb testing.TB, kr *seal.Keyring, on bool, model *match.Model) *matchState {
	db, err := store.Open(tb.TempDir(), nil)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { db.Close() })
	// As the engine opens it (engine/storeopts.go): traits opened with the
	// keyring, block keys under its keyed hash.
	sm := projections.New(projections.Options{Partitions: 16, Open: kr.Open,
		BlockHash: func(key string) []byte { return kr.Hash("match_block", key) }})
	s := &matchState{tb: tb, db: db, sm: sm, t: 1_780_000_000_000}
	cfg := identity.DefaultConfig()
	cfg.Limits["crm_id"] = 100
	if on {
		cfg.Probabilistic = matchConfig()
	}
	data, err := projections.EncodeIdentityConfig(cfg)
	if err != nil {
		tb.Fatal(err)
	}
	s.control(projections.Control{Kind: projections.ControlIdentityConfig, Config: data})
	if on {
		s.control(projections.Control{Kind: projections.ControlIdentityModel, IdentityModel: model})
	}
	return s
}

func (s *matchState) apply(subject string, data []byte) projections.Result {
	s.seq++
	batch := s.db.NewBatch()
	defer batch.Close()
	res, err := s.sm.Apply(batch, s.seq, subject, data)
	if err != nil {
		s.tb.Fatal(err)
	}
	if err := s.db.Commit(batch, false); err != nil {
		s.tb.Fatal(err)
	}
	return res
}

func (s *matchState) control(c projections.Control) {
	s.t++
	c.Time = s.t
	data, err := msgpack.Marshal(&c)
	if err != nil {
		s.tb.Fatal(err)
	}
	s.apply(projections.SubjectControl, data)
}

func (s *matchState) Read(fn func(r store.Reader, sm *projections.StateMachine) error) error {
	return fn(s.db, s.sm)
}

// countControl counts the matcher's proposals instead of appending them:
// the benchmark measures scoring, not merging.
type countControl struct{ n int }

func (c *countControl) AppendControl(context.Context, projections.Control) (uint64, error) {
	c.n++
	return 0, nil
}

func (c *countControl) WaitApplied(context.Context, uint64) error { return nil }

// queued returns the matcher's queue after key after, and its last key.
func (s *matchState) queued(after []byte) ([][]byte, []byte) {
	q, err := projections.QueuedMatches(s.db, after, math.MaxInt32)
	if err != nil {
		s.tb.Fatal(err)
	}
	var ps [][]byte
	for _, e := range q {
		ps = append(ps, e.Profile)
		after = e.Key
	}
	return ps, after
}

// runMatcher runs the matcher over the whole queue, in its batches of
// 256, and returns its CPU time per event of events, its counters and the
// proposals it made.
func (s *matchState) runMatcher(events int) (time.Duration, matching.Stats, int) {
	ps, _ := s.queued(nil)
	ctl := &countControl{}
	svc := matching.New(matching.Options{NewID: func() []byte { return benchULID(1, 1) }}, matching.Deps{State: s, Control: ctl, Applied: ctl})
	cpu := startCPUMeter()
	for i := 0; i < len(ps); i += 256 {
		if err := svc.MatchProfiles(context.Background(), ps[i:min(i+256, len(ps))]); err != nil {
			s.tb.Fatal(err)
		}
	}
	return cpu.per(events), svc.Stats(), ctl.n
}

// load applies people lo..hi-1 (batches of 100) and returns the CPU time
// of Apply per event (making the entries, sealing the traits, is not
// counted).
func (s *matchState) load(kr *seal.Keyring, g *febrlGen, lo, hi int) time.Duration {
	var d time.Duration
	for i := lo; i < hi; i += 100 {
		var ids []string
		var traits []map[string]string
		for j := i; j < min(i+100, hi); j++ {
			ids = append(ids, fmt.Sprint("crm-", j))
			traits = append(traits, g.person(j))
		}
		s.t += 1000
		d += s.timedApply(identifyEntry(s.tb, kr, s.t, ids, traits))
	}
	return d / time.Duration(max(hi-lo, 1))
}

// timedApply applies an events entry and returns the CPU time it took
// (wall time where CPU time is not available).
func (s *matchState) timedApply(data []byte) time.Duration {
	cpu := startCPUMeter()
	s.apply(projections.SubjectEvents, data)
	return cpu.per(1)
}

type cpuMeterT struct {
	cpu0  time.Duration
	ok    bool
	start time.Time
}

func startCPUMeter() cpuMeterT {
	c, ok := processCPU()
	return cpuMeterT{cpu0: c, ok: ok, start: time.Now()}
}

// per returns the CPU time (wall time where not available) per item.
func (m cpuMeterT) per(n int) time.Duration {
	d := time.Since(m.start)
	if c, ok := processCPU(); ok && m.ok {
		d = c - m.cpu0
	}
	return d / time.Duration(max(n, 1))
}

// trainModel fits the weights on a sample of the generator's people and
// duplicates, as `aurum identity train` does on profiles.
func trainModel(tb testing.TB, g *febrlGen, n int) *match.Model {
	var recs []match.Record
	for i := range n {
		recs = append(recs, match.Record(g.person(i)))
		if i%10 == 0 {
			recs = append(recs, match.Record(g.duplicate(i, 1)))
		}
	}
	m, err := match.Train(*matchConfig(), recs, match.TrainOptions{Seed: 1})
	if err != nil {
		tb.Fatal(err)
	}
	return m
}

type matchCost struct {
	profiles       int
	loadPerEvent   time.Duration // apply, matching on, while loading
	probeApply     time.Duration // apply of the probe events, per event
	matchPerEvent  time.Duration // the matcher, per probe event
	candidates     float64       // per matched profile
	maxCandidates  int64
	proposals      int
	heapAfterLoad  uint64
	loadWall       time.Duration
	probeProfiles  int
	matchedQueued  int
	candidateBound int
}

// measureMatchCost loads n people with matching on, then applies probe
// identify events (half duplicates of loaded people with typos, half new
// people) and runs the matcher over what they queued.
func measureMatchCost(tb testing.TB, kr *seal.Keyring, g *febrlGen, model *match.Model, n, probe int) matchCost {
	s := newMatchState(tb, kr, true, model)
	start := time.Now()
	mc := matchCost{profiles: n, loadPerEvent: s.load(kr, g, 0, n), loadWall: time.Since(start)}
	// The load's own queue is not measured: drop it as a matcher's report
	// would.
	_, last := s.queued(nil)
	if last != nil {
		s.control(projections.Control{Kind: projections.ControlIdentityProgress, Progress: &projections.MatchProgress{Done: last}})
	}
	var ms runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&ms)
	mc.heapAfterLoad = ms.HeapAlloc

	var probeCPU time.Duration
	for i := 0; i < probe; i += 100 {
		var ids []string
		var traits []map[string]string
		for j := i; j < min(i+100, probe); j++ {
			if j%2 == 0 {
				ids, traits = append(ids, fmt.Sprint("dup-", j)), append(traits, g.duplicate((j*7919)%n, j))
			} else {
				ids, traits = append(ids, fmt.Sprint("new-", j)), append(traits, g.person(n+j))
			}
		}
		s.t += 1000
		probeCPU += s.timedApply(identifyEntry(tb, kr, s.t, ids, traits))
	}
	mc.probeApply = probeCPU / time.Duration(max(probe, 1))
	var st matching.Stats
	mc.matchPerEvent, st, mc.proposals = s.runMatcher(probe)
	mc.matchedQueued = int(st.Matched)
	mc.candidates = float64(st.Candidates) / float64(max(st.Matched, 1))
	mc.maxCandidates = st.MaxCandidates
	mc.candidateBound = len(matchConfig().Blocking) * projections.MaxBlockCandidates
	return mc
}

// onOffRound applies the same identify log with matching on (config and
// model; the block index and queue kept by Apply) and off, and runs the
// matcher over what the on run queued; CPU time per event of each.
func onOffRound(tb testing.TB, kr *seal.Keyring, log [][]byte, events int, model *match.Model, onFirst bool) (on, off, matcher time.Duration) {
	run := func(isOn bool) time.Duration {
		s := newMatchState(tb, kr, isOn, model)
		cpu := startCPUMeter()
		for _, e := range log {
			s.apply(projections.SubjectEvents, e)
		}
		d := cpu.per(events)
		if isOn {
			matcher, _, _ = s.runMatcher(events)
		}
		return d
	}
	if onFirst {
		on = run(true)
		off = run(false)
	} else {
		off = run(false)
		on = run(true)
	}
	return on, off, matcher
}

// TestMatchCost prints the section "Issue #13: matching cost" of
// bench/RESULTS.md: make bench-match (AURUM_BENCH=match).
func TestMatchCost(t *testing.T) {
	if os.Getenv("AURUM_BENCH") != "match" {
		t.Skip("AURUM_BENCH=match runs the matching cost measurement (make bench-match)")
	}
	sizes, err := parseSizes(*matchSizes)
	if err != nil {
		t.Fatal(err)
	}
	kr := benchKeyring(t)
	g := newFebrlGen()
	cpu := startCPUMeter()
	model := trainModel(t, g, 20_000)
	t.Logf("model %s trained on 22,000 records in %v CPU", model.Version, cpu.per(1))
	var b strings.Builder
	if *matchOnOff > 0 { // 0: sizes only
		b.WriteString(onOff(t, kr, g, model, *matchOnOff, *matchRounds))
	}
	fmt.Fprintf(&b, "\n### Matcher cost per event at growing numbers of profiles (%d probe identify events per size, half duplicates)\n\n", *matchProbe)
	fmt.Fprintln(&b, "| profiles | load: apply on, CPU/event | probe apply, CPU/event | matcher, CPU/event | ratio to the smallest size | candidates per matched profile (mean / max; bound) | proposals | Go heap after load |")
	fmt.Fprintln(&b, "|---:|---:|---:|---:|---|---|---:|---:|")
	var first time.Duration
	for _, n := range sizes {
		c := measureMatchCost(t, kr, g, model, n, *matchProbe)
		t.Logf("%d profiles: load %v/event (%v), probe apply %v/event, matcher %v/event, candidates %.1f/profile (max %d), proposals %d, heap %s",
			n, c.loadPerEvent, c.loadWall.Round(time.Second), c.probeApply, c.matchPerEvent, c.candidates, c.maxCandidates, c.proposals, mib(int64(c.heapAfterLoad)))
		if first == 0 {
			first = c.matchPerEvent
		}
		fmt.Fprintf(&b, "| %d | %v | %v | %v | %.2f× | %.1f / %d; ≤ %d | %d | %s |\n", c.profiles, c.loadPerEvent.Round(100*time.Nanosecond),
			c.probeApply.Round(100*time.Nanosecond), c.matchPerEvent.Round(100*time.Nanosecond),
			float64(c.matchPerEvent)/float64(first), c.candidates, c.maxCandidates, c.candidateBound, c.proposals, mib(int64(c.heapAfterLoad)))
	}
	t.Log(b.String())
	fmt.Println(b.String())
}

// onOff measures apply with matching on against off on the same log of
// identify events (one in ten a duplicate with typos), rounds interleaved,
// and returns the table (medians).
func onOff(t *testing.T, kr *seal.Keyring, g *febrlGen, model *match.Model, events, rounds int) string {
	var log [][]byte
	for i := 0; i < events; i += 100 {
		var ids []string
		var traits []map[string]string
		for j := i; j < min(i+100, events); j++ {
			if j%10 == 9 {
				ids, traits = append(ids, fmt.Sprint("dup-", j)), append(traits, g.duplicate(j-9, j))
			} else {
				ids, traits = append(ids, fmt.Sprint("crm-", j)), append(traits, g.person(j))
			}
		}
		log = append(log, identifyEntry(t, kr, int64(1_780_000_000_000+i), ids, traits))
	}
	var ons, offs, matchers []time.Duration
	var ratiosApply, ratiosTotal []float64
	for r := range rounds {
		on, off, m := onOffRound(t, kr, log, events, model, r%2 == 0)
		ons, offs, matchers = append(ons, on), append(offs, off), append(matchers, m)
		ratiosApply = append(ratiosApply, float64(on)/float64(off))
		ratiosTotal = append(ratiosTotal, float64(on+m)/float64(off))
		t.Logf("round %d: apply on %v/event, off %v/event, matcher %v/event", r, on, off, m)
	}
	var b strings.Builder
	fmt.Fprintf(&b, "\n### Ingest with matching on and off (%d identify events, 1 in 10 a duplicate; %d rounds interleaved, medians)\n\n", events, rounds)
	fmt.Fprintln(&b, "| measurement | CPU per event | ratio to off (same run) |")
	fmt.Fprintln(&b, "|---|---:|---|")
	fmt.Fprintf(&b, "| apply, matching off (baseline) | %v | baseline |\n", median(offs).Round(100*time.Nanosecond))
	fmt.Fprintf(&b, "| apply, matching on (block index + queue) | %v | %.2f× |\n", median(ons).Round(100*time.Nanosecond), medianF(ratiosApply))
	fmt.Fprintf(&b, "| matcher (candidates, scoring) | %v | — |\n", median(matchers).Round(100*time.Nanosecond))
	fmt.Fprintf(&b, "| apply on + matcher | %v | %.2f× |\n", (median(ons) + median(matchers)).Round(100*time.Nanosecond), medianF(ratiosTotal))
	return b.String()
}

// BenchmarkMatcherPerEvent is the matcher's cost per identify event (half
// duplicates with typos) at 10k and 100k profiles, with the candidates per
// matched profile:
//
//	go test -run '^$' -bench MatcherPerEvent -benchtime 2000x ./bench
//
// Each size loads its profiles anew (also for the benchmark's first run
// with b.N = 1); TestMatchCost is the report of the same at more sizes.
func BenchmarkMatcherPerEvent(b *testing.B) {
	kr := benchKeyring(b)
	g := newFebrlGen()
	model := trainModel(b, g, 20_000)
	for _, n := range []int{10_000, 100_000} {
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			mc := measureMatchCost(b, kr, g, model, n, max(b.N, 100))
			b.ReportMetric(float64(mc.matchPerEvent.Nanoseconds()), "cpu-ns/event")
			b.ReportMetric(mc.candidates, "candidates/profile")
			b.ReportMetric(float64(mc.maxCandidates), "max-candidates")
		})
	}
}

// TestMatchBlockSizes prints, for the generator's people at each size, the
// largest block of each blocking rule and the candidates a probe event
// would read: the sum over its keys of the block size capped at
// projections.MaxBlockCandidates (an upper bound: BlockCandidates counts a
// profile found by two rules once). It needs no store, so it covers 1M
// people in seconds where loading them takes an hour on a busy machine
// (AURUM_BENCH=match, part of make bench-match).
func TestMatchBlockSizes(t *testing.T) {
	if os.Getenv("AURUM_BENCH") != "match" {
		t.Skip("AURUM_BENCH=match runs the matching cost measurement (make bench-match)")
	}
	sizes, err := parseSizes(*matchBlockSizes)
	if err != nil {
		t.Fatal(err)
	}
	cfg := *matchConfig()
	g := newFebrlGen()
	var b strings.Builder
	fmt.Fprintf(&b, "\n### Block sizes and candidates per event (%d probe identify events, half duplicates)\n\n", *matchProbe)
	fmt.Fprintln(&b, "| profiles | largest block per rule | probe events whose reads hit the cap | candidates read per probe event, capped (mean / max) | uncapped (mean / max) |")
	fmt.Fprintln(&b, "|---:|---|---:|---|---|")
	for _, n := range sizes {
		counts := map[string]int32{}
		for i := range n {
			for _, k := range match.BlockKeys(cfg, match.Record(g.person(i))) {
				counts[k]++
			}
		}
		largest := make([]int32, len(cfg.Blocking))
		for k, c := range counts {
			for r := range cfg.Blocking {
				if strings.HasPrefix(k, strings.Join(cfg.Blocking[r], ",")+"=") {
					largest[r] = max(largest[r], c)
				}
			}
		}
		var capped, uncapped []float64
		hit := 0
		for j := range *matchProbe {
			rec := match.Record(g.person(n + j))
			if j%2 == 0 {
				rec = match.Record(g.duplicate((j*7919)%n, j))
			}
			c, u, h := 0, 0, false
			for _, k := range match.BlockKeys(cfg, rec) {
				c += min(int(counts[k]), projections.MaxBlockCandidates)
				u += int(counts[k])
				h = h || int(counts[k]) > projections.MaxBlockCandidates
			}
			capped, uncapped = append(capped, float64(c)), append(uncapped, float64(u))
			if h {
				hit++
			}
		}
		var rules []string
		for r := range cfg.Blocking {
			rules = append(rules, fmt.Sprintf("%s: %d", strings.Join(cfg.Blocking[r], "+"), largest[r]))
		}
		fmt.Fprintf(&b, "| %d | %s | %d | %.1f / %.0f | %.1f / %.0f |\n", n, strings.Join(rules, ", "), hit,
			mean(capped), slices.Max(capped), mean(uncapped), slices.Max(uncapped))
	}
	t.Log(b.String())
	fmt.Println(b.String())
}

func mean(xs []float64) float64 {
	s := 0.0
	for _, x := range xs {
		s += x
	}
	return s / float64(max(len(xs), 1))
}
