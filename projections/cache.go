package projections

import (
	"bytes"
	"encoding/binary"
	"errors"
	"hash/maphash"
	"sync"
	"sync/atomic"

	"github.com/aurumcdp/aurum/store"
)

// DefaultCacheBytes is the default bound of the state cache (Options.CacheBytes).
const DefaultCacheBytes = 64 << 20

// cacheIndexBytes approximates the memory of an entry's slot in a
// generation's index (a map[uint64]uint32: 16-byte slots, 8 control bytes
// per 8 slots, at most 7/8 full and up to half empty after it grew).
const cacheIndexBytes = 32

// maxCacheGen bounds a generation's bytes: offsets into its data are uint32.
const maxCacheGen = 1 << 31

// recordHeader is the size of a record's header; maxCacheKey the longest
// key a record holds (longer ones are not cached).
const (
	recordHeader = 10
	maxCacheKey  = 1<<16 - 1
)

// stateCache keeps the values of hot state keys between log entries, so
// that Apply does not read (and Pebble does not search for) them again: the
// keychain (ik/, ip/), GCRs, audience states, member counts, partition
// positions and a few meta keys (cacheable). It holds raw values, absent
// keys included, as they are in the store after the entry at position seq.
//
// It is write-through and transactional. Within one Apply every Get, Set
// and Delete goes through a cachedRW: writes are staged and join the cache
// only when Apply succeeds, so a failed entry (whose batch the caller
// discards) leaves nothing behind. A value read from the store during an
// Apply, of a key that Apply did not write, is the store's value before the
// entry and joins the cache at once.
//
// Invariant: when valid, every cached value equals the store's value at
// applied position seq. Apply checks the store's applied position against
// seq first and drops the cache when they differ (a batch that was not
// committed, another state machine's writes, a restore to another
// position). Writes that bypass Apply and Skip at the same position (a
// restore, copying key ranges into the store) must be followed by
// ResetCache.
//
// Bound: two generations of at most max/2 bytes each (their data and
// index). A hit in the old generation moves the entry to the current one;
// when the current one is full, the old one is dropped and the current
// one becomes old. A hot working set stays, a cold one ages out in two
// rotations.
//
// Layout: nothing the garbage collector has to scan grows with the
// entries (issue #15: a map of strings to slices made every GC cycle
// visit two pointers per entry, hundreds of thousands of them). A
// generation appends its entries, key and value inline, to one []byte
// and indexes them by a 64-bit hash of the key in a map[uint64]uint32
// (offsets): both pointer-free. A lookup compares the stored key, so two
// keys of one hash never serve each other's values: the later one
// replaces the earlier, which the cache then forgets. A value rewritten in
// the current generation leaves its old bytes dead; when dead bytes stop
// the data from taking an entry, the generation is compacted in place if
// they are at least a quarter of it, and rotated otherwise; and its buffer
// grows only when less than a quarter of it is dead, so that a small,
// much rewritten working set does not hold the whole bound.
type stateCache struct {
	mu    sync.Mutex // held by Apply, Skip and ResetCache: one user at a time
	max   int        // bytes; <= 0: disabled
	half  int        // a generation's bound
	seq   uint64     // applied position the cached values are those of
	valid bool
	cur   cacheGen
	old   cacheGen
	seed  maphash.Seed
	hash  func(seed maphash.Seed, k []byte) uint64 // maphash.Bytes; tests make keys collide

	// The staged writes of the entry being applied (cachedRW), reused
	// from entry to entry: key → its latest value in stageBuf.
	staged   map[string]stagedVal
	stageBuf []byte

	hits, misses atomic.Uint64

	rotations, compactions int // for the tests
}

// stagedVal is a staged write: stageBuf[off:off+n], or a deletion.
type stagedVal struct {
	off, n int
	ok     bool
}

// cacheGen is a generation: records appended to data, each
//
//	len(key) u16, len(value)<<1 | present u32, room u32, key, value and room-len(value) bytes more
//
// (little-endian) and idx, the offset of the record of each key hash. A
// record is live while idx holds its offset under its key's hash. Room is
// the value's length and a quarter more when written: a rewrite of the key
// that fits (a GCR or an audience state grows by a few bytes an event) goes
// in place and leaves no dead bytes.
type cacheGen struct {
	data []byte
	idx  map[uint64]uint32
	live int // bytes of the live records
}

// size is the memory the generation counts against its bound.
func (g *cacheGen) size() int { return len(g.data) + len(g.idx)*cacheIndexBytes }

// record parses the record at off: its key, value, presence and length.
func (g *cacheGen) record(off uint32) (k, v []byte, present bool, n int) {
	b := g.data[off:]
	kl := int(binary.LittleEndian.Uint16(b))
	vl := binary.LittleEndian.Uint32(b[2:])
	room := int(binary.LittleEndian.Uint32(b[6:]))
	k = b[recordHeader : recordHeader+kl]
	v = b[recordHeader+kl : recordHeader+kl+int(vl>>1)]
	return k, v, vl&1 == 1, recordHeader + kl + room
}

// lookup returns the offset of k's record, if the generation holds k.
func (g *cacheGen) lookup(h uint64, k []byte) (uint32, bool) {
	off, ok := g.idx[h]
	if !ok {
		return 0, false
	}
	if rk, _, _, _ := g.record(off); !bytes.Equal(rk, k) {
		return 0, false // another key of the same hash
	}
	return off, true
}

// owns reports whether the record at off is live: idx holds it for h.
func (g *cacheGen) owns(h uint64, off uint32) bool {
	o, ok := g.idx[h]
	return ok && o == off
}

// drop forgets the record at off of hash h (the caller checked it is live).
func (g *cacheGen) drop(h uint64, off uint32) {
	_, _, _, n := g.record(off)
	g.live -= n
	delete(g.idx, h)
}

func newStateCache(max int) *stateCache {
	return &stateCache{max: max, half: min(max/2, maxCacheGen), seed: maphash.MakeSeed(), hash: maphash.Bytes}
}

func (c *stateCache) enabled() bool { return c.max > 0 }

// reset drops every value (the caller holds mu).
func (c *stateCache) reset() {
	c.cur, c.old, c.valid, c.seq = cacheGen{}, cacheGen{}, false, 0
}

// get returns a copy of k's cached value (nil and present false: absent
// from the store) and whether the cache holds k at all.
func (c *stateCache) get(k []byte) (v []byte, present, found bool) {
	h := c.hash(c.seed, k)
	if off, ok := c.cur.lookup(h, k); ok {
		_, rv, p, _ := c.cur.record(off)
		return bytes.Clone(rv), p, true
	}
	off, ok := c.old.lookup(h, k)
	if !ok {
		return nil, false, false
	}
	_, rv, p, _ := c.old.record(off)
	v = bytes.Clone(rv) // before put: a rotation reuses the old generation's bytes
	c.old.drop(h, off)
	c.putHashed(h, k, v, p)
	return v, p, true
}

// put caches v (present false: k is absent from the store) as k's value.
func (c *stateCache) put(k, v []byte, present bool) {
	c.putHashed(c.hash(c.seed, k), k, v, present)
}

func (c *stateCache) putHashed(h uint64, k, v []byte, present bool) {
	if off, ok := c.old.lookup(h, k); ok {
		c.old.drop(h, off) // shadowed by cur from now on; free it
	}
	if !present {
		v = nil
	}
	vl := uint32(len(v))<<1 | uint32(b2u(present))
	g := &c.cur
	if prev, had := g.idx[h]; had {
		rk, _, _, pn := g.record(prev)
		if room := pn - recordHeader - len(rk); bytes.Equal(rk, k) && len(v) <= room { // in place
			b := g.data[prev:]
			binary.LittleEndian.PutUint32(b[2:], vl)
			copy(b[recordHeader+len(k):], v)
			return
		}
		g.live -= pn
		delete(g.idx, h)
	}
	room := len(v) + len(v)/4
	n := recordHeader + len(k) + room
	if n+cacheIndexBytes > c.half {
		room = len(v)
		n = recordHeader + len(k) + room
	}
	need := n + cacheIndexBytes
	if need > c.half || len(k) > maxCacheKey {
		return // larger than a generation: not cached (and no older value left)
	}
	// The generation's memory is its buffer's capacity and its index
	// (held), not only the bytes used (size): the bound is on the first.
	if max(cap(g.data), len(g.data)+n)+len(g.idx)*cacheIndexBytes+cacheIndexBytes > c.half {
		if dead := len(g.data) - g.live; dead >= c.half/4 && max(cap(g.data), g.live+n)+len(g.idx)*cacheIndexBytes+cacheIndexBytes <= c.half {
			g.compact(c.seed, c.hash)
			c.compactions++
		} else {
			c.rotate()
		}
	}
	if g.idx == nil {
		g.idx = make(map[uint64]uint32)
	}
	if len(g.data)+n > cap(g.data) {
		// Full: compact rather than grow while a quarter of it is dead, so
		// that a working set smaller than the bound holds at most about
		// 8/3 of its bytes (the Go heap the GC paces by), not the whole
		// bound.
		if dead := len(g.data) - g.live; dead >= len(g.data)/4 && g.live+n <= cap(g.data) {
			g.compact(c.seed, c.hash)
			c.compactions++
		} else { // grow by doubling, up to what the bound leaves the data
			nd := make([]byte, len(g.data), max(min(max(2*cap(g.data), len(g.data)+n, 4096), c.dataRoom(g)), len(g.data)+n))
			copy(nd, g.data)
			g.data = nd
		}
	}
	off := len(g.data)
	g.data = binary.LittleEndian.AppendUint16(g.data, uint16(len(k)))
	g.data = binary.LittleEndian.AppendUint32(g.data, vl)
	g.data = binary.LittleEndian.AppendUint32(g.data, uint32(room))
	g.data = append(g.data, k...)
	g.data = append(g.data, v...)
	g.data = g.data[:off+n] // the room after the value: never read
	g.idx[h] = uint32(off)
	g.live += n
}

// dataRoom is the capacity g's data may grow to: the bound less the index
// g will have when the data fills it, estimated from g's records so far
// (bytes per index entry), so that the buffer and the index together stay
// within half once the data is full. A buffer grown to the whole bound
// held its index on top of it: 17.2 MiB under a 16 MiB bound
// (TestMemoryBudget).
func (c *stateCache) dataRoom(g *cacheGen) int {
	room := c.half - (len(g.idx)+1)*cacheIndexBytes
	if len(g.idx) > 0 && len(g.data) > 0 {
		room = min(room, int(int64(c.half)*int64(len(g.data))/int64(len(g.data)+len(g.idx)*cacheIndexBytes)))
	}
	return room
}

// rotate drops the old generation and makes the current one old; the new
// current one reuses the dropped one's memory (nothing refers to it: get
// hands out copies).
func (c *stateCache) rotate() {
	c.rotations++
	data, idx := c.old.data[:0], c.old.idx
	clear(idx)
	c.old, c.cur = c.cur, cacheGen{data: data, idx: idx}
}

// compact moves the live records of g to the front of its data, in order,
// and drops the dead ones' bytes.
func (g *cacheGen) compact(seed maphash.Seed, hash func(maphash.Seed, []byte) uint64) {
	w := 0
	for r := 0; r < len(g.data); {
		k, _, _, n := g.record(uint32(r))
		if h := hash(seed, k); g.owns(h, uint32(r)) {
			copy(g.data[w:], g.data[r:r+n])
			g.idx[h] = uint32(w)
			w += n
		}
		r += n
	}
	g.data = g.data[:w]
	g.live = w
}

func b2u(b bool) uint64 {
	if b {
		return 1
	}
	return 0
}

// cacheable reports whether the cache keeps key k: keys Apply reads with
// Get again and again. Keys written once and read by scans (events, outbox,
// history, timers, merge records) or looked up once (dedup) would only
// push hot values out. meta/applied is read from the store to check the
// cache's position.
func cacheable(k []byte) bool {
	if len(k) >= 6 && k[0] == 'p' && k[1] == '/' && k[4] == '/' {
		switch k[5] {
		case 'g', 'u', 'n', 'm', 'b', 'a': // GCR, audience state, member count, membership, backfill cursor, position
			return true
		case 'w':
			return len(k) == 7 && k[6] == 'l' // p/<i>/wl, not the timer index w/
		}
		return false
	}
	switch {
	case bytes.HasPrefix(k, []byte("ik/")), bytes.HasPrefix(k, []byte("ip/")), bytes.HasPrefix(k, []byte("sx/")):
		return true
	case bytes.HasPrefix(k, []byte("meta/")):
		return !bytes.Equal(k, keyApplied)
	}
	return false
}

// cachedRW is the store.ReadWriter Apply and Skip work through: reads of
// cacheable keys are served by its own writes, then the cache, then rw;
// writes go to rw and are staged for the cache (c.staged).
type cachedRW struct {
	rw store.ReadWriter
	c  *stateCache
}

var _ store.ReadWriter = (*cachedRW)(nil)

func (w *cachedRW) Get(k []byte) ([]byte, error) {
	if !cacheable(k) {
		return w.rw.Get(k)
	}
	c := w.c
	if s, ok := c.staged[string(k)]; ok {
		c.hits.Add(1)
		if !s.ok {
			return nil, store.ErrNotFound
		}
		return bytes.Clone(c.stageBuf[s.off : s.off+s.n : s.off+s.n]), nil
	}
	if v, present, ok := c.get(k); ok {
		c.hits.Add(1)
		if !present {
			return nil, store.ErrNotFound
		}
		return v, nil
	}
	c.misses.Add(1)
	got, err := w.rw.Get(k)
	switch {
	case err == nil:
		c.put(k, got, true) // copied into the cache's own bytes
	case errors.Is(err, store.ErrNotFound):
		c.put(k, nil, false)
	}
	return got, err
}

func (w *cachedRW) Scan(lower, upper []byte, reverse bool, fn func(k, v []byte) bool) error {
	return w.rw.Scan(lower, upper, reverse, fn)
}

func (w *cachedRW) Set(k, v []byte) error {
	if err := w.rw.Set(k, v); err != nil {
		return err
	}
	if cacheable(k) {
		w.c.stage(k, v, true)
	}
	return nil
}

func (w *cachedRW) Delete(k []byte) error {
	if err := w.rw.Delete(k); err != nil {
		return err
	}
	if cacheable(k) {
		w.c.stage(k, nil, false)
	}
	return nil
}

// stage records a write of the entry being applied (the caller holds mu).
func (c *stateCache) stage(k, v []byte, present bool) {
	if c.staged == nil {
		c.staged = make(map[string]stagedVal)
	}
	s := stagedVal{off: len(c.stageBuf), n: len(v), ok: present}
	c.stageBuf = append(c.stageBuf, v...)
	c.staged[string(k)] = s
}

// maxStageBuf bounds the staging buffer kept from one entry to the next.
const maxStageBuf = 1 << 20

// unstage forgets the staged writes (the caller holds mu).
func (c *stateCache) unstage() {
	clear(c.staged)
	c.stageBuf = c.stageBuf[:0]
	if cap(c.stageBuf) > maxStageBuf {
		c.stageBuf = nil
	}
}

// withCache runs fn, the application of the entry at seq, through the
// cache: the cache is dropped first unless it holds the state at the
// store's applied position, and fn's writes join it only when fn succeeds.
// Without a cache fn runs on rw itself.
func (sm *StateMachine) withCache(rw store.ReadWriter, seq uint64, fn func(rw store.ReadWriter) error) error {
	c := sm.cache
	if !c.enabled() {
		return fn(rw)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	prev, err := Applied(rw)
	if err != nil {
		return err
	}
	if !c.valid || c.seq != prev {
		c.reset()
		c.valid, c.seq = true, prev
	}
	c.unstage()
	defer c.unstage()
	if err := fn(&cachedRW{rw: rw, c: c}); err != nil {
		return err // staged writes dropped: the caller discards the entry's batch
	}
	for k, s := range c.staged { // order does not matter: distinct keys
		c.put([]byte(k), c.stageBuf[s.off:s.off+s.n], s.ok)
	}
	c.seq = seq
	return nil
}

// ResetCache drops the state cache. Call it after writing the state store
// other than through Apply and Skip (a restore, copying key ranges into
// it) when the applied position did not change.
func (sm *StateMachine) ResetCache() {
	sm.cache.mu.Lock()
	defer sm.cache.mu.Unlock()
	sm.cache.reset()
}

// CacheStats are the state cache's hits and misses since New.
type CacheStats struct {
	Hits, Misses uint64
}

// CacheStats returns the state cache's counters (safe for concurrent use).
func (sm *StateMachine) CacheStats() CacheStats {
	return CacheStats{Hits: sm.cache.hits.Load(), Misses: sm.cache.misses.Load()}
}
