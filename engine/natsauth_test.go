package engine_test

import (
	"bytes"
	"context"
	"errors"
	"testing"
	"time"

	"github.com/aurumcdp/aurum/auth"
	"github.com/aurumcdp/aurum/engine"
	"github.com/aurumcdp/aurum/engine/base"
	"github.com/aurumcdp/aurum/internal/testnode"
	alog "github.com/aurumcdp/aurum/log"
	"github.com/aurumcdp/aurum/projections/audience"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

const natsBootstrap = "nats-test-bootstrap-admin-token"

func openNATSAuthEngine(t *testing.T) *engine.Engine {
	t.Helper()
	h := auth.HashSecret(natsBootstrap)
	return testnode.Engine(t, engine.Options{
		MasterKey:      bytes.Repeat([]byte{5}, 32),
		Partitions:     2,
		AdminTokenHash: h[:],
	})
}

// TestNATSAuthConnect: who may connect to the embedded NATS server.
func TestNATSAuthConnect(t *testing.T) {
	e := openNATSAuthEngine(t)
	ctx := context.Background()
	keyA, err := e.Gate().CreateSource(ctx, "a")
	if err != nil {
		t.Fatal(err)
	}
	keyB, err := e.Gate().CreateSource(ctx, "b")
	if err != nil {
		t.Fatal(err)
	}
	viewer, privacy := natsToken(t, e, auth.RoleViewer), natsToken(t, e, auth.RolePrivacy)
	for _, tt := range []struct {
		name string
		opts []nats.Option
		ok   bool
	}{
		{"anonymous", nil, false},
		{"write key", []nats.Option{nats.UserInfo("a", keyA)}, true},
		{"wrong write key", []nats.Option{nats.UserInfo("a", "wk_nope")}, false},
		{"another source's write key", []nats.Option{nats.UserInfo("a", keyB)}, false},
		{"unknown source", []nats.Option{nats.UserInfo("c", keyA)}, false},
		{"write key as token", []nats.Option{nats.Token(keyA)}, false},
		{"viewer token", []nats.Option{nats.Token(viewer)}, true},
		{"viewer token as password", []nats.Option{nats.UserInfo("a", viewer)}, false},
		{"privacy token", []nats.Option{nats.Token(privacy)}, false},
		{"bootstrap token", []nats.Option{nats.Token(natsBootstrap)}, true},
		{"unknown token", []nats.Option{nats.Token("ak_nope")}, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			nc, err := nats.Connect(e.NATSURL(), append(tt.opts, nats.NoReconnect(), nats.Timeout(5*time.Second))...)
			if err == nil {
				nc.Close()
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

// TestNATSAuthPermissions: a producer ingests only for its own source and
// reads nothing; a viewer follows the outputs (plain subscription and a
// JetStream consumer on AURUM_OUT) and can do nothing else; an admin can.
func TestNATSAuthPermissions(t *testing.T) {
	e := openNATSAuthEngine(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	keyA, err := e.Gate().CreateSource(ctx, "a")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.Gate().CreateSource(ctx, "b"); err != nil {
		t.Fatal(err)
	}
	if _, err := e.PutAudience(ctx, audience.Definition{Name: "buyers", Rule: `count("Bought", "1h") >= 1`}); err != nil {
		t.Fatal(err)
	}

	vOpt, viewerViolation := natsViolations(t)
	viewerToken := natsToken(t, e, auth.RoleViewer)
	viewer := natsConnect(t, e, nats.Token(viewerToken), nats.CustomInboxPrefix(alog.ReaderInboxPrefix), vOpt)
	plain, err := viewer.SubscribeSync("aurum.audience.>")
	if err != nil {
		t.Fatal(err)
	}
	vjs, err := jetstream.New(viewer)
	if err != nil {
		t.Fatal(err)
	}
	cons, err := vjs.OrderedConsumer(ctx, alog.StreamOut, jetstream.OrderedConsumerConfig{FilterSubjects: []string{"aurum.audience.>"}})
	if err != nil {
		t.Fatalf("viewer's consumer on AURUM_OUT: %v", err)
	}

	pOpt, producerViolation := natsViolations(t)
	producer := natsConnect(t, e, nats.UserInfo("a", keyA), pOpt)
	// Source a's key on source b's subject: refused by the server.
	if err := producer.Publish("aurum.ingest.b", []byte(`{"type":"track","event":"Bought","userId":"u-b"}`)); err != nil {
		t.Fatal(err)
	}
	producerViolation("aurum.ingest.b")
	pjs, err := jetstream.New(producer)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := pjs.Publish(ctx, "aurum.ingest.a", []byte(`{"type":"track","event":"Bought","userId":"u-a"}`)); err != nil {
		t.Fatalf("producer on its own subject: %v", err)
	}

	if m, err := plain.NextMsg(10 * time.Second); err != nil || m.Subject != "aurum.audience.buyers.entered" {
		t.Fatalf("viewer's plain subscription: %v", err)
	}
	m, err := cons.Next(jetstream.FetchMaxWait(10 * time.Second))
	if err != nil || m.Subject() != "aurum.audience.buyers.entered" || !bytes.Contains(m.Data(), []byte("u-a")) {
		t.Fatalf("viewer's JetStream consumer: %v", err)
	}
	if _, err := e.Reader().Profile("user_id:u-a"); err != nil {
		t.Fatalf("source a's event: %v", err)
	}
	// The gateway takes AURUM_INGEST in order: u-b would be in by now.
	if _, err := e.Reader().Profile("user_id:u-b"); !errors.Is(err, base.ErrNotFound) {
		t.Fatalf("the refused publish on aurum.ingest.b: profile %v", err)
	}

	// What a write key cannot do.
	if _, err := producer.SubscribeSync("aurum.audience.>"); err != nil {
		t.Fatal(err)
	}
	producerViolation("aurum.audience.>")
	if err := producer.Publish("aurum.log.events", []byte{0x80}); err != nil {
		t.Fatal(err)
	}
	producerViolation("aurum.log.events")

	// What a viewer cannot do.
	for _, subj := range []string{
		"aurum.log.control",
		"aurum.ingest.a",
		"$JS.API.STREAM.DELETE." + alog.StreamOut,
		"$JS.API.STREAM.DELETE." + alog.StreamLog,
		"$JS.API.STREAM.PURGE." + alog.StreamOut,
		"$JS.API.STREAM.INFO." + alog.StreamLog,
		"$JS.API.CONSUMER.CREATE." + alog.StreamLog + ".x.aurum.log.>",
		"$JS.API.STREAM.MSG.GET." + alog.StreamDeadLetter,
	} {
		if err := viewer.PublishRequest(subj, alog.ReaderInboxPrefix+".x", []byte(`{}`)); err != nil {
			t.Fatal(err)
		}
		viewerViolation(subj)
	}
	short, stop := context.WithTimeout(ctx, 2*time.Second)
	defer stop()
	if _, err := vjs.Stream(short, alog.StreamLog); err == nil {
		t.Fatal("a viewer read AURUM_LOG's info")
	}

	// An admin token can read the log.
	admin := natsConnect(t, e, nats.Token(natsToken(t, e, auth.RoleAdmin)))
	ajs, err := jetstream.New(admin)
	if err != nil {
		t.Fatal(err)
	}
	lc, err := ajs.OrderedConsumer(ctx, alog.StreamLog, jetstream.OrderedConsumerConfig{})
	if err != nil {
		t.Fatalf("admin consumer on AURUM_LOG: %v", err)
	}
	if _, err := lc.Next(jetstream.FetchMaxWait(5 * time.Second)); err != nil {
		t.Fatalf("admin read of AURUM_LOG: %v", err)
	}
}

// TestNATSAuthRevoke: a revoked token's open connection is closed and it
// cannot connect again.
func TestNATSAuthRevoke(t *testing.T) {
	e := openNATSAuthEngine(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	secret, info, err := e.Gate().CreateToken(ctx, "feed", auth.RoleViewer, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	closed := make(chan struct{})
	nc := natsConnect(t, e, nats.Token(secret), nats.NoReconnect(), nats.ClosedHandler(func(*nats.Conn) { close(closed) }))
	other := natsReader(t, e, auth.RoleViewer)
	if err := e.Gate().RevokeToken(ctx, info.ID); err != nil {
		t.Fatal(err)
	}
	select {
	case <-closed:
	case <-time.After(5 * time.Second):
		t.Fatal("the revoked token's connection is still open")
	}
	if _, err := nats.Connect(e.NATSURL(), nats.Token(secret), nats.NoReconnect()); !errors.Is(err, nats.ErrAuthorization) {
		t.Fatalf("revoked token connects: %v", err)
	}
	if nc.IsConnected() || !other.IsConnected() {
		t.Fatalf("after the revoke: revoked connected %v, other connected %v", nc.IsConnected(), other.IsConnected())
	}
}

// TestNATSReaderClientPaths: the official Go client's common reader paths
// work on a viewer token with their defaults (the stream found by subject,
// the account's JetStream info), each receives the transition, and the same
// token still cannot publish on the log, read aurum.log.>, delete a stream
// or create a consumer outside AURUM_OUT.
func TestNATSReaderClientPaths(t *testing.T) {
	e := openNATSAuthEngine(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	keyA, err := e.Gate().CreateSource(ctx, "a")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.PutAudience(ctx, audience.Definition{Name: "buyers", Rule: `count("Bought", "1h") >= 1`}); err != nil {
		t.Fatal(err)
	}
	vOpt, violation := natsViolations(t)
	viewer := natsConnect(t, e, nats.Token(natsToken(t, e, auth.RoleViewer)), nats.CustomInboxPrefix(alog.ReaderInboxPrefix), vOpt)

	// nats.go's legacy JetStream context: Subscribe by subject, no
	// BindStream (it looks the stream up by subject).
	legacy, err := viewer.JetStream()
	if err != nil {
		t.Fatal(err)
	}
	got := make(chan string, 16)
	lsub, err := legacy.Subscribe("aurum.audience.>", func(m *nats.Msg) { got <- m.Subject })
	if err != nil {
		t.Fatalf("legacy js.Subscribe by subject: %v", err)
	}
	defer func() { _ = lsub.Unsubscribe() }()
	lsync, err := legacy.SubscribeSync("aurum.audience.>")
	if err != nil {
		t.Fatalf("legacy js.SubscribeSync by subject: %v", err)
	}
	defer func() { _ = lsync.Unsubscribe() }()

	// The new API: the account's info (what a client's manager asks first),
	// the stream by subject, the stream by name, an ordered consumer.
	vjs, err := jetstream.New(viewer)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := vjs.AccountInfo(ctx); err != nil {
		t.Fatalf("account info: %v", err)
	}
	name, err := vjs.StreamNameBySubject(ctx, "aurum.audience.>")
	if err != nil || name != alog.StreamOut {
		t.Fatalf("StreamNameBySubject: %q, %v", name, err)
	}
	stream, err := vjs.Stream(ctx, alog.StreamOut)
	if err != nil {
		t.Fatalf("Stream(%s): %v", alog.StreamOut, err)
	}
	ordered, err := stream.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{FilterSubjects: []string{"aurum.audience.>"}})
	if err != nil {
		t.Fatalf("ordered consumer: %v", err)
	}

	producer := natsProducer(t, e, "a", keyA)
	pjs, err := jetstream.New(producer)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := pjs.Publish(ctx, "aurum.ingest.a", []byte(`{"type":"track","event":"Bought","userId":"u-1"}`)); err != nil {
		t.Fatal(err)
	}
	const entered = "aurum.audience.buyers.entered"
	select {
	case s := <-got:
		if s != entered {
			t.Fatalf("legacy Subscribe got %s", s)
		}
	case <-ctx.Done():
		t.Fatal("legacy Subscribe: no transition")
	}
	if m, err := lsync.NextMsg(20 * time.Second); err != nil || m.Subject != entered {
		t.Fatalf("legacy SubscribeSync: %v", err)
	}
	if m, err := ordered.Next(jetstream.FetchMaxWait(20 * time.Second)); err != nil || m.Subject() != entered {
		t.Fatalf("ordered consumer: %v", err)
	}

	// Names of streams are metadata a reader may list; their content and
	// state are not. A look-up by subject matches the configured subjects
	// only: a source with messages and one that does not exist answer
	// alike.
	for subj, want := range map[string]string{
		"aurum.log.events": alog.StreamLog,
		"aurum.ingest.a":   alog.StreamIngest,
		"aurum.ingest.zz":  alog.StreamIngest,
	} {
		if name, err := vjs.StreamNameBySubject(ctx, subj); err != nil || name != want {
			t.Fatalf("StreamNameBySubject(%s): %q, %v; want %s", subj, name, err, want)
		}
	}
	names := vjs.StreamNames(ctx)
	var all []string
	for n := range names.Name() {
		all = append(all, n)
	}
	if names.Err() != nil || len(all) != 6 {
		t.Fatalf("stream names %v: %v", all, names.Err())
	}
	short := func() context.Context {
		c, stop := context.WithTimeout(ctx, 2*time.Second)
		t.Cleanup(stop)
		return c
	}
	for _, s := range []string{alog.StreamLog, alog.StreamIngest, alog.StreamDeadLetter, alog.StreamAudit, alog.StreamKeys} {
		if _, err := vjs.Stream(short(), s); err == nil {
			t.Fatalf("a viewer read %s's info", s)
		}
		if _, err := vjs.OrderedConsumer(short(), s, jetstream.OrderedConsumerConfig{}); err == nil {
			t.Fatalf("a viewer created a consumer on %s", s)
		}
	}
	if err := vjs.DeleteStream(short(), alog.StreamOut); err == nil {
		t.Fatal("a viewer deleted AURUM_OUT")
	}
	if err := vjs.DeleteStream(short(), alog.StreamLog); err == nil {
		t.Fatal("a viewer deleted AURUM_LOG")
	}
	if _, err := vjs.CreateStream(short(), jetstream.StreamConfig{Name: "MINE", Subjects: []string{"aurum.log.>"}}); err == nil {
		t.Fatal("a viewer created a stream over the log")
	}
	if err := viewer.Publish("aurum.log.events", []byte{0x80}); err != nil {
		t.Fatal(err)
	}
	violation("aurum.log.events")
	if err := viewer.Publish(alog.KeysPrefix+"00", []byte{1, 2, 0, 0, 0, 0, 0, 0, 0, 0}); err != nil {
		t.Fatal(err)
	}
	violation(alog.KeysPrefix + "00")
	// Nor the activation store of a cluster (the tools' ids of people).
	if err := viewer.Publish(alog.ActivationPrefix+"Y3I", []byte{1, 1}); err != nil {
		t.Fatal(err)
	}
	violation(alog.ActivationPrefix + "Y3I")
	if _, err := viewer.SubscribeSync(alog.ActivationPrefix + ">"); err != nil {
		t.Fatal(err)
	}
	violation(alog.ActivationPrefix + ">")
	if _, err := viewer.SubscribeSync("aurum.log.>"); err != nil {
		t.Fatal(err)
	}
	violation("aurum.log.>")
	if _, err := legacy.Subscribe("aurum.log.>", func(*nats.Msg) {}); err == nil {
		t.Fatal("a viewer subscribed to aurum.log.> through JetStream")
	}
}

// TestNATSAuthSourceKeys: a producer's open connection is closed as soon
// as its write key stops working, and the key cannot connect again: a
// rotation without grace ends the old key's connection (a rotation with a
// grace closes it once: it reconnects with a deadline at the grace's end),
// deleting the source ends the current key's; another source's producer
// stays connected throughout.
func TestNATSAuthSourceKeys(t *testing.T) {
	e := openNATSAuthEngine(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	keyA, err := e.Gate().CreateSource(ctx, "a")
	if err != nil {
		t.Fatal(err)
	}
	keyB, err := e.Gate().CreateSource(ctx, "b")
	if err != nil {
		t.Fatal(err)
	}
	other := natsProducer(t, e, "b", keyB)
	connect := func(key string) (*nats.Conn, chan struct{}) {
		closed := make(chan struct{})
		nc := natsConnect(t, e, nats.UserInfo("a", key), nats.NoReconnect(), nats.ClosedHandler(func(*nats.Conn) { close(closed) }))
		return nc, closed
	}
	waitClosed := func(what string, closed chan struct{}) {
		t.Helper()
		select {
		case <-closed:
		case <-time.After(30 * time.Second):
			t.Fatalf("%s: the connection is still open", what)
		}
	}
	refused := func(what, key string) {
		t.Helper()
		if nc, err := nats.Connect(e.NATSURL(), nats.UserInfo("a", key), nats.NoReconnect()); !errors.Is(err, nats.ErrAuthorization) {
			if nc != nil {
				nc.Close()
			}
			t.Fatalf("%s: connect: %v, want an authorization error", what, err)
		}
	}

	// Rotation with a grace: the old key's connection is closed once; it
	// connects again (until the grace ends) and then stays connected.
	_, closedOld := connect(keyA)
	keyA2, _, err := e.Gate().RotateSourceKey(ctx, "a", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	waitClosed("rotation with a grace", closedOld)
	_, closedInGrace := connect(keyA)
	_, closedCurrent := connect(keyA2)

	// Rotation without grace: the key rotated out (keyA2) stops at once,
	// and so does the one still in its grace (keyA).
	keyA3, _, err := e.Gate().RotateSourceKey(ctx, "a", 0)
	if err != nil {
		t.Fatal(err)
	}
	waitClosed("rotation without grace", closedCurrent)
	waitClosed("the key before the last rotation", closedInGrace)
	refused("the rotated-out key", keyA2)
	refused("the key before", keyA)

	// Deletion: the current key's connection is closed, the key refused.
	last, closedLast := connect(keyA3)
	if err := last.Flush(); err != nil {
		t.Fatal(err)
	}
	if err := e.Gate().DeleteSource(ctx, "a"); err != nil {
		t.Fatal(err)
	}
	waitClosed("source deleted", closedLast)
	refused("a deleted source's key", keyA3)
	if err := other.Flush(); err != nil || !other.IsConnected() {
		t.Fatalf("another source's producer: connected %v, flush %v", other.IsConnected(), err)
	}
}
