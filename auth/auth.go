// Package auth holds Aurum's access-control primitives: roles, the
// principal a request acts as, API token secrets and their hashes, argon2id
// password hashes, TOTP second factors (RFC 6238) and keyed rate limiters.
//
// It imports no other Aurum package and keeps no global state: clocks are
// passed in, random sources are crypto/rand.
package auth

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
)

// Role is what a principal may do.
type Role string

// The roles. Admin may do everything; the others are listed per route.
const (
	RoleAdmin   Role = "admin"   // everything
	RoleEditor  Role = "editor"  // sources, audiences, destinations
	RoleViewer  Role = "viewer"  // read-only: profiles, audiences, metrics
	RolePrivacy Role = "privacy" // erasure, export, consent; profile reads
)

// Roles lists every role, most powerful first.
var Roles = []Role{RoleAdmin, RoleEditor, RoleViewer, RolePrivacy}

// ErrInvalid marks invalid input (a role, a name, a password, a code).
var ErrInvalid = errors.New("auth: invalid")

// ParseRole returns the role named s.
func ParseRole(s string) (Role, error) {
	r := Role(s)
	if !r.Valid() {
		names := make([]string, len(Roles))
		for i, r := range Roles {
			names[i] = string(r)
		}
		return "", fmt.Errorf("%w: role %q: want one of %s", ErrInvalid, s, strings.Join(names, ", "))
	}
	return r, nil
}

// Valid reports whether r is a known role.
func (r Role) Valid() bool { return slices.Contains(Roles, r) }

// Allowed reports whether r may use something open to roles: admin may use
// everything.
func (r Role) Allowed(roles []Role) bool {
	return r == RoleAdmin || (r.Valid() && slices.Contains(roles, r))
}

// Principal kinds.
const (
	KindBootstrap = "bootstrap" // the root admin token given to serve
	KindToken     = "token"     // an API token (POST /v1/tokens)
	KindSession   = "session"   // a person's login session (POST /v1/login)
	KindSSO       = "sso"       // a single sign-on session (OpenID Connect; the role comes from the provider)
)

// Principal is who a request acts as.
type Principal struct {
	Name    string `json:"name"`               // token name, user name, or "bootstrap"
	Role    Role   `json:"role"`               //
	Kind    string `json:"kind"`               // KindBootstrap, KindToken, KindSession or KindSSO
	TokenID string `json:"token_id,omitempty"` // the token's or session's id (never its secret)
}

// Actor names the principal in audit entries: "bootstrap" for the bootstrap
// admin token, else "<kind>:<name>" (e.g. "token:ci", "session:ana").
func (p Principal) Actor() string {
	if p.Kind == KindBootstrap || p.Kind == "" {
		return p.Name
	}
	return p.Kind + ":" + p.Name
}

type principalKey struct{}

// WithPrincipal returns ctx carrying p.
func WithPrincipal(ctx context.Context, p Principal) context.Context {
	return context.WithValue(ctx, principalKey{}, p)
}

// FromContext returns the principal of ctx, if any.
func FromContext(ctx context.Context) (Principal, bool) {
	p, ok := ctx.Value(principalKey{}).(Principal)
	return p, ok
}
