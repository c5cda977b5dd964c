package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestServeOIDCFlags: the --oidc-* flags make a single sign-on client, or
// fail naming the flag that is wrong; none of them: no single sign-on.
func TestServeOIDCFlags(t *testing.T) {
	dir := t.TempDir()
	secret := filepath.Join(dir, "secret")
	empty := filepath.Join(dir, "empty")
	if err := os.WriteFile(secret, []byte("s3cret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(empty, []byte(" \n"), 0o600); err != nil {
		t.Fatal(err)
	}
	good := oidcFlags{issuer: "https://idp.example.com", clientID: "aurum", secretFile: secret, roleClaim: "aurum_role"}
	for _, tc := range []struct {
		name    string
		set     func(*oidcFlags)
		wantErr string // "" : a client
	}{
		{"complete", func(*oidcFlags) {}, ""},
		{"with redirect", func(o *oidcFlags) { o.redirectURL = "https://aurum.example.com/v1/session/oidc/callback" }, ""},
		{"no issuer", func(o *oidcFlags) { o.issuer = "" }, "--oidc-issuer"},
		{"no client id", func(o *oidcFlags) { o.clientID = "" }, "--oidc-client-id"},
		{"no role claim", func(o *oidcFlags) { o.roleClaim = "" }, "--oidc-role-claim"},
		{"missing secret file", func(o *oidcFlags) { o.secretFile = filepath.Join(dir, "nope") }, "--oidc-client-secret-file"},
		{"empty secret file", func(o *oidcFlags) { o.secretFile = empty }, "--oidc-client-secret-file"},
		{"issuer not a URL", func(o *oidcFlags) { o.issuer = "idp.example.com" }, "--oidc-issuer"},
		{"bad redirect", func(o *oidcFlags) { o.redirectURL = "/callback" }, "--oidc-redirect-url"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := good
			tc.set(&o)
			c, err := o.ssoClient()
			if tc.wantErr == "" {
				if err != nil || c == nil {
					t.Fatalf("got %v, %v; want a client", c, err)
				}
				if c.Issuer() != o.issuer || c.RedirectURL() != o.redirectURL {
					t.Errorf("client of %s redirect %q, want %s %q", c.Issuer(), c.RedirectURL(), o.issuer, o.redirectURL)
				}
				return
			}
			if err == nil || !strings.HasPrefix(err.Error(), tc.wantErr) {
				t.Fatalf("got %v, want an error starting %q", err, tc.wantErr)
			}
		})
	}
	if c, err := (oidcFlags{}).ssoClient(); c != nil || err != nil {
		t.Errorf("no --oidc-* flags: got %v, %v; want no single sign-on", c, err)
	}
}
