package projections

import (
	"bytes"
	"errors"
	"fmt"
	"hash/maphash"
	"math/rand/v2"
	"runtime"
	"runtime/metrics"
	"testing"

	"github.com/aurumcdp/aurum/store"
)

// firstDifference compares two stores key by key, values and outboxes
// included; it returns the first key that differs.
func firstDifference(a, b store.Reader) (string, bool) {
	dump := func(r store.Reader) map[string]string {
		m := map[string]string{}
		_ = r.Scan(nil, []byte{0xff, 0xff, 0xff, 0xff}, false, func(k, v []byte) bool { m[string(k)] = string(v); return true })
		return m
	}
	da, db := dump(a), dump(b)
	for k, v := range da {
		if w, ok := db[k]; !ok || w != v {
			return k, false
		}
	}
	for k := range db {
		if _, ok := da[k]; !ok {
			return k, false
		}
	}
	return "", true
}

// TestCacheNeverServesStaleValues applies logs with merges, duplicates,
// audiences, timers and backfills with the default cache, a tiny one that
// rotates all the time, and none, and compares the whole stores (outboxes
// included) and the results after every entry. The data-driven audience
// scenarios (erasures, merges, deletes) do the same through their shadows
// (shadowCaches).
func TestCacheNeverServesStaleValues(t *testing.T) {
	for name, log := range map[string][]entry{
		"identity":  syntheticLog(t, 30, 800, 7),
		"audiences": audienceLog(t),
	} {
		t.Run(name, func(t *testing.T) {
			var sms []*StateMachine
			var names []string
			for _, cache := range []int{0, 4096, 48 << 10, -1} {
				sms = append(sms, New(Options{Partitions: 4, CacheBytes: cache, BackfillPerEntry: 7}))
				names = append(names, fmt.Sprintf("cache %d", cache))
			}
			// Keys of one hash replace each other: with 4 hashes in all, a
			// lookup that did not compare the stored key would serve another
			// key's value at once.
			colliding := New(Options{Partitions: 4, BackfillPerEntry: 7})
			colliding.cache.hash = func(_ maphash.Seed, k []byte) uint64 { return uint64(k[len(k)-1] & 3) }
			sms, names = append(sms, colliding), append(names, "cache with 4 key hashes")
			applyAndCompare(t, log, sms, names, 1)
			if st := sms[0].CacheStats(); st.Hits == 0 || st.Misses == 0 {
				t.Fatalf("cache stats %+v: the cache was not used", st)
			}
			if st := sms[3].CacheStats(); st.Hits != 0 || st.Misses != 0 {
				t.Fatalf("cache stats %+v with the cache off", st)
			}
			if c := sms[2].cache; c.rotations == 0 { // compactions: TestStateCacheModel
				t.Fatalf("the 48 KiB cache never rotated")
			}
			if st := colliding.CacheStats(); st.Hits == 0 {
				t.Fatalf("cache stats %+v: the colliding cache never hit", st)
			}
		})
	}
}

// overlay is a batch over a store.Mem: reads see its own writes, Commit
// applies them, dropping it discards them. It fails the Nth write when
// failAt is set, as a full disk or a bug in the middle of an entry would.
type overlay struct {
	base   *store.Mem
	writes map[string][]byte // nil value: deleted
	order  []string
	n      int
	failAt int
}

var errInjected = errors.New("injected write failure")

func newOverlay(base *store.Mem, failAt int) *overlay {
	return &overlay{base: base, writes: map[string][]byte{}, failAt: failAt}
}

func (o *overlay) Get(k []byte) ([]byte, error) {
	if v, ok := o.writes[string(k)]; ok {
		if v == nil {
			return nil, store.ErrNotFound
		}
		return bytes.Clone(v), nil
	}
	return o.base.Get(k)
}

func (o *overlay) Scan(lower, upper []byte, reverse bool, fn func(k, v []byte) bool) error {
	m := store.NewMem()
	_ = o.base.Scan(lower, upper, false, func(k, v []byte) bool { _ = m.Set(k, v); return true })
	for _, k := range o.order {
		kb := []byte(k)
		if bytes.Compare(kb, lower) < 0 || (upper != nil && bytes.Compare(kb, upper) >= 0) {
			continue
		}
		if v := o.writes[k]; v == nil {
			_ = m.Delete(kb)
		} else {
			_ = m.Set(kb, v)
		}
	}
	return m.Scan(lower, upper, reverse, fn)
}

func (o *overlay) write(k, v []byte) error {
	o.n++
	if o.failAt > 0 && o.n == o.failAt {
		return errInjected
	}
	if _, ok := o.writes[string(k)]; !ok {
		o.order = append(o.order, string(k))
	}
	o.writes[string(k)] = v
	return nil
}

func (o *overlay) Set(k, v []byte) error {
	if v == nil {
		v = []byte{}
	}
	return o.write(k, bytes.Clone(v))
}

func (o *overlay) Delete(k []byte) error { return o.write(k, nil) }

func (o *overlay) commit() {
	for _, k := range o.order {
		if v := o.writes[k]; v == nil {
			_ = o.base.Delete([]byte(k))
		} else {
			_ = o.base.Set([]byte(k), v)
		}
	}
}

// TestCacheSurvivesFailedAndUncommittedEntries: an entry whose apply fails
// midway (its batch discarded), and an entry applied but never committed
// (the commit failed), are retried; the cached state machine then matches
// one without a cache, entry by entry. A cache that kept the failed entry's
// writes, or the uncommitted one's, would serve values the store does not
// hold.
func TestCacheSurvivesFailedAndUncommittedEntries(t *testing.T) {
	log := audienceLog(t)
	cached, plain := New(Options{Partitions: 4}), New(Options{Partitions: 4, CacheBytes: -1})
	cs, ps := store.NewMem(), store.NewMem()
	failures := 0
	for i, e := range log {
		switch i % 3 {
		case 1: // fails midway, after about half of its writes
			probe := newOverlay(cs, 0)
			if _, err := New(Options{Partitions: 4, CacheBytes: -1}).Apply(probe, e.seq, e.subject, e.data); err != nil {
				t.Fatal(err)
			}
			o := newOverlay(cs, probe.n/2+1)
			if _, err := cached.Apply(o, e.seq, e.subject, e.data); !errors.Is(err, errInjected) {
				t.Fatalf("seq %d: err = %v, want the injected failure", e.seq, err)
			}
			failures++
		case 2: // applied, never committed
			if _, err := cached.Apply(newOverlay(cs, 0), e.seq, e.subject, e.data); err != nil {
				t.Fatal(err)
			}
		}
		o := newOverlay(cs, 0)
		if _, err := cached.Apply(o, e.seq, e.subject, e.data); err != nil {
			t.Fatalf("seq %d: retry: %v", e.seq, err)
		}
		o.commit()
		if _, err := plain.Apply(ps, e.seq, e.subject, e.data); err != nil {
			t.Fatal(err)
		}
		if k, ok := firstDifference(cs, ps); !ok {
			t.Fatalf("seq %d: cached and plain stores differ at %q", e.seq, k)
		}
	}
	if failures < 10 {
		t.Fatalf("only %d injected failures", failures)
	}
}

// TestResetCache: a write behind the state machine's back at the same
// applied position (what a restore or the replay's carried-over ranges
// do) is served stale until ResetCache, and not after it.
func TestResetCache(t *testing.T) {
	log := syntheticLog(t, 10, 200, 9)
	sm, s := newSM(), store.NewMem()
	applyAll(t, sm, s, log)
	// A profile the cache holds: the root of the first record's identifier.
	var key []byte
	_ = s.Scan([]byte("ik/"), store.PrefixEnd([]byte("ik/")), false, func(k, _ []byte) bool { key = bytes.Clone(k); return false })
	if key == nil {
		t.Fatal("no keychain entry")
	}
	seq := log[len(log)-1].seq
	read := func() []byte {
		var got []byte
		err := sm.withCache(s, seq, func(rw store.ReadWriter) error {
			v, err := rw.Get(key)
			got = v
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		return got
	}
	before := read()
	other := bytes.Repeat([]byte{0xee}, len(before))
	if err := s.Set(key, other); err != nil {
		t.Fatal(err)
	}
	if got := read(); !bytes.Equal(got, before) {
		t.Fatal("the cache did not serve the value it held: this test no longer tests ResetCache")
	}
	sm.ResetCache()
	if got := read(); !bytes.Equal(got, other) {
		t.Fatalf("after ResetCache: %x, want the store's %x", got, other)
	}
}

// TestStateCacheModel runs random puts and gets of keys with values of
// random sizes, absent keys included, against a map of the latest value of
// each key, at sizes from one that holds a handful of entries to one that
// holds them all, with real and colliding key hashes: a hit always serves
// the latest value put, and each generation stays within its bound.
func TestStateCacheModel(t *testing.T) {
	type latest struct {
		v       []byte
		present bool
	}
	for _, tc := range []struct {
		name  string
		max   int
		hash  func(maphash.Seed, []byte) uint64
		hitOK bool // the cache holds every key: every read of a key put hits
	}{
		{"tiny", 2 << 10, nil, false},
		{"small", 64 << 10, nil, false},
		{"large", 8 << 20, nil, true},
		{"large, 16 hashes", 8 << 20, func(_ maphash.Seed, k []byte) uint64 { return uint64(k[len(k)-1] & 15) }, false},
		{"small, one hash", 64 << 10, func(maphash.Seed, []byte) uint64 { return 42 }, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := newStateCache(tc.max)
			if tc.hash != nil {
				c.hash = tc.hash
			}
			r := rand.New(rand.NewPCG(uint64(tc.max), 3))
			want := map[string]latest{}
			var hits, reads, knownReads int
			for i := range 60_000 {
				k := []byte(fmt.Sprintf("p/\x00\x01/g/%d", r.IntN(2000)))
				if r.IntN(3) == 0 {
					v, present := make([]byte, r.IntN(700)), r.IntN(8) != 0
					for j := range v {
						v[j] = byte(i + j)
					}
					if !present {
						v = nil
					}
					c.put(k, v, present)
					want[string(k)] = latest{v, present}
				} else {
					reads++
					if _, known := want[string(k)]; known {
						knownReads++
					}
					v, present, ok := c.get(k)
					if ok {
						hits++
						w, known := want[string(k)]
						if !known || present != w.present || !bytes.Equal(v, w.v) {
							t.Fatalf("op %d: %s: got (%x, %v), want (%x, %v) (known %v)", i, k, v, present, w.v, w.present, known)
						}
					}
				}
				for _, g := range []*cacheGen{&c.cur, &c.old} {
					if held := cap(g.data) + len(g.idx)*cacheIndexBytes; g.size() > c.half || held > c.half {
						t.Fatalf("op %d: a generation of %d bytes (capacity and index %d) over its bound %d", i, g.size(), held, c.half)
					}
				}
			}
			if tc.hitOK && (hits != knownReads || c.rotations != 0) {
				t.Fatalf("%d hits of %d reads of keys put, %d rotations, with room for every key", hits, knownReads, c.rotations)
			}
			if hits == 0 {
				t.Fatal("no hits")
			}
			if tc.hash != nil && tc.max == 64<<10 && c.compactions == 0 { // one live record: rewrites of others compact
				t.Fatal("no compactions: the path is not tested")
			}
			t.Logf("%d hits of %d reads, %d rotations, %d compactions", hits, reads, c.rotations, c.compactions)
		})
	}
}

// scannableHeap is the heap the garbage collector scans (objects with
// pointers), after a collection.
func scannableHeap() uint64 {
	runtime.GC()
	s := []metrics.Sample{{Name: "/gc/scan/heap:bytes"}}
	metrics.Read(s)
	return s[0].Value.Uint64()
}

// fillCache puts n keys of the state cache's kinds (keychain, GCR, audience
// state) with values of a few hundred bytes.
func fillCache(c *stateCache, n int) {
	v := bytes.Repeat([]byte{7}, 300)
	for i := range n {
		c.put([]byte(fmt.Sprintf("p/\x00\x03/g/%016x", i)), v[:100+i%200], true)
	}
}

// TestStateCacheIsPointerFree: what the garbage collector scans on every
// cycle does not grow with the entries the state cache holds (issue #15:
// a map of strings to byte slices made it visit two pointers per entry).
// From 2,000 entries to 100,000 (about 25 MiB) the scannable heap may grow
// by far less than the 16 bytes of pointers per entry that design had.
func TestStateCacheIsPointerFree(t *testing.T) {
	small, large := newStateCache(64<<20), newStateCache(64<<20)
	fillCache(small, 2_000)
	before := scannableHeap()
	fillCache(large, 100_000)
	after := scannableHeap()
	runtime.KeepAlive(small)
	if large.cur.idx == nil || len(large.cur.idx)+len(large.old.idx) < 90_000 {
		t.Fatalf("the cache holds %d + %d entries, want about 100,000", len(large.cur.idx), len(large.old.idx))
	}
	grown := int64(after) - int64(before)
	t.Logf("scannable heap %d → %d bytes (%+d) for 98,000 more entries", before, after, grown)
	if limit := int64(98_000 * 16 / 8); grown > limit {
		t.Fatalf("the scannable heap grew by %d bytes for 98,000 cached entries (limit %d)", grown, limit)
	}
	runtime.KeepAlive(large)
}

// BenchmarkStateCache is the cache's get/put mix as Apply makes it: of a
// working set of keys (GCR-sized values), mostly reads, a third rewritten,
// with a cache that holds about half of them (rotations, compactions).
// scan-B is the heap the GC scans with the cache full.
func BenchmarkStateCache(b *testing.B) {
	const keys = 100_000
	c := newStateCache(32 << 20)
	ks := make([][]byte, keys)
	for i := range ks {
		ks[i] = []byte(fmt.Sprintf("p/\x00\x03/g/%016x", i*7919))
	}
	v := bytes.Repeat([]byte{9}, 600)
	r := rand.New(rand.NewPCG(1, 2))
	for i := range keys {
		c.put(ks[i], v[:200+i%400], true)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		k := ks[r.IntN(keys)]
		if _, _, ok := c.get(k); !ok || i%3 == 0 {
			c.put(k, v[:200+i%400], true)
		}
	}
	b.StopTimer()
	b.ReportMetric(float64(scannableHeap()), "scan-B")
	runtime.KeepAlive(c)
}
