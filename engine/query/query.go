package query

import (
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

// resolve finds the root profile id for a reference.
func (e *Reader) resolve(r store.Reader, sm *projections.StateMachine, ref string) ([]byte, error) {
	typ, value, err := base.ParseRef(ref)
	if err != nil {
		return nil, err
	}
	kc := sm.Keychain()
	var id []byte
	if typ == event.ProfileID {
		u, perr := ulid.ParseStrict(strings.TrimSpace(value))
		if perr != nil {
			return nil, fmt.Errorf("%w: profile_id %q is not a profile id (26 characters, e.g. 01JDZ8Q6X0F7R2M4N8P3S5T7V9)", base.ErrBadRef, value)
		}
		id, err = kc.Root(r, u[:])
	} else {
		norm, ok := event.NormalizeIdentifier(typ, value, e.opts.PhoneRegion)
		if !ok {
			return nil, fmt.Errorf("%w: %s %q is not a valid identifier", base.ErrBadRef, typ, value)
		}
		id, err = kc.Lookup(r, typ, e.keys.Hash(typ, norm))
	}
	if errors.Is(err, store.ErrNotFound) {
		return nil, fmt.Errorf("%w: %s", base.ErrNotFound, ref)
	}
	return id, err
}

func (e *Reader) open(keyID, sealed []byte) ([]byte, error) { return e.keys.Open(keyID, sealed) }

// profile loads the GCR of the person ref identifies from r.
func (e *Reader) profile(r store.Reader, sm *projections.StateMachine, ref string) (*gcr.Profile, error) {
	id, err := e.resolve(r, sm, ref)
	if err != nil {
		return nil, err
	}
	p, err := sm.GCR().Get(r, id)
	if errors.Is(err, store.ErrNotFound) {
		return nil, fmt.Errorf("%w: %s", base.ErrNotFound, ref)
	}
	return p, err
}

// read runs fn on a consistent snapshot of the projections and the state
// machine that built them (a rebuild's swap waits until fn returns).
func (e *Reader) read(fn func(r store.Reader, sm *projections.StateMachine) error) error {
	return e.state.Read(fn)
}

// Profile returns the Golden Customer Record of the person ref identifies.
func (e *Reader) Profile(ref string) (v *View, err error) {
	err = e.read(func(r store.Reader, sm *projections.StateMachine) error {
		v, err = e.profileView(r, sm, ref)
		return err
	})
	return v, err
}

func (e *Reader) profileView(snap store.Reader, sm *projections.StateMachine, ref string) (*gcr.View, error) {
	p, err := e.profile(snap, sm, ref)
	if err != nil {
		return nil, err
	}
	v, err := p.View(e.open)
	if err != nil {
		return nil, err
	}
	v.FillConsentDefaults(event.ConsentChannels, e.consentDefault())
	now, err := projections.LogClock(snap)
	if err != nil {
		return nil, err
	}
	v.FeaturesAt(p, now)
	models, err := projections.Models(snap)
	if err != nil {
		return nil, err
	}
	sc := scores(models, p.Features, now)
	if p.Stats.Events > 0 {
		propensities(sc, models, p.Features, p.Stats.FirstSeen, p.Stats.LastSeen, now)
	}
	v.Predictions = make(map[string]any, len(sc))
	for k, x := range sc {
		v.Predictions[k] = x
	}
	if err := e.nextBest(snap, sm, p, models, now, v.Predictions); err != nil {
		return nil, err
	}
	ms, err := sm.Memberships(snap, p.ID)
	if err != nil {
		return nil, err
	}
	v.Audiences = make(map[string]time.Time, len(ms))
	for _, m := range ms {
		v.Audiences[m.Audience] = time.UnixMilli(m.Since).UTC()
	}
	return &v, nil
}

// Events returns the latest limit events of the person ref identifies,
// newest first, in Segment's JSON shape.
func (e *Reader) Events(ref string, limit int) (out []map[string]any, err error) {
	if limit <= 0 || limit > 1000 {
		return nil, fmt.Errorf("engine: limit must be in [1, 1000], got %d", limit)
	}
	err = e.read(func(r store.Reader, sm *projections.StateMachine) error {
		out, err = e.events(r, sm, ref, limit)
		return err
	})
	return out, err
}

func (e *Reader) events(snap store.Reader, sm *projections.StateMachine, ref string, limit int) ([]map[string]any, error) {
	p, err := e.profile(snap, sm, ref)
	if err != nil {
		return nil, err
	}
	recs, err := sm.GCR().Events(snap, p, limit)
	if err != nil {
		return nil, err
	}
	out := make([]map[string]any, 0, len(recs))
	for i := range recs {
		v, err := gcr.RecordView(&recs[i], e.open)
		if err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	return out, nil
}

// IdentifierHash returns the type and keyed hash of an identifier
// reference type:value (normalized as the edge normalizes it), as the
// keychain holds it; a profile_id is no identifier (base.ErrBadRef).
func (e *Reader) IdentifierHash(ref string) (string, []byte, error) {
	typ, value, err := base.ParseRef(ref)
	if err != nil {
		return "", nil, err
	}
	if typ == event.ProfileID {
		return "", nil, fmt.Errorf("%w: %q: a profile id is not an identifier", base.ErrBadRef, ref)
	}
	norm, ok := event.NormalizeIdentifier(typ, value, e.opts.PhoneRegion)
	if !ok {
		return "", nil, fmt.Errorf("%w: %s %q is not a valid identifier", base.ErrBadRef, typ, value)
	}
	return typ, e.keys.Hash(typ, norm), nil
}
