// Package store is Aurum's key-value storage boundary. It is the only package
// that imports Pebble. Projections are written against the small interfaces
// here so that they can be tested on the in-memory implementation and run on
// Pebble unchanged.
package store

import "errors"

// ErrNotFound is returned by Get when the key does not exist.
var ErrNotFound = errors.New("store: not found")

// Reader reads keys. Returned slices are owned by the caller.
type Reader interface {
	// Get returns a copy of the value of key, or ErrNotFound.
	Get(key []byte) ([]byte, error)
	// Scan calls fn for each key in [lower, upper) in ascending order (or
	// descending when reverse is set) until fn returns false. The slices
	// passed to fn are valid only during the call.
	Scan(lower, upper []byte, reverse bool, fn func(key, value []byte) bool) error
}

// Writer writes keys. Writers copy key and value.
type Writer interface {
	Set(key, value []byte) error
	Delete(key []byte) error
}

// ReadWriter reads its own writes.
type ReadWriter interface {
	Reader
	Writer
}

// PrefixEnd returns the smallest key greater than every key with the prefix,
// or nil if there is none (prefix of all 0xff).
func PrefixEnd(prefix []byte) []byte {
	end := append([]byte(nil), prefix...)
	for i := len(end) - 1; i >= 0; i-- {
		end[i]++
		if end[i] != 0 {
			return end[:i+1]
		}
	}
	return nil
}
