package store

import (
	"bytes"
	"sort"
)

// Mem is an in-memory ReadWriter for tests. It is not safe for concurrent use.
type Mem struct {
	m map[string][]byte
}

var _ ReadWriter = (*Mem)(nil)

// NewMem returns an empty in-memory store.
func NewMem() *Mem { return &Mem{m: make(map[string][]byte)} }

// Get implements Reader.
func (s *Mem) Get(key []byte) ([]byte, error) {
	v, ok := s.m[string(key)]
	if !ok {
		return nil, ErrNotFound
	}
	return append([]byte(nil), v...), nil
}

// Scan implements Reader.
func (s *Mem) Scan(lower, upper []byte, reverse bool, fn func(key, value []byte) bool) error {
	keys := make([]string, 0, len(s.m))
	for k := range s.m {
		kb := []byte(k)
		if bytes.Compare(kb, lower) >= 0 && (upper == nil || bytes.Compare(kb, upper) < 0) {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	if reverse {
		for i, j := 0, len(keys)-1; i < j; i, j = i+1, j-1 {
			keys[i], keys[j] = keys[j], keys[i]
		}
	}
	for _, k := range keys {
		if !fn([]byte(k), s.m[k]) {
			return nil
		}
	}
	return nil
}

// Set implements Writer.
func (s *Mem) Set(key, value []byte) error {
	s.m[string(key)] = append([]byte(nil), value...)
	return nil
}

// Delete implements Writer.
func (s *Mem) Delete(key []byte) error {
	delete(s.m, string(key))
	return nil
}

// Len returns the number of keys.
func (s *Mem) Len() int { return len(s.m) }
