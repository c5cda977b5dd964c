package projections

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"

	"github.com/aurumcdp/aurum/event"
	"github.com/aurumcdp/aurum/projections/audience"
	"github.com/aurumcdp/aurum/projections/gcr"
	"github.com/aurumcdp/aurum/store"
	"github.com/vmihailenco/msgpack/v5"
)

// Erasure (GDPR "right to be forgotten") by crypto-shredding.
//
// An erasure is two control records on the log:
//
//   - erasure.request {ID, identifier type, keyed hash}: never the
//     plaintext. Apply resolves the identifier to its root profile and
//     removes the person from every projection: keychain (ik/ entries, the
//     node and the nodes merged into it), GCR, event records, audience
//     state, timers, membership rows and counts, audience history, merge
//     records. Every membership ends with an exit of reason "erased" that
//     carries no identifiers and no Aurum-Profile header. All the person's
//     identifiers (and the requested one, found or not) become suppression
//     rows: later records carrying any of them are dropped and counted
//     (meta/suppressed), never turned into a new profile. A status row
//     (er/) and a pending row (ep/) for the engine's erasure worker are
//     written: the data keys to destroy and the sealed identifier values it
//     needs to find plaintext copies outside the projections.
//   - erasure.completed {ID}: appended by the worker once it has scrubbed
//     the output and dead-letter streams and destroyed the keys. Apply marks
//     the status completed and removes the pending row.
//
// Both are applied at their log position, so a replay (from the start or
// from a snapshot taken before) erases the person at the same point.
//
// Keys:
//
//	sx/<type>/<hash16>   empty: a suppressed identifier
//	er/<id16>            msgpack ErasureStatus (counts only, no personal data)
//	ep/<id16>            msgpack ErasurePending, until erasure.completed
//	eo/<id16>            uint64 BE: memberships the erasure ended (not in the digest)
//	meta/suppressed      uint64 BE: records dropped as suppressed
//
// eo/ is outside the digest because it depends on audience rules that read
// traits: a replay after the keys were destroyed cannot read the person's
// traits, so they may have been in other audiences when the replay reaches
// the erasure. Everything the erasure leaves behind is the same either way.

// Control kinds of an erasure.
const (
	ControlErasureRequest   = "erasure.request"   // Erasure: ID, Type, Hash
	ControlErasureCompleted = "erasure.completed" // Erasure.ID
)

// ReasonErased is the reason of the exits an erasure causes.
const ReasonErased = "erased"

var (
	keySuppressed        = []byte("meta/suppressed")
	prefixSuppress       = []byte("sx/")
	prefixErasure        = []byte("er/")
	prefixErasurePending = []byte("ep/")
	prefixErasureOut     = []byte("eo/")
)

// ErasureRequest is the payload of the erasure control records.
type ErasureRequest struct {
	ID   []byte `msgpack:"id,omitempty"` // 16-byte ULID
	Type string `msgpack:"t,omitempty"`  // identifier type (profile_id: Hash is the profile id)
	Hash []byte `msgpack:"h,omitempty"`  // keyed hash of the normalised value
	// Destinations, on erasure.completed, are the connector destinations
	// the erasure reached (those that held the person).
	Destinations []ErasureDestination `msgpack:"d,omitempty"`
}

// ErasureDestination is a destination an erasure reached, and how.
type ErasureDestination struct {
	Name   string `msgpack:"n"`
	Status string `msgpack:"s"`
}

// maxErasureDestinations bounds the destinations kept with an erasure's
// status.
const maxErasureDestinations = 256

// ErasureStatus is the stored state of one erasure: times are log times
// (Unix ms), counts are what the apply removed.
type ErasureStatus struct {
	ID           []byte `msgpack:"id"`
	Type         string `msgpack:"t"`
	Requested    int64  `msgpack:"rq"`
	Seq          uint64 `msgpack:"q"`
	Completed    int64  `msgpack:"c,omitempty"`
	CompletedSeq uint64 `msgpack:"cq,omitempty"`
	Found        bool   `msgpack:"f"`
	Identifiers  int    `msgpack:"ni"`
	Profiles     int    `msgpack:"np"`
	Events       int    `msgpack:"ne"`
	// Audiences is read from eo/ (not stored in er/).
	Audiences int `msgpack:"-"`
	// Destinations are those the erasure reached (from its completion).
	Destinations []ErasureDestination `msgpack:"d,omitempty"`
}

// SealedValue is a sealed identifier value the erasure worker unseals (before
// destroying its key) to find plaintext copies of it.
type SealedValue struct {
	Type   string `msgpack:"t"`
	Key    []byte `msgpack:"k"`
	Sealed []byte `msgpack:"s"`
}

// ErasurePending is the erasure worker's work for one erasure.
type ErasurePending struct {
	ID []byte `msgpack:"id"`
	// Keys are the data key ids to destroy: the hashes of the person's
	// identifiers and of the requested one, sorted.
	Keys [][]byte `msgpack:"k"`
	// Values are the sealed values of the person's identifiers.
	Values []SealedValue `msgpack:"v,omitempty"`
	// Profiles are the erased root and the profiles merged into it (the
	// Aurum-Profile values of their outputs).
	Profiles [][]byte `msgpack:"p,omitempty"`
	// FirstOutput is the log time (Unix ms) of the earliest audience
	// output about them; 0 when they had none.
	FirstOutput int64 `msgpack:"fo,omitempty"`
}

// HistoryEntry is one audience transition of a profile (kept for exports;
// erased with the profile).
type HistoryEntry struct {
	Audience    string `msgpack:"a"`
	Entered     bool   `msgpack:"e"`
	Time        int64  `msgpack:"t"` // log time, Unix ms
	Reason      string `msgpack:"r"`
	RuleVersion int64  `msgpack:"v"`
	Seq         uint64 `msgpack:"q"`
}

// validErasureType accepts identifier types ([a-z][a-z0-9_]{0,63}, as the
// edge does) and profile_id.
func validErasureType(t string) bool {
	if t == "" || len(t) > 64 || t[0] < 'a' || t[0] > 'z' {
		return false
	}
	for i := 0; i < len(t); i++ {
		c := t[i]
		if (c < 'a' || c > 'z') && (c < '0' || c > '9') && c != '_' {
			return false
		}
	}
	return true
}

func audienceExit(name string, version, now int64) audience.Transition {
	return audience.Transition{Audience: name, Version: version, Reason: ReasonErased, Time: now}
}

func suppressKey(typ string, hash []byte) []byte {
	k := make([]byte, 0, len(prefixSuppress)+len(typ)+1+len(hash))
	k = append(append(append(k, prefixSuppress...), typ...), '/')
	return append(k, hash...)
}

func erasureKey(prefix, id []byte) []byte { return append(append([]byte(nil), prefix...), id...) }

// hasSuppressions reports whether any identifier is suppressed (one seek per
// entry spares the per-identifier look-ups on a node that never erased).
func hasSuppressions(r store.Reader) (bool, error) {
	found := false
	err := r.Scan(prefixSuppress, store.PrefixEnd(prefixSuppress), false, func(_, _ []byte) bool {
		found = true
		return false
	})
	return found, err
}

// suppressed reports whether rec carries a suppressed identifier.
func suppressed(r store.Reader, rec *event.Record) (bool, error) {
	for _, id := range rec.IDs {
		_, err := r.Get(suppressKey(id.Type, id.Hash))
		if err == nil {
			return true, nil
		}
		if !errors.Is(err, store.ErrNotFound) {
			return false, fmt.Errorf("projections: suppression of %s: %w", id.Type, err)
		}
	}
	return false, nil
}

func countSuppressed(rw store.ReadWriter, n int) error {
	cur, err := readUint64(rw, keySuppressed)
	if err != nil {
		return err
	}
	return setUint64(rw, keySuppressed, cur+uint64(n))
}

// applyErasureControl applies the erasure kinds; others are left alone.
func (sm *StateMachine) applyErasureControl(rw store.ReadWriter, seq uint64, c *Control, cmds []PartitionCommand, res *Result) error {
	switch c.Kind {
	case ControlErasureRequest:
		return sm.applyErasureRequest(rw, seq, c, cmds, res)
	case ControlErasureCompleted:
		return applyErasureCompleted(rw, seq, c, res)
	}
	return nil
}

func (sm *StateMachine) applyErasureRequest(rw store.ReadWriter, seq uint64, c *Control, cmds []PartitionCommand, res *Result) error {
	er := c.Erasure
	if len(er.ID) != 16 || !validErasureType(er.Type) || len(er.Hash) != 16 {
		res.Invalid++ // ignored alike by every replay
		return nil
	}
	if _, err := rw.Get(erasureKey(prefixErasure, er.ID)); err == nil {
		return nil // the same request appended twice: the first one counts
	} else if !errors.Is(err, store.ErrNotFound) {
		return err
	}
	st := ErasureStatus{ID: er.ID, Type: er.Type, Requested: c.Time, Seq: seq}
	pend := ErasurePending{ID: er.ID}
	keys := map[string]bool{}
	suppress := func(typ string, hash []byte) error {
		if typ == event.ProfileID {
			return nil // not an event identifier and not a data key
		}
		keys[string(hash)] = true
		return rw.Set(suppressKey(typ, hash), nil)
	}
	if err := suppress(er.Type, er.Hash); err != nil {
		return err
	}
	root, err := sm.Keychain().Lookup(rw, er.Type, er.Hash)
	switch {
	case errors.Is(err, store.ErrNotFound):
	case err != nil:
		return fmt.Errorf("projections: erasure %s: %w", ulidString(er.ID), err)
	default:
		if err := sm.eraseProfile(rw, root, &st, &pend, cmds, suppress); err != nil {
			return fmt.Errorf("projections: erasure %s: %w", ulidString(er.ID), err)
		}
	}
	for k := range keys {
		pend.Keys = append(pend.Keys, []byte(k))
	}
	slices.SortFunc(pend.Keys, bytes.Compare)
	if err := setMsgpack(rw, erasureKey(prefixErasure, er.ID), &st); err != nil {
		return err
	}
	if err := setMsgpack(rw, erasureKey(prefixErasurePending, er.ID), &pend); err != nil {
		return err
	}
	res.Erasures++
	res.erasure = er.ID
	return nil
}

// eraseProfile removes root from the global ranges (keychain, merge
// records) and routes the partition work (GCR, events, audiences, history).
func (sm *StateMachine) eraseProfile(rw store.ReadWriter, root []byte, st *ErasureStatus, pend *ErasurePending,
	cmds []PartitionCommand, suppress func(string, []byte) error) error {
	// Read before the keychain forgets: the GCR's sealed identifier values.
	prof, err := sm.gcr.Get(rw, root)
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		return err
	}
	gone, root, err := sm.Keychain().Erase(rw, root)
	if err != nil {
		return err
	}
	st.Found = true
	st.Identifiers = len(gone.Identifiers)
	for _, id := range gone.Identifiers {
		if err := suppress(id.Type, id.Hash); err != nil {
			return err
		}
	}
	if prof != nil {
		for _, id := range prof.Identifiers {
			if len(id.Sealed) > 0 {
				pend.Values = append(pend.Values, SealedValue{Type: id.Type, Key: id.Key, Sealed: id.Sealed})
			}
		}
	}
	family := append([][]byte{root}, gone.MergedFrom...)
	st.Profiles = len(family)
	pend.Profiles = family
	n := len(sm.partitions)
	for _, id := range family {
		events, err := sm.gcr.CountEvents(rw, id)
		if err != nil {
			return err
		}
		st.Events += events
		mprefix := append(append([]byte(nil), prefixMerge...), id...)
		if err := deleteRange(rw, mprefix); err != nil {
			return err
		}
		p := sm.partitions[gcr.PartitionOf(id, n)]
		if t, ok, err := p.firstHistory(rw, id); err != nil {
			return err
		} else if ok && (pend.FirstOutput == 0 || t < pend.FirstOutput) {
			pend.FirstOutput = t
		}
		cmds[p.id].Erase = append(cmds[p.id].Erase, id)
	}
	return nil
}

func applyErasureCompleted(rw store.ReadWriter, seq uint64, c *Control, res *Result) error {
	if len(c.Erasure.ID) != 16 {
		res.Invalid++
		return nil
	}
	key := erasureKey(prefixErasure, c.Erasure.ID)
	v, err := rw.Get(key)
	if errors.Is(err, store.ErrNotFound) {
		return nil // completion of an unknown request: ignored alike by every replay
	}
	if err != nil {
		return err
	}
	var st ErasureStatus
	if err := msgpack.Unmarshal(v, &st); err != nil {
		return fmt.Errorf("projections: erasure status %x: %w", c.Erasure.ID, err)
	}
	if st.Completed != 0 {
		return nil
	}
	st.Completed, st.CompletedSeq = max(c.Time, 1), seq
	st.Destinations = c.Erasure.Destinations[:min(len(c.Erasure.Destinations), maxErasureDestinations)]
	if err := setMsgpack(rw, key, &st); err != nil {
		return err
	}
	res.Erasures++
	pk := erasureKey(prefixErasurePending, c.Erasure.ID)
	pv, err := rw.Get(pk)
	switch {
	case err == nil:
		var pend ErasurePending
		if err := msgpack.Unmarshal(pv, &pend); err != nil {
			return fmt.Errorf("projections: pending erasure %x: %w", c.Erasure.ID, err)
		}
		res.ErasedKeys = append(res.ErasedKeys, pend.Keys...)
	case !errors.Is(err, store.ErrNotFound):
		return err
	}
	return rw.Delete(pk)
}

// finishErasure records how many memberships the entry's erasure ended.
func (sm *StateMachine) finishErasure(rw store.ReadWriter, cmds []PartitionCommand, res *Result) error {
	if res.erasure == nil {
		return nil
	}
	n := 0
	for i := range cmds {
		n += cmds[i].erasedAudiences
	}
	return setUint64(rw, erasureKey(prefixErasureOut, res.erasure), uint64(n))
}

func deleteRange(rw store.ReadWriter, prefix []byte) error {
	var keys [][]byte
	if err := rw.Scan(prefix, store.PrefixEnd(prefix), false, func(k, _ []byte) bool {
		keys = append(keys, bytes.Clone(k))
		return true
	}); err != nil {
		return err
	}
	for _, k := range keys {
		if err := rw.Delete(k); err != nil {
			return err
		}
	}
	return nil
}

func (p *Partition) historyPrefix(profile []byte) []byte { return p.key([]byte("h/"), profile) }

func (p *Partition) historyKey(profile []byte, t int64, seq uint64, idx uint32) []byte {
	k := p.historyPrefix(profile)
	k = binary.BigEndian.AppendUint64(k, uint64(max(t, 0)))
	k = binary.BigEndian.AppendUint64(k, seq)
	return binary.BigEndian.AppendUint32(k, idx)
}

// firstHistory returns the time of the profile's earliest history entry.
func (p *Partition) firstHistory(r store.Reader, profile []byte) (int64, bool, error) {
	prefix := p.historyPrefix(profile)
	var t int64
	ok := false
	err := r.Scan(prefix, store.PrefixEnd(prefix), false, func(k, _ []byte) bool {
		if len(k) >= len(prefix)+8 {
			t, ok = int64(binary.BigEndian.Uint64(k[len(prefix):])), true
		}
		return false
	})
	return t, ok, err
}

// erase removes one profile of this partition for an erasure: its
// memberships end (reason "erased", no identifiers), then its audience
// state, timer, history, GCR and event records are deleted, and the
// identifiers are stripped from its outbox entries not yet published.
func (p *Partition) erase(rw store.ReadWriter, cmd *PartitionCommand, id []byte) error {
	st, err := loadAudienceState(rw, p, id)
	if err != nil {
		return err
	}
	if st != nil {
		for _, m := range st.Members {
			tr := audienceExit(m.Audience, m.Version, cmd.Now)
			if err := p.transition(rw, cmd, id, nil, tr, &cmd.outIdx); err != nil {
				return err
			}
			cmd.erasedAudiences++
		}
		if st.Timer != 0 {
			if err := rw.Delete(p.timerKey(st.Timer, id)); err != nil {
				return err
			}
		}
		if err := rw.Delete(p.stateKey(id)); err != nil {
			return err
		}
	}
	if err := deleteRange(rw, p.historyPrefix(id)); err != nil {
		return err
	}
	txn := p.gcr.Begin(rw)
	if err := txn.Drop(id); err != nil {
		return err
	}
	if err := txn.Flush(); err != nil {
		return err
	}
	if _, err := p.gcr.EraseEvents(rw, id); err != nil {
		return err
	}
	// Outputs decided before the erasure but not yet published: they go
	// out without the person's identifiers.
	prefix := p.key([]byte("o/"))
	var rewrite []OutboxEntry
	var derr error
	if err := rw.Scan(prefix, store.PrefixEnd(prefix), false, func(k, v []byte) bool {
		var m OutMsg
		if derr = msgpack.Unmarshal(v, &m); derr != nil {
			return false
		}
		if bytes.Equal(m.Profile, id) && len(m.Identifiers) > 0 {
			m.Identifiers = nil
			rewrite = append(rewrite, OutboxEntry{Key: bytes.Clone(k), Msg: m})
		}
		return true
	}); err != nil {
		return err
	}
	if derr != nil {
		return fmt.Errorf("outbox entry: %w", derr)
	}
	for i := range rewrite {
		if err := setMsgpack(rw, rewrite[i].Key, &rewrite[i].Msg); err != nil {
			return err
		}
	}
	return nil
}

// Erasure returns the status of erasure id, or store.ErrNotFound.
func Erasure(r store.Reader, id []byte) (ErasureStatus, error) {
	var st ErasureStatus
	v, err := r.Get(erasureKey(prefixErasure, id))
	if err != nil {
		return st, err
	}
	if err := msgpack.Unmarshal(v, &st); err != nil {
		return st, fmt.Errorf("projections: erasure status %x: %w", id, err)
	}
	n, err := readUint64(r, erasureKey(prefixErasureOut, id))
	st.Audiences = int(n)
	return st, err
}

// Erasures lists every erasure, oldest first (ids are ULIDs).
func Erasures(r store.Reader) ([]ErasureStatus, error) {
	out, err := scanValues[ErasureStatus](r, prefixErasure, 0)
	if err != nil {
		return nil, fmt.Errorf("projections: list erasures: %w", err)
	}
	for i := range out {
		n, err := readUint64(r, erasureKey(prefixErasureOut, out[i].ID))
		if err != nil {
			return nil, err
		}
		out[i].Audiences = int(n)
	}
	return out, nil
}

// PendingErasures lists the erasures whose keys are not yet destroyed.
func PendingErasures(r store.Reader) ([]ErasurePending, error) {
	out, err := scanValues[ErasurePending](r, prefixErasurePending, 0)
	if err != nil {
		return nil, fmt.Errorf("projections: pending erasures: %w", err)
	}
	return out, nil
}

// HasPendingErasure reports whether any erasure is pending (applied, its
// keys not yet destroyed everywhere).
func HasPendingErasure(r store.Reader) (bool, error) {
	has := false
	err := r.Scan(prefixErasurePending, store.PrefixEnd(prefixErasurePending), false, func(_, _ []byte) bool {
		has = true
		return false
	})
	if err != nil {
		return false, fmt.Errorf("projections: pending erasures: %w", err)
	}
	return has, nil
}

// SuppressedKeys returns the hashes (= data key ids) of every suppressed
// identifier.
func SuppressedKeys(r store.Reader) ([][]byte, error) {
	var out [][]byte
	err := r.Scan(prefixSuppress, store.PrefixEnd(prefixSuppress), false, func(k, _ []byte) bool {
		if len(k) >= len(prefixSuppress)+16+1 {
			out = append(out, bytes.Clone(k[len(k)-16:]))
		}
		return true
	})
	if err != nil {
		return nil, fmt.Errorf("projections: suppressed keys: %w", err)
	}
	return out, nil
}

// Suppressed returns how many records were dropped as suppressed.
func Suppressed(r store.Reader) (uint64, error) { return readUint64(r, keySuppressed) }

// AudienceHistory returns the audience history of the given profiles (a
// root and the profiles merged into it), ordered by time, then log position.
func (sm *StateMachine) AudienceHistory(r store.Reader, profiles [][]byte) ([]HistoryEntry, error) {
	type row struct {
		order []byte
		h     HistoryEntry
	}
	var rows []row
	for _, id := range profiles {
		p := sm.partitions[gcr.PartitionOf(id, len(sm.partitions))]
		prefix := p.historyPrefix(id)
		var derr error
		err := r.Scan(prefix, store.PrefixEnd(prefix), false, func(k, v []byte) bool {
			var h HistoryEntry
			if derr = msgpack.Unmarshal(v, &h); derr != nil {
				return false
			}
			rows = append(rows, row{order: bytes.Clone(k[len(prefix):]), h: h})
			return true
		})
		if err == nil {
			err = derr
		}
		if err != nil {
			return nil, fmt.Errorf("projections: audience history: %w", err)
		}
	}
	slices.SortStableFunc(rows, func(a, b row) int { return bytes.Compare(a.order, b.order) })
	out := make([]HistoryEntry, len(rows))
	for i := range rows {
		out[i] = rows[i].h
	}
	return out, nil
}
