// Package identity is the identity keychain: a deterministic state machine
// over the event log that groups identifiers into profiles.
//
// Resolve sees each event's identifiers (keyed hashes, never plaintext:
// event.IDRef) in log order and keeps the keychain in a store.ReadWriter (the
// engine passes a Pebble batch that reads its own writes). It never reads the
// wall clock: the same inputs in the same order on the same state give
// byte-identical state and results.
//
// # Profile ids
//
// A profile id is a 16-byte ULID made from the event that creates the
// profile: time = max(0, Input.Time) ms (clamped to the ULID maximum),
// entropy = the first 10 bytes of sha256("aurum/profile" || EventID). Every
// event is a potential creator: its candidate id is P(e).
//
// The older profile id survives a merge: the survivor is the lexically smaller
// id (= earlier event time, ties broken by the entropy). The other profile gets
// a redirect to the survivor, and all its identifiers are re-pointed at the
// survivor, so Lookup is one Get. Redirects are compressed: every redirect
// points directly at a root, so Root is at most two Gets.
//
// # Resolution of one event
//
//  1. The identifiers are deduplicated (same type and hash) and taken in
//     priority order (Config.Compare, ties by input order). Each is looked up:
//     known identifiers have an owning (root) profile, the candidates.
//  2. Weak identifiers (an alias's previousId arrives as two weak IDRefs,
//     {user_id, v} and {anonymous_id, v}) only link to a profile already
//     owning them: a known weak identifier is a candidate like any other, an
//     unknown one is ignored. If none of the event's weak identifiers is known,
//     the last weak one (in input order: the anonymous_id variant) is treated
//     as a normal identifier. So weak identifiers never create a profile on
//     their own if a non-weak identifier exists.
//  3. A working profile is built greedily in priority order. The target is the
//     profile of the highest-priority known identifier; each other candidate
//     profile is merged with the target if the union would stay within every
//     limit (identifiers counted per type), otherwise it is left alone and the
//     event's identifiers it owns are refused; each unknown identifier is
//     attached if the limit allows, otherwise refused. Unknown identifiers of
//     higher priority than the first known one are counted before that
//     candidate is adopted: so if the event's highest-priority identifier is
//     unknown and cannot join a candidate (e.g. a second user_id), that
//     candidate is refused and the event goes to a new profile holding that
//     identifier (and the identifiers that fit). This is how a shared family
//     device (one anonymous_id, two user_ids) does not merge two customers:
//     the anonymous_id stays with the first profile and the event goes to the
//     profile of its highest-priority identifier.
//  4. If no candidate was adopted, the event creates profile P(e). Otherwise,
//     if P(e) is smaller than the target's id, the event creates P(e) and
//     merges the target into it. With events arriving in time order this
//     happens only within one millisecond; it is what makes the surviving
//     profile id independent of arrival order: a profile's id is always the
//     smallest P(e) of the events that built it.
//
// Merges are reported in the order performed, with the event and the
// identifier that linked the two profiles. Where no limit is in conflict, any
// order of the same events yields the same grouping of identifiers into
// profiles and the same surviving profile ids. Resolving an event a second
// time changes nothing when no limit was in conflict.
//
// Blocked values never reach Resolve: the ingest edge drops the identifiers
// for which Config.IsBlocked reports true.
//
// # Key layout
//
//	ik/<type>/<hash16>  → profile id (16 bytes), always a root
//	ip/<profile16>      → node{Redirect, IDs []{Type, Hash}, MergedFrom [][]byte} (codec.go)
//
// A root node has no Redirect; its IDs are exactly the ik entries pointing at
// it, sorted by type then hash; its MergedFrom lists every profile id ever
// merged into it (transitively), sorted. A merged node has only a Redirect,
// to the root. Per event, Resolve does O(identifiers of the event +
// identifiers of the profiles it merges) Gets and Sets, and writes nothing
// before all its reads succeeded. A returning person's event (every
// identifier known, all owned by one profile whose id does not sort after
// the event's own P(e)) costs one Get per identifier and writes nothing:
// the rules above then adopt that profile whatever its node holds, so the
// node is not read.
//
// # Invariants
//
// Check verifies them by scanning the keychain: every ik entry points at a
// root that lists it; every root's IDs are exactly the ik entries pointing at
// it; redirects point at a root (so are acyclic) that lists the redirected id
// in MergedFrom, and every MergedFrom entry redirects to its root.
// Keychain.Check also verifies that no profile exceeds a limit (which can only
// fail if the limits were lowered after the fact).
package identity

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"maps"
	"slices"

	"github.com/aurumcdp/aurum/event"
	"github.com/aurumcdp/aurum/store"
)

// IDLen is the length of profile ids, event ids and identifier hashes.
const IDLen = 16

// ErrNoIdentifiers is returned by Resolve for an event without identifiers.
var ErrNoIdentifiers = errors.New("identity: event has no identifiers")

// ErrInvalidInput marks an Input that can never resolve (a malformed event
// id, identifier type or hash): the caller skips the event rather than
// retrying it.
var ErrInvalidInput = errors.New("identity: invalid input")

// ErrCorrupt marks a keychain entry that breaks the layout or an invariant.
var ErrCorrupt = errors.New("identity: corrupt keychain")

// Key prefixes.
var (
	prefixIK = []byte("ik/")
	prefixIP = []byte("ip/")
)

// maxULIDTime is the largest time a ULID can hold (48 bits of milliseconds).
const maxULIDTime = 1<<48 - 1

// Keychain resolves identities. It holds only its configuration and is safe
// for concurrent use; the store passed to each call must not be shared by
// concurrent writers.
type Keychain struct {
	cfg Config
	// slow turns off the returning-person shortcut of Resolve: the
	// reference its test compares with.
	slow bool
}

// New returns a Keychain for cfg. cfg must be valid (LoadConfig and
// DefaultConfig return valid configurations); New panics otherwise.
func New(cfg Config) *Keychain {
	if err := cfg.Validate(); err != nil {
		panic(err)
	}
	c := Config{
		Priority:      slices.Clone(cfg.Priority),
		Limits:        make(map[string]int, len(cfg.Limits)),
		Blocked:       slices.Clone(cfg.Blocked),
		BlockedByType: make(map[string][]string, len(cfg.BlockedByType)),
	}
	for t, n := range cfg.Limits {
		c.Limits[t] = n
	}
	for t, v := range cfg.BlockedByType {
		c.BlockedByType[t] = slices.Clone(v)
	}
	if p := cfg.Probabilistic; p != nil {
		pc := *p
		pc.Fields = maps.Clone(p.Fields)
		pc.Blocking = make([][]string, len(p.Blocking))
		for i, r := range p.Blocking {
			pc.Blocking[i] = slices.Clone(r)
		}
		c.Probabilistic = &pc
	}
	return &Keychain{cfg: c}
}

// Config returns the keychain's configuration.
func (k *Keychain) Config() Config { return k.cfg }

// Input is what Resolve needs of one event.
type Input struct {
	EventID []byte // 16-byte ULID
	Time    int64  // event time, Unix ms
	IDs     []event.IDRef
}

// Result is the outcome of resolving one event.
type Result struct {
	// Profile is the (root) profile the event belongs to.
	Profile []byte
	// Created is set when Profile was created by this event.
	Created bool
	// Owned lists, ascending, the indexes into Input.IDs whose identifiers
	// Profile owns after this event (attached now or before).
	Owned []int
	// Merges lists the merges this event caused, in the order performed.
	Merges []Merge
	// Refused lists, by ascending index, the identifiers that were neither
	// attached nor merged because of a limit.
	Refused []Refusal
}

// Merge records one merge: profile From was merged into Into (Into survives).
type Merge struct {
	From, Into []byte
	EventID    []byte
	// Type and Hash name the identifier that linked them: the event's
	// highest-priority identifier owned by the profile that joined the
	// working profile (for a rename, by the old target).
	Type string
	Hash []byte
}

// Refusal is an identifier of the event left out because of a limit.
type Refusal struct {
	Index  int // into Input.IDs
	Reason string
}

// node is the stored value of ip/<profile>.
type node struct {
	Redirect   []byte   `msgpack:"r,omitempty"`
	IDs        []nodeID `msgpack:"i,omitempty"`
	MergedFrom [][]byte `msgpack:"m,omitempty"`
}

type nodeID struct {
	Type string `msgpack:"t"`
	Hash []byte `msgpack:"h"`
}

func compareNodeID(a, b nodeID) int {
	if c := bytes.Compare([]byte(a.Type), []byte(b.Type)); c != 0 {
		return c
	}
	return bytes.Compare(a.Hash, b.Hash)
}

func ikKey(typ string, hash []byte) []byte {
	k := make([]byte, 0, len(prefixIK)+len(typ)+1+len(hash))
	k = append(k, prefixIK...)
	k = append(k, typ...)
	k = append(k, '/')
	return append(k, hash...)
}

func ipKey(profile []byte) []byte {
	k := make([]byte, 0, len(prefixIP)+len(profile))
	k = append(k, prefixIP...)
	return append(k, profile...)
}

// ProfileID returns the id of the profile an event creates: a ULID with time
// max(0, t) ms and entropy sha256("aurum/profile" || eventID)[:10].
func ProfileID(eventID []byte, t int64) []byte {
	t = max(0, min(t, maxULIDTime))
	h := sha256.New()
	h.Write([]byte("aurum/profile"))
	h.Write(eventID)
	sum := h.Sum(nil)
	id := make([]byte, IDLen)
	var ts [8]byte
	binary.BigEndian.PutUint64(ts[:], uint64(t))
	copy(id[:6], ts[2:])
	copy(id[6:], sum[:10])
	return id
}

func getNode(r store.Reader, profile []byte) (*node, error) {
	v, err := r.Get(ipKey(profile))
	if err != nil {
		return nil, err
	}
	n, err := decodeNode(v)
	if err != nil {
		return nil, fmt.Errorf("profile %x: %w", profile, err)
	}
	if n.Redirect != nil && len(n.Redirect) != IDLen {
		return nil, fmt.Errorf("%w: profile %x: redirect of %d bytes", ErrCorrupt, profile, len(n.Redirect))
	}
	return n, nil
}

// maxRedirects bounds a redirect walk. Redirects are compressed (one hop);
// the bound only turns a corrupt cycle into an error.
const maxRedirects = 64

// root follows redirects from profile and returns the root id and node.
func root(r store.Reader, profile []byte) ([]byte, *node, error) {
	id := profile
	for range maxRedirects {
		n, err := getNode(r, id)
		if err != nil {
			if errors.Is(err, store.ErrNotFound) && !bytes.Equal(id, profile) {
				return nil, nil, fmt.Errorf("%w: profile %x redirects to missing %x", ErrCorrupt, profile, id)
			}
			return nil, nil, err
		}
		if n.Redirect == nil {
			return slices.Clone(id), n, nil
		}
		id = n.Redirect
	}
	return nil, nil, fmt.Errorf("%w: profile %x: more than %d redirects", ErrCorrupt, profile, maxRedirects)
}

// Lookup returns the current (root) profile owning the identifier, or
// store.ErrNotFound. For typ profile_id, hash is a profile id and Lookup
// returns its root, so look-ups of a merged profile's id find the survivor.
func (k *Keychain) Lookup(r store.Reader, typ string, hash []byte) ([]byte, error) {
	if typ == event.ProfileID {
		return k.Root(r, hash)
	}
	v, err := r.Get(ikKey(typ, hash))
	if err != nil {
		if errors.Is(err, store.ErrNotFound) {
			return nil, err
		}
		return nil, fmt.Errorf("identity: lookup: %w", err)
	}
	if len(v) != IDLen {
		return nil, fmt.Errorf("identity: lookup: %w: ik entry of %d bytes", ErrCorrupt, len(v))
	}
	return v, nil
}

// Root follows the redirects of merged profiles and returns the root profile
// id (profile itself if it was never merged), or store.ErrNotFound for an
// unknown id.
func (k *Keychain) Root(r store.Reader, profile []byte) ([]byte, error) {
	id, _, err := root(r, profile)
	if err != nil {
		if errors.Is(err, store.ErrNotFound) {
			return nil, err
		}
		return nil, fmt.Errorf("identity: root: %w", err)
	}
	return id, nil
}

// Identifiers returns the identifiers (Type and Hash only) owned by the root
// of profile, sorted by type then hash, or store.ErrNotFound.
func (k *Keychain) Identifiers(r store.Reader, profile []byte) ([]event.IDRef, error) {
	_, n, err := root(r, profile)
	if err != nil {
		if errors.Is(err, store.ErrNotFound) {
			return nil, err
		}
		return nil, fmt.Errorf("identity: identifiers: %w", err)
	}
	out := make([]event.IDRef, len(n.IDs))
	for i, id := range n.IDs {
		out[i] = event.IDRef{Type: id.Type, Hash: id.Hash}
	}
	return out, nil
}

// MergedFrom returns every profile id ever merged (transitively) into the
// root of profile, sorted, or store.ErrNotFound.
func (k *Keychain) MergedFrom(r store.Reader, profile []byte) ([][]byte, error) {
	_, n, err := root(r, profile)
	if err != nil {
		if errors.Is(err, store.ErrNotFound) {
			return nil, err
		}
		return nil, fmt.Errorf("identity: merged from: %w", err)
	}
	if n.MergedFrom == nil {
		return [][]byte{}, nil
	}
	return n.MergedFrom, nil
}
