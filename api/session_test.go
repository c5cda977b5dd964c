package api_test

import (
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/aurumcdp/aurum/api"
	"github.com/aurumcdp/aurum/auth"
)

// browser keeps the cookies a console would: it sends them back and applies
// every Set-Cookie (a Max-Age < 0 deletes).
type browser struct {
	s       *accessServer
	cookies map[string]*http.Cookie
}

func newBrowser(s *accessServer) *browser { return &browser{s: s, cookies: map[string]*http.Cookie{}} }

// do sends r with the browser's cookies; csrf adds the X-Aurum-CSRF header
// from the aurum_csrf cookie.
func (b *browser) do(r req, csrf bool) resp {
	b.s.t.Helper()
	if r.header == nil {
		r.header = map[string]string{}
	}
	var parts []string
	for _, c := range b.cookies {
		parts = append(parts, c.Name+"="+c.Value)
	}
	if len(parts) > 0 {
		r.header["Cookie"] = strings.Join(parts, "; ")
	}
	if csrf {
		r.header[api.CSRFHeader] = b.value(api.CSRFCookie)
	}
	res := b.s.do(r)
	for _, line := range res.header.Values("Set-Cookie") {
		c, err := http.ParseSetCookie(line)
		if err != nil {
			b.s.t.Fatalf("Set-Cookie %q: %v", line, err)
		}
		if c.MaxAge < 0 {
			delete(b.cookies, c.Name)
		} else {
			b.cookies[c.Name] = c
		}
	}
	return res
}

func (b *browser) value(name string) string {
	if c, ok := b.cookies[name]; ok {
		return c.Value
	}
	return ""
}

// signIn posts body to POST /v1/session and fails the test unless 200.
func (b *browser) signIn(body any) sessionBody {
	b.s.t.Helper()
	r := b.do(req{path: "/v1/session", body: jsonBody(b.s.t, body)}, false)
	if r.code != http.StatusOK {
		b.s.t.Fatalf("POST /v1/session: %s", r)
	}
	var sb sessionBody
	if err := json.Unmarshal(r.body, &sb); err != nil {
		b.s.t.Fatalf("POST /v1/session answer %s: %v", r, err)
	}
	return sb
}

type sessionBody struct {
	Name    string    `json:"name"`
	Role    auth.Role `json:"role"`
	Kind    string    `json:"kind"`
	Expires time.Time `json:"expires"`
}

// TestSessionCookieFlags: a sign-in sets aurum_session HttpOnly,
// SameSite=Strict, Path=/ (Secure when asked) and aurum_csrf readable by
// script, holding the documented CSRF value.
func TestSessionCookieFlags(t *testing.T) {
	for _, secure := range []bool{false, true} {
		t.Run(fmt.Sprintf("secure=%v", secure), func(t *testing.T) {
			s := newAccessServer(t, func(o *api.Options) { o.SecureCookies = secure })
			tok, _ := s.createToken("ops", "editor", "")
			b := newBrowser(s)
			got := b.signIn(map[string]string{"token": tok})
			now := s.clock.Now()
			if got.Name != "ops" || got.Role != auth.RoleEditor || got.Kind != auth.KindToken {
				t.Errorf("signed in as %+v, want token ops (editor)", got)
			}
			if d := got.Expires.Sub(now); d < 11*time.Hour || d > 12*time.Hour+time.Minute {
				t.Errorf("expires in %v, want 12 h", d)
			}
			sc, csrf := b.cookies[api.SessionCookie], b.cookies[api.CSRFCookie]
			if sc == nil || csrf == nil {
				t.Fatalf("cookies %v, want %s and %s", b.cookies, api.SessionCookie, api.CSRFCookie)
			}
			if !sc.HttpOnly || sc.SameSite != http.SameSiteStrictMode || sc.Path != "/" || sc.Secure != secure {
				t.Errorf("session cookie %s: want HttpOnly, SameSite=Strict, Path=/, Secure=%v", sc, secure)
			}
			if csrf.HttpOnly || csrf.SameSite != http.SameSiteStrictMode || csrf.Secure != secure {
				t.Errorf("csrf cookie %s: want script-readable, SameSite=Strict, Secure=%v", csrf, secure)
			}
			if strings.Contains(sc.Value, tok) || strings.Contains(sc.Value, strings.TrimPrefix(tok, auth.TokenPrefix)) {
				t.Error("the session cookie shows the token in clear")
			}
			if want := apiCSRF(tok); csrf.Value != want {
				t.Errorf("csrf %q, want %q", csrf.Value, want)
			}
		})
	}
}

// apiCSRF is the documented CSRF value: hex(sha256("aurum-csrf\x00"+credential))[:16].
func apiCSRF(secret string) string {
	h := sha256Sum([]byte("aurum-csrf\x00" + secret))
	return fmt.Sprintf("%x", h)[:16]
}

// TestSessionCSRFAndRoles: a request authenticated by the cookie is held to
// the same route table as a token, and a change needs the CSRF header.
func TestSessionCSRFAndRoles(t *testing.T) {
	s := newAccessServer(t, nil)
	editorTok, _ := s.createToken("ed", "editor", "")
	viewerTok, _ := s.createToken("view", "viewer", "")
	editor, viewer := newBrowser(s), newBrowser(s)
	editor.signIn(map[string]string{"token": editorTok})
	viewer.signIn(map[string]string{"token": viewerTok})
	aud := func(name string) []byte { return []byte(fmt.Sprintf(`{"name":%q,"rule":%q}`, name, ruleE)) }
	for i, tc := range []struct {
		name    string
		b       *browser
		r       req
		csrf    string // "": none, "right", "wrong"
		bearer  string
		want    int
		wantMsg string
	}{
		{name: "read needs no csrf", b: editor, r: req{method: "GET", path: "/v1/audiences"}, want: 200},
		{name: "change without csrf", b: editor, r: req{path: "/v1/audiences", body: aud("a1")}, want: 403, wantMsg: "csrf: missing"},
		{name: "change with wrong csrf", b: editor, r: req{path: "/v1/audiences", body: aud("a2")}, csrf: "wrong", want: 403, wantMsg: "csrf: X-Aurum-CSRF does not match"},
		{name: "change with csrf", b: editor, r: req{path: "/v1/audiences", body: aud("a3")}, csrf: "right", want: 201},
		{name: "delete without csrf", b: editor, r: req{method: "DELETE", path: "/v1/audiences/a3"}, want: 403, wantMsg: "csrf:"},
		{name: "another session's csrf", b: editor, r: req{method: "DELETE", path: "/v1/audiences/a3", header: map[string]string{api.CSRFHeader: apiCSRF(viewerTok)}}, want: 403, wantMsg: "csrf:"},
		{name: "delete with csrf", b: editor, r: req{method: "DELETE", path: "/v1/audiences/a3"}, csrf: "right", want: 204},
		{name: "bearer needs no csrf", b: viewer, r: req{path: "/v1/audiences", body: aud("a4")}, bearer: editorTok, want: 201},
		{name: "viewer reads", b: viewer, r: req{method: "GET", path: "/v1/audiences/a4"}, want: 200},
		{name: "viewer may not change", b: viewer, r: req{path: "/v1/audiences", body: aud("a5")}, csrf: "right", want: 403, wantMsg: "role viewer may not"},
		{name: "editor may not admin", b: editor, r: req{method: "GET", path: "/v1/tokens"}, want: 403, wantMsg: "needs role admin"},
		{name: "no cookie", b: newBrowser(s), r: req{method: "GET", path: "/v1/audiences"}, want: 401, wantMsg: "missing bearer token"},
		{name: "forged cookie", b: &browser{s: s, cookies: map[string]*http.Cookie{api.SessionCookie: {Name: api.SessionCookie, Value: "v1.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"}}},
			r: req{method: "GET", path: "/v1/audiences"}, want: 401, wantMsg: "invalid cookie"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := tc.r
			if r.method == "" {
				r.method = "POST"
			}
			r.header = map[string]string{}
			for k, v := range tc.r.header {
				r.header[k] = v
			}
			if tc.csrf == "wrong" {
				r.header[api.CSRFHeader] = strings.Repeat("0", 16)
			}
			if tc.bearer != "" {
				r.header["Authorization"] = "Bearer " + tc.bearer
			}
			got := tc.b.do(r, tc.csrf == "right")
			if got.code != tc.want {
				t.Fatalf("case %d: %s %s: got %s, want %d", i, r.method, r.path, got, tc.want)
			}
			if tc.wantMsg != "" {
				if msg, _ := got.errorBody(t); !strings.Contains(msg, tc.wantMsg) {
					t.Errorf("message %q, want it to contain %q", msg, tc.wantMsg)
				}
			}
		})
	}
}

// TestSessionExpiry: a session ends after SessionIdle without a request,
// and at its expiry however active; an active one gets a fresh cookie; a
// token's own expiry bounds the session.
func TestSessionExpiry(t *testing.T) {
	s := newAccessServer(t, nil)
	tok, _ := s.createToken("ops", "viewer", "")
	get := req{method: "GET", path: "/v1/session"}

	idle := newBrowser(s)
	idle.signIn(map[string]string{"token": tok})
	active := newBrowser(s)
	active.signIn(map[string]string{"token": tok})
	start := s.clock.Now()
	for s.clock.Now().Sub(start) < 12*time.Hour-time.Hour {
		s.clock.Advance(50 * time.Minute)
		if r := active.do(get, false); r.code != 200 {
			t.Fatalf("active session after %v: %s", s.clock.Now().Sub(start), r)
		}
	}
	if r := idle.do(get, false); r.code != 401 || !strings.Contains(string(r.body), "idle") {
		t.Errorf("session idle for 11 h: got %s, want 401 idle", r)
	}
	if _, ok := idle.cookies[api.SessionCookie]; ok {
		t.Error("a refused session cookie was not cleared")
	}
	s.clock.Advance(55 * time.Minute)
	if r := active.do(get, false); r.code != 401 || !strings.Contains(string(r.body), "expired") {
		t.Errorf("active session after 12 h: got %s, want 401 expired", r)
	}

	short, _ := s.createToken("short", "viewer", "2h")
	b := newBrowser(s)
	if got := b.signIn(map[string]string{"token": short}); got.Expires.Sub(s.clock.Now()) > 2*time.Hour {
		t.Errorf("session of a 2 h token expires at %v, after the token", got.Expires)
	}
}

// TestSessionSignInAndOut: sign-in with a user's password and TOTP, the
// session answers GET /v1/session; DELETE /v1/session clears the cookies
// and revokes the session, so the old cookie no longer works anywhere.
func TestSessionSignInAndOut(t *testing.T) {
	s := newAccessServer(t, nil)
	secret := s.createUser("ana", auth.RoleEditor, "correct horse battery")
	b := newBrowser(s)
	got := b.signIn(map[string]string{"name": "ana", "password": "correct horse battery", "totp": auth.TOTP(secret, s.clock.Now())})
	if got.Name != "ana" || got.Role != auth.RoleEditor || got.Kind != auth.KindSession {
		t.Fatalf("signed in as %+v", got)
	}
	r := b.do(req{method: "GET", path: "/v1/session"}, false)
	var again sessionBody
	if r.code != 200 || json.Unmarshal(r.body, &again) != nil || again.Name != "ana" || !again.Expires.Equal(got.Expires) {
		t.Fatalf("GET /v1/session: %s, want ana until %v", r, got.Expires)
	}
	old := map[string]*http.Cookie{}
	for k, v := range b.cookies {
		old[k] = v
	}
	if r := b.do(req{method: "DELETE", path: "/v1/session"}, false); r.code != 403 {
		t.Fatalf("sign-out without csrf: %s, want 403", r)
	}
	if r := b.do(req{method: "DELETE", path: "/v1/session"}, true); r.code != 204 {
		t.Fatalf("sign-out: %s", r)
	}
	if len(b.cookies) != 0 {
		t.Errorf("cookies after sign-out: %v", b.cookies)
	}
	replay := &browser{s: s, cookies: old}
	if r := replay.do(req{method: "GET", path: "/v1/session"}, false); r.code != 401 {
		t.Errorf("old cookie after sign-out: %s, want 401 (revoked)", r)
	}

	root := newBrowser(s)
	if got := root.signIn(map[string]string{"token": adminToken}); got.Kind != auth.KindBootstrap || got.Role != auth.RoleAdmin {
		t.Errorf("sign-in with the bootstrap token: %+v", got)
	}
	if r := root.do(req{method: "GET", path: "/v1/tokens"}, false); r.code != 200 {
		t.Errorf("bootstrap console GET /v1/tokens: %s", r)
	}

	for _, tc := range []struct {
		name  string
		body  string
		want  int
		field string
	}{
		{"unknown token", `{"token":"aur_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"}`, 401, "token"},
		{"write key", fmt.Sprintf(`{"token":%q}`, s.webKey), 401, "token"},
		{"both", `{"token":"x","name":"ana"}`, 400, "token"},
		{"no totp", `{"name":"ana","password":"correct horse battery"}`, 400, "totp"},
		{"wrong password", `{"name":"ana","password":"wrong horse battery","totp":"123456"}`, 401, ""},
		{"unknown field", `{"user":"ana"}`, 400, "user"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := newBrowser(s).do(req{path: "/v1/session", body: []byte(tc.body)}, false)
			if r.code != tc.want {
				t.Fatalf("got %s, want %d", r, tc.want)
			}
			if _, field := r.errorBody(t); field != tc.field {
				t.Errorf("field %q, want %q", field, tc.field)
			}
			if len(r.header.Values("Set-Cookie")) != 0 {
				t.Errorf("failed sign-in set cookies: %v", r.header.Values("Set-Cookie"))
			}
		})
	}
}

func sha256Sum(b []byte) [32]byte { return sha256.Sum256(b) }

// consoleHeaders signs in to the console with an API token and returns the
// headers its later requests carry: the cookies and the CSRF header.
func (s *accessServer) consoleHeaders(token string) map[string]string {
	s.t.Helper()
	b := newBrowser(s)
	b.signIn(map[string]string{"token": token})
	return map[string]string{
		"Cookie":       api.SessionCookie + "=" + b.value(api.SessionCookie) + "; " + api.CSRFCookie + "=" + b.value(api.CSRFCookie),
		api.CSRFHeader: b.value(api.CSRFCookie),
	}
}
