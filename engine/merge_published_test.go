package engine_test

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/aurumcdp/aurum/auth"
	"github.com/aurumcdp/aurum/engine"
	"github.com/aurumcdp/aurum/event"
	"github.com/aurumcdp/aurum/internal/testnode"
	"github.com/nats-io/nats.go/jetstream"
)

// TestMergeIsPublished: a merge is recorded as an event on
// aurum.identity.merged naming the event and the identifier that caused it,
// with a deterministic message id; the merged profile is found from every
// identifier.
func TestMergeIsPublished(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	e := testnode.Engine(t, engine.Options{})
	if _, err := e.Gate().CreateSource(ctx, "web"); err != nil {
		t.Fatal(err)
	}
	parse := func(js string) event.Event {
		ev, err := event.Parse([]byte(js), "", e.Edge().ParseOptions())
		if err != nil {
			t.Fatal(err)
		}
		return ev
	}
	evs := []event.Event{
		parse(`{"type":"page","anonymousId":"phone","messageId":"e1","timestamp":"2026-01-01T00:00:00Z"}`),
		parse(`{"type":"page","anonymousId":"laptop","messageId":"e2","timestamp":"2026-01-02T00:00:00Z"}`),
		parse(`{"type":"identify","userId":"u1","anonymousId":"phone","messageId":"e3","timestamp":"2026-01-03T00:00:00Z"}`),
		parse(`{"type":"track","event":"Signed In","userId":"u1","anonymousId":"laptop","messageId":"e4","timestamp":"2026-01-04T00:00:00Z"}`),
	}
	for _, ev := range evs { // one append each: the merge happens on e4
		if err := e.Edge().Ingest(ctx, "web", []event.Event{ev}); err != nil {
			t.Fatal(err)
		}
	}
	if err := e.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	phone, err := e.Reader().Profile("anonymous_id:phone")
	if err != nil {
		t.Fatal(err)
	}
	laptop, err := e.Reader().Profile("anonymous_id:laptop")
	if err != nil {
		t.Fatal(err)
	}
	if phone.ProfileID != laptop.ProfileID || phone.Stats.TotalEvents != 4 {
		t.Fatalf("not merged: phone %s (%d events), laptop %s", phone.ProfileID, phone.Stats.TotalEvents, laptop.ProfileID)
	}

	nc := natsReader(t, e, auth.RoleViewer)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	cons, err := js.OrderedConsumer(ctx, "AURUM_OUT", jetstream.OrderedConsumerConfig{FilterSubjects: []string{"aurum.identity.merged"}})
	if err != nil {
		t.Fatal(err)
	}
	msg, err := cons.Next(jetstream.FetchMaxWait(10 * time.Second))
	if err != nil {
		t.Fatalf("no merge record published: %v", err)
	}
	var m struct {
		Type, From, Into, EventID, IdentifierType string
	}
	var raw map[string]any
	if err := json.Unmarshal(msg.Data(), &raw); err != nil {
		t.Fatal(err)
	}
	m.Type, _ = raw["type"].(string)
	m.From, _ = raw["from"].(string)
	m.Into, _ = raw["into"].(string)
	m.EventID, _ = raw["event_id"].(string)
	m.IdentifierType, _ = raw["identifier_type"].(string)
	if m.Type != "profile.merged" || m.Into != phone.ProfileID || m.From == m.Into || m.From == "" || m.EventID == "" {
		t.Fatalf("merge record %s; want profile.merged into %s", msg.Data(), phone.ProfileID)
	}
	if m.IdentifierType != event.UserID && m.IdentifierType != event.AnonymousID {
		t.Fatalf("merge names identifier type %q", m.IdentifierType)
	}
	if id := msg.Headers().Get("Nats-Msg-Id"); !strings.HasPrefix(id, "merge:"+m.EventID+":") {
		t.Fatalf("message id %q is not derived from the event %s", id, m.EventID)
	}
	if _, err := cons.Next(jetstream.FetchMaxWait(300 * time.Millisecond)); err == nil {
		t.Fatal("more than one merge record for one merge")
	}
}
