package gcr

import (
	"bytes"
	"errors"
	"fmt"
	"slices"

	"github.com/aurumcdp/aurum/event"
	"github.com/aurumcdp/aurum/projections/features"
	"github.com/aurumcdp/aurum/store"
)

// Txn batches the GCR work of one apply step over a store.ReadWriter: each
// profile it touches is read and decoded at most once, and encoded and written
// at most once, by Flush. Event records are written by Add directly. A Txn is
// not safe for concurrent use. After Flush it is empty and can be reused;
// after an error from any method it must be discarded (the caller aborts the
// apply step and its batch).
type Txn struct {
	p       *Projection
	rw      store.ReadWriter
	cache   map[string]*entry   // profile id → state
	flushed map[string]*Profile // profile id → as the last Flush left it (nil: absent)
	s       *Scratch            // encoding buffers
}

type entry struct {
	prof  *Profile // nil: absent (never stored, or merged away)
	dirty bool
	// row is the encoding of the feature row as loaded (nil: none), of
	// rowOf: while prof.Features is rowOf and unchanged (no event or merge
	// changed it), Flush writes row again instead of encoding it.
	row        []byte
	rowOf      *features.Features
	rowChanged bool
}

// Begin starts a Txn writing through rw.
func (p *Projection) Begin(rw store.ReadWriter) *Txn {
	return p.BeginScratch(rw, &Scratch{})
}

// BeginScratch is Begin with the Txn's scratch memory lent by the caller,
// which must not lend s to another Txn until this one is done.
func (p *Projection) BeginScratch(rw store.ReadWriter, s *Scratch) *Txn {
	return &Txn{p: p, rw: rw, cache: make(map[string]*entry), s: s}
}

// load returns the Txn's entry of profile, reading the GCR on first use:
// its feature row taken from the row cache when the cache holds it with
// the encoding read, else decoded.
func (t *Txn) load(profile []byte) (*entry, error) {
	if e, ok := t.cache[string(profile)]; ok {
		return e, nil
	}
	prof, row, err := t.p.loadRow(t.rw, profile)
	if errors.Is(err, store.ErrNotFound) {
		prof, err = nil, nil
	}
	if err != nil {
		return nil, err
	}
	e := &entry{prof: prof}
	if shard := PartitionOf(profile, t.p.parts); row == nil {
		t.p.rows.drop(shard, profile)
	} else {
		f := t.p.rows.take(shard, profile, row)
		if f == nil {
			if f, err = features.Decode(row); err != nil {
				return nil, fmt.Errorf("profile %x: %w: %v", profile, ErrCorrupt, err)
			}
		}
		prof.Features = f
		e.row, e.rowOf = row, f
	}
	t.cache[string(profile)] = e
	return e, nil
}

// Fresh tells the Txn that profile has no GCR in the store: it was created
// by the apply step the Txn is part of (the keychain found no node of that
// id, and a profile's GCR never outlives its node). Its first use then
// reads nothing, as the read would have found nothing. It does nothing for
// a profile the Txn already holds.
func (t *Txn) Fresh(profile []byte) {
	if _, ok := t.cache[string(profile)]; !ok {
		t.cache[string(profile)] = &entry{}
	}
}

// Add folds rec into the GCR of profile and stores rec under the profile.
// owned are the identifiers of rec that profile owns (as decided by the
// identity keychain); they are recorded with rec's key id and time.
func (t *Txn) Add(profile []byte, rec *event.Record, owned []event.IDRef) error {
	if err := validateAdd(profile, rec, owned); err != nil {
		return fmt.Errorf("gcr: add: %w", err)
	}
	e, err := t.load(profile)
	if err != nil {
		return fmt.Errorf("gcr: add: %w", err)
	}
	v, keys := appendRecord(t.s.rec[:0], t.s.keys, rec)
	t.s.rec, t.s.keys = v, keys
	if err := t.rw.Set(recordKey(rec.ID, profile), v); err != nil {
		return fmt.Errorf("gcr: add: store event %x: %w", rec.ID, err)
	}
	if err := t.rw.Set(t.p.eventKey(profile, rec.Time, rec.ID), indexValue); err != nil {
		return fmt.Errorf("gcr: add: index event %x: %w", rec.ID, err)
	}
	if e.prof == nil {
		e.prof = &Profile{ID: bytes.Clone(profile)}
	}
	if e.prof.fold(rec, owned, !t.p.noFeatures, t.p.interKey) {
		e.rowChanged = true
	}
	e.dirty = true
	return nil
}

func validateAdd(profile []byte, rec *event.Record, owned []event.IDRef) error {
	if len(profile) != idLen {
		return fmt.Errorf("profile id has %d bytes, want %d", len(profile), idLen)
	}
	if rec == nil {
		return errors.New("nil record")
	}
	if len(rec.ID) != idLen {
		return fmt.Errorf("event id has %d bytes, want %d", len(rec.ID), idLen)
	}
	if rec.Kind == "" {
		return fmt.Errorf("event %x: empty kind", rec.ID)
	}
	for _, o := range owned {
		if o.Type == "" || len(o.Hash) == 0 {
			return fmt.Errorf("event %x: owned identifier without type or hash", rec.ID)
		}
	}
	return nil
}

// Merge folds the GCR of from into that of into (creating into if absent) and
// deletes from's GCR key; from's event records stay where they are and into
// lists from (and everything from was merged from) in MergedFrom. If from has
// no GCR, Merge does nothing.
func (t *Txn) Merge(from, into []byte) error {
	if len(from) != idLen || len(into) != idLen {
		return fmt.Errorf("gcr: merge: profile ids have %d and %d bytes, want %d", len(from), len(into), idLen)
	}
	if bytes.Equal(from, into) {
		return fmt.Errorf("gcr: merge: profile %x into itself", from)
	}
	ef, err := t.load(from)
	if err != nil {
		return fmt.Errorf("gcr: merge: %w", err)
	}
	if ef.prof == nil {
		return nil
	}
	ei, err := t.load(into)
	if err != nil {
		return fmt.Errorf("gcr: merge: %w", err)
	}
	if ei.prof == nil {
		ei.prof = &Profile{ID: bytes.Clone(into)}
	}
	ei.prof.join(ef.prof)
	ei.dirty, ei.rowChanged = true, true
	ef.prof, ef.dirty = nil, true
	return nil
}

// Flush writes every profile changed since the last Flush (deleting merged-
// away ones) in key order, then empties the Txn.
func (t *Txn) Flush() error {
	ids := make([]string, 0, len(t.cache))
	for id, e := range t.cache {
		if e.dirty {
			ids = append(ids, id)
		} else if e.prof != nil && e.row != nil {
			// Read, not changed: its row goes back with the stored bytes.
			t.p.rows.put(PartitionOf([]byte(id), t.p.parts), []byte(id), e.row, e.rowOf)
		}
	}
	slices.Sort(ids)
	for _, id := range ids {
		e := t.cache[id]
		key := t.p.profileKey([]byte(id))
		if e.prof == nil {
			if err := t.rw.Delete(key); err != nil {
				return fmt.Errorf("gcr: flush: delete %x: %w", id, err)
			}
			continue
		}
		var same []byte // the feature row as loaded, if unchanged
		if e.row != nil && e.prof.Features == e.rowOf && !e.rowChanged && !t.p.encodeRows {
			same = e.row
		}
		v, row := appendProfile(t.s.enc, e.prof, same)
		t.s.enc = v
		// Writers copy values, and so does the row cache: the buffer is
		// the next profile's.
		if err := t.rw.Set(key, v); err != nil {
			return fmt.Errorf("gcr: flush: store %x: %w", id, err)
		}
		t.p.rows.put(PartitionOf([]byte(id), t.p.parts), []byte(id), row, e.prof.Features)
	}
	if t.flushed == nil {
		t.flushed = make(map[string]*Profile, len(t.cache))
	}
	for id, e := range t.cache {
		t.flushed[id] = e.prof
	}
	clear(t.cache)
	return nil
}

// Hold ends an apply step without writing: the profiles the Txn holds stay
// in it, decoded, for the next step (Rebind), and Flushed answers for
// every one of them until Flush writes them all, each encoded once.
func (t *Txn) Hold() {
	if t.flushed == nil {
		t.flushed = make(map[string]*Profile, len(t.cache))
	}
	for id, e := range t.cache {
		t.flushed[id] = e.prof
	}
}

// Rebind makes the Txn read and write through rw from now on (the next
// apply step's writer, after Hold).
func (t *Txn) Rebind(rw store.ReadWriter) { t.rw = rw }

// Len is the number of profiles the Txn holds.
func (t *Txn) Len() int { return len(t.cache) }

// Held reports whether the Txn holds profile (Hold).
func (t *Txn) Held(profile []byte) bool {
	_, ok := t.cache[string(profile)]
	return ok
}

// Flushed returns the GCR of profile as the Txn's last Flush left it in the
// store, or its last Hold left it in the Txn (nil: absent), without reading
// or decoding it again; ok is false
// for a profile the Txn did not load, which must be read from the store.
// The Profile is shared with the Txn: callers must not change it. It is
// valid until the next Txn of the profile's partition (or this one, used
// again) loads the profile: its feature row goes to that Txn (rows.go).
func (t *Txn) Flushed(profile []byte) (prof *Profile, ok bool) {
	prof, ok = t.flushed[string(profile)]
	return prof, ok
}

// Absorb folds from, the GCR of a profile that was merged into into and read
// from its own partition, into into's GCR (creating it if absent). Together
// with Drop in from's partition it is Merge split across partitions.
func (t *Txn) Absorb(into []byte, from *Profile) error {
	if len(into) != idLen || from == nil || len(from.ID) != idLen {
		return fmt.Errorf("gcr: absorb: want a %d-byte profile id and a profile", idLen)
	}
	if bytes.Equal(from.ID, into) {
		return fmt.Errorf("gcr: absorb: profile %x into itself", into)
	}
	ei, err := t.load(into)
	if err != nil {
		return fmt.Errorf("gcr: absorb: %w", err)
	}
	if ei.prof == nil {
		ei.prof = &Profile{ID: bytes.Clone(into)}
	}
	ei.prof.join(from)
	ei.dirty, ei.rowChanged = true, true
	return nil
}

// Drop deletes the GCR of profile, which was absorbed by another profile;
// its event records stay where they are.
func (t *Txn) Drop(profile []byte) error {
	if len(profile) != idLen {
		return fmt.Errorf("gcr: drop: profile id has %d bytes, want %d", len(profile), idLen)
	}
	e, err := t.load(profile)
	if err != nil {
		return fmt.Errorf("gcr: drop: %w", err)
	}
	e.prof, e.dirty = nil, true
	return nil
}
