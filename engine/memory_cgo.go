//go:build cgo

package engine

// pebbleOutsideGo: built with cgo, Pebble allocates its block caches and
// memtables with C's allocator, outside the Go heap and its soft limit.
const pebbleOutsideGo = true
