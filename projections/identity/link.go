package identity

import (
	"bytes"
	"errors"
	"fmt"

	"github.com/aurumcdp/aurum/store"
)

// ErrLimit marks a link refused because the union of the two profiles would
// exceed an identity limit (two different user_ids, ...).
var ErrLimit = errors.New("identity: link refused by a limit")

// Link merges the profiles whose roots are those of a and b, as a
// probabilistic match or a reviewer decides: the lexically smaller root
// survives, as in Resolve. It returns the merge performed, or an error
// wrapping ErrLimit when the union would exceed a limit of the config (a
// hard constraint: no probability overrides it), store.ErrNotFound when
// either profile is unknown (an erased profile is unknown), and a Merge
// with From nil when both already share a root. Like Resolve it reads
// everything before it writes.
func (k *Keychain) Link(rw store.ReadWriter, a, b []byte) (Merge, error) {
	ra, na, err := root(rw, a)
	if err != nil {
		return Merge{}, wrapLookup(err)
	}
	rb, nb, err := root(rw, b)
	if err != nil {
		return Merge{}, wrapLookup(err)
	}
	if bytes.Equal(ra, rb) {
		return Merge{Into: ra}, nil
	}
	if typ := k.exceeds(counts(na), counts(nb)); typ != "" {
		return Merge{}, fmt.Errorf("%w: %s (at most %d per profile)", ErrLimit, typ, k.cfg.Limits[typ])
	}
	loser, survivor := rb, ra
	if bytes.Compare(rb, ra) < 0 {
		loser, survivor = ra, rb
	}
	t := &txn{r: rw, nodes: map[string]*node{}, isDirty: map[string]bool{}, ik: map[string][]byte{}}
	if err := t.merge(loser, survivor); err != nil {
		return Merge{}, fmt.Errorf("identity: link: %w", err)
	}
	if err := t.commit(rw); err != nil {
		return Merge{}, fmt.Errorf("identity: link: %w", err)
	}
	return Merge{From: loser, Into: survivor}, nil
}

func wrapLookup(err error) error {
	if errors.Is(err, store.ErrNotFound) {
		return err
	}
	return fmt.Errorf("identity: link: %w", err)
}

// Linkable reports whether Link of a and b would pass the limits: nil, or
// an error wrapping ErrLimit (or store.ErrNotFound for an unknown profile).
// It only reads.
func (k *Keychain) Linkable(r store.Reader, a, b []byte) error {
	ra, na, err := root(r, a)
	if err != nil {
		return wrapLookup(err)
	}
	rb, nb, err := root(r, b)
	if err != nil {
		return wrapLookup(err)
	}
	if bytes.Equal(ra, rb) {
		return nil
	}
	if typ := k.exceeds(counts(na), counts(nb)); typ != "" {
		return fmt.Errorf("%w: %s (at most %d per profile)", ErrLimit, typ, k.cfg.Limits[typ])
	}
	return nil
}
