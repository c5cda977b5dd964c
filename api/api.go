// Package api is Aurum's HTTP API: the Segment-compatible tracking endpoints
// (write-key auth), the management endpoints (bearer tokens with roles:
// routes.go states who may call each route), profile look-ups, login,
// /healthz and /metrics. It holds no state of its own: everything
// goes through the engine, as the small interfaces of services.go.
package api

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/cipher"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/aurumcdp/aurum/auth"
	"github.com/prometheus/client_golang/prometheus"
)

// Limits of the tracking API (Segment's).
const (
	MaxEventBytes   = 32 << 10
	MaxRequestBytes = 500 << 10
)

// Options configure the API server.
type Options struct {
	// AdminTokenHash is the SHA-256 of the admin bearer token. Required.
	AdminTokenHash []byte
	// RequestTimeout bounds one request's wait for durability. Default 30 s.
	RequestTimeout time.Duration
	Logger         *slog.Logger
	// PublicMetrics serves /metrics without a token (default: viewer,
	// editor or admin).
	PublicMetrics bool
	// IngestRate limits each write key (source) to this many events per
	// second on the tracking routes and /v1/import; 0 disables the limit.
	IngestRate float64
	// IngestBurst is the bucket of the ingest limit. Default 2 s of
	// IngestRate.
	IngestBurst float64
	// LoginFailures is how many failed logins in a row a client address, or
	// a user name, may have before POST /v1/login answers 429. Default 5.
	LoginFailures int
	// LoginEvery is how often a throttled client or name regains one
	// attempt. Default 1 min.
	LoginEvery time.Duration
	// Now is the rate limiters' and console sessions' clock. Default
	// time.Now.
	Now func() time.Time
	// SessionTTL is how long a console session signed in with an API token
	// lasts (never past the token's expiry; a user's sign-in lasts the
	// engine's SessionTTL). Default 12 h.
	SessionTTL time.Duration
	// SessionIdle ends a console session after this long without a
	// request. Default 1 h.
	SessionIdle time.Duration
	// SecureCookies marks the session cookies Secure even on plain HTTP
	// (behind a proxy that terminates TLS); under TLS they always are.
	SecureCookies bool
	// SSO, when set, offers single sign-on with OpenID Connect
	// (GET /v1/session/oidc/login and /callback).
	SSO SSO
}

// Server is the HTTP handler.
type Server struct {
	svc  Services
	opts Options
	mux  *http.ServeMux
	reqs *prometheus.CounterVec
	dur  *prometheus.HistogramVec

	routes        []routeDef    // the route table (routes.go)
	ingestLimit   *auth.Limiter // per source; nil: unlimited
	loginThrottle *auth.Throttle
	limited       *prometheus.CounterVec
	throttled     prometheus.Counter
	openapiJSON   []byte // GET /v1/openapi.json, from the route table

	sessionOnce sync.Once   // derives sessionGCM from Access.SessionKey
	sessionGCM  cipher.AEAD // seals the session cookies (session.go)
	sessionErr  error
}

// New returns the API handler over svc (every field set).
func New(svc Services, opts Options) (*Server, error) {
	if svc.Ingest == nil || svc.Access == nil || svc.Reads == nil || svc.Audiences == nil || svc.Destinations == nil ||
		svc.Privacy == nil || svc.Replay == nil || svc.Models == nil || svc.Audit == nil || svc.Node == nil {
		return nil, errors.New("api: every service must be set")
	}
	if len(opts.AdminTokenHash) != sha256.Size {
		return nil, errors.New("api: admin token hash must be a SHA-256")
	}
	if opts.RequestTimeout == 0 {
		opts.RequestTimeout = 30 * time.Second
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.IngestRate < 0 {
		return nil, errors.New("api: ingest rate must not be negative")
	}
	if opts.IngestBurst == 0 {
		opts.IngestBurst = 2 * opts.IngestRate
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.SessionTTL == 0 {
		opts.SessionTTL = 12 * time.Hour
	}
	if opts.SessionIdle == 0 {
		opts.SessionIdle = time.Hour
	}
	if opts.SessionTTL < 0 || opts.SessionIdle < 0 {
		return nil, errors.New("api: session TTL and idle time must not be negative")
	}
	s := &Server{svc: svc, opts: opts, mux: http.NewServeMux()}
	s.reqs = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "aurum_http_requests_total",
		Help: "HTTP requests by route and status code."}, []string{"route", "code"})
	s.dur = prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "aurum_http_request_seconds",
		Help: "HTTP request latency by route.", Buckets: prometheus.ExponentialBuckets(0.0005, 4, 8)}, []string{"route"})
	if err := svc.Node.Registry().Register(s.reqs); err != nil {
		return nil, fmt.Errorf("api: register metrics: %w", err)
	}
	if err := svc.Node.Registry().Register(s.dur); err != nil {
		return nil, fmt.Errorf("api: register metrics: %w", err)
	}

	if opts.IngestRate > 0 {
		s.ingestLimit = auth.NewLimiter(auth.LimiterOptions{Rate: opts.IngestRate, Burst: opts.IngestBurst, Now: opts.Now})
	}
	s.loginThrottle = auth.NewThrottle(auth.ThrottleOptions{Failures: opts.LoginFailures, Every: opts.LoginEvery, Now: opts.Now})
	s.limited = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "aurum_ingest_rate_limited_events_total",
		Help: "Events refused with 429 by the per-write-key ingest rate limit, by source."}, []string{"source"})
	s.throttled = prometheus.NewCounter(prometheus.CounterOpts{Name: "aurum_login_throttled_total",
		Help: "Login attempts refused with 429 after too many failures."})
	for _, c := range []prometheus.Collector{s.limited, s.throttled} {
		if err := svc.Node.Registry().Register(c); err != nil {
			return nil, fmt.Errorf("api: register metrics: %w", err)
		}
	}
	s.routes = s.routeTable()
	for _, rd := range s.routes {
		s.route(rd.Pattern, s.guard(rd))
	}
	var err error
	if s.openapiJSON, err = json.Marshal(openAPI(s.Routes())); err != nil {
		return nil, fmt.Errorf("api: openapi: %w", err)
	}
	return s, nil
}

// ServeHTTP implements http.Handler.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if _, pattern := s.mux.Handler(r); pattern == "" {
		s.noRoute(w, r)
		return
	}
	s.mux.ServeHTTP(w, r)
}

// routeMethods are the methods noRoute probes for a 405's Allow header.
var routeMethods = []string{http.MethodGet, http.MethodPost, http.MethodPut, http.MethodPatch,
	http.MethodDelete, http.MethodOptions}

// noRoute answers a request no route matches: a JSON 405 with an Allow
// header when the path has routes for other methods, else a JSON 404. (A
// catch-all "/" route would hide the mux's own 405s.)
func (s *Server) noRoute(w http.ResponseWriter, r *http.Request) {
	var allow []string
	for _, m := range routeMethods {
		if m == r.Method {
			continue
		}
		probe := r.Clone(r.Context())
		probe.Method = m
		if _, pattern := s.mux.Handler(probe); pattern != "" {
			allow = append(allow, m)
			if m == http.MethodGet {
				allow = append(allow, http.MethodHead)
			}
		}
	}
	if len(allow) == 0 {
		writeError(w, http.StatusNotFound, "", fmt.Sprintf("no route for %s %s", r.Method, r.URL.Path))
		return
	}
	w.Header().Set("Allow", strings.Join(allow, ", "))
	writeError(w, http.StatusMethodNotAllowed, "", fmt.Sprintf("method %s not allowed for %s (allowed: %s)",
		r.Method, r.URL.Path, strings.Join(allow, ", ")))
}

// MaxManagementBodyBytes bounds the body of every management request (the
// handlers' own limits are smaller); tracking and import requests are
// bounded by MaxRequestBytes after decoding.
const MaxManagementBodyBytes = 64 << 10

// route registers h under pattern inside the one wrapper every request goes
// through (only New's loop over routeTable calls it, so a route without
// stated roles cannot be registered): body size limit, panic recovery, metrics, and, for management
// routes (see audited), one audit entry per request, appended after the
// handler on a context a client disconnect cannot cancel.
func (s *Server) route(pattern string, h http.HandlerFunc) {
	name := pattern
	doAudit := audited(pattern)
	wildcards := pathWildcards(pattern)
	limit := int64(MaxManagementBodyBytes)
	if _, path, _ := strings.Cut(pattern, " "); trackingPath(path) || strings.HasPrefix(path, "/v1/import/") {
		limit = MaxRequestBytes*4 + 1024 // compressed bound; readBody bounds the decoded size
	}
	s.mux.HandleFunc(pattern, func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		sw := &statusWriter{ResponseWriter: w, code: http.StatusOK}
		if doAudit {
			r = r.WithContext(context.WithValue(r.Context(), auditCtxKey{}, &auditInfo{}))
		}
		defer func() {
			if p := recover(); p != nil {
				s.opts.Logger.Error("api: panic", "route", name, "panic", p)
				if !sw.wrote {
					writeError(sw, http.StatusInternalServerError, "", "internal error")
				}
				sw.code = http.StatusInternalServerError
			}
			if doAudit {
				s.audit(r, name, wildcards, sw.code)
			}
			s.reqs.WithLabelValues(name, strconv.Itoa(sw.code)).Inc()
			s.dur.WithLabelValues(name).Observe(time.Since(start).Seconds())
		}()
		if r.ContentLength > limit {
			writeError(sw, http.StatusRequestEntityTooLarge, "", fmt.Sprintf("request body exceeds %d KB", limit>>10))
			return
		}
		r.Body = http.MaxBytesReader(sw, r.Body, limit)
		h(sw, r)
	})
}

type statusWriter struct {
	http.ResponseWriter
	code  int
	wrote bool
}

func (w *statusWriter) WriteHeader(code int) {
	w.code, w.wrote = code, true
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(p []byte) (int, error) {
	w.wrote = true
	return w.ResponseWriter.Write(p)
}

// cors allows browser SDKs (analytics.js, RudderStack's JS SDK) to post.
func (s *Server) cors(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		hdr := w.Header()
		origin := r.Header.Get("Origin")
		if origin == "" {
			origin = "*"
		}
		hdr.Set("Access-Control-Allow-Origin", origin)
		hdr.Set("Access-Control-Allow-Credentials", "true")
		hdr.Set("Access-Control-Allow-Methods", "POST, OPTIONS")
		hdr.Set("Access-Control-Allow-Headers", "Authorization, Content-Type, Content-Encoding, AnonymousId")
		hdr.Set("Access-Control-Max-Age", "86400")
		if h == nil {
			w.WriteHeader(http.StatusNoContent)
			return
		}
		h(w, r)
	}
}

func (s *Server) handleHealth(w http.ResponseWriter, r *http.Request) {
	if err := s.svc.Node.Healthy(); err != nil {
		writeJSON(w, http.StatusServiceUnavailable, map[string]any{"status": "unavailable", "error": err.Error(), "applied_seq": s.svc.Node.AppliedSeq()})
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"status": "ok", "applied_seq": s.svc.Node.AppliedSeq()})
}

// errorBody is every error response's JSON shape.
type errorBody struct {
	Error string `json:"error"`
	Field string `json:"field,omitempty"`
}

func writeError(w http.ResponseWriter, code int, field, msg string) {
	writeJSON(w, code, errorBody{Error: userMessage(msg), Field: field})
}

// internalPrefix matches the package prefixes Aurum's errors carry
// ("engine: ", "activation: ", ...) and the error kinds that only mark an
// error for errors.Is ("invalid: "), at the start of a message.
var internalPrefix = regexp.MustCompile(`^(?:(?:engine|activation|projections|rules|access|ingest|query|privacy|audit|outbox|log|seal|store|importer|event|gcr|identity|cluster|base|wire|invalid): )+`)

// userMessage is an error message for the user: the internal prefixes of
// the packages it passed through removed (an answer said "engine: invalid:
// activation: destination ...").
func userMessage(msg string) string {
	return internalPrefix.ReplaceAllString(msg, "")
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(v)
}

func bytesReader(b []byte) io.Reader { return bytes.NewReader(b) }

// decodeJSON reads a management request's JSON body (at most limit bytes)
// into v, refusing unknown fields; an empty body is allowed when
// emptyOK. On failure it has answered (413 or 400 saying why) and returns
// false.
func decodeJSON(w http.ResponseWriter, r *http.Request, limit int64, v any, emptyOK bool) bool {
	body, err := readBody(r, limit)
	if errors.Is(err, errTooLarge) {
		writeError(w, http.StatusRequestEntityTooLarge, "", fmt.Sprintf("request body exceeds %d KB", limit>>10))
		return false
	}
	if err != nil {
		writeError(w, http.StatusBadRequest, "", err.Error())
		return false
	}
	if len(bytes.TrimSpace(body)) == 0 && emptyOK {
		return true
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		writeError(w, http.StatusBadRequest, jsonErrorField(err), "body is not a valid JSON object for this request: "+err.Error())
		return false
	}
	return true
}

// jsonErrorField names the field a JSON decoding error is about ("" when
// it is about the body as a whole).
func jsonErrorField(err error) string {
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) {
		return te.Field
	}
	if f, ok := strings.CutPrefix(err.Error(), "json: unknown field "); ok {
		if uq, err := strconv.Unquote(f); err == nil {
			return uq
		}
	}
	return ""
}

// errTooLarge marks a body over its limit.
var errTooLarge = errors.New("too large")

// readBody reads the (possibly gzip-encoded) body up to limit bytes after
// decoding.
func readBody(r *http.Request, limit int64) ([]byte, error) {
	var body io.Reader = http.MaxBytesReader(nil, r.Body, limit*4+1024) // compressed bytes bound

	size := 512 // io.ReadAll's first buffer
	switch strings.ToLower(r.Header.Get("Content-Encoding")) {
	case "", "identity":
		body = io.LimitReader(r.Body, limit+1)
		if r.ContentLength > 0 {
			// One buffer of the announced size (at most the limit) instead
			// of ReadAll's doublings.
			size = int(min(r.ContentLength, limit)) + 1
		}
	case "gzip":
		zr, err := gzip.NewReader(body)
		if err != nil {
			return nil, fmt.Errorf("body: invalid gzip: %v", err)
		}
		defer zr.Close()
		body = io.LimitReader(zr, limit+1)
	default:
		return nil, fmt.Errorf("Content-Encoding: %q not supported (use gzip or none)", r.Header.Get("Content-Encoding"))
	}
	data, err := readAll(body, size)
	var mbe *http.MaxBytesError
	if errors.As(err, &mbe) {
		return nil, errTooLarge
	}
	if err != nil {
		return nil, fmt.Errorf("body: %v", err)
	}
	if int64(len(data)) > limit {
		return nil, errTooLarge
	}
	if !utf8.Valid(data) {
		return nil, fmt.Errorf("body: not valid UTF-8 (JSON must be UTF-8)")
	}
	return data, nil
}

// readAll is io.ReadAll with a first buffer of size bytes.
func readAll(r io.Reader, size int) ([]byte, error) {
	b := make([]byte, 0, max(size, 512))
	for {
		n, err := r.Read(b[len(b):cap(b)])
		b = b[:len(b)+n]
		if err != nil {
			if err == io.EOF {
				err = nil
			}
			return b, err
		}
		if len(b) == cap(b) {
			b = append(b, 0)[:len(b)]
		}
	}
}

// notJSON explains why body is not valid JSON, or returns "" when it is.
// It is for error paths only: it scans the body again.
func notJSON(body []byte) string {
	if len(bytes.TrimSpace(body)) == 0 {
		return "body is empty: want a JSON object"
	}
	var v any
	err := json.Unmarshal(body, &v)
	if err == nil {
		return ""
	}
	var se *json.SyntaxError
	if errors.As(err, &se) {
		return fmt.Sprintf("body is not valid JSON: %v (at byte %d)", se, se.Offset)
	}
	return "body is not valid JSON: " + err.Error()
}

func (s *Server) requestContext(r *http.Request) (context.Context, context.CancelFunc) {
	return context.WithTimeout(r.Context(), s.opts.RequestTimeout)
}
