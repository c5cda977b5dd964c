package seal

import (
	"fmt"
	"math/rand/v2"
	"runtime"
	"syscall"
	"testing"
)

// processCPU is this process's CPU time (user + system) in ns: on a shared
// machine it varies far less with other work than wall time.
func processCPU() int64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return ru.Utime.Nano() + ru.Stime.Nano()
}

// BenchmarkSealKeys seals under keys picked at random among 50,000 with the
// key cache at its default bound (most look-ups miss: a keys/ read and an
// unwrap) and at 100,000 (every look-up hits), and reports the heap the
// keyring holds then (the cache, and Pebble's Go-side structures of the
// keys database; its caches are outside the Go heap) and the CPU per Seal:
// the cost of a miss against the memory of a hit.
func BenchmarkSealKeys(b *testing.B) {
	const keys = 50_000
	for _, capacity := range []int{DefaultCacheKeys, 100_000} {
		b.Run(fmt.Sprintf("cache=%d", capacity), func(b *testing.B) {
			ids := make([][]byte, keys) // uniform, like the keyed hashes key ids are
			src := rand.New(rand.NewPCG(3, 4))
			for i := range ids {
				ids[i] = make([]byte, idLen)
				for j := range ids[i] {
					ids[i][j] = byte(src.Uint32())
				}
			}
			var ms0, ms1 runtime.MemStats
			runtime.GC()
			runtime.ReadMemStats(&ms0)
			k, _, _ := newTestKeyring(b, &Options{CacheKeys: capacity})
			for i := 0; i < keys; i += 1000 {
				mustEnsure(b, k, ids[i:i+1000]...)
			}
			for _, x := range ids { // warm: the cache holds what it can
				if _, err := k.Seal(x, []byte("v")); err != nil {
					b.Fatal(err)
				}
			}
			runtime.GC()
			runtime.ReadMemStats(&ms1)
			held := float64(int64(ms1.HeapAlloc)-int64(ms0.HeapAlloc)) / (1 << 20)
			rng := rand.New(rand.NewPCG(1, 2))
			b.ResetTimer()
			cpu0 := processCPU()
			for range b.N {
				if _, err := k.Seal(ids[rng.IntN(keys)], []byte("value")); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(processCPU()-cpu0)/float64(b.N), "cpu-ns/op")
			b.ReportMetric(held, "cache-MiB")
			b.ReportMetric(float64(k.cache.len()), "cached-keys")
		})
	}
}
