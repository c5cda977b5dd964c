package console_test

import (
	"bytes"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/aurumcdp/aurum/api"
	"github.com/aurumcdp/aurum/console"
	"github.com/aurumcdp/aurum/engine"
	"github.com/aurumcdp/aurum/internal/oidctest"
	"github.com/aurumcdp/aurum/internal/testnode"
	"github.com/aurumcdp/aurum/sso"
)

const adminToken = "console-test-admin-token-0123456789"

// startNode starts an in-process node with its API; opts adjust the
// API's options.
func startNode(t *testing.T, opts ...func(*api.Options)) *testnode.Node {
	t.Helper()
	ao := &api.Options{RequestTimeout: 20 * time.Second}
	for _, o := range opts {
		o(ao)
	}
	return testnode.Start(t, testnode.Options{
		// Stats history samples every 200 ms, so that the dashboard's
		// charts have points within a test.
		Engine:     engine.Options{MasterKey: bytes.Repeat([]byte{7}, 32), Partitions: 2, HistoryInterval: 200 * time.Millisecond},
		API:        ao,
		AdminToken: adminToken,
	})
}

// withSSO starts a real OpenID Connect provider (internal/oidctest) with
// three users, ana (role claim admin), vic (viewer) and nob (no role), and signs the API's
// single sign-on in to it.
func withSSO(t *testing.T) (opt func(*api.Options), issuer string) {
	t.Helper()
	p := oidctest.Start(t, oidctest.Options{Users: []oidctest.User{
		{Username: "ana", Password: "pw-ana", Email: "ana@example.com", Claims: map[string]any{"aurum_role": "admin"}},
		{Username: "vic", Password: "pw-vic", Email: "vic@example.com", Claims: map[string]any{"aurum_role": "viewer"}},
		{Username: "nob", Password: "pw-nob", Email: "nob@example.com"}, // no role claim: no access
	}})
	client, err := sso.New(sso.Options{Issuer: p.Issuer, ClientID: p.ClientID, ClientSecret: p.ClientSecret, RoleClaim: "aurum_role"})
	if err != nil {
		t.Fatal(err)
	}
	return func(o *api.Options) { o.SSO = client }, p.Issuer
}

// serveConsole serves the console in front of n's API, as aurum serve
// does, and returns its base URL.
func serveConsole(t *testing.T, n *testnode.Node) string {
	t.Helper()
	h, err := console.New(console.Options{API: n.API})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv.URL
}
