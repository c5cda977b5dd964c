package api_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aurumcdp/aurum/activation"
	"github.com/aurumcdp/aurum/api"
	"github.com/aurumcdp/aurum/auth"
	"github.com/aurumcdp/aurum/cluster"
	"github.com/aurumcdp/aurum/engine"
	"github.com/aurumcdp/aurum/engine/audit"
	"github.com/aurumcdp/aurum/engine/export"
	"github.com/aurumcdp/aurum/engine/matching"
	"github.com/aurumcdp/aurum/internal/check"
	"github.com/aurumcdp/aurum/internal/testnode"
	"github.com/aurumcdp/aurum/projections/audience"
	"github.com/oklog/ulid/v2"
)

// testClock is the edge clock of an access test: the wall clock (or, when
// frozen is set, that time) plus an offset the test moves.
type testClock struct {
	frozen time.Time
	off    atomic.Int64
}

func (c *testClock) Now() time.Time {
	base := c.frozen
	if base.IsZero() {
		base = time.Now()
	}
	return base.Add(time.Duration(c.off.Load()))
}

func (c *testClock) Advance(d time.Duration) { c.off.Add(int64(d)) }

// syncBuffer collects log output from many goroutines.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// accessServer is a test server whose engine and API share a settable
// clock and one debug-level logger writing to logs.
type accessServer struct {
	*testServer
	srv     *api.Server
	clock   *testClock
	logs    *syncBuffer
	dataDir string
	cluster *fakeCluster // the cluster its API shows (this node leads)
}

var fastPasswords = auth.PasswordParams{Memory: 256, Time: 1, Threads: 1}

func newAccessServer(t *testing.T, set func(*api.Options)) *accessServer {
	t.Helper()
	return newAccessServerClock(t, &testClock{}, set)
}

func newAccessServerClock(t *testing.T, clock *testClock, set func(*api.Options)) *accessServer {
	t.Helper()
	logs := &syncBuffer{}
	logger := slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	dir := t.TempDir()
	h := sha256.Sum256([]byte(adminToken))
	opts := api.Options{AdminTokenHash: h[:], RequestTimeout: 20 * time.Second, Logger: logger, Now: clock.Now}
	if set != nil {
		set(&opts)
	}
	fc := &fakeCluster{leader: true}
	n := testnode.Start(t, testnode.Options{API: &opts, Engine: engine.Options{DataDir: dir, MasterKey: bytes.Repeat([]byte{7}, 32),
		Partitions: 2, Now: clock.Now, Logger: logger, PasswordParams: fastPasswords, Identity: probabilisticConfig(),
		Export: export.Options{Dir: filepath.Join(dir, "exports"), Keep: 2}}, Cluster: fc})
	key, err := n.Engine.Gate().CreateSource(ctx, "web")
	if err != nil {
		t.Fatalf("CreateSource: %v", err)
	}
	return &accessServer{testServer: &testServer{t: t, e: n.Engine, URL: n.URL, webKey: key}, srv: n.API, clock: clock, logs: logs, dataDir: dir, cluster: fc}
}

func bearer(tok string) map[string]string { return map[string]string{"Authorization": "Bearer " + tok} }

// createToken makes an API token through the API and returns its JSON.
func (s *accessServer) createToken(name, role, expires string) (secret, id string) {
	s.t.Helper()
	r := s.do(req{method: "POST", path: "/v1/tokens", admin: true,
		body: jsonBody(s.t, map[string]string{"name": name, "role": role, "expires": expires})})
	if r.code != http.StatusCreated {
		s.t.Fatalf("POST /v1/tokens: %s", r)
	}
	var out struct {
		ID    string `json:"id"`
		Token string `json:"token"`
	}
	if err := json.Unmarshal(r.body, &out); err != nil || out.ID == "" || out.Token == "" {
		s.t.Fatalf("POST /v1/tokens answer %s: %v", r, err)
	}
	return out.Token, out.ID
}

// createUser makes a user through the engine and returns its TOTP secret.
func (s *accessServer) createUser(name string, role auth.Role, password string) []byte {
	s.t.Helper()
	uri, err := s.e.Gate().CreateUser(context.Background(), name, role, password)
	if err != nil {
		s.t.Fatalf("CreateUser: %v", err)
	}
	secret, err := auth.TOTPSecretFromURI(uri)
	if err != nil {
		s.t.Fatal(err)
	}
	return secret
}

// principal is one caller of the route × role test.
type principal struct {
	name     string
	bearer   string    // Authorization: Bearer value on management routes ("" none)
	basic    string    // write key sent as Basic auth on tracking routes
	role     auth.Role // a valid management role, or "" for no valid token
	writeKey bool      // may call the tracking routes
	// cookie, when set, are the headers of a console signed in with
	// POST /v1/session: its cookies and the CSRF header (no bearer).
	cookie map[string]string
}

// fixture is a request that a caller allowed to use the route gets a 2xx
// for. setup runs first (fresh objects to delete, fresh logins); after,
// when set, runs once the request is answered.
type fixture struct {
	req   func(s *accessServer, n int) req
	after func(s *accessServer)
}

const ruleE = `count("E") >= 1`

func track(n int) []byte {
	return []byte(fmt.Sprintf(`{"userId":"u%d","event":"E","messageId":"m%d"}`, n%5, n))
}

// fixtures gives every route of the table a request that works. A route
// without one fails TestRouteRoles: add the fixture with the route.
var fixtures = map[string]fixture{
	"POST /v1/track": {req: func(_ *accessServer, n int) req { return req{path: "/v1/track", body: track(n)} }},
	"POST /v1/identify": {req: func(_ *accessServer, n int) req {
		return req{path: "/v1/identify", body: []byte(`{"userId":"u1","traits":{"plan":"pro"}}`)}
	}},
	"POST /v1/page": {req: func(_ *accessServer, n int) req {
		return req{path: "/v1/page", body: []byte(`{"userId":"u1","name":"Home"}`)}
	}},
	"POST /v1/screen": {req: func(_ *accessServer, n int) req {
		return req{path: "/v1/screen", body: []byte(`{"userId":"u1","name":"Home"}`)}
	}},
	"POST /v1/group": {req: func(_ *accessServer, n int) req {
		return req{path: "/v1/group", body: []byte(`{"userId":"u1","groupId":"g1"}`)}
	}},
	"POST /v1/alias": {req: func(_ *accessServer, n int) req {
		return req{path: "/v1/alias", body: []byte(`{"userId":"u1","previousId":"p1"}`)}
	}},
	"POST /v1/batch": {req: func(_ *accessServer, n int) req {
		return req{path: "/v1/batch", body: []byte(`{"batch":[{"type":"track","userId":"u2","event":"E"}]}`)}
	}},
	"POST /v1/import/{source}": {req: func(_ *accessServer, n int) req {
		return req{path: "/v1/import/web", body: []byte(`{"batch":[{"type":"track","userId":"u3","event":"E"}]}`)}
	}},
	"POST /v1/sources": {req: func(_ *accessServer, n int) req {
		return req{path: "/v1/sources", body: []byte(fmt.Sprintf(`{"name":"src%d"}`, n))}
	}},
	"GET /v1/sources": {req: get("/v1/sources")},
	"DELETE /v1/sources/{name}": {req: func(s *accessServer, n int) req {
		name := fmt.Sprintf("delsrc%d", n)
		if _, err := s.e.Gate().CreateSource(context.Background(), name); err != nil {
			s.t.Fatal(err)
		}
		return req{method: "DELETE", path: "/v1/sources/" + name}
	}},
	"POST /v1/sources/{name}/rotate-key": {req: func(s *accessServer, n int) req {
		name := fmt.Sprintf("rotsrc%d", n)
		if _, err := s.e.Gate().CreateSource(context.Background(), name); err != nil {
			s.t.Fatal(err)
		}
		return req{path: "/v1/sources/" + name + "/rotate-key", body: []byte(`{"grace":"1h"}`)}
	}},
	"GET /v1/profiles/{ref}":                  {req: get("/v1/profiles/user_id:seed")},
	"GET /v1/profiles/{ref}/events":           {req: get("/v1/profiles/user_id:seed/events")},
	"GET /v1/profiles/{ref}/audience-history": {req: get("/v1/profiles/user_id:seed/audience-history")},
	"GET /v1/deadletters":                     {req: get("/v1/deadletters")},
	"POST /v1/replay": {req: func(s *accessServer, n int) req { return req{path: "/v1/replay", body: []byte(`{}`)} },
		after: func(s *accessServer) { s.waitReplay() }},
	"GET /v1/replay":        {req: get("/v1/replay")},
	"POST /v1/snapshots":    {req: func(s *accessServer, n int) req { return req{path: "/v1/snapshots"} }},
	"GET /v1/snapshots":     {req: get("/v1/snapshots")},
	"GET /v1/digest":        {req: get("/v1/digest")},
	"GET /v1/stats/history": {req: get("/v1/stats/history")},
	"GET /v1/cluster":       {req: get("/v1/cluster")},
	"POST /v1/cluster/nodes": {req: func(_ *accessServer, n int) req {
		return req{path: "/v1/cluster/nodes", body: []byte(fmt.Sprintf(`{"name":"add%d","http":"127.0.0.1:1","raft":"127.0.0.1:2"}`, n))}
	}},
	"DELETE /v1/cluster/nodes/{name}": {req: func(s *accessServer, n int) req {
		name := fmt.Sprintf("rm%d", n)
		if err := s.cluster.AddNode(cluster.NodeConfig{Name: name, HTTP: "127.0.0.1:1", Raft: "127.0.0.1:2"}); err != nil {
			s.t.Fatal(err)
		}
		return req{method: "DELETE", path: "/v1/cluster/nodes/" + name}
	}},

	"POST /v1/destinations": {req: func(_ *accessServer, n int) req {
		return req{path: "/v1/destinations", body: []byte(fmt.Sprintf(
			`{"name":"d%d","url":"http://127.0.0.1:9/hook","secret":"0123456789abcdef0123","audiences":["seeded"],"channel":"email"}`, n))}
	}},
	"GET /v1/destinations": {req: get("/v1/destinations")},
	"GET /v1/destinations/{name}": {req: func(s *accessServer, n int) req {
		name := fmt.Sprintf("show%d", n)
		if _, err := s.e.PutDestination(context.Background(), activation.Destination{Name: name, URL: "http://127.0.0.1:9/hook",
			Secret: "0123456789abcdef0123", Audiences: []string{"seeded"}, Channel: "email"}); err != nil {
			s.t.Fatal(err)
		}
		return req{method: "GET", path: "/v1/destinations/" + name}
	}},
	"DELETE /v1/destinations/{name}": {req: func(s *accessServer, n int) req {
		name := fmt.Sprintf("del%d", n)
		if _, err := s.e.PutDestination(context.Background(), activation.Destination{Name: name, URL: "http://127.0.0.1:9/hook",
			Secret: "0123456789abcdef0123", Audiences: []string{"seeded"}, Channel: "email"}); err != nil {
			s.t.Fatal(err)
		}
		return req{method: "DELETE", path: "/v1/destinations/" + name}
	}},
	"POST /v1/models": {req: func(_ *accessServer, n int) req {
		return req{path: "/v1/models", body: []byte(fmt.Sprintf(`{"name":"fit%d","calibration_end":"2000-01-01"}`, n))}
	}},
	"GET /v1/profiles/{ref}/identity": {req: get("/v1/profiles/user_id:seed/identity")},
	"POST /v1/identity/model":         {req: func(*accessServer, int) req { return req{path: "/v1/identity/model", body: []byte(`{"sample":100}`)} }},
	"GET /v1/identity/model":          {req: get("/v1/identity/model")},
	"GET /v1/identity/reviews":        {req: get("/v1/identity/reviews")},
	"POST /v1/identity/reviews/{id}": {req: func(s *accessServer, n int) req {
		a := s.quietIdentify(fmt.Sprintf("rva%d", n))
		b := s.quietIdentify(fmt.Sprintf("rvb%d", n))
		rv := s.propose(a, b, 0.85)
		return req{path: "/v1/identity/reviews/" + rv.ID, body: []byte(`{"decision":"reject"}`)}
	}},
	"POST /v1/profiles/{ref}/split": {req: func(s *accessServer, n int) req {
		// No matching traits: the matcher must not pick these up (the
		// review fixture's pairs share a surname).
		if r := s.do(req{path: "/v1/identify", key: s.webKey, body: []byte(fmt.Sprintf(`{"anonymousId":"spa%d","userId":"spu%d"}`, n, n))}); r.code != 200 {
			s.t.Fatalf("identify: %s", r)
		}
		check.For(s.t, 30*time.Second, 10*time.Millisecond, func() error {
			_, err := s.e.Reader().Profile(fmt.Sprintf("user_id:spu%d", n))
			return err
		})
		return req{path: fmt.Sprintf("/v1/profiles/user_id:spu%d/split", n), body: []byte(fmt.Sprintf(`{"identifiers":["anonymous_id:spa%d"]}`, n))}
	}},
	"GET /v1/models":                   {req: get("/v1/models")},
	"GET /v1/models/{name}":            {req: get("/v1/models/seeded")},
	"GET /v1/models/{name}/evaluation": {req: get("/v1/models/seeded/evaluation?holdout_end=2024-12-31")},
	"DELETE /v1/models/{name}": {req: func(s *accessServer, n int) req {
		name := fmt.Sprintf("delmodel%d", n)
		s.failedFit(name)
		return req{method: "DELETE", path: "/v1/models/" + name}
	}},
	"POST /v1/audiences": {req: func(_ *accessServer, n int) req {
		return req{path: "/v1/audiences", body: []byte(fmt.Sprintf(`{"name":"a%d","rule":%q}`, n, ruleE))}
	}},
	"POST /v1/audiences/preview": {req: func(_ *accessServer, n int) req {
		return req{path: "/v1/audiences/preview", body: []byte(fmt.Sprintf(`{"rule":%q}`, ruleE))}
	}},
	"POST /v1/audiences/suggest": {req: func(_ *accessServer, n int) req {
		return req{path: "/v1/audiences/suggest", body: []byte(`{"k_max":2,"max_profiles":1000}`)}
	}},
	"GET /v1/audiences":        {req: get("/v1/audiences")},
	"GET /v1/audiences/{name}": {req: get("/v1/audiences/seeded")},
	"PUT /v1/audiences/{name}": {req: func(_ *accessServer, n int) req {
		return req{method: "PUT", path: "/v1/audiences/seeded", body: []byte(fmt.Sprintf(`{"rule":%q}`, ruleE))}
	}},
	"DELETE /v1/audiences/{name}": {req: func(s *accessServer, n int) req {
		name := fmt.Sprintf("gone%d", n)
		if _, err := s.e.PutAudience(context.Background(), audience.Definition{Name: name, Rule: ruleE}); err != nil {
			s.t.Fatal(err)
		}
		return req{method: "DELETE", path: "/v1/audiences/" + name}
	}},
	"GET /v1/audiences/{name}/members": {req: get("/v1/audiences/seeded/members")},
	"GET /v1/audiences/{name}/export":  {req: get("/v1/audiences/seeded/export?format=ndjson&channel=email")},
	"GET /v1/profiles/{ref}/export":    {req: get("/v1/profiles/user_id:seed/export")},
	"PUT /v1/profiles/{ref}/consent": {req: func(_ *accessServer, n int) req {
		return req{method: "PUT", path: "/v1/profiles/user_id:seed/consent", body: []byte(fmt.Sprintf(`{"sms":%t}`, n%2 == 0))}
	}},
	"POST /v1/privacy/erasures": {req: func(_ *accessServer, n int) req {
		return req{path: "/v1/privacy/erasures", body: []byte(fmt.Sprintf(`{"identifier":"user_id:nobody%d"}`, n))}
	}},
	"GET /v1/privacy/erasures": {req: get("/v1/privacy/erasures")},
	"GET /v1/privacy/erasures/{id}": {req: func(s *accessServer, n int) req {
		info, err := s.e.Privacy().RequestErasure(context.Background(), fmt.Sprintf("user_id:ghost%d", n))
		if err != nil {
			s.t.Fatal(err)
		}
		return req{method: "GET", path: "/v1/privacy/erasures/" + info.ID}
	}},
	"GET /v1/audit":            {req: get("/v1/audit?limit=5")},
	"POST /v1/exports":         {req: func(_ *accessServer, _ int) req { return req{path: "/v1/exports"} }},
	"GET /v1/exports":          {req: get("/v1/exports")},
	"GET /v1/exports/schedule": {req: get("/v1/exports/schedule")},
	"PUT /v1/exports/schedule": {req: func(_ *accessServer, n int) req {
		return req{method: "PUT", path: "/v1/exports/schedule", body: []byte(fmt.Sprintf(`{"interval":"%dh","keep":3}`, n+1))}
	}},
	"POST /v1/tokens": {req: func(_ *accessServer, n int) req {
		return req{path: "/v1/tokens", body: []byte(fmt.Sprintf(`{"name":"t%d","role":"viewer","expires":"1h"}`, n))}
	}},
	"GET /v1/tokens": {req: get("/v1/tokens")},
	"DELETE /v1/tokens/{id}": {req: func(s *accessServer, n int) req {
		_, info, err := s.e.Gate().CreateToken(context.Background(), fmt.Sprintf("rev%d", n), auth.RoleViewer, time.Time{})
		if err != nil {
			s.t.Fatal(err)
		}
		return req{method: "DELETE", path: "/v1/tokens/" + info.ID}
	}},
	"POST /v1/users": {req: func(_ *accessServer, n int) req {
		return req{path: "/v1/users", body: []byte(fmt.Sprintf(`{"name":"user%d","role":"viewer","password":"correct horse battery"}`, n))}
	}},
	"GET /v1/users": {req: get("/v1/users")},
	"DELETE /v1/users/{name}": {req: func(s *accessServer, n int) req {
		name := fmt.Sprintf("bye%d", n)
		s.createUser(name, auth.RoleViewer, "correct horse battery")
		return req{method: "DELETE", path: "/v1/users/" + name}
	}},
	"POST /v1/login": {req: func(s *accessServer, n int) req {
		name := fmt.Sprintf("login%d", n)
		secret := s.createUser(name, auth.RoleViewer, "correct horse battery")
		return req{path: "/v1/login", body: jsonBodyNoT(map[string]string{"name": name, "password": "correct horse battery",
			"code": auth.TOTP(secret, s.clock.Now())})}
	}},
	"POST /v1/session": {req: func(s *accessServer, n int) req {
		name := fmt.Sprintf("signin%d", n)
		secret := s.createUser(name, auth.RoleViewer, "correct horse battery")
		return req{path: "/v1/session", body: jsonBodyNoT(map[string]string{"name": name, "password": "correct horse battery",
			"totp": auth.TOTP(secret, s.clock.Now())})}
	}},
	"GET /v1/session":           {req: get("/v1/session")},
	"GET /v1/session/providers": {req: get("/v1/session/providers")},
	"DELETE /v1/session":        {req: func(*accessServer, int) req { return req{method: "DELETE", path: "/v1/session"} }},
	"GET /healthz":              {req: get("/healthz")},
	"GET /v1/openapi.json":      {req: get("/v1/openapi.json")},
	"GET /metrics":              {req: get("/metrics")},
	"OPTIONS /v1/track":         {req: options("/v1/track")},
	"OPTIONS /v1/identify":      {req: options("/v1/identify")},
	"OPTIONS /v1/page":          {req: options("/v1/page")},
	"OPTIONS /v1/screen":        {req: options("/v1/screen")},
	"OPTIONS /v1/group":         {req: options("/v1/group")},
	"OPTIONS /v1/alias":         {req: options("/v1/alias")},
	"OPTIONS /v1/batch":         {req: options("/v1/batch")},
}

// quietIdentify creates a profile for anonymousId anon and returns its id,
// without an audited request.
func (s *accessServer) quietIdentify(anon string) []byte {
	s.t.Helper()
	if r := s.do(req{path: "/v1/identify", key: s.webKey, body: []byte(fmt.Sprintf(`{"anonymousId":%q,"traits":{"surname":"Review"}}`, anon))}); r.code != 200 {
		s.t.Fatalf("identify: %s", r)
	}
	var id []byte
	check.For(s.t, 30*time.Second, 10*time.Millisecond, func() error {
		v, err := s.e.Reader().Profile("anonymous_id:" + anon)
		if err != nil {
			return err
		}
		u, err := ulid.ParseStrict(v.ProfileID)
		id = u[:]
		return err
	})
	return id
}

func get(path string) func(*accessServer, int) req {
	return func(*accessServer, int) req { return req{method: "GET", path: path} }
}

func options(path string) func(*accessServer, int) req {
	return func(*accessServer, int) req { return req{method: "OPTIONS", path: path} }
}

func jsonBodyNoT(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return b
}

// waitReplay polls until no replay is running.
func (s *accessServer) waitReplay() {
	s.t.Helper()
	check.For(s.t, 30*time.Second, 10*time.Millisecond, func() error {
		if st := s.e.RebuildStatus().Status; st == "running" || st == "swapping" {
			return fmt.Errorf("replay %s", st)
		}
		return nil
	})
}

// TestRouteRoles is the route × role test: every route of the table, called
// by every kind of caller, works (2xx) when the table allows the caller,
// is 403 for a valid token of a role it does not allow and 401 for no or a
// bad credential. A route without a fixture fails the test.
func TestRouteRoles(t *testing.T) {
	s := newAccessServer(t, nil)
	ctx := context.Background()
	// Seed what the read fixtures read.
	if r := s.do(req{path: "/v1/track", key: s.webKey, body: []byte(`{"userId":"seed","event":"E","messageId":"seed"}`)}); r.code != 200 {
		t.Fatalf("seed event: %s", r)
	}
	s.waitProfile("user_id:seed")
	if _, err := s.e.PutAudience(ctx, audience.Definition{Name: "seeded", Rule: ruleE}); err != nil {
		t.Fatal(err)
	}
	s.seedModel("seeded")
	// Two profiles that share a block, and a model trained on them.
	s.identify(`{"userId":"seed","traits":{"given_name":"Ann","surname":"Seed","postcode":"1000"}}`, "user_id:seed")
	s.identify(`{"anonymousId":"seed2","traits":{"given_name":"Anne","surname":"Seed","postcode":"1000"}}`, "anonymous_id:seed2")
	s.identify(`{"anonymousId":"seed3","traits":{"given_name":"Bo","surname":"Other","postcode":"2000"}}`, "anonymous_id:seed3")
	if _, err := s.e.Matching().Train(ctx, matching.TrainRequest{}); err != nil {
		t.Fatalf("train: %v", err)
	}
	tok := func(name string, role auth.Role) string {
		secret, _, err := s.e.Gate().CreateToken(ctx, name, role, time.Time{})
		if err != nil {
			t.Fatal(err)
		}
		return secret
	}
	revoked, revokedInfo, err := s.e.Gate().CreateToken(ctx, "revoked", auth.RoleAdmin, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.e.Gate().RevokeToken(ctx, revokedInfo.ID); err != nil {
		t.Fatal(err)
	}
	s.clock.Advance(-2 * time.Hour)
	expired, _, err := s.e.Gate().CreateToken(ctx, "expired", auth.RoleAdmin, s.clock.Now().Add(time.Hour))
	s.clock.Advance(2 * time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	bad, _ := auth.NewSecret()
	principals := []principal{
		{name: "admin bootstrap", bearer: adminToken, role: auth.RoleAdmin},
		{name: "admin token", bearer: tok("root", auth.RoleAdmin), role: auth.RoleAdmin},
		{name: "editor", bearer: tok("ed", auth.RoleEditor), role: auth.RoleEditor},
		{name: "viewer", bearer: tok("view", auth.RoleViewer), role: auth.RoleViewer},
		{name: "privacy", bearer: tok("dpo", auth.RolePrivacy), role: auth.RolePrivacy},
		{name: "write key", bearer: s.webKey, basic: s.webKey, writeKey: true},
		{name: "no token"},
		{name: "bad token", bearer: bad},
		{name: "expired token", bearer: expired},
		{name: "revoked token", bearer: revoked},
		// The console's cookie sessions meet the same route table (no back door).
		{name: "admin cookie", cookie: s.consoleHeaders(tok("croot", auth.RoleAdmin)), role: auth.RoleAdmin},
		{name: "editor cookie", cookie: s.consoleHeaders(tok("ced", auth.RoleEditor)), role: auth.RoleEditor},
		{name: "viewer cookie", cookie: s.consoleHeaders(tok("cview", auth.RoleViewer)), role: auth.RoleViewer},
		{name: "privacy cookie", cookie: s.consoleHeaders(tok("cdpo", auth.RolePrivacy)), role: auth.RolePrivacy},
	}
	routes := s.srv.Routes()
	inTable := map[string]bool{}
	n := 0
	// Every management request must leave exactly one audit entry, in
	// request order, saying who (actor, role), what and the result.
	type audited struct{ action, actor, role, result string }
	var wantAudit []audited
	actors := map[string]audited{
		"admin bootstrap": {actor: "bootstrap", role: "admin"}, "admin token": {actor: "token:root", role: "admin"},
		"editor": {actor: "token:ed", role: "editor"}, "viewer": {actor: "token:view", role: "viewer"},
		"privacy":      {actor: "token:dpo", role: "privacy"},
		"admin cookie": {actor: "token:croot", role: "admin"}, "editor cookie": {actor: "token:ced", role: "editor"},
		"viewer cookie": {actor: "token:cview", role: "viewer"}, "privacy cookie": {actor: "token:cdpo", role: "privacy"},
	}
	auditStart := s.auditCursor()
	for _, rt := range routes {
		inTable[rt.Pattern] = true
		fx, ok := fixtures[rt.Pattern]
		if !ok {
			t.Errorf("route %q has no fixture in TestRouteRoles: add a request that works", rt.Pattern)
			continue
		}
		for _, p := range principals {
			t.Run(rt.Pattern+"/"+p.name, func(t *testing.T) {
				n++
				r := fx.req(s, n)
				if r.method == "" {
					r.method = "POST"
				}
				if rt.Access == api.AccessWriteKey {
					if p.basic != "" {
						r.key = p.basic
					} else if p.bearer != "" {
						r.header = bearer(p.bearer)
					}
				} else if p.bearer != "" {
					r.header = bearer(p.bearer)
				}
				if p.cookie != nil {
					r.header = p.cookie
				}
				var want int // 0: any 2xx
				switch rt.Access {
				case api.AccessPublic:
				case api.AccessWriteKey:
					if !p.writeKey {
						want = http.StatusUnauthorized
					}
				case api.AccessRoles:
					switch {
					case p.role == "":
						want = http.StatusUnauthorized
					case !p.role.Allowed(rt.Roles):
						want = http.StatusForbidden
					}
				default:
					t.Fatalf("unknown access %q", rt.Access)
				}
				res := s.testServer.do(r)
				if fx.after != nil {
					fx.after(s)
				}
				if (rt.Access == api.AccessRoles && rt.Pattern != "GET /metrics") || rt.Pattern == "POST /v1/login" || rt.Pattern == "POST /v1/session" { // scrapes are not audited
					a := audited{action: rt.Pattern, result: map[int]string{401: "unauthenticated", 403: "denied"}[res.code]}
					if rt.Access == api.AccessRoles && res.code != 401 {
						a.actor, a.role = actors[p.name].actor, actors[p.name].role
					}
					if (rt.Pattern == "POST /v1/login" || rt.Pattern == "POST /v1/session") && res.code == 200 {
						var lr struct{ Name string }
						if err := json.Unmarshal(r.body, &lr); err != nil {
							t.Fatal(err)
						}
						a.actor, a.role = "session:"+lr.Name, "viewer"
					}
					if a.result == "" && res.code/100 == 2 {
						a.result = "ok"
					}
					wantAudit = append(wantAudit, a)
				}
				if want == 0 {
					if res.code < 200 || res.code > 299 {
						t.Fatalf("%s %s as %s: got %s, want 2xx", r.method, r.path, p.name, res)
					}
					return
				}
				if res.code != want {
					t.Fatalf("%s %s as %s: got %s, want %d", r.method, r.path, p.name, res, want)
				}
				msg, field := res.errorBody(t)
				if field != "Authorization" {
					t.Errorf("field %q, want Authorization", field)
				}
				if want == http.StatusForbidden && (!strings.Contains(msg, "needs role admin") || !strings.Contains(msg, string(p.role))) {
					t.Errorf("403 message %q does not name the roles", msg)
				}
				if want == http.StatusUnauthorized && res.header.Get("WWW-Authenticate") == "" {
					t.Error("401 without WWW-Authenticate")
				}
				if want == http.StatusUnauthorized && rt.Access == api.AccessRoles {
					wantMsg := map[string]string{"no token": "missing bearer token", "expired token": "token expired",
						"write key": "not a management credential"}[p.name]
					if wantMsg != "" && !strings.Contains(msg, wantMsg) {
						t.Errorf("401 message %q, want %q", msg, wantMsg)
					}
				}
			})
		}
	}
	for pattern := range fixtures {
		if !inTable[pattern] {
			t.Errorf("fixture for %q, which is not in the route table", pattern)
		}
	}
	if len(routes) < 40 {
		t.Errorf("only %d routes in the table", len(routes))
	}
	s.waitReplay()

	var got []audited
	for cursor := auditStart; ; {
		entries, next, err := s.e.Recorder().AuditLog(ctx, audit.AuditQuery{Cursor: cursor, Limit: audit.MaxAuditPage})
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range entries {
			got = append(got, audited{e.Action, e.Actor, e.Role, e.Result})
		}
		if len(entries) == 0 {
			break
		}
		cursor = next
	}
	if len(got) != len(wantAudit) {
		count := map[string]int{}
		for _, a := range wantAudit {
			count[a.action]++
		}
		for _, a := range got {
			count[a.action]--
		}
		for k, v := range count {
			if v != 0 {
				t.Errorf("%s: %d more requests than audit entries", k, v)
			}
		}
		t.Fatalf("%d audit entries for %d management requests", len(got), len(wantAudit))
	}
	for i := range got {
		if got[i] != wantAudit[i] {
			t.Errorf("audit entry %d: got %+v, want %+v", i, got[i], wantAudit[i])
		}
	}
}

// auditCursor is the audit log position after the last entry so far.
func (s *accessServer) auditCursor() uint64 {
	s.t.Helper()
	var cursor uint64
	for {
		entries, next, err := s.e.Recorder().AuditLog(context.Background(), audit.AuditQuery{Cursor: cursor, Limit: audit.MaxAuditPage})
		if err != nil {
			s.t.Fatal(err)
		}
		if len(entries) == 0 {
			return cursor
		}
		cursor = next
	}
}

// TestRouteTableRoles pins the roles of the routes issue #5 names.
func TestRouteTableRoles(t *testing.T) {
	s := newAccessServer(t, nil)
	byPattern := map[string]api.RouteInfo{}
	for _, r := range s.srv.Routes() {
		if _, dup := byPattern[r.Pattern]; dup {
			t.Errorf("route %q twice", r.Pattern)
		}
		byPattern[r.Pattern] = r
	}
	for _, tc := range []struct {
		pattern string
		role    auth.Role
		allowed bool
	}{
		{"POST /v1/sources", auth.RoleEditor, true},
		{"POST /v1/sources", auth.RoleViewer, false},
		{"GET /v1/profiles/{ref}", auth.RolePrivacy, true},
		{"GET /v1/profiles/{ref}", auth.RoleViewer, true},
		{"GET /v1/audiences/{name}/export", auth.RoleViewer, true},
		{"GET /v1/audiences/{name}/export", auth.RolePrivacy, false},
		{"POST /v1/replay", auth.RoleEditor, false},
		{"POST /v1/snapshots", auth.RoleEditor, false},
		{"POST /v1/tokens", auth.RoleEditor, false},
		{"GET /v1/users", auth.RoleViewer, false},
		{"GET /metrics", auth.RoleViewer, true},
		{"GET /metrics", auth.RolePrivacy, false},
		{"GET /v1/stats/history", auth.RoleViewer, true},
		{"GET /v1/stats/history", auth.RolePrivacy, false},
		{"DELETE /v1/audiences/{name}", auth.RoleEditor, true},
		{"DELETE /v1/audiences/{name}", auth.RoleViewer, false},
	} {
		r, ok := byPattern[tc.pattern]
		if !ok || r.Access != api.AccessRoles {
			t.Errorf("%s: missing or not role-checked: %+v", tc.pattern, r)
			continue
		}
		if got := tc.role.Allowed(r.Roles); got != tc.allowed {
			t.Errorf("%s as %s: allowed %v, want %v", tc.pattern, tc.role, got, tc.allowed)
		}
	}
	if byPattern["POST /v1/login"].Access != api.AccessPublic || byPattern["GET /healthz"].Access != api.AccessPublic {
		t.Error("login and healthz must be public")
	}
	// --public-metrics opens /metrics.
	pub := newAccessServer(t, func(o *api.Options) { o.PublicMetrics = true })
	if r := pub.do(req{method: "GET", path: "/metrics"}); r.code != 200 {
		t.Errorf("public /metrics: %s", r)
	}
	if r := s.do(req{method: "GET", path: "/metrics"}); r.code != 401 {
		t.Errorf("/metrics without token: %s", r)
	}
}

// TestTokenLifecycle: create → shown once → works → listed without secret →
// revoke → 401; expiry → 401; only the hash is on disk.
func TestTokenLifecycle(t *testing.T) {
	s := newAccessServer(t, nil)
	secret, id := s.createToken("ci", "editor", "")
	if !strings.HasPrefix(secret, auth.TokenPrefix) {
		t.Fatalf("secret %q lacks the %s prefix", secret, auth.TokenPrefix)
	}
	// It works, with its role.
	if r := s.do(req{path: "/v1/sources", header: bearer(secret), body: []byte(`{"name":"crm"}`)}); r.code != 201 {
		t.Fatalf("editor token creating a source: %s", r)
	}
	if r := s.do(req{method: "GET", path: "/v1/tokens", header: bearer(secret)}); r.code != 403 {
		t.Fatalf("editor token listing tokens: %s", r)
	}
	// Listed without secret or hash.
	r := s.do(req{method: "GET", path: "/v1/tokens", admin: true})
	if r.code != 200 {
		t.Fatal(r)
	}
	var list struct {
		Tokens []map[string]any `json:"tokens"`
	}
	if err := json.Unmarshal(r.body, &list); err != nil || len(list.Tokens) != 1 {
		t.Fatalf("list %s: %v", r, err)
	}
	if tk := list.Tokens[0]; tk["id"] != id || tk["name"] != "ci" || tk["role"] != "editor" {
		t.Errorf("listed %v", tk)
	}
	h := sha256.Sum256([]byte(secret))
	for _, leak := range []string{secret, fmt.Sprintf("%x", h), secret[len(auth.TokenPrefix):]} {
		if strings.Contains(string(r.body), leak) {
			t.Errorf("token list shows %q", leak)
		}
	}
	for _, k := range []string{"token", "hash", "secret"} {
		if _, ok := list.Tokens[0][k]; ok {
			t.Errorf("token list has field %q", k)
		}
	}
	// Only the hash is stored: the secret is nowhere under the data dir, the hash is.
	if err := s.e.Sync(context.Background()); err != nil {
		t.Fatal(err)
	}
	if n := filesContaining(t, s.dataDir, []byte(secret)); n > 0 {
		t.Errorf("the token secret is stored in %d files", n)
	}
	if n := filesContaining(t, s.dataDir, h[:]); n == 0 {
		t.Error("the token hash is in no file: does the scan see the data dir?")
	}
	// Revoke → 401 at once; revoking again → 404.
	if r := s.do(req{method: "DELETE", path: "/v1/tokens/" + id, admin: true}); r.code != 204 {
		t.Fatalf("revoke: %s", r)
	}
	if r := s.do(req{method: "GET", path: "/v1/sources", header: bearer(secret)}); r.code != 401 {
		t.Fatalf("revoked token: %s", r)
	}
	if r := s.do(req{method: "DELETE", path: "/v1/tokens/" + id, admin: true}); r.code != 404 {
		t.Fatalf("revoke twice: %s", r)
	}
	if r := s.do(req{method: "GET", path: "/v1/tokens", admin: true}); strings.Contains(string(r.body), id) {
		t.Errorf("revoked token still listed: %s", r)
	}
	// Expiry, by duration, days and RFC 3339.
	for _, exp := range []string{"1h", "1d", "rfc3339"} {
		if exp == "rfc3339" {
			exp = s.clock.Now().Add(time.Hour).UTC().Format(time.RFC3339)
		}
		sec, _ := s.createToken("short", "viewer", exp)
		if r := s.do(req{method: "GET", path: "/v1/sources", header: bearer(sec)}); r.code != 200 {
			t.Fatalf("fresh token (expires %s): %s", exp, r)
		}
		s.clock.Advance(25 * time.Hour)
		r := s.do(req{method: "GET", path: "/v1/sources", header: bearer(sec)})
		if r.code != 401 {
			t.Fatalf("expired token (expires %s): %s", exp, r)
		}
		if msg, _ := r.errorBody(t); !strings.Contains(msg, "expired") {
			t.Errorf("expired token message %q", msg)
		}
	}
	// Bad input names the field.
	for _, tc := range []struct{ body, field string }{
		{`{"role":"viewer"}`, "name"},
		{`{"name":"a b","role":"viewer"}`, "name"},
		{`{"name":"x","role":"root"}`, "role"},
		{`{"name":"x"}`, "role"},
		{`{"name":"x","role":"viewer","expires":"soon"}`, "expires"},
		{`{"name":"x","role":"viewer","expires":"-1h"}`, "expires"},
		{`{"name":"x","role":"viewer","expires":"2001-01-01T00:00:00Z"}`, "expires"},
		{`{"name":"x","role":"viewer","token":"mine"}`, "token"},
		{`not json`, ""},
	} {
		r := s.do(req{path: "/v1/tokens", admin: true, body: []byte(tc.body)})
		if r.code != 400 {
			t.Errorf("%s: %s, want 400", tc.body, r)
			continue
		}
		if _, field := r.errorBody(t); field != tc.field {
			t.Errorf("%s: field %q, want %q", tc.body, field, tc.field)
		}
	}
}

// filesContaining counts the files under dir that contain needle.
func filesContaining(t *testing.T, dir string, needle []byte) int {
	t.Helper()
	n := 0
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if errors.Is(err, fs.ErrNotExist) { // the running node renames temporary files
			return nil
		}
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(path)
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		if err != nil {
			return err
		}
		if bytes.Contains(b, needle) {
			n++
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// login posts to /v1/login from the test's own address.
func (s *accessServer) login(name, password, code string) resp {
	s.t.Helper()
	return s.do(req{path: "/v1/login", body: jsonBody(s.t, map[string]string{"name": name, "password": password, "code": code})})
}

// TestTOTPLogin: a person enrols (otpauth URI), logs in with password and
// TOTP code, and the session acts with the person's role; wrong password or
// code is a 401 that does not say which; a code works once; failures are
// throttled per client and per name (429 + Retry-After).
func TestTOTPLogin(t *testing.T) {
	s := newAccessServer(t, func(o *api.Options) { o.LoginFailures = 5; o.LoginEvery = time.Minute })
	const pw = "correct horse battery staple"
	r := s.do(req{path: "/v1/users", admin: true, body: jsonBody(t, map[string]string{"name": "ada", "role": "viewer", "password": pw})})
	if r.code != 201 {
		t.Fatalf("POST /v1/users: %s", r)
	}
	var created struct {
		URI string `json:"otpauth_uri"`
	}
	if err := json.Unmarshal(r.body, &created); err != nil || !strings.HasPrefix(created.URI, "otpauth://totp/Aurum:ada?") {
		t.Fatalf("enrolment answer %s: %v", r, err)
	}
	secret, err := auth.TOTPSecretFromURI(created.URI)
	if err != nil {
		t.Fatal(err)
	}
	// Users are listed without secrets; bad input names the field.
	r = s.do(req{method: "GET", path: "/v1/users", admin: true})
	if r.code != 200 || !strings.Contains(string(r.body), `"ada"`) || strings.Contains(string(r.body), "argon2") ||
		strings.Contains(string(r.body), pw) {
		t.Fatalf("GET /v1/users: %s", r)
	}
	for _, tc := range []struct {
		body  map[string]string
		code  int
		field string
	}{
		{map[string]string{"name": "bob", "role": "viewer", "password": "short"}, 400, "password"},
		{map[string]string{"name": "bob", "role": "boss", "password": pw}, 400, "role"},
		{map[string]string{"role": "viewer", "password": pw}, 400, "name"},
		{map[string]string{"name": "ada", "role": "admin", "password": pw}, 409, "name"},
	} {
		r := s.do(req{path: "/v1/users", admin: true, body: jsonBody(t, tc.body)})
		if r.code != tc.code {
			t.Errorf("%v: %s, want %d", tc.body, r, tc.code)
		} else if _, f := r.errorBody(t); f != tc.field {
			t.Errorf("%v: field %q, want %q", tc.body, f, tc.field)
		}
	}

	// Wrong password, wrong code, unknown user: the same 401.
	code := auth.TOTP(secret, s.clock.Now())
	wrongCode := fmt.Sprintf("%06d", (atoi(code)+1)%1000000)
	var bodies []string
	for _, c := range [][3]string{{"ada", pw + "!", code}, {"ada", pw, wrongCode}, {"eve", pw, code}} {
		r := s.login(c[0], c[1], c[2])
		if r.code != 401 {
			t.Fatalf("login %v: %s, want 401", c[0], r)
		}
		bodies = append(bodies, string(r.body))
	}
	if bodies[0] != bodies[1] || bodies[1] != bodies[2] {
		t.Errorf("failed logins differ (a hint which factor failed): %q", bodies)
	}
	for _, c := range []map[string]string{{"password": pw, "code": code}, {"name": "ada", "code": code}, {"name": "ada", "password": pw}} {
		if r := s.do(req{path: "/v1/login", body: jsonBody(t, c)}); r.code != 400 {
			t.Errorf("login %v: %s, want 400", c, r)
		}
	}

	// The right password and code: a session with ada's role.
	r = s.login("ada", pw, code)
	if r.code != 200 {
		t.Fatalf("login: %s", r)
	}
	var sess struct {
		Token   string    `json:"token"`
		Role    string    `json:"role"`
		Expires time.Time `json:"expires"`
	}
	if err := json.Unmarshal(r.body, &sess); err != nil || sess.Role != "viewer" || !strings.HasPrefix(sess.Token, auth.TokenPrefix) {
		t.Fatalf("login answer %s: %v", r, err)
	}
	if d := sess.Expires.Sub(s.clock.Now()); d < 11*time.Hour || d > 12*time.Hour+time.Minute {
		t.Errorf("session lasts %v, want 12h", d)
	}
	if r := s.do(req{method: "GET", path: "/v1/audiences", header: bearer(sess.Token)}); r.code != 200 {
		t.Errorf("viewer session reading audiences: %s", r)
	}
	if r := s.do(req{path: "/v1/sources", header: bearer(sess.Token), body: []byte(`{"name":"x"}`)}); r.code != 403 {
		t.Errorf("viewer session creating a source: %s", r)
	}
	// The same code again: refused, even with the right password.
	if r := s.login("ada", pw, code); r.code != 401 {
		t.Errorf("replayed code: %s, want 401", r)
	}
	// The next step's code works and opens a second session.
	s.clock.Advance(auth.TOTPPeriod)
	r = s.login("ada", pw, auth.TOTP(secret, s.clock.Now()))
	if r.code != 200 {
		t.Fatalf("login with the next code: %s", r)
	}
	var sess2 struct {
		Token string `json:"token"`
	}
	_ = json.Unmarshal(r.body, &sess2)
	// Sessions expire.
	s.clock.Advance(13 * time.Hour)
	if r := s.do(req{method: "GET", path: "/v1/audiences", header: bearer(sess.Token)}); r.code != 401 {
		t.Errorf("session after 13h: %s, want 401", r)
	}
	// Deleting the user ends their sessions.
	r = s.login("ada", pw, auth.TOTP(secret, s.clock.Now()))
	if r.code != 200 {
		t.Fatalf("login: %s", r)
	}
	var sess3 struct {
		Token string `json:"token"`
	}
	_ = json.Unmarshal(r.body, &sess3)
	if r := s.do(req{method: "DELETE", path: "/v1/users/ada", admin: true}); r.code != 204 {
		t.Fatalf("delete user: %s", r)
	}
	if r := s.do(req{method: "GET", path: "/v1/audiences", header: bearer(sess3.Token)}); r.code != 401 {
		t.Errorf("session of a deleted user: %s, want 401", r)
	}
	if r := s.do(req{method: "DELETE", path: "/v1/users/ada", admin: true}); r.code != 404 {
		t.Errorf("delete user twice: %s", r)
	}

	// Throttle per client: 5 failures, then 429 with Retry-After, even for
	// the right credentials; one attempt back after a minute.
	s.clock.Advance(time.Hour) // every bucket full again
	bob := s.createUser("bob", auth.RoleEditor, pw)
	for i := range 5 {
		if r := s.login("bob", "wrong password!", "000000"); r.code != 401 {
			t.Fatalf("failure %d: %s", i+1, r)
		}
	}
	r = s.login("bob", pw, auth.TOTP(bob, s.clock.Now()))
	if r.code != 429 || r.header.Get("Retry-After") != "60" {
		t.Fatalf("6th attempt: %s Retry-After %q, want 429 after 60", r, r.header.Get("Retry-After"))
	}
	s.clock.Advance(time.Minute)
	if r := s.login("bob", pw, auth.TOTP(bob, s.clock.Now())); r.code != 200 {
		t.Fatalf("after a minute: %s", r)
	}

	// Throttle per name: failures from many addresses lock the name, not
	// other names.
	s.clock.Advance(time.Hour)
	s.createUser("cy", auth.RoleViewer, pw)
	loginFrom := func(addr, name string) *httptest.ResponseRecorder {
		hr := httptest.NewRequest("POST", "/v1/login", bytes.NewReader(jsonBody(t, map[string]string{"name": name, "password": "nope nope nope", "code": "123456"})))
		hr.RemoteAddr = addr
		w := httptest.NewRecorder()
		s.srv.ServeHTTP(w, hr)
		return w
	}
	for i := range 5 {
		if w := loginFrom(fmt.Sprintf("10.0.0.%d:1234", i), "cy"); w.Code != 401 {
			t.Fatalf("name failure %d: %d %s", i, w.Code, w.Body)
		}
	}
	if w := loginFrom("10.0.1.1:1234", "cy"); w.Code != 429 || w.Header().Get("Retry-After") == "" {
		t.Fatalf("6th failure for the name from a new address: %d %s", w.Code, w.Body)
	}
	if w := loginFrom("10.0.1.2:1234", "dee"); w.Code != 401 {
		t.Fatalf("another name from a new address: %d %s", w.Code, w.Body)
	}
}

func atoi(s string) int {
	n := 0
	for _, c := range s {
		n = n*10 + int(c-'0')
	}
	return n
}

// TestIngestRateLimit: each write key gets IngestRate events/s with a
// burst; over it the tracking routes and /v1/import answer 429 with
// Retry-After and count the refused events; other sources are unaffected.
func TestIngestRateLimit(t *testing.T) {
	clock := &testClock{frozen: time.Now()}
	s := newAccessServerClock(t, clock, func(o *api.Options) { o.IngestRate = 10; o.IngestBurst = 20 })
	crm, err := s.e.Gate().CreateSource(context.Background(), "crm")
	if err != nil {
		t.Fatal(err)
	}
	batch := func(n int) []byte {
		var evs []string
		for i := range n {
			evs = append(evs, fmt.Sprintf(`{"type":"track","userId":"u%d","event":"E","messageId":"m%d-%d"}`, i, n, i))
		}
		return []byte(`{"batch":[` + strings.Join(evs, ",") + `]}`)
	}
	steps := []struct {
		name    string
		advance time.Duration
		r       req
		code    int
		retry   string
	}{
		{"15 of the burst of 20", 0, req{path: "/v1/batch", key: s.webKey, body: batch(15)}, 200, ""},
		{"5 more", 0, req{path: "/v1/batch", key: s.webKey, body: batch(5)}, 200, ""},
		{"bucket empty: batch", 0, req{path: "/v1/batch", key: s.webKey, body: batch(5)}, 429, "1"},
		{"bucket empty: single", 0, req{path: "/v1/track", key: s.webKey, body: track(1)}, 429, "1"},
		{"bucket empty: import (same source)", 0, req{path: "/v1/import/web", admin: true, body: batch(1)}, 429, "1"},
		{"another source has its own bucket", 0, req{path: "/v1/batch", key: crm, body: batch(20)}, 200, ""},
		{"10 events after a second", time.Second, req{path: "/v1/batch", key: s.webKey, body: batch(10)}, 200, ""},
		{"a big batch waits for a full bucket", 0, req{path: "/v1/batch", key: s.webKey, body: batch(30)}, 429, "2"},
		{"a full bucket takes a batch over the burst", 2 * time.Second, req{path: "/v1/batch", key: s.webKey, body: batch(30)}, 200, ""},
		{"single after 100ms", 100 * time.Millisecond, req{path: "/v1/track", key: s.webKey, body: track(2)}, 200, ""},
	}
	for _, st := range steps {
		clock.Advance(st.advance)
		r := s.do(st.r)
		if r.code != st.code || r.header.Get("Retry-After") != st.retry {
			t.Fatalf("%s: %s Retry-After %q, want %d %q", st.name, r, r.header.Get("Retry-After"), st.code, st.retry)
		}
	}
	m := s.do(req{method: "GET", path: "/metrics", admin: true})
	for _, want := range []string{`aurum_ingest_rate_limited_events_total{source="web"} 37`} {
		if !strings.Contains(string(m.body), want) {
			t.Errorf("metrics lack %s", want)
		}
	}
	if strings.Contains(string(m.body), `aurum_ingest_rate_limited_events_total{source="crm"}`) {
		t.Error("crm was limited")
	}
}

// TestSecretsNotLogged: across token creation and use, user creation,
// login, a bad login and ingest, the debug log of the engine and the API
// holds no token secret, password, TOTP secret or code, or write key.
func TestSecretsNotLogged(t *testing.T) {
	s := newAccessServer(t, func(o *api.Options) { o.IngestRate = 1000 })
	const pw = "correct horse battery staple"
	secret, _ := s.createToken("ci", "admin", "1h")
	r := s.do(req{path: "/v1/sources", header: bearer(secret), body: []byte(`{"name":"crm"}`)})
	var src struct {
		WriteKey string `json:"write_key"`
	}
	if r.code != 201 || json.Unmarshal(r.body, &src) != nil || src.WriteKey == "" {
		t.Fatalf("create source: %s", r)
	}
	if r := s.do(req{path: "/v1/track", key: src.WriteKey, body: track(1)}); r.code != 200 {
		t.Fatalf("track: %s", r)
	}
	if r := s.do(req{path: "/v1/track", key: src.WriteKey + "x", body: track(2)}); r.code != 401 {
		t.Fatalf("track with a bad key: %s", r)
	}
	r = s.do(req{path: "/v1/users", header: bearer(secret), body: jsonBody(t, map[string]string{"name": "ada", "role": "viewer", "password": pw})})
	var u struct {
		URI string `json:"otpauth_uri"`
	}
	if r.code != 201 || json.Unmarshal(r.body, &u) != nil {
		t.Fatalf("create user: %s", r)
	}
	totp, _ := auth.TOTPSecretFromURI(u.URI)
	code := auth.TOTP(totp, s.clock.Now())
	if r := s.login("ada", pw+"x", code); r.code != 401 {
		t.Fatalf("bad login: %s", r)
	}
	r = s.login("ada", pw, code)
	var sess struct {
		Token string `json:"token"`
	}
	if r.code != 200 || json.Unmarshal(r.body, &sess) != nil {
		t.Fatalf("login: %s", r)
	}
	if r := s.do(req{method: "GET", path: "/v1/audiences", header: bearer(sess.Token)}); r.code != 200 {
		t.Fatalf("session use: %s", r)
	}
	if r := s.do(req{method: "GET", path: "/v1/sources", header: bearer(sess.Token + "x")}); r.code != 401 {
		t.Fatalf("bad session: %s", r)
	}
	logs := s.logs.String()
	for _, want := range []string{"login failed", "api: login", "token created", "user created"} {
		if !strings.Contains(logs, want) {
			t.Errorf("log lacks %q: is the log captured?", want)
		}
	}
	u32 := strings.SplitN(strings.SplitN(u.URI, "secret=", 2)[1], "&", 2)[0]
	for name, secret := range map[string]string{"admin token": adminToken, "api token": secret, "session": sess.Token,
		"password": pw, "totp secret": u32, "write key": src.WriteKey, "web write key": s.webKey,
		"otpauth uri": u.URI} {
		if strings.Contains(logs, secret) {
			t.Errorf("the log shows the %s", name)
		}
	}
	// A 6-digit code may occur by chance inside numbers; a logged code would be a value.
	for _, form := range []string{`"` + code + `"`, "=" + code + " ", "=" + code + "\n"} {
		if strings.Contains(logs, form) {
			t.Errorf("the log shows the TOTP code as %q", form)
		}
	}
}
