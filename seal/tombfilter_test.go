package seal

import (
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"testing"
)

// TestTombFilter checks that the filter has no false negatives (for
// structured ids as the tests use and for hash-like ones) and that its
// false positives stay rare at its size.
func TestTombFilter(t *testing.T) {
	for _, kind := range []string{"structured", "hashed"} {
		mk := func(n int) keyID {
			if kind == "structured" {
				return keyID(id(n))
			}
			var b [8]byte
			binary.BigEndian.PutUint64(b[:], uint64(n))
			h := sha256.Sum256(b[:])
			return keyID(h[:idLen])
		}
		const added, probes = 4_000, 40_000
		f := newTombFilter(added)
		for i := range added {
			k := mk(i)
			f.add(&k)
		}
		for i := range added {
			if k := mk(i); !f.mayHave(&k) {
				t.Fatalf("%s: id %d added but not found", kind, i)
			}
		}
		fp := 0
		for i := added; i < added+probes; i++ {
			if k := mk(i); f.mayHave(&k) {
				fp++
			}
		}
		// 32 bits an id, 4 probes: about 1 in 10,000 expected.
		if fp > probes/1000 {
			t.Errorf("%s: %d false positives in %d", kind, fp, probes)
		}
	}
}

// TestTombstonesSurviveReopen destroys keys (some created, some never
// created), reopens the keyring over the same database (the tombstone
// filter is rebuilt from it) and requires Ensure not to recreate any of
// them, while ids never destroyed are still created.
func TestTombstonesSurviveReopen(t *testing.T) {
	k, db, _ := newTestKeyring(t, nil)
	mustEnsure(t, k, id(1), id(2), id(3))
	for _, n := range []int{1, 3, 50} {
		if err := k.Destroy(id(n)); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := k.DestroyAll([][]byte{id(2), id(60)}); err != nil {
		t.Fatal(err)
	}
	k2, err := NewKeyring(db, testMaster(1), nil)
	if err != nil {
		t.Fatal(err)
	}
	s := k2.NewSealer(0)
	defer s.Close()
	all := [][]byte{id(1), id(2), id(3), id(50), id(60), id(70)}
	if err := s.Ensure(all); err != nil {
		t.Fatal(err)
	}
	if err := k2.Ensure(all); err != nil {
		t.Fatal(err)
	}
	for _, key := range all[:5] {
		if _, err := s.Seal(key, []byte("x")); !errors.Is(err, ErrKeyDestroyed) {
			t.Errorf("Sealer.Seal under destroyed %x after reopen: %v", key, err)
		}
		if _, err := k2.Seal(key, []byte("x")); !errors.Is(err, ErrKeyDestroyed) {
			t.Errorf("Seal under destroyed %x after reopen: %v", key, err)
		}
	}
	if _, err := k2.Seal(id(70), []byte("x")); err != nil {
		t.Errorf("Seal under a new id after reopen: %v", err)
	}
}
