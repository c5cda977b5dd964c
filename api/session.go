package api

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"time"

	"github.com/aurumcdp/aurum/auth"
	"github.com/aurumcdp/aurum/engine/base"
	"github.com/aurumcdp/aurum/sso"
)

// Console sessions: POST /v1/session signs in (an API token, or a user's
// name, password and TOTP code) and sets two cookies:
//
//   - aurum_session (HttpOnly, SameSite=Strict, Path=/, Secure under TLS):
//     the credential, sealed. It holds the API token or the login
//     session's secret, the time of the session's last request and its
//     expiry, sealed with AES-256-GCM under a key derived from the master
//     key (Access.SessionKey), so every node of a cluster opens it and no
//     client can forge or extend it. The principal is looked up afresh on
//     every request from the credential, so revoking the token, the
//     session (DELETE /v1/session, DELETE /v1/tokens/{id}) or deleting the
//     user ends it on every node at once.
//   - aurum_csrf (readable by the page's script, SameSite=Strict):
//     hex(SHA-256("aurum-csrf\x00" + credential))[:16]. Every POST, PUT,
//     PATCH or DELETE authenticated by the cookie must send it back in the
//     X-Aurum-CSRF header, else 403 (double-submit: another site can
//     neither read the cookie nor set the header). Requests with an
//     Authorization header are not affected.
//
// A session ends at its expiry (12 h by default, never later than the
// token's own) or after SessionIdle (1 h) without a request; the cookie
// of an active session is re-sealed at most once a minute with the new
// time of its last request.

// Session cookie and header names.
const (
	SessionCookie = "aurum_session"
	CSRFCookie    = "aurum_csrf"
	CSRFHeader    = "X-Aurum-CSRF"
)

// sessionRefresh is how stale a cookie's last-request time may get before
// the cookie is re-sealed.
const sessionRefresh = time.Minute

// cookieSession is the sealed content of aurum_session.
type cookieSession struct {
	Secret  string `json:"s"` // the credential: bootstrap or API token, or login session secret
	Last    int64  `json:"l"` // Unix s of the session's last request
	Expires int64  `json:"x"` // Unix s
}

func (cs *cookieSession) expires() time.Time { return time.Unix(cs.Expires, 0).UTC() }

// csrfValue is the CSRF token of a session credential.
func csrfValue(secret string) string {
	h := sha256.Sum256([]byte("aurum-csrf\x00" + secret))
	return hex.EncodeToString(h[:])[:16]
}

// sessionAAD binds sealed cookies to their purpose and version.
const sessionAAD = "aurum-session-v1"

func (s *Server) sessionAEAD() (cipher.AEAD, error) {
	s.sessionOnce.Do(func() {
		key := s.svc.Access.SessionKey()
		if len(key) != 32 {
			s.sessionErr = errors.New("api: session key must be 32 bytes")
			return
		}
		b, err := aes.NewCipher(key)
		if err != nil {
			s.sessionErr = err
			return
		}
		s.sessionGCM, s.sessionErr = cipher.NewGCM(b)
	})
	return s.sessionGCM, s.sessionErr
}

func (s *Server) sealSession(cs *cookieSession) (string, error) { return s.seal(cs, sessionAAD) }

func hasSessionCookie(r *http.Request) bool {
	c, err := r.Cookie(SessionCookie)
	return err == nil && c.Value != ""
}

// openSessionCookie opens and checks the request's aurum_session cookie:
// sealed by this cluster, not expired, not idle.
func (s *Server) openSessionCookie(r *http.Request) (*cookieSession, error) {
	bad := &authError{msg: "session: invalid cookie; sign in again", cookie: true}
	c, err := r.Cookie(SessionCookie)
	if err != nil {
		return nil, bad
	}
	var cs cookieSession
	if !s.unseal(c.Value, sessionAAD, &cs) || cs.Secret == "" {
		return nil, bad
	}
	now := s.opts.Now()
	if !now.Before(cs.expires()) {
		return nil, &authError{msg: "session expired; sign in again", cookie: true}
	}
	if now.Sub(time.Unix(cs.Last, 0)) >= s.opts.SessionIdle {
		return nil, &authError{msg: "session idle for " + s.opts.SessionIdle.String() + "; sign in again", cookie: true}
	}
	return &cs, nil
}

// setSessionCookies sets aurum_session and aurum_csrf for cs.
func (s *Server) setSessionCookies(w http.ResponseWriter, r *http.Request, cs *cookieSession) error {
	v, err := s.sealSession(cs)
	if err != nil {
		return err
	}
	secure := r.TLS != nil || s.opts.SecureCookies
	exp := cs.expires()
	http.SetCookie(w, &http.Cookie{Name: SessionCookie, Value: v, Path: "/", Expires: exp, HttpOnly: true, Secure: secure,
		SameSite: http.SameSiteStrictMode})
	http.SetCookie(w, &http.Cookie{Name: CSRFCookie, Value: csrfValue(cs.Secret), Path: "/", Expires: exp, Secure: secure,
		SameSite: http.SameSiteStrictMode})
	return nil
}

// clearSessionCookies expires both cookies in the browser.
func clearSessionCookies(w http.ResponseWriter, r *http.Request) {
	for _, name := range []string{SessionCookie, CSRFCookie} {
		http.SetCookie(w, &http.Cookie{Name: name, Value: "", Path: "/", MaxAge: -1, HttpOnly: name == SessionCookie,
			Secure: r.TLS != nil, SameSite: http.SameSiteStrictMode})
	}
}

// refreshSession re-seals the cookie of an active session with the time of
// this request, at most once per sessionRefresh.
func (s *Server) refreshSession(w http.ResponseWriter, r *http.Request, cs *cookieSession) {
	now := s.opts.Now()
	if now.Sub(time.Unix(cs.Last, 0)) < sessionRefresh {
		return
	}
	next := *cs
	next.Last = now.Unix()
	if err := s.setSessionCookies(w, r, &next); err != nil {
		s.opts.Logger.Error("api: refresh session cookie", "err", err)
	}
}

// changes reports whether method changes state (and so needs the CSRF
// header when authenticated by cookie).
func changes(method string) bool {
	switch method {
	case http.MethodGet, http.MethodHead, http.MethodOptions:
		return false
	}
	return true
}

// csrfOK checks the X-Aurum-CSRF header of a state-changing request
// authenticated by the session cookie; when it fails it has answered 403.
func (s *Server) csrfOK(w http.ResponseWriter, r *http.Request, cs *cookieSession) bool {
	if !changes(r.Method) {
		return true
	}
	got := r.Header.Get(CSRFHeader)
	var msg string
	switch {
	case got == "":
		msg = "csrf: missing " + CSRFHeader + " header (send the aurum_csrf cookie's value with every change)"
	case !auth.Equal([]byte(got), []byte(csrfValue(cs.Secret))):
		msg = "csrf: " + CSRFHeader + " does not match the aurum_csrf cookie"
	default:
		return true
	}
	setAuditDetail(r, msg)
	writeError(w, http.StatusForbidden, CSRFHeader, msg)
	return false
}

// sessionInfo is the answer of POST and GET /v1/session.
type sessionInfo struct {
	Name    string    `json:"name"`
	Role    auth.Role `json:"role"`
	Kind    string    `json:"kind"` // bootstrap, token, session (user sign-in), sso
	Expires time.Time `json:"expires,omitzero"`
}

func (s *Server) handleCreateSession(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Token    string `json:"token"`
		Name     string `json:"name"`
		Password string `json:"password"`
		TOTP     string `json:"totp"`
	}
	if !decodeJSON(w, r, 4<<10, &req, false) {
		return
	}
	now := s.opts.Now()
	var p auth.Principal
	cs := &cookieSession{Last: now.Unix()}
	switch {
	case req.Token != "" && (req.Name != "" || req.Password != "" || req.TOTP != ""):
		writeError(w, http.StatusBadRequest, "token", "give either token, or name, password and totp, not both")
		return
	case req.Token != "":
		client := "client:" + clientAddr(r)
		if ok, wait := s.loginThrottle.Check(client); !ok {
			s.throttled.Inc()
			tooMany(w, wait, "too many failed sign-ins")
			return
		}
		var err error
		if p, err = s.secretPrincipal(req.Token); err != nil {
			var ae *authError
			if errors.As(err, &ae) && ae.unknown && s.catchingUp(w, r, "token") {
				return
			}
			s.loginThrottle.Fail(client)
			setAuditDetail(r, "sign-in with token: "+err.Error())
			w.Header().Set("WWW-Authenticate", `Bearer realm="aurum"`)
			writeError(w, http.StatusUnauthorized, "token", err.Error())
			return
		}
		cs.Secret, cs.Expires = req.Token, now.Add(s.opts.SessionTTL).Unix()
		if exp, ok := s.tokenExpiry(p); ok && exp.Unix() < cs.Expires {
			cs.Expires = exp.Unix()
		}
	default:
		sess, ok := s.login(w, r, req.Name, req.Password, req.TOTP, "totp")
		if !ok {
			return
		}
		p = auth.Principal{Name: sess.Name, Role: sess.Role, Kind: auth.KindSession, TokenID: sess.ID}
		cs.Secret, cs.Expires = sess.Token, sess.Expires.Unix()
	}
	if err := s.setSessionCookies(w, r, cs); err != nil {
		s.opts.Logger.Error("api: session cookie", "err", err)
		writeError(w, http.StatusInternalServerError, "", "could not seal the session cookie")
		return
	}
	setPrincipal(r, p.Actor(), string(p.Role))
	s.opts.Logger.Info("api: signed in", "actor", p.Actor(), "role", p.Role, "client", clientAddr(r))
	writeJSON(w, http.StatusOK, sessionInfo{Name: p.Name, Role: p.Role, Kind: p.Kind, Expires: cs.expires()})
}

// tokenExpiry is the expiry of an API token principal, if it has one.
func (s *Server) tokenExpiry(p auth.Principal) (time.Time, bool) {
	if p.Kind != auth.KindToken {
		return time.Time{}, false
	}
	for _, t := range s.svc.Access.Tokens() {
		if t.ID == p.TokenID {
			return t.Expires, !t.Expires.IsZero()
		}
	}
	return time.Time{}, false
}

func (s *Server) handleGetSession(w http.ResponseWriter, r *http.Request) {
	p, ok := auth.FromContext(r.Context())
	if !ok {
		writeError(w, http.StatusUnauthorized, "Authorization", "not signed in")
		return
	}
	info := sessionInfo{Name: p.Name, Role: p.Role, Kind: p.Kind}
	if cs, err := s.openSessionCookie(r); err == nil && r.Header.Get("Authorization") == "" {
		info.Expires = cs.expires()
	}
	writeJSON(w, http.StatusOK, info)
}

// handleDeleteSession signs out: it revokes the login session (cookie or
// bearer) on every node and clears the cookies. An API token is not
// revoked by signing out (revoke it with DELETE /v1/tokens/{id}).
func (s *Server) handleDeleteSession(w http.ResponseWriter, r *http.Request) {
	p, _ := auth.FromContext(r.Context())
	if (p.Kind == auth.KindSession || p.Kind == auth.KindSSO) && p.TokenID != "" {
		ctx, cancel := s.requestContext(r)
		defer cancel()
		if err := s.svc.Access.RevokeToken(ctx, p.TokenID); err != nil && !errors.Is(err, base.ErrNotFound) {
			s.opts.Logger.Error("api: sign out", "err", err)
			writeError(w, http.StatusServiceUnavailable, "", "could not end the session; retry")
			return
		}
	}
	clearSessionCookies(w, r)
	s.opts.Logger.Info("api: signed out", "actor", p.Actor())
	w.WriteHeader(http.StatusNoContent)
}

// SSO is single sign-on with OpenID Connect (sso.Client).
type SSO interface {
	Issuer() string
	RedirectURL() string // "" : derived from the request
	AuthURL(ctx context.Context, f sso.Flow) (string, error)
	Exchange(ctx context.Context, f sso.Flow, code string) (sso.Identity, error)
}

// The OpenID Connect sign-in keeps its state, nonce and PKCE verifier in a
// sealed cookie of its own (any node can finish a sign-in another began),
// SameSite=Lax because the provider's redirect back is a cross-site
// navigation, scoped to the callback's path and valid for 10 minutes.
const (
	oidcCookie = "aurum_oidc"
	oidcPath   = "/v1/session/oidc/"
	oidcTTL    = 10 * time.Minute
	oidcAAD    = "aurum-oidc-v1"
)

type oidcState struct {
	Flow    sso.Flow `json:"f"`
	Expires int64    `json:"x"`
}

func (s *Server) seal(v any, aad string) (string, error) {
	gcm, err := s.sessionAEAD()
	if err != nil {
		return "", err
	}
	plain, err := json.Marshal(v)
	if err != nil {
		return "", err
	}
	nonce := make([]byte, gcm.NonceSize(), gcm.NonceSize()+len(plain)+gcm.Overhead())
	if _, err := rand.Read(nonce); err != nil {
		return "", err
	}
	return "v1." + base64.RawURLEncoding.EncodeToString(gcm.Seal(nonce, nonce, plain, []byte(aad))), nil
}

// unseal opens what seal made into v.
func (s *Server) unseal(value, aad string, v any) bool {
	raw, ok := strings.CutPrefix(value, "v1.")
	if !ok {
		return false
	}
	sealed, err := base64.RawURLEncoding.DecodeString(raw)
	gcm, gerr := s.sessionAEAD()
	if err != nil || gerr != nil || len(sealed) < gcm.NonceSize() {
		return false
	}
	plain, err := gcm.Open(nil, sealed[:gcm.NonceSize()], sealed[gcm.NonceSize():], []byte(aad))
	return err == nil && json.Unmarshal(plain, v) == nil
}

// handleProviders tells the console which sign-ins this server offers.
func (s *Server) handleProviders(w http.ResponseWriter, r *http.Request) {
	out := map[string]any{"token": true, "password": true, "oidc": s.opts.SSO != nil}
	if s.opts.SSO != nil {
		out["oidc_login_url"] = oidcPath + "login"
		out["oidc_issuer"] = s.opts.SSO.Issuer()
	}
	writeJSON(w, http.StatusOK, out)
}

// callbackURL is the OpenID Connect redirect URL: configured, or this
// request's origin + the callback path.
func (s *Server) callbackURL(r *http.Request) string {
	if u := s.opts.SSO.RedirectURL(); u != "" {
		return u
	}
	scheme := "http"
	if r.TLS != nil || s.opts.SecureCookies {
		scheme = "https"
	}
	return scheme + "://" + r.Host + oidcPath + "callback"
}

// handleOIDCLogin starts a sign-in at the provider: fresh state, nonce and
// PKCE verifier in the sealed aurum_oidc cookie, then a redirect.
func (s *Server) handleOIDCLogin(w http.ResponseWriter, r *http.Request) {
	f := sso.NewFlow(s.callbackURL(r))
	ctx, cancel := s.requestContext(r)
	defer cancel()
	u, err := s.opts.SSO.AuthURL(ctx, f)
	if err != nil {
		s.opts.Logger.Error("api: oidc login", "err", err)
		if wantsPage(r) {
			http.Redirect(w, r, ssoErrorURL(ssoErrUnavailable), http.StatusSeeOther)
			return
		}
		writeError(w, http.StatusBadGateway, "", "single sign-on provider unavailable: "+err.Error())
		return
	}
	exp := s.opts.Now().Add(oidcTTL)
	v, err := s.seal(oidcState{Flow: f, Expires: exp.Unix()}, oidcAAD)
	if err != nil {
		writeError(w, http.StatusInternalServerError, "", "could not seal the sign-in state")
		return
	}
	http.SetCookie(w, &http.Cookie{Name: oidcCookie, Value: v, Path: oidcPath, Expires: exp, HttpOnly: true,
		Secure: r.TLS != nil || s.opts.SecureCookies, SameSite: http.SameSiteLaxMode})
	http.Redirect(w, r, u, http.StatusFound)
}

// The reasons of a failed single sign-on the console's sign-in page names
// (GET /?sso_error=REASON); the page has a message for each.
const (
	ssoErrNoRole      = "no_role"     // the role claim maps to no role
	ssoErrRefused     = "refused"     // the provider answered an error
	ssoErrExpired     = "expired"     // no sign-in in progress in this browser, or over 10 minutes
	ssoErrState       = "state"       // the state does not match this browser's sign-in
	ssoErrFailed      = "failed"      // no code, or the exchange or the ID token failed
	ssoErrUnavailable = "unavailable" // the provider or the session store is unavailable
)

// ssoErrorURL is the console's sign-in page showing reason.
func ssoErrorURL(reason string) string { return "/?sso_error=" + reason }

// wantsPage reports whether r is a browser's navigation (it asks for
// HTML), which gets a page rather than a JSON error.
func wantsPage(r *http.Request) bool {
	return strings.Contains(r.Header.Get("Accept"), "text/html")
}

// handleOIDCCallback finishes a sign-in: checks the state against the
// cookie, exchanges the code (PKCE), verifies the ID token and its nonce,
// maps the role claim and opens a single sign-on session (the same
// cookies as POST /v1/session), then redirects to the console. No role, or
// an unknown one: 403 and no session (a browser is sent to the console's
// sign-in page, which says so; the audit entry is "denied" either way).
func (s *Server) handleOIDCCallback(w http.ResponseWriter, r *http.Request) {
	http.SetCookie(w, &http.Cookie{Name: oidcCookie, Value: "", Path: oidcPath, MaxAge: -1, HttpOnly: true,
		Secure: r.TLS != nil || s.opts.SecureCookies, SameSite: http.SameSiteLaxMode})
	q := r.URL.Query()
	// fail answers a failed sign-in: a browser (a navigation asking for
	// HTML) is sent back to the console's sign-in page, which shows what
	// went wrong (only a code in the URL, never the message); any other
	// client gets the JSON error. The audit entry has the failure's status
	// either way.
	fail := func(code int, field, msg, reason string) {
		setAuditDetail(r, msg)
		if wantsPage(r) {
			setAuditStatus(r, code)
			http.Redirect(w, r, ssoErrorURL(reason), http.StatusSeeOther)
			return
		}
		writeError(w, code, field, msg)
	}
	if e := q.Get("error"); e != "" {
		fail(http.StatusForbidden, "error", "sso: the provider refused the sign-in: "+e+" "+q.Get("error_description"), ssoErrRefused)
		return
	}
	var st oidcState
	c, err := r.Cookie(oidcCookie)
	if err != nil || !s.unseal(c.Value, oidcAAD, &st) || s.opts.Now().Unix() >= st.Expires {
		fail(http.StatusBadRequest, "state", "sso: no sign-in in progress in this browser (or it took over 10 minutes); start again at "+oidcPath+"login", ssoErrExpired)
		return
	}
	if got := q.Get("state"); got == "" || !auth.Equal([]byte(got), []byte(st.Flow.State)) {
		fail(http.StatusBadRequest, "state", "sso: state does not match this browser's sign-in", ssoErrState)
		return
	}
	code := q.Get("code")
	if code == "" {
		fail(http.StatusBadRequest, "code", "sso: code required", ssoErrFailed)
		return
	}
	ctx, cancel := s.requestContext(r)
	defer cancel()
	id, err := s.opts.SSO.Exchange(ctx, st.Flow, code)
	if errors.Is(err, sso.ErrNoRole) {
		setPrincipal(r, auth.KindSSO+":"+id.Name, "")
		s.opts.Logger.Warn("api: sso sign-in without a role", "name", id.Name, "err", err)
		fail(http.StatusForbidden, "role", err.Error()+": no access", ssoErrNoRole)
		return
	}
	if err != nil {
		s.opts.Logger.Warn("api: sso sign-in", "err", err)
		fail(http.StatusUnauthorized, "code", err.Error(), ssoErrFailed)
		return
	}
	sess, err := s.svc.Access.OpenSSOSession(ctx, id.Name, id.Role, s.opts.Now().Add(s.opts.SessionTTL))
	if err != nil {
		s.opts.Logger.Error("api: sso session", "err", err)
		fail(http.StatusServiceUnavailable, "", "could not open the session; retry", ssoErrUnavailable)
		return
	}
	cs := &cookieSession{Secret: sess.Token, Last: s.opts.Now().Unix(), Expires: sess.Expires.Unix()}
	if err := s.setSessionCookies(w, r, cs); err != nil {
		writeError(w, http.StatusInternalServerError, "", "could not seal the session cookie")
		return
	}
	p := auth.Principal{Name: sess.Name, Role: sess.Role, Kind: auth.KindSSO}
	setPrincipal(r, p.Actor(), string(p.Role))
	s.opts.Logger.Info("api: signed in", "actor", p.Actor(), "role", p.Role, "client", clientAddr(r))
	http.Redirect(w, r, "/", http.StatusSeeOther)
}
