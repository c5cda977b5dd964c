package sso

import (
	"testing"

	"github.com/aurumcdp/aurum/auth"
)

func TestMapRole(t *testing.T) {
	for _, tc := range []struct {
		name string
		v    any
		want auth.Role
	}{
		{"missing", nil, ""},
		{"admin", "admin", auth.RoleAdmin},
		{"case and space", " Viewer ", auth.RoleViewer},
		{"privacy", "privacy", auth.RolePrivacy},
		{"unknown", "superuser", ""},
		{"empty", "", ""},
		{"number", 3.0, ""},
		{"list: most powerful wins", []any{"viewer", "editor", "x"}, auth.RoleEditor},
		{"list without roles", []any{"staff", 7.0}, ""},
		{"empty list", []any{}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, desc := MapRole(tc.v)
			if got != tc.want || desc == "" {
				t.Errorf("MapRole(%v) = %q (%s), want %q", tc.v, got, desc, tc.want)
			}
		})
	}
}

func TestPrincipalName(t *testing.T) {
	for _, tc := range []struct {
		name   string
		sub    string
		claims map[string]any
		want   string
	}{
		{"verified email", "s1", map[string]any{"email": "ana@example.com", "email_verified": true, "preferred_username": "ana"}, "ana@example.com"},
		{"unverified email: the user name", "s1", map[string]any{"email": "ana@example.com", "preferred_username": "ana"}, "ana"},
		{"user name with a space: the subject", "a b|c", map[string]any{"preferred_username": "Ana Smith"}, "oidc-a_b_c"},
		{"nothing: the subject", "248289761001", nil, "oidc-248289761001"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := principalName(tc.sub, tc.claims); got != tc.want {
				t.Errorf("got %q, want %q", got, tc.want)
			}
		})
	}
}

func TestNewOptions(t *testing.T) {
	ok := Options{Issuer: "https://idp.example.com", ClientID: "aurum", RoleClaim: "role"}
	if _, err := New(ok); err != nil {
		t.Fatal(err)
	}
	for _, o := range []Options{{ClientID: "aurum", RoleClaim: "role"}, {Issuer: ok.Issuer, RoleClaim: "role"},
		{Issuer: ok.Issuer, ClientID: "aurum"}, {Issuer: "ftp://x", ClientID: "aurum", RoleClaim: "role"}} {
		if _, err := New(o); err == nil {
			t.Errorf("New(%+v): no error", o)
		}
	}
}
