package engine_test

import (
	"context"
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/aurumcdp/aurum/auth"
	"github.com/aurumcdp/aurum/engine"
	"github.com/aurumcdp/aurum/engine/base"
	"github.com/aurumcdp/aurum/engine/privacy"
	"github.com/aurumcdp/aurum/event"
	"github.com/aurumcdp/aurum/internal/testnode"
	"github.com/aurumcdp/aurum/projections/audience"
	"github.com/nats-io/nats.go/jetstream"
)

// TestConsentDefaultDenied: with the opt-in default a person without a
// statement may be contacted on no channel; statements from traits, from
// Segment's consent object under another identifier (then merged) and from
// SetConsent decide their channels; published transitions carry the
// person's consent.
func TestConsentDefaultDenied(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	e := testnode.Engine(t, engine.Options{TickPeriod: -1, ConsentDefaultDenied: true})
	if _, err := e.Gate().CreateSource(ctx, "web"); err != nil {
		t.Fatal(err)
	}
	if _, err := e.PutAudience(ctx, audience.Definition{Name: "buyers", Rule: `count("Order Completed") >= 1`}); err != nil {
		t.Fatal(err)
	}
	ingest := func(bodies ...string) {
		t.Helper()
		for _, b := range bodies {
			ev, err := event.Parse([]byte(b), "", e.Edge().ParseOptions())
			if err != nil {
				t.Fatalf("%s: %v", b, err)
			}
			if err := e.Edge().Ingest(ctx, "web", []event.Event{ev}); err != nil {
				t.Fatal(err)
			}
		}
		if err := e.Sync(ctx); err != nil {
			t.Fatal(err)
		}
	}
	ingest(`{"type":"track","event":"Order Completed","userId":"a","timestamp":"2026-01-01T00:00:00Z"}`,
		`{"type":"identify","userId":"b","traits":{"consent":{"email":true}},"timestamp":"2026-01-01T00:00:00Z"}`,
		`{"type":"track","event":"Order Completed","userId":"b","timestamp":"2026-01-01T00:00:01Z"}`)

	pa, err := e.Reader().Profile("user_id:a")
	if err != nil {
		t.Fatal(err)
	}
	pb, err := e.Reader().Profile("user_id:b")
	if err != nil {
		t.Fatal(err)
	}
	if c := pa.Consent["email"]; c.Granted || !c.Default || len(pa.Consent) != len(event.ConsentChannels) {
		t.Errorf("a without statements: consent %+v, want every channel denied by default", pa.Consent)
	}
	if c := pb.Consent["email"]; !c.Granted || c.Default || c.Source != "web" || c.EventID == "" {
		t.Errorf("b: email %+v, want granted by a statement from web", c)
	}
	if c := pb.Consent["sms"]; c.Granted || !c.Default {
		t.Errorf("b: sms %+v, want the default (denied)", c)
	}
	allowed := func(pid, ch string) bool {
		t.Helper()
		ok, err := e.Privacy().ConsentAllowed(pid, ch)
		if err != nil {
			t.Fatalf("ConsentAllowed(%s, %s): %v", pid, ch, err)
		}
		return ok
	}
	if allowed(pa.ProfileID, "email") || !allowed(pb.ProfileID, "email") || allowed(pb.ProfileID, "sms") {
		t.Error("ConsentAllowed disagrees with the profiles")
	}
	if allowed("01ARZ3NDEKTSV4RRFFQ69G5FAV", "email") {
		t.Error("an unknown profile is allowed")
	}
	if _, err := e.Privacy().ConsentAllowed(pa.ProfileID, "fax"); !errors.Is(err, base.ErrInvalid) {
		t.Errorf("unknown channel: %v", err)
	}

	// Transitions carry the person's consent, defaults applied.
	nc := natsReader(t, e, auth.RoleViewer)
	js, _ := jetstream.New(nc)
	cons, err := js.OrderedConsumer(ctx, "AURUM_OUT", jetstream.OrderedConsumerConfig{FilterSubjects: []string{"aurum.audience.>"}})
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]map[string]bool{}
	for len(got) < 2 {
		msg, err := cons.Next(jetstream.FetchMaxWait(10 * time.Second))
		if err != nil {
			t.Fatalf("transitions: %v (got %v)", err, got)
		}
		var tr struct {
			ProfileID string          `json:"profile_id"`
			Consent   map[string]bool `json:"consent"`
		}
		if err := json.Unmarshal(msg.Data(), &tr); err != nil {
			t.Fatal(err)
		}
		got[tr.ProfileID] = tr.Consent
	}
	want := map[string]map[string]bool{
		pa.ProfileID: {"email": false, "sms": false, "push": false, "ads": false, "web": false},
		pb.ProfileID: {"email": true, "sms": false, "push": false, "ads": false, "web": false},
	}
	for id, c := range want {
		if len(got[id]) != len(c) {
			t.Fatalf("transition of %s: consent %v, want %v", id, got[id], c)
		}
		for ch, g := range c {
			if got[id][ch] != g {
				t.Errorf("transition of %s: consent %v, want %v", id, got[id], c)
			}
		}
	}

	// A statement under a cookie, then the cookie merges into a: it holds
	// for a, and the merged-away profile id resolves to a's.
	ingest(`{"type":"page","anonymousId":"c9","context":{"consent":{"categoryPreferences":{"sms":true,"Analytics":false}}},"timestamp":"2026-01-02T00:00:00Z"}`)
	cookie, err := e.Reader().Profile("anonymous_id:c9")
	if err != nil {
		t.Fatal(err)
	}
	ingest(`{"type":"identify","userId":"a","anonymousId":"c9","timestamp":"2026-01-03T00:00:00Z"}`)
	if !allowed(pa.ProfileID, "sms") || !allowed(cookie.ProfileID, "sms") || allowed(cookie.ProfileID, "email") {
		t.Error("after the merge: the cookie's sms statement does not hold for both profile ids")
	}

	// The API's way: SetConsent ingests a Consent Updated event from the
	// internal source.
	if err := e.Privacy().SetConsent(ctx, "user_id:a", map[string]bool{"email": true}); err != nil {
		t.Fatal(err)
	}
	if err := e.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	pa, err = e.Reader().Profile("user_id:a")
	if err != nil {
		t.Fatal(err)
	}
	if c := pa.Consent["email"]; !c.Granted || c.Source != privacy.ConsentSource {
		t.Errorf("after SetConsent: email %+v, want granted from source %s", c, privacy.ConsentSource)
	}
	if err := e.Privacy().SetConsent(ctx, "user_id:a", map[string]bool{"fax": true}); !errors.Is(err, base.ErrInvalid) {
		t.Errorf("unknown channel: %v", err)
	}
	if err := e.Privacy().SetConsent(ctx, "profile_id:"+pa.ProfileID, map[string]bool{"email": true}); !errors.Is(err, base.ErrBadRef) {
		t.Errorf("profile_id ref: %v", err)
	}
	if err := e.Privacy().SetConsent(ctx, "email:not-an-email", map[string]bool{"email": true}); !errors.Is(err, base.ErrBadRef) {
		t.Errorf("bad email: %v", err)
	}
}
