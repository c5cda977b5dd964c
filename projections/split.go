package projections

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/aurumcdp/aurum/event"
	"github.com/aurumcdp/aurum/projections/audience"
	"github.com/aurumcdp/aurum/projections/gcr"
	"github.com/aurumcdp/aurum/projections/identity"
	"github.com/aurumcdp/aurum/store"
)

// Unmerge: the split of a profile (issue #13, ARCHITECTURE.md "Probabilistic
// identity", "Split"). An identity.split control record names a profile
// and identifiers it owns; Apply moves them, and the events that came with
// them, into a new profile:
//
//  1. The new profile's id is identity.ProfileID(split id, record time):
//     a replay gives the same id, hence the same output ids.
//  2. The keychain points the moved identifiers at it (identity.Split).
//  3. An event moves when the identifiers it carries that the profile owns
//     include a moved one and none that stays; an event that carried both
//     (the link itself, when a shared identifier made the wrong merge)
//     stays with the old profile. A profile merged into the old one whose
//     events all move goes with them (identity.Split's follow): its id
//     then finds the new profile. The records stored under the old root
//     and under every profile merged into it are read; the moved ones are
//     deleted there (PartitionCommand.Unstore) and stored under the new
//     profile (Rebuild.Store).
//  4. Both GCRs are folded again from their events (gcr.Projection.
//     Rebuild: counts, revenue, traits, consent, features); each keeps the
//     identifier records of its identifiers from the old GCR.
//  5. Both audience states are evaluated again on every audience with
//     their aggregates rebuilt from their own events (Rebuild.History):
//     the old profile's exits and the new one's entries go through the
//     partition outboxes with ids of the split's log position, once.
//  6. A rejection (rj/, both orders, value the split id) keeps the
//     matcher from merging the two back (checkPair); a deterministic link
//     (a later event carrying identifiers of both) still merges them: the
//     keychain follows what events state.
//  7. sp/<split> keeps the record, ps/<profile><split> indexes it under
//     both profiles (Explain), and aurum.identity.split goes out.
//
// A record that fails a check (unknown profile, an identifier not the
// profile's, every identifier, none) changes nothing but its sp/ row,
// which says why (status refused), alike in every replay.

// ControlIdentitySplit is the control kind of a split (Control.Split).
const ControlIdentitySplit = "identity.split"

// SubjectSplit is the output subject of a split.
const SubjectSplit = "aurum.identity.split"

// Split statuses.
const (
	SplitDone    = "split"
	SplitRefused = "refused"
)

// MaxSplitIdentifiers bounds the identifiers of one split record.
const MaxSplitIdentifiers = 1000

var (
	prefixSplit        = []byte("sp/") // sp/<split16> → msgpack SplitRecord
	prefixProfileSplit = []byte("ps/") // ps/<profile16><split16> → empty: splits a profile took part in
)

// SplitIdent is an identifier of a split: its type and keyed hash.
type SplitIdent struct {
	Type string `msgpack:"t"`
	Hash []byte `msgpack:"h"`
}

// SplitRequest is the identity.split record's payload.
type SplitRequest struct {
	ID          []byte       `msgpack:"id"` // 16-byte ULID assigned by the requester
	Profile     []byte       `msgpack:"p"`  // the profile (its root is split)
	Identifiers []SplitIdent `msgpack:"ids"`
	By          string       `msgpack:"by,omitempty"`
}

// SplitRecord is a split and what became of it, kept at sp/<ID>.
type SplitRecord struct {
	ID          []byte       `msgpack:"id"`
	From        []byte       `msgpack:"f"`           // the root that was split
	Into        []byte       `msgpack:"i,omitempty"` // the new profile
	Identifiers []SplitIdent `msgpack:"ids"`
	By          string       `msgpack:"by,omitempty"`
	Status      string       `msgpack:"st"`
	Reason      string       `msgpack:"rs,omitempty"`
	EventsMoved int          `msgpack:"em"`
	EventsKept  int          `msgpack:"ek"`
	Seq         uint64       `msgpack:"q"`
	Time        int64        `msgpack:"t"`
}

// EventKey names one stored event record: the profile it is stored under,
// its key time and id.
type EventKey struct {
	Profile []byte
	KeyTime uint64
	ID      []byte
}

// Rebuild is a profile whose GCR and audience state a split recomputes in
// its partition.
type Rebuild struct {
	Profile *gcr.Profile
	// Store are event records to store under the profile (moved to it).
	Store []gcr.StoredEvent
	// History is every event of the profile after the split, newest first
	// (properties opened): its audience aggregates are rebuilt from it.
	History []audience.Event
	Reason  string
}

func splitKey(id []byte) []byte { return append(append([]byte(nil), prefixSplit...), id...) }
func profileSplitKey(profile, id []byte) []byte {
	return append(append(append([]byte(nil), prefixProfileSplit...), profile...), id...)
}

func (r *SplitRequest) valid() bool {
	if len(r.ID) != identity.IDLen || len(r.Profile) != identity.IDLen || len(r.Identifiers) > MaxSplitIdentifiers {
		return false
	}
	for _, x := range r.Identifiers {
		if x.Type == "" || len(x.Type) > 64 || len(x.Hash) != identity.IDLen {
			return false
		}
	}
	return true
}

func (sm *StateMachine) applySplit(rw store.ReadWriter, seq uint64, c *Control, cmds []PartitionCommand, res *Result) error {
	q := c.Split
	if q == nil || !q.valid() {
		return nil // ignored alike by every replay
	}
	if _, ok, err := getMsgpack[SplitRecord](rw, splitKey(q.ID)); err != nil || ok {
		return err // a split id is decided once
	}
	rec := SplitRecord{ID: q.ID, From: q.Profile, Identifiers: q.Identifiers, By: q.By, Seq: seq, Time: c.Time}
	res.Splits++
	refuse := func(reason string) error {
		rec.Status, rec.Reason = SplitRefused, reason
		return setMsgpack(rw, splitKey(rec.ID), &rec)
	}
	kc := sm.Keychain()
	root, err := kc.Root(rw, q.Profile)
	if errors.Is(err, store.ErrNotFound) {
		return refuse("profile unknown or erased")
	}
	if err != nil {
		return fmt.Errorf("projections: split %s: %w", ulidString(q.ID), err)
	}
	rec.From = root
	owned, err := kc.Identifiers(rw, root)
	if err != nil {
		return fmt.Errorf("projections: split %s: %w", ulidString(q.ID), err)
	}
	key := func(typ string, hash []byte) string { return typ + "\x00" + string(hash) }
	isOwned := map[string]bool{}
	for _, x := range owned {
		isOwned[key(x.Type, x.Hash)] = true
	}
	moving := map[string]bool{}
	var unknown []string
	for _, x := range q.Identifiers {
		k := key(x.Type, x.Hash)
		if !isOwned[k] && !slices.Contains(unknown, x.Type) {
			unknown = append(unknown, x.Type)
		}
		moving[k] = true
	}
	stays := map[string]bool{}
	for k := range isOwned {
		if !moving[k] {
			stays[k] = true
		}
	}
	switch {
	case len(q.Identifiers) == 0:
		return refuse("no identifier to split off")
	case len(unknown) > 0:
		return refuse(fmt.Sprintf("identifiers not on the profile (types %s)", strings.Join(unknown, ", ")))
	case len(stays) == 0:
		return refuse("splitting off every identifier of the profile")
	}
	into := identity.ProfileID(q.ID, c.Time)

	// Read before anything is written: the old GCR and every stored event
	// of the family.
	old, err := sm.gcr.Get(rw, root)
	if errors.Is(err, store.ErrNotFound) {
		old, err = &gcr.Profile{ID: root}, nil
	}
	if err != nil {
		return fmt.Errorf("projections: split %s: %w", ulidString(q.ID), err)
	}
	from, err := kc.MergedFrom(rw, root)
	if err != nil {
		return fmt.Errorf("projections: split %s: %w", ulidString(q.ID), err)
	}
	var all []gcr.StoredEvent
	for _, id := range append([][]byte{root}, from...) {
		evs, err := sm.gcr.StoredEvents(rw, id)
		if err != nil {
			return fmt.Errorf("projections: split %s: %w", ulidString(q.ID), err)
		}
		all = append(all, evs...)
	}
	// Oldest first by (key time, event id), as a profile's events are
	// iterated; an event stored under two profiles of the family once.
	slices.SortStableFunc(all, func(a, b gcr.StoredEvent) int {
		if a.KeyTime != b.KeyTime {
			if a.KeyTime < b.KeyTime {
				return -1
			}
			return 1
		}
		return bytes.Compare(a.Record.ID, b.Record.ID)
	})
	var kept, moved, unstore []*gcr.StoredEvent
	n := len(sm.partitions)
	for i := range all {
		ev := &all[i]
		dup := i > 0 && all[i-1].KeyTime == ev.KeyTime && bytes.Equal(all[i-1].Record.ID, ev.Record.ID)
		move, stay := false, false
		for _, x := range ev.Record.IDs {
			k := key(x.Type, x.Hash)
			move = move || moving[k]
			stay = stay || stays[k]
		}
		if !move || stay {
			if !dup {
				kept = append(kept, ev)
			}
			continue
		}
		unstore = append(unstore, ev)
		if !dup {
			moved = append(moved, ev)
		}
	}

	// A profile merged into the root whose stored events all moved goes
	// with them: its id then finds the new profile (the wrong merge of a
	// whole profile is undone whole).
	stored, gone := map[string]int{}, map[string]int{}
	for i := range all {
		stored[string(all[i].Profile)]++
	}
	for _, ev := range unstore {
		gone[string(ev.Profile)]++
	}
	var follow [][]byte
	for _, id := range from {
		if n := stored[string(id)]; n > 0 && gone[string(id)] == n {
			follow = append(follow, id)
		}
	}
	if _, err := kc.Split(rw, root, splitRefs(q.Identifiers), into, follow); errors.Is(err, identity.ErrSplit) {
		return refuse(err.Error())
	} else if err != nil {
		return fmt.Errorf("projections: split %s: %w", ulidString(q.ID), err)
	}
	rec.Into, rec.Status, rec.EventsMoved, rec.EventsKept = into, SplitDone, len(moved), len(kept)
	for _, ev := range unstore {
		pi := gcr.PartitionOf(ev.Profile, n)
		cmds[pi].Unstore = append(cmds[pi].Unstore, EventKey{Profile: ev.Profile, KeyTime: ev.KeyTime, ID: ev.Record.ID})
	}

	var keepIDs, moveIDs []gcr.Ident
	for _, x := range old.Identifiers {
		if moving[key(x.Type, x.Hash)] {
			moveIDs = append(moveIDs, x)
		} else {
			keepIDs = append(keepIDs, x)
		}
	}
	reason := "split:" + ulidString(q.ID)
	keepFrom := slices.DeleteFunc(slices.Clone(old.MergedFrom), func(m []byte) bool {
		return slices.ContainsFunc(follow, func(f []byte) bool { return bytes.Equal(f, m) })
	})
	oldRB, err := sm.rebuild(root, keepFrom, keepIDs, kept, reason)
	if err != nil {
		return fmt.Errorf("projections: split %s: %w", ulidString(q.ID), err)
	}
	newRB, err := sm.rebuild(into, follow, moveIDs, moved, reason)
	if err != nil {
		return fmt.Errorf("projections: split %s: %w", ulidString(q.ID), err)
	}
	for _, ev := range moved {
		newRB.Store = append(newRB.Store, *ev)
	}
	cmds[gcr.PartitionOf(root, n)].Rebuild = append(cmds[gcr.PartitionOf(root, n)].Rebuild, oldRB)
	cmds[gcr.PartitionOf(into, n)].Rebuild = append(cmds[gcr.PartitionOf(into, n)].Rebuild, newRB)

	for _, k := range [][]byte{rejectionKey(root, into), rejectionKey(into, root),
		profileSplitKey(root, rec.ID), profileSplitKey(into, rec.ID)} {
		v := []byte(nil)
		if bytes.HasPrefix(k, prefixRejection) {
			v = rec.ID
		}
		if err := rw.Set(k, v); err != nil {
			return err
		}
	}
	if err := setMsgpack(rw, splitKey(rec.ID), &rec); err != nil {
		return err
	}
	data, err := json.Marshal(map[string]any{
		"type": "profile.split", "split_id": ulidString(rec.ID), "from": ulidString(root), "into": ulidString(into),
		"identifiers": len(q.Identifiers), "events_moved": rec.EventsMoved,
		"time": time.UnixMilli(c.Time).UTC().Format(time.RFC3339Nano), "seq": seq,
	})
	if err != nil {
		return err
	}
	out := OutMsg{Subject: SubjectSplit, MsgID: "split:" + ulidString(rec.ID), Data: data, Profile: root}
	ok := binary.BigEndian.AppendUint32(binary.BigEndian.AppendUint64(append([]byte(nil), prefixOutbox...), seq), 0)
	res.Outbox++
	return setMsgpack(rw, ok, &out)
}

func splitRefs(ids []SplitIdent) []event.IDRef {
	out := make([]event.IDRef, len(ids))
	for i, x := range ids {
		out[i] = event.IDRef{Type: x.Type, Hash: x.Hash}
	}
	return out
}

// rebuild folds the GCR of profile from evs (oldest first) and lists its
// audience history (newest first), properties opened.
func (sm *StateMachine) rebuild(profile []byte, mergedFrom [][]byte, idents []gcr.Ident, evs []*gcr.StoredEvent, reason string) (Rebuild, error) {
	recs := make([]*event.Record, len(evs))
	rb := Rebuild{Reason: reason, History: make([]audience.Event, 0, len(evs))}
	for i, ev := range evs {
		rec := &ev.Record
		if err := openFailure(rec.OpenProperties(sm.opts.Open)); err != nil {
			return rb, fmt.Errorf("event %s: %w", ulidString(rec.ID), err)
		}
		recs[i] = rec
	}
	for i := len(recs) - 1; i >= 0; i-- {
		rec := recs[i]
		name := ""
		if rec.Kind == event.Track {
			name = rec.Event
		}
		rb.History = append(rb.History, audience.Event{Name: name, Time: rec.Time, ID: rec.ID, Props: rec.Properties})
	}
	prof, err := sm.gcr.Rebuild(profile, mergedFrom, idents, recs)
	if err != nil {
		return rb, err
	}
	rb.Profile = prof
	return rb, nil
}

// GetSplit returns the split record id, or store.ErrNotFound.
func GetSplit(r store.Reader, id []byte) (SplitRecord, error) {
	s, ok, err := getMsgpack[SplitRecord](r, splitKey(id))
	if err != nil {
		return s, fmt.Errorf("projections: split %x: %w", id, err)
	}
	if !ok {
		return s, store.ErrNotFound
	}
	return s, nil
}

// Splits returns the splits profile took part in (as the profile split or
// as the new one), in log order.
func Splits(r store.Reader, profile []byte) ([]SplitRecord, error) {
	prefix := profileSplitKey(profile, nil)
	var ids [][]byte
	if err := r.Scan(prefix, prefixEnd(prefix), false, func(k, _ []byte) bool {
		ids = append(ids, bytes.Clone(k[len(prefix):]))
		return true
	}); err != nil {
		return nil, fmt.Errorf("projections: splits of %x: %w", profile, err)
	}
	out := make([]SplitRecord, 0, len(ids))
	for _, id := range ids {
		s, err := GetSplit(r, id)
		if err != nil {
			return nil, err
		}
		out = append(out, s)
	}
	slices.SortStableFunc(out, func(a, b SplitRecord) int {
		switch {
		case a.Seq < b.Seq:
			return -1
		case a.Seq > b.Seq:
			return 1
		}
		return 0
	})
	return out, nil
}
