package privacy_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/aurumcdp/aurum/engine/base"
	"github.com/aurumcdp/aurum/engine/privacy"
	"github.com/aurumcdp/aurum/event"
	"github.com/aurumcdp/aurum/internal/testkeys"
)

// edge is the ingest edge as privacy sees it: it records what it is given.
type edge struct {
	source string
	evs    []event.Event
}

func (e *edge) Ingest(_ context.Context, source string, evs []event.Event) error {
	e.source, e.evs = source, append(e.evs, evs...)
	return nil
}

func (e *edge) ParseOptions() event.ParseOptions { return event.ParseOptions{Now: time.Now()} }

// sources records the sources ensured.
type sources []string

func (s *sources) EnsureSource(_ context.Context, name string) error {
	*s = append(*s, name)
	return nil
}

// TestSetConsentAlone: the privacy stage turns a consent statement into a
// "Consent Updated" event for the identifier, ingested under ConsentSource
// (ensured first), and refuses bad statements before anything is ingested.
func TestSetConsentAlone(t *testing.T) {
	keys := testkeys.Keyring(t)
	ed, srcs := &edge{}, &sources{}
	s := privacy.New(privacy.Options{Now: time.Now}, privacy.Deps{Keys: keys, IDs: base.NewIDSource(), Ingest: ed, Sources: srcs})
	ctx := context.Background()

	for _, tc := range []struct {
		ref     string
		consent map[string]bool
		want    error
	}{
		{"email:a@example.com", nil, base.ErrInvalid},
		{"email:a@example.com", map[string]bool{"carrier-pigeon": true}, base.ErrInvalid},
		{"profile_id:01JDZ0000000000000000000000", map[string]bool{"email": true}, base.ErrBadRef},
		{"nocolon", map[string]bool{"email": true}, base.ErrBadRef},
	} {
		if err := s.SetConsent(ctx, tc.ref, tc.consent); !errors.Is(err, tc.want) {
			t.Fatalf("SetConsent(%q, %v): %v, want %v", tc.ref, tc.consent, err, tc.want)
		}
	}
	if len(ed.evs) != 0 || len(*srcs) != 0 {
		t.Fatalf("refused statements ingested %d events, ensured %v", len(ed.evs), *srcs)
	}

	if err := s.SetConsent(ctx, "email:Ann@Example.com", map[string]bool{"email": false, "sms": true}); err != nil {
		t.Fatal(err)
	}
	if len(*srcs) != 1 || (*srcs)[0] != privacy.ConsentSource || ed.source != privacy.ConsentSource || len(ed.evs) != 1 {
		t.Fatalf("ensured %v, ingested %d events under %q", *srcs, len(ed.evs), ed.source)
	}
	ev := ed.evs[0]
	if ev.Event != event.ConsentUpdated || ev.Consent["email"] || !ev.Consent["sms"] || len(ev.Identifiers) != 1 ||
		ev.Identifiers[0].Type != "email" || ev.Identifiers[0].Value != "ann@example.com" {
		t.Fatalf("event %+v", ev)
	}

	typ, h, err := s.ParseErasureIdentifier("email: Ann@Example.com")
	if err != nil || typ != "email" || string(h) != string(keys.Hash("email", "ann@example.com")) {
		t.Fatalf("ParseErasureIdentifier: %q %x %v", typ, h, err)
	}
	if _, _, err := s.ParseErasureIdentifier("Bad-Type:x"); !errors.Is(err, base.ErrBadRef) {
		t.Fatalf("bad identifier type: %v", err)
	}
}
