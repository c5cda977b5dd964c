package projections

import (
	"encoding/binary"
	"fmt"
	"math/bits"

	"github.com/aurumcdp/aurum/store"
)

// DefaultDedupFilterBytes is the default size of the dedup filter.
const DefaultDedupFilterBytes = 16 << 20

// dedupFilter is an in-memory blocked Bloom filter over the dedup keys
// (dd/...) of the store the state machine applies to. It answers "definitely
// not in the store" for most new message ids, so dedup skips the Pebble
// look-up of an absent key (which reads blocks on the bottom level, where
// Pebble's Get consults no Bloom filter). A "maybe" falls back to the store,
// so the result of dedup is the same with or without the filter.
//
// Invariant: once ready, every dd/ key of the store is in the filter. It
// holds because the filter is filled from a scan of the store (build) and
// dedup adds every key it writes. Keys that leave the store (pruneDedup,
// a discarded batch) stay in the filter: they only make false positives.
// When the insertions since the last build pass the filter's capacity, it
// is rebuilt from a scan, which drops the keys gone from the store.
//
// A filter is used by the apply goroutine only; its size is fixed (it does
// not grow with the data).
type dedupFilter struct {
	blocks []uint64 // 8 words (one 64-byte cache line) per block
	nblk   uint64   // len(blocks)/8
	ready  bool     // filled from the store: "absent" answers may be trusted
	off    bool     // the store held more keys than the capacity: not used until the next build
	n      int      // insertions since the last build (including the build's)
	limit  int      // rebuild when n exceeds it
	live   int      // keys found by the last build
	builds int      // number of builds (for tests)
	spared int      // store look-ups spared (for tests)
}

const (
	dedupFilterProbes  = 7  // bits set per key, all in one 512-bit block
	dedupFilterBitsKey = 10 // bits per key at capacity: about 1 % false positives
)

// newDedupFilter returns a filter of about size bytes (nil when size <= 0).
func newDedupFilter(size int) *dedupFilter {
	if size <= 0 {
		return nil
	}
	nblk := max(uint64(size)/64, 1)
	return &dedupFilter{nblk: nblk}
}

// capacity is the number of keys the filter holds at its target rate.
func (f *dedupFilter) capacity() int { return int(f.nblk * 512 / dedupFilterBitsKey) }

// hash maps a dd/ key to a block and the bit pattern inside it. The last 16
// bytes of the key are already a SHA-256 prefix; the rest (prefix, source)
// is folded in with FNV-1a.
func dedupFilterHash(key []byte) (uint64, uint64) {
	var tail [16]byte
	head := key
	if len(key) >= 16 {
		copy(tail[:], key[len(key)-16:])
		head = key[:len(key)-16]
	} else {
		copy(tail[:], key)
		head = nil
	}
	s := uint64(14695981039346656037)
	for _, c := range head {
		s ^= uint64(c)
		s *= 1099511628211
	}
	h1 := binary.LittleEndian.Uint64(tail[:8]) ^ s
	h2 := binary.LittleEndian.Uint64(tail[8:]) ^ bits.RotateLeft64(s*0x9e3779b97f4a7c15, 31)
	return h1, h2
}

func (f *dedupFilter) block(h1 uint64) []uint64 {
	hi, _ := bits.Mul64(h1, f.nblk)
	return f.blocks[hi*8 : hi*8+8 : hi*8+8]
}

// add records key.
func (f *dedupFilter) add(key []byte) {
	if f.off {
		return
	}
	if f.blocks == nil {
		f.blocks = make([]uint64, f.nblk*8)
	}
	h1, h2 := dedupFilterHash(key)
	b := f.block(h1)
	for range dedupFilterProbes {
		b[(h2>>6)&7] |= 1 << (h2 & 63)
		h2 >>= 9
	}
	f.n++
}

// mayContain reports whether key may be in the store: false only when the
// filter is ready and key is certainly absent.
func (f *dedupFilter) mayContain(key []byte) bool {
	if f == nil || !f.ready {
		return true
	}
	if f.blocks == nil {
		f.spared++
		return false // ready and empty
	}
	h1, h2 := dedupFilterHash(key)
	b := f.block(h1)
	for range dedupFilterProbes {
		if b[(h2>>6)&7]&(1<<(h2&63)) == 0 {
			f.spared++
			return false
		}
		h2 >>= 9
	}
	return true
}

// build refills the filter from every dd/ key of r. A store with more
// keys than the capacity turns the filter off (every look-up goes to the
// store) until the next build by Load: the scan stops there, which bounds
// its cost, and a filter that full would spare few look-ups.
func (f *dedupFilter) build(r store.Reader) error {
	if f == nil {
		return nil
	}
	f.ready, f.off = false, false
	if f.blocks != nil {
		clear(f.blocks)
	}
	f.n = 0
	capacity := f.capacity()
	err := r.Scan(prefixDedup, store.PrefixEnd(prefixDedup), false, func(k, _ []byte) bool {
		f.add(k)
		return f.n <= capacity
	})
	if err != nil {
		return fmt.Errorf("projections: build dedup filter: %w", err)
	}
	f.builds++
	if f.n > capacity {
		f.off, f.blocks = true, nil
		return nil
	}
	f.live = f.n
	// Rebuild after as many insertions as the store held keys (at least
	// the capacity): at most one scanned key per insertion, and at most
	// twice the capacity in the filter (about 14 % false positives).
	f.limit = max(capacity, 2*f.live)
	f.ready = true
	return nil
}

// ensure makes the filter ready on r: it builds it when it was never built
// (a state machine that was not Loaded) or when it is past its limit.
func (f *dedupFilter) ensure(r store.Reader) error {
	if f == nil || f.off || (f.ready && f.n <= f.limit) {
		return nil
	}
	return f.build(r)
}
