package gcr

import (
	"bytes"
	"encoding/binary"
	"fmt"

	"github.com/aurumcdp/aurum/event"
	"github.com/aurumcdp/aurum/store"
)

// What an unmerge (a split of a profile, issue #13) needs of the GCR: the
// event records stored under one profile id with their keys, moving a
// record's stored bytes to another profile, and a GCR folded again from a
// set of records (the GCR is a join-semilattice of its events, so a fold of
// the records is the record of those events).

// StoredEvent is one event record as stored under Profile.
type StoredEvent struct {
	Profile []byte
	KeyTime uint64 // the time of its key (event time clamped at 0)
	Raw     []byte // the stored bytes
	Record  event.Record
}

// StoredEvents returns the event records stored under profile itself (not
// those of the profiles merged into it), oldest first by (time, event id).
func (p *Projection) StoredEvents(r store.Reader, profile []byte) ([]StoredEvent, error) {
	if len(profile) != idLen {
		return nil, fmt.Errorf("gcr: stored events: profile id has %d bytes, want %d", len(profile), idLen)
	}
	prefix := p.eventPrefix(profile)
	var out []StoredEvent
	var ferr error
	err := r.Scan(prefix, store.PrefixEnd(prefix), false, func(k, _ []byte) bool {
		if len(k) != eventKeyLen {
			ferr = fmt.Errorf("gcr: stored events: key %x: %w", k, ErrCorrupt)
			return false
		}
		v, err := readRecord(r, k)
		if err != nil {
			ferr = err
			return false
		}
		rec, err := decodeRecord(v)
		if err != nil {
			ferr = fmt.Errorf("gcr: stored events of %x: %w", profile, err)
			return false
		}
		out = append(out, StoredEvent{Profile: bytes.Clone(profile), KeyTime: binary.BigEndian.Uint64(k[eventPrefixLen:]),
			Raw: v, Record: rec})
		return true
	})
	if err == nil {
		err = ferr
	}
	if err != nil {
		return nil, fmt.Errorf("gcr: stored events of %x: %w", profile, err)
	}
	return out, nil
}

func (p *Projection) storedKey(profile []byte, keyTime uint64, id []byte) []byte {
	k := binary.BigEndian.AppendUint64(p.eventPrefix(profile), keyTime)
	return append(append(k, '/'), id...)
}

// DeleteEvent deletes the record of event id stored under profile at key
// time keyTime, and its index entry.
func (p *Projection) DeleteEvent(rw store.ReadWriter, profile []byte, keyTime uint64, id []byte) error {
	if err := rw.Delete(recordKey(id, profile)); err != nil {
		return fmt.Errorf("gcr: delete event %x of %x: %w", id, profile, err)
	}
	if err := rw.Delete(p.storedKey(profile, keyTime, id)); err != nil {
		return fmt.Errorf("gcr: delete event %x of %x: %w", id, profile, err)
	}
	return nil
}

// PutEvent stores the record bytes raw of event id under profile at key
// time keyTime (a record moved from another profile, as is).
func (p *Projection) PutEvent(rw store.ReadWriter, profile []byte, keyTime uint64, id, raw []byte) error {
	if len(profile) != idLen || len(id) != idLen {
		return fmt.Errorf("gcr: put event: want %d-byte profile and event ids", idLen)
	}
	if err := rw.Set(recordKey(id, profile), raw); err != nil {
		return fmt.Errorf("gcr: put event %x under %x: %w", id, profile, err)
	}
	if err := rw.Set(p.storedKey(profile, keyTime, id), indexValue); err != nil {
		return fmt.Errorf("gcr: put event %x under %x: %w", id, profile, err)
	}
	return nil
}

// Rebuild returns the GCR of profile id folded again from recs (in the
// order given: the caller's is deterministic; properties opened as for
// Txn.Add), listing mergedFrom, with the identifiers idents (sorted by
// type and hash, as a GCR keeps them: the caller takes them from the
// record it rebuilds, so each keeps its sealed value and sightings).
func (p *Projection) Rebuild(id []byte, mergedFrom [][]byte, idents []Ident, recs []*event.Record) (*Profile, error) {
	if len(id) != idLen {
		return nil, fmt.Errorf("gcr: rebuild: profile id has %d bytes, want %d", len(id), idLen)
	}
	prof := &Profile{ID: bytes.Clone(id)}
	if len(mergedFrom) > 0 {
		for _, m := range mergedFrom {
			prof.MergedFrom = append(prof.MergedFrom, bytes.Clone(m))
		}
	}
	for _, rec := range recs {
		if err := validateAdd(id, rec, nil); err != nil {
			return nil, fmt.Errorf("gcr: rebuild: %w", err)
		}
		prof.fold(rec, nil, !p.noFeatures, p.interKey)
	}
	for _, x := range idents {
		prof.joinIdent(x)
	}
	return prof, nil
}

// Put replaces the GCR of prof.ID with prof (a rebuild), written by Flush.
func (t *Txn) Put(prof *Profile) error {
	if prof == nil || len(prof.ID) != idLen {
		return fmt.Errorf("gcr: put: want a profile with a %d-byte id", idLen)
	}
	t.cache[string(prof.ID)] = &entry{prof: prof, dirty: true}
	return nil
}
