package engine

import (
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/aurumcdp/aurum/projections"
	"github.com/aurumcdp/aurum/seal"
	"github.com/aurumcdp/aurum/store"
)

// StateCacheSize is the Pebble block cache of the state store (state/ and
// every store built beside it: rebuilds, replays, snapshots being written).
// It is fixed, so the memory does not grow with the number of profiles.
//
// 128 MiB: at 100k people (a 250 MB state store) the tables' index and
// filter blocks stay resident at 128 MiB but not at 64 MiB, where every
// event read 19 blocks from the files (with filters 16) against 5 at 128
// MiB and 4 at 256 MiB (BenchmarkApplyScale, bench/RESULTS.md). The cost
// is 64 MiB more resident memory than before, once the state outgrows it.
const StateCacheSize = 128 << 20

// StateStoreOptions are the options a state store is opened with when no
// memory limit applies (a digest of a stopped node's state, the
// benchmarks): bloom filters on every level (store's default), a block
// cache of StateCacheSize and 32 MB memtables. An engine opens its state
// stores (the live one, a rebuild, an offline replay, a snapshot) with
// the sizes of its Options.MemoryLimit (MemorySizes). logger nil:
// slog.Default().
func StateStoreOptions(logger *slog.Logger) *store.Options {
	return MemorySizesFor(0).stateStore(logger)
}

// openStateMachine builds the state machine over a state store, the one way
// for each of them (the live one, a rebuild's, an offline replay's):
// parts partitions, the dedup window, trait values unsealed with keys,
// the state cache and dedup filter of mem.
func openStateMachine(db store.Reader, parts int, dedup time.Duration, keys *seal.Keyring, mem MemorySizes) (*projections.StateMachine, error) {
	return openStateMachineWith(db, parts, dedup, keys, mem, stateOpener(keys))
}

// openReplayStateMachine is openStateMachine for a replay or rebuild: its
// opener answers first from the plaintexts the fetch stage opened ahead.
func openReplayStateMachine(db store.Reader, parts int, dedup time.Duration, keys *seal.Keyring, mem MemorySizes, po *preOpener) (*projections.StateMachine, error) {
	return openStateMachineWith(db, parts, dedup, keys, mem, po.Open)
}

func openStateMachineWith(db store.Reader, parts int, dedup time.Duration, keys *seal.Keyring, mem MemorySizes, open func(keyID, sealed []byte) ([]byte, error)) (*projections.StateMachine, error) {
	return projections.Open(db, projections.Options{
		Partitions:          parts,
		DedupWindow:         dedup.Milliseconds(),
		CacheBytes:          mem.StateCache,
		DedupFilterBytes:    mem.DedupFilter,
		KeychainFilterBytes: mem.KeychainFilter,
		RowCacheBytes:       mem.RowCache,
		Open:                open,
		InteractionKey:      InteractionKey(keys),
		BlockHash:           func(key string) []byte { return keys.Hash("match_block", key) },
	})
}

// stateOpener is keys.Open for the state machine: the failures that will
// never change (a destroyed or unknown key, a corrupt value) are marked
// projections.ErrUnreadable, so the state machine takes the value as absent
// alike in every replay; any other failure (reading the keys database)
// fails the apply, which is retried from the log after a restart.
func stateOpener(keys *seal.Keyring) func(keyID, sealed []byte) ([]byte, error) {
	return func(keyID, sealed []byte) ([]byte, error) {
		pt, err := keys.Open(keyID, sealed)
		if err != nil && (errors.Is(err, seal.ErrKeyDestroyed) || errors.Is(err, seal.ErrUnknownKey) || errors.Is(err, seal.ErrCorrupt)) {
			err = fmt.Errorf("%w: %w", projections.ErrUnreadable, err)
		}
		return pt, err
	}
}

// InteractionKey is the feature row's key of a category or product value:
// hex of the first 8 bytes of the keyring's keyed hash of
// "interaction.<kind>:<value>" (64 bits: a collision among one profile's
// 64 kept keys is negligible). The hashes of the last values seen are
// kept (a pure function's cache, bounded: cleared when full), sparing an
// HMAC per interaction of the hot categories and products.
func InteractionKey(keys *seal.Keyring) func(kind, value string) string {
	const max = 4096
	var (
		mu sync.Mutex
		n  int // values cached, over the kinds
		// By kind, then value: two string look-ups, which the runtime
		// does faster than one of a struct of two strings (that was 80 %
		// of the look-up's time, issue #12's feature upkeep).
		byKind = map[string]map[string]string{}
	)
	return func(kind, value string) string {
		mu.Lock()
		k, ok := byKind[kind][value]
		mu.Unlock()
		if ok {
			return k
		}
		k = hex.EncodeToString(keys.Hash("interaction."+kind, value)[:8])
		mu.Lock()
		if n >= max {
			clear(byKind)
			n = 0
		}
		m := byKind[kind]
		if m == nil {
			m = make(map[string]string)
			byKind[kind] = m
		}
		if _, dup := m[value]; !dup {
			m[value] = k
			n++
		}
		mu.Unlock()
		return k
	}
}
