package log

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/aurumcdp/aurum/internal/check"
)

// testAuthorizer knows a producer "p" (password "pw") and tokens.
var testGrants = map[string]Grant{
	"full":   {Name: "admin", Full: true},
	"none":   {Name: "none"},
	"sneaky": {Name: "sneaky", Publish: []string{"aurum.log.events", "aurum.audit", ">"}, Subscribe: []string{">"}},
	"reader": {Name: "reader", Subscribe: []string{"aurum.audience.>", ReaderInboxPrefix + ".>"}, Publish: []string{
		"$JS.API.STREAM.INFO.AURUM_OUT", "$JS.API.CONSUMER.CREATE.AURUM_OUT.>", "$JS.API.CONSUMER.MSG.NEXT.AURUM_OUT.*",
		"$JS.API.CONSUMER.DELETE.AURUM_OUT.*", "$JS.ACK.AURUM_OUT.>"}},
}

func testAuthorizer(user, password, token string) (Grant, bool) {
	if token != "" {
		g, ok := testGrants[token]
		return g, ok
	}
	if user == "p" && password == "pw" {
		return Grant{Name: "source:p", Publish: []string{"aurum.ingest.p"}, Subscribe: []string{"_INBOX.>"}}, true
	}
	return Grant{}, false
}

func openAuthLog(t *testing.T) *Log {
	opts := testOptions(t.TempDir())
	opts.Authorizer = AuthorizerFunc(testAuthorizer)
	return openLog(t, opts)
}

// client is a test connection that collects the server's asynchronous
// errors (permission violations) and notices when it is closed.
type client struct {
	*nats.Conn
	errs   chan error
	closed chan struct{}
}

func dial(l *Log, opts ...nats.Option) (*client, error) {
	c := &client{errs: make(chan error, 64), closed: make(chan struct{})}
	var once sync.Once
	opts = append([]nats.Option{
		nats.Timeout(5 * time.Second), nats.NoReconnect(),
		nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
			select {
			case c.errs <- err:
			default:
			}
		}),
		nats.ClosedHandler(func(*nats.Conn) { once.Do(func() { close(c.closed) }) }),
	}, opts...)
	nc, err := nats.Connect(l.ClientURL(), opts...)
	if err != nil {
		return nil, err
	}
	c.Conn = nc
	return c, nil
}

// waitClients waits until the server lists n connections besides the log's
// own.
func waitClients(t *testing.T, l *Log, n int) {
	t.Helper()
	check.For(t, 10*time.Second, 5*time.Millisecond, func() error {
		cz, err := l.srv.Connz(&server.ConnzOptions{Username: true})
		if err != nil {
			return err
		}
		got := 0
		for _, ci := range cz.Conns {
			if ci.AuthorizedUser != internalUser {
				got++
			}
		}
		if got != n {
			return fmt.Errorf("%d client connections, want %d", got, n)
		}
		return nil
	})
}

func mustDial(t *testing.T, l *Log, opts ...nats.Option) *client {
	t.Helper()
	c, err := dial(l, opts...)
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	t.Cleanup(c.Close)
	return c
}

// violation waits for the server's permission violation naming subject.
func (c *client) violation(t *testing.T, subject string) {
	t.Helper()
	deadline := time.After(5 * time.Second)
	for {
		select {
		case err := <-c.errs:
			if strings.Contains(err.Error(), "Permissions Violation") && strings.Contains(err.Error(), subject) {
				return
			}
		case <-deadline:
			t.Fatalf("no permission violation for %s", subject)
		}
	}
}

// TestAuthConnect: who may connect to the embedded server.
func TestAuthConnect(t *testing.T) {
	l := openAuthLog(t)
	for _, tt := range []struct {
		name string
		opts []nats.Option
		ok   bool
	}{
		{"anonymous", nil, false},
		{"producer", []nats.Option{nats.UserInfo("p", "pw")}, true},
		{"wrong password", []nats.Option{nats.UserInfo("p", "nope")}, false},
		{"empty password", []nats.Option{nats.UserInfo("p", "")}, false},
		{"unknown token", []nats.Option{nats.Token("nope")}, false},
		{"full token", []nats.Option{nats.Token("full")}, true},
		{"reader token", []nats.Option{nats.Token("reader")}, true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c, err := dial(l, tt.opts...)
			if err == nil {
				c.Close()
			}
			if (err == nil) != tt.ok {
				t.Fatalf("connect: %v, want ok=%v", err, tt.ok)
			}
			if err != nil && !errors.Is(err, nats.ErrAuthorization) {
				t.Fatalf("refused with %v, want an authorization violation", err)
			}
		})
	}
}

// TestAuthPublish: what each grant may publish; a refused publish leaves
// no message in the stream.
func TestAuthPublish(t *testing.T) {
	l := openAuthLog(t)
	ctx := testCtx(t)
	count := func(stream string) uint64 {
		t.Helper()
		s, err := l.js.Stream(ctx, stream)
		if err != nil {
			t.Fatal(err)
		}
		return s.CachedInfo().State.Msgs
	}
	for _, tt := range []struct {
		name, subject, stream string
		opts                  []nats.Option
		ok                    bool
	}{
		{"producer on its subject", "aurum.ingest.p", StreamIngest, []nats.Option{nats.UserInfo("p", "pw")}, true},
		{"producer on another source", "aurum.ingest.q", StreamIngest, []nats.Option{nats.UserInfo("p", "pw")}, false},
		{"producer on the log", "aurum.log.events", StreamLog, []nats.Option{nats.UserInfo("p", "pw")}, false},
		{"empty grant", "aurum.ingest.p", StreamIngest, []nats.Option{nats.Token("none")}, false},
		{"grant listing the log", "aurum.log.events", StreamLog, []nats.Option{nats.Token("sneaky")}, false},
		{"grant listing the audit", "aurum.audit", StreamAudit, []nats.Option{nats.Token("sneaky")}, false},
		{"reader on the log", "aurum.log.control", StreamLog, []nats.Option{nats.Token("reader")}, false},
		{"full on the log", "aurum.log.control", StreamLog, []nats.Option{nats.Token("full")}, true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c := mustDial(t, l, tt.opts...)
			before := count(tt.stream)
			if err := c.Publish(tt.subject, []byte(`{}`)); err != nil {
				t.Fatal(err)
			}
			if err := c.Flush(); err != nil {
				t.Fatal(err)
			}
			if tt.ok {
				check.For(t, 5*time.Second, 10*time.Millisecond, func() error {
					if n := count(tt.stream); n != before+1 {
						return fmt.Errorf("%s holds %d messages, want %d", tt.stream, n, before+1)
					}
					return nil
				})
				return
			}
			c.violation(t, tt.subject)
			if n := count(tt.stream); n != before {
				t.Fatalf("%s holds %d messages after a refused publish, had %d", tt.stream, n, before)
			}
		})
	}
}

// TestAuthInternalInbox: a restricted grant never subscribes to the log's
// own inbox, even when its allow list says ">".
func TestAuthInternalInbox(t *testing.T) {
	l := openAuthLog(t)
	c := mustDial(t, l, nats.Token("sneaky"))
	if _, err := c.SubscribeSync(InternalInboxPrefix + ".>"); err != nil {
		t.Fatal(err)
	}
	c.violation(t, InternalInboxPrefix)
	p := mustDial(t, l, nats.UserInfo("p", "pw"))
	if _, err := p.SubscribeSync("aurum.audience.>"); err != nil {
		t.Fatal(err)
	}
	p.violation(t, "aurum.audience.>")
}

// TestAuthOwnedConsumers: a reader may use its own consumers on AURUM_OUT
// but not the durables the log runs; a reader connected before such a
// durable starts is disconnected (its permissions do not deny it yet).
func TestAuthOwnedConsumers(t *testing.T) {
	l := openAuthLog(t)
	ctx := testCtx(t)
	if _, _, err := l.Append(ctx, "aurum.audience.a.entered", "m1", []byte(`{"n":1}`)); err != nil {
		t.Fatal(err)
	}
	early := mustDial(t, l, nats.Token("reader"), nats.CustomInboxPrefix(ReaderInboxPrefix))
	full := mustDial(t, l, nats.Token("full"))

	cctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	got := make(chan Msg, 1)
	go func() { // owned by the test: cancel, then <-done
		done <- l.ConsumeDurable(cctx, StreamOut, "webhook-x", []string{"aurum.audience.>"}, ConsumeOptions{}, func(m Msg) error {
			select {
			case got <- m:
			default:
			}
			return nil
		})
	}()
	defer func() { cancel(); <-done }()
	select {
	case <-got:
	case <-time.After(10 * time.Second):
		t.Fatal("the durable delivered nothing")
	}
	select {
	case <-early.closed:
	case <-time.After(5 * time.Second):
		t.Fatal("a restricted connection made before the durable started is still open")
	}
	if full.IsClosed() {
		t.Fatal("the full connection was closed")
	}

	r := mustDial(t, l, nats.Token("reader"), nats.CustomInboxPrefix(ReaderInboxPrefix))
	js, err := jetstream.New(r.Conn)
	if err != nil {
		t.Fatal(err)
	}
	oc, err := js.OrderedConsumer(ctx, StreamOut, jetstream.OrderedConsumerConfig{FilterSubjects: []string{"aurum.audience.>"}})
	if err != nil {
		t.Fatalf("reader's own consumer: %v", err)
	}
	if m, err := oc.Next(jetstream.FetchMaxWait(5 * time.Second)); err != nil || string(m.Data()) != `{"n":1}` {
		t.Fatalf("reader's own consumer: %v", err)
	}
	for _, subj := range []string{
		"$JS.API.CONSUMER.MSG.NEXT.AURUM_OUT.webhook-x",
		"$JS.API.CONSUMER.DELETE.AURUM_OUT.webhook-x",
		"$JS.API.CONSUMER.CREATE.AURUM_OUT.webhook-x.aurum.audience.>",
	} {
		if err := r.PublishRequest(subj, ReaderInboxPrefix+".x", []byte(`{}`)); err != nil {
			t.Fatal(err)
		}
		r.violation(t, subj)
	}
	if _, err := l.js.Consumer(ctx, StreamOut, "webhook-x"); err != nil {
		t.Fatalf("the durable after the reader's attempts: %v", err)
	}
}

// TestAuthExpiryAndDisconnect: a grant's Expires closes the connection;
// DisconnectClients closes the connections keep refuses, never the log's
// own.
func TestAuthExpiryAndDisconnect(t *testing.T) {
	opts := testOptions(t.TempDir())
	opts.Authorizer = AuthorizerFunc(func(_, _, token string) (Grant, bool) {
		// Expiry relative to the authorization itself: on a loaded machine
		// the connection may come long after the test started.
		now := time.Now()
		switch token {
		case "short":
			return Grant{Name: "short", Full: true, Expires: now.Add(300 * time.Millisecond)}, true
		case "past":
			return Grant{Name: "past", Full: true, Expires: now.Add(-time.Second)}, true
		case "a", "b":
			return Grant{Name: token, Subscribe: []string{"aurum.audience.>"}}, true
		}
		return Grant{}, false
	})
	l := openLog(t, opts)
	if _, err := dial(l, nats.Token("past")); err == nil {
		t.Fatal("an expired grant connected")
	}
	short := mustDial(t, l, nats.Token("short"))
	select {
	case <-short.closed:
	case <-time.After(10 * time.Second):
		t.Fatal("the connection outlived its grant")
	}

	// The server may list a closed connection for a moment after the client
	// saw it close: wait until only the log's own remain.
	waitClients(t, l, 0)
	a, b := mustDial(t, l, nats.Token("a")), mustDial(t, l, nats.Token("b"))
	if n := l.DisconnectClients(func(name string) bool { return name != "a" }); n != 1 {
		t.Fatalf("DisconnectClients closed %d, want 1", n)
	}
	select {
	case <-a.closed:
	case <-time.After(5 * time.Second):
		t.Fatal("a is still connected")
	}
	if err := b.Flush(); err != nil {
		t.Fatalf("b: %v", err)
	}
	waitClients(t, l, 1)
	if n := l.DisconnectClients(func(string) bool { return false }); n != 1 {
		t.Fatalf("DisconnectClients(none) closed %d, want 1 (b; never the log's own)", n)
	}
	if _, _, err := l.Append(testCtx(t), "aurum.log.events", "after", payload(1)); err != nil {
		t.Fatalf("the log's own connection after DisconnectClients: %v", err)
	}
}
