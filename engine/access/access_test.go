package access_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/aurumcdp/aurum/auth"
	"github.com/aurumcdp/aurum/engine/access"
	"github.com/aurumcdp/aurum/engine/base"
	"github.com/aurumcdp/aurum/internal/testkeys"
	"github.com/aurumcdp/aurum/projections"
	"github.com/aurumcdp/aurum/store"
	"github.com/vmihailenco/msgpack/v5"
)

// node is the engine as the gate sees it, without a log: a control record
// is applied at once to an in-memory state, and the gate reloaded, as the
// apply loop does.
type node struct {
	t    *testing.T
	db   *store.Mem
	sm   *projections.StateMachine
	seq  uint64
	gate *access.Gate
	now  time.Time
}

func (n *node) AppendControl(_ context.Context, c projections.Control) (uint64, error) {
	c.Time = n.now.UnixMilli()
	data, err := msgpack.Marshal(&c)
	if err != nil {
		return 0, err
	}
	n.seq++
	res, err := n.sm.Apply(n.db, n.seq, projections.SubjectControl, data)
	if err != nil {
		return 0, err
	}
	n.gate.AddSources(res.Sources)
	if res.Access {
		if err := n.gate.Reload(); err != nil {
			return 0, err
		}
	}
	return n.seq, nil
}

func (n *node) WaitApplied(_ context.Context, seq uint64) error {
	if seq > n.seq {
		n.t.Fatalf("wait for %d, applied %d", seq, n.seq)
	}
	return nil
}

func (n *node) Read(fn func(r store.Reader, sm *projections.StateMachine) error) error {
	return fn(n.db, n.sm)
}

func newGate(t *testing.T) (*access.Gate, *node) {
	t.Helper()
	keys := testkeys.Keyring(t)
	n := &node{t: t, db: store.NewMem(), now: time.Date(2026, 12, 2, 12, 0, 0, 0, time.UTC)}
	var err error
	if n.sm, err = projections.Open(n.db, projections.Options{Partitions: 2, Open: keys.Open}); err != nil {
		t.Fatal(err)
	}
	g, err := access.New(n.db, access.Options{Now: func() time.Time { return n.now }, SessionTTL: time.Hour,
		PasswordParams: auth.PasswordParams{Time: 1, Memory: 8 << 10, Threads: 1}}, keys, base.NewIDSource(), n, n, n)
	if err != nil {
		t.Fatal(err)
	}
	n.gate = g
	return g, n
}

// TestGateAlone runs the access stage on its own, handed a fake node:
// tokens authenticate until revoked or expired, a user logs in once per
// TOTP step, and sources are found by write key.
func TestGateAlone(t *testing.T) {
	g, n := newGate(t)
	ctx := context.Background()

	secret, info, err := g.CreateToken(ctx, "ci", auth.RoleEditor, n.now.Add(time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	if p, err := g.Authenticate(secret); err != nil || p.Role != auth.RoleEditor || p.TokenID != info.ID {
		t.Fatalf("Authenticate: %+v, %v", p, err)
	}
	if _, err := g.Authenticate(secret + "x"); !errors.Is(err, access.ErrUnauthenticated) {
		t.Fatalf("wrong secret: %v", err)
	}
	n.now = n.now.Add(2 * time.Minute)
	if _, err := g.Authenticate(secret); !errors.Is(err, access.ErrExpired) {
		t.Fatalf("expired token: %v", err)
	}
	if err := g.RevokeToken(ctx, info.ID); err != nil {
		t.Fatal(err)
	}
	if len(g.Tokens()) != 0 || g.NATSClientValid(auth.KindToken+":"+info.ID) {
		t.Fatalf("revoked token still listed or valid: %+v", g.Tokens())
	}
	if err := g.RevokeToken(ctx, info.ID); !errors.Is(err, base.ErrNotFound) {
		t.Fatalf("revoke twice: %v", err)
	}

	uri, err := g.CreateUser(ctx, "ana", auth.RoleViewer, "correct horse battery")
	if err != nil {
		t.Fatal(err)
	}
	totp, err := auth.TOTPSecretFromURI(uri)
	if err != nil {
		t.Fatal(err)
	}
	code := auth.TOTP(totp, n.now)
	if _, err := g.Login(ctx, "ana", "wrong password!!", code); !errors.Is(err, access.ErrUnauthenticated) {
		t.Fatalf("wrong password: %v", err)
	}
	s, err := g.Login(ctx, "ana", "correct horse battery", code)
	if err != nil {
		t.Fatal(err)
	}
	if p, err := g.Authenticate(s.Token); err != nil || p.Role != auth.RoleViewer || p.Kind != auth.KindSession {
		t.Fatalf("session: %+v, %v", p, err)
	}
	if _, err := g.Login(ctx, "ana", "correct horse battery", code); !errors.Is(err, access.ErrUnauthenticated) {
		t.Fatalf("a TOTP code used twice: %v", err)
	}
	if err := g.DeleteUser(ctx, "ana"); err != nil {
		t.Fatal(err)
	}
	if _, err := g.Authenticate(s.Token); !errors.Is(err, access.ErrUnauthenticated) {
		t.Fatalf("session of a deleted user: %v", err)
	}

	key, err := g.CreateSource(ctx, "web")
	if err != nil {
		t.Fatal(err)
	}
	if src, ok := g.SourceForKey(key); !ok || src != "web" || !g.SourceExists("web") {
		t.Fatalf("SourceForKey: %q %v", src, ok)
	}
	if _, err := g.CreateSource(ctx, "web"); !errors.Is(err, access.ErrSourceExists) {
		t.Fatalf("create twice: %v", err)
	}
	if err := g.EnsureSource(ctx, "web"); err != nil {
		t.Fatal(err)
	}
}
