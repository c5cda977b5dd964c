package identity

import (
	"bytes"
	"fmt"
	"slices"

	"github.com/aurumcdp/aurum/store"
)

// Check scans the whole keychain in r and verifies its structural invariants
// (see the package documentation). It holds the keychain in memory and is
// meant for tests and offline verification. Errors wrap ErrCorrupt.
func Check(r store.Reader) error {
	_, err := check(r)
	return err
}

// Check verifies the structural invariants (see the package-level Check) and
// that no profile exceeds a limit of the keychain's configuration.
func (k *Keychain) Check(r store.Reader) error {
	roots, err := check(r)
	if err != nil {
		return err
	}
	for _, p := range sortedKeys(roots) {
		c := counts(roots[p])
		for _, typ := range sortedKeys(c) {
			if lim := k.cfg.Limits[typ]; lim > 0 && c[typ] > lim {
				return fmt.Errorf("%w: profile %x owns %d %s identifiers, limit %d", ErrCorrupt, p, c[typ], typ, lim)
			}
		}
	}
	return nil
}

// check returns the root nodes by profile id.
func check(r store.Reader) (map[string]*node, error) {
	nodes := make(map[string]*node)
	var err error
	scanErr := r.Scan(prefixIP, store.PrefixEnd(prefixIP), false, func(key, value []byte) bool {
		id := key[len(prefixIP):]
		if len(id) != IDLen {
			err = fmt.Errorf("%w: ip key %q: profile id of %d bytes", ErrCorrupt, key, len(id))
			return false
		}
		n, e := decodeNode(value)
		if e != nil {
			err = fmt.Errorf("profile %x: %w", id, e)
			return false
		}
		nodes[string(id)] = n
		return true
	})
	if scanErr != nil {
		return nil, fmt.Errorf("identity: check: %w", scanErr)
	}
	if err != nil {
		return nil, err
	}

	// ik entries, grouped by the root they point at.
	owned := make(map[string][]nodeID)
	scanErr = r.Scan(prefixIK, store.PrefixEnd(prefixIK), false, func(key, value []byte) bool {
		rest := key[len(prefixIK):]
		if len(rest) < IDLen+2 || rest[len(rest)-IDLen-1] != '/' {
			err = fmt.Errorf("%w: malformed ik key %q", ErrCorrupt, key)
			return false
		}
		id := nodeID{Type: string(rest[:len(rest)-IDLen-1]), Hash: slices.Clone(rest[len(rest)-IDLen:])}
		n, ok := nodes[string(value)]
		switch {
		case len(value) != IDLen:
			err = fmt.Errorf("%w: ik %s/%x: value of %d bytes", ErrCorrupt, id.Type, id.Hash, len(value))
		case !ok:
			err = fmt.Errorf("%w: ik %s/%x points at missing profile %x", ErrCorrupt, id.Type, id.Hash, value)
		case n.Redirect != nil:
			err = fmt.Errorf("%w: ik %s/%x points at merged profile %x", ErrCorrupt, id.Type, id.Hash, value)
		default:
			owned[string(value)] = append(owned[string(value)], id)
			return true
		}
		return false
	})
	if scanErr != nil {
		return nil, fmt.Errorf("identity: check: %w", scanErr)
	}
	if err != nil {
		return nil, err
	}

	for _, ids := range owned {
		// Key order equals (type, hash) order unless a type contains a byte
		// below '/'.
		slices.SortFunc(ids, compareNodeID)
	}
	roots := make(map[string]*node)
	for _, p := range sortedKeys(nodes) {
		n := nodes[p]
		if n.Redirect != nil {
			if len(n.IDs) != 0 || len(n.MergedFrom) != 0 {
				return nil, fmt.Errorf("%w: merged profile %x still owns identifiers or merges", ErrCorrupt, p)
			}
			rn, ok := nodes[string(n.Redirect)]
			if !ok || rn.Redirect != nil {
				return nil, fmt.Errorf("%w: profile %x redirects to %x, which is not a root", ErrCorrupt, p, n.Redirect)
			}
			if _, found := slices.BinarySearchFunc(rn.MergedFrom, []byte(p), bytes.Compare); !found {
				return nil, fmt.Errorf("%w: profile %x redirects to %x, which does not list it", ErrCorrupt, p, n.Redirect)
			}
			continue
		}
		roots[p] = n
		if !slices.IsSortedFunc(n.IDs, compareNodeID) || len(slices.CompactFunc(slices.Clone(n.IDs), func(a, b nodeID) bool { return compareNodeID(a, b) == 0 })) != len(n.IDs) {
			return nil, fmt.Errorf("%w: profile %x: identifiers not sorted and distinct", ErrCorrupt, p)
		}
		if !slices.EqualFunc(n.IDs, owned[p], func(a, b nodeID) bool { return compareNodeID(a, b) == 0 }) {
			return nil, fmt.Errorf("%w: profile %x lists %d identifiers, %d ik entries point at it", ErrCorrupt, p, len(n.IDs), len(owned[p]))
		}
		for i, m := range n.MergedFrom {
			if i > 0 && bytes.Compare(n.MergedFrom[i-1], m) >= 0 {
				return nil, fmt.Errorf("%w: profile %x: merged-from not sorted and distinct", ErrCorrupt, p)
			}
			mn, ok := nodes[string(m)]
			if !ok || !bytes.Equal(mn.Redirect, []byte(p)) {
				return nil, fmt.Errorf("%w: profile %x lists %x as merged, which does not redirect to it", ErrCorrupt, p, m)
			}
		}
	}
	return roots, nil
}
