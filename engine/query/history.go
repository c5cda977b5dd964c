package query

import (
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/aurumcdp/aurum/engine/base"
	"github.com/aurumcdp/aurum/event"
	"github.com/aurumcdp/aurum/projections"
	"github.com/aurumcdp/aurum/projections/gcr"
	"github.com/aurumcdp/aurum/store"
	"github.com/oklog/ulid/v2"
)

// encodeCursor and decodeCursor give a page position its opaque text form
// (URL-safe base64 of the position's bytes).
func encodeCursor(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

func decodeCursor(s string, n int) ([]byte, error) {
	if s == "" {
		return nil, nil
	}
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil || len(b) != n {
		return nil, fmt.Errorf("%w: cursor %q is not a cursor this route gave (use the \"next\" of the previous page)", base.ErrInvalid, s)
	}
	return b, nil
}

// EventsPage returns up to limit events of the person ref identifies,
// newest first, in Segment's JSON shape, from the cursor on ("" = from
// the newest; else the next of the previous page); next is the cursor of
// the following (older) page, "" when there is none.
func (e *Reader) EventsPage(ref, cursor string, limit int) (out []map[string]any, next string, err error) {
	if limit <= 0 || limit > 1000 {
		return nil, "", fmt.Errorf("%w: limit must be in [1, 1000], got %d", base.ErrInvalid, limit)
	}
	before, err := decodeCursor(cursor, gcr.EventOrderLen)
	if err != nil {
		return nil, "", err
	}
	err = e.read(func(r store.Reader, sm *projections.StateMachine) error {
		p, err := e.profile(r, sm, ref)
		if err != nil {
			return err
		}
		recs, orders, err := sm.GCR().EventsBefore(r, p, before, limit+1)
		if err != nil {
			return err
		}
		if len(recs) > limit {
			recs, next = recs[:limit], encodeCursor(orders[limit-1])
		}
		out = make([]map[string]any, 0, len(recs))
		for i := range recs {
			v, err := gcr.RecordView(&recs[i], e.open)
			if err != nil {
				return err
			}
			out = append(out, v)
		}
		return nil
	})
	return out, next, err
}

// HistoryItem is one entry or exit of a person's audience history.
type HistoryItem struct {
	Audience string    `json:"audience"`
	Event    string    `json:"event"` // entered | exited
	Time     time.Time `json:"time"`  // log time
	// Reason is what caused it: "event:<id>" or "events" (the person's
	// events), "time" (a time window passed), "backfill" (the rule was
	// created or changed), "audience deleted", "merged" (the profile was
	// merged into another; its memberships carry on there).
	Reason      string `json:"reason"`
	RuleVersion int64  `json:"rule_version"`
	Seq         uint64 `json:"seq"`        // the log position that caused it
	ProfileID   string `json:"profile_id"` // the profile it was recorded under: the person's or one merged into it
}

// AudienceHistory returns up to limit entries of the audience history of
// the person ref identifies (their profile and every profile merged into
// it), newest first, from the cursor on ("" = from the newest); next is
// the cursor of the following (older) page, "" when there is none. The
// history is the one the apply keeps with every transition (the export's
// "audience_history"); an erasure removes it with the person.
func (e *Reader) AudienceHistory(ref, cursor string, limit int) (out []HistoryItem, next string, err error) {
	if limit <= 0 || limit > 1000 {
		return nil, "", fmt.Errorf("%w: limit must be in [1, 1000], got %d", base.ErrInvalid, limit)
	}
	before, err := decodeCursor(cursor, projections.HistoryOrderLen+16)
	if err != nil {
		return nil, "", err
	}
	err = e.read(func(r store.Reader, sm *projections.StateMachine) error {
		p, err := e.profile(r, sm, ref)
		if err != nil {
			return err
		}
		rows, err := sm.AudienceHistoryBefore(r, append([][]byte{p.ID}, p.MergedFrom...), before, limit+1)
		if err != nil {
			return err
		}
		if len(rows) > limit {
			rows, next = rows[:limit], encodeCursor(projections.HistoryCursor(rows[limit-1]))
		}
		out = make([]HistoryItem, len(rows))
		for i, h := range rows {
			kind := "exited"
			if h.Entered {
				kind = "entered"
			}
			out[i] = HistoryItem{Audience: h.Audience, Event: kind, Time: time.UnixMilli(h.Time).UTC(), Reason: h.Reason,
				RuleVersion: h.RuleVersion, Seq: h.Seq, ProfileID: base.ULIDString(h.Profile)}
		}
		return nil
	})
	return out, next, err
}

// MemberSearchScan is how many members one SearchMembers call reads at
// most when it scans (a query that is not a known type:value; the
// caller may ask for fewer); past it the answer carries a next cursor from
// which to go on.
const MemberSearchScan = 5000

// MemberSearch is an answer of SearchMembers.
type MemberSearch struct {
	Members []Member `json:"members"`
	// Next is the cursor to go on from ("" when the whole audience was
	// searched); Scanned is how many members this call read.
	Next    string `json:"next"`
	Scanned int    `json:"scanned"`
	// Exact is set when q was an identifier (type:value) looked up in the
	// keychain rather than a prefix scanned for.
	Exact bool `json:"exact"`
}

// SearchMembers finds members of audience name by identifier. A q of the
// form type:value (email:ann@example.com, user_id:u-1, profile_id:...)
// naming a known identifier is looked up exactly in the keychain: the
// person, if they are a member (at most one answer, whatever the
// audience's size). Any other q is a prefix, compared without case with
// every identifier value of each member and with the member's profile id
// (for type:value naming no known identifier: value with the identifiers
// of that type only). Scans read the members in profile id order from the
// cursor on ("" = from the start), at most MemberSearchScan of them per
// call (scan, 0 = MemberSearchScan), until limit match; Next says where
// to go on.
func (e *Reader) SearchMembers(name, q, cursor string, limit, scan int) (MemberSearch, error) {
	res := MemberSearch{Members: []Member{}}
	if limit < 1 || limit > 10000 {
		return res, fmt.Errorf("%w: limit must be in [1, 10000]", base.ErrInvalid)
	}
	if scan == 0 {
		scan = MemberSearchScan
	}
	if scan < 1 || scan > MemberSearchScan {
		return res, fmt.Errorf("%w: scan must be in [1, %d]", base.ErrInvalid, MemberSearchScan)
	}
	q = strings.TrimSpace(q)
	if q == "" {
		return res, fmt.Errorf("%w: q is empty", base.ErrInvalid)
	}
	var after []byte
	if cursor != "" {
		u, err := ulid.ParseStrict(cursor)
		if err != nil {
			return res, fmt.Errorf("%w: cursor %q", base.ErrInvalid, cursor)
		}
		after = u[:]
	}
	if _, err := e.Audience(name); err != nil {
		return res, err
	}
	typ, prefix := "", strings.ToLower(q)
	if t, v, err := base.ParseRef(q); err == nil && validIdentType(t) {
		typ, prefix = t, strings.ToLower(strings.TrimSpace(v))
	}
	err := e.read(func(r store.Reader, sm *projections.StateMachine) error {
		if typ != "" && cursor == "" {
			id, err := e.resolve(r, sm, q)
			switch {
			case err == nil:
				res.Exact, res.Scanned = true, 1
				ms, err := sm.Memberships(r, id)
				if err != nil {
					return err
				}
				for _, m := range ms {
					if m.Audience == name {
						res.Members = append(res.Members, Member{ProfileID: base.ULIDString(id), Since: time.UnixMilli(m.Since).UTC(), Version: m.Version})
					}
				}
				return nil
			case !errors.Is(err, base.ErrNotFound) && !errors.Is(err, base.ErrBadRef):
				return err
			}
			// Not a known identifier: scan for it as a prefix of that type.
		}
		const chunk = 500
		for {
			want := min(chunk, scan-res.Scanned)
			ms, ids, err := sm.AudienceMembers(r, name, after, want)
			if err != nil {
				return err
			}
			for i, id := range ids {
				res.Scanned++
				after = id
				ok, err := e.memberMatches(r, sm, id, typ, prefix)
				if err != nil {
					return err
				}
				if !ok {
					continue
				}
				res.Members = append(res.Members, Member{ProfileID: base.ULIDString(id), Since: time.UnixMilli(ms[i].Since).UTC(), Version: ms[i].Version})
				if len(res.Members) == limit {
					res.Next = base.ULIDString(id)
					return nil
				}
			}
			if len(ids) < want {
				return nil // the end of the audience
			}
			if res.Scanned >= scan {
				res.Next = base.ULIDString(after)
				return nil
			}
		}
	})
	return res, err
}

// memberMatches reports whether the profile id or one of the identifier
// values of profile id (of type typ; "" = any) starts with prefix (lower
// case), compared without case.
func (e *Reader) memberMatches(r store.Reader, sm *projections.StateMachine, id []byte, typ, prefix string) (bool, error) {
	if (typ == "" || typ == event.ProfileID) && strings.HasPrefix(strings.ToLower(base.ULIDString(id)), prefix) {
		return true, nil
	}
	p, err := sm.GCR().Get(r, id)
	if errors.Is(err, store.ErrNotFound) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	found := false
	err = p.EachIdentifier(e.open, func(t string, v any) bool {
		if typ != "" && t != typ {
			return true
		}
		s, ok := v.(string)
		if !ok {
			s = fmt.Sprint(v)
		}
		found = strings.HasPrefix(strings.ToLower(s), prefix)
		return !found
	})
	return found, err
}

// validIdentType reports whether typ can name an identifier in a
// reference: profile_id or an identifier type ([a-z][a-z0-9_]*).
func validIdentType(typ string) bool {
	if typ == event.ProfileID {
		return true
	}
	if typ == "" || len(typ) > 64 || typ[0] < 'a' || typ[0] > 'z' {
		return false
	}
	return bytes.IndexFunc([]byte(typ), func(c rune) bool { return !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_') }) < 0
}
