package gcr

import (
	"hash/maphash"
	"sync"

	"github.com/aurumcdp/aurum/projections/features"
)

// DefaultRowCacheBytes is the default bound of the row cache
// (Options.RowCacheBytes).
const DefaultRowCacheBytes = 8 << 20

// rowCache keeps the decoded feature rows (features.Features) that Txn.Flush
// wrote, each with the sum (rowSum) of the encoding it wrote, so that the
// next Txn to load the profile takes the row instead of decoding it again
// (issue #12: the decode was a third of the feature upkeep). It is a memo
// of features.Decode: a row is taken only when the encoding the Txn read
// from the store has the length and the sum of the one the row was written
// with, that is (but with probability 2^-128, rowSum) equals it byte for
// byte, and Decode of those bytes gives an equal row. So it does not go
// stale: a write that did not commit (a failed entry's discarded batch), a
// restore, a rebuild or a write by another path leaves store bytes that
// differ from those the row was written with, and the row is decoded.
//
// Ownership moves: take removes the entry (whether it matches or not) and
// hands the row to the Txn, which changes it; Flush puts it back with its
// new encoding. A row is thus held by one Txn or by the cache, never both.
// take on a profile's load also removes the row of a profile that is
// about to be dropped or erased: an erased person's row does not stay in
// memory (erasure.go loads the profile through a Txn to drop it).
//
// Only Txn.load and Txn.Flush use it; Get, EachProfile and the views decode
// their own copy. The shards are the partitions (a partition's Txns run one
// at a time; the mutex makes concurrent partitions and tests safe).
//
// Bound: per shard, two generations of at most max/2 bytes each (a row
// counts its encoding's length times rowCost, an estimate of the decoded
// row's memory), as the state cache does (projections/cache.go): a put
// that would overflow the current generation makes it the old one,
// dropping the old one.
type rowCache struct {
	shards []rowShard
	max    int // bytes per shard; <= 0: disabled
	seeds  [2]maphash.Seed
}

type rowShard struct {
	mu           sync.Mutex
	cur, old     map[string]cachedRow
	bytes        int // size of cur
	hits, misses int // takes that found the row with the encoding, and those that did not
}

type cachedRow struct {
	sum rowSum // of the encoding f was written with
	n   int    // its length
	f   *features.Features
}

// rowSum identifies an encoding: two 64-bit hashes of it under the cache's
// two random seeds (maphash). Comparing sums instead of the bytes spares
// keeping a copy of every encoding and reading it back from memory that
// has gone cold since the put (issue #12: that compare and copy were 4 %
// of the apply's CPU). Two encodings that differ have equal sums with
// probability about 2^-128 per take (two independent 64-bit hashes),
// whatever their contents: the seeds are drawn per cache and never leave
// the process, so inputs cannot be chosen to collide.
type rowSum [2]uint64

// rowCost estimates the memory a cached row holds per byte of its
// encoding: the decoded scores (a 40-byte Keyed and its 16-byte key text
// per ~28 encoded bytes); rowOverhead the map entry and the Features.
const (
	rowCost     = 2
	rowOverhead = 128
)

func newRowCache(maxBytes, shards int) *rowCache {
	c := &rowCache{max: maxBytes / max(shards, 1), seeds: [2]maphash.Seed{maphash.MakeSeed(), maphash.MakeSeed()}}
	if c.max > 0 {
		c.shards = make([]rowShard, shards)
	}
	return c
}

// take returns the cached row of profile in shard if its encoding is enc,
// else nil; either way the entry leaves the cache.
func (c *rowCache) take(shard int, profile, enc []byte) *features.Features {
	if c.max <= 0 {
		return nil
	}
	sum := c.sum(enc)
	s := &c.shards[shard]
	s.mu.Lock()
	defer s.mu.Unlock()
	r, ok := s.cur[string(profile)]
	if ok {
		delete(s.cur, string(profile))
		s.bytes -= r.size(profile)
	} else if r, ok = s.old[string(profile)]; ok {
		delete(s.old, string(profile))
	}
	if !ok || r.n != len(enc) || r.sum != sum {
		s.misses++
		return nil
	}
	s.hits++
	return r.f
}

// put caches f, written with encoding enc, for profile in shard. The Txn
// gives f up: it must not change it afterwards.
func (c *rowCache) put(shard int, profile []byte, enc []byte, f *features.Features) {
	if c.max <= 0 || f == nil || len(enc) == 0 {
		return
	}
	s := &c.shards[shard]
	s.mu.Lock()
	defer s.mu.Unlock()
	r := cachedRow{sum: c.sum(enc), n: len(enc), f: f}
	if prev, ok := s.cur[string(profile)]; ok {
		delete(s.cur, string(profile))
		s.bytes -= prev.size(profile)
	} else {
		delete(s.old, string(profile))
	}
	n := r.size(profile)
	if n > c.max/2 {
		return // larger than a generation
	}
	if s.bytes+n > c.max/2 {
		s.old, s.cur, s.bytes = s.cur, nil, 0
	}
	if s.cur == nil {
		s.cur = make(map[string]cachedRow)
	}
	s.cur[string(profile)] = r
	s.bytes += n
}

// drop removes the cached row of profile in shard, if any.
func (c *rowCache) drop(shard int, profile []byte) {
	if c.max <= 0 {
		return
	}
	s := &c.shards[shard]
	s.mu.Lock()
	defer s.mu.Unlock()
	if r, ok := s.cur[string(profile)]; ok {
		delete(s.cur, string(profile))
		s.bytes -= r.size(profile)
	}
	delete(s.old, string(profile))
}

func (r cachedRow) size(profile []byte) int {
	return len(profile) + rowCost*r.n + rowOverhead
}

// sum is enc's rowSum.
func (c *rowCache) sum(enc []byte) rowSum {
	return rowSum{maphash.Bytes(c.seeds[0], enc), maphash.Bytes(c.seeds[1], enc)}
}

type rowStats struct{ hits, misses int }

// stats sums the shards' counts (for tests).
func (c *rowCache) stats() rowStats {
	var st rowStats
	for i := range c.shards {
		s := &c.shards[i]
		s.mu.Lock()
		st.hits += s.hits
		st.misses += s.misses
		s.mu.Unlock()
	}
	return st
}

// use is the bytes of both generations of every shard, as put counts
// them (size).
func (c *rowCache) use() int {
	n := 0
	for i := range c.shards {
		s := &c.shards[i]
		s.mu.Lock()
		n += s.bytes
		for p, r := range s.old {
			n += r.size([]byte(p))
		}
		s.mu.Unlock()
	}
	return n
}

// has reports whether the cache holds a row of profile (for tests).
func (c *rowCache) has(shard int, profile []byte) bool {
	if c.max <= 0 {
		return false
	}
	s := &c.shards[shard]
	s.mu.Lock()
	defer s.mu.Unlock()
	_, a := s.cur[string(profile)]
	_, b := s.old[string(profile)]
	return a || b
}

// len is the number of cached rows (for tests).
func (c *rowCache) len() int {
	n := 0
	for i := range c.shards {
		s := &c.shards[i]
		s.mu.Lock()
		n += len(s.cur) + len(s.old)
		s.mu.Unlock()
	}
	return n
}
