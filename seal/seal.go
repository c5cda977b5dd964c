// Package seal encrypts personal data with per-profile data keys so that it
// can later be crypto-shredded: destroying a key makes every copy of the
// data sealed under it (on the log, in projections, in backups) unreadable.
//
// Data keys are random 32-byte AES-256-GCM keys identified by a 16-byte id.
// They are stored wrapped (AES-256-GCM) under a key derived from the 32-byte
// master key, in their own small Pebble database. Key layout:
//
//	dk/<keyid16> → wrapped data key: version(1) || nonce(12) || ciphertext+tag(48)
//	dx/<keyid16> → tombstone of a destroyed key (never recreated)
//	meta/check   → key check value of the master key: version(1) || 16 bytes
//	meta/shared  → present while every key and tombstone is also in the
//	               shared store (Options.Shared, Keyring.Share)
//	meta/adopted → position of the shared store's records adopted (Adopt)
//
// Look-ups use a keyed hash (HMAC-SHA256 under another derived key) so that
// identifiers can be found without storing them in plaintext.
//
// In a cluster, the keys are also kept in a store shared by the nodes
// (Options.Shared, shared.go), so that every node opens what any node
// sealed; the keys database is then this node's copy.
package seal

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"hash"
	"sync"
	"time"

	"github.com/aurumcdp/aurum/store"
)

// Errors returned by Open and Seal. They are wrapped with the key id; test
// them with errors.Is.
var (
	ErrKeyDestroyed = errors.New("seal: key destroyed")
	ErrUnknownKey   = errors.New("seal: unknown key")
	ErrCorrupt      = errors.New("seal: corrupt or tampered data")
)

// ErrMasterKeyMismatch is returned by NewKeyring when the master key is not
// the one the keys database was created with.
var ErrMasterKeyMismatch = errors.New("seal: master key does not match this data directory")

const (
	idLen       = 16
	dataKeyLen  = 32
	nonceLen    = 12
	tagLen      = 16
	version     = 1
	sealedExtra = 1 + nonceLen + tagLen // Seal overhead: version, nonce, tag
	hashLen     = 16
	checkLen    = 16
)

// HKDF info strings; changing them changes every derived key.
const (
	infoWrap  = "aurum/seal/v1/wrap"
	infoHash  = "aurum/seal/v1/hash"
	infoCheck = "aurum/seal/v1/check"
)

var (
	prefixKey       = []byte("dk/")
	prefixTombstone = []byte("dx/")
	keyCheck        = []byte("meta/check")
	keyShared       = []byte("meta/shared") // every key and tombstone here is in the shared store (Share)
)

// Options configures a Keyring. A nil *Options is valid.
type Options struct {
	// CacheKeys bounds the in-memory LRU of unwrapped keys. An entry costs
	// about 0.85 KiB of heap (the AES-256 key schedule and GCM tables, plus
	// the LRU node): the default, 8192, holds ~7 MiB. There is one key per
	// identifier, so the keys grow with the people, and so would a cache
	// that holds them all (100,000 keys: ~80 MiB of live heap, twice that
	// at the GC's peak). A miss costs a keys/ point read and an unwrap,
	// ~7 µs of CPU (BenchmarkSealKeys) against ~1.3 µs for a hit.
	CacheKeys int
	// CacheRawKeys bounds the second-level cache of unwrapped raw data keys
	// (~100 bytes an entry; the default, 65536, holds ~6.5 MiB), which
	// spares the keys database read and unwrap of an LRU miss. Negative:
	// none.
	CacheRawKeys int
	// Shared, when set, is the store of data keys shared by the nodes of a
	// cluster (shared.go): Ensure creates keys there first, a key missing
	// locally is fetched from it, and Destroy destroys it there too. Nil:
	// the keys database alone, as on a single node.
	Shared SharedKeys
	// SharedTimeout bounds one call to Shared (default 30 s).
	SharedTimeout time.Duration
}

// DefaultCacheKeys is the default bound of the key cache (Options.CacheKeys).
const DefaultCacheKeys = 8192

// DefaultCacheRawKeys is the default of Options.CacheRawKeys.
const DefaultCacheRawKeys = 65536

// DefaultSharedTimeout is the default of Options.SharedTimeout.
const DefaultSharedTimeout = 30 * time.Second

// EnsureDefaults returns a copy of o with zero fields set to defaults.
func (o *Options) EnsureDefaults() Options {
	var r Options
	if o != nil {
		r = *o
	}
	if r.CacheKeys <= 0 {
		r.CacheKeys = DefaultCacheKeys
	}
	if r.CacheRawKeys == 0 {
		r.CacheRawKeys = DefaultCacheRawKeys
	}
	if r.SharedTimeout <= 0 {
		r.SharedTimeout = DefaultSharedTimeout
	}
	return r
}

// Keyring creates, caches, uses and destroys data keys. It is safe for
// concurrent use. It does not own db: the caller closes it after the last
// use of the Keyring.
type Keyring struct {
	db      *store.DB
	wrap    cipher.AEAD // wraps data keys
	hashKey []byte
	tombs   *tombFilter // the ids with a tombstone (and a few more)
	hashers sync.Pool   // *hasher
	arenas  sync.Pool   // *[]byte of arenaChunk bytes: Sealer arenas (Release)
	cache   *keyCache
	raw     *rawCache // nil: none
	shared  SharedKeys
	timeout time.Duration // of one call to shared

	// writeMu serialises Ensure's look-ups and Destroy, so that
	// concurrent Ensure of one id creates one key. It guards creating.
	writeMu sync.Mutex
	// creating holds the ids whose keys an Ensure call is creating outside
	// writeMu; another Ensure of one of them waits for it.
	creating map[keyID]*creation
	// creations is held (read side) by each creation in flight, from
	// writeMu to its cached keys; Destroy, DestroyAll and Share take the
	// write side under writeMu to wait for them.
	creations sync.RWMutex
	// loadMu orders cache fills from the database (read side) against
	// Destroy (write side), so that a key being destroyed is never put back
	// into the cache by a concurrent load.
	loadMu sync.RWMutex
}

// NewKeyring returns the keyring stored in db, sealed under master (32
// bytes). db must have no other Keyring while this one is in use: each
// keeps in memory which ids have tombstones (tombFilter). On an empty db it records a check value of master; on an existing
// one it verifies it and returns ErrMasterKeyMismatch if it differs.
func NewKeyring(db *store.DB, master []byte, opts *Options) (*Keyring, error) {
	if len(master) != MasterKeySize {
		return nil, fmt.Errorf("seal: master key is %d bytes, want %d", len(master), MasterKeySize)
	}
	o := opts.EnsureDefaults()
	wrapKey, err := hkdf.Key(sha256.New, master, nil, infoWrap, dataKeyLen)
	if err != nil {
		return nil, fmt.Errorf("seal: derive keys: %w", err)
	}
	hashKey, err := hkdf.Key(sha256.New, master, nil, infoHash, sha256.Size)
	if err != nil {
		return nil, fmt.Errorf("seal: derive keys: %w", err)
	}
	check, err := hkdf.Key(sha256.New, master, nil, infoCheck, checkLen)
	if err != nil {
		return nil, fmt.Errorf("seal: derive keys: %w", err)
	}
	wrap, err := newAEAD(wrapKey)
	if err != nil {
		return nil, err
	}
	k := &Keyring{db: db, wrap: wrap, hashKey: hashKey, cache: newKeyCache(o.CacheKeys),
		shared: o.Shared, timeout: o.SharedTimeout}
	if o.CacheRawKeys > 0 {
		k.raw = newRawCache(o.CacheRawKeys)
	}
	k.hashers.New = func() any { return &hasher{h: hmac.New(sha256.New, k.hashKey)} }
	if err := k.verifyCheck(check); err != nil {
		return nil, err
	}
	if err := k.loadTombstones(); err != nil {
		return nil, err
	}
	return k, nil
}

// loadTombstones builds the tombstone filter from the keys database.
func (k *Keyring) loadTombstones() error {
	var ids []keyID
	err := k.db.Scan(prefixTombstone, store.PrefixEnd(prefixTombstone), false, func(key, _ []byte) bool {
		if len(key) == len(prefixTombstone)+idLen {
			ids = append(ids, keyID(key[len(prefixTombstone):]))
		}
		return true
	})
	if err != nil {
		return fmt.Errorf("seal: read tombstones: %w", err)
	}
	k.tombs = newTombFilter(len(ids))
	for i := range ids {
		k.tombs.add(&ids[i])
	}
	return nil
}

// setTombstone adds the tombstone of id to b, after adding id to the
// tombstone filter (before the commit: see tombFilter).
func (k *Keyring) setTombstone(b *store.Batch, id *keyID, value []byte) error {
	k.tombs.add(id)
	return b.Set(dbKey(prefixTombstone, id), value)
}

func (k *Keyring) verifyCheck(check []byte) error {
	want := append([]byte{version}, check...)
	got, err := k.db.Get(keyCheck)
	switch {
	case err == nil:
		if subtle.ConstantTimeCompare(got, want) != 1 {
			return ErrMasterKeyMismatch
		}
		return nil
	case !errors.Is(err, store.ErrNotFound):
		return fmt.Errorf("seal: read key check: %w", err)
	}
	// No check value: the keys database must be empty.
	nonEmpty := false
	if err := k.db.Scan(nil, nil, false, func(_, _ []byte) bool { nonEmpty = true; return false }); err != nil {
		return fmt.Errorf("seal: read keys: %w", err)
	}
	if nonEmpty {
		return errors.New("seal: keys database has keys but no master key check value")
	}
	b := k.db.NewBatch()
	defer b.Close()
	if err := b.Set(keyCheck, want); err != nil {
		return fmt.Errorf("seal: write key check: %w", err)
	}
	if err := k.db.Commit(b, true); err != nil {
		return fmt.Errorf("seal: write key check: %w", err)
	}
	return nil
}

type hasher struct {
	h   hash.Hash
	buf []byte
	sum [sha256.Size]byte
}

// Hash returns the 16-byte keyed hash of an identifier:
// HMAC-SHA256(hashKey, typ + ":" + value)[:16].
func (k *Keyring) Hash(typ, value string) []byte {
	hs := k.hashers.Get().(*hasher)
	hs.buf = append(append(append(hs.buf[:0], typ...), ':'), value...)
	hs.h.Reset()
	hs.h.Write(hs.buf)
	sum := hs.h.Sum(hs.sum[:0])
	out := make([]byte, hashLen)
	copy(out, sum)
	if cap(hs.buf) <= 4096 { // do not keep huge buffers in the pool
		k.hashers.Put(hs)
	}
	return out
}

// Ensure creates and persists, in one synced batch, every data key in
// keyIDs that does not exist yet. Ids of destroyed keys are skipped: they
// are never recreated, and Seal and Open under them return ErrKeyDestroyed.
// Each id must be 16 bytes. Safe for concurrent use; concurrent Ensure of
// one id creates one key.
//
// With Options.Shared the new keys are first offered to the shared store,
// all in one Create call: where another node created the id first, its key
// is the one kept here; where it destroyed the id, a tombstone is.
func (k *Keyring) Ensure(keyIDs [][]byte) error {
	var missing []keyID
	for _, raw := range keyIDs {
		id, err := toID(raw)
		if err != nil {
			return fmt.Errorf("seal: ensure: %w", err)
		}
		if _, ok := k.cache.get(&id); !ok {
			missing = append(missing, id)
		}
	}
	return k.ensureMissing(missing, nil)
}

// ensureMissing is Ensure of ids that missed the cache (duplicates
// allowed). With got set, it reports the cipher of each distinct id it
// finds or creates (nil: destroyed).
//
// The look-ups and the choice of the ids to create are serialised by
// writeMu; the keys are then created (offered to the shared store, written
// in one synced batch, cached) outside it, so that concurrent calls with
// new keys share the keys database's WAL syncs (Pebble's group commit)
// instead of waiting for each other's. An id being created by another call
// (k.creating) is waited for, not created twice; Destroy, DestroyAll and
// Share wait for the creations in flight (k.creations) before they start.
func (k *Keyring) ensureMissing(missing []keyID, got func(id *keyID, a cipher.AEAD)) error {
	if len(missing) == 0 {
		return nil
	}
	var news []newKey
	defer func() {
		for i := range news {
			clear(news[i].dk[:])
		}
	}()
	var waits []*creation
	var waitIDs []keyID
	k.writeMu.Lock()
	seen := make(map[keyID]bool, len(missing))
	for _, id := range missing {
		if seen[id] {
			continue
		}
		seen[id] = true
		if c := k.creating[id]; c != nil {
			waits, waitIDs = append(waits, c), append(waitIDs, id)
			continue
		}
		if a, err := k.loadLocal(&id); err == nil || errors.Is(err, ErrKeyDestroyed) {
			if got != nil {
				got(&id, a)
			}
			continue // exists (now cached) or destroyed
		} else if !errors.Is(err, ErrUnknownKey) {
			k.writeMu.Unlock()
			return fmt.Errorf("seal: ensure: %w", err)
		}
		news = append(news, newKey{id: id})
		c := &news[len(news)-1]
		rand.Read(c.dk[:])
		c.wrapped = k.wrapKey(&id, c.dk[:])
	}
	var mine *creation
	if len(news) > 0 {
		mine = &creation{done: make(chan struct{})}
		if k.creating == nil {
			k.creating = make(map[keyID]*creation)
		}
		for i := range news {
			k.creating[news[i].id] = mine
		}
		k.creations.RLock() // under writeMu: Destroy waits for it
	}
	k.writeMu.Unlock()

	if mine != nil {
		mine.err = k.createKeys(news, got)
		k.creations.RUnlock()
		k.writeMu.Lock()
		for i := range news {
			delete(k.creating, news[i].id)
		}
		k.writeMu.Unlock()
		close(mine.done)
		if mine.err != nil {
			return mine.err
		}
	}
	for i, c := range waits {
		<-c.done
		if c.err != nil {
			return c.err
		}
		if got == nil {
			continue
		}
		id := &waitIDs[i]
		a, ok := k.cache.get(id)
		if !ok {
			var err error
			if a, err = k.loadLocal(id); err != nil && !errors.Is(err, ErrKeyDestroyed) {
				return fmt.Errorf("seal: ensure: %w", err)
			}
		}
		got(id, a)
	}
	return nil
}

// newKey is a data key Ensure creates.
type newKey struct {
	id      keyID
	dk      [dataKeyLen]byte
	wrapped []byte
	gone    bool // destroyed in the shared store
}

// creation is one Ensure call's creation of keys, in flight: done is
// closed when they are durable and cached, or err says why not.
type creation struct {
	done chan struct{}
	err  error
}

// createKeys offers news to the shared store (if any), writes them (or the
// tombstones the shared store answered) in one synced batch and caches
// them, reporting each to got.
func (k *Keyring) createKeys(news []newKey, got func(id *keyID, a cipher.AEAD)) error {
	if k.shared != nil {
		offers := make([]SharedKey, len(news))
		for i := range news {
			offers[i] = SharedKey{ID: news[i].id[:], State: SharedPresent, Wrapped: news[i].wrapped}
		}
		won, err := k.sharedCreate(offers)
		if err != nil {
			return fmt.Errorf("seal: ensure: %w", err)
		}
		for i := range news {
			c := &news[i]
			switch w := won[i]; w.State {
			case SharedDestroyed:
				c.gone = true
			case SharedPresent:
				if bytes.Equal(w.Wrapped, c.wrapped) {
					continue // ours
				}
				dk, err := k.unwrapRaw(&c.id, w.Wrapped)
				if err != nil { // not ErrCorrupt: see loadShared
					return fmt.Errorf("seal: ensure: shared key store: %v", err)
				}
				copy(c.dk[:], dk)
				clear(dk)
				c.wrapped = w.Wrapped
			default:
				return fmt.Errorf("seal: ensure: shared store answered state %d for key %x", w.State, c.id[:])
			}
		}
	}
	b := k.db.NewBatch()
	defer b.Close()
	for i := range news {
		c := &news[i]
		var err error
		if c.gone {
			err = k.setTombstone(b, &c.id, []byte{version})
		} else {
			err = b.Set(dbKey(prefixKey, &c.id), c.wrapped)
		}
		if err != nil {
			return fmt.Errorf("seal: ensure: %w", err)
		}
	}
	if err := k.markUnshared(b); err != nil {
		return fmt.Errorf("seal: ensure: %w", err)
	}
	if err := k.db.Commit(b, true); err != nil {
		return fmt.Errorf("seal: ensure: %w", err)
	}
	for i := range news {
		c := &news[i]
		if c.gone {
			k.cache.put(&c.id, nil)
			if got != nil {
				got(&c.id, nil)
			}
			continue
		}
		aead, err := newAEAD(c.dk[:])
		if err != nil {
			return err
		}
		k.cache.put(&c.id, aead)
		k.raw.put(&c.id, c.dk[:])
		if got != nil {
			got(&c.id, aead)
		}
	}
	return nil
}

// drainCreations waits for the key creations in flight (ensureMissing).
// The caller holds writeMu, so that no new one starts.
func (k *Keyring) drainCreations() {
	k.creations.Lock()
	k.creations.Unlock() //nolint:staticcheck // an empty critical section: a barrier
}

// Seal encrypts plaintext under the data key keyID with AES-256-GCM, a
// random 12-byte nonce and keyID as additional data. The result is
// version(1) || nonce(12) || ciphertext || tag(16).
func (k *Keyring) Seal(keyID, plaintext []byte) ([]byte, error) {
	aead, err := k.aead(keyID)
	if err != nil {
		return nil, err
	}
	out := make([]byte, 1+nonceLen, len(plaintext)+sealedExtra)
	out[0] = version
	nonce := out[1 : 1+nonceLen]
	rand.Read(nonce)
	return aead.Seal(out, nonce, plaintext, keyID), nil
}

// Open decrypts the output of Seal under keyID. It returns an error
// wrapping ErrKeyDestroyed if the key was destroyed, ErrUnknownKey if it was
// never created, and ErrCorrupt if sealed is malformed, was tampered with, or
// was sealed under another key id.
func (k *Keyring) Open(keyID, sealed []byte) ([]byte, error) {
	aead, err := k.aead(keyID)
	if err != nil {
		return nil, err
	}
	if len(sealed) < sealedExtra {
		return nil, fmt.Errorf("%w: %d bytes is too short", ErrCorrupt, len(sealed))
	}
	if sealed[0] != version {
		return nil, fmt.Errorf("%w: unknown version %d", ErrCorrupt, sealed[0])
	}
	p, err := aead.Open(nil, sealed[1:1+nonceLen], sealed[1+nonceLen:], keyID)
	if err != nil {
		return nil, fmt.Errorf("%w: key %x", ErrCorrupt, keyID)
	}
	return p, nil
}

// Destroy crypto-shreds keyID: in one synced batch it deletes the wrapped key
// and writes a tombstone so that Ensure never recreates it, then marks it
// destroyed in the cache. Destroying an unknown or destroyed key is allowed
// (it writes the tombstone). Data sealed concurrently with Destroy under the
// same key is unreadable afterwards like all other data under it. With
// Options.Shared the key is destroyed in the shared store first, so that a
// local tombstone means a shared one too (but DestroyLocal's); other
// nodes' local copies are theirs to destroy.
//
// The deleted wrapped key may remain physically in the keys database's
// files until they are compacted or rewritten; the raw data key is never
// stored.
func (k *Keyring) Destroy(keyID []byte) error {
	id, err := toID(keyID)
	if err != nil {
		return fmt.Errorf("seal: destroy: %w", err)
	}
	k.writeMu.Lock()
	defer k.writeMu.Unlock()
	k.drainCreations()
	if err := k.sharedDestroy([][]byte{id[:]}); err != nil {
		return fmt.Errorf("seal: destroy: %w", err)
	}
	k.loadMu.Lock()
	defer k.loadMu.Unlock()
	b := k.db.NewBatch()
	defer b.Close()
	if err := b.Delete(dbKey(prefixKey, &id)); err != nil {
		return fmt.Errorf("seal: destroy: %w", err)
	}
	if err := k.setTombstone(b, &id, []byte{version}); err != nil {
		return fmt.Errorf("seal: destroy: %w", err)
	}
	if err := k.markUnshared(b); err != nil {
		return fmt.Errorf("seal: destroy: %w", err)
	}
	if err := k.db.Commit(b, true); err != nil {
		return fmt.Errorf("seal: destroy: %w", err)
	}
	k.cache.put(&id, nil)
	k.raw.remove(&id)
	return nil
}

// aead returns the cipher of keyID, loading it on a cache miss.
func (k *Keyring) aead(raw []byte) (cipher.AEAD, error) {
	id, err := toID(raw)
	if err != nil {
		return nil, err
	}
	if a, ok := k.cache.get(&id); ok {
		if a == nil {
			return nil, fmt.Errorf("%w: %x", ErrKeyDestroyed, raw)
		}
		return a, nil
	}
	return k.load(&id)
}

// load reads keyID from the database and caches it (or its destroyed
// state); with Options.Shared, an id unknown there is looked up in the
// shared store (loadShared). Unknown keys are not cached: Ensure may create
// them.
func (k *Keyring) load(id *keyID) (cipher.AEAD, error) {
	aead, err := k.loadLocal(id)
	if k.shared == nil || !errors.Is(err, ErrUnknownKey) {
		return aead, err
	}
	return k.loadShared(id)
}

// loadLocal is load from the keys database alone.
func (k *Keyring) loadLocal(id *keyID) (cipher.AEAD, error) {
	k.loadMu.RLock()
	defer k.loadMu.RUnlock()
	var dk [dataKeyLen]byte
	if k.raw.get(id, &dk) {
		aead, err := newAEAD(dk[:])
		clear(dk[:])
		if err != nil {
			return nil, err
		}
		k.cache.put(id, aead)
		return aead, nil
	}
	wrapped, err := k.db.Get(dbKey(prefixKey, id))
	if err == nil {
		aead, err := k.unwrap(id, wrapped)
		if err != nil {
			return nil, err
		}
		k.cache.put(id, aead)
		return aead, nil
	}
	if !errors.Is(err, store.ErrNotFound) {
		return nil, fmt.Errorf("seal: load key %x: %w", id[:], err)
	}
	if !k.tombs.mayHave(id) {
		return nil, fmt.Errorf("%w: %x", ErrUnknownKey, id[:])
	}
	_, err = k.db.Get(dbKey(prefixTombstone, id))
	switch {
	case err == nil:
		k.cache.put(id, nil)
		return nil, fmt.Errorf("%w: %x", ErrKeyDestroyed, id[:])
	case errors.Is(err, store.ErrNotFound):
		return nil, fmt.Errorf("%w: %x", ErrUnknownKey, id[:])
	default:
		return nil, fmt.Errorf("seal: load key %x: %w", id[:], err)
	}
}

func (k *Keyring) wrapKey(id *keyID, dk []byte) []byte {
	out := make([]byte, 1+nonceLen, 1+nonceLen+dataKeyLen+tagLen)
	out[0] = version
	rand.Read(out[1 : 1+nonceLen])
	return k.wrap.Seal(out, out[1:1+nonceLen], dk, dbKey(prefixKey, id))
}

func (k *Keyring) unwrap(id *keyID, wrapped []byte) (cipher.AEAD, error) {
	dk, err := k.unwrapRaw(id, wrapped)
	if err != nil {
		return nil, err
	}
	defer clear(dk)
	k.raw.put(id, dk) // under loadMu (read), as load is
	return newAEAD(dk)
}

// unwrapRaw returns the data key wrapped in wrapped; the caller wipes it.
func (k *Keyring) unwrapRaw(id *keyID, wrapped []byte) ([]byte, error) {
	if len(wrapped) != 1+nonceLen+dataKeyLen+tagLen || wrapped[0] != version {
		return nil, fmt.Errorf("%w: wrapped key %x is malformed", ErrCorrupt, id[:])
	}
	dk, err := k.wrap.Open(nil, wrapped[1:1+nonceLen], wrapped[1+nonceLen:], dbKey(prefixKey, id))
	if err != nil {
		return nil, fmt.Errorf("%w: wrapped key %x fails authentication", ErrCorrupt, id[:])
	}
	return dk, nil
}

func newAEAD(key []byte) (cipher.AEAD, error) {
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, fmt.Errorf("seal: %w", err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, fmt.Errorf("seal: %w", err)
	}
	return aead, nil
}

func toID(raw []byte) (keyID, error) {
	var id keyID
	if len(raw) != idLen {
		return id, fmt.Errorf("seal: key id is %d bytes, want %d", len(raw), idLen)
	}
	copy(id[:], raw)
	return id, nil
}

func dbKey(prefix []byte, id *keyID) []byte {
	k := make([]byte, 0, len(prefix)+idLen)
	return append(append(k, prefix...), id[:]...)
}

// DestroyAll destroys every key in keyIDs like Destroy, in one synced
// batch, skipping keys already destroyed (tombstone and no wrapped key). It
// returns how many it destroyed now. The engine calls it at start with the
// keys of every suppressed identifier, so a keys database restored from an
// old backup cannot bring erased keys back. With Options.Shared the keys
// it destroys now are destroyed in the shared store first, in one call (a
// local tombstone already means a shared one, unless DestroyLocal wrote
// it: those keys are destroyed there now).
func (k *Keyring) DestroyAll(keyIDs [][]byte) (int, error) {
	return k.destroyAll(keyIDs, k.shared != nil)
}

// DestroyLocal is DestroyAll in this keys database only: with
// Options.Shared, the shared store's copies stay for the node that
// destroys them there (a cluster's leader, which may still need them), and
// the tombstones say so, so that a later Destroy or DestroyAll here
// destroys them there too. Without Options.Shared it is DestroyAll.
func (k *Keyring) DestroyLocal(keyIDs [][]byte) (int, error) {
	return k.destroyAll(keyIDs, false)
}

// tombLocalOnly is the value of a tombstone written by DestroyLocal with a
// shared store (other tombstones are version alone).
var tombLocalOnly = []byte{version, 1}

func (k *Keyring) destroyAll(keyIDs [][]byte, shared bool) (int, error) {
	ids := make([]keyID, 0, len(keyIDs))
	for _, raw := range keyIDs {
		id, err := toID(raw)
		if err != nil {
			return 0, fmt.Errorf("seal: destroy all: %w", err)
		}
		ids = append(ids, id)
	}
	k.writeMu.Lock()
	defer k.writeMu.Unlock()
	k.drainCreations()
	var todo [][]byte
	var done []keyID
	k.loadMu.Lock()
	for i := range ids {
		id := &ids[i]
		_, errKey := k.db.Get(dbKey(prefixKey, id))
		tomb, errTomb := k.db.Get(dbKey(prefixTombstone, id))
		if errors.Is(errKey, store.ErrNotFound) && errTomb == nil && !(shared && bytes.Equal(tomb, tombLocalOnly)) {
			k.cache.put(id, nil)
			k.raw.remove(id)
			continue
		}
		if errKey != nil && !errors.Is(errKey, store.ErrNotFound) {
			k.loadMu.Unlock()
			return 0, fmt.Errorf("seal: destroy all: %w", errKey)
		}
		done = append(done, *id)
		todo = append(todo, id[:])
	}
	k.loadMu.Unlock()
	if len(done) == 0 {
		return 0, nil
	}
	// Outside loadMu: loads of other keys go on meanwhile. A load that
	// caches one of these keys now is undone by the batch below.
	tombValue := []byte{version}
	if shared {
		if err := k.sharedDestroy(todo); err != nil {
			return 0, fmt.Errorf("seal: destroy all: %w", err)
		}
	} else if k.shared != nil {
		tombValue = tombLocalOnly
	}
	k.loadMu.Lock()
	defer k.loadMu.Unlock()
	b := k.db.NewBatch()
	defer b.Close()
	for i := range done {
		if err := b.Delete(dbKey(prefixKey, &done[i])); err != nil {
			return 0, fmt.Errorf("seal: destroy all: %w", err)
		}
		if err := k.setTombstone(b, &done[i], tombValue); err != nil {
			return 0, fmt.Errorf("seal: destroy all: %w", err)
		}
	}
	if err := k.markUnshared(b); err != nil {
		return 0, fmt.Errorf("seal: destroy all: %w", err)
	}
	if err := k.db.Commit(b, true); err != nil {
		return 0, fmt.Errorf("seal: destroy all: %w", err)
	}
	for i := range done {
		k.cache.put(&done[i], nil)
		k.raw.remove(&done[i])
	}
	return len(done), nil
}

// Compact flushes the keys database and compacts the range of the wrapped
// keys, so that destroyed keys leave its sstables (see store.DB.Compact for
// the write-ahead log).
func (k *Keyring) Compact() error {
	if err := k.db.Compact(prefixKey, store.PrefixEnd(prefixKey)); err != nil {
		return fmt.Errorf("seal: compact: %w", err)
	}
	return nil
}
