package identity

import (
	"bytes"
	"cmp"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/aurumcdp/aurum/store"
)

// entry is one distinct identifier of the event being resolved.
type entry struct {
	idx    int // first input index
	typ    string
	hash   []byte
	key    []byte // ikKey(typ, hash)
	weak   bool   // all occurrences weak
	owner  []byte // root owning it before the event; nil if unknown
	ignore bool   // unknown weak identifier that does not take part
	reason string // refusal reason, if refused
}

// txn buffers the writes of one Resolve so that nothing is written unless all
// reads succeed. Writes are applied in a deterministic order.
type txn struct {
	r       store.Reader
	nodes   map[string]*node // loaded or created nodes, by profile id
	dirty   []string         // profile ids of nodes to write, in order of first change
	isDirty map[string]bool
	ik      map[string][]byte // ik key → profile id
	ikOrder []string
}

func (t *txn) node(profile []byte) (*node, error) {
	if n, ok := t.nodes[string(profile)]; ok {
		return n, nil
	}
	n, err := getNode(t.r, profile)
	if err != nil {
		if errors.Is(err, store.ErrNotFound) {
			return nil, fmt.Errorf("%w: profile %x is referenced but missing", ErrCorrupt, profile)
		}
		return nil, err
	}
	t.nodes[string(profile)] = n
	return n, nil
}

func (t *txn) markDirty(profile []byte) {
	if !t.isDirty[string(profile)] {
		t.isDirty[string(profile)] = true
		t.dirty = append(t.dirty, string(profile))
	}
}

func (t *txn) setIK(typ string, hash, profile []byte) {
	k := string(ikKey(typ, hash))
	if _, ok := t.ik[k]; !ok {
		t.ikOrder = append(t.ikOrder, k)
	}
	t.ik[k] = profile
}

func (t *txn) commit(w store.Writer) error {
	for _, k := range t.ikOrder {
		if err := w.Set([]byte(k), t.ik[k]); err != nil {
			return err
		}
	}
	for _, p := range t.dirty {
		if err := w.Set(ipKey([]byte(p)), encodeNode(t.nodes[p])); err != nil {
			return err
		}
	}
	return nil
}

// merge merges root loser into root survivor.
func (t *txn) merge(loser, survivor []byte) error {
	ln, err := t.node(loser)
	if err != nil {
		return err
	}
	sn, err := t.node(survivor)
	if err != nil {
		return err
	}
	for _, id := range ln.IDs {
		t.setIK(id.Type, id.Hash, survivor)
	}
	sn.IDs = append(sn.IDs, ln.IDs...)
	slices.SortFunc(sn.IDs, compareNodeID)
	for _, m := range ln.MergedFrom {
		mn, err := t.node(m)
		if err != nil {
			return err
		}
		mn.Redirect = survivor
		t.markDirty(m)
	}
	sn.MergedFrom = append(sn.MergedFrom, ln.MergedFrom...)
	sn.MergedFrom = append(sn.MergedFrom, loser)
	slices.SortFunc(sn.MergedFrom, bytes.Compare)
	sn.MergedFrom = slices.CompactFunc(sn.MergedFrom, bytes.Equal)
	*ln = node{Redirect: survivor}
	t.markDirty(loser)
	t.markDirty(survivor)
	return nil
}

// counts returns the number of identifiers per type of n.
func counts(n *node) map[string]int {
	c := make(map[string]int)
	for _, id := range n.IDs {
		c[id.Type]++
	}
	return c
}

// exceedsOne returns typ if one more identifier of type typ would take the
// count in a past its limit, or "": exceeds(a, {typ: 1}).
func (k *Keychain) exceedsOne(a map[string]int, typ string) string {
	if lim := k.cfg.Limits[typ]; lim > 0 && a[typ]+1 > lim {
		return typ
	}
	return ""
}

// createsBefore reports whether ProfileID(eventID, t) sorts before target
// (a profile id), hashing only when their times are equal: the time is the
// id's first 6 bytes.
func createsBefore(eventID []byte, t int64, target []byte) bool {
	var ts [8]byte
	binary.BigEndian.PutUint64(ts[:], uint64(max(0, min(t, maxULIDTime))))
	if c := bytes.Compare(ts[2:], target[:6]); c != 0 {
		return c < 0
	}
	return bytes.Compare(ProfileID(eventID, t), target) < 0
}

// sameOwner returns the profile owning every entry when all of them are
// known and have the same owner, else nil.
func sameOwner(ents []*entry) []byte {
	var one []byte
	for _, e := range ents {
		if e.owner == nil || one != nil && !bytes.Equal(e.owner, one) {
			return nil
		}
		one = e.owner
	}
	return one
}

// smallEvent is the number of identifiers up to which resolve finds an
// event's duplicate identifiers by comparing them (no map).
const smallEvent = 16

// exceeds returns the first type (alphabetically) whose count in a plus b
// would exceed its limit, or "".
func (k *Keychain) exceeds(a, b map[string]int) string {
	var worst string
	for typ, nb := range b {
		lim := k.cfg.Limits[typ]
		if lim > 0 && a[typ]+nb > lim && (worst == "" || typ < worst) {
			worst = typ
		}
	}
	return worst
}

// Resolve resolves one event against the keychain in rw and records the
// outcome there (see the package documentation for the rules). It reads all it
// needs before writing; on error nothing has been written by this call unless
// the error comes from rw's Set.
func (k *Keychain) Resolve(rw store.ReadWriter, in Input) (Result, error) {
	res, err := k.resolve(rw, in)
	if err != nil {
		return Result{}, fmt.Errorf("identity: resolve event %x: %w", in.EventID, err)
	}
	return res, nil
}

func (k *Keychain) resolve(rw store.ReadWriter, in Input) (Result, error) {
	if len(in.EventID) != IDLen {
		return Result{}, fmt.Errorf("%w: event id of %d bytes, want %d", ErrInvalidInput, len(in.EventID), IDLen)
	}
	if len(in.IDs) == 0 {
		return Result{}, ErrNoIdentifiers
	}

	// 1. Deduplicate and look up.
	var ents []*entry
	canon := make([]*entry, len(in.IDs))
	var byKey map[string]*entry // only for events with many identifiers
	if len(in.IDs) > smallEvent {
		byKey = make(map[string]*entry, len(in.IDs))
	}
	for i, id := range in.IDs {
		if id.Type == "" || strings.ContainsAny(id.Type, "/\x00") || len(id.Type) > maxTypeLen {
			return Result{}, fmt.Errorf("%w: identifier %d: invalid type %q", ErrInvalidInput, i, id.Type)
		}
		if len(id.Hash) != IDLen {
			return Result{}, fmt.Errorf("%w: identifier %d (%s): hash of %d bytes, want %d", ErrInvalidInput, i, id.Type, len(id.Hash), IDLen)
		}
		key := ikKey(id.Type, id.Hash)
		var dup *entry
		if byKey != nil {
			dup = byKey[string(key)]
		} else {
			for _, e := range ents {
				if bytes.Equal(e.key, key) {
					dup = e
					break
				}
			}
		}
		if dup != nil {
			dup.weak = dup.weak && id.Weak
			canon[i] = dup
			continue
		}
		e := &entry{idx: i, typ: id.Type, hash: id.Hash, key: key, weak: id.Weak}
		if byKey != nil {
			byKey[string(key)] = e
		}
		canon[i] = e
		ents = append(ents, e)
	}
	for _, e := range ents {
		v, err := rw.Get(e.key)
		switch {
		case errors.Is(err, store.ErrNotFound):
		case err != nil:
			return Result{}, err
		case len(v) != IDLen:
			return Result{}, fmt.Errorf("%w: ik %s/%x: value of %d bytes", ErrCorrupt, e.typ, e.hash, len(v))
		default:
			e.owner = v
		}
	}

	// A returning person: every identifier is known and owned by the same
	// profile. Steps 2 to 5 then adopt that profile as the target (its
	// node is a root: ik entries point at roots only), ignore, refuse,
	// merge and attach nothing, and write nothing, unless the event's own
	// profile id sorts before it (step 4): the result is known without
	// reading the node.
	if one := sameOwner(ents); !k.slow && one != nil && !createsBefore(in.EventID, in.Time, one) {
		res := Result{Profile: one, Owned: make([]int, len(in.IDs))}
		for i := range res.Owned {
			res.Owned[i] = i
		}
		return res, nil
	}
	in.EventID = slices.Clone(in.EventID)
	t := &txn{
		r:       rw,
		nodes:   make(map[string]*node),
		isDirty: make(map[string]bool),
		ik:      make(map[string][]byte),
	}

	// 2. Weak identifiers.
	var lastWeak *entry
	weakKnown := false
	for i := range in.IDs {
		if e := canon[i]; e.weak {
			lastWeak = e
			weakKnown = weakKnown || e.owner != nil
		}
	}
	if lastWeak != nil {
		for _, e := range ents {
			if e.weak && e.owner == nil {
				e.ignore = true
			}
		}
		if !weakKnown {
			lastWeak.ignore = false
		}
	}

	// 3. Build the working profile in priority order.
	slices.SortStableFunc(ents, func(a, b *entry) int {
		if c := k.cfg.Compare(a.typ, b.typ); c != 0 {
			return c
		}
		return cmp.Compare(a.idx, b.idx)
	})
	var (
		target  []byte                // current root of the working profile; nil if none yet
		cnt     = map[string]int{}    // identifiers per type of the working profile
		pending []*entry              // unknown identifiers to attach
		link    *entry                // the entry that linked target first
		inT     = map[string]bool{}   // roots merged into the working profile
		refused = map[string]string{} // candidate roots left alone → reason
		res     Result
	)
	for _, e := range ents {
		if e.ignore {
			continue
		}
		if e.owner == nil {
			if typ := k.exceedsOne(cnt, e.typ); typ != "" {
				e.reason = fmt.Sprintf("exceeds limit %s=%d", typ, k.cfg.Limits[typ])
				continue
			}
			cnt[e.typ]++
			pending = append(pending, e)
			continue
		}
		owner := string(e.owner)
		if inT[owner] {
			continue
		}
		if r, ok := refused[owner]; ok {
			e.reason = r
			continue
		}
		n, err := t.node(e.owner)
		if err != nil {
			return Result{}, err
		}
		if n.Redirect != nil {
			return Result{}, fmt.Errorf("%w: ik %s/%x points at merged profile %x", ErrCorrupt, e.typ, e.hash, e.owner)
		}
		nc := counts(n)
		if target == nil && len(pending) == 0 {
			// The highest-priority identifier is known: its profile is the
			// target, whatever it holds.
			target, link, cnt = e.owner, e, nc
			inT[owner] = true
			continue
		}
		if typ := k.exceeds(cnt, nc); typ != "" {
			refused[owner] = fmt.Sprintf("merge would exceed limit %s=%d", typ, k.cfg.Limits[typ])
			e.reason = refused[owner]
			continue
		}
		for typ, c := range nc {
			cnt[typ] += c
		}
		inT[owner] = true
		if target == nil {
			target, link = e.owner, e
			continue
		}
		loser, survivor := e.owner, target
		if bytes.Compare(loser, survivor) < 0 {
			loser, survivor = survivor, loser
		}
		if err := t.merge(loser, survivor); err != nil {
			return Result{}, err
		}
		res.Merges = append(res.Merges, Merge{From: loser, Into: survivor, EventID: in.EventID, Type: e.typ, Hash: e.hash})
		target = survivor
	}

	if target == nil && len(pending) == 0 {
		// Unreachable: the first identifier that takes part is either known
		// (adopted) or unknown (always within a limit of at least 1).
		panic("identity: resolve: no profile and nothing to attach")
	}

	// 4. Create or rename.
	if target == nil || createsBefore(in.EventID, in.Time, target) {
		pe := ProfileID(in.EventID, in.Time)
		if _, err := rw.Get(ipKey(pe)); err == nil {
			if target == nil {
				return Result{}, fmt.Errorf("%w: profile %x of this event already exists", ErrCorrupt, pe)
			}
		} else if !errors.Is(err, store.ErrNotFound) {
			return Result{}, err
		} else {
			t.nodes[string(pe)] = &node{}
			t.markDirty(pe)
			res.Created = true
			if target != nil {
				if err := t.merge(target, pe); err != nil {
					return Result{}, err
				}
				res.Merges = append(res.Merges, Merge{From: target, Into: pe, EventID: in.EventID, Type: link.typ, Hash: link.hash})
			}
			target = pe
		}
	}
	if len(pending) > 0 {
		n, err := t.node(target)
		if err != nil {
			return Result{}, err
		}
		for _, e := range pending {
			n.IDs = append(n.IDs, nodeID{Type: e.typ, Hash: e.hash})
			t.setIK(e.typ, e.hash, target)
		}
		slices.SortFunc(n.IDs, compareNodeID)
		t.markDirty(target)
	}

	// 5. Report.
	res.Profile = target
	for i := range in.IDs {
		e := canon[i]
		owner := e.owner
		if p, ok := t.ik[string(e.key)]; ok {
			owner = p
		}
		switch {
		case bytes.Equal(owner, target):
			res.Owned = append(res.Owned, i)
		case e.reason != "":
			res.Refused = append(res.Refused, Refusal{Index: i, Reason: e.reason})
		}
	}
	if err := t.commit(rw); err != nil {
		return Result{}, err
	}
	return res, nil
}
