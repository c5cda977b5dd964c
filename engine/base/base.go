// Package base is the vocabulary the engine's stages share: the error kinds
// callers test with errors.Is, profile references ("type:value") and the
// node's ULID source. It imports no Aurum package. (Like pebble's
// internal/base; public because api and cmd/aurum test these errors.)
package base

import (
	"crypto/rand"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/oklog/ulid/v2"
)

// The error kinds of the engine and its stages. Their texts keep the
// "engine:" prefix they had before the stages moved out of engine.
var (
	// ErrClosed is returned by operations on a closed engine.
	ErrClosed = errors.New("engine: closed")
	// ErrNotFound is returned for an identifier, profile or object that
	// Aurum does not know.
	ErrNotFound = errors.New("engine: not found")
	// ErrBadRef is returned for a malformed profile reference.
	ErrBadRef = errors.New("engine: bad profile reference")
	// ErrInvalid marks a request the caller must change before retrying.
	ErrInvalid = errors.New("engine: invalid")
)

// ParseRef splits a profile reference "type:value" (email:rob@example.com,
// user_id:42, profile_id:01J..., loyalty_id:L1, ...).
func ParseRef(ref string) (typ, value string, err error) {
	typ, value, ok := strings.Cut(ref, ":")
	if !ok || typ == "" || strings.TrimSpace(value) == "" {
		return "", "", fmt.Errorf("%w: %q: want type:value, e.g. email:rob@example.com", ErrBadRef, ref)
	}
	return strings.ToLower(typ), value, nil
}

// IDSource makes ULIDs: time from the edge clock, monotonic entropy. It is
// safe for concurrent use.
type IDSource struct {
	mu      sync.Mutex
	entropy *ulid.MonotonicEntropy
}

// NewIDSource returns an IDSource.
func NewIDSource() *IDSource { return &IDSource{entropy: ulid.Monotonic(rand.Reader, 0)} }

// Next returns a new ULID (16 bytes) of time t.
func (s *IDSource) Next(t time.Time) []byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	u, err := ulid.New(ulid.Timestamp(t), s.entropy)
	if err != nil { // entropy overflow within one millisecond: take a fresh one
		u = ulid.MustNew(ulid.Timestamp(t), rand.Reader)
	}
	return u[:]
}

// ULIDString is the text form of a 16-byte ULID (a shorter b is padded
// with zeros).
func ULIDString(b []byte) string {
	var u ulid.ULID
	copy(u[:], b)
	return u.String()
}
