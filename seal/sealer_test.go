package seal

import (
	"bytes"
	"errors"
	"fmt"
	"testing"
)

// TestSealerMatchesKeyring checks that a Sealer's hashes are Keyring.Hash's,
// that its sealed values have Seal's format and open with Keyring.Open, and
// that its errors are Seal's.
func TestSealerMatchesKeyring(t *testing.T) {
	k, _, _ := newTestKeyring(t, nil)
	mustEnsure(t, k, id(1), id(2), id(3))
	if err := k.Destroy(id(3)); err != nil {
		t.Fatal(err)
	}
	s := k.NewSealer(0)
	defer s.Close()

	hashes := []struct{ typ, value string }{
		{"email", "a@example.com"}, {"user_id", "u-1"}, {"", ""}, {"email", ""}, {"", "x"},
		{"phone", string(bytes.Repeat([]byte("9"), 5000))}, {"user_id", "u-1"}, {"a:b", "c"}, {"a", "b:c"},
	}
	var got [][]byte
	for _, h := range hashes {
		got = append(got, s.Hash(h.typ, h.value))
	}
	for i, h := range hashes { // after all calls: earlier results were not overwritten
		if want := k.Hash(h.typ, h.value); !bytes.Equal(got[i], want) {
			t.Errorf("Hash(%q, %.20q) = %x, want %x", h.typ, h.value, got[i], want)
		}
	}

	type sealed struct {
		key, pt, out []byte
	}
	var outs []sealed
	for i := range 700 { // crosses several nonce refills and arena growths
		key := id(1 + i%2)
		if i%7 == 0 {
			key = id(1) // runs of one key, as in a record
		}
		pt := bytes.Repeat([]byte{byte(i)}, i%300)
		out, err := s.Seal(key, pt)
		if err != nil {
			t.Fatalf("Seal %d: %v", i, err)
		}
		if len(out) != len(pt)+sealedExtra || out[0] != version || cap(out) != len(out) {
			t.Fatalf("Seal %d: len %d cap %d version %d, want len %d and cap = len, version %d",
				i, len(out), cap(out), out[0], len(pt)+sealedExtra, version)
		}
		outs = append(outs, sealed{key, pt, out})
	}
	for i, o := range outs {
		pt, err := k.Open(o.key, o.out)
		if err != nil || !bytes.Equal(pt, o.pt) {
			t.Fatalf("Open of sealed %d: %v (plaintext equal: %v)", i, err, bytes.Equal(pt, o.pt))
		}
		if _, err := k.Open(id(1+i%2), o.out); !bytes.Equal(o.key, id(1+i%2)) && !errors.Is(err, ErrCorrupt) {
			t.Fatalf("sealed %d opens under another key: %v", i, err)
		}
	}

	for _, c := range []struct {
		key  []byte
		want error
	}{{id(3), ErrKeyDestroyed}, {id(9), ErrUnknownKey}} {
		if _, err := s.Seal(c.key, []byte("x")); !errors.Is(err, c.want) {
			t.Errorf("Seal under %x: %v, want %v", c.key, err, c.want)
		}
		if _, err := k.Seal(c.key, []byte("x")); !errors.Is(err, c.want) {
			t.Errorf("Keyring.Seal under %x: %v, want %v", c.key, err, c.want)
		}
	}
	if _, err := s.Seal([]byte("short"), []byte("x")); err == nil {
		t.Error("Seal under a 5-byte key id: no error")
	}
	// The cached cipher is the last good one; a bad id does not replace it.
	if out, err := s.Seal(id(2), []byte("y")); err != nil {
		t.Fatal(err)
	} else if pt, err := k.Open(id(2), out); err != nil || string(pt) != "y" {
		t.Fatalf("Open after errors: %q, %v", pt, err)
	}
}

// TestSealerNoncesUnique seals many values with several Sealers (as
// concurrent batches would) and requires every nonce to be distinct and the
// unused buffered nonces to be wiped by Close.
func TestSealerNoncesUnique(t *testing.T) {
	k, _, _ := newTestKeyring(t, nil)
	mustEnsure(t, k, id(1))
	seen := make(map[[nonceLen]byte]string)
	for si := range 4 {
		s := k.NewSealer(64)
		for i := range 3*nonceBatch + 5 {
			out, err := s.Seal(id(1), []byte("v"))
			if err != nil {
				t.Fatal(err)
			}
			n := [nonceLen]byte(out[1 : 1+nonceLen])
			where := fmt.Sprintf("sealer %d value %d", si, i)
			if prev, ok := seen[n]; ok {
				t.Fatalf("nonce %x of %s was used by %s", n, where, prev)
			}
			seen[n] = where
		}
		s.Close()
		if !bytes.Equal(s.nonces[:], make([]byte, len(s.nonces))) || s.next != len(s.nonces) {
			t.Fatalf("sealer %d: Close left buffered nonces", si)
		}
	}
}

// TestSealerEnsure checks Sealer.Ensure against Keyring.Ensure: it creates
// the missing keys (a second keyring over the same database opens what the
// Sealer sealed), keeps existing ones, reports destroyed ones as
// ErrKeyDestroyed on Seal, takes duplicate ids, and serves the batch's keys
// even after the keyring's cache has evicted them (a one-entry cache).
func TestSealerEnsure(t *testing.T) {
	k, db, _ := newTestKeyring(t, &Options{CacheKeys: 1, CacheRawKeys: -1})
	mustEnsure(t, k, id(1), id(2))
	if err := k.Destroy(id(2)); err != nil {
		t.Fatal(err)
	}
	if err := k.Destroy(id(7)); err != nil { // never created: a tombstone alone
		t.Fatal(err)
	}
	s := k.NewSealer(0)
	defer s.Close()
	batch := [][]byte{id(1), id(3), id(2), id(3), id(4), id(1), id(7), id(5)}
	if err := s.Ensure(batch); err != nil {
		t.Fatal(err)
	}
	if err := s.Ensure([][]byte{[]byte("short")}); err == nil {
		t.Error("Ensure of a 5-byte key id: no error")
	}
	// A second keyring over the same database sees every key as the first
	// one does: Ensure persisted the new ones.
	k2, err := NewKeyring(db, testMaster(1), nil)
	if err != nil {
		t.Fatal(err)
	}
	for i, key := range batch {
		out, err := s.Seal(key, []byte(fmt.Sprint("v", i)))
		destroyed := bytes.Equal(key, id(2)) || bytes.Equal(key, id(7))
		if destroyed {
			if !errors.Is(err, ErrKeyDestroyed) {
				t.Errorf("Seal %d under destroyed %x: %v, want ErrKeyDestroyed", i, key, err)
			}
			continue
		}
		if err != nil {
			t.Fatalf("Seal %d: %v", i, err)
		}
		for _, kr := range []*Keyring{k, k2} {
			if pt, err := kr.Open(key, out); err != nil || string(pt) != fmt.Sprint("v", i) {
				t.Fatalf("Open of sealed %d: %q, %v", i, pt, err)
			}
		}
	}
	// A key the batch did not ensure still goes through the keyring.
	if _, err := s.Seal(id(9), []byte("x")); !errors.Is(err, ErrUnknownKey) {
		t.Errorf("Seal under an id never ensured: %v, want ErrUnknownKey", err)
	}
	if _, err := s.Seal(id(1), []byte("x")); err != nil {
		t.Errorf("Seal after another id's error: %v", err)
	}
}

// TestSealerRelease seals with Sealers that return their arenas to the
// keyring (Release), as the ingest edge does after copying the outputs:
// each later Sealer's outputs open to their plaintexts, and the copies
// taken before a Release still open (Release wipes nothing the caller
// kept).
func TestSealerRelease(t *testing.T) {
	k, _, _ := newTestKeyring(t, nil)
	mustEnsure(t, k, id(1))
	type kept struct{ pt, sealed []byte }
	var all []kept
	for round := range 5 {
		s := k.NewSealer(512)
		var outs [][]byte
		for i := range 300 { // more than one arena
			pt := bytes.Repeat([]byte{byte(round), byte(i)}, 1+i%90)
			out, err := s.Seal(id(1), pt)
			if err != nil {
				t.Fatal(err)
			}
			outs = append(outs, out)
			all = append(all, kept{pt, bytes.Clone(out)})
		}
		for i, out := range outs { // before Release: the outputs are intact
			if !bytes.Equal(out, all[len(all)-len(outs)+i].sealed) {
				t.Fatalf("round %d: output %d changed before Release", round, i)
			}
		}
		s.Release()
	}
	for i, c := range all {
		if pt, err := k.Open(id(1), c.sealed); err != nil || !bytes.Equal(pt, c.pt) {
			t.Fatalf("value %d: %v", i, err)
		}
	}
}
