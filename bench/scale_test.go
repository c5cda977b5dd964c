package bench

// BenchmarkApplyScale measures the state machine's apply path on a state
// store that already holds many people, where the point reads of each event
// (dedup, keychain, GCR, audience state) no longer hit the state cache or
// Pebble's block cache. The apply benchmarks of audience_test.go use 1,000
// people and hide that cost.
//
// Run it (populating 100k people takes about a minute; -apply-cache-dir
// keeps the populated stores between processes):
//
//	go test -run '^$' -bench 'ApplyScale$' -benchtime 20000x ./bench \
//	    -args -apply-people 100000 -apply-cache-dir /tmp/aurum-scale
//
// Variants for A/B runs in the same binary (each flag set populates its own
// store, because filters are written into the tables):
//
//	-apply-bloom -1            no bloom filters (the store before session 3)
//	-apply-block-cache 64      Pebble block cache of state/, MiB
//	-apply-state-cache 64      projections state cache, MiB (-1: none)
//	-apply-zipf 1.1            people drawn by Zipf(s) instead of uniformly
//
// The populated store: people × (one identify carrying user id, anonymous id
// and email, then a Product Viewed and an Order Completed carrying user id
// and anonymous id), 100 records per log entry, the eight example audiences
// installed first. Identifier hashes are random-looking 16-byte values as
// the keyed hashes are, and record ids are ULID-shaped (time first), so keys
// spread over the key space as they do in production.
//
// Each run copies the populated store (a Pebble checkpoint: hard links),
// opens it with a fresh state machine, applies -apply-warmup untimed events
// and then b.N timed events over people drawn uniformly (default) at
// random: every tenth an identify with the email, the rest track events
// (views, adds, orders, refunds) with user id and anonymous id, each with a
// new message id (so each pays a dedup look-up of an absent key).

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/aurumcdp/aurum/engine"
	"github.com/aurumcdp/aurum/event"
	"github.com/aurumcdp/aurum/projections"
	"github.com/aurumcdp/aurum/projections/audience"
	"github.com/aurumcdp/aurum/store"
	"github.com/vmihailenco/msgpack/v5"
)

var (
	applyPeople     = flag.Int("apply-people", 100_000, "BenchmarkApplyScale: people in the populated state store")
	applyWarmup     = flag.Int("apply-warmup", 10_000, "BenchmarkApplyScale: untimed events applied before the timed ones")
	applyZipf       = flag.Float64("apply-zipf", 0, "BenchmarkApplyScale: draw people by Zipf(s) (s > 1); 0: uniformly")
	applyBloom      = flag.Int("apply-bloom", 0, "BenchmarkApplyScale: store.Options.BloomBitsPerKey of the state store (0: default, -1: none)")
	applyBlockCache = flag.Int("apply-block-cache", 0, "BenchmarkApplyScale: Pebble block cache of the state store, MiB (0: the engine's state default)")
	applyStateCache = flag.Int("apply-state-cache", 0, "BenchmarkApplyScale: projections.Options.CacheBytes, MiB (0: default, -1: none)")
	applyCacheDir   = flag.String("apply-cache-dir", "", "BenchmarkApplyScale: keep populated stores here between processes (default: a temp dir removed at exit)")
)

// scaleRecordsPerEntry is the number of records per log entry, as the
// committer groups concurrent requests.
const scaleRecordsPerEntry = 100

// scaleT0 is the log time of the first populated event (2026-05-28).
const scaleT0 = int64(1_780_000_000_000)

// scaleStoreOptions are the state store's options under the flags: the
// engine's (engine.StateStoreOptions) unless a flag overrides a field.
func scaleStoreOptions() *store.Options {
	o := engine.StateStoreOptions(nil)
	if *applyBloom != 0 {
		o.BloomBitsPerKey = *applyBloom
	}
	if *applyBlockCache > 0 {
		o.CacheSize = int64(*applyBlockCache) << 20
	}
	return o
}

func scaleSMOptions() projections.Options {
	o := projections.Options{Partitions: 16, Open: openIdentity}
	switch {
	case *applyStateCache < 0:
		o.CacheBytes = -1
	case *applyStateCache > 0:
		o.CacheBytes = *applyStateCache << 20
	}
	return o
}

// scalePerson is one synthetic person's identifier hashes and sealed values.
type scalePerson struct {
	uid, anon, email []byte
}

func scaleHash(typ string, p int) []byte {
	h := sha256.Sum256(fmt.Appendf(nil, "%s:%d", typ, p))
	return h[:16]
}

func newScalePerson(p int) scalePerson {
	return scalePerson{uid: scaleHash(event.UserID, p), anon: scaleHash(event.AnonymousID, p), email: scaleHash(event.Email, p)}
}

// scaleGen makes event records: ULID-shaped ids, realistic sealed sizes.
type scaleGen struct {
	rng  *rand.Rand
	n    uint64 // records made, for ids and message ids
	tag  string // message id prefix: distinct per phase and run
	seal []byte // stand-in for sealed bytes (random, fixed per generator)
}

func newScaleGen(seed uint64, tag string) *scaleGen {
	g := &scaleGen{rng: rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)), tag: tag}
	g.seal = make([]byte, 256)
	for i := range g.seal {
		g.seal[i] = byte(g.rng.Uint32())
	}
	return g
}

// sealed returns n stand-in sealed bytes (nonce + ciphertext + tag size).
func (g *scaleGen) sealed(n int) []byte {
	off := g.rng.IntN(len(g.seal) - n)
	return append([]byte(nil), g.seal[off:off+n]...)
}

var scaleEventNames = []string{"Product Viewed", "Product Viewed", "Product Added", "Order Completed", "Product Viewed", "Order Refunded"}

// record makes one record of person p at time t: an identify with the email
// and traits, or a track event.
func (g *scaleGen) record(pp scalePerson, t int64, identify bool, name string) event.Record {
	g.n++
	id := make([]byte, 16)
	binary.BigEndian.PutUint64(id[:8], uint64(t)<<16) // 48-bit ms time, then randomness: a ULID's shape
	binary.BigEndian.PutUint64(id[8:], g.rng.Uint64())
	id[6], id[7] = byte(g.rng.Uint32()), byte(g.n)
	r := event.Record{ID: id, MessageID: fmt.Sprintf("%s-%d", g.tag, g.n), Source: "web", Time: t, Received: t,
		Channel: "web", Key: pp.uid, Private: g.sealed(120)}
	r.IDs = []event.IDRef{
		{Type: event.UserID, Hash: pp.uid, Sealed: g.sealed(40)},
		{Type: event.AnonymousID, Hash: pp.anon, Sealed: g.sealed(64)},
	}
	if identify {
		r.Kind = event.Identify
		r.IDs = append(r.IDs, event.IDRef{Type: event.Email, Hash: pp.email, Sealed: g.sealed(52)})
		r.Traits = map[string][]byte{"email": g.sealed(52), "first_name": g.sealed(36), "country": g.sealed(30), "loyalty_tier": g.sealed(34)}
		return r
	}
	r.Kind = event.Track
	r.Event = name
	r.Properties = map[string]any{"revenue": float64(10 + g.rng.IntN(300)), "product_id": fmt.Sprintf("sku-%d", g.rng.IntN(5000)),
		"reason": []string{"damaged", "wrong_size", "changed_mind"}[g.rng.IntN(3)]}
	return r
}

// scaleEntries groups records into log entries of scaleRecordsPerEntry
// records (properties "sealed" by the identity: scaleSMOptions opens them
// with openIdentity).
func scaleEntries(recs []event.Record) [][]byte {
	var out [][]byte
	for lo := 0; lo < len(recs); lo += scaleRecordsPerEntry {
		part := recs[lo:min(lo+scaleRecordsPerEntry, len(recs))]
		b := event.Batch{ID: part[0].ID, Received: part[len(part)-1].Received, Records: part}
		data, err := encodeEntry(nil, &b)
		if err != nil {
			panic(err)
		}
		out = append(out, data)
	}
	return out
}

// scalePopulateLog is the populate phase's log: three rounds over all
// people, each round in a stride order so that one entry's records belong
// to people far apart.
func scalePopulateLog(people int) [][]byte {
	g := newScaleGen(1, "pop")
	stride := 7919
	for gcd(stride, people) != 1 {
		stride += 2
	}
	recs := make([]event.Record, 0, 3*people)
	t := scaleT0
	for round := range 3 {
		for j := range people {
			p := (j * stride) % people
			t += 3 // ~333 events/s of log time
			switch round {
			case 0:
				recs = append(recs, g.record(newScalePerson(p), t, true, ""))
			case 1:
				recs = append(recs, g.record(newScalePerson(p), t, false, "Product Viewed"))
			default:
				recs = append(recs, g.record(newScalePerson(p), t, false, "Order Completed"))
			}
		}
	}
	return scaleEntries(recs)
}

func gcd(a, b int) int {
	for b != 0 {
		a, b = b, a%b
	}
	return a
}

// scaleRunLog is n events after the populated ones over people drawn by
// the flags' distribution; seed makes warm-up and timed logs differ.
func scaleRunLog(people, n int, seed uint64, tag string, start int64) [][]byte {
	g := newScaleGen(seed, tag)
	var zipf *rand.Zipf
	if *applyZipf > 1 {
		zipf = rand.NewZipf(rand.New(rand.NewPCG(seed, 7)), *applyZipf, 1, uint64(people-1))
	}
	recs := make([]event.Record, 0, n)
	for i := range n {
		var p int
		if zipf != nil {
			p = int(zipf.Uint64())
		} else {
			p = g.rng.IntN(people)
		}
		t := start + int64(i)
		recs = append(recs, g.record(newScalePerson(p), t, i%10 == 0, scaleEventNames[i%len(scaleEventNames)]))
	}
	return scaleEntries(recs)
}

// scaleApplier applies log entries to a state machine on a store.
type scaleApplier struct {
	db  *store.DB
	sm  *projections.StateMachine
	seq uint64
}

func (a *scaleApplier) apply(tb testing.TB, subject string, data []byte) {
	a.seq++
	batch := a.db.NewBatch()
	defer batch.Close()
	if _, err := a.sm.Apply(batch, a.seq, subject, data); err != nil {
		tb.Fatalf("apply seq %d: %v", a.seq, err)
	}
	if err := a.db.Commit(batch, false); err != nil {
		tb.Fatal(err)
	}
}

func (a *scaleApplier) installAudiences(tb testing.TB) {
	for _, name := range sortedNames(exampleAudiences) {
		c, err := msgpack.Marshal(&projections.Control{Kind: projections.ControlAudiencePut, Audience: audience.Definition{Name: name, Rule: exampleAudiences[name]}})
		if err != nil {
			tb.Fatal(err)
		}
		a.apply(tb, projections.SubjectControl, c)
	}
}

// populated stores, one per (people, store options): built once per
// process, or once per -apply-cache-dir.
var (
	scaleMu        sync.Mutex
	scaleStores    = map[string]scaleStore{}
	scaleTmpRoot   string
	scaleTmpRootMu sync.Once
)

type scaleStore struct {
	dir string
	seq uint64 // applied position
}

func scaleRoot(tb testing.TB) string {
	if *applyCacheDir != "" {
		if err := os.MkdirAll(*applyCacheDir, 0o755); err != nil {
			tb.Fatal(err)
		}
		return *applyCacheDir
	}
	scaleTmpRootMu.Do(func() {
		dir, err := os.MkdirTemp("", "aurum-apply-scale-")
		if err != nil {
			tb.Fatal(err)
		}
		scaleTmpRoot = dir
	})
	return scaleTmpRoot
}

// populatedStore returns a populated state store for people under the
// flags' store options, building it if needed (outside any timer).
func populatedStore(tb testing.TB, people int, so *store.Options) scaleStore {
	scaleMu.Lock()
	defer scaleMu.Unlock()
	eff := so.EnsureDefaults()
	key := fmt.Sprintf("v1-p%d-bloom%d-mem%d", people, max(eff.BloomBitsPerKey, 0), eff.MemTableSize>>20)
	if s, ok := scaleStores[key]; ok {
		return s
	}
	dir := filepath.Join(scaleRoot(tb), key)
	if _, err := os.Stat(filepath.Join(dir, "COMPLETE")); err == nil {
		db, err := store.Open(filepath.Join(dir, "db"), so)
		if err != nil {
			tb.Fatal(err)
		}
		seq, err := projections.Applied(db)
		db.Close()
		if err != nil {
			tb.Fatal(err)
		}
		s := scaleStore{dir: dir, seq: seq}
		scaleStores[key] = s
		return s
	}
	os.RemoveAll(dir)
	start := time.Now()
	db, err := store.Open(filepath.Join(dir, "db"), so)
	if err != nil {
		tb.Fatal(err)
	}
	a := &scaleApplier{db: db, sm: projections.New(scaleSMOptions())}
	a.installAudiences(tb)
	for _, data := range scalePopulateLog(people) {
		a.apply(tb, projections.SubjectEvents, data)
	}
	if err := db.Close(); err != nil {
		tb.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "COMPLETE"), nil, 0o644); err != nil {
		tb.Fatal(err)
	}
	tb.Logf("populated %d people (%d entries) in %s: %s", people, a.seq, time.Since(start).Round(time.Millisecond), dir)
	s := scaleStore{dir: dir, seq: a.seq}
	scaleStores[key] = s
	return s
}

// openScaleCopy opens a checkpoint of the populated store in a temp dir.
func openScaleCopy(tb testing.TB, s scaleStore, so *store.Options) *store.DB {
	src, err := store.Open(filepath.Join(s.dir, "db"), so)
	if err != nil {
		tb.Fatal(err)
	}
	dst := filepath.Join(tb.TempDir(), "state")
	err = src.Checkpoint(dst)
	src.Close()
	if err != nil {
		tb.Fatal(err)
	}
	db, err := store.Open(dst, so)
	if err != nil {
		tb.Fatal(err)
	}
	return db
}

func BenchmarkApplyScale(b *testing.B) {
	people := *applyPeople
	so := scaleStoreOptions()
	s := populatedStore(b, people, so)
	db := openScaleCopy(b, s, so)
	defer db.Close()
	a := &scaleApplier{db: db, sm: projections.New(scaleSMOptions()), seq: s.seq}
	logStart := scaleT0 + int64(3*people)*3 + 1000
	n := max(b.N, scaleRecordsPerEntry)
	warmN := *applyWarmup
	if b.N == 1 {
		warmN = 0 // the testing package's probe run: nothing is reported from it
	}
	warm := scaleRunLog(people, warmN, 2, "warm", logStart)
	timed := scaleRunLog(people, n, uint64(3+b.N), fmt.Sprintf("run%d", b.N), logStart+int64(*applyWarmup))
	for _, data := range warm {
		a.apply(b, projections.SubjectEvents, data)
	}
	st0 := a.sm.CacheStats()
	m0 := db.Metrics()
	b.ResetTimer()
	cpu0, cpuOK := processCPU()
	start := time.Now()
	for _, data := range timed {
		a.apply(b, projections.SubjectEvents, data)
	}
	d := time.Since(start)
	cpu1, ok := processCPU()
	b.StopTimer()
	b.ReportMetric(float64(d.Nanoseconds())/float64(n), "ns/event")
	if ok && cpuOK {
		b.ReportMetric(float64((cpu1-cpu0).Nanoseconds())/float64(n), "cpu-ns/event")
	}
	if st := a.sm.CacheStats(); st.Hits+st.Misses > st0.Hits+st0.Misses {
		h, m := st.Hits-st0.Hits, st.Misses-st0.Misses
		b.ReportMetric(100*float64(h)/float64(h+m), "cache-hit-%")
	}
	m1 := db.Metrics()
	if h, m := m1.BlockCacheHits-m0.BlockCacheHits, m1.BlockCacheMisses-m0.BlockCacheMisses; h+m > 0 {
		b.ReportMetric(100*float64(h)/float64(h+m), "block-hit-%")
		b.ReportMetric(float64(m)/float64(n), "block-miss/event")
	}
	reportRate(b, n, d)
}

// TestApplyScaleStoreOptionsSameState applies the same log (populate and
// random events, as BenchmarkApplyScale does) to a state store opened as
// before session 3 (no bloom filters, no state cache) and to one opened
// with the engine's state options and the default state cache, both with
// small memtables so that tables are flushed and compacted (and filters
// written and consulted) along the way. Results, digests and every key
// and value must be equal.
func TestApplyScaleStoreOptionsSameState(t *testing.T) {
	const people = 250
	variants := []struct {
		name string
		so   *store.Options
		sm   projections.Options
	}{
		{"before", &store.Options{BloomBitsPerKey: -1, CacheSize: 1 << 20, MemTableSize: 256 << 10}, projections.Options{Partitions: 16, CacheBytes: -1, Open: openIdentity}},
		{"state-options", func() *store.Options { o := engine.StateStoreOptions(nil); o.MemTableSize = 256 << 10; return o }(), projections.Options{Partitions: 16, Open: openIdentity}},
		{"small-caches", &store.Options{BloomBitsPerKey: 4, CacheSize: 1 << 20, MemTableSize: 256 << 10}, projections.Options{Partitions: 16, CacheBytes: 64 << 10, Open: openIdentity}},
	}
	var entries [][]byte
	entries = append(entries, scalePopulateLog(people)...)
	entries = append(entries, scaleRunLog(people, 500, 9, "eq", scaleT0+int64(3*people)*3+1000)...)

	appliers := make([]*scaleApplier, len(variants))
	for i, v := range variants {
		db, err := store.Open(filepath.Join(t.TempDir(), v.name), v.so)
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		appliers[i] = &scaleApplier{db: db, sm: projections.New(v.sm)}
		appliers[i].installAudiences(t)
	}
	for _, data := range entries {
		var first projections.Result
		for i, a := range appliers {
			a.seq++
			batch := a.db.NewBatch()
			res, err := a.sm.Apply(batch, a.seq, projections.SubjectEvents, data)
			if err != nil {
				t.Fatalf("%s: apply seq %d: %v", variants[i].name, a.seq, err)
			}
			if err := a.db.Commit(batch, false); err != nil {
				t.Fatal(err)
			}
			batch.Close()
			if i == 0 {
				first = res
			} else if fmt.Sprint(res) != fmt.Sprint(first) {
				t.Fatalf("seq %d: %s result %+v, %s result %+v", a.seq, variants[i].name, res, variants[0].name, first)
			}
		}
	}
	var flushed bool
	for _, a := range appliers {
		flushed = flushed || a.db.Metrics().Flushes > 0
	}
	if !flushed {
		t.Fatal("no memtable was flushed: the test did not read through sstables and their filters")
	}
	want, err := projections.Digest(appliers[0].db)
	if err != nil {
		t.Fatal(err)
	}
	for i, a := range appliers[1:] {
		got, err := projections.Digest(a.db)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("%s: digest %x, %s: %x", variants[i+1].name, got, variants[0].name, want)
		}
	}
	// Every key, outboxes included (the digest leaves them out).
	type kv struct{ k, v string }
	dump := func(db *store.DB) []kv {
		var out []kv
		if err := db.Scan(nil, nil, false, func(k, v []byte) bool {
			out = append(out, kv{string(k), string(v)})
			return true
		}); err != nil {
			t.Fatal(err)
		}
		return out
	}
	base := dump(appliers[0].db)
	if len(base) < 10*people {
		t.Fatalf("only %d keys for %d people", len(base), people)
	}
	for i, a := range appliers[1:] {
		got := dump(a.db)
		if len(got) != len(base) {
			t.Fatalf("%s: %d keys, %s: %d", variants[i+1].name, len(got), variants[0].name, len(base))
		}
		for j := range got {
			if got[j] != base[j] {
				t.Fatalf("%s: key %d: %q=%x, %s: %q=%x", variants[i+1].name, j, got[j].k, got[j].v, variants[0].name, base[j].k, base[j].v)
			}
		}
	}
}
