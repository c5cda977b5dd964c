package api_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/aurumcdp/aurum/api"
	"github.com/aurumcdp/aurum/auth"
	"github.com/aurumcdp/aurum/engine/audit"
	"github.com/aurumcdp/aurum/internal/oidctest"
	"github.com/aurumcdp/aurum/sso"
)

const roleClaim = "aurum_role"

// ssoBrowser is an http.Client with a cookie jar that follows redirects:
// what a person's browser does during single sign-on.
type ssoBrowser struct {
	t    *testing.T
	c    *http.Client
	base *url.URL
}

func newSSOBrowser(t *testing.T, base string) *ssoBrowser {
	jar, err := cookiejar.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	u, err := url.Parse(base)
	if err != nil {
		t.Fatal(err)
	}
	return &ssoBrowser{t: t, c: &http.Client{Jar: jar, Timeout: 30 * time.Second}, base: u}
}

func (b *ssoBrowser) cookie(name string) string {
	for _, c := range b.c.Jar.Cookies(b.base) {
		if c.Name == name {
			return c.Value
		}
	}
	return ""
}

// signIn goes through the provider's login page as username and returns
// the response the redirects end on.
func (b *ssoBrowser) signIn(username, password string) *http.Response {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, b.base.String()+"/v1/session/oidc/login", nil)
	if err != nil {
		b.t.Fatal(err)
	}
	page, err := b.c.Do(req)
	if err != nil {
		b.t.Fatalf("GET /v1/session/oidc/login: %v", err)
	}
	res, err := oidctest.SubmitLogin(ctx, b.c, page, username, password)
	if err != nil {
		b.t.Fatal(err)
	}
	return res
}

// call makes an API request with the jar's cookies (and the CSRF header on
// changes); it returns the status and body.
func (b *ssoBrowser) call(method, path, body string) (int, string) {
	b.t.Helper()
	req, err := http.NewRequest(method, b.base.String()+path, strings.NewReader(body))
	if err != nil {
		b.t.Fatal(err)
	}
	if method != http.MethodGet {
		req.Header.Set(api.CSRFHeader, b.cookie(api.CSRFCookie))
		req.Header.Set("Content-Type", "application/json")
	}
	res, err := b.c.Do(req)
	if err != nil {
		b.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer res.Body.Close()
	got, err := io.ReadAll(res.Body)
	if err != nil {
		b.t.Fatalf("%s %s: read: %v", method, path, err)
	}
	return res.StatusCode, string(got)
}

// TestSSOSignIn signs in through a real OpenID Connect provider (zitadel's
// example OP, internal/oidctest): the role claim decides the role, and a
// missing or unknown one gets no session.
func TestSSOSignIn(t *testing.T) {
	p := oidctest.Start(t, oidctest.Options{Users: []oidctest.User{
		{Username: "ada", Password: "pw-ada", Email: "ada@example.com", Claims: map[string]any{roleClaim: "admin"}},
		{Username: "vic", Password: "pw-vic", Email: "vic@example.com", Claims: map[string]any{roleClaim: "viewer"}},
		{Username: "eve", Password: "pw-eve", Email: "eve@example.com", Claims: map[string]any{roleClaim: []string{"viewer", "Editor"}}},
		{Username: "nob", Password: "pw-nob", Email: "nob@example.com"},
		{Username: "sup", Password: "pw-sup", Claims: map[string]any{roleClaim: "superuser"}},
	}})
	client, err := sso.New(sso.Options{Issuer: p.Issuer, ClientID: p.ClientID, ClientSecret: p.ClientSecret, RoleClaim: roleClaim})
	if err != nil {
		t.Fatal(err)
	}
	s := newAccessServer(t, func(o *api.Options) { o.SSO = client })
	auditStart := s.auditCursor()

	var prov struct {
		OIDC     bool   `json:"oidc"`
		LoginURL string `json:"oidc_login_url"`
	}
	if r := s.do(req{method: "GET", path: "/v1/session/providers"}); r.code != 200 || json.Unmarshal(r.body, &prov) != nil || !prov.OIDC || prov.LoginURL != "/v1/session/oidc/login" {
		t.Fatalf("providers: %s", r)
	}

	for _, tc := range []struct {
		user, password string
		want           auth.Role // "": no session
		name           string
		allowed        [][2]string // method, path that must work
		refused        [][2]string // method, path refused 403
	}{
		{user: "ada", password: "pw-ada", want: auth.RoleAdmin, name: "ada@example.com",
			allowed: [][2]string{{"GET", "/v1/tokens"}, {"POST", "/v1/tokens"}, {"GET", "/v1/audit"}}},
		{user: "vic", password: "pw-vic", want: auth.RoleViewer, name: "vic@example.com",
			allowed: [][2]string{{"GET", "/v1/audiences"}}, refused: [][2]string{{"POST", "/v1/audiences"}, {"GET", "/v1/tokens"}}},
		{user: "eve", password: "pw-eve", want: auth.RoleEditor, name: "eve@example.com",
			allowed: [][2]string{{"POST", "/v1/audiences"}}, refused: [][2]string{{"GET", "/v1/tokens"}}},
		{user: "nob", password: "pw-nob"},
		{user: "sup", password: "pw-sup"},
	} {
		t.Run(tc.user, func(t *testing.T) {
			b := newSSOBrowser(t, s.URL)
			res := b.signIn(tc.user, tc.password)
			res.Body.Close()
			if tc.want == "" {
				if res.StatusCode != http.StatusForbidden || res.Request.URL.Path != "/v1/session/oidc/callback" {
					t.Fatalf("sign-in without a role ended on %d %s, want 403 at the callback", res.StatusCode, res.Request.URL)
				}
				if v := b.cookie(api.SessionCookie); v != "" {
					t.Fatal("a session cookie was set without a role")
				}
				if code, body := b.call("GET", "/v1/session", ""); code != 401 {
					t.Fatalf("GET /v1/session without a role: %d %s", code, body)
				}
				return
			}
			if res.Request.URL.Path != "/" {
				t.Fatalf("sign-in ended at %s (%d), want a redirect to /", res.Request.URL, res.StatusCode)
			}
			code, body := b.call("GET", "/v1/session", "")
			var got struct {
				Name string    `json:"name"`
				Role auth.Role `json:"role"`
				Kind string    `json:"kind"`
			}
			if code != 200 || json.Unmarshal([]byte(body), &got) != nil || got.Name != tc.name || got.Role != tc.want || got.Kind != auth.KindSSO {
				t.Fatalf("GET /v1/session: %d %s, want %s as %s (sso)", code, body, tc.name, tc.want)
			}
			bodies := map[string]string{"/v1/tokens": `{"name":"from-sso","role":"viewer"}`,
				"/v1/audiences": `{"name":"sso_` + tc.user + `","rule":"count(\"E\") >= 1"}`}
			for _, a := range tc.allowed {
				if code, body := b.call(a[0], a[1], bodies[a[1]]); code/100 != 2 {
					t.Errorf("%s %s as %s: %d %s, want 2xx", a[0], a[1], tc.want, code, body)
				}
			}
			for _, a := range tc.refused {
				if code, body := b.call(a[0], a[1], bodies[a[1]]); code != 403 || !strings.Contains(body, "needs role") {
					t.Errorf("%s %s as %s: %d %s, want 403", a[0], a[1], tc.want, code, body)
				}
			}
			old := b.cookie(api.SessionCookie)
			if code, body := b.call("DELETE", "/v1/session", ""); code != 204 {
				t.Fatalf("sign-out: %d %s", code, body)
			}
			replay := newBrowser(s)
			replay.cookies[api.SessionCookie] = &http.Cookie{Name: api.SessionCookie, Value: old}
			if r := replay.do(req{method: "GET", path: "/v1/session"}, false); r.code != 401 {
				t.Errorf("cookie after sign-out: %s, want 401 (session revoked)", r)
			}
		})
	}

	for _, tc := range []struct {
		name, query string
		cookie      bool
		want        int
		field       string
	}{
		{"no sign-in in progress", "?state=x&code=y", false, 400, "state"},
		{"provider error", "?error=access_denied", false, 403, "error"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := s.do(req{method: "GET", path: "/v1/session/oidc/callback" + tc.query})
			if r.code != tc.want {
				t.Fatalf("got %s, want %d", r, tc.want)
			}
			if _, field := r.errorBody(t); field != tc.field {
				t.Errorf("field %q, want %q", field, tc.field)
			}
		})
	}
	t.Run("state mismatch", func(t *testing.T) {
		b := newSSOBrowser(t, s.URL)
		b.c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
		if code, _ := b.call("GET", "/v1/session/oidc/login", ""); code != http.StatusFound {
			t.Fatalf("login: %d, want 302", code)
		}
		if code, body := b.call("GET", "/v1/session/oidc/callback?state=forged&code=x", ""); code != 400 || !strings.Contains(body, "state does not match") {
			t.Errorf("forged state: %d %s", code, body)
		}
	})

	// A browser (a navigation asking for HTML) is sent back to the
	// console's sign-in page with the reason instead of a JSON error.
	t.Run("browser without a role", func(t *testing.T) {
		b := newSSOBrowser(t, s.URL)
		b.c.Transport = acceptHTML{http.DefaultTransport}
		res := b.signIn("nob", "pw-nob")
		res.Body.Close()
		if u := res.Request.URL; u.Path != "/" || u.Query().Get("sso_error") != "no_role" || len(u.Query()) != 1 {
			t.Fatalf("sign-in without a role ended at %s (%d), want /?sso_error=no_role", u, res.StatusCode)
		}
		if v := b.cookie(api.SessionCookie); v != "" {
			t.Fatal("a session cookie was set without a role")
		}
		if code, body := b.call("GET", "/v1/session", ""); code != 401 {
			t.Fatalf("GET /v1/session without a role: %d %s", code, body)
		}
	})
	for _, tc := range []struct{ name, query, reason string }{
		{"browser, provider error", "?error=access_denied&error_description=Nope", "refused"},
		{"browser, no sign-in in progress", "?state=x&code=y", "expired"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := newSSOBrowser(t, s.URL)
			b.c.Transport = acceptHTML{http.DefaultTransport}
			b.c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
			res, err := b.c.Get(s.URL + "/v1/session/oidc/callback" + tc.query)
			if err != nil {
				t.Fatal(err)
			}
			res.Body.Close()
			if loc := res.Header.Get("Location"); res.StatusCode != http.StatusSeeOther || loc != "/?sso_error="+tc.reason {
				t.Fatalf("got %d, Location %q; want 303 to /?sso_error=%s", res.StatusCode, loc, tc.reason)
			}
		})
	}

	// Every sign-in and sign-out is in the audit log with who and how it ended.
	type entry struct{ action, actor, role, result string }
	var got []entry
	entries, _, err := s.e.Recorder().AuditLog(context.Background(), audit.AuditQuery{Cursor: auditStart, Limit: audit.MaxAuditPage})
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if strings.Contains(e.Action, "/v1/session") {
			got = append(got, entry{e.Action, e.Actor, e.Role, e.Result})
		}
	}
	want := []entry{
		{"GET /v1/session/oidc/callback", "sso:ada@example.com", "admin", "ok"},
		{"GET /v1/session", "sso:ada@example.com", "admin", "ok"},
		{"DELETE /v1/session", "sso:ada@example.com", "admin", "ok"},
		{"GET /v1/session", "", "", "unauthenticated"},
	}
	for i, w := range want {
		if i >= len(got) || got[i] != w {
			t.Fatalf("audit of the sessions: got %v, want it to start with %v", got, want)
		}
	}
	denied := 0
	for _, e := range got {
		if e.action == "GET /v1/session/oidc/callback" && e.result == "denied" && strings.HasPrefix(e.actor, "sso:") {
			denied++
		}
	}
	if denied != 3 {
		t.Errorf("%d denied single sign-ons in the audit log, want 3 (no role, unknown role, no role in a browser): %v", denied, got)
	}
}

// acceptHTML asks for HTML on every request, as a browser's navigation does.
type acceptHTML struct{ next http.RoundTripper }

func (a acceptHTML) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set("Accept", "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8")
	return a.next.RoundTrip(r)
}
