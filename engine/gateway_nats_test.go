package engine_test

// Producers that publish straight to aurum.ingest.<source> with a plain NATS
// client. This external test package may import nats.go: TestImportRules
// reads `go list` Imports, which leave out test imports (checked by
// TestImportRulesIgnoreTests below).

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/aurumcdp/aurum/engine/base"
	"github.com/aurumcdp/aurum/event"
	"github.com/aurumcdp/aurum/internal/check"
	"github.com/aurumcdp/aurum/internal/testnode"
	alog "github.com/aurumcdp/aurum/log"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/aurumcdp/aurum/auth"
	"github.com/aurumcdp/aurum/engine"
)

func openGatewayEngine(t *testing.T) *engine.Engine {
	t.Helper()
	return testnode.Engine(t, engine.Options{
		MasterKey:  bytes.Repeat([]byte{3}, 32),
		Partitions: 2,
	})
}

// TestGatewayNATSProducer publishes valid and invalid events with a plain
// NATS client: valid ones reach their profiles; invalid JSON, invalid events
// and unknown sources are dead-lettered with their reasons; the same
// messageId twice counts once.
func TestGatewayNATSProducer(t *testing.T) {
	e := openGatewayEngine(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	key, err := e.Gate().CreateSource(ctx, "web")
	if err != nil {
		t.Fatal(err)
	}
	nc := natsProducer(t, e, "web", key)
	// Only an admin can publish for a source that does not exist.
	admin := natsReader(t, e, auth.RoleAdmin)
	pub := func(subject, data string) {
		t.Helper()
		c := nc
		if subject != "aurum.ingest.web" {
			c = admin
		}
		if err := c.Publish(subject, []byte(data)); err != nil {
			t.Fatalf("publish %s: %v", subject, err)
		}
	}

	bad := []struct {
		subject, data    string
		marker           string // in the payload of the dead letter
		source, field    string
		reason           string // substring
		payloadIsRawJSON bool
	}{
		{"aurum.ingest.web", `{"type":"track","userId":"g-bad1"`, "g-bad1", "web", "", "JSON", false},
		{"aurum.ingest.web", `not json g-bad2`, "g-bad2", "web", "", "JSON", false},
		{"aurum.ingest.web", `{"type":"track","userId":"g-bad3"}`, "g-bad3", "web", "event", "required", true},
		{"aurum.ingest.web", `{"userId":"g-bad4","event":"E"}`, "g-bad4", "web", "type", "required", true},
		{"aurum.ingest.web", `{"type":"alias","userId":"g-bad5"}`, "g-bad5", "web", "previousId", "required", true},
		{"aurum.ingest.web", `{"type":"track","event":"E","anonymousId":"g-bad6","timestamp":"later"}`, "g-bad6", "web", "timestamp", "", true},
		{"aurum.ingest.web", `{"type":"track","event":"E","messageId":"g-bad7"}`, "g-bad7", "web", "userId", "", true},
		{"aurum.ingest.nosuch", `{"type":"identify","userId":"g-bad8"}`, "g-bad8", "nosuch", "source", "unknown source", true},
	}
	for _, b := range bad {
		pub(b.subject, b.data)
	}
	pub("aurum.ingest.web", `{"type":"identify","userId":"g-ok","traits":{"name":"Gee"},"messageId":"g-1"}`)
	pub("aurum.ingest.web", `{"type":"track","userId":"g-ok","event":"Bought","messageId":"g-2"}`)
	pub("aurum.ingest.web", `{"type":"track","userId":"g-ok","event":"Bought","messageId":"g-2"}`) // duplicate
	pub("aurum.ingest.web", `{"type":"track","userId":"g-ok","event":"Viewed"}`)                   // no messageId
	pub("aurum.ingest.web", `{"type":"track","userId":"g-ok","event":"Viewed"}`)                   // distinct: no messageId
	pub("aurum.ingest.web", `{"type":"track","userId":"g-marker","event":"Marker","messageId":"g-m"}`)
	if err := errors.Join(admin.Flush(), nc.Flush()); err != nil {
		t.Fatal(err)
	}

	// The marker was published last: once it is applied, so is all before it
	// (one gateway reads AURUM_INGEST in order).
	check.For(t, 15*time.Second, 10*time.Millisecond, func() error {
		_, err := e.Reader().Profile("user_id:g-marker")
		return err
	})
	p, err := e.Reader().Profile("user_id:g-ok")
	if err != nil {
		t.Fatal(err)
	}
	if p.Stats.TotalEvents != 4 || p.Stats.EventCounts["Bought"] != 1 || p.Stats.EventCounts["Viewed"] != 2 {
		t.Errorf("stats %+v: want 4 events (Bought once despite its duplicate, Viewed twice)", p.Stats)
	}
	if p.Traits["name"] != "Gee" || p.Stats.Sources["web"] != 4 {
		t.Errorf("traits %v sources %v", p.Traits, p.Stats.Sources)
	}
	for _, b := range bad {
		if _, err := e.Reader().Profile("user_id:" + b.marker); !errors.Is(err, base.ErrNotFound) {
			t.Errorf("user_id:%s: %v, want not found", b.marker, err)
		}
	}

	// Dead letters are written after the valid events of their batch
	// (so that a failed ingest does not write them twice on redelivery),
	// before the raw messages are purged from AURUM_INGEST.
	var dls []alog.DeadLetter
	check.For(t, 10*time.Second, 10*time.Millisecond, func() error {
		var err error
		if dls, err = e.Edge().DeadLetters(ctx, 1, 1000); err != nil {
			t.Fatal(err)
		}
		if len(dls) < len(bad) {
			return fmt.Errorf("%d dead letters, want %d", len(dls), len(bad))
		}
		return nil
	})
	if len(dls) != len(bad) {
		t.Errorf("%d dead letters, want %d", len(dls), len(bad))
	}
	for _, b := range bad {
		found := false
		for _, d := range dls {
			payload := string(d.Payload)
			if len(d.Payload) == 0 {
				payload = string(d.PayloadRaw)
			}
			if !strings.Contains(payload, b.marker) {
				continue
			}
			found = true
			if payload != b.data {
				t.Errorf("%s: payload %q, want the message as published %q", b.marker, payload, b.data)
			}
			if (len(d.Payload) > 0) != b.payloadIsRawJSON {
				t.Errorf("%s: payload kept as JSON = %v, want %v", b.marker, len(d.Payload) > 0, b.payloadIsRawJSON)
			}
			if d.Source != b.source || d.Field != b.field || d.Reason == "" || !strings.Contains(d.Reason, b.reason) {
				t.Errorf("%s: dead letter source %q field %q reason %q; want %q, %q, reason with %q",
					b.marker, d.Source, d.Field, d.Reason, b.source, b.field, b.reason)
			}
		}
		if !found {
			t.Errorf("%s (%s) not dead-lettered", b.marker, b.data)
		}
	}
}

// TestGatewayNATSDedupAcrossPublishes: the same messageId published again
// after the first copy was applied still counts once.
func TestGatewayNATSDedupAcrossPublishes(t *testing.T) {
	e := openGatewayEngine(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	key, err := e.Gate().CreateSource(ctx, "pos")
	if err != nil {
		t.Fatal(err)
	}
	nc := natsProducer(t, e, "pos", key)
	msg := []byte(`{"type":"track","event":"Order Completed","messageId":"pos-1","properties":{"revenue":10},
		"context":{"externalIds":[{"id":"L-1","type":"loyalty_id","collection":"users","encoding":"none"}]}}`)
	for round := 1; round <= 3; round++ {
		if err := nc.Publish("aurum.ingest.pos", msg); err != nil {
			t.Fatal(err)
		}
		marker := fmt.Sprintf(`{"type":"track","userId":"pos-marker-%d","event":"Marker"}`, round)
		if err := nc.Publish("aurum.ingest.pos", []byte(marker)); err != nil {
			t.Fatal(err)
		}
		check.For(t, 15*time.Second, 10*time.Millisecond, func() error {
			_, err := e.Reader().Profile(fmt.Sprintf("user_id:pos-marker-%d", round))
			return err
		})
		p, err := e.Reader().Profile("loyalty_id:L-1")
		if err != nil {
			t.Fatal(err)
		}
		if p.Stats.TotalEvents != 1 || p.Revenue["Order Completed"].Count != 1 || p.Revenue["Order Completed"].Total != 10 {
			t.Fatalf("after %d publishes: stats %+v revenue %+v, want one order of 10", round, p.Stats, p.Revenue)
		}
	}
}

// TestImportRulesIgnoreTests checks the premise of this file: `go list`
// Imports of engine exclude this test's import of nats.go, while its
// XTestImports include it.
func TestImportRulesIgnoreTests(t *testing.T) {
	out, err := exec.Command("go", "list", "-f", "{{join .Imports \" \"}}\n{{join .XTestImports \" \"}}", "github.com/aurumcdp/aurum/engine").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	lines := strings.SplitN(string(out), "\n", 2)
	if len(lines) != 2 {
		t.Fatalf("go list output %q", out)
	}
	if strings.Contains(lines[0], "nats-io") {
		t.Errorf("engine imports NATS: %s", lines[0])
	}
	if !strings.Contains(lines[1], "github.com/nats-io/nats.go") {
		t.Errorf("XTestImports %q lack nats.go: this file's premise changed", lines[1])
	}
}

// TestGatewayKeepsStreamOrder: batches are parsed and sealed concurrently
// (engine/ingest gatewayBatch), yet their events reach the log in the order
// the producer published them, invalid ones interleaved going to the
// dead-letter stream.
func TestGatewayKeepsStreamOrder(t *testing.T) {
	e := openGatewayEngine(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	key, err := e.Gate().CreateSource(ctx, "web")
	if err != nil {
		t.Fatal(err)
	}
	nc := natsProducer(t, e, "web", key)
	const n = 1700 // several pulls of 500
	var want []string
	for i := range n {
		data := fmt.Sprintf(`{"type":"track","event":"E","userId":"o-%d","messageId":"o-%d"}`, i%50, i)
		if i%97 == 0 {
			data = fmt.Sprintf(`{"type":"track","userId":"o-%d","messageId":"o-%d"}`, i%50, i) // no event: dead letter
		} else {
			want = append(want, fmt.Sprintf("o-%d", i))
		}
		if err := nc.Publish("aurum.ingest.web", []byte(data)); err != nil {
			t.Fatal(err)
		}
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	admin := natsReader(t, e, auth.RoleAdmin)
	js, err := jetstream.New(admin)
	if err != nil {
		t.Fatal(err)
	}
	cons, err := js.OrderedConsumer(ctx, alog.StreamLog, jetstream.OrderedConsumerConfig{FilterSubjects: []string{"aurum.log.events"}})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	check.For(t, 60*time.Second, 10*time.Millisecond, func() error {
		batch, err := cons.FetchNoWait(100)
		if err != nil {
			return err
		}
		for m := range batch.Messages() {
			b, err := event.DecodeBatch(m.Data())
			if err != nil {
				t.Fatalf("log entry: %v", err)
			}
			for _, r := range b.Records {
				got = append(got, r.MessageID)
			}
		}
		if len(got) < len(want) {
			return fmt.Errorf("%d of %d events on the log", len(got), len(want))
		}
		return nil
	})
	if !slices.Equal(got, want) {
		for i := range min(len(got), len(want)) {
			if got[i] != want[i] {
				t.Fatalf("log holds %d events; #%d is %s, want %s (stream order)", len(got), i, got[i], want[i])
			}
		}
		t.Fatalf("log holds %d events, want %d", len(got), len(want))
	}
	// The dead letters are written beside the log entries, not before
	// them: the last ones may still be on their way.
	check.For(t, 30*time.Second, 10*time.Millisecond, func() error {
		dl, err := e.Edge().DeadLetters(ctx, 1, n)
		if err != nil {
			t.Fatal(err)
		}
		if len(dl) != n-len(want) {
			return fmt.Errorf("%d dead letters, want %d", len(dl), n-len(want))
		}
		return nil
	})
}
