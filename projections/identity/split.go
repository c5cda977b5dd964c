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
// root node holds them. The root keeps its MergedFrom (the profiles merged
// into it still redirect to it; their event records are the caller's
// business). It returns the root, store.ErrNotFound for an unknown
// profile, or an error wrapping ErrSplit. Like Resolve it reads everything
// before it writes; the invariants of Check hold afterwards.
func (k *Keychain) Split(rw store.ReadWriter, profile []byte, ids []event.IDRef, newID []byte) ([]byte, error) {
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
	if err := rw.Set(ipKey(rootID), encodeNode(n)); err != nil {
		return nil, fmt.Errorf("identity: split: %w", err)
	}
	if err := rw.Set(ipKey(newID), encodeNode(&node{IDs: move})); err != nil {
		return nil, fmt.Errorf("identity: split: %w", err)
	}
	return rootID, nil
}
