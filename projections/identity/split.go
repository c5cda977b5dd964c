package identity

import (
	"bytes"
	"errors"
	"fmt"
	"slices"

	"github.com/aurumcdp/aurum/event"
	"github.com/aurumcdp/aurum/store"
)

// ErrSplit marks a split the keychain refuses: an identifier the profile
// does not own, every identifier of it, none, or a new profile id that
// exists already.
var ErrSplit = errors.New("identity: split refused")

// Split moves the identifiers ids (Type and Hash; each owned by the root of
// profile) to a new root profile newID, as an unmerge decides (issue #13):
// their ik entries point at newID, the root's node loses them and a new
// root node holds them. The profiles of follow (each merged into the root)
// go with them: they redirect to newID and move from the root's MergedFrom
// to newID's (the caller passes those whose events all moved, so that a
// reference to such a profile id finds the new profile). It returns the
// root, store.ErrNotFound for an unknown profile, or an error wrapping
// ErrSplit. Like Resolve it reads everything before it writes; the
// invariants of Check hold afterwards.
func (k *Keychain) Split(rw store.ReadWriter, profile []byte, ids []event.IDRef, newID []byte, follow [][]byte) ([]byte, error) {
	rootID, n, err := root(rw, profile)
	if err != nil {
		if errors.Is(err, store.ErrNotFound) {
			return nil, err
		}
		return nil, fmt.Errorf("identity: split: %w", err)
	}
	if len(newID) != IDLen {
		return nil, fmt.Errorf("%w: new profile id of %d bytes", ErrSplit, len(newID))
	}
	if _, err := rw.Get(ipKey(newID)); err == nil {
		return nil, fmt.Errorf("%w: profile %x exists already", ErrSplit, newID)
	} else if !errors.Is(err, store.ErrNotFound) {
		return nil, fmt.Errorf("identity: split: %w", err)
	}
	move := make([]nodeID, 0, len(ids))
	for _, id := range ids {
		x := nodeID{Type: id.Type, Hash: bytes.Clone(id.Hash)}
		if _, ok := slices.BinarySearchFunc(n.IDs, x, compareNodeID); !ok {
			return nil, fmt.Errorf("%w: identifier %s/%x is not the profile's", ErrSplit, id.Type, id.Hash)
		}
		move = append(move, x)
	}
	slices.SortFunc(move, compareNodeID)
	move = slices.CompactFunc(move, func(a, b nodeID) bool { return compareNodeID(a, b) == 0 })
	if len(move) == 0 {
		return nil, fmt.Errorf("%w: no identifier to move", ErrSplit)
	}
	if len(move) == len(n.IDs) {
		return nil, fmt.Errorf("%w: every identifier of the profile would move", ErrSplit)
	}
	follow = slices.SortedFunc(slices.Values(follow), bytes.Compare)
	follow = slices.CompactFunc(follow, bytes.Equal)
	for _, f := range follow {
		if _, ok := slices.BinarySearchFunc(n.MergedFrom, f, bytes.Compare); !ok {
			return nil, fmt.Errorf("%w: profile %x was not merged into %x", ErrSplit, f, rootID)
		}
	}
	stay := slices.DeleteFunc(slices.Clone(n.IDs), func(x nodeID) bool {
		_, moved := slices.BinarySearchFunc(move, x, compareNodeID)
		return moved
	})
	for _, x := range move {
		if err := rw.Set(ikKey(x.Type, x.Hash), bytes.Clone(newID)); err != nil {
			return nil, fmt.Errorf("identity: split: %w", err)
		}
	}
	n.IDs = stay
	n.MergedFrom = slices.DeleteFunc(n.MergedFrom, func(m []byte) bool {
		_, ok := slices.BinarySearchFunc(follow, m, bytes.Compare)
		return ok
	})
	if len(n.MergedFrom) == 0 {
		n.MergedFrom = nil
	}
	if err := rw.Set(ipKey(rootID), encodeNode(n)); err != nil {
		return nil, fmt.Errorf("identity: split: %w", err)
	}
	nn := &node{IDs: move}
	if len(follow) > 0 {
		nn.MergedFrom = follow
	}
	if err := rw.Set(ipKey(newID), encodeNode(nn)); err != nil {
		return nil, fmt.Errorf("identity: split: %w", err)
	}
	for _, f := range follow {
		if err := rw.Set(ipKey(f), encodeNode(&node{Redirect: bytes.Clone(newID)})); err != nil {
			return nil, fmt.Errorf("identity: split: %w", err)
		}
	}
	return rootID, nil
}
