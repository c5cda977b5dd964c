package api

import (
	"errors"
	"fmt"
	"math"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/aurumcdp/aurum/auth"
	"github.com/aurumcdp/aurum/engine/access"
	"github.com/aurumcdp/aurum/engine/base"
)

// parseExpires reads a token's "expires": empty (never), an RFC 3339 time,
// a Go duration ("720h") or a number of days ("30d"), relative to now.
func parseExpires(s string, now time.Time) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	if t, err := time.Parse(time.RFC3339, s); err == nil {
		return t, nil
	}
	if d, ok := strings.CutSuffix(s, "d"); ok {
		n, err := strconv.Atoi(d)
		if err == nil && n > 0 && n <= 36500 {
			return now.Add(time.Duration(n) * 24 * time.Hour), nil
		}
	}
	d, err := time.ParseDuration(s)
	if err != nil || d <= 0 {
		return time.Time{}, errors.New(`want an RFC 3339 time, a positive duration ("720h") or days ("30d")`)
	}
	return now.Add(d), nil
}

// tokenCreated is the answer of POST /v1/tokens: the only time the secret
// is shown.
type tokenCreated struct {
	access.TokenInfo
	Token string `json:"token"`
}

func (s *Server) handleCreateToken(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Name    string `json:"name"`
		Role    string `json:"role"`
		Expires string `json:"expires"`
	}
	if !decodeJSON(w, r, 4<<10, &req, false) {
		return
	}
	role, ok := nameAndRole(w, req.Name, req.Role)
	if !ok {
		return
	}
	exp, err := parseExpires(req.Expires, s.opts.Now())
	if err != nil {
		writeError(w, http.StatusBadRequest, "expires", err.Error())
		return
	}
	ctx, cancel := s.requestContext(r)
	defer cancel()
	secret, info, err := s.svc.Access.CreateToken(ctx, req.Name, role, exp)
	switch {
	case errors.Is(err, base.ErrInvalid):
		field := "name"
		if strings.Contains(err.Error(), "expires") {
			field = "expires"
		}
		writeError(w, http.StatusBadRequest, field, err.Error())
	case err != nil:
		s.opts.Logger.Error("api: create token", "err", err)
		writeError(w, http.StatusServiceUnavailable, "", "could not create the token; retry")
	default:
		s.opts.Logger.Info("api: token created", "id", info.ID, "name", info.Name, "role", info.Role, "by", who(r))
		writeJSON(w, http.StatusCreated, tokenCreated{TokenInfo: info, Token: secret})
	}
}

// who names the request's principal for logs (never a secret).
func who(r *http.Request) string {
	p, ok := auth.FromContext(r.Context())
	if !ok {
		return ""
	}
	return p.Kind + ":" + p.Name
}

func (s *Server) handleListTokens(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, map[string]any{"tokens": s.svc.Access.Tokens()})
}

func (s *Server) handleRevokeToken(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := s.requestContext(r)
	defer cancel()
	id := r.PathValue("id")
	switch err := s.svc.Access.RevokeToken(ctx, id); {
	case errors.Is(err, base.ErrNotFound):
		writeError(w, http.StatusNotFound, "id", err.Error())
	case err != nil:
		s.opts.Logger.Error("api: revoke token", "err", err)
		writeError(w, http.StatusServiceUnavailable, "", "could not revoke the token; retry")
	default:
		s.opts.Logger.Info("api: token revoked", "id", id, "by", who(r))
		w.WriteHeader(http.StatusNoContent)
	}
}

func (s *Server) handleCreateUser(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Name     string `json:"name"`
		Role     string `json:"role"`
		Password string `json:"password"`
	}
	if !decodeJSON(w, r, 4<<10, &req, false) {
		return
	}
	role, ok := nameAndRole(w, req.Name, req.Role)
	if !ok {
		return
	}
	if err := auth.CheckPassword(req.Password); err != nil {
		writeError(w, http.StatusBadRequest, "password", err.Error())
		return
	}
	ctx, cancel := s.requestContext(r)
	defer cancel()
	uri, err := s.svc.Access.CreateUser(ctx, req.Name, role, req.Password)
	switch {
	case errors.Is(err, access.ErrExists):
		writeError(w, http.StatusConflict, "name", "a user with this name exists")
	case errors.Is(err, base.ErrInvalid):
		writeError(w, http.StatusBadRequest, "name", err.Error())
	case err != nil:
		s.opts.Logger.Error("api: create user", "err", err)
		writeError(w, http.StatusServiceUnavailable, "", "could not create the user; retry")
	default:
		s.opts.Logger.Info("api: user created", "name", req.Name, "role", role, "by", who(r))
		writeJSON(w, http.StatusCreated, map[string]any{"name": req.Name, "role": role, "otpauth_uri": uri})
	}
}

func (s *Server) handleListUsers(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, map[string]any{"users": s.svc.Access.Users()})
}

func (s *Server) handleDeleteUser(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := s.requestContext(r)
	defer cancel()
	name := r.PathValue("name")
	switch err := s.svc.Access.DeleteUser(ctx, name); {
	case errors.Is(err, base.ErrNotFound):
		writeError(w, http.StatusNotFound, "name", err.Error())
	case err != nil:
		s.opts.Logger.Error("api: delete user", "err", err)
		writeError(w, http.StatusServiceUnavailable, "", "could not delete the user; retry")
	default:
		s.opts.Logger.Info("api: user deleted", "name", name, "by", who(r))
		w.WriteHeader(http.StatusNoContent)
	}
}

// clientAddr is the address failed logins are counted against: the
// connection's peer (a proxy's X-Forwarded-For is not trusted).
func clientAddr(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

// tooMany answers 429 with Retry-After in whole seconds (at least 1).
func tooMany(w http.ResponseWriter, wait time.Duration, msg string) {
	secs := max(1, int(math.Ceil(wait.Seconds())))
	w.Header().Set("Retry-After", strconv.Itoa(secs))
	writeError(w, http.StatusTooManyRequests, "", fmt.Sprintf("%s; retry after %d s", msg, secs))
}

func (s *Server) handleLogin(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Name     string `json:"name"`
		Password string `json:"password"`
		Code     string `json:"code"`
	}
	if !decodeJSON(w, r, 4<<10, &req, false) {
		return
	}
	if sess, ok := s.login(w, r, req.Name, req.Password, req.Code, "code"); ok {
		writeJSON(w, http.StatusOK, sess)
	}
}

// login checks a user's name, password and TOTP code (the field codeField)
// and opens a session, throttling failures per client address and per
// name; on failure it has answered (400, 401, 429 or 503). POST /v1/login
// and POST /v1/session sign in through it.
func (s *Server) login(w http.ResponseWriter, r *http.Request, name, password, code, codeField string) (access.Session, bool) {
	for _, f := range []struct{ field, v string }{{"name", name}, {"password", password}, {codeField, code}} {
		if f.v == "" {
			writeError(w, http.StatusBadRequest, f.field, "required")
			return access.Session{}, false
		}
	}
	client := clientAddr(r)
	keys := []string{"client:" + client, "name:" + name}
	for _, k := range keys {
		if ok, wait := s.loginThrottle.Check(k); !ok {
			s.throttled.Inc()
			s.opts.Logger.Warn("api: login throttled", "name", name, "client", client)
			tooMany(w, wait, "too many failed logins")
			return access.Session{}, false
		}
	}
	ctx, cancel := s.requestContext(r)
	defer cancel()
	sess, err := s.svc.Access.Login(ctx, name, password, code)
	switch {
	case errors.Is(err, access.ErrUnauthenticated):
		for _, k := range keys {
			s.loginThrottle.Fail(k)
		}
		s.opts.Logger.Warn("api: login failed", "name", name, "client", client)
		w.Header().Set("WWW-Authenticate", `Bearer realm="aurum"`)
		writeError(w, http.StatusUnauthorized, "", "wrong name, password or code")
	case err != nil:
		s.opts.Logger.Error("api: login", "err", err)
		writeError(w, http.StatusServiceUnavailable, "", "could not log in; retry")
	default:
		s.loginThrottle.Succeed("name:" + name)
		setPrincipal(r, auth.Principal{Name: sess.Name, Role: sess.Role, Kind: auth.KindSession}.Actor(), string(sess.Role))
		s.opts.Logger.Info("api: login", "name", name, "role", sess.Role, "session", sess.ID, "client", client)
		return sess, true
	}
	return access.Session{}, false
}

// allowIngest applies the per-source ingest rate limit to n events; when
// refused it has answered 429 with Retry-After.
func (s *Server) allowIngest(w http.ResponseWriter, src string, n int) bool {
	if s.ingestLimit == nil || n == 0 {
		return true
	}
	ok, wait := s.ingestLimit.AllowN(src, float64(n))
	if !ok {
		s.limited.WithLabelValues(src).Add(float64(n))
		tooMany(w, wait, fmt.Sprintf("ingest rate limit of source %q (%g events/s) exceeded", src, s.opts.IngestRate))
	}
	return ok
}

// nameAndRole checks the name and role of a token or user to create; on
// failure it has answered 400 naming the field.
func nameAndRole(w http.ResponseWriter, name, role string) (auth.Role, bool) {
	if name == "" {
		writeError(w, http.StatusBadRequest, "name", "required")
		return "", false
	}
	r, err := auth.ParseRole(role)
	if err != nil {
		writeError(w, http.StatusBadRequest, "role", err.Error())
		return "", false
	}
	return r, true
}
