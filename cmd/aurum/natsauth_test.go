package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/aurumcdp/aurum/internal/check"
)

// TestNATSAuthRealProcess: against a real `aurum serve`, a producer
// ingests over NATS with its source's write key and a subscriber follows
// the audience with a viewer token; an anonymous client's publishes (on
// the ingest subject and on the log) and a producer's publish on the log
// are refused and leave no trace: the log's last sequence and the profile
// are unchanged.
func TestNATSAuthRealProcess(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a real aurum process")
	}
	parallelProcess(t)
	n := startNode(t, t.TempDir(), "--tick", "0") // no tick records: the log moves only with our writes
	key := n.createSource("web")
	n.mustJSON("POST", "/v1/audiences", map[string]string{"name": "buyers", "rule": `count("Bought") >= 1`},
		adminAuth, http.StatusCreated, nil)
	_, viewer := n.createToken("follower", "viewer")

	sub := natsConnect(t, n.NATS, natsReader(viewer)...)
	msgs, err := sub.SubscribeSync("aurum.audience.>")
	if err != nil {
		t.Fatal(err)
	}
	if err := sub.Flush(); err != nil {
		t.Fatal(err)
	}

	producer := natsConnect(t, n.NATS, natsProducer("web", key))
	js, err := jetstream.New(producer)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	publish := func(data string) {
		t.Helper()
		if _, err := js.Publish(ctx, "aurum.ingest.web", []byte(data)); err != nil {
			t.Fatalf("producer publish: %v", err)
		}
	}
	publish(`{"type":"track","event":"Bought","userId":"nats-1","messageId":"nb-1"}`)
	m, err := msgs.NextMsg(20 * time.Second)
	if err != nil || m.Subject != "aurum.audience.buyers.entered" {
		t.Fatalf("subscriber: %v", err)
	}
	var tr struct {
		Identifiers map[string]any `json:"identifiers"`
	}
	if err := json.Unmarshal(m.Data, &tr); err != nil || fmt.Sprint(tr.Identifiers) == "map[]" {
		t.Fatalf("transition %s: %v", m.Data, err)
	}
	events := func() float64 {
		t.Helper()
		p, err := n.profile("user_id:nats-1")
		if err != nil {
			t.Fatal(err)
		}
		return p["stats"].(map[string]any)["total_events"].(float64)
	}
	before, seq := events(), logLastSeq(t, n.NATS)

	// An anonymous client, speaking the protocol by hand: the server
	// answers the CONNECT with an authorization violation and drops both
	// publishes.
	forged := `{"type":"track","event":"Bought","userId":"nats-1","messageId":"forged-1"}`
	conn, err := net.DialTimeout("tcp", strings.TrimPrefix(n.NATS, "nats://"), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	fmt.Fprintf(conn, "CONNECT {\"verbose\":false,\"pedantic\":false}\r\nPUB aurum.ingest.web %d\r\n%s\r\nPUB aurum.log.events 1\r\n\x80\r\nPING\r\n", len(forged), forged)
	r := bufio.NewReader(conn)
	var answer strings.Builder
	for !strings.Contains(answer.String(), "-ERR") {
		line, err := r.ReadString('\n')
		answer.WriteString(line)
		if err != nil {
			break
		}
	}
	if !strings.Contains(answer.String(), "Authorization Violation") || strings.Contains(answer.String(), "PONG") {
		t.Fatalf("anonymous client: %q", answer.String())
	}
	if _, err := nats.Connect(n.NATS, nats.NoReconnect()); !errors.Is(err, nats.ErrAuthorization) {
		t.Fatalf("anonymous nats.Connect: %v", err)
	}

	// The producer on the log and on another source's subject: refused.
	errs := make(chan error, 8)
	p2 := natsConnect(t, n.NATS, natsProducer("web", key), nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) { errs <- err }))
	for _, subj := range []string{"aurum.log.events", "aurum.ingest.other"} {
		if err := p2.Publish(subj, []byte(forged)); err != nil {
			t.Fatal(err)
		}
		select {
		case err := <-errs:
			if !strings.Contains(err.Error(), "Permissions Violation") || !strings.Contains(err.Error(), subj) {
				t.Fatalf("publish on %s: %v", subj, err)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("no permission violation for %s", subj)
		}
	}

	// A marker through the front door: once it is applied, anything the
	// refused clients had slipped in before it would be too.
	publish(`{"type":"track","event":"Marker","userId":"nats-marker","messageId":"nb-m"}`)
	check.For(t, 20*time.Second, 20*time.Millisecond, func() error {
		_, err := n.profile("user_id:nats-marker")
		return err
	})
	if got := logLastSeq(t, n.NATS); got != seq+1 {
		t.Fatalf("AURUM_LOG last sequence %d after the refused publishes and one marker, want %d", got, seq+1)
	}
	if got := events(); got != before {
		t.Fatalf("profile has %v events after the refused publishes, had %v", got, before)
	}
}

// TestOutDuplicateWindowFlag: `serve --out-duplicate-window` is the
// duplicate window of the real process's AURUM_OUT stream, as a
// subscriber's view of the stream shows it.
func TestOutDuplicateWindowFlag(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a real aurum process")
	}
	parallelProcess(t)
	n := startNode(t, t.TempDir(), "--tick", "0", "--out-duplicate-window", "2m30s")
	_, viewer := n.createToken("follower", "viewer")
	js, err := jetstream.New(natsConnect(t, n.NATS, natsReader(viewer)...))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s, err := js.Stream(ctx, "AURUM_OUT")
	if err != nil {
		t.Fatalf("AURUM_OUT's info as a viewer: %v", err)
	}
	if got := s.CachedInfo().Config.Duplicates; got != 150*time.Second {
		t.Fatalf("AURUM_OUT duplicate window %v, want 2m30s (--out-duplicate-window)", got)
	}
}
