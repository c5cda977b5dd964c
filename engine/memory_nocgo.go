//go:build !cgo

package engine

// pebbleOutsideGo: built without cgo, Pebble's block caches and memtables
// are Go heap, under the Go runtime's soft limit.
const pebbleOutsideGo = false
