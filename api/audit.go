package api

import (
	"context"
	"errors"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/aurumcdp/aurum/engine/audit"
	"github.com/aurumcdp/aurum/engine/base"
)

// auditTimeout bounds the append of one audit entry. It runs on a context of
// its own, so a client that disconnects cannot skip its entry.
const auditTimeout = 10 * time.Second

// auditCtxKey keys the request's *auditInfo in its context.
type auditCtxKey struct{}

// auditInfo is what the auth wrappers learn about a request for its audit
// entry. route puts one in every audited request's context; wrappers that
// derive new requests share the same pointer.
type auditInfo struct {
	actor, role string
	detail      string            // why authentication failed; never a secret
	status      int               // the outcome to record when the response's status is not it (a redirect that reports a failure); 0: the response's
	object      map[string]string // named by the body (e.g. a created source's name)
}

// setPrincipal records who made the request (called by the auth wrapper once
// the credentials are checked).
func setPrincipal(r *http.Request, name, role string) {
	if ai, ok := r.Context().Value(auditCtxKey{}).(*auditInfo); ok {
		ai.actor, ai.role = name, role
	}
}

// setAuditDetail records a short, secret-free reason for the audit entry
// (e.g. why authentication failed).
func setAuditDetail(r *http.Request, detail string) {
	if ai, ok := r.Context().Value(auditCtxKey{}).(*auditInfo); ok {
		ai.detail = detail
	}
}

// setAuditStatus records code as the request's outcome in its audit entry
// whatever status the response has: a failure answered with a redirect to
// the console (single sign-on) is still a failure.
func setAuditStatus(r *http.Request, code int) {
	if ai, ok := r.Context().Value(auditCtxKey{}).(*auditInfo); ok {
		ai.status = code
	}
}

// setAuditObject names the object of an action that the path does not name
// (a create names it in the body). Never pass personal data.
func setAuditObject(r *http.Request, key, value string) {
	if ai, ok := r.Context().Value(auditCtxKey{}).(*auditInfo); ok {
		if ai.object == nil {
			ai.object = map[string]string{}
		}
		ai.object[key] = value
	}
}

// principalFrom returns the actor and role of the request: what the auth
// wrapper recorded, ("", "") when nobody authenticated. It is the one place
// that knows where the principal lives.
func principalFrom(r *http.Request) (name, role string) {
	if ai, ok := r.Context().Value(auditCtxKey{}).(*auditInfo); ok {
		return ai.actor, ai.role
	}
	return "", ""
}

// audited reports whether the route is a management action: everything but
// the tracking API (write-key routes), CORS pre-flights, /healthz,
// /metrics and the API description.
func audited(pattern string) bool {
	method, path, _ := strings.Cut(pattern, " ")
	if method == http.MethodOptions || path == "/healthz" || path == "/metrics" || path == "/v1/openapi.json" ||
		path == "/v1/session/providers" || path == "/v1/session/oidc/login" {
		return false
	}
	return !trackingPath(path)
}

// trackingPath reports whether path is one of the tracking API's routes.
func trackingPath(path string) bool {
	switch path {
	case "/v1/track", "/v1/identify", "/v1/page", "/v1/screen", "/v1/group", "/v1/alias", "/v1/batch":
		return true
	}
	return false
}

// pathWildcards returns the names of the pattern's {wildcards}.
func pathWildcards(pattern string) []string {
	var names []string
	for rest := pattern; ; {
		i := strings.IndexByte(rest, '{')
		if i < 0 {
			return names
		}
		j := strings.IndexByte(rest[i:], '}')
		if j < 0 {
			return names
		}
		name := strings.TrimSuffix(rest[i+1:i+j], "...")
		if name != "$" {
			names = append(names, name)
		}
		rest = rest[i+j+1:]
	}
}

// auditResult maps an HTTP status to an audit result.
func auditResult(code int) string {
	switch {
	case code == http.StatusUnauthorized:
		return audit.AuditUnauthenticated
	case code == http.StatusForbidden:
		return audit.AuditDenied
	case code >= 400:
		return audit.AuditError
	default:
		return audit.AuditOK
	}
}

// remoteIP is the client's IP from RemoteAddr (proxies' headers are not
// trusted).
func remoteIP(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

// audit appends the entry of one management request. A profile reference
// ({ref}) is recorded as its keyed hash, never in plaintext. Failures are
// logged and counted by the engine; the response is already decided.
func (s *Server) audit(r *http.Request, pattern string, wildcards []string, code int) {
	actor, role := principalFrom(r)
	a := audit.AuditEntry{Actor: actor, Role: role, Action: pattern, Remote: remoteIP(r),
		Status: code, Result: auditResult(code)}
	if ai, ok := r.Context().Value(auditCtxKey{}).(*auditInfo); ok {
		if ai.status != 0 {
			a.Status, a.Result = ai.status, auditResult(ai.status)
		}
		a.Detail = ai.detail
		if len(ai.object) > 0 {
			a.Object = ai.object
		}
	}
	for _, w := range wildcards {
		v := r.PathValue(w)
		if w == "ref" {
			v = s.svc.Audit.RefHash(v)
		}
		if a.Object == nil {
			a.Object = make(map[string]string, len(wildcards))
		}
		a.Object[w] = v
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), auditTimeout)
	defer cancel()
	_ = s.svc.Audit.Audit(ctx, a) // logged and counted by the engine
}

// handleAudit lists audit entries:
//
//	GET /v1/audit?since=<RFC 3339 time | cursor>&limit=<1..1000>
//
// It answers {"entries": [...], "next": "<cursor>"}; since=<next> returns
// the entries written after the page.
func (s *Server) handleAudit(w http.ResponseWriter, r *http.Request) {
	var q audit.AuditQuery
	if v := r.URL.Query().Get("since"); v != "" {
		if n, err := strconv.ParseUint(v, 10, 64); err == nil && n > 0 {
			q.Cursor = n
		} else if t, err := time.Parse(time.RFC3339Nano, v); err == nil {
			q.Since = t
		} else {
			writeError(w, http.StatusBadRequest, "since", "want an RFC 3339 time (2024-05-01T00:00:00Z) or a cursor (a positive integer from next)")
			return
		}
	}
	switch v := r.URL.Query().Get("newest"); v {
	case "", "false":
	case "true":
		q.Newest = true
	default:
		writeError(w, http.StatusBadRequest, "newest", "want true or false")
		return
	}
	q.Limit = 100
	if v := r.URL.Query().Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > audit.MaxAuditPage {
			writeError(w, http.StatusBadRequest, "limit", "must be an integer in [1, 1000]")
			return
		}
		q.Limit = n
	}
	ctx, cancel := s.requestContext(r)
	defer cancel()
	entries, next, err := s.svc.Audit.AuditLog(ctx, q)
	switch {
	case errors.Is(err, base.ErrInvalid):
		writeError(w, http.StatusBadRequest, "limit", err.Error())
		return
	case err != nil:
		s.opts.Logger.Error("api: audit log", "err", err)
		writeError(w, http.StatusServiceUnavailable, "", "could not read the audit log; retry")
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"entries": entries, "next": strconv.FormatUint(next, 10)})
}
