package api

import (
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"

	"github.com/aurumcdp/aurum/auth"
	"github.com/aurumcdp/aurum/engine/access"
	"github.com/aurumcdp/aurum/event"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Who may call a route.
const (
	AccessPublic   = "public"    // anyone, no credential
	AccessWriteKey = "write_key" // a source write key (HTTP Basic user name or body writeKey)
	AccessRoles    = "roles"     // a bearer token (bootstrap, API token or session) of one of Roles
)

// RouteInfo describes one route of the API and who may call it.
type RouteInfo struct {
	Pattern string      `json:"pattern"` // "METHOD /path" as registered
	Access  string      `json:"access"`  // AccessPublic, AccessWriteKey or AccessRoles
	Roles   []auth.Role `json:"roles"`   // with AccessRoles: the roles allowed besides admin
}

type routeDef struct {
	RouteInfo
	h http.HandlerFunc
}

// Role sets of the route table (admin may call every route).
var (
	rolesAdmin    = []auth.Role{}                                                   // admin only
	rolesEdit     = []auth.Role{auth.RoleEditor}                                    // change sources, audiences, destinations
	rolesRead     = []auth.Role{auth.RoleEditor, auth.RoleViewer}                   // read configuration and operations
	rolesProfiles = []auth.Role{auth.RoleEditor, auth.RoleViewer, auth.RolePrivacy} // read personal data
	rolesPrivacy  = []auth.Role{auth.RolePrivacy}                                   // erasure, export, consent
	// rolesRectify may undo a wrong merge (a split): an identity
	// correction like a review decision (editor), and a rectification of
	// personal data (GDPR art. 16: one person's data shown under another's
	// identifiers), the privacy role's duty.
	rolesRectify = []auth.Role{auth.RoleEditor, auth.RolePrivacy}
	rolesAny     = []auth.Role{auth.RoleEditor, auth.RoleViewer, auth.RolePrivacy} // every signed-in principal
)

// routeTable is the ONE place that states every route and who may call it.
// New registers exactly these; there is no other way to add a route.
func (s *Server) routeTable() []routeDef {
	pub := func(p string, h http.HandlerFunc) routeDef { return routeDef{RouteInfo{p, AccessPublic, nil}, h} }
	wk := func(p string, h http.HandlerFunc) routeDef { return routeDef{RouteInfo{p, AccessWriteKey, nil}, h} }
	role := func(p string, roles []auth.Role, h http.HandlerFunc) routeDef {
		return routeDef{RouteInfo{p, AccessRoles, roles}, h}
	}
	var t []routeDef
	for _, k := range []event.Kind{event.Track, event.Identify, event.Page, event.Screen, event.Group, event.Alias} {
		t = append(t, wk("POST /v1/"+string(k), s.cors(s.handleSingle(k))), pub("OPTIONS /v1/"+string(k), s.cors(nil)))
	}
	metrics := promhttp.HandlerFor(s.svc.Node.Registry(), promhttp.HandlerOpts{}).ServeHTTP
	metricsRoute := role("GET /metrics", rolesRead, metrics)
	if s.opts.PublicMetrics {
		metricsRoute = pub("GET /metrics", metrics)
	}
	t = append(t,
		wk("POST /v1/batch", s.cors(s.handleBatch)),
		pub("OPTIONS /v1/batch", s.cors(nil)),
		role("POST /v1/import/{source}", rolesEdit, s.handleImport),
		role("POST /v1/sources", rolesEdit, s.handleCreateSource),
		role("GET /v1/sources", rolesRead, s.handleListSources),
		role("DELETE /v1/sources/{name}", rolesEdit, s.handleDeleteSource),
		role("POST /v1/sources/{name}/rotate-key", rolesEdit, s.handleRotateSourceKey),
		role("GET /v1/profiles/{ref}", rolesProfiles, s.handleProfile),
		role("GET /v1/profiles/{ref}/events", rolesProfiles, s.handleEvents),
		role("GET /v1/profiles/{ref}/audience-history", rolesProfiles, s.handleAudienceHistory),
		role("GET /v1/profiles/{ref}/export", rolesPrivacy, s.handleProfileExport),
		role("GET /v1/profiles/{ref}/identity", rolesProfiles, s.handleProfileIdentity),
		role("POST /v1/profiles/{ref}/split", rolesRectify, s.handleSplitProfile),
		role("POST /v1/identity/model", rolesEdit, s.handleTrainIdentity),
		role("GET /v1/identity/model", rolesRead, s.handleIdentityModel),
		role("GET /v1/identity/reviews", rolesRead, s.handleListReviews),
		role("POST /v1/identity/reviews/{id}", rolesEdit, s.handleDecideReview),
		role("PUT /v1/profiles/{ref}/consent", rolesPrivacy, s.handleSetConsent),
		role("POST /v1/privacy/erasures", rolesPrivacy, s.handleCreateErasure),
		role("GET /v1/privacy/erasures", rolesPrivacy, s.handleListErasures),
		role("GET /v1/privacy/erasures/{id}", rolesPrivacy, s.handleGetErasure),
		role("GET /v1/audit", rolesAdmin, s.handleAudit),
		role("GET /v1/deadletters", rolesRead, s.handleDeadLetters),
		role("POST /v1/replay", rolesAdmin, s.handleStartReplay),
		role("GET /v1/replay", rolesRead, s.handleReplayStatus),
		role("POST /v1/snapshots", rolesAdmin, s.handleCreateSnapshot),
		role("GET /v1/snapshots", rolesRead, s.handleListSnapshots),
		role("GET /v1/digest", rolesRead, s.handleDigest),
		role("POST /v1/exports", rolesAdmin, s.handleRunExport),
		role("GET /v1/exports", rolesRead, s.handleListExports),
		role("GET /v1/exports/schedule", rolesRead, s.handleExportSchedule),
		role("PUT /v1/exports/schedule", rolesAdmin, s.handleSetExportSchedule),
		role("GET /v1/stats/history", rolesRead, s.handleStatsHistory),
		role("GET /v1/cluster", rolesRead, s.handleClusterStatus),
		role("POST /v1/cluster/nodes", rolesAdmin, s.handleClusterAdd),
		role("DELETE /v1/cluster/nodes/{name}", rolesAdmin, s.handleClusterRemove),
		role("POST /v1/destinations", rolesEdit, s.handleCreateDestination),
		role("GET /v1/destinations", rolesRead, s.handleListDestinations),
		role("GET /v1/destinations/{name}", rolesRead, s.handleGetDestination),
		role("DELETE /v1/destinations/{name}", rolesEdit, s.handleDeleteDestination),
		role("POST /v1/audiences", rolesEdit, s.handleCreateAudience),
		role("POST /v1/audiences/preview", rolesEdit, s.handlePreviewAudience),
		role("POST /v1/audiences/suggest", rolesRead, s.handleSuggestAudiences),
		role("GET /v1/audiences", rolesRead, s.handleListAudiences),
		role("GET /v1/audiences/{name}", rolesRead, s.handleGetAudience),
		role("PUT /v1/audiences/{name}", rolesEdit, s.handleReplaceAudience),
		role("DELETE /v1/audiences/{name}", rolesEdit, s.handleDeleteAudience),
		role("GET /v1/audiences/{name}/members", rolesRead, s.handleAudienceMembers),
		role("GET /v1/audiences/{name}/export", rolesRead, s.handleAudienceExport),
		role("POST /v1/models", rolesEdit, s.handleFitModel),
		role("GET /v1/models", rolesRead, s.handleListModels),
		role("GET /v1/models/{name}", rolesRead, s.handleGetModel),
		role("DELETE /v1/models/{name}", rolesEdit, s.handleDeleteModel),
		role("GET /v1/models/{name}/evaluation", rolesRead, s.handleEvaluateModel),
		role("POST /v1/tokens", rolesAdmin, s.handleCreateToken),
		role("GET /v1/tokens", rolesAdmin, s.handleListTokens),
		role("DELETE /v1/tokens/{id}", rolesAdmin, s.handleRevokeToken),
		role("POST /v1/users", rolesAdmin, s.handleCreateUser),
		role("GET /v1/users", rolesAdmin, s.handleListUsers),
		role("DELETE /v1/users/{name}", rolesAdmin, s.handleDeleteUser),
		pub("POST /v1/login", s.handleLogin),
		pub("POST /v1/session", s.handleCreateSession),
		role("GET /v1/session", rolesAny, s.handleGetSession),
		role("DELETE /v1/session", rolesAny, s.handleDeleteSession),
		pub("GET /v1/session/providers", s.handleProviders),
		pub("GET /healthz", s.handleHealth),
		pub("GET /v1/openapi.json", s.handleOpenAPI),
		metricsRoute,
	)
	if s.opts.SSO != nil {
		t = append(t,
			pub("GET /v1/session/oidc/login", s.handleOIDCLogin),
			pub("GET /v1/session/oidc/callback", s.handleOIDCCallback))
	}
	return t
}

// Routes lists every route with who may call it, in registration order.
func (s *Server) Routes() []RouteInfo {
	out := make([]RouteInfo, len(s.routes))
	for i, r := range s.routes {
		out[i] = r.RouteInfo
		out[i].Roles = slices.Clone(r.Roles)
	}
	return out
}

// guard wraps a route's handler with its access check. A management route
// needs "Authorization: Bearer <token>": the bootstrap admin token, an API
// token or a session. Missing, unknown, revoked or expired tokens get 401
// with WWW-Authenticate; a valid token of a role the route does not allow
// gets 403 naming the roles that may. The principal goes on the request's
// context (auth.FromContext).
func (s *Server) guard(rd routeDef) http.HandlerFunc {
	if rd.Access != AccessRoles {
		return rd.h // public; write-key routes authenticate the key themselves
	}
	need := append([]string{string(auth.RoleAdmin)}, roleNames(rd.Roles)...)
	return func(w http.ResponseWriter, r *http.Request) {
		p, cs, ok := s.authenticate(w, r)
		if !ok {
			return
		}
		setPrincipal(r, p.Actor(), string(p.Role))
		if cs != nil && !s.csrfOK(w, r, cs) {
			return
		}
		if !p.Role.Allowed(rd.Roles) {
			setAuditDetail(r, "forbidden: needs role "+strings.Join(need, " or "))
			writeError(w, http.StatusForbidden, "Authorization", "role "+string(p.Role)+" may not "+rd.Pattern+"; needs role "+strings.Join(need, " or "))
			return
		}
		rd.h(w, r.WithContext(auth.WithPrincipal(r.Context(), p)))
	}
}

func roleNames(rs []auth.Role) []string {
	out := make([]string, len(rs))
	for i, r := range rs {
		out[i] = string(r)
	}
	return out
}

// authenticate returns the principal of the request (principalOf: the
// Authorization header, else the session cookie), or answers 401 (503
// while catching up) and returns false. A cookie session that has been
// idle long enough gets a fresh cookie (session.go).
func (s *Server) authenticate(w http.ResponseWriter, r *http.Request) (auth.Principal, *cookieSession, bool) {
	p, cs, err := s.principalOf(r)
	if err == nil {
		if cs != nil {
			s.refreshSession(w, r, cs)
		}
		return p, cs, true
	}
	var ae *authError
	if !errors.As(err, &ae) {
		ae = &authError{msg: "invalid token"}
	}
	if ae.unknown && s.catchingUp(w, r, "token") {
		return auth.Principal{}, nil, false
	}
	setAuditDetail(r, ae.msg)
	if ae.cookie {
		clearSessionCookies(w, r)
	}
	w.Header().Set("WWW-Authenticate", `Bearer realm="aurum"`)
	writeError(w, http.StatusUnauthorized, "Authorization", ae.msg)
	return auth.Principal{}, nil, false
}

// authError is why principalOf found no principal; the message never
// holds a secret.
type authError struct {
	msg     string
	unknown bool // an unknown credential (a node catching up may not know it yet)
	cookie  bool // it was the session cookie's
}

func (e *authError) Error() string { return e.msg }

// principalOf returns who the request acts as: the principal of its
// "Authorization: Bearer" token (the bootstrap admin token, an API token or
// a login session) or, without an Authorization header, of its session
// cookie (then cs is the cookie's state, for the CSRF check and its
// refresh). The error is an *authError.
func (s *Server) principalOf(r *http.Request) (p auth.Principal, cs *cookieSession, err error) {
	if h := r.Header.Get("Authorization"); h != "" || !hasSessionCookie(r) {
		tok, ok := strings.CutPrefix(h, "Bearer ")
		if !ok || tok == "" {
			return auth.Principal{}, nil, &authError{msg: "missing bearer token"}
		}
		p, err := s.secretPrincipal(tok)
		return p, nil, err
	}
	cs, err = s.openSessionCookie(r)
	if err != nil {
		return auth.Principal{}, nil, err
	}
	p, err = s.secretPrincipal(cs.Secret)
	if err != nil {
		var ae *authError
		if errors.As(err, &ae) {
			ae.cookie = true
			ae.msg = "session: " + ae.msg
		}
		return auth.Principal{}, nil, err
	}
	return p, cs, nil
}

// secretPrincipal returns the principal of a credential: the bootstrap
// admin token, an API token or a session secret.
func (s *Server) secretPrincipal(tok string) (auth.Principal, error) {
	h := auth.HashSecret(tok)
	if auth.Equal(h[:], s.opts.AdminTokenHash) {
		return auth.Principal{Name: "bootstrap", Role: auth.RoleAdmin, Kind: auth.KindBootstrap}, nil
	}
	p, err := s.svc.Access.Authenticate(tok)
	if err == nil {
		return p, nil
	}
	if _, isKey := s.svc.Access.SourceForKey(tok); isKey {
		return auth.Principal{}, &authError{msg: "invalid token: a source write key can only ingest, it is not a management credential"}
	}
	if errors.Is(err, access.ErrExpired) {
		return auth.Principal{}, &authError{msg: "token expired"}
	}
	return auth.Principal{}, &authError{msg: "invalid token", unknown: true}
}

// catchingUp answers 503 with Retry-After, and returns true, when this
// node does not know a credential because it is still applying the log it
// found at start (a node restarted into a cluster): the token or key may
// have been created meanwhile on another node. 401 would tell the client
// its valid credential is wrong.
func (s *Server) catchingUp(w http.ResponseWriter, r *http.Request, what string) bool {
	applied, target, catching := s.svc.Node.CatchingUp()
	if !catching {
		return false
	}
	setAuditDetail(r, "unknown "+what+" while catching up")
	w.Header().Set("Retry-After", "1")
	writeError(w, http.StatusServiceUnavailable, "", fmt.Sprintf(
		"catching up: this node has applied %d of the %d log entries it found at start and may not know this %s yet; retry", applied, target, what))
	return true
}
