package projections

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math/bits"
	"sync/atomic"

	"github.com/aurumcdp/aurum/store"
)

// DefaultDedupFilterBytes is the default size of the dedup filter.
const DefaultDedupFilterBytes = 16 << 20

// DefaultKeychainFilterBytes is the default size of the keychain filter
// (Options.KeychainFilterBytes): 6.7M keys, an identifier or a profile
// each (a person has a node and one key per identifier).
const DefaultKeychainFilterBytes = 8 << 20

// keyFilter is an in-memory blocked Bloom filter over the keys under some
// prefixes of the store the state machine applies to. It answers
// "definitely not in the store" for most keys that are not there, so the
// state machine skips the Pebble look-up of an absent key (a search of the
// batch, the memtables and every level). A "maybe" falls back to the
// store, so a result is the same with or without the filter. Two filters
// exist:
//
//   - the dedup filter (dd/): dedup asks it before looking up a message id,
//     and adds every dd/ key it writes;
//   - the keychain filter (ik/, ip/): Apply's store (keychainFiltered)
//     asks it on every Get of such a key, so the look-ups of new
//     identifiers and of the profile id a new person's event creates
//     (identity.Resolve) read nothing, and adds every such key written.
//
// Invariant: once ready, every key under the filter's prefixes in the
// store is in the filter. It holds because the filter is filled from a
// scan of the store (build) and every key written under them by Apply is
// added. Keys that leave the store (pruneDedup, an erasure, a discarded
// batch) stay in the filter: they only make false positives. When the
// insertions since the last build pass the filter's capacity, it is
// rebuilt from a scan, which drops the keys gone from the store.
//
// A filter is used by the apply goroutine only; its size is fixed (it does
// not grow with the data).
type keyFilter struct {
	name     string   // for errors
	prefixes [][]byte // the key ranges it covers
	blocks   []uint64 // 8 words (one 64-byte cache line) per block
	nblk     uint64   // len(blocks)/8
	ready    bool     // filled from the store: "absent" answers may be trusted
	off      bool     // the store held more keys than the capacity: not used until the next build
	n        int      // insertions since the last build (including the build's)
	limit    int      // rebuild when n exceeds it
	live     int      // keys found by the last build
	builds   int      // number of builds (for tests)
	spared   int      // store look-ups spared (for tests)
	// allocated is len(blocks)*8, for MemoryUse from other goroutines.
	allocated atomic.Int64
}

const (
	dedupFilterProbes  = 7  // bits set per key, all in one 512-bit block
	dedupFilterBitsKey = 10 // bits per key at capacity: about 1 % false positives
)

// newDedupFilter returns a filter of the dd/ keys of about size bytes (nil
// when size <= 0).
func newDedupFilter(size int) *keyFilter { return newKeyFilter("dedup", size, prefixDedup) }

// newKeychainFilter returns a filter of the ik/ and ip/ keys of about size
// bytes (nil when size <= 0).
func newKeychainFilter(size int) *keyFilter {
	return newKeyFilter("keychain", size, prefixIdentKey, prefixIdentProfile)
}

func newKeyFilter(name string, size int, prefixes ...[]byte) *keyFilter {
	if size <= 0 {
		return nil
	}
	nblk := max(uint64(size)/64, 1)
	return &keyFilter{name: name, prefixes: prefixes, nblk: nblk}
}

// covers reports whether key is under one of f's prefixes.
func (f *keyFilter) covers(key []byte) bool {
	for _, p := range f.prefixes {
		if bytes.HasPrefix(key, p) {
			return true
		}
	}
	return false
}

// capacity is the number of keys the filter holds at its target rate.
func (f *keyFilter) capacity() int { return int(f.nblk * 512 / dedupFilterBitsKey) }

// hash maps a key to a block and the bit pattern inside it. The last 16
// bytes of a dd/ or ik/ key are already a hash (SHA-256, keyed); the rest
// (prefix, source or type) is folded in with FNV-1a. Those of an ip/ key are
// a ULID, led by its time: the block's word is mixed (mix64) so that it
// does not depend on the time alone.
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
	h1 := mix64(binary.LittleEndian.Uint64(tail[:8]) ^ s)
	h2 := binary.LittleEndian.Uint64(tail[8:]) ^ bits.RotateLeft64(s*0x9e3779b97f4a7c15, 31)
	return h1, h2
}

// mix64 is the finalizer of SplitMix64: every bit of x moves every bit of
// the result.
func mix64(x uint64) uint64 {
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	return x ^ x>>31
}

func (f *keyFilter) block(h1 uint64) []uint64 {
	hi, _ := bits.Mul64(h1, f.nblk)
	return f.blocks[hi*8 : hi*8+8 : hi*8+8]
}

// add records key.
func (f *keyFilter) add(key []byte) {
	if f.off {
		return
	}
	if f.blocks == nil {
		f.blocks = make([]uint64, f.nblk*8)
		f.allocated.Store(int64(len(f.blocks)) * 8)
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
func (f *keyFilter) mayContain(key []byte) bool {
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

// build refills the filter from every key of r under its prefixes. A store with more
// keys than the capacity turns the filter off (every look-up goes to the
// store) until the next build by Load: the scan stops there, which bounds
// its cost, and a filter that full would spare few look-ups.
func (f *keyFilter) build(r store.Reader) error {
	if f == nil {
		return nil
	}
	f.ready, f.off = false, false
	if f.blocks != nil {
		clear(f.blocks)
	}
	f.n = 0
	capacity := f.capacity()
	for _, p := range f.prefixes {
		err := r.Scan(p, store.PrefixEnd(p), false, func(k, _ []byte) bool {
			f.add(k)
			return f.n <= capacity
		})
		if err != nil {
			return fmt.Errorf("projections: build %s filter: %w", f.name, err)
		}
		if f.n > capacity {
			break
		}
	}
	f.builds++
	if f.n > capacity {
		f.off, f.blocks = true, nil
		f.allocated.Store(0)
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
func (f *keyFilter) ensure(r store.Reader) error {
	if f == nil || f.off || (f.ready && f.n <= f.limit) {
		return nil
	}
	return f.build(r)
}

// keychainFiltered is the store Apply works through: Gets of keychain keys
// (ik/, ip/) that the keychain filter knows are absent answer
// store.ErrNotFound without a look-up, and every keychain key written joins
// the filter. Other keys pass through untouched, so the partitions, which
// read through it at once (applyPartitions) and never read keychain keys,
// never reach the filter.
type keychainFiltered struct {
	store.ReadWriter
	f *keyFilter
}

func (w keychainFiltered) Get(k []byte) ([]byte, error) {
	if w.f.covers(k) && !w.f.mayContain(k) {
		return nil, store.ErrNotFound
	}
	return w.ReadWriter.Get(k)
}

func (w keychainFiltered) Set(k, v []byte) error {
	if w.f.covers(k) {
		w.f.add(k)
	}
	return w.ReadWriter.Set(k, v)
}

// ResetFilters makes the dedup and keychain filters build again from the
// store at the next Apply, and the partitions scan for due timers. Call it, with ResetCache, after writing keys
// under their prefixes other than through Apply and Skip at the same
// applied position (a replay carrying live ranges over); a store changed
// to another position needs Load. Not concurrently with Apply.
func (sm *StateMachine) ResetFilters() {
	sm.forgetTimers() // the partitions' timer bounds likewise
	for _, f := range []*keyFilter{sm.ddf, sm.kcf} {
		if f != nil {
			f.ready, f.off = false, false
		}
	}
}
