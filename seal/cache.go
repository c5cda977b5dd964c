package seal

import (
	"crypto/cipher"
	"encoding/binary"
	"sync"
)

// keyID is a data key id as a map key.
type keyID = [idLen]byte

// cacheEntry is one unwrapped data key. aead is nil for a destroyed key
// (negative entry, so that replaying records of an erased profile does not
// hit the database for every record).
type cacheEntry struct {
	id         keyID
	aead       cipher.AEAD
	prev, next *cacheEntry
}

// keyCache is a bounded, sharded LRU of ready-to-use AEAD instances. Behind
// it, rawCache (rawcache.go) keeps more keys as their 32 raw bytes.
type keyCache struct {
	shards []cacheShard
}

type cacheShard struct {
	mu  sync.Mutex
	m   map[keyID]*cacheEntry
	lru cacheEntry // sentinel: lru.next is the most recently used
	cap int
	// Invariant: len(m) <= cap, and m and the list hold the same entries.
}

const maxCacheShards = 16

func newKeyCache(capacity int) *keyCache {
	n := min(maxCacheShards, capacity)
	c := &keyCache{shards: make([]cacheShard, n)}
	for i := range c.shards {
		s := &c.shards[i]
		s.cap = capacity / n
		if i < capacity%n {
			s.cap++
		}
		s.m = make(map[keyID]*cacheEntry)
		s.lru.next, s.lru.prev = &s.lru, &s.lru
	}
	return c
}

func (c *keyCache) shard(id *keyID) *cacheShard {
	h := binary.LittleEndian.Uint64(id[0:8]) ^ binary.LittleEndian.Uint64(id[8:16])
	h *= 0x9e3779b97f4a7c15
	return &c.shards[(h>>32)%uint64(len(c.shards))]
}

// get returns the entry's AEAD and whether the id is cached. A cached
// destroyed key returns (nil, true).
func (c *keyCache) get(id *keyID) (cipher.AEAD, bool) {
	s := c.shard(id)
	s.mu.Lock()
	e, ok := s.m[*id]
	if !ok {
		s.mu.Unlock()
		return nil, false
	}
	if s.lru.next != e {
		e.unlink()
		s.pushFront(e)
	}
	a := e.aead
	s.mu.Unlock()
	return a, true
}

// put inserts or replaces the entry for id, evicting the least recently used
// entry of its shard when full.
func (c *keyCache) put(id *keyID, aead cipher.AEAD) {
	s := c.shard(id)
	s.mu.Lock()
	defer s.mu.Unlock()
	if e, ok := s.m[*id]; ok {
		e.aead = aead
		e.unlink()
		s.pushFront(e)
		return
	}
	if len(s.m) >= s.cap {
		old := s.lru.prev
		old.unlink()
		delete(s.m, old.id)
	}
	e := &cacheEntry{id: *id, aead: aead}
	s.m[*id] = e
	s.pushFront(e)
}

// len returns the number of cached entries.
func (c *keyCache) len() int {
	n := 0
	for i := range c.shards {
		s := &c.shards[i]
		s.mu.Lock()
		n += len(s.m)
		s.mu.Unlock()
	}
	return n
}

func (s *cacheShard) pushFront(e *cacheEntry) {
	e.prev, e.next = &s.lru, s.lru.next
	s.lru.next.prev = e
	s.lru.next = e
}

func (e *cacheEntry) unlink() {
	e.prev.next, e.next.prev = e.next, e.prev
	e.prev, e.next = nil, nil
}
