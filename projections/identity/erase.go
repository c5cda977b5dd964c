package identity

import (
	"errors"
	"fmt"

	"github.com/aurumcdp/aurum/event"
	"github.com/aurumcdp/aurum/store"
)

// Erased is what Erase removed from the keychain.
type Erased struct {
	// Identifiers are those the profile owned (Type and Hash), sorted by
	// type then hash.
	Identifiers []event.IDRef
	// MergedFrom are the profiles merged into it, sorted.
	MergedFrom [][]byte
}

// Erase removes the root profile (the root of profile) from the keychain:
// the ik entries of all its identifiers, its node and the nodes of every
// profile merged into it (they redirect to it). The invariants of Check
// hold afterwards. It returns store.ErrNotFound for an unknown profile.
// Like Resolve, it reads everything before it writes.
func (k *Keychain) Erase(rw store.ReadWriter, profile []byte) (Erased, []byte, error) {
	id, n, err := root(rw, profile)
	if err != nil {
		if errors.Is(err, store.ErrNotFound) {
			return Erased{}, nil, err
		}
		return Erased{}, nil, fmt.Errorf("identity: erase: %w", err)
	}
	out := Erased{MergedFrom: n.MergedFrom}
	for _, x := range n.IDs {
		out.Identifiers = append(out.Identifiers, event.IDRef{Type: x.Type, Hash: x.Hash})
	}
	for _, x := range n.IDs {
		if err := rw.Delete(ikKey(x.Type, x.Hash)); err != nil {
			return Erased{}, nil, fmt.Errorf("identity: erase: %w", err)
		}
	}
	for _, m := range n.MergedFrom {
		if err := rw.Delete(ipKey(m)); err != nil {
			return Erased{}, nil, fmt.Errorf("identity: erase: %w", err)
		}
	}
	if err := rw.Delete(ipKey(id)); err != nil {
		return Erased{}, nil, fmt.Errorf("identity: erase: %w", err)
	}
	return out, id, nil
}
