package matching

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/aurumcdp/aurum/engine/base"
	"github.com/aurumcdp/aurum/projections"
	"github.com/aurumcdp/aurum/store"
	"github.com/oklog/ulid/v2"
)

// Unmerge (issue #13, ARCHITECTURE.md "Probabilistic identity", "Split"):
// Split checks a request against the state, appends an identity.split
// record and reports what the state machine made of it. The state machine
// moves the identifiers and their events into a new profile, rebuilds both
// GCRs and audience states and records a rejection of the pair, so the
// matcher never merges them back (an event carrying identifiers of both
// still does: the keychain follows what events state).

// Identifiers hashes identifier references (type:value) as the keychain
// holds them (engine/query.Reader).
type Identifiers interface {
	IdentifierHash(ref string) (typ string, hash []byte, err error)
}

// SplitInfo is a split as the API shows it.
type SplitInfo struct {
	ID     string `json:"id"`
	Status string `json:"status"` // split | refused
	Reason string `json:"reason,omitempty"`
	From   string `json:"from"`           // the profile split
	Into   string `json:"into,omitempty"` // the new profile
	// IdentifierTypes are the types of the identifiers moved (values are
	// never kept in clear), one per identifier.
	IdentifierTypes []string  `json:"identifier_types"`
	EventsMoved     int       `json:"events_moved"`
	EventsKept      int       `json:"events_kept"`
	By              string    `json:"by,omitempty"`
	Time            time.Time `json:"time"`
	Seq             uint64    `json:"seq"`
}

// SplitInfoOf converts a split record.
func SplitInfoOf(s *projections.SplitRecord) SplitInfo {
	v := SplitInfo{ID: base.ULIDString(s.ID), Status: s.Status, Reason: s.Reason, From: base.ULIDString(s.From),
		EventsMoved: s.EventsMoved, EventsKept: s.EventsKept, By: s.By, Time: time.UnixMilli(s.Time).UTC(), Seq: s.Seq,
		IdentifierTypes: make([]string, 0, len(s.Identifiers))}
	if len(s.Into) > 0 {
		v.Into = base.ULIDString(s.Into)
	}
	for _, x := range s.Identifiers {
		v.IdentifierTypes = append(v.IdentifierTypes, x.Type)
	}
	return v
}

// Split moves the identifiers (type:value each) of the person ref names,
// and the events that came with them, into a new profile, and returns the
// split once applied. Errors: base.ErrNotFound for an unknown ref,
// base.ErrBadRef for a malformed one, base.ErrInvalid (naming the field
// and the identifiers) for an empty list, identifiers the profile does
// not own, or all of them.
func (s *Service) Split(ctx context.Context, ref string, identifiers []string, by string) (SplitInfo, error) {
	if s.deps.Identifiers == nil {
		return SplitInfo{}, errors.New("matching: split: no identifier hasher")
	}
	if len(identifiers) == 0 {
		return SplitInfo{}, fmt.Errorf("%w: identifiers: give at least one identifier (type:value) to split off", base.ErrInvalid)
	}
	if len(identifiers) > projections.MaxSplitIdentifiers {
		return SplitInfo{}, fmt.Errorf("%w: identifiers: at most %d", base.ErrInvalid, projections.MaxSplitIdentifiers)
	}
	req := &projections.SplitRequest{ID: s.opts.NewID(), By: by}
	seen := map[string]bool{}
	names := map[string]string{} // type\x00hash → as given
	for _, id := range identifiers {
		typ, hash, err := s.deps.Identifiers.IdentifierHash(id)
		if err != nil {
			return SplitInfo{}, fmt.Errorf("%w: identifiers: %v", base.ErrInvalid, err)
		}
		k := typ + "\x00" + string(hash)
		if seen[k] {
			continue
		}
		seen[k], names[k] = true, id
		req.Identifiers = append(req.Identifiers, projections.SplitIdent{Type: typ, Hash: hash})
	}
	if err := s.deps.State.Read(func(r store.Reader, sm *projections.StateMachine) error {
		v, err := s.deps.Profiles.ViewAt(r, sm, ref)
		if err != nil {
			return err
		}
		u, err := ulid.ParseStrict(v.ProfileID)
		if err != nil {
			return fmt.Errorf("matching: split: profile id %q: %w", v.ProfileID, err)
		}
		req.Profile = u[:]
		owned, err := sm.Keychain().Identifiers(r, u[:])
		if err != nil {
			return err
		}
		var missing []string
		for _, x := range req.Identifiers {
			found := false
			for _, o := range owned {
				found = found || (o.Type == x.Type && bytes.Equal(o.Hash, x.Hash))
			}
			if !found {
				missing = append(missing, names[x.Type+"\x00"+string(x.Hash)])
			}
		}
		if len(missing) > 0 {
			return fmt.Errorf("%w: identifiers: not identifiers of %s (profile %s): %s", base.ErrInvalid, ref, v.ProfileID, strings.Join(missing, ", "))
		}
		if len(req.Identifiers) >= len(owned) {
			return fmt.Errorf("%w: identifiers: these are all the identifiers of %s (profile %s): nothing would stay; split off fewer",
				base.ErrInvalid, ref, v.ProfileID)
		}
		return nil
	}); err != nil {
		return SplitInfo{}, err
	}
	seq, err := s.deps.Control.AppendControl(ctx, projections.Control{Kind: projections.ControlIdentitySplit, Split: req})
	if err != nil {
		return SplitInfo{}, fmt.Errorf("matching: append identity.split: %w", err)
	}
	if err := s.deps.Applied.WaitApplied(ctx, seq); err != nil {
		return SplitInfo{}, err
	}
	var out SplitInfo
	if err := s.deps.State.Read(func(r store.Reader, _ *projections.StateMachine) error {
		rec, err := projections.GetSplit(r, req.ID)
		out = SplitInfoOf(&rec)
		return err
	}); err != nil {
		return SplitInfo{}, err
	}
	if out.Status != projections.SplitDone {
		// The profile changed between the check and the apply.
		return out, fmt.Errorf("%w: identifiers: split refused: %s", base.ErrInvalid, out.Reason)
	}
	return out, nil
}

// splitsOf returns the splits the profiles took part in, in log order,
// each once.
func splitsOf(r store.Reader, profiles [][]byte) ([]SplitInfo, error) {
	var recs []projections.SplitRecord
	seen := map[string]bool{}
	for _, p := range profiles {
		ss, err := projections.Splits(r, p)
		if err != nil {
			return nil, err
		}
		for _, x := range ss {
			if !seen[string(x.ID)] {
				seen[string(x.ID)] = true
				recs = append(recs, x)
			}
		}
	}
	slices.SortStableFunc(recs, func(a, b projections.SplitRecord) int {
		switch {
		case a.Seq < b.Seq:
			return -1
		case a.Seq > b.Seq:
			return 1
		}
		return 0
	})
	out := make([]SplitInfo, 0, len(recs))
	for i := range recs {
		out = append(out, SplitInfoOf(&recs[i]))
	}
	return out, nil
}
