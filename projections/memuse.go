package projections

// MemoryUse is what the state machine's bounded consumers hold in memory,
// each by the measure of its bound in Options: the engine's memory budget
// test (engine.MemorySizesFor) compares them with the bounds while a
// workload runs, and with the Go heap they add up to.
type MemoryUse struct {
	// StateCache: the capacity of both generations' data buffers and
	// their index entries (cacheIndexBytes each), against CacheBytes.
	StateCache int
	// DedupFilter and KeychainFilter: the filter's blocks once allocated
	// (0 before the first key and while the filter is off), against
	// DedupFilterBytes and KeychainFilterBytes.
	DedupFilter, KeychainFilter int
	// RowCache: the GCR's cached feature rows as the row cache counts
	// them (gcr.Projection.RowCacheUse), against RowCacheBytes.
	RowCache int
}

// MemoryUse returns what the bounded consumers hold now. Safe for
// concurrent use with Apply: it waits for the entry being applied.
func (sm *StateMachine) MemoryUse() MemoryUse {
	return MemoryUse{
		StateCache:     sm.cache.memoryUse(),
		DedupFilter:    sm.ddf.memoryUse(),
		KeychainFilter: sm.kcf.memoryUse(),
		RowCache:       sm.gcr.RowCacheUse(),
	}
}

// memoryUse is the capacity of the generations' data and their index
// entries: the bytes the cache holds, where size() counts the bytes used.
func (c *stateCache) memoryUse() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return cap(c.cur.data) + cap(c.old.data) + (len(c.cur.idx)+len(c.old.idx))*cacheIndexBytes
}

// memoryUse is the size of f's blocks (0 for a nil filter).
func (f *keyFilter) memoryUse() int {
	if f == nil {
		return 0
	}
	return int(f.allocated.Load())
}
