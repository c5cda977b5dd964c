package engine

import (
	"context"
	"math"
	"runtime/debug"
	"strings"
	"testing"

	"github.com/aurumcdp/aurum/projections"
	"github.com/aurumcdp/aurum/seal"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// TestMemorySizesFor: the zero limit keeps the fixed sizes of an engine
// without a limit; every limit is split
// without overcommitting it (Pebble outside the Go heap + the Go limit +
// what no runtime counts = the limit), leaves the Go heap room beside its
// caches, and a larger limit never gives a smaller bound.
func TestMemorySizesFor(t *testing.T) {
	fixed := MemorySizesFor(0)
	if fixed != (MemorySizes{StateCache: projections.DefaultCacheBytes, DedupFilter: projections.DefaultDedupFilterBytes,
		KeychainFilter: projections.DefaultKeychainFilterBytes, RowCache: projections.DefaultRowCacheBytes,
		StateBlockCache: StateCacheSize, StateMemTable: 32 << 20, SmallBlockCache: 16 << 20, SmallMemTable: 4 << 20,
		SealKeys: seal.DefaultCacheKeys, SealRawKeys: seal.DefaultCacheRawKeys,
		ReplayGroup: DefaultReplayGroupBytes, FetchAhead: fetchAheadBytes}) {
		t.Fatalf("no limit: %+v", fixed)
	}
	if o := StateStoreOptions(nil); o.CacheSize != StateCacheSize || o.MemTableSize != 32<<20 {
		t.Errorf("StateStoreOptions: cache %d, memtable %d", o.CacheSize, o.MemTableSize)
	}
	if o := keysStoreOptions(nil); o.CacheSize != 16<<20 || o.MemTableSize != 4<<20 {
		t.Errorf("keysStoreOptions: cache %d, memtable %d", o.CacheSize, o.MemTableSize)
	}
	const mib = 1 << 20
	for _, tt := range []struct {
		limit                  int64
		stateCache, blockCache int64 // MiB
		sealKeys               int
	}{
		{1, 16, 32, 4096}, // raised to MinMemoryLimit
		{MinMemoryLimit, 16, 32, 4096},
		{384 * mib, 24, 48, 6144},
		{512 * mib, 32, 64, 8192},
		{2048 * mib, 128, 256, 32768},
		{16384 * mib, 512, 2048, 262144}, // the state cache's cap
		{1 << 40, 512, 1 << 17, 1 << 18},
	} {
		s := MemorySizesFor(tt.limit)
		if s.Limit != max(tt.limit, MinMemoryLimit) || int64(s.StateCache) != tt.stateCache*mib ||
			s.StateBlockCache != tt.blockCache*mib || s.SealKeys != tt.sealKeys {
			t.Errorf("limit %d: %v", tt.limit, s)
		}
	}
	var prev MemorySizes
	for l := int64(MinMemoryLimit); l <= 64<<30; l += l / 4 {
		s := MemorySizesFor(l)
		unaccounted := unaccountedFixed + l/unaccountedShare
		if got := s.OutsideGo() + s.GoLimit + unaccounted; got != l {
			t.Fatalf("limit %d: outside Go %d + Go %d + unaccounted %d = %d", l, s.OutsideGo(), s.GoLimit, unaccounted, got)
		}
		// The Go heap's bounded consumers (state cache, dedup and keychain filters, data
		// keys at ~0.85 KiB and ~100 B, Pebble's memory without cgo) take
		// at most half the Go limit: the GC has room to work.
		inGo := int64(s.StateCache+s.DedupFilter+s.KeychainFilter+s.RowCache) + int64(s.SealKeys)*870 + int64(s.SealRawKeys)*100
		if !pebbleOutsideGo {
			inGo += s.StateBlockCache + 2*int64(s.StateMemTable) + 2*(s.SmallBlockCache+2*int64(s.SmallMemTable))
		}
		if inGo > s.GoLimit/2 {
			t.Errorf("limit %d MiB: Go-heap bounds %d MiB over half the Go limit %d MiB", l>>20, inGo>>20, s.GoLimit>>20)
		}
		// An offline replay adds its group (about 2.5 times its bytes: the
		// batch, its index, the previous one until flushed), the fetch
		// stage (entries and plaintexts) and the log reader's pulls: a
		// fifth of the Go limit is left for the GC's work.
		replay := inGo + int64(s.ReplayGroup)*5/2 + 2*s.FetchAhead + 16<<20
		if replay > s.GoLimit*4/5 {
			t.Errorf("limit %d MiB: an offline replay's Go heap %d MiB over 4/5 of the Go limit %d MiB", l>>20, replay>>20, s.GoLimit>>20)
		}
		// A group's batch stays above Pebble's large-batch threshold (half
		// the memtable), which hands it whole to the flush goroutine.
		if uint64(s.ReplayGroup) <= s.StateMemTable/2 {
			t.Errorf("limit %d MiB: replay group %d MiB not above half the memtable %d MiB", l>>20, s.ReplayGroup>>20, s.StateMemTable>>20)
		}
		if s.StateCache < prev.StateCache || s.StateBlockCache < prev.StateBlockCache || s.StateMemTable < prev.StateMemTable ||
			s.SmallBlockCache < prev.SmallBlockCache || s.DedupFilter < prev.DedupFilter || s.KeychainFilter < prev.KeychainFilter || s.RowCache < prev.RowCache || s.SealKeys < prev.SealKeys ||
			s.SealRawKeys < prev.SealRawKeys || s.GoLimit <= prev.GoLimit || s.ReplayGroup < prev.ReplayGroup || s.FetchAhead < prev.FetchAhead {
			t.Errorf("limit %d: a bound shrank: %v after %v", l, s, prev)
		}
		prev = s
	}
}

// TestMemoryLimitReachesEngine: an engine opened with a memory limit
// sizes its bounds from it and exports them and the Go runtime's limit in
// effect on its registry.
func TestMemoryLimitReachesEngine(t *testing.T) {
	const limit = 300 << 20
	reg := prometheus.NewRegistry()
	e, err := Open(context.Background(), Options{DataDir: t.TempDir(), NATSListen: "127.0.0.1:-1", MemoryLimit: limit, Registry: reg})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	want := MemorySizesFor(limit)
	if got := e.MemorySizes(); got != want || got.Limit != limit {
		t.Fatalf("sizes %v, want %v", got, want)
	}
	defer debug.SetMemoryLimit(debug.SetMemoryLimit(want.GoLimit)) // as aurum serve does
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]float64{}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			name := mf.GetName()
			for _, l := range m.GetLabel() {
				name += "/" + l.GetValue()
			}
			seen[name] = gaugeValue(m)
		}
	}
	for name, v := range map[string]int64{"aurum_memory_bound_bytes/limit": limit, "aurum_memory_bound_bytes/go": want.GoLimit,
		"aurum_memory_bound_bytes/state_cache": int64(want.StateCache), "aurum_memory_bound_bytes/state_block_cache": want.StateBlockCache,
		"aurum_go_memory_limit_bytes": want.GoLimit} {
		if seen[name] != float64(v) {
			t.Errorf("%s = %v, want %d", name, seen[name], v)
		}
	}
	if !strings.Contains(want.String(), "limit 300 MiB") {
		t.Errorf("String: %s", want)
	}
	if _, err := Open(context.Background(), Options{DataDir: t.TempDir(), MemoryLimit: 1 << 20}); err == nil ||
		!strings.Contains(err.Error(), "MemoryLimit") {
		t.Errorf("1 MiB limit: %v", err)
	}
}

func gaugeValue(m *dto.Metric) float64 {
	if g := m.GetGauge(); g != nil {
		return g.GetValue()
	}
	return math.NaN()
}
