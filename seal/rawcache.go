package seal

import "sync"

// rawCache is the second level of the key cache: a bounded map of unwrapped
// data keys (32 bytes each, ~100 bytes an entry with the map) behind the LRU
// of AEADs, which costs ~0.85 KiB an entry. A miss of the LRU that hits here
// builds the AEAD (~1 µs) instead of reading and unwrapping the wrapped key
// from the keys database (~4–5 µs under load). The raw key is no more secret
// than the AEAD's key schedule, which holds it. Destroyed keys are removed
// (and their bytes wiped) under Keyring.loadMu, like the LRU's entries.
// Eviction is first in, first out.
type rawCache struct {
	mu   sync.Mutex
	m    map[keyID]*[dataKeyLen]byte
	ring []keyID // insertion order; ring[pos] is the next to evict when full
	pos  int
	// Invariant: len(m) <= len(ring) == capacity; every key of m is in ring.
}

func newRawCache(capacity int) *rawCache {
	return &rawCache{m: make(map[keyID]*[dataKeyLen]byte, min(capacity, 1024)), ring: make([]keyID, 0, capacity)}
}

// get copies the key of id into dst and reports whether it was cached.
func (c *rawCache) get(id *keyID, dst *[dataKeyLen]byte) bool {
	if c == nil {
		return false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	k, ok := c.m[*id]
	if ok {
		*dst = *k
	}
	return ok
}

// put caches a copy of dk under id.
func (c *rawCache) put(id *keyID, dk []byte) {
	if c == nil || len(dk) != dataKeyLen {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if k, ok := c.m[*id]; ok {
		copy(k[:], dk)
		return
	}
	if len(c.ring) < cap(c.ring) {
		c.ring = append(c.ring, *id)
	} else {
		old := c.ring[c.pos]
		if k, ok := c.m[old]; ok {
			clear(k[:])
			delete(c.m, old)
		}
		c.ring[c.pos] = *id
		c.pos = (c.pos + 1) % len(c.ring)
	}
	k := new([dataKeyLen]byte)
	copy(k[:], dk)
	c.m[*id] = k
}

// remove wipes and forgets the key of id. Its ring slot stays until reused.
func (c *rawCache) remove(id *keyID) {
	if c == nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if k, ok := c.m[*id]; ok {
		clear(k[:])
		delete(c.m, *id)
	}
}
