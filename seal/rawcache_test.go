package seal

import (
	"bytes"
	"errors"
	"testing"

	"github.com/aurumcdp/aurum/store"
)

// deleteWrapped removes the wrapped keys of ids from the keys database, so
// that only the caches can still give them.
func deleteWrapped(t *testing.T, db *store.DB, ids ...[]byte) {
	t.Helper()
	b := db.NewBatch()
	defer b.Close()
	for _, raw := range ids {
		id := keyID(raw)
		if err := b.Delete(dbKey(prefixKey, &id)); err != nil {
			t.Fatal(err)
		}
	}
	if err := db.Commit(b, true); err != nil {
		t.Fatal(err)
	}
}

// TestRawCacheServesLRUMisses checks that a key evicted from the LRU of
// AEADs is rebuilt from the raw-key cache (the database is not read: its
// wrapped key is gone), that without the raw cache the same look-up reads
// the database, and that Destroy and DestroyAll remove raw keys.
func TestRawCacheServesLRUMisses(t *testing.T) {
	for _, tc := range []struct {
		name string
		raw  int
	}{{"raw cache", 1000}, {"no raw cache", -1}} {
		t.Run(tc.name, func(t *testing.T) {
			k, db, _ := newTestKeyring(t, &Options{CacheKeys: 16, CacheRawKeys: tc.raw})
			var ids [][]byte
			for i := range 200 {
				ids = append(ids, id(i))
			}
			mustEnsure(t, k, ids...)
			sealed, err := k.Seal(ids[0], []byte("v0"))
			if err != nil {
				t.Fatal(err)
			}
			for _, x := range ids[100:] { // evicts ids[0] from the LRU
				if _, err := k.Seal(x, []byte("x")); err != nil {
					t.Fatal(err)
				}
			}
			if _, ok := k.cache.get((*keyID)(ids[0])); ok {
				t.Fatal("ids[0] still in the LRU")
			}
			deleteWrapped(t, db, ids[:50]...)
			pt, err := k.Open(ids[0], sealed)
			if tc.raw > 0 {
				if err != nil || string(pt) != "v0" {
					t.Fatalf("Open after LRU eviction: %q, %v; want v0 from the raw cache", pt, err)
				}
			} else if !errors.Is(err, ErrUnknownKey) {
				t.Fatalf("Open without raw cache: %v, want ErrUnknownKey (database read)", err)
			}
			if tc.raw < 0 {
				return
			}
			// Destroy and DestroyAll remove raw keys: after LRU eviction the
			// keys are destroyed, not rebuilt.
			if err := k.Destroy(ids[1]); err != nil {
				t.Fatal(err)
			}
			if n, err := k.DestroyAll([][]byte{ids[2], ids[150]}); err != nil || n != 2 {
				t.Fatalf("DestroyAll: %d, %v", n, err)
			}
			for _, x := range [][]byte{ids[1], ids[2], ids[150]} {
				var dk [dataKeyLen]byte
				if k.raw.get((*keyID)(x), &dk) {
					t.Fatalf("raw key of destroyed %x still cached", x)
				}
				if _, err := k.Seal(x, []byte("x")); !errors.Is(err, ErrKeyDestroyed) {
					t.Fatalf("Seal under destroyed %x: %v", x, err)
				}
			}
		})
	}
}

// TestRawCacheBound checks the FIFO bound, that evicted keys are wiped and
// that put of a cached id replaces its key.
func TestRawCacheBound(t *testing.T) {
	c := newRawCache(3)
	var kept []*[dataKeyLen]byte
	for i := range 5 {
		dk := bytes.Repeat([]byte{byte(i + 1)}, dataKeyLen)
		c.put((*keyID)(id(i)), dk)
		kept = append(kept, c.m[keyID(id(i))])
		if want := min(i+1, 3); len(c.m) != want {
			t.Fatalf("after %d puts: %d entries, want %d", i+1, len(c.m), want)
		}
	}
	var dk [dataKeyLen]byte
	for i := range 5 {
		ok := c.get((*keyID)(id(i)), &dk)
		if ok != (i >= 2) {
			t.Fatalf("get %d: cached %v", i, ok)
		}
		if ok && dk[0] != byte(i+1) {
			t.Fatalf("get %d: key byte %d", i, dk[0])
		}
		if !ok && *kept[i] != ([dataKeyLen]byte{}) {
			t.Fatalf("evicted key %d not wiped", i)
		}
	}
	c.put((*keyID)(id(4)), bytes.Repeat([]byte{9}, dataKeyLen))
	if !c.get((*keyID)(id(4)), &dk) || dk[0] != 9 || len(c.m) != 3 {
		t.Fatalf("replace: %v %d entries", dk[0], len(c.m))
	}
	c.remove((*keyID)(id(4)))
	if c.get((*keyID)(id(4)), &dk) || *kept[4] != ([dataKeyLen]byte{}) {
		t.Fatal("remove: still cached or not wiped")
	}
}
