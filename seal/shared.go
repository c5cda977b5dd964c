package seal

import (
	"bytes"
	"context"
	"crypto/cipher"
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/aurumcdp/aurum/store"
)

// SharedKeys is a store of wrapped data keys shared by the nodes of a
// cluster (package log implements it on the replicated stream AURUM_KEYS).
// Every node applies every event, so a node must open values sealed on
// another under a key that node created. The wrapped form is the same on
// every node: all share the master key, and the wrapping's additional data
// is the key id alone.
//
// For each id the store holds nothing, a wrapped key, or a tombstone; a
// tombstone is final. Implementations must be safe for concurrent use by
// the nodes and their goroutines.
type SharedKeys interface {
	// Create offers keys[i].Wrapped under keys[i].ID, first writer wins,
	// and returns for each (in order, same length) what the store holds
	// afterwards: SharedPresent with the offered key or the key another
	// creator stored first, or SharedDestroyed. It should not make one
	// round trip per key.
	Create(ctx context.Context, keys []SharedKey) ([]SharedKey, error)
	// Get returns what the store holds for id: State SharedUnknown when
	// nothing.
	Get(ctx context.Context, id []byte) (SharedKey, error)
	// Destroy erases the keys of ids and leaves tombstones, so that Get
	// answers SharedDestroyed and Create never stores them again.
	// Destroying an unknown or destroyed id is allowed.
	Destroy(ctx context.Context, ids [][]byte) error
}

// SharedState is what a shared key store holds for an id.
type SharedState uint8

const (
	SharedUnknown   SharedState = iota // nothing
	SharedPresent                      // a wrapped key
	SharedDestroyed                    // a tombstone
)

func (s SharedState) String() string {
	switch s {
	case SharedUnknown:
		return "unknown"
	case SharedPresent:
		return "present"
	case SharedDestroyed:
		return "destroyed"
	default:
		return fmt.Sprintf("SharedState(%d)", uint8(s))
	}
}

// SharedKey is one id's entry of a shared key store. Wrapped is set only
// with SharedPresent.
type SharedKey struct {
	ID      []byte
	State   SharedState
	Wrapped []byte
}

// sharedCreate is Shared.Create bounded by SharedTimeout, with its answer
// checked (one entry per offer, same ids).
func (k *Keyring) sharedCreate(offers []SharedKey) ([]SharedKey, error) {
	ctx, cancel := context.WithTimeout(context.Background(), k.timeout)
	defer cancel()
	won, err := k.shared.Create(ctx, offers)
	if err != nil {
		return nil, fmt.Errorf("shared key store: %w", err)
	}
	if len(won) != len(offers) {
		return nil, fmt.Errorf("shared key store: %d answers to %d offers", len(won), len(offers))
	}
	return won, nil
}

// sharedDestroy is Shared.Destroy bounded by SharedTimeout; without a
// shared store it does nothing.
func (k *Keyring) sharedDestroy(ids [][]byte) error {
	if k.shared == nil || len(ids) == 0 {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), k.timeout)
	defer cancel()
	if err := k.shared.Destroy(ctx, ids); err != nil {
		return fmt.Errorf("shared key store: %w", err)
	}
	return nil
}

// loadShared looks up id, unknown to the keys database, in the shared
// store, and keeps what it finds there: the wrapped key (cached and written
// to the keys database) or a tombstone (ErrKeyDestroyed). The write is not
// synced: lost in a crash, it is fetched again. It holds loadMu's read side
// from the look-up to the write, so that a Destroy of id on this node comes
// after it and undoes it.
func (k *Keyring) loadShared(id *keyID) (cipher.AEAD, error) {
	k.loadMu.RLock()
	defer k.loadMu.RUnlock()
	ctx, cancel := context.WithTimeout(context.Background(), k.timeout)
	defer cancel()
	got, err := k.shared.Get(ctx, id[:])
	if err != nil {
		return nil, fmt.Errorf("seal: load key %x: shared key store: %w", id[:], err)
	}
	b := k.db.NewBatch()
	defer b.Close()
	var aead cipher.AEAD
	switch got.State {
	case SharedUnknown:
		return nil, fmt.Errorf("%w: %x", ErrUnknownKey, id[:])
	case SharedPresent:
		// Not ErrCorrupt: this node must not take as unreadable what
		// the node that created the key reads (another master key, or a
		// forged record), so the caller fails instead.
		if aead, err = k.unwrap(id, got.Wrapped); err != nil {
			return nil, fmt.Errorf("seal: load key %x: shared key store: %v", id[:], err)
		}
		err = b.Set(dbKey(prefixKey, id), got.Wrapped)
	case SharedDestroyed:
		err = k.setTombstone(b, id, []byte{version})
	default:
		return nil, fmt.Errorf("seal: load key %x: shared key store answered %v", id[:], got.State)
	}
	if err == nil {
		err = k.db.Commit(b, false)
	}
	if err != nil {
		return nil, fmt.Errorf("seal: load key %x: %w", id[:], err)
	}
	k.cache.put(id, aead)
	if aead == nil {
		return nil, fmt.Errorf("%w: %x", ErrKeyDestroyed, id[:])
	}
	return aead, nil
}

// markUnshared adds to b, a write of keys or tombstones without the shared
// store, the removal of the mark that every key here is shared.
func (k *Keyring) markUnshared(b *store.Batch) error {
	if k.shared != nil {
		return nil
	}
	return b.Delete(keyShared)
}

// shareChunk is how many keys Share offers in one Create call.
const shareChunk = 1024

// Share puts every key and tombstone of the keys database into the shared
// store, so that a node that ran alone (or ever ran without Options.Shared)
// brings its keys into a cluster: the other nodes then open what it sealed.
// It runs once per database: it records that everything is shared, and a
// keyring without a shared store that creates or destroys a key removes
// the record. A key the shared store holds differently (another node created
// the same id with another key before) is an error: data sealed under both
// exists, and only one can be shared. A key destroyed there is destroyed
// here. It returns how many keys and tombstones it shared.
func (k *Keyring) Share() (int, error) {
	if k.shared == nil {
		return 0, errors.New("seal: share: no shared store")
	}
	if _, err := k.db.Get(keyShared); err == nil {
		return 0, nil
	} else if !errors.Is(err, store.ErrNotFound) {
		return 0, fmt.Errorf("seal: share: %w", err)
	}
	k.writeMu.Lock()
	defer k.writeMu.Unlock()
	k.drainCreations()
	n := 0
	var destroyed [][]byte
	err := scanChunks(k.db, prefixKey, func(ids [][]byte, values [][]byte) error {
		offers := make([]SharedKey, len(ids))
		for i := range ids {
			offers[i] = SharedKey{ID: ids[i], State: SharedPresent, Wrapped: values[i]}
		}
		won, err := k.sharedCreate(offers)
		if err != nil {
			return err
		}
		for i, w := range won {
			switch {
			case w.State == SharedDestroyed:
				destroyed = append(destroyed, ids[i])
			case w.State == SharedPresent && bytes.Equal(w.Wrapped, values[i]):
				n++
			default:
				return fmt.Errorf("key %x is %v in the shared store with another key: this node's data under it would not open elsewhere", ids[i], w.State)
			}
		}
		return nil
	})
	if err == nil {
		err = scanChunks(k.db, prefixTombstone, func(ids [][]byte, _ [][]byte) error {
			n += len(ids)
			return k.sharedDestroy(ids)
		})
	}
	if err != nil {
		return n, fmt.Errorf("seal: share: %w", err)
	}
	k.loadMu.Lock()
	defer k.loadMu.Unlock()
	b := k.db.NewBatch()
	defer b.Close()
	for _, raw := range destroyed {
		id := keyID(raw)
		if err := b.Delete(dbKey(prefixKey, &id)); err != nil {
			return n, fmt.Errorf("seal: share: %w", err)
		}
		if err := k.setTombstone(b, &id, []byte{version}); err != nil {
			return n, fmt.Errorf("seal: share: %w", err)
		}
	}
	if err := b.Set(keyShared, []byte{version}); err != nil {
		return n, fmt.Errorf("seal: share: %w", err)
	}
	if err := k.db.Commit(b, true); err != nil {
		return n, fmt.Errorf("seal: share: %w", err)
	}
	for _, raw := range destroyed {
		id := keyID(raw)
		k.cache.put(&id, nil)
		k.raw.remove(&id)
	}
	return n, nil
}

// scanChunks calls fn with the ids and values under prefix, shareChunk at a
// time, outside the database iterator.
func scanChunks(db *store.DB, prefix []byte, fn func(ids, values [][]byte) error) error {
	lower, upper := prefix, store.PrefixEnd(prefix)
	for {
		var ids, values [][]byte
		err := db.Scan(lower, upper, false, func(k, v []byte) bool {
			if len(k) == len(prefix)+idLen {
				ids = append(ids, bytes.Clone(k[len(prefix):]))
				values = append(values, bytes.Clone(v))
			}
			lower = append(bytes.Clone(k), 0)
			return len(ids) < shareChunk
		})
		if err != nil {
			return err
		}
		if len(ids) == 0 {
			return nil
		}
		if err := fn(ids, values); err != nil {
			return err
		}
	}
}

// keyAdopted is the position (8 bytes, big-endian) of the last record of
// the shared store handed to Adopt.
var keyAdopted = []byte("meta/adopted")

// Adopt writes keys of the shared store to the keys database ahead of
// their first use, so that opening them costs no read of the shared store:
// the engine hands it what a follower of the store delivers, with pos, the
// follower's position, kept in the same batch (AdoptedPosition). Keys this
// database holds already, or holds destroyed, are left as they are (a
// destroyed key is never brought back); tombstones are not taken (a node
// destroys its copy when the erasure completes), nor keys that do not
// unwrap (their first use reports it). The write is not synced: lost in a
// crash, the keys are adopted again or read on first use. It returns how
// many keys it wrote.
func (k *Keyring) Adopt(keys []SharedKey, pos uint64) (int, error) {
	k.loadMu.RLock()
	defer k.loadMu.RUnlock()
	b := k.db.NewBatch()
	defer b.Close()
	n := 0
	for _, sk := range keys {
		id, err := toID(sk.ID)
		if err != nil || sk.State != SharedPresent {
			continue
		}
		if _, ok := k.cache.get(&id); ok {
			continue
		}
		if has, err := k.hasLocal(&id); err != nil {
			return 0, fmt.Errorf("seal: adopt: %w", err)
		} else if has {
			continue
		}
		dk, err := k.unwrapRaw(&id, sk.Wrapped)
		if err != nil {
			continue
		}
		clear(dk)
		if err := b.Set(dbKey(prefixKey, &id), sk.Wrapped); err != nil {
			return 0, fmt.Errorf("seal: adopt: %w", err)
		}
		n++
	}
	var p [8]byte
	binary.BigEndian.PutUint64(p[:], pos)
	if err := b.Set(keyAdopted, p[:]); err != nil {
		return 0, fmt.Errorf("seal: adopt: %w", err)
	}
	if err := k.db.Commit(b, false); err != nil {
		return 0, fmt.Errorf("seal: adopt: %w", err)
	}
	return n, nil
}

// hasLocal reports whether the keys database has a key or a tombstone for id.
func (k *Keyring) hasLocal(id *keyID) (bool, error) {
	for _, prefix := range [][]byte{prefixKey, prefixTombstone} {
		_, err := k.db.Get(dbKey(prefix, id))
		if err == nil {
			return true, nil
		}
		if !errors.Is(err, store.ErrNotFound) {
			return false, err
		}
	}
	return false, nil
}

// AdoptedPosition returns the pos of the last Adopt (0: none).
func (k *Keyring) AdoptedPosition() (uint64, error) {
	v, err := k.db.Get(keyAdopted)
	if errors.Is(err, store.ErrNotFound) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("seal: adopted position: %w", err)
	}
	if len(v) != 8 {
		return 0, fmt.Errorf("seal: adopted position: %d bytes, want 8", len(v))
	}
	return binary.BigEndian.Uint64(v), nil
}
