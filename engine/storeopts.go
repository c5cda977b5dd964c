package engine

import (
	"log/slog"

	"github.com/aurumcdp/aurum/store"
)

// StateCacheSize is the Pebble block cache of the state store (state/ and
// every store built beside it: rebuilds, replays, snapshots being written).
// It is fixed, so the memory does not grow with the number of profiles.
const StateCacheSize = 64 << 20

// StateStoreOptions are the options every state store is opened with (the
// live one, a rebuild, an offline replay, a snapshot, a digest): bloom
// filters on every level (store's default) and a block cache of
// StateCacheSize. logger nil: slog.Default().
func StateStoreOptions(logger *slog.Logger) *store.Options {
	return &store.Options{CacheSize: StateCacheSize, Logger: logger}
}
