package engine

import (
	"fmt"
	"log/slog"
	"runtime/debug"

	"github.com/aurumcdp/aurum/projections"
	"github.com/aurumcdp/aurum/seal"
	"github.com/aurumcdp/aurum/store"
	"github.com/prometheus/client_golang/prometheus"
)

// MinMemoryLimit is the smallest Options.MemoryLimit: below it the fixed
// part of the process (the embedded NATS server's buffers, the log reader's
// pulls, the apply group) leaves the caches nothing to work with.
const MinMemoryLimit = 256 << 20

// MemorySizes are the bounds of everything the engine holds in memory that
// would otherwise grow with the data: caches, filters and Pebble's
// memtables (ARCHITECTURE.md "Memory: what is bounded"). MemorySizesFor
// derives them from a memory limit; the zero limit gives the fixed sizes
// the engine used before it had one.
type MemorySizes struct {
	// Limit is the memory limit the sizes were derived from (bytes; 0:
	// none, the fixed sizes).
	Limit int64
	// GoLimit is the Go runtime's soft memory limit that fits beside the
	// rest (debug.SetMemoryLimit): Limit less what Pebble may hold outside
	// the Go heap and the process's resident memory that no runtime
	// counts: 48 MiB + L/8, measured (bench/RESULTS.md, "Issue #15:
	// memory"): the binary's mapped pages (~47 MiB) and the C
	// allocator's overhead over Pebble's block cache (~50 MiB over the
	// bounds at 384 MiB). 0: none. The engine
	// never sets it (a memory limit is process-wide): the embedding
	// process does (aurum serve, the benchmark's engine process).
	GoLimit int64
	// StateCache bounds the state machine's cache of hot keychain, GCR
	// and audience-state values (projections.Options.CacheBytes); Go heap.
	StateCache int
	// DedupFilter sizes the filter over the dedup keys
	// (projections.Options.DedupFilterBytes); Go heap.
	DedupFilter int
	// KeychainFilter sizes the filter over the keychain's keys
	// (projections.Options.KeychainFilterBytes); Go heap. The same share
	// as DedupFilter.
	KeychainFilter int
	// RowCache bounds the GCR's cache of decoded feature rows
	// (projections.Options.RowCacheBytes); Go heap.
	RowCache int
	// StateBlockCache and StateMemTable configure every state store (the
	// live one, a rebuild's, a replay's, a snapshot's): Pebble's block
	// cache and the size of one memtable (up to two exist while one
	// flushes). Outside the Go heap when built with cgo.
	StateBlockCache int64
	StateMemTable   uint64
	// SmallBlockCache and SmallMemTable configure each of the small
	// stores, keys/ and activation/ (written once per key or reference).
	SmallBlockCache int64
	SmallMemTable   uint64
	// SealKeys and SealRawKeys bound the data-key caches
	// (seal.Options.CacheKeys, CacheRawKeys); Go heap, ~0.85 KiB and
	// ~100 B an entry.
	SealKeys, SealRawKeys int
	// ReplayGroup bounds the batch of an offline replay's group of log
	// entries (ReplayOptions.GroupBytes) and FetchAhead the bytes its fetch
	// stage, and a live rebuild's, reads ahead (replaypipe.go); Go heap. A
	// group costs the Go heap about two and a half times its bytes while
	// the next one is applied: the batch (grown past the bound by its last
	// entry), its index, and the one before it, held by Pebble until its
	// flush.
	ReplayGroup int
	FetchAhead  int64
}

// The shares of a memory limit L (MemorySizesFor). At L = 512 MiB they
// give the fixed sizes of the zero limit but for the state block cache
// (64 MiB, 128 at 1 GiB): a 64 MiB state cache, a 16 MiB dedup filter,
// 8,192 data keys. The block cache is the bound that fills last, with
// the data (about 30 MiB of it at 10k people, all of it from ~100k on),
// so its share decides how much the resident set grows from a small
// data set to a large one at the same limit (bench/RESULTS.md, "Issue
// #15: memory"); a miss is a read from the OS page cache.
const (
	stateBlockShare  = 8   // L/8: the state store's block cache
	stateMemShare    = 32  // L/32: one state memtable (two may exist)
	smallBlockShare  = 64  // L/64: keys/ and activation/ block caches, each
	smallMemShare    = 256 // L/256: their memtables, each (two may exist)
	stateCacheShare  = 16  // L/16: the state cache (L/8 until the keychain filter and the row cache joined the Go heap: at 320 MiB the live heap then sat over the Go limit, bench/RESULTS.md "after the session-10 changes")
	rowCacheShare    = 64  // L/64, at most projections.DefaultRowCacheBytes: the GCR's decoded feature rows
	dedupFilterShare = 32  // L/32: the dedup filter
	unaccountedShare = 8   // L/8 + unaccountedFixed: resident memory no runtime counts
	unaccountedFixed = 48 << 20
	maxStateCache    = 512 << 20 // a larger Go-heap cache costs more GC marking than it saves reads
	replayGroupShare = 20        // GoLimit/20: an offline replay's group (ReplayGroup)
	fetchAheadShare  = 32        // GoLimit/32: the replay's fetch-ahead (FetchAhead)
)

// MemorySizesFor derives the engine's memory bounds from limit, the
// resident memory the whole process may use (bytes). limit 0 gives the
// fixed sizes of an engine without a limit: a 128 MiB state block cache
// with 32 MiB memtables, 16 MiB / 4 MiB for keys/ and activation/, a
// 64 MiB state cache, a 16 MiB dedup filter, seal's default caches and no
// Go limit. Any other limit below MinMemoryLimit is raised to it
// (Options.Validate rejects it first).
func MemorySizesFor(limit int64) MemorySizes {
	if limit == 0 {
		return MemorySizes{
			StateCache:      projections.DefaultCacheBytes,
			DedupFilter:     projections.DefaultDedupFilterBytes,
			KeychainFilter:  projections.DefaultKeychainFilterBytes,
			RowCache:        projections.DefaultRowCacheBytes,
			StateBlockCache: StateCacheSize,
			StateMemTable:   32 << 20,
			SmallBlockCache: 16 << 20,
			SmallMemTable:   4 << 20,
			SealKeys:        seal.DefaultCacheKeys,
			SealRawKeys:     seal.DefaultCacheRawKeys,
			ReplayGroup:     DefaultReplayGroupBytes,
			FetchAhead:      fetchAheadBytes,
		}
	}
	l := max(limit, MinMemoryLimit)
	s := MemorySizes{
		Limit:           l,
		StateBlockCache: l / stateBlockShare,
		StateMemTable:   uint64(clamp(l/stateMemShare, 4<<20, 64<<20)),
		SmallBlockCache: clamp(l/smallBlockShare, 2<<20, 64<<20),
		SmallMemTable:   uint64(clamp(l/smallMemShare, 1<<20, 4<<20)),
		StateCache:      int(clamp(l/stateCacheShare, 8<<20, maxStateCache)),
		DedupFilter:     int(clamp(l/dedupFilterShare, 1<<20, 64<<20)),
		KeychainFilter:  int(clamp(l/dedupFilterShare, 1<<20, 64<<20)),
		RowCache:        int(clamp(l/rowCacheShare, 1<<20, projections.DefaultRowCacheBytes)),
		SealKeys:        int(clamp(l>>16, 1024, 1<<18)),
		SealRawKeys:     int(clamp(l>>13, 8192, 1<<20)),
	}
	s.GoLimit = l - s.OutsideGo() - (unaccountedFixed + l/unaccountedShare)
	// The replay's group and fetch stage: what the Go limit leaves them
	// beside the caches, the log reader's pulls (16 MiB) and some room for
	// the GC. At 24 MiB groups the replay's live heap sat at the Go limit
	// at 320 MiB, and the GC ran all the time (bench/RESULTS.md, "Issue
	// #15 (session 10)"). Up to three quarters of the memtable, so that a
	// group's batch stays above Pebble's large-batch threshold (half of
	// it) and goes to the flush goroutine whole.
	s.ReplayGroup = int(clamp(s.GoLimit/replayGroupShare, 4<<20, max(DefaultReplayGroupBytes, int64(s.StateMemTable)*3/4)))
	s.FetchAhead = clamp(s.GoLimit/fetchAheadShare, 2<<20, fetchAheadBytes)
	return s
}

// OutsideGo is what Pebble may hold outside the Go heap at most (block
// caches and two memtables of the live state store and of each small
// store) when it allocates with cgo; 0 when it does not (its memory is
// then Go heap, under GoLimit). A rebuild or a snapshot opens a second
// state store with the same sizes while it runs.
func (s MemorySizes) OutsideGo() int64 {
	if !pebbleOutsideGo {
		return 0
	}
	return s.StateBlockCache + 2*int64(s.StateMemTable) + 2*(s.SmallBlockCache+2*int64(s.SmallMemTable))
}

// String names each bound, for the log line at start.
func (s MemorySizes) String() string {
	mib := func(v int64) string { return fmt.Sprintf("%d MiB", v>>20) }
	return fmt.Sprintf("limit %s (Go %s), state cache %s, state block cache %s, state memtable %s, keys/activation block caches %s, memtables %s, dedup filter %s, keychain filter %s, row cache %s, data keys %d + %d raw",
		mib(s.Limit), mib(s.GoLimit), mib(int64(s.StateCache)), mib(s.StateBlockCache), mib(int64(s.StateMemTable)),
		mib(s.SmallBlockCache), mib(int64(s.SmallMemTable)), mib(int64(s.DedupFilter)), mib(int64(s.KeychainFilter)), mib(int64(s.RowCache)), s.SealKeys, s.SealRawKeys)
}

// stateStore is the store.Options of every state store, with
// stateStoreTuning.
func (s MemorySizes) stateStore(logger *slog.Logger) *store.Options {
	return &store.Options{CacheSize: s.StateBlockCache, MemTableSize: s.StateMemTable, Logger: logger, Tuning: stateStoreTuning()}
}

// stateStoreTuning is the LSM shape of every state store: L0 is compacted
// into the base level at 16 sublevels instead of Pebble's 4 (writes stop
// at 48, Pebble: 12). Keys are profile ids, so every flushed table
// overlaps the whole base level, and each L0 compaction rewrites it: four
// times fewer, larger ones cut the bytes compactions wrote from 3.5× to
// 1.5× the bytes that came in at 50k people, with 0.89× the CPU per event
// (bench/RESULTS.md, "Issue #15 (session 10): write amplification"). Gets
// see more L0 tables; the bloom filters skip most of them.
func stateStoreTuning() store.Tuning {
	return store.Tuning{L0CompactionThreshold: 16, L0StopWritesThreshold: 48}
}

// smallStore is the store.Options of keys/ and activation/: a data key is
// written once (about 100 bytes) and read on a key-cache miss, so they
// need a small block cache and a small memtable. Pebble's default 32 MB
// memtable would take resident memory in proportion to the keys created
// since the last flush: with one key per identifier, to the people.
func (s MemorySizes) smallStore(logger *slog.Logger) *store.Options {
	return &store.Options{CacheSize: s.SmallBlockCache, MemTableSize: s.SmallMemTable, Logger: logger}
}

// sealOptions are the keyring's cache bounds.
func (s MemorySizes) sealOptions() seal.Options {
	return seal.Options{CacheKeys: s.SealKeys, CacheRawKeys: s.SealRawKeys}
}

func clamp(v, lo, hi int64) int64 { return min(max(v, lo), hi) }

// MemorySizes returns the memory bounds the engine was opened with (of
// Options.MemoryLimit).
func (e *Engine) MemorySizes() MemorySizes { return e.mem }

// bounds names each bound, as the metric aurum_memory_bound_bytes labels it.
func (s MemorySizes) bounds() map[string]int64 {
	return map[string]int64{
		"limit": s.Limit, "go": s.GoLimit, "state_cache": int64(s.StateCache), "dedup_filter": int64(s.DedupFilter),
		"keychain_filter": int64(s.KeychainFilter), "row_cache": int64(s.RowCache),
		"state_block_cache": s.StateBlockCache, "state_memtable": int64(s.StateMemTable),
		"small_block_cache": s.SmallBlockCache, "small_memtable": int64(s.SmallMemTable),
	}
}

// registerMemoryMetrics exports the bounds (aurum_memory_bound_bytes) and
// the Go runtime's soft limit in effect (aurum_go_memory_limit_bytes; the
// largest int64 when none is set), read at each scrape.
func registerMemoryMetrics(reg prometheus.Registerer, s MemorySizes) {
	bound := prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "aurum_memory_bound_bytes",
		Help: "The engine's memory bounds derived from --memory-limit (limit; go: the Go runtime's soft limit it leaves; the caches, filters and memtables sized from it)."}, []string{"bound"})
	for name, v := range s.bounds() {
		bound.WithLabelValues(name).Set(float64(v))
	}
	reg.MustRegister(bound, prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "aurum_go_memory_limit_bytes",
		Help: "The Go runtime's soft memory limit in effect in this process (debug.SetMemoryLimit, GOMEMLIMIT)."},
		func() float64 { return float64(debug.SetMemoryLimit(-1)) }))
}
