package projections

import (
	"bytes"
	"errors"
	"sync"
	"sync/atomic"

	"github.com/aurumcdp/aurum/store"
)

// DefaultCacheBytes is the default bound of the state cache (Options.CacheBytes).
const DefaultCacheBytes = 64 << 20

// cacheEntryOverhead approximates the memory of a cache entry beyond its
// key and value bytes (map slot, slice header, string header).
const cacheEntryOverhead = 64

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
// Bound: two generations of at most max/2 bytes each (keys, values and an
// overhead per entry). A hit in the old generation moves the entry to the
// current one; when the current one is full, the old one is dropped and
// the current one becomes old. A hot working set stays, a cold one ages
// out in two rotations.
type stateCache struct {
	mu    sync.Mutex // held by Apply, Skip and ResetCache: one user at a time
	max   int        // bytes; <= 0: disabled
	seq   uint64     // applied position the cached values are those of
	valid bool
	cur   map[string]cacheVal
	old   map[string]cacheVal
	bytes int // size of cur

	hits, misses atomic.Uint64
}

// cacheVal is a cached value; ok false: the key is absent from the store.
// v is never changed nor handed out: Get returns copies.
type cacheVal struct {
	v  []byte
	ok bool
}

func newStateCache(max int) *stateCache {
	return &stateCache{max: max}
}

func (c *stateCache) enabled() bool { return c.max > 0 }

// reset drops every value (the caller holds mu).
func (c *stateCache) reset() {
	c.cur, c.old, c.bytes, c.valid, c.seq = nil, nil, 0, false, 0
}

func (c *stateCache) get(k []byte) (cacheVal, bool) {
	if v, ok := c.cur[string(k)]; ok {
		return v, true
	}
	if v, ok := c.old[string(k)]; ok {
		delete(c.old, string(k))
		c.put(string(k), v)
		return v, true
	}
	return cacheVal{}, false
}

func (c *stateCache) put(k string, v cacheVal) {
	if c.cur == nil {
		c.cur = make(map[string]cacheVal)
	}
	if prev, ok := c.cur[k]; ok {
		c.bytes -= len(k) + len(prev.v) + cacheEntryOverhead
	} else {
		delete(c.old, k) // shadowed by cur anyway; free it
	}
	c.cur[k] = v
	c.bytes += len(k) + len(v.v) + cacheEntryOverhead
	if c.bytes > c.max/2 {
		c.old, c.cur, c.bytes = c.cur, nil, 0
	}
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
// writes go to rw and are staged for the cache.
type cachedRW struct {
	rw     store.ReadWriter
	c      *stateCache
	staged map[string]cacheVal
}

var _ store.ReadWriter = (*cachedRW)(nil)

func (w *cachedRW) Get(k []byte) ([]byte, error) {
	if !cacheable(k) {
		return w.rw.Get(k)
	}
	v, ok := w.staged[string(k)]
	if !ok {
		v, ok = w.c.get(k)
	}
	if ok {
		w.c.hits.Add(1)
		if !v.ok {
			return nil, store.ErrNotFound
		}
		return bytes.Clone(v.v), nil
	}
	w.c.misses.Add(1)
	got, err := w.rw.Get(k)
	switch {
	case err == nil:
		w.c.put(string(k), cacheVal{v: bytes.Clone(got), ok: true})
	case errors.Is(err, store.ErrNotFound):
		w.c.put(string(k), cacheVal{})
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
		w.stage(k, cacheVal{v: bytes.Clone(v), ok: true})
	}
	return nil
}

func (w *cachedRW) Delete(k []byte) error {
	if err := w.rw.Delete(k); err != nil {
		return err
	}
	if cacheable(k) {
		w.stage(k, cacheVal{})
	}
	return nil
}

func (w *cachedRW) stage(k []byte, v cacheVal) {
	if w.staged == nil {
		w.staged = make(map[string]cacheVal)
	}
	w.staged[string(k)] = v
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
	w := &cachedRW{rw: rw, c: c}
	if err := fn(w); err != nil {
		return err // staged writes dropped: the caller discards the entry's batch
	}
	for k, v := range w.staged { // order does not matter: distinct keys
		c.put(k, v)
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
