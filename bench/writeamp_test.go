package bench

// TestWriteAmp measures the state store's write amplification on the
// size benchmark's workload (internal/workload, AURUM_WRITEAMP_PEOPLE
// people over 3 days, as `make bench` runs it): the bytes the state
// machine writes per event by key family, and what Pebble makes of them
// (WAL, flushes, compactions per level). Heavy: it runs only with
// AURUM_BENCH=writeamp (Makefile target bench-writeamp).
//
//	AURUM_BENCH=writeamp AURUM_WRITEAMP_PEOPLE=100000 go test -run 'TestWriteAmp$' -v -timeout 0 ./bench
//
// The log is built once per people count (sealed with a keyring as the
// edge seals: identifier hashes, sealed identifiers, traits, context and
// properties; 100 events of one source per entry) into
// AURUM_WRITEAMP_DIR (default a temp dir) and then applied to fresh state
// stores, one per variant (AURUM_WRITEAMP_VARIANTS, comma separated: see
// writeAmpVariants), in AURUM_WRITEAMP_ROUNDS interleaved rounds. Each
// entry is committed as the live apply loop does when it keeps up (one
// entry per batch, no sync), and the outbox rows are deleted after each
// commit as the publisher does. The state machine and stores are sized
// by engine.MemorySizesFor(AURUM_WRITEAMP_LIMIT_MIB, default 320). With
// AURUM_WRITEAMP_FAMILIES=1 the first round of the first variant also
// counts the writes by key family and compares each Set with the value
// it overwrites (an extra Get per write: that round's CPU is not
// reported).

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/aurumcdp/aurum/engine"
	"github.com/aurumcdp/aurum/event"
	wlg "github.com/aurumcdp/aurum/internal/workload"
	"github.com/aurumcdp/aurum/projections"
	"github.com/aurumcdp/aurum/projections/audience"
	"github.com/aurumcdp/aurum/projections/identity"
	"github.com/aurumcdp/aurum/seal"
	"github.com/aurumcdp/aurum/store"
	"github.com/vmihailenco/msgpack/v5"
)

// writeAmpVariants are the store options tried against the baseline
// "base": the engine's state store sizes at the limit with Pebble's LSM
// defaults (the engine before session 10). "l0-16" is what the engine
// uses since (engine.stateStoreTuning).
var writeAmpVariants = map[string]func(o *store.Options){
	"base":     func(*store.Options) {},
	"mem2x":    func(o *store.Options) { o.MemTableSize *= 2 },
	"mem4x":    func(o *store.Options) { o.MemTableSize *= 4 },
	"l0-8":     func(o *store.Options) { o.Tuning.L0CompactionThreshold = 8; o.Tuning.L0StopWritesThreshold = 24 },
	"l0-16":    func(o *store.Options) { o.Tuning.L0CompactionThreshold = 16; o.Tuning.L0StopWritesThreshold = 48 },
	"lbase256": func(o *store.Options) { o.Tuning.LBaseMaxBytes = 256 << 20 },
	"file8":    func(o *store.Options) { o.Tuning.L0TargetFileSize = 8 << 20 },
	"nocomp":   func(o *store.Options) { o.Compression = store.CompressionNone },
	"snappy":   func(o *store.Options) { o.Compression = store.CompressionSnappy },
	"vsep256":  func(o *store.Options) { o.Tuning.ValueSeparationMin = 256 },
	"vsep1k":   func(o *store.Options) { o.Tuning.ValueSeparationMin = 1024 },
	"noBloom":  func(o *store.Options) { o.BloomBitsPerKey = -1 },
	"compact2": func(o *store.Options) { o.Tuning.MaxConcurrentCompactions = 2 },
	// "nowal" is "l0-16" without a WAL: write-back state's checkpoints
	// (the applier flushes the memtables every writeAmpCheckpoint events,
	// as the engine's checkpointer does by interval, and Pebble flushes a
	// full memtable by itself).
	"nowal": noWALVariant,
	// "evsep" and "noev" are "nowal" with the event records (p/<partition>/e/)
	// moved out of the state store (writeAmpEventModes): the question is how
	// much of the compaction work, which grows with the store, is theirs.
	"evsep": noWALVariant,
	"noev":  noWALVariant,
	"l0-8+lb256": func(o *store.Options) {
		o.Tuning.L0CompactionThreshold = 8
		o.Tuning.L0StopWritesThreshold = 24
		o.Tuning.LBaseMaxBytes = 256 << 20
	},
}

// writeAmpEventModes: what a variant does with the event records, which are
// written once and never changed. "separate": to a second store of the same
// options, keyed by their order of arrival (a 64-bit counter: appends, which
// Pebble moves down the levels without rewriting them), the state store
// keeping a 13-byte index entry per record (p/<partition>/x/<the rest of
// the event key> → the counter) so that a person's events can still be
// listed; "drop": not written at all (the bound of what moving them saves).
var writeAmpEventModes = map[string]string{"evsep": "separate", "noev": "drop"}

// isEventKey reports a partition's event record key (p/NN/e/...).
func isEventKey(k []byte) bool {
	return len(k) > 7 && k[0] == 'p' && k[1] == '/' && k[4] == '/' && k[5] == 'e' && k[6] == '/'
}

// eventRouter is the batch the state machine writes to under an event mode:
// event records go to events (or nowhere), the rest to the batch.
type eventRouter struct {
	*store.Batch
	events *store.Batch // nil: drop
	next   *uint64
	idx    []byte
}

func (r *eventRouter) Set(k, v []byte) error {
	if !isEventKey(k) {
		return r.Batch.Set(k, v)
	}
	if r.events == nil {
		return nil
	}
	*r.next++
	var seq [8]byte
	binary.BigEndian.PutUint64(seq[:], *r.next)
	if err := r.events.Set(seq[:], v); err != nil {
		return err
	}
	r.idx = append(append(r.idx[:0], k[:5]...), 'x')
	r.idx = append(r.idx, k[6:]...)
	return r.Batch.Set(r.idx, seq[:])
}

func noWALVariant(o *store.Options) {
	o.Tuning.L0CompactionThreshold = 16
	o.Tuning.L0StopWritesThreshold = 48
	o.NoWAL = true
}

func TestWriteAmp(t *testing.T) {
	if os.Getenv("AURUM_BENCH") != "writeamp" {
		t.Skip("heavy: set AURUM_BENCH=writeamp (make bench-writeamp)")
	}
	people := envInt("AURUM_WRITEAMP_PEOPLE", 10_000)
	rounds := envInt("AURUM_WRITEAMP_ROUNDS", 1)
	limit := int64(envInt("AURUM_WRITEAMP_LIMIT_MIB", 320)) << 20
	variants := strings.Split(os.Getenv("AURUM_WRITEAMP_VARIANTS"), ",")
	if variants[0] == "" {
		variants = []string{"base"}
	}
	for _, v := range variants {
		if writeAmpVariants[v] == nil {
			t.Fatalf("AURUM_WRITEAMP_VARIANTS: unknown variant %q", v)
		}
	}
	dir := os.Getenv("AURUM_WRITEAMP_DIR")
	if dir == "" {
		dir = t.TempDir()
	}
	kr := writeAmpKeyring(t, dir)
	logFile, events := writeAmpLog(t, kr, dir, people)
	t.Logf("%d people: %d events in the log %s", people, events, logFile)

	type fig struct{ cpu, wamp, written, wall float64 }
	figs := map[string][]fig{}
	for r := range rounds {
		for i, v := range variants {
			if r%2 == 1 { // interleave: every other round backwards
				v = variants[len(variants)-1-i]
			}
			families := r == 0 && i == 0 && os.Getenv("AURUM_WRITEAMP_FAMILIES") != ""
			res := writeAmpRun(t, kr, logFile, v, limit, families)
			load, _ := os.ReadFile("/proc/loadavg")
			t.Logf("round %d %s: %d events, %.1f µs CPU/event (and %.1f settling), %.0f events/s, write-amp %.2f, %.0f B/event to sstables (WAL %.0f B/event); load %s",
				r+1, v, res.events, res.cpuPerEvent, res.settlePerEvent, float64(res.events)/res.wall.Seconds(), res.m.WriteAmp(),
				float64(res.m.BytesFlushed+res.m.BytesCompacted)/float64(res.events), float64(res.m.WALBytesWritten)/float64(res.events),
				strings.Join(strings.Fields(string(load))[:3], " "))
			t.Logf("round %d %s: LSM\n%s", r+1, v, res.lsm)
			if families {
				t.Logf("writes by key family per event (%d events):\n%s", res.events, res.families.table(res.events))
				continue
			}
			figs[v] = append(figs[v], fig{res.cpuPerEvent, res.m.WriteAmp(), float64(res.m.BytesFlushed+res.m.BytesCompacted) / float64(res.events), res.wall.Seconds()})
		}
	}
	for _, v := range variants {
		fs := figs[v]
		if len(fs) == 0 {
			continue
		}
		med := func(get func(fig) float64) float64 {
			xs := make([]float64, len(fs))
			for i, f := range fs {
				xs[i] = get(f)
			}
			return medianF(xs)
		}
		base := figs[variants[0]]
		line := fmt.Sprintf("%s: median of %d: %.1f µs CPU/event, write-amp %.2f, %.0f B/event to sstables",
			v, len(fs), med(func(f fig) float64 { return f.cpu }), med(func(f fig) float64 { return f.wamp }), med(func(f fig) float64 { return f.written }))
		if v != variants[0] && len(base) == len(fs) {
			ratios := make([]float64, len(fs))
			for i := range fs {
				ratios[i] = fs[i].cpu / base[i].cpu
			}
			line += fmt.Sprintf("; CPU/event %.3f× %s (median of the rounds' ratios)", medianF(ratios), variants[0])
		}
		t.Log(line)
	}
}

// writeAmpResult is one run's figures.
type writeAmpResult struct {
	events      int
	cpuPerEvent float64 // µs
	// settlePerEvent is the CPU (µs per event) of the wait for the
	// compactions the run left, not in cpuPerEvent.
	settlePerEvent float64
	wall           time.Duration
	m              store.Metrics // the run's LSM work (since open)
	lsm            string
	families       familyCounts
}

// writeAmpRun applies the log to a fresh state store with variant's options.
func writeAmpRun(t *testing.T, kr *seal.Keyring, logFile, variant string, limit int64, families bool) writeAmpResult {
	mem := engine.MemorySizesFor(limit)
	so := &store.Options{CacheSize: mem.StateBlockCache, MemTableSize: mem.StateMemTable}
	writeAmpVariants[variant](so)
	dir := t.TempDir()
	db, err := store.Open(filepath.Join(dir, "state"), so)
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		db.Close()
		os.RemoveAll(dir)
	}()
	sm := projections.New(projections.Options{Partitions: 16, DedupWindow: (30 * 24 * time.Hour).Milliseconds(),
		CacheBytes: mem.StateCache, DedupFilterBytes: mem.DedupFilter, Open: kr.Open, InteractionKey: engine.InteractionKey(kr),
		BlockHash: func(key string) []byte { return kr.Hash("match_block", key) }})
	a := &writeAmpApplier{t: t, db: db, sm: sm, prefixes: projections.OutboxPrefixes(16), evMode: writeAmpEventModes[variant]}
	if a.evMode == "separate" {
		if a.evdb, err = store.Open(filepath.Join(dir, "events"), so); err != nil {
			t.Fatal(err)
		}
		defer a.evdb.Close()
	}
	if so.NoWAL {
		a.checkpoint = envInt("AURUM_WRITEAMP_CHECKPOINT", 20_000)
	}
	if families {
		a.fam = familyCounts{}
	}
	for _, name := range sortedNames(exampleAudiences) {
		c, err := msgpack.Marshal(&projections.Control{Kind: projections.ControlAudiencePut, Audience: audience.Definition{Name: name, Rule: exampleAudiences[name]}})
		if err != nil {
			t.Fatal(err)
		}
		a.apply(projections.SubjectControl, c)
	}
	f, err := os.Open(logFile)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	br := bufio.NewReaderSize(f, 1<<20)
	m0 := db.Metrics()
	events := 0
	var busy time.Duration
	var data []byte
	for {
		var hdr [8]byte
		if _, err := io.ReadFull(br, hdr[:]); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			t.Fatal(err)
		}
		n, size := binary.BigEndian.Uint32(hdr[:4]), binary.BigEndian.Uint32(hdr[4:])
		data = slices.Grow(data[:0], int(size))[:size]
		if _, err := io.ReadFull(br, data); err != nil {
			t.Fatal(err)
		}
		// Only the apply is timed (process CPU would count the reading
		// too, which is small: the log is read sequentially).
		c0, _ := processCPU()
		a.apply(projections.SubjectEvents, data)
		c1, _ := processCPU()
		busy += c1 - c0
		events += int(n)
		a.events = events
	}
	start := time.Now()
	c0, _ := processCPU()
	// Let the compactions the run started finish: their work is the run's.
	for db.Metrics().CompactionDebt > 0 && time.Since(start) < 2*time.Minute {
		time.Sleep(100 * time.Millisecond)
	}
	c1, _ := processCPU()
	settle := c1 - c0
	m := db.Metrics().Sub(m0)
	if a.evdb != nil {
		em := a.evdb.Metrics()
		t.Logf("%s: the events store: %.0f B/event into it, %.0f flushed, %.0f compacted (write-amp %.2f); LSM\n%s", variant,
			float64(em.BytesIn)/float64(events), float64(em.BytesFlushed)/float64(events), float64(em.BytesCompacted)/float64(events), em.WriteAmp(), a.evdb.LSM())
	}
	return writeAmpResult{events: events, cpuPerEvent: float64(busy.Microseconds()) / float64(events),
		settlePerEvent: float64(settle.Microseconds()) / float64(events), wall: a.wall,
		m: m, lsm: db.LSM(), families: a.fam}
}

type writeAmpApplier struct {
	t        *testing.T
	db       *store.DB
	sm       *projections.StateMachine
	seq      uint64
	prefixes [][]byte
	fam      familyCounts // nil: not counted
	wall     time.Duration
	events   int // applied so far (the caller counts)
	// checkpoint, when positive, flushes the memtables after every so
	// many events (a store without a WAL); flushed is the events count at
	// the last flush.
	checkpoint, flushed int
	// evMode is the variant's writeAmpEventModes; evdb the second store
	// of "separate", evNext its last key.
	evMode string
	evdb   *store.DB
	evNext uint64
}

func (a *writeAmpApplier) apply(subject string, data []byte) {
	start := time.Now()
	defer func() { a.wall += time.Since(start) }()
	a.seq++
	batch := a.db.NewBatch()
	defer batch.Close()
	var rw store.ReadWriter = batch
	var evBatch *store.Batch
	if a.evMode != "" {
		if a.evdb != nil {
			evBatch = a.evdb.NewBatch()
			defer evBatch.Close()
		}
		rw = &eventRouter{Batch: batch, events: evBatch, next: &a.evNext}
	}
	if _, err := a.sm.Apply(rw, a.seq, subject, data); err != nil {
		a.t.Fatalf("apply seq %d: %v", a.seq, err)
	}
	if evBatch != nil && evBatch.Count() > 0 {
		if err := a.evdb.Commit(evBatch, false); err != nil {
			a.t.Fatal(err)
		}
	}
	if a.fam != nil {
		a.fam.count(a.t, a.db, batch, a.events)
	}
	if err := a.db.Commit(batch, false); err != nil {
		a.t.Fatal(err)
	}
	// The publisher: delete the outbox rows once "published".
	del := a.db.NewBatch()
	defer del.Close()
	for _, p := range a.prefixes {
		rows, err := projections.Outbox(a.db, p, 1<<20)
		if err != nil {
			a.t.Fatal(err)
		}
		for _, r := range rows {
			if err := del.Delete(r.Key); err != nil {
				a.t.Fatal(err)
			}
		}
	}
	if del.Count() > 0 {
		if a.fam != nil {
			a.fam.count(a.t, a.db, del, a.events)
		}
		if err := a.db.Commit(del, false); err != nil {
			a.t.Fatal(err)
		}
	}
	if a.checkpoint > 0 && a.events-a.flushed >= a.checkpoint {
		if err := a.db.Flush(); err != nil {
			a.t.Fatal(err)
		}
		if a.evdb != nil {
			if err := a.evdb.Flush(); err != nil {
				a.t.Fatal(err)
			}
		}
		a.flushed = a.events
	}
}

// familyCounts are the writes by key family.
type familyCounts map[string]*familyCount

type familyCount struct {
	sets, dels, unchanged int
	keyBytes, valueBytes  int64
	unchangedBytes        int64
	// For write-back with checkpoints: per window of checkpointWindows[i]
	// events, the keys written in it (a checkpoint writes each dirty key
	// once, and its bytes as last written).
	lastWindow   map[string][]int
	windowWrites []int
	windowBytes  []int64
}

// checkpointWindows are checkpoint intervals in events: 1 s and 10 s at
// 7,000 events/s (the 100k size's end-to-end rate on quiet cores) and at
// 20,000.
var checkpointWindows = []int{7_000, 20_000, 70_000, 200_000}

// keyFamily names a key's family: "p/<x>" for a partition's (the part
// after p/<partition>/ up to the next '/'), else the part before the
// first '/'.
func keyFamily(k []byte) string {
	if len(k) > 5 && k[0] == 'p' && k[1] == '/' && k[4] == '/' {
		rest := k[5:]
		if i := bytes.IndexByte(rest, '/'); i >= 0 {
			rest = rest[:i]
		}
		return "p/" + string(rest[:min(len(rest), 4)])
	}
	if i := bytes.IndexByte(k, '/'); i >= 0 {
		if string(k[:i]) == "meta" {
			return string(k)
		}
		return string(k[:i])
	}
	return string(k[:min(len(k), 8)])
}

// count adds b's writes; each Set is compared with the value committed
// before b (a key written twice in b compares its first write only).
func (fc familyCounts) count(t *testing.T, db *store.DB, b *store.Batch, events int) {
	seen := map[string]bool{}
	if err := b.Writes(func(k, v []byte, del bool) bool {
		f := keyFamily(k)
		c := fc[f]
		if c == nil {
			c = &familyCount{lastWindow: map[string][]int{}, windowWrites: make([]int, len(checkpointWindows)),
				windowBytes: make([]int64, len(checkpointWindows))}
			fc[f] = c
		}
		c.keyBytes += int64(len(k))
		c.valueBytes += int64(len(v))
		lw, ok := c.lastWindow[string(k)]
		if !ok {
			lw = make([]int, len(checkpointWindows))
			for i := range lw {
				lw[i] = -1
			}
			c.lastWindow[string(k)] = lw
		}
		for i, w := range checkpointWindows {
			if win := events / w; lw[i] != win {
				lw[i] = win
				c.windowWrites[i]++
				c.windowBytes[i] += int64(len(k) + len(v))
			}
		}
		if del {
			c.dels++
			return true
		}
		c.sets++
		if !seen[string(k)] {
			seen[string(k)] = true
			if old, err := db.Get(k); err == nil && bytes.Equal(old, v) {
				c.unchanged++
				c.unchangedBytes += int64(len(k) + len(v))
			}
		}
		return true
	}); err != nil {
		t.Fatal(err)
	}
}

func (fc familyCounts) table(events int) string {
	names := make([]string, 0, len(fc))
	var total int64
	for n, c := range fc {
		names = append(names, n)
		total += c.keyBytes + c.valueBytes
	}
	sort.Slice(names, func(i, j int) bool {
		ci, cj := fc[names[i]], fc[names[j]]
		return ci.keyBytes+ci.valueBytes > cj.keyBytes+cj.valueBytes
	})
	var sb strings.Builder
	ev := float64(events)
	fmt.Fprintf(&sb, "| family | sets/event | deletes/event | key B/event | value B/event | share of bytes | sets unchanged | unchanged B/event |\n|---|---|---|---|---|---|---|---|\n")
	for _, n := range names {
		c := fc[n]
		unch := 0.0
		if c.sets > 0 {
			unch = 100 * float64(c.unchanged) / float64(c.sets)
		}
		fmt.Fprintf(&sb, "| `%s` | %.3f | %.3f | %.1f | %.1f | %.1f %% | %.1f %% | %.1f |\n", n, float64(c.sets)/ev, float64(c.dels)/ev,
			float64(c.keyBytes)/ev, float64(c.valueBytes)/ev, 100*float64(c.keyBytes+c.valueBytes)/float64(total), unch, float64(c.unchangedBytes)/ev)
	}
	fmt.Fprintf(&sb, "| total | | | | %.1f B/event | | | |\n", float64(total)/ev)
	fmt.Fprintf(&sb, "\nwrite-back with a checkpoint every W events (writes and bytes per event, each key written once per window):\n\n| family | writes/event now |")
	for _, w := range checkpointWindows {
		fmt.Fprintf(&sb, " W=%d writes | B/event |", w)
	}
	sb.WriteString("\n|---|---|")
	for range checkpointWindows {
		sb.WriteString("---|---|")
	}
	sb.WriteString("\n")
	var now float64
	wsum := make([]float64, len(checkpointWindows))
	bsum := make([]float64, len(checkpointWindows))
	for _, n := range names {
		c := fc[n]
		now += float64(c.sets+c.dels) / ev
		fmt.Fprintf(&sb, "| `%s` | %.3f |", n, float64(c.sets+c.dels)/ev)
		for i := range checkpointWindows {
			wsum[i] += float64(c.windowWrites[i]) / ev
			bsum[i] += float64(c.windowBytes[i]) / ev
			fmt.Fprintf(&sb, " %.3f | %.1f |", float64(c.windowWrites[i])/ev, float64(c.windowBytes[i])/ev)
		}
		sb.WriteString("\n")
	}
	fmt.Fprintf(&sb, "| total | %.3f |", now)
	for i := range checkpointWindows {
		fmt.Fprintf(&sb, " %.3f | %.1f |", wsum[i], bsum[i])
	}
	sb.WriteString("\n")
	return sb.String()
}

// writeAmpKeyring is a keyring on dir/keys (kept with the log, so a later
// process can open the properties sealed in it).
func writeAmpKeyring(t *testing.T, dir string) *seal.Keyring {
	db, err := store.Open(filepath.Join(dir, "keys"), &store.Options{CacheSize: 16 << 20, MemTableSize: 4 << 20})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	kr, err := seal.NewKeyring(db, bytes.Repeat([]byte{7}, 32), nil)
	if err != nil {
		t.Fatal(err)
	}
	return kr
}

// writeAmpLog builds (once per people count) the log file: per entry,
// uint32 BE events, uint32 BE size, the entry.
func writeAmpLog(t *testing.T, kr *seal.Keyring, dir string, people int) (string, int) {
	path := filepath.Join(dir, fmt.Sprintf("log-%d", people))
	countPath := path + ".events"
	if data, err := os.ReadFile(countPath); err == nil {
		var n int
		if _, err := fmt.Sscan(string(data), &n); err == nil {
			return path, n
		}
	}
	start := time.Now()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	w := bufio.NewWriterSize(f, 1<<20)
	g := wlg.New(wlg.Config{People: people, Seed: 4, Days: 3})
	idc := identity.DefaultConfig()
	pending := map[string][]event.Record{}
	var idSeq uint64
	var lastRecv int64
	events := 0
	flush := func(src string) {
		recs := pending[src]
		if len(recs) == 0 {
			return
		}
		b := event.Batch{ID: recs[0].ID, Received: recs[len(recs)-1].Received, Records: recs}
		data, err := encodeEntry(kr, &b)
		if err != nil {
			t.Fatal(err)
		}
		var hdr [8]byte
		binary.BigEndian.PutUint32(hdr[:4], uint32(len(recs)))
		binary.BigEndian.PutUint32(hdr[4:], uint32(len(data)))
		w.Write(hdr[:])
		w.Write(data)
		events += len(recs)
		pending[src] = nil
	}
	sealAny := func(key []byte, v any) []byte {
		pt, err := msgpack.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		s, err := kr.Seal(key, pt)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	for {
		wev, ok := g.Next()
		if !ok {
			break
		}
		ev, err := event.Parse(wev.JSON, "", event.ParseOptions{Now: wev.Time.Add(time.Second)})
		if err != nil {
			continue // the workload's invalid events go to dead letters at the edge
		}
		// The edge stamps the receive time: the log clock never goes back.
		recv := max(wev.Time.UnixMilli()+1000, lastRecv)
		lastRecv = recv
		idSeq++
		id := make([]byte, 16)
		binary.BigEndian.PutUint64(id[:8], uint64(recv)<<16)
		binary.BigEndian.PutUint64(id[8:], idSeq*0x9e3779b97f4a7c15)
		rec := event.Record{ID: id, MessageID: ev.MessageID, Source: wev.Source, Kind: ev.Kind, Event: ev.Event, Name: ev.Name,
			Time: ev.Timestamp.UnixMilli(), Received: recv, Channel: ev.Channel, DeviceType: ev.DeviceType, Consent: ev.Consent,
			IDs: make([]event.IDRef, len(ev.Identifiers)), Properties: ev.Properties}
		anchor, best := -1, 0
		for j, x := range ev.Identifiers {
			rec.IDs[j] = event.IDRef{Type: x.Type, Hash: kr.Hash(x.Type, x.Value), Weak: x.Weak}
			if r := idc.Rank(x.Type); !x.Weak && (anchor < 0 || r < best) {
				anchor, best = j, r
			}
		}
		if len(rec.IDs) == 0 {
			continue
		}
		rec.Key = rec.IDs[max(anchor, 0)].Hash
		if err := kr.Ensure([][]byte{rec.Key}); err != nil {
			t.Fatal(err)
		}
		for j, x := range ev.Identifiers {
			rec.IDs[j].Sealed = sealAny(rec.Key, x.Value)
		}
		if len(ev.Traits) > 0 {
			rec.Traits = make(map[string][]byte, len(ev.Traits))
			for k, v := range ev.Traits {
				rec.Traits[k] = sealAny(rec.Key, v)
			}
		}
		rec.Private = sealAny(rec.Key, &event.Private{UserID: ev.UserID, AnonymousID: ev.AnonymousID, PreviousID: ev.PreviousID,
			GroupID: ev.GroupID, Context: ev.Context})
		pending[wev.Source] = append(pending[wev.Source], rec)
		if len(pending[wev.Source]) >= 100 {
			flush(wev.Source)
		}
	}
	for _, s := range wlg.Sources {
		flush(s)
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(countPath, []byte(fmt.Sprint(events)), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("built the log of %d events for %d people in %s", events, people, time.Since(start).Round(time.Second))
	return path, events
}
