package engine_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aurumcdp/aurum/auth"
	"github.com/aurumcdp/aurum/engine"
	"github.com/aurumcdp/aurum/engine/base"
	"github.com/aurumcdp/aurum/event"
	"github.com/aurumcdp/aurum/internal/testnode"
	"github.com/aurumcdp/aurum/projections/audience"
	"github.com/aurumcdp/aurum/rules"
	"github.com/nats-io/nats.go/jetstream"
)

// TestAudienceTimedExit: a profile enters an audience when it buys and
// leaves it when the purchase ages out of the window, with no new event —
// the tick records on the log move time; subscribers see both transitions
// once, in order, with the person's identifiers. The engine's clock is
// injected: the test moves it past the window instead of waiting for it.
func TestAudienceTimedExit(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var skew atomic.Int64 // added to the wall clock: the test moves time on
	now := func() time.Time { return time.Now().Add(time.Duration(skew.Load())) }
	e := testnode.Engine(t, engine.Options{TickPeriod: 50 * time.Millisecond, Now: now})
	if _, err := e.Gate().CreateSource(ctx, "web"); err != nil {
		t.Fatal(err)
	}
	// A rule that does not compile is refused with its position.
	_, err := e.PutAudience(ctx, audience.Definition{Name: "bad", Rule: `count("Order Completed", "2s") >= `})
	var re *rules.Error
	if !errors.Is(err, base.ErrInvalid) || !errors.As(err, &re) || re.Line != 1 || re.Column == 0 {
		t.Fatalf("bad rule: %v", err)
	}
	info, err := e.PutAudience(ctx, audience.Definition{Name: "recent-buyers", Rule: `count("Order Completed", "2s") >= 1`})
	if err != nil {
		t.Fatal(err)
	}
	if info.Version != 1 || info.Size != 0 {
		t.Fatalf("new audience: %+v", info)
	}

	nc := natsReader(t, e, auth.RoleViewer)
	js, _ := jetstream.New(nc)
	cons, err := js.OrderedConsumer(ctx, "AURUM_OUT", jetstream.OrderedConsumerConfig{FilterSubjects: []string{"aurum.audience.>"}})
	if err != nil {
		t.Fatal(err)
	}

	bought := now() // the event's own time: the window runs from it
	ev, err := event.Parse([]byte(fmt.Sprintf(`{"type":"track","event":"Order Completed","userId":"u1","messageId":"o1","traits":{"email":"Ann@Example.com"},"timestamp":%q,"properties":{"revenue":10}}`,
		bought.UTC().Format(time.RFC3339Nano))), "", e.Edge().ParseOptions())
	if err != nil {
		t.Fatal(err)
	}
	if err := e.Edge().Ingest(ctx, "web", []event.Event{ev}); err != nil {
		t.Fatal(err)
	}
	type tr struct {
		Type, Audience, ProfileID, Reason, Time string
		Identifiers                             map[string][]string
	}
	next := func() (tr, string) {
		t.Helper()
		msg, err := cons.Next(jetstream.FetchMaxWait(10 * time.Second))
		if err != nil {
			t.Fatalf("no transition: %v", err)
		}
		var x struct {
			Type        string              `json:"type"`
			Audience    string              `json:"audience"`
			ProfileID   string              `json:"profile_id"`
			Reason      string              `json:"reason"`
			Time        string              `json:"time"`
			Identifiers map[string][]string `json:"identifiers"`
		}
		if err := json.Unmarshal(msg.Data(), &x); err != nil {
			t.Fatal(err)
		}
		return tr{x.Type, x.Audience, x.ProfileID, x.Reason, x.Time, x.Identifiers}, msg.Subject()
	}
	in, subj := next()
	if in.Type != "audience.entered" || subj != "aurum.audience.recent-buyers.entered" || in.Audience != "recent-buyers" {
		t.Fatalf("first transition %+v on %s", in, subj)
	}
	if got := in.Identifiers["email"]; len(got) != 1 || got[0] != "ann@example.com" {
		t.Fatalf("identifiers %v", in.Identifiers)
	}
	p, err := e.Reader().Profile("user_id:u1")
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := p.Audiences["recent-buyers"]; !ok {
		t.Fatalf("GCR audiences %v", p.Audiences)
	}
	if a, _ := e.Reader().Audience("recent-buyers"); a.Size != 1 {
		t.Fatalf("size %d", a.Size)
	}
	// A preview evaluates a rule over every profile without creating it.
	pv, err := e.Reader().Preview(`count("Order Completed") >= 1 and in_audience("recent-buyers")`, 5, false)
	if err != nil || pv.Size != 1 || !pv.Exact || len(pv.Sample) != 1 || pv.Sample[0] != in.ProfileID {
		t.Fatalf("preview: %+v, %v", pv, err)
	}
	if pv, err := e.Reader().Preview(`count("Order Completed") >= 2`, 5, false); err != nil || pv.Size != 0 {
		t.Fatalf("preview of an unmet rule: %+v, %v", pv, err)
	}
	if _, err := e.Reader().Preview(`count("Order Completed" >= 2`, 5, false); !errors.As(err, &re) {
		t.Fatalf("preview of a bad rule: %v", err)
	}
	skew.Store(int64(3 * time.Second)) // the next tick is past the 2 s window
	out, subj := next()
	if out.Type != "audience.exited" || subj != "aurum.audience.recent-buyers.exited" || out.Reason != "time" || out.ProfileID != in.ProfileID {
		t.Fatalf("second transition %+v on %s", out, subj)
	}
	exited, err := time.Parse(time.RFC3339Nano, out.Time)
	if err != nil {
		t.Fatal(err)
	}
	if elapsed := exited.Sub(bought); elapsed < 2*time.Second-time.Millisecond { // event times are whole milliseconds
		t.Fatalf("exited %v after the purchase, before the 2 s window ran out", elapsed)
	}
	if a, _ := e.Reader().Audience("recent-buyers"); a.Size != 0 {
		t.Fatalf("size %d after exit", a.Size)
	}
	// No third transition (a repeated exit, say), without waiting a guessed
	// time: a new order re-enters the profile, and a profile's transitions
	// are published in log order, so anything the earlier entries derived
	// would come first.
	ev, err = event.Parse([]byte(fmt.Sprintf(`{"type":"track","event":"Order Completed","userId":"u1","messageId":"o2","timestamp":%q}`,
		now().UTC().Format(time.RFC3339Nano))), "", e.Edge().ParseOptions())
	if err != nil {
		t.Fatal(err)
	}
	if err := e.Edge().Ingest(ctx, "web", []event.Event{ev}); err != nil {
		t.Fatal(err)
	}
	if again, subj := next(); again.Type != "audience.entered" || again.ProfileID != in.ProfileID || again.Reason == "time" {
		t.Fatalf("third transition %+v on %s, want the re-entry after the new order", again, subj)
	}
}
