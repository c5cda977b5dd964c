// Package sso is single sign-on with OpenID Connect (issue #14): the
// authorization code flow with PKCE (S256), state and nonce, against a
// provider found by discovery (github.com/coreos/go-oidc/v3 and
// golang.org/x/oauth2). The API (api/session.go) keeps the flow's state in
// a sealed cookie and opens Aurum's own session; this package only talks to
// the provider: the URL to send the browser to (AuthURL) and the exchange
// of the code for a verified ID token, whose role claim it maps to an
// Aurum role (Exchange).
package sso

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"regexp"
	"strings"
	"sync"
	"time"

	"github.com/aurumcdp/aurum/auth"
	"github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"
)

// Options configure a Client. Issuer, ClientID, RedirectURL and RoleClaim
// are required.
type Options struct {
	Issuer       string // the provider's issuer URL (discovery at Issuer/.well-known/openid-configuration)
	ClientID     string
	ClientSecret string
	// RedirectURL is Aurum's callback as registered at the provider:
	// https://aurum.example.com/v1/session/oidc/callback. Empty: the API
	// derives it from each sign-in's request (its Host).
	RedirectURL string
	// RoleClaim names the ID token claim holding the Aurum role: a string,
	// or a list of strings (the most powerful known role wins). Values are
	// the role names admin, editor, viewer, privacy (case-insensitive).
	RoleClaim string
	// Scopes asked for besides openid. Default profile, email.
	Scopes []string
	// HTTPClient talks to the provider. Default http.DefaultClient with a
	// 30 s timeout.
	HTTPClient *http.Client
}

// Client is a relying party of one provider. Discovery happens on first
// use (and again after a failure), so Aurum starts while the provider is
// down. Safe for concurrent use.
type Client struct {
	opts Options

	mu       sync.Mutex
	provider *oidc.Provider
	verifier *oidc.IDTokenVerifier
	oauth    oauth2.Config
}

// New checks opts and returns the client.
func New(opts Options) (*Client, error) {
	for _, f := range []struct{ name, v string }{{"issuer", opts.Issuer}, {"client id", opts.ClientID},
		{"role claim", opts.RoleClaim}} {
		if f.v == "" {
			return nil, fmt.Errorf("sso: %s required", f.name)
		}
	}
	if !strings.HasPrefix(opts.Issuer, "https://") && !strings.HasPrefix(opts.Issuer, "http://") {
		return nil, fmt.Errorf("sso: issuer %q: want an http(s) URL", opts.Issuer)
	}
	if opts.Scopes == nil {
		opts.Scopes = []string{"profile", "email"}
	}
	if opts.HTTPClient == nil {
		opts.HTTPClient = &http.Client{Timeout: 30 * time.Second}
	}
	return &Client{opts: opts}, nil
}

// Issuer is the provider's issuer URL.
func (c *Client) Issuer() string { return c.opts.Issuer }

// discover returns the provider, fetching its configuration the first time.
func (c *Client) discover(ctx context.Context) (*oauth2.Config, *oidc.IDTokenVerifier, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.provider == nil {
		ctx = oidc.ClientContext(ctx, c.opts.HTTPClient)
		p, err := oidc.NewProvider(ctx, c.opts.Issuer)
		if err != nil {
			return nil, nil, fmt.Errorf("sso: discovery of %s: %w", c.opts.Issuer, err)
		}
		c.provider = p
		c.verifier = p.VerifierContext(oidc.ClientContext(context.Background(), c.opts.HTTPClient), &oidc.Config{ClientID: c.opts.ClientID})
		c.oauth = oauth2.Config{ClientID: c.opts.ClientID, ClientSecret: c.opts.ClientSecret, Endpoint: p.Endpoint(),
			Scopes: append([]string{oidc.ScopeOpenID}, c.opts.Scopes...)}
	}
	cfg := c.oauth
	return &cfg, c.verifier, nil
}

// RedirectURL is the configured callback URL ("" when the caller derives
// it per request).
func (c *Client) RedirectURL() string { return c.opts.RedirectURL }

// Flow is one sign-in's secrets, kept by the caller between AuthURL and
// Exchange (in a sealed cookie), and the callback URL it uses.
type Flow struct {
	State    string `json:"st"`
	Nonce    string `json:"n"`
	Verifier string `json:"v"` // PKCE code verifier
	Redirect string `json:"r"` // the callback URL sent to the provider
}

// NewFlow returns fresh random state, nonce and PKCE verifier for a
// sign-in whose callback is redirect.
func NewFlow(redirect string) Flow {
	// GenerateVerifier is 32 bytes from crypto/rand, base64url.
	return Flow{State: oauth2.GenerateVerifier(), Nonce: oauth2.GenerateVerifier(), Verifier: oauth2.GenerateVerifier(), Redirect: redirect}
}

// AuthURL is the provider's authorization URL for f: code flow, S256 PKCE
// challenge, state and nonce.
func (c *Client) AuthURL(ctx context.Context, f Flow) (string, error) {
	cfg, _, err := c.discover(ctx)
	if err != nil {
		return "", err
	}
	cfg.RedirectURL = f.Redirect
	return cfg.AuthCodeURL(f.State, oauth2.S256ChallengeOption(f.Verifier), oidc.Nonce(f.Nonce)), nil
}

// Identity is who the provider vouched for.
type Identity struct {
	Subject string
	// Name is the Aurum principal name: the verified email, else the
	// preferred username, else "oidc-" + the subject, as far as they fit
	// Aurum's name rules.
	Name string
	// Role is the role the claim maps to; "" when the claim is missing or
	// names no Aurum role (then Claim says what it held).
	Role  auth.Role
	Claim string
}

// ErrNoRole is returned by Exchange when the ID token is valid but its
// role claim is missing or names no Aurum role: no access.
var ErrNoRole = errors.New("sso: no Aurum role")

// Exchange trades the authorization code for tokens (with the PKCE
// verifier), verifies the ID token (signature, issuer, audience, expiry,
// nonce) and maps its role claim. A valid identity without a role is
// returned with an error wrapping ErrNoRole.
func (c *Client) Exchange(ctx context.Context, f Flow, code string) (Identity, error) {
	cfg, verifier, err := c.discover(ctx)
	if err != nil {
		return Identity{}, err
	}
	cfg.RedirectURL = f.Redirect
	tok, err := cfg.Exchange(oidc.ClientContext(ctx, c.opts.HTTPClient), code, oauth2.VerifierOption(f.Verifier))
	if err != nil {
		return Identity{}, fmt.Errorf("sso: code exchange: %w", err)
	}
	raw, ok := tok.Extra("id_token").(string)
	if !ok || raw == "" {
		return Identity{}, errors.New("sso: the provider's answer has no id_token")
	}
	idt, err := verifier.Verify(ctx, raw)
	if err != nil {
		return Identity{}, fmt.Errorf("sso: id token: %w", err)
	}
	if !auth.Equal([]byte(idt.Nonce), []byte(f.Nonce)) {
		return Identity{}, errors.New("sso: id token: nonce does not match this sign-in")
	}
	var claims map[string]any
	if err := idt.Claims(&claims); err != nil {
		return Identity{}, fmt.Errorf("sso: id token claims: %w", err)
	}
	if !hasName(claims) {
		// Many providers put the email and user name only in userinfo.
		if ui, err := c.userInfo(ctx, cfg, tok); err == nil && ui.Subject == idt.Subject {
			var more map[string]any
			if ui.Claims(&more) == nil {
				for _, k := range []string{"email", "email_verified", "preferred_username"} {
					if _, ok := claims[k]; !ok && more[k] != nil {
						claims[k] = more[k]
					}
				}
			}
		}
	}
	id := Identity{Subject: idt.Subject, Name: principalName(idt.Subject, claims)}
	id.Role, id.Claim = MapRole(claims[c.opts.RoleClaim])
	if id.Role == "" {
		return id, fmt.Errorf("%w: claim %q is %s", ErrNoRole, c.opts.RoleClaim, id.Claim)
	}
	return id, nil
}

// MapRole maps a role claim's value (a string or a list of strings) to the
// most powerful Aurum role it names; unknown values are ignored. The
// second result describes the value for messages.
func MapRole(v any) (auth.Role, string) {
	var vals []string
	switch x := v.(type) {
	case nil:
		return "", "missing"
	case string:
		vals = []string{x}
	case []any:
		for _, e := range x {
			if s, ok := e.(string); ok {
				vals = append(vals, s)
			}
		}
	default:
		return "", fmt.Sprintf("not a string or list (%T)", v)
	}
	best := -1
	for _, s := range vals {
		for i, r := range auth.Roles {
			if strings.EqualFold(strings.TrimSpace(s), string(r)) && (best < 0 || i < best) {
				best = i
			}
		}
	}
	desc := fmt.Sprintf("%q", vals)
	if len(vals) == 1 {
		desc = fmt.Sprintf("%q", vals[0])
	}
	if best < 0 {
		return "", desc + ", which names no Aurum role (admin, editor, viewer, privacy)"
	}
	return auth.Roles[best], desc
}

// userInfo asks the provider's userinfo endpoint with the access token.
func (c *Client) userInfo(ctx context.Context, cfg *oauth2.Config, tok *oauth2.Token) (*oidc.UserInfo, error) {
	c.mu.Lock()
	p := c.provider
	c.mu.Unlock()
	if p.UserInfoEndpoint() == "" {
		return nil, errors.New("sso: no userinfo endpoint")
	}
	ctx = oidc.ClientContext(ctx, c.opts.HTTPClient)
	return p.UserInfo(ctx, cfg.TokenSource(ctx, tok))
}

// hasName reports whether claims hold a name principalName would use.
func hasName(claims map[string]any) bool {
	e, _ := claims["email"].(string)
	v, _ := claims["email_verified"].(bool)
	u, _ := claims["preferred_username"].(string)
	return (v && nameOK.MatchString(e)) || nameOK.MatchString(u)
}

// nameOK is the shape of Aurum principal names (projections.ValidAccessName).
var nameOK = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._@+-]{0,127}$`)

var nameBad = regexp.MustCompile(`[^A-Za-z0-9._@+-]+`)

// principalName picks the Aurum name of an identity.
func principalName(sub string, claims map[string]any) string {
	if v, _ := claims["email_verified"].(bool); v {
		if e, _ := claims["email"].(string); nameOK.MatchString(e) {
			return e
		}
	}
	if u, _ := claims["preferred_username"].(string); nameOK.MatchString(u) {
		return u
	}
	n := "oidc-" + nameBad.ReplaceAllString(sub, "_")
	if len(n) > 128 {
		n = n[:128]
	}
	return n
}
