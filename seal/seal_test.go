package seal

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/aurumcdp/aurum/store"
)

func testMaster(b byte) []byte { return bytes.Repeat([]byte{b}, MasterKeySize) }

func openKeysDB(t testing.TB, dir string) *store.DB {
	t.Helper()
	db, err := store.Open(dir, &store.Options{CacheSize: 1 << 20, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	return db
}

// newTestKeyring opens a keyring in a fresh directory; the DB is closed at
// the end of the test.
func newTestKeyring(t testing.TB, opts *Options) (*Keyring, *store.DB, string) {
	t.Helper()
	dir := t.TempDir()
	db := openKeysDB(t, dir)
	t.Cleanup(func() { db.Close() })
	k, err := NewKeyring(db, testMaster(1), opts)
	if err != nil {
		t.Fatal(err)
	}
	return k, db, dir
}

func id(n int) []byte {
	b := make([]byte, idLen)
	binary.BigEndian.PutUint64(b[8:], uint64(n))
	b[0] = 0x01
	return b
}

func mustEnsure(t testing.TB, k *Keyring, ids ...[]byte) {
	t.Helper()
	if err := k.Ensure(ids); err != nil {
		t.Fatal(err)
	}
}

func TestSealOpenRoundTrip(t *testing.T) {
	k, _, _ := newTestKeyring(t, nil)
	mustEnsure(t, k, id(1), id(2))
	for _, p := range [][]byte{nil, {}, []byte("a"), []byte("alice@example.com"), bytes.Repeat([]byte{0xab}, 10000)} {
		s, err := k.Seal(id(1), p)
		if err != nil {
			t.Fatal(err)
		}
		if len(s) != len(p)+sealedExtra || s[0] != version {
			t.Fatalf("sealed length %d (version %d), want %d", len(s), s[0], len(p)+sealedExtra)
		}
		if len(p) >= 4 && bytes.Contains(s, p) {
			t.Fatal("sealed output contains the plaintext")
		}
		s2, _ := k.Seal(id(1), p)
		if bytes.Equal(s, s2) {
			t.Fatal("two seals of the same plaintext are identical (nonce reuse)")
		}
		got, err := k.Open(id(1), s)
		if err != nil || !bytes.Equal(got, p) {
			t.Fatalf("Open = %q, %v; want %q", got, err, p)
		}
		// Another existing key cannot open it.
		if _, err := k.Open(id(2), s); !errors.Is(err, ErrCorrupt) {
			t.Fatalf("Open under another key: %v, want ErrCorrupt", err)
		}
	}
}

func TestWrongKeyID(t *testing.T) {
	k, _, _ := newTestKeyring(t, nil)
	mustEnsure(t, k, id(1))
	s, err := k.Seal(id(1), []byte("secret"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := k.Open(id(99), s); !errors.Is(err, ErrUnknownKey) {
		t.Fatalf("Open with never-created key: %v, want ErrUnknownKey", err)
	}
	if _, err := k.Seal(id(99), []byte("x")); !errors.Is(err, ErrUnknownKey) {
		t.Fatalf("Seal with never-created key: %v, want ErrUnknownKey", err)
	}
	for _, bad := range [][]byte{nil, make([]byte, 15), make([]byte, 17)} {
		if _, err := k.Open(bad, s); err == nil {
			t.Fatalf("Open with %d-byte key id succeeded", len(bad))
		}
		if err := k.Ensure([][]byte{bad}); err == nil {
			t.Fatalf("Ensure of %d-byte key id succeeded", len(bad))
		}
	}
}

func TestTamper(t *testing.T) {
	k, _, _ := newTestKeyring(t, nil)
	mustEnsure(t, k, id(1))
	s, err := k.Seal(id(1), []byte("some personal data"))
	if err != nil {
		t.Fatal(err)
	}
	for i := range s {
		for _, bit := range []byte{0x01, 0x80} {
			c := append([]byte(nil), s...)
			c[i] ^= bit
			if _, err := k.Open(id(1), c); !errors.Is(err, ErrCorrupt) {
				t.Fatalf("flip bit %#x of byte %d: %v, want ErrCorrupt", bit, i, err)
			}
		}
	}
	for _, n := range []int{0, 1, sealedExtra - 1, len(s) - 1} {
		if _, err := k.Open(id(1), s[:n]); !errors.Is(err, ErrCorrupt) {
			t.Fatalf("truncated to %d: %v, want ErrCorrupt", n, err)
		}
	}
	if _, err := k.Open(id(1), append(append([]byte(nil), s...), 0)); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("extended: %v, want ErrCorrupt", err)
	}
}

func TestDestroy(t *testing.T) {
	dir := t.TempDir()
	db := openKeysDB(t, dir)
	k, err := NewKeyring(db, testMaster(1), nil)
	if err != nil {
		t.Fatal(err)
	}
	mustEnsure(t, k, id(1), id(2))
	s1, _ := k.Seal(id(1), []byte("erase me"))
	s2, _ := k.Seal(id(2), []byte("keep me"))
	if err := k.Destroy(id(1)); err != nil {
		t.Fatal(err)
	}
	check := func(k *Keyring) {
		t.Helper()
		if _, err := k.Open(id(1), s1); !errors.Is(err, ErrKeyDestroyed) {
			t.Fatalf("Open destroyed: %v, want ErrKeyDestroyed", err)
		}
		if _, err := k.Seal(id(1), []byte("new data")); !errors.Is(err, ErrKeyDestroyed) {
			t.Fatalf("Seal destroyed: %v, want ErrKeyDestroyed", err)
		}
		// Ensure does not recreate it.
		mustEnsure(t, k, id(1))
		if _, err := k.Seal(id(1), []byte("new data")); !errors.Is(err, ErrKeyDestroyed) {
			t.Fatalf("Seal after Ensure of destroyed key: %v, want ErrKeyDestroyed", err)
		}
		if p, err := k.Open(id(2), s2); err != nil || string(p) != "keep me" {
			t.Fatalf("other key: %q, %v", p, err)
		}
	}
	check(k)
	// Destroying a never-created key prevents its creation.
	if err := k.Destroy(id(3)); err != nil {
		t.Fatal(err)
	}
	mustEnsure(t, k, id(3))
	if _, err := k.Seal(id(3), nil); !errors.Is(err, ErrKeyDestroyed) {
		t.Fatalf("Seal under pre-destroyed key: %v", err)
	}
	// Destroy is idempotent.
	if err := k.Destroy(id(1)); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}

	// Survives reopen, with a cold cache.
	db = openKeysDB(t, dir)
	defer db.Close()
	k, err = NewKeyring(db, testMaster(1), nil)
	if err != nil {
		t.Fatal(err)
	}
	check(k)
	if _, err := db.Get(dbKey(prefixKey, (*keyID)(id(1)))); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("wrapped key still readable after destroy: %v", err)
	}
}

func TestWrongMasterKey(t *testing.T) {
	dir := t.TempDir()
	db := openKeysDB(t, dir)
	defer db.Close()
	k, err := NewKeyring(db, testMaster(1), nil)
	if err != nil {
		t.Fatal(err)
	}
	mustEnsure(t, k, id(1))
	_, err = NewKeyring(db, testMaster(2), nil)
	if !errors.Is(err, ErrMasterKeyMismatch) || err.Error() != "seal: master key does not match this data directory" {
		t.Fatalf("wrong master: %v", err)
	}
	if _, err := NewKeyring(db, testMaster(1), nil); err != nil {
		t.Fatalf("right master after a wrong one: %v", err)
	}
	if _, err := NewKeyring(db, make([]byte, 31), nil); err == nil {
		t.Fatal("31-byte master key accepted")
	}
}

func TestMissingCheckValue(t *testing.T) {
	dir := t.TempDir()
	db := openKeysDB(t, dir)
	defer db.Close()
	k, err := NewKeyring(db, testMaster(1), nil)
	if err != nil {
		t.Fatal(err)
	}
	mustEnsure(t, k, id(1))
	b := db.NewBatch()
	b.Delete(keyCheck)
	if err := db.Commit(b, false); err != nil {
		t.Fatal(err)
	}
	b.Close()
	if _, err := NewKeyring(db, testMaster(2), nil); err == nil || !strings.Contains(err.Error(), "no master key check value") {
		t.Fatalf("keys without check value: %v", err)
	}
}

func TestEnsureIdempotent(t *testing.T) {
	dir := t.TempDir()
	db := openKeysDB(t, dir)
	k, err := NewKeyring(db, testMaster(1), nil)
	if err != nil {
		t.Fatal(err)
	}
	mustEnsure(t, k, id(1), id(1), id(2)) // duplicates in one call
	w1, err := db.Get(dbKey(prefixKey, (*keyID)(id(1))))
	if err != nil {
		t.Fatal(err)
	}
	s, _ := k.Seal(id(1), []byte("v"))
	mustEnsure(t, k, id(1), id(2), id(3))
	// A cold keyring on the same DB must not recreate existing keys either.
	k2, err := NewKeyring(db, testMaster(1), nil)
	if err != nil {
		t.Fatal(err)
	}
	mustEnsure(t, k2, id(1), id(2), id(3))
	w2, _ := db.Get(dbKey(prefixKey, (*keyID)(id(1))))
	if !bytes.Equal(w1, w2) {
		t.Fatal("Ensure rewrote an existing key")
	}
	if p, err := k2.Open(id(1), s); err != nil || string(p) != "v" {
		t.Fatalf("Open on cold keyring: %q, %v", p, err)
	}
	n := 0
	db.Scan(prefixKey, store.PrefixEnd(prefixKey), false, func(_, _ []byte) bool { n++; return true })
	if n != 3 {
		t.Fatalf("%d keys stored, want 3", n)
	}
	db.Close()
}

// TestEnsureConcurrent runs Ensure of overlapping ids from many goroutines,
// each sealing under every id; a cold keyring must open every value, which
// holds only if each id got exactly one key.
func TestEnsureConcurrent(t *testing.T) {
	k, db, _ := newTestKeyring(t, nil)
	const workers, ids = 8, 20
	type sealed struct {
		id  []byte
		val []byte
		p   string
	}
	var mu sync.Mutex
	var all []sealed
	var wg sync.WaitGroup
	errc := make(chan error, workers)
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < ids; i++ {
				kid := id((i + w) % ids)
				p := fmt.Sprintf("w%d-i%d", w, i)
				var s []byte
				var err error
				if w%2 == 0 { // half the workers through a Sealer, as the ingest edge
					sl := k.NewSealer(0)
					if err = sl.Ensure([][]byte{kid, id((i + 7) % ids)}); err == nil {
						s, err = sl.Seal(kid, []byte(p))
						s = bytes.Clone(s)
					}
					sl.Close()
				} else {
					if err := k.Ensure([][]byte{kid, id((i + 7) % ids)}); err != nil {
						errc <- err
						return
					}
					s, err = k.Seal(kid, []byte(p))
				}
				if err != nil {
					errc <- err
					return
				}
				mu.Lock()
				all = append(all, sealed{kid, s, p})
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	close(errc)
	for err := range errc {
		t.Fatal(err)
	}
	cold, err := NewKeyring(db, testMaster(1), nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range all {
		if p, err := cold.Open(s.id, s.val); err != nil || string(p) != s.p {
			t.Fatalf("Open %x: %q, %v", s.id, p, err)
		}
	}
}

// TestEnsureDestroyRace creates keys with concurrent Ensure calls (which
// write them outside writeMu) while other goroutines destroy the same ids:
// once Destroy has returned, the id stays destroyed (a creation in flight
// is not written after the tombstone), here and in a cold keyring, and an
// id created but never destroyed opens.
func TestEnsureDestroyRace(t *testing.T) {
	k, db, _ := newTestKeyring(t, nil)
	const workers, per = 4, 40
	var wg sync.WaitGroup
	errc := make(chan error, 2*workers)
	for w := range workers {
		wg.Add(2)
		go func() {
			defer wg.Done()
			for i := range per {
				sl := k.NewSealer(0)
				err := sl.Ensure([][]byte{id(1000*w + i), id(1000*w + i + 1)})
				sl.Close()
				if err != nil {
					errc <- err
					return
				}
			}
		}()
		go func() {
			defer wg.Done()
			for i := 0; i < per; i += 2 { // the even ids
				if err := k.Destroy(id(1000*w + i)); err != nil {
					errc <- err
					return
				}
				if _, err := k.Seal(id(1000*w+i), []byte("x")); !errors.Is(err, ErrKeyDestroyed) {
					errc <- fmt.Errorf("Seal under %d right after Destroy: %v", 1000*w+i, err)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errc)
	for err := range errc {
		t.Fatal(err)
	}
	cold, err := NewKeyring(db, testMaster(1), nil)
	if err != nil {
		t.Fatal(err)
	}
	for w := range workers {
		for i := range per + 1 {
			n := 1000*w + i
			_, err := cold.Seal(id(n), []byte("x"))
			if i%2 == 0 && i < per && !errors.Is(err, ErrKeyDestroyed) {
				t.Errorf("id %d: destroyed, but Seal in a cold keyring: %v", n, err)
			}
			if (i%2 == 1 || i == per) && err != nil {
				t.Errorf("id %d: never destroyed, but Seal in a cold keyring: %v", n, err)
			}
		}
	}
}

// TestConcurrentDestroy races Open/Seal on a small cache against Destroy:
// afterwards the destroyed keys must be refused, never resurrected by a
// concurrent cache fill.
func TestConcurrentDestroy(t *testing.T) {
	k, _, _ := newTestKeyring(t, &Options{CacheKeys: 2})
	const n = 16
	var ids [][]byte
	for i := 0; i < n; i++ {
		ids = append(ids, id(i))
	}
	mustEnsure(t, k, ids...)
	var wg sync.WaitGroup
	stop := make(chan struct{})
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				kid := ids[i%n]
				if s, err := k.Seal(kid, []byte("x")); err == nil {
					k.Open(kid, s)
				}
			}
		}()
	}
	for i := 0; i < n; i += 2 {
		if err := k.Destroy(ids[i]); err != nil {
			t.Fatal(err)
		}
	}
	close(stop)
	wg.Wait()
	for i := 0; i < n; i++ {
		_, err := k.Seal(ids[i], []byte("x"))
		if i%2 == 0 && !errors.Is(err, ErrKeyDestroyed) {
			t.Fatalf("key %d: %v, want ErrKeyDestroyed", i, err)
		}
		if i%2 == 1 && err != nil {
			t.Fatalf("key %d: %v", i, err)
		}
	}
}

func TestCacheBound(t *testing.T) {
	k, _, _ := newTestKeyring(t, &Options{CacheKeys: 5})
	var ids [][]byte
	for i := 0; i < 50; i++ {
		ids = append(ids, id(i))
	}
	mustEnsure(t, k, ids...)
	if n := k.cache.len(); n > 5 {
		t.Fatalf("cache holds %d keys, bound 5", n)
	}
	for round := 0; round < 2; round++ {
		for _, kid := range ids {
			s, err := k.Seal(kid, kid)
			if err != nil {
				t.Fatal(err)
			}
			if p, err := k.Open(kid, s); err != nil || !bytes.Equal(p, kid) {
				t.Fatalf("Open: %v", err)
			}
		}
	}
	if n := k.cache.len(); n > 5 || n == 0 {
		t.Fatalf("cache holds %d keys, want 1..5", n)
	}
}

func TestCacheLRU(t *testing.T) {
	c := newKeyCache(3)
	if len(c.shards) != 3 {
		t.Fatalf("%d shards", len(c.shards))
	}
	// Three ids in the same shard of a one-shard cache of capacity 2.
	c = &keyCache{shards: newKeyCache(2).shards[:1]}
	c.shards[0].cap = 2
	a, b, d := keyID{1}, keyID{2}, keyID{3}
	aead, _ := newAEAD(make([]byte, 32))
	c.put(&a, aead)
	c.put(&b, aead)
	c.get(&a)      // a is now most recent
	c.put(&d, nil) // evicts b
	if _, ok := c.get(&b); ok {
		t.Fatal("least recently used entry not evicted")
	}
	if got, ok := c.get(&a); !ok || got == nil {
		t.Fatal("recently used entry evicted")
	}
	if got, ok := c.get(&d); !ok || got != nil {
		t.Fatal("negative entry lost")
	}
}

func TestHash(t *testing.T) {
	k, _, _ := newTestKeyring(t, nil)
	h := k.Hash("email", "alice@example.com")
	if len(h) != hashLen {
		t.Fatalf("hash length %d", len(h))
	}
	// Matches the documented definition.
	hashKey := hkdfKey(t, testMaster(1), infoHash, sha256.Size)
	m := hmac.New(sha256.New, hashKey)
	m.Write([]byte("email:alice@example.com"))
	if want := m.Sum(nil)[:16]; !bytes.Equal(h, want) {
		t.Fatalf("Hash = %x, want %x", h, want)
	}
	if !bytes.Equal(h, k.Hash("email", "alice@example.com")) {
		t.Fatal("Hash is not deterministic")
	}
	distinct := map[string]bool{}
	for _, tc := range [][2]string{
		{"email", "alice@example.com"}, {"email", "bob@example.com"}, {"user_id", "alice@example.com"},
		{"a", "b:c"}, {"a:b", "c"}, {"", ""}, {"email", ""},
	} {
		distinct[string(k.Hash(tc[0], tc[1]))] = true
	}
	// "a"+"b:c" and "a:b"+"c" both hash "a:b:c": the separator is part of
	// the definition, so 6 distinct values from 7 inputs.
	if len(distinct) != 6 {
		t.Fatalf("%d distinct hashes, want 6", len(distinct))
	}
	other, _, _ := newTestKeyringMaster(t, testMaster(9))
	if bytes.Equal(h, other.Hash("email", "alice@example.com")) {
		t.Fatal("hash does not depend on the master key")
	}
}

func newTestKeyringMaster(t *testing.T, master []byte) (*Keyring, *store.DB, string) {
	dir := t.TempDir()
	db := openKeysDB(t, dir)
	t.Cleanup(func() { db.Close() })
	k, err := NewKeyring(db, master, nil)
	if err != nil {
		t.Fatal(err)
	}
	return k, db, dir
}

// TestNoPlaintextOnDisk checks that neither raw data keys, nor sealed
// plaintext, nor the master key ever reach the keys directory's files, while
// the wrapped keys do (which shows the scan can find bytes at all).
func TestNoPlaintextOnDisk(t *testing.T) {
	dir := t.TempDir()
	db := openKeysDB(t, dir)
	k, err := NewKeyring(db, testMaster(7), nil)
	if err != nil {
		t.Fatal(err)
	}
	var ids [][]byte
	for i := 0; i < 20; i++ {
		ids = append(ids, id(i))
	}
	mustEnsure(t, k, ids...)
	plaintext := []byte("alice.sensitive@example.com +44 7700 900123")
	var rawKeys, wrappedKeys [][]byte
	for _, kid := range ids {
		if _, err := k.Seal(kid, plaintext); err != nil {
			t.Fatal(err)
		}
		w, err := db.Get(dbKey(prefixKey, (*keyID)(kid)))
		if err != nil {
			t.Fatal(err)
		}
		wrappedKeys = append(wrappedKeys, w)
		rawKeys = append(rawKeys, unwrapRaw(t, k, kid, w))
	}
	for i := 0; i < len(ids); i += 2 {
		if err := k.Destroy(ids[i]); err != nil {
			t.Fatal(err)
		}
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	files := readAllFiles(t, dir)
	if len(files) == 0 {
		t.Fatal("no files in keys dir")
	}
	found := func(needle []byte) string {
		for name, data := range files {
			if bytes.Contains(data, needle) {
				return name
			}
		}
		return ""
	}
	for i, raw := range rawKeys {
		if f := found(raw); f != "" {
			t.Errorf("raw data key %d found in %s", i, f)
		}
	}
	if f := found(plaintext); f != "" {
		t.Errorf("plaintext found in %s", f)
	}
	if f := found(testMaster(7)); f != "" {
		t.Errorf("master key found in %s", f)
	}
	if f := found(wrappedKeys[1]); f == "" {
		t.Error("scan did not find a live wrapped key: the scan is broken")
	}
}

// unwrapRaw returns the raw data key (test only: production code never
// holds on to it).
func unwrapRaw(t *testing.T, k *Keyring, kid, wrapped []byte) []byte {
	t.Helper()
	dk, err := k.wrap.Open(nil, wrapped[1:1+nonceLen], wrapped[1+nonceLen:], dbKey(prefixKey, (*keyID)(kid)))
	if err != nil || len(dk) != dataKeyLen {
		t.Fatalf("unwrap: %v", err)
	}
	return dk
}

func readAllFiles(t *testing.T, dir string) map[string][]byte {
	t.Helper()
	files := map[string][]byte{}
	err := filepath.WalkDir(dir, func(path string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(path)
		files[path] = b
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return files
}

func TestLoadMasterKey(t *testing.T) {
	key := make([]byte, 32)
	for i := range key {
		key[i] = byte(i * 7)
	}
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	other := bytes.Repeat([]byte{0xee}, 32)
	fileKey := write("k.b64", base64.StdEncoding.EncodeToString(other)+"\n")
	cases := []struct {
		name, path, env string
		want            []byte
		errContains     string
	}{
		{"hex", "", hex.EncodeToString(key), key, ""},
		{"hex upper", "", strings.ToUpper(hex.EncodeToString(key)), key, ""},
		{"base64 std", "", base64.StdEncoding.EncodeToString(key), key, ""},
		{"base64 raw std", "", base64.RawStdEncoding.EncodeToString(key), key, ""},
		{"base64 url", "", base64.URLEncoding.EncodeToString(key), key, ""},
		{"base64 raw url", "", base64.RawURLEncoding.EncodeToString(key), key, ""},
		{"whitespace", "", "  " + hex.EncodeToString(key) + "\n", key, ""},
		{"env wins over file", fileKey, hex.EncodeToString(key), key, ""},
		{"file", fileKey, "", other, ""},
		{"blank env falls back to file", fileKey, "  ", other, ""},
		{"file with hex", write("k.hex", hex.EncodeToString(key)), "", key, ""},
		{"31 bytes", "", base64.StdEncoding.EncodeToString(key[:31]), nil, "decodes to 31 bytes, want 32"},
		{"33 bytes", "", base64.StdEncoding.EncodeToString(append(key, 1)), nil, "decodes to 33 bytes, want 32"},
		{"short hex", "", hex.EncodeToString(key[:16]), nil, "decodes to 24 bytes"},
		{"garbage", "", "not a key!", nil, "not 32 bytes in hex or base64"},
		{"bad env", fileKey, "!!", nil, "master key from environment"},
		{"nothing", "", "", nil, "no master key"},
		{"missing file", filepath.Join(dir, "missing"), "", nil, "no such file"},
		{"empty file", write("empty", "\n"), "", nil, "empty"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := LoadMasterKey(tc.path, tc.env)
			if tc.errContains != "" {
				if err == nil || !strings.Contains(err.Error(), tc.errContains) || !strings.HasPrefix(err.Error(), "seal: ") {
					t.Fatalf("err = %v, want containing %q", err, tc.errContains)
				}
				return
			}
			if err != nil || !bytes.Equal(got, tc.want) {
				t.Fatalf("LoadMasterKey = %x, %v; want %x", got, err, tc.want)
			}
		})
	}
}

func TestEnsureMasterKeyFile(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	path := filepath.Join(dir, "master.key")
	k1, created, err := EnsureMasterKeyFile(path)
	if err != nil || !created || len(k1) != 32 {
		t.Fatalf("create: %x, %v, %v", k1, created, err)
	}
	if bytes.Equal(k1, make([]byte, 32)) {
		t.Fatal("all-zero key")
	}
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o600 {
		t.Fatalf("mode %v, want 0600", st.Mode().Perm())
	}
	k2, created, err := EnsureMasterKeyFile(path)
	if err != nil || created || !bytes.Equal(k1, k2) {
		t.Fatalf("second call: %x, %v, %v", k2, created, err)
	}
	k3, err := LoadMasterKey(path, "")
	if err != nil || !bytes.Equal(k1, k3) {
		t.Fatalf("LoadMasterKey of created file: %v", err)
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Fatalf("temporary files left behind: %v", entries)
	}
	// A corrupt existing file is an error, never silently replaced.
	os.WriteFile(path, []byte("garbage"), 0o600)
	if _, _, err := EnsureMasterKeyFile(path); err == nil {
		t.Fatal("corrupt key file replaced or accepted")
	}
}

func TestEnsureMasterKeyFileConcurrent(t *testing.T) {
	path := filepath.Join(t.TempDir(), "master.key")
	const n = 8
	keys := make([][]byte, n)
	var wg sync.WaitGroup
	var createdCount int
	var mu sync.Mutex
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			k, created, err := EnsureMasterKeyFile(path)
			if err != nil {
				t.Error(err)
			}
			mu.Lock()
			keys[i] = k
			if created {
				createdCount++
			}
			mu.Unlock()
		}()
	}
	wg.Wait()
	if createdCount != 1 {
		t.Fatalf("%d creators, want 1", createdCount)
	}
	for i := 1; i < n; i++ {
		if !bytes.Equal(keys[i], keys[0]) {
			t.Fatal("concurrent callers got different keys")
		}
	}
}

func hkdfKey(t *testing.T, master []byte, info string, n int) []byte {
	t.Helper()
	// Independent HKDF-SHA256 (RFC 5869) with an empty salt, to check the
	// derivation rather than reuse it.
	ext := hmac.New(sha256.New, make([]byte, sha256.Size))
	ext.Write(master)
	prk := ext.Sum(nil)
	var out, prev []byte
	for i := byte(1); len(out) < n; i++ {
		m := hmac.New(sha256.New, prk)
		m.Write(prev)
		m.Write([]byte(info))
		m.Write([]byte{i})
		prev = m.Sum(nil)
		out = append(out, prev...)
	}
	return out[:n]
}

func benchKeyring(b *testing.B) *Keyring {
	k, _, _ := newTestKeyring(b, nil)
	mustEnsure(b, k, id(1))
	return k
}

func BenchmarkSeal(b *testing.B) {
	k := benchKeyring(b)
	p := bytes.Repeat([]byte("x"), 64)
	b.SetBytes(int64(len(p)))
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		if _, err := k.Seal(id(1), p); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkOpen(b *testing.B) {
	k := benchKeyring(b)
	s, _ := k.Seal(id(1), bytes.Repeat([]byte("x"), 64))
	b.SetBytes(64)
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		if _, err := k.Open(id(1), s); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkHash(b *testing.B) {
	k := benchKeyring(b)
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		k.Hash("email", "alice@example.com")
	}
}

func BenchmarkEnsure(b *testing.B) {
	k := benchKeyring(b)
	ids := make([][]byte, 100)
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		for j := range ids {
			ids[j] = id(1_000_000 + i*100 + j)
		}
		if err := k.Ensure(ids); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N*100)/b.Elapsed().Seconds(), "keys/s")
}
