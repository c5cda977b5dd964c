// Package oidctest is test support: a real OpenID Connect provider on an
// httptest server, built from github.com/zitadel/oidc's example provider
// (its in-memory storage and its login page), with static users whose ID
// tokens carry the claims the test gives them (e.g. Aurum's role claim).
//
//	p := oidctest.Start(t, oidctest.Options{Users: []oidctest.User{
//		{Username: "ana", Password: "pw", Email: "ana@example.com", Claims: map[string]any{"aurum_role": "admin"}},
//	}})
//	// serve --oidc-issuer p.Issuer --oidc-client-id p.ClientID (secret p.ClientSecret), --oidc-role-claim aurum_role
//
// A browser sent to Aurum's /v1/session/oidc/login lands on the provider's
// login page: a form with inputs #username and #password and a submit
// button; SubmitLogin fills it for an http.Client.
package oidctest

import (
	"context"
	"fmt"
	"html"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"testing"

	"github.com/zitadel/oidc/v3/example/server/exampleop"
	"github.com/zitadel/oidc/v3/example/server/storage"
	"github.com/zitadel/oidc/v3/pkg/oidc"
	"github.com/zitadel/oidc/v3/pkg/op"
	"golang.org/x/text/language"
)

// User is a static user of the provider.
type User struct {
	Username string // what the login form asks
	Password string
	Email    string // asserted verified; "" leaves the email out
	// Claims are added to the user's ID token (and userinfo), e.g.
	// {"aurum_role": "editor"} or {"groups": []string{"viewer"}}.
	Claims map[string]any
}

// Options configure the provider.
type Options struct {
	Users []User
	// ClientID and ClientSecret of the one registered client. Default
	// "aurum" and "aurum-test-secret".
	ClientID, ClientSecret string
	// RedirectGlobs are the client's allowed redirect URIs (path.Match
	// patterns). Default: Aurum's callback on any port of 127.0.0.1 and
	// localhost, over http and https.
	RedirectGlobs []string
}

// Provider is a running provider.
type Provider struct {
	Issuer       string // its issuer URL (http://127.0.0.1:port)
	ClientID     string
	ClientSecret string
	srv          *httptest.Server
	closeOnce    sync.Once
}

// Start runs a provider until the test ends (or Close).
func Start(t testing.TB, opts Options) *Provider {
	t.Helper()
	if opts.ClientID == "" {
		opts.ClientID = "aurum"
	}
	if opts.ClientSecret == "" {
		opts.ClientSecret = "aurum-test-secret"
	}
	if opts.RedirectGlobs == nil {
		for _, scheme := range []string{"http", "https"} {
			for _, host := range []string{"127.0.0.1", "localhost"} {
				opts.RedirectGlobs = append(opts.RedirectGlobs, scheme+"://"+host+":*/v1/session/oidc/callback")
			}
		}
	}
	users := userStore{byID: map[string]*storage.User{}, claims: map[string]map[string]any{}}
	for i, u := range opts.Users {
		id := fmt.Sprintf("user%d", i+1)
		users.byID[id] = &storage.User{ID: id, Username: u.Username, Password: u.Password, Email: u.Email,
			EmailVerified: u.Email != "", FirstName: u.Username, PreferredLanguage: language.English}
		users.claims[id] = u.Claims
	}
	client := storage.WebClient(opts.ClientID, opts.ClientSecret)
	st := &store{Storage: storage.NewStorageWithClients(users, map[string]*storage.Client{opts.ClientID: client}),
		users: users, globs: opts.RedirectGlobs}

	var handler http.Handler
	var ready sync.WaitGroup
	ready.Add(1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ready.Wait()
		handler.ServeHTTP(w, r)
	}))
	handler = exampleop.SetupServer(srv.URL, st, nil, false)
	ready.Done()
	p := &Provider{Issuer: srv.URL, ClientID: opts.ClientID, ClientSecret: opts.ClientSecret, srv: srv}
	t.Cleanup(p.Close)
	return p
}

// Close stops the provider.
func (p *Provider) Close() { p.closeOnce.Do(p.srv.Close) }

// userStore is the example storage's UserStore over the static users.
type userStore struct {
	byID   map[string]*storage.User
	claims map[string]map[string]any
}

func (u userStore) GetUserByID(id string) *storage.User { return u.byID[id] }

func (u userStore) GetUserByUsername(name string) *storage.User {
	for _, x := range u.byID {
		if x.Username == name {
			return x
		}
	}
	return nil
}

func (u userStore) ExampleClientID() string { return storage.ServiceUserID }

// store is the example storage with the users' extra claims in their ID
// tokens and the client's redirect globs.
type store struct {
	*storage.Storage
	users userStore
	globs []string
}

// SetUserinfoFromRequest adds the user's claims to the ID token.
func (s *store) SetUserinfoFromRequest(ctx context.Context, info *oidc.UserInfo, req op.IDTokenRequest, scopes []string) error {
	if err := s.Storage.SetUserinfoFromRequest(ctx, info, req, scopes); err != nil {
		return err
	}
	for k, v := range s.users.claims[req.GetSubject()] {
		info.AppendClaims(k, v)
	}
	return nil
}

// GetClientByClientID returns the client with the redirect globs.
func (s *store) GetClientByClientID(ctx context.Context, id string) (op.Client, error) {
	c, err := s.Storage.GetClientByClientID(ctx, id)
	if err != nil {
		return nil, err
	}
	return globClient{Client: c, globs: s.globs}, nil
}

type globClient struct {
	op.Client
	globs []string
}

func (c globClient) RedirectURIGlobs() []string           { return c.globs }
func (c globClient) PostLogoutRedirectURIGlobs() []string { return nil }

// hiddenID finds the auth request id in the login page.
var hiddenID = regexp.MustCompile(`name="id" value="([^"]*)"`)

// SubmitLogin answers the provider's login page (the response the client
// was redirected to) with username and password, and returns the response
// at the end of the redirects that follow (for Aurum: its callback's
// redirect target). The client must keep cookies and follow redirects.
func SubmitLogin(ctx context.Context, c *http.Client, loginPage *http.Response, username, password string) (*http.Response, error) {
	body, err := io.ReadAll(loginPage.Body)
	loginPage.Body.Close()
	if err != nil {
		return nil, fmt.Errorf("oidctest: read login page: %w", err)
	}
	m := hiddenID.FindSubmatch(body)
	if m == nil {
		return nil, fmt.Errorf("oidctest: %s is not the login page (status %d): %.300s", loginPage.Request.URL, loginPage.StatusCode, body)
	}
	action := loginPage.Request.URL.ResolveReference(&url.URL{Path: "/login/username"})
	form := url.Values{"id": {html.UnescapeString(string(m[1]))}, "username": {username}, "password": {password}}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, action.String(), strings.NewReader(form.Encode()))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	return c.Do(req)
}
