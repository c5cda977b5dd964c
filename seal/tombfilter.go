package seal

import (
	"encoding/binary"
	"math/bits"
	"sync/atomic"
)

// tombFilter is a Bloom filter over the ids that have a tombstone (dx/) in
// the keys database: a look-up of an id without a wrapped key reads the
// tombstone only when the filter may hold the id. Every new key (Ensure)
// used to cost two point reads that both missed; it now costs one.
//
// Safety rests on one rule: an id is added before its tombstone is
// committed, at every place that writes one, so a tombstone the database
// holds is always in the filter (a false positive only costs the read). It
// is built from the database when the Keyring opens, sized for the
// tombstones there, and only grows: past its size its false positives
// rise, and its answers stay safe.
type tombFilter struct {
	words []atomic.Uint64
	mask  uint64 // bits in the filter - 1 (a power of two)
}

// tombProbes is the number of bits set per id.
const tombProbes = 4

// minTombBits is the smallest filter (128 KiB): about 2 in a million false
// positives at 10,000 tombstones.
const minTombBits = 1 << 20

func newTombFilter(tombstones int) *tombFilter {
	n := max(minTombBits, 32*tombstones)
	n = 1 << bits.Len(uint(n-1)) // a power of two
	return &tombFilter{words: make([]atomic.Uint64, n/64), mask: uint64(n - 1)}
}

// probe returns the i-th bit position of id. Ids are usually keyed hashes
// (uniform), but any 16 bytes are accepted: they are mixed first.
func (f *tombFilter) probes(id *keyID) (h1, h2 uint64) {
	a := binary.LittleEndian.Uint64(id[0:8])
	b := binary.LittleEndian.Uint64(id[8:16])
	h1 = (a ^ bits.RotateLeft64(b, 31)) * 0x9e3779b97f4a7c15
	h2 = (b ^ bits.RotateLeft64(a, 17)) * 0xc2b2ae3d27d4eb4f
	return h1 ^ h1>>29, h2 ^ h2>>32 | 1
}

// add records that id has (or is about to have) a tombstone.
func (f *tombFilter) add(id *keyID) {
	h1, h2 := f.probes(id)
	for i := range uint64(tombProbes) {
		p := (h1 + i*h2) & f.mask
		f.words[p/64].Or(1 << (p % 64))
	}
}

// mayHave reports whether id may have a tombstone (false: it has none).
func (f *tombFilter) mayHave(id *keyID) bool {
	h1, h2 := f.probes(id)
	for i := range uint64(tombProbes) {
		p := (h1 + i*h2) & f.mask
		if f.words[p/64].Load()&(1<<(p%64)) == 0 {
			return false
		}
	}
	return true
}
