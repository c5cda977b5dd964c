package privacy

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/aurumcdp/aurum/activation"
	"github.com/aurumcdp/aurum/engine/base"
	"github.com/aurumcdp/aurum/event"
	"github.com/aurumcdp/aurum/projections"
	"github.com/aurumcdp/aurum/store"
	"github.com/oklog/ulid/v2"
)

// ConsentSource is the internal source that consent statements made
// through the API (SetConsent) are ingested under. It is created on first
// use, through the log like any other source.
const ConsentSource = "aurum"

// consentDefault is the consent of a channel without any statement.
func (e *Service) consentDefault() bool { return !e.opts.ConsentDefaultDenied }

// ConsentAllowed reports whether the person of profileID (a ULID; a profile
// merged away is resolved to the one it was merged into) may be contacted on
// channel now: their latest consent statement for it, else the node's
// default (Options.ConsentDefaultDenied). An unknown profile is never
// allowed.
func (e *Service) ConsentAllowed(profileID, channel string) (bool, error) {
	if !event.ValidConsentChannel(channel) {
		return false, fmt.Errorf("%w: unknown consent channel %q", base.ErrInvalid, channel)
	}
	u, err := ulid.ParseStrict(profileID)
	if err != nil {
		return false, fmt.Errorf("%w: profile_id %q is not a profile id (26 characters)", base.ErrBadRef, profileID)
	}
	var ok bool
	err = e.read(func(r store.Reader, sm *projections.StateMachine) error {
		c, found, err := e.consentOf(r, sm, u[:])
		ok = found && c[channel]
		return err
	})
	if err != nil {
		return false, fmt.Errorf("engine: consent of %s: %w", profileID, err)
	}
	return ok, nil
}

// consentOf returns the effective consent of every channel for the person
// of profile (resolved to its root), defaults applied; found is false when
// the profile is unknown.
func (e *Service) consentOf(r store.Reader, sm *projections.StateMachine, profile []byte) (map[string]bool, bool, error) {
	root, err := sm.Keychain().Root(r, profile)
	if errors.Is(err, store.ErrNotFound) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, err
	}
	p, err := sm.GCR().Get(r, root)
	if errors.Is(err, store.ErrNotFound) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, err
	}
	def := e.consentDefault()
	out := make(map[string]bool, len(event.ConsentChannels))
	for _, ch := range event.ConsentChannels {
		out[ch] = p.ConsentGranted(ch, def)
	}
	return out, true, nil
}

// ConsentWithDefaults is the consent of every channel: the explicit
// statements, the default for the rest.
func (e *Service) ConsentWithDefaults(stated map[string]bool) map[string]bool {
	def := e.consentDefault()
	out := make(map[string]bool, len(event.ConsentChannels))
	for _, ch := range event.ConsentChannels {
		g, ok := stated[ch]
		if !ok {
			g = def
		}
		out[ch] = g
	}
	return out
}

// ConsentChecker is s as the activation package's ConsentChecker.
func (e *Service) ConsentChecker() activation.ConsentChecker { return consentChecker{e} }

type consentChecker struct{ e *Service }

func (c consentChecker) Allowed(profileID, channel string) (bool, error) {
	return c.e.ConsentAllowed(profileID, channel)
}

// SetConsent states consent for the person identified by ref (type:value;
// not profile_id: a statement is made under an identifier) by ingesting a
// "Consent Updated" track event for that identifier from the internal
// source ConsentSource, which is created on demand. Like every consent
// statement it is on the log; it returns once the event is durable (the
// GCR shows it once applied). consent maps channels to granted; an unknown
// channel or an empty map is base.ErrInvalid, a bad reference base.ErrBadRef. An
// identifier Aurum has not seen yet gets a profile holding the statement.
func (e *Service) SetConsent(ctx context.Context, ref string, consent map[string]bool) error {
	typ, value, err := base.ParseRef(ref)
	if err != nil {
		return err
	}
	if typ == event.ProfileID {
		return fmt.Errorf("%w: consent is stated under an identifier (email:..., phone:..., user_id:...), not a profile_id", base.ErrBadRef)
	}
	if len(consent) == 0 {
		return fmt.Errorf("%w: no consent statement", base.ErrInvalid)
	}
	for ch := range consent {
		if !event.ValidConsentChannel(ch) {
			return fmt.Errorf("%w: unknown consent channel %q (want one of %s)", base.ErrInvalid, ch, strings.Join(event.ConsentChannels, ", "))
		}
	}
	body, err := json.Marshal(map[string]any{
		"type":       event.Track,
		"event":      event.ConsentUpdated,
		"properties": consent,
		"context":    map[string]any{"externalIds": []any{map[string]string{"type": typ, "id": value}}},
	})
	if err != nil {
		return fmt.Errorf("engine: set consent: %w", err)
	}
	ev, err := event.Parse(body, event.Track, e.ingest.ParseOptions())
	if err != nil {
		var fe *event.FieldError
		if errors.As(err, &fe) && !strings.HasPrefix(fe.Field, "properties") {
			return fmt.Errorf("%w: %s is not a usable identifier: %s", base.ErrBadRef, ref, fe.Reason)
		}
		return fmt.Errorf("%w: %v", base.ErrInvalid, err)
	}
	if err := e.sources.EnsureSource(ctx, ConsentSource); err != nil {
		return fmt.Errorf("engine: set consent: create source %q: %w", ConsentSource, err)
	}
	return e.ingest.Ingest(ctx, ConsentSource, []event.Event{ev})
}

// WithConsent adds the person's current consent (every channel, defaults
// applied) to an audience transition's JSON as "consent", so subscribers
// can filter. It reads r (the live state; the caller holds the state lock).
// A transition whose profile is unknown (or that names none) gets every
// channel false.
func (e *Service) WithConsent(r store.Reader, sm *projections.StateMachine, m map[string]any) error {
	pid, _ := m["profile_id"].(string)
	var c map[string]bool
	found := false
	if u, err := ulid.ParseStrict(pid); err == nil {
		if c, found, err = e.consentOf(r, sm, u[:]); err != nil {
			return err
		}
	}
	if !found {
		c = make(map[string]bool, len(event.ConsentChannels))
		for _, ch := range event.ConsentChannels {
			c[ch] = false
		}
	}
	m["consent"] = c
	return nil
}
