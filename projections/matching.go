package projections

import (
	"bytes"
	"errors"
	"fmt"
	"math"

	"github.com/aurumcdp/aurum/projections/gcr"
	"github.com/aurumcdp/aurum/projections/identity"
	"github.com/aurumcdp/aurum/projections/match"
	"github.com/aurumcdp/aurum/store"
)

// Probabilistic identity (issue #13, ARCHITECTURE.md "Probabilistic
// identity"). The matcher outside the state machine proposes; the log
// decides: an identity.match record carries a scored pair, and Apply merges
// it, queues it for review or refuses it, by the rules below and the config
// in effect, never by anything the matcher saw. The state machine never
// scores.

// Control kinds of probabilistic identity.
const (
	ControlIdentityMatch  = "identity.match"  // Match: a scored pair the matcher proposes
	ControlIdentityReview = "identity.review" // Review: a reviewer's decision on a queued pair
	ControlIdentityModel  = "identity.model"  // IdentityModel: the fitted weights in effect from this entry on
)

// Match statuses.
const (
	MatchMerged   = "merged"   // the two profiles were merged
	MatchPending  = "pending"  // in the review queue
	MatchRejected = "rejected" // a reviewer rejected it: never merged automatically again
	MatchRefused  = "refused"  // a hard constraint or the thresholds said no (Reason)
	MatchLinked   = "linked"   // the two were one profile already
)

// Decisions of a match (Classify) and of a reviewer.
const (
	DecisionMerge  = "merge"
	DecisionReview = "review"
	DecisionReject = "reject"
)

// Key prefixes of probabilistic identity.
var (
	keyMatchModel     = []byte("mm/model") // msgpack match.Model in effect
	prefixMatch       = []byte("mt/")      // mt/<match16> → msgpack MatchRecord
	prefixReviewQ     = []byte("rq/")      // rq/<match16> → empty: pending review
	prefixRejection   = []byte("rj/")      // rj/<profile16><profile16> → match16 (both orders)
	prefixPendingPair = []byte("rp/")      // rp/<root16><root16> → match16 of a pending review (smaller root first)
)

// MatchRecord is a proposed pair and what became of it: the identity.match
// record's payload, and (Status, Reason, Review, Seq, Decided) what Apply
// made of it, kept at mt/<ID>.
type MatchRecord struct {
	ID            []byte               `msgpack:"id"` // 16-byte ULID assigned by the proposer
	A             []byte               `msgpack:"a"`  // the profile whose traits changed
	B             []byte               `msgpack:"b"`  // the candidate
	Probability   float64              `msgpack:"p"`
	Weight        float64              `msgpack:"w"`
	ModelVersion  string               `msgpack:"mv"`
	Contributions []match.Contribution `msgpack:"c"`
	Decision      string               `msgpack:"d"` // the proposer's: merge or review

	Status   string `msgpack:"st,omitempty"`
	Reason   string `msgpack:"rs,omitempty"`
	Review   string `msgpack:"rv,omitempty"` // reviewer's decision: merge or reject
	Reviewer string `msgpack:"rb,omitempty"`
	Seq      uint64 `msgpack:"q,omitempty"`  // log position of the match record
	Time     int64  `msgpack:"t,omitempty"`  // its log time
	Decided  int64  `msgpack:"dt,omitempty"` // log time of the review
	Into     []byte `msgpack:"i,omitempty"`  // the surviving profile of a merge
}

// ReviewDecision is the identity.review record's payload.
type ReviewDecision struct {
	Match    []byte `msgpack:"m"`
	Decision string `msgpack:"d"` // merge or reject
	Reviewer string `msgpack:"by,omitempty"`
}

func matchKey(id []byte) []byte   { return append(append([]byte(nil), prefixMatch...), id...) }
func reviewQKey(id []byte) []byte { return append(append([]byte(nil), prefixReviewQ...), id...) }
func rejectionKey(a, b []byte) []byte {
	return append(append(append([]byte(nil), prefixRejection...), a...), b...)
}

// valid reports whether m is well-formed; an ill-formed record on the log
// is ignored alike by every replay.
func (m *MatchRecord) valid() bool {
	p := m.Probability
	return len(m.ID) == identity.IDLen && len(m.A) == identity.IDLen && len(m.B) == identity.IDLen &&
		!bytes.Equal(m.A, m.B) && !math.IsNaN(p) && p >= 0 && p <= 1 &&
		(m.Decision == DecisionMerge || m.Decision == DecisionReview) && len(m.Contributions) <= match.MaxFields
}

// applyMatchControl applies the kinds of probabilistic identity; others are
// left alone.
func (sm *StateMachine) applyMatchControl(rw store.ReadWriter, seq uint64, c *Control, cmds []PartitionCommand, res *Result) error {
	switch c.Kind {
	case ControlIdentityModel:
		m := c.IdentityModel
		if m == nil || m.Version == "" || len(m.Fields) == 0 || len(m.Fields) > match.MaxFields {
			return nil
		}
		res.IdentityModel = true
		if err := setMsgpack(rw, keyMatchModel, m); err != nil {
			return err
		}
		return startPass(rw, seq, "model") // everyone is matched again
	case ControlIdentityConfig:
		return sm.configChanged(rw, seq)
	case ControlIdentityProgress:
		return sm.applyProgress(rw, seq, c)
	case ControlIdentityMatch:
		return sm.applyMatch(rw, seq, c, cmds, res)
	case ControlIdentityReview:
		return sm.applyReview(rw, seq, c, cmds, res)
	}
	return nil
}

func (sm *StateMachine) applyMatch(rw store.ReadWriter, seq uint64, c *Control, cmds []PartitionCommand, res *Result) error {
	m := c.Match
	if m == nil || !m.valid() {
		return nil
	}
	if _, ok, err := getMsgpack[MatchRecord](rw, matchKey(m.ID)); err != nil || ok {
		return err // a match id is decided once
	}
	rec := *m
	rec.Status, rec.Reason, rec.Review, rec.Reviewer, rec.Decided, rec.Into = "", "", "", "", 0, nil
	rec.Seq, rec.Time = seq, c.Time
	res.Matches++
	cfg := sm.Keychain().Config().Probabilistic
	switch {
	case cfg == nil:
		rec.Status, rec.Reason = MatchRefused, "probabilistic matching is off"
	default:
		// The log decides: the thresholds in effect, not the proposer's.
		switch cfg.Classify(rec.Probability) {
		case DecisionMerge:
			if err := sm.link(rw, seq, c.Time, &rec, cmds, res); err != nil {
				return err
			}
		case DecisionReview:
			if err := sm.queue(rw, &rec); err != nil {
				return err
			}
		default:
			rec.Status, rec.Reason = MatchRefused, fmt.Sprintf("probability %.4f below the review threshold", rec.Probability)
		}
	}
	return setMsgpack(rw, matchKey(rec.ID), &rec)
}

// queue puts rec in the review queue unless a hard constraint refuses it
// already (then a reviewer could not merge it either).
func (sm *StateMachine) queue(rw store.ReadWriter, rec *MatchRecord) error {
	ok, err := sm.checkPair(rw, rec)
	if err != nil || !ok {
		return err
	}
	kc := sm.Keychain()
	ra, err := kc.Root(rw, rec.A)
	if err != nil {
		return err
	}
	rb, err := kc.Root(rw, rec.B)
	if err != nil {
		return err
	}
	pk := pendingPairKey(ra, rb)
	if v, err := rw.Get(pk); err == nil {
		if other, ok, err := getMsgpack[MatchRecord](rw, matchKey(v)); err != nil {
			return err
		} else if ok && other.Status == MatchPending {
			rec.Status, rec.Reason = MatchRefused, "the pair awaits review already (match "+ulidString(v)+")"
			return nil
		}
	} else if !errors.Is(err, store.ErrNotFound) {
		return err
	}
	rec.Status = MatchPending
	if err := rw.Set(pk, rec.ID); err != nil {
		return err
	}
	return rw.Set(reviewQKey(rec.ID), nil)
}

// pendingPairKey is the key of the pending review of two roots (in either
// order): rp/<smaller16><larger16> → match id. A stale entry (the match was
// decided, or the roots changed) is harmless: it is only read to refuse a
// second pending review of the same pair.
func pendingPairKey(a, b []byte) []byte {
	if bytes.Compare(a, b) > 0 {
		a, b = b, a
	}
	return append(append(append([]byte(nil), prefixPendingPair...), a...), b...)
}

// checkPair applies the hard constraints: both profiles exist (an erased
// one does not), they are not one profile already, no reviewer rejected the
// pair, and their union stays within the identity limits. It sets rec's status and
// reason when it says no.
func (sm *StateMachine) checkPair(rw store.ReadWriter, rec *MatchRecord) (bool, error) {
	kc := sm.Keychain()
	ra, err := kc.Root(rw, rec.A)
	if err == nil {
		var rb []byte
		rb, err = kc.Root(rw, rec.B)
		if err == nil {
			if bytes.Equal(ra, rb) {
				rec.Status, rec.Into = MatchLinked, ra
				return false, nil
			}
			rejected, err := sm.rejected(rw, ra, rb)
			if err != nil {
				return false, err
			}
			if rejected {
				rec.Status, rec.Reason = MatchRefused, "a reviewer rejected this pair"
				return false, nil
			}
			if err := kc.Linkable(rw, ra, rb); errors.Is(err, identity.ErrLimit) {
				rec.Status, rec.Reason = MatchRefused, err.Error()
				return false, nil
			} else if err != nil {
				return false, err
			}
			return true, nil
		}
	}
	if errors.Is(err, store.ErrNotFound) {
		rec.Status, rec.Reason = MatchRefused, "profile unknown or erased"
		return false, nil
	}
	return false, err
}

// rejected reports whether a reviewer rejected a pair of profiles that are
// now part of the roots ra and rb (either of them, or a profile merged into
// them since).
func (sm *StateMachine) rejected(rw store.ReadWriter, ra, rb []byte) (bool, error) {
	kc := sm.Keychain()
	from, err := kc.MergedFrom(rw, ra)
	if err != nil {
		return false, fmt.Errorf("projections: rejections of %x: %w", ra, err)
	}
	for _, x := range append([][]byte{ra}, from...) {
		var partners [][]byte
		prefix := rejectionKey(x, nil)
		if err := rw.Scan(prefix, prefixEnd(prefix), false, func(k, _ []byte) bool {
			partners = append(partners, bytes.Clone(k[len(prefix):]))
			return true
		}); err != nil {
			return false, fmt.Errorf("projections: rejections of %x: %w", x, err)
		}
		for _, y := range partners {
			r, err := kc.Root(rw, y)
			if errors.Is(err, store.ErrNotFound) {
				continue
			}
			if err != nil {
				return false, err
			}
			if bytes.Equal(r, rb) {
				return true, nil
			}
		}
	}
	return false, nil
}

// prefixEnd returns the smallest key after every key with prefix p.
func prefixEnd(p []byte) []byte {
	end := bytes.Clone(p)
	for i := len(end) - 1; i >= 0; i-- {
		if end[i] < 0xff {
			end[i]++
			return end[:i+1]
		}
	}
	return nil
}

// link merges the pair of rec if every hard constraint allows it: both
// profiles exist, no reviewer rejected the pair, the union stays within the
// identity limits. It routes the GCR work to the partitions as a merge by an
// event does, records the merge (mg/, with the match id as its cause) and
// its aurum.identity.merged output.
func (sm *StateMachine) link(rw store.ReadWriter, seq uint64, now int64, rec *MatchRecord, cmds []PartitionCommand, res *Result) error {
	ok, err := sm.checkPair(rw, rec)
	if err != nil || !ok {
		return err
	}
	m, err := sm.Keychain().Link(rw, rec.A, rec.B)
	switch {
	case errors.Is(err, identity.ErrLimit):
		rec.Status, rec.Reason = MatchRefused, err.Error()
		return nil
	case err != nil:
		return fmt.Errorf("projections: apply seq %d: match %s: %w", seq, ulidString(rec.ID), err)
	}
	rec.Status, rec.Into = MatchMerged, m.Into
	m.EventID, m.Type = rec.ID, "probabilistic"
	var idx uint32
	if err := sm.recordMergeAt(rw, seq, &idx, now, m, rec.ID); err != nil {
		return err
	}
	res.Merges++
	res.Outbox += int(idx)
	return sm.absorb(rw, m.From, m.Into, cmds)
}

// absorb routes a merged-away profile's GCR and audience state to its
// root's partition (Absorb) and drops it from its own (Drop).
func (sm *StateMachine) absorb(rw store.ReadWriter, from, root []byte, cmds []PartitionCommand) error {
	n := len(sm.partitions)
	if err := sm.releaseOwner(rw, from); err != nil {
		return err
	}
	g, err := sm.gcr.Get(rw, from)
	if errors.Is(err, store.ErrNotFound) {
		return nil // created and merged away within this entry: it has no GCR yet
	}
	if err != nil {
		return err
	}
	st, err := loadAudienceState(rw, sm.partitions[gcr.PartitionOf(from, n)], from)
	if err != nil {
		return err
	}
	pi := gcr.PartitionOf(root, n)
	cmds[pi].Absorb = append(cmds[pi].Absorb, Absorption{Into: root, From: g, FromState: st})
	pf := gcr.PartitionOf(from, n)
	cmds[pf].Drop = append(cmds[pf].Drop, from)
	return nil
}

func (sm *StateMachine) applyReview(rw store.ReadWriter, seq uint64, c *Control, cmds []PartitionCommand, res *Result) error {
	d := c.Review
	if d == nil || len(d.Match) != identity.IDLen || (d.Decision != DecisionMerge && d.Decision != DecisionReject) {
		return nil
	}
	rec, ok, err := getMsgpack[MatchRecord](rw, matchKey(d.Match))
	if err != nil || !ok || rec.Status != MatchPending {
		return err // decided once; an unknown id is no change
	}
	if err := rw.Delete(reviewQKey(rec.ID)); err != nil {
		return err
	}
	rec.Review, rec.Reviewer, rec.Decided = d.Decision, d.Reviewer, c.Time
	res.Reviews++
	switch d.Decision {
	case DecisionReject:
		rec.Status = MatchRejected
		for _, k := range [][]byte{rejectionKey(rec.A, rec.B), rejectionKey(rec.B, rec.A)} {
			if err := rw.Set(k, rec.ID); err != nil {
				return err
			}
		}
	case DecisionMerge:
		// A reviewer overrides the thresholds, never a hard constraint.
		if err := sm.link(rw, seq, c.Time, &rec, cmds, res); err != nil {
			return err
		}
	}
	return setMsgpack(rw, matchKey(rec.ID), &rec)
}

// GetMatch returns the match record id, or store.ErrNotFound.
func GetMatch(r store.Reader, id []byte) (MatchRecord, error) {
	m, ok, err := getMsgpack[MatchRecord](r, matchKey(id))
	if err != nil {
		return m, fmt.Errorf("projections: match %x: %w", id, err)
	}
	if !ok {
		return m, store.ErrNotFound
	}
	return m, nil
}

// Reviews returns the pending matches, oldest id first, at most max (0: all).
func Reviews(r store.Reader, max int) ([]MatchRecord, error) {
	var ids [][]byte
	if err := r.Scan(prefixReviewQ, prefixEnd(prefixReviewQ), false, func(k, _ []byte) bool {
		ids = append(ids, bytes.Clone(k[len(prefixReviewQ):]))
		return max <= 0 || len(ids) < max
	}); err != nil {
		return nil, fmt.Errorf("projections: reviews: %w", err)
	}
	out := make([]MatchRecord, 0, len(ids))
	for _, id := range ids {
		m, err := GetMatch(r, id)
		if err != nil {
			return nil, err
		}
		out = append(out, m)
	}
	return out, nil
}

// MatchModel returns the identity model in effect, or store.ErrNotFound.
func MatchModel(r store.Reader) (*match.Model, error) {
	m, ok, err := getMsgpack[match.Model](r, keyMatchModel)
	if err != nil {
		return nil, fmt.Errorf("projections: identity model: %w", err)
	}
	if !ok {
		return nil, store.ErrNotFound
	}
	return &m, nil
}
