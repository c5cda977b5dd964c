package access_test

import (
	"bytes"
	"context"
	"errors"
	"testing"
	"time"

	"github.com/aurumcdp/aurum/auth"
	"github.com/aurumcdp/aurum/engine/access"
	"github.com/aurumcdp/aurum/engine/base"
)

// TestSSOSessions: a single sign-on session authenticates with the role it
// was opened with until it expires or is revoked (then its NATS
// connections go too); invalid ones are refused; expired ones are pruned
// when a later one is opened.
func TestSSOSessions(t *testing.T) {
	g, n := newGate(t)
	ctx := context.Background()
	for _, tc := range []struct {
		name    string
		user    string
		role    auth.Role
		expires time.Duration
	}{
		{"bad name", "ana smith", auth.RoleViewer, time.Hour},
		{"bad role", "ana@example.com", auth.Role("root"), time.Hour},
		{"no expiry in the future", "ana@example.com", auth.RoleViewer, 0},
	} {
		if _, err := g.OpenSSOSession(ctx, tc.user, tc.role, n.now.Add(tc.expires)); !errors.Is(err, base.ErrInvalid) {
			t.Errorf("%s: got %v, want ErrInvalid", tc.name, err)
		}
	}

	s, err := g.OpenSSOSession(ctx, "ana@example.com", auth.RoleEditor, n.now.Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	p, err := g.Authenticate(s.Token)
	if err != nil || p.Name != "ana@example.com" || p.Role != auth.RoleEditor || p.Kind != auth.KindSSO || p.TokenID != s.ID {
		t.Fatalf("Authenticate: %+v, %v", p, err)
	}
	if len(g.Tokens()) != 0 {
		t.Errorf("sso sessions listed as API tokens: %+v", g.Tokens())
	}
	if !g.NATSClientValid(auth.KindSSO + ":" + s.ID) {
		t.Error("live sso session not valid for NATS")
	}
	if err := g.RevokeToken(ctx, s.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := g.Authenticate(s.Token); !errors.Is(err, access.ErrUnauthenticated) {
		t.Fatalf("revoked sso session: %v", err)
	}
	if g.NATSClientValid(auth.KindSSO + ":" + s.ID) {
		t.Error("revoked sso session still valid for NATS")
	}

	old, err := g.OpenSSOSession(ctx, "bo@example.com", auth.RoleViewer, n.now.Add(time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	n.now = n.now.Add(2 * time.Minute)
	if _, err := g.Authenticate(old.Token); !errors.Is(err, access.ErrExpired) {
		t.Fatalf("expired sso session: %v", err)
	}
	if _, err := g.OpenSSOSession(ctx, "cy@example.com", auth.RoleViewer, n.now.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	if err := g.RevokeToken(ctx, old.ID); !errors.Is(err, base.ErrNotFound) {
		t.Errorf("expired sso session not pruned by a later one: revoke says %v", err)
	}
}

// TestSessionKey: the console's cookie key is 32 bytes, the same for every
// gate over the same master key (every node of a cluster), and not a
// constant.
func TestSessionKey(t *testing.T) {
	g1, _ := newGate(t)
	g2, _ := newGate(t)
	k1, k2 := g1.SessionKey(), g2.SessionKey()
	if len(k1) != 32 || !bytes.Equal(k1, k2) {
		t.Fatalf("session keys %x and %x: want 32 equal bytes", k1, k2)
	}
	if bytes.Equal(k1[:16], k1[16:]) || bytes.Equal(k1, make([]byte, 32)) {
		t.Errorf("session key %x has no entropy from the master key", k1)
	}
}
