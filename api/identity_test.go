package api_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/aurumcdp/aurum/api"
	"github.com/aurumcdp/aurum/engine"
	"github.com/aurumcdp/aurum/engine/matching"
	"github.com/aurumcdp/aurum/internal/testnode"
	"github.com/aurumcdp/aurum/projections/identity"
	"github.com/aurumcdp/aurum/projections/match"
	"github.com/oklog/ulid/v2"
)

// probabilisticConfig is the identity config of the tests: one user_id per
// profile, names and postcode compared.
func probabilisticConfig() *identity.Config {
	cfg := identity.DefaultConfig()
	cfg.Probabilistic = &match.Config{
		Fields:   map[string]match.Comparison{"given_name": match.Name, "surname": match.Name, "postcode": match.Exact},
		Blocking: [][]string{{"surname"}, {"postcode"}},
	}
	return &cfg
}

func newIdentityServer(t *testing.T) *testServer {
	t.Helper()
	return newIdentityServerWith(t, probabilisticConfig())
}

func newIdentityServerWith(t *testing.T, cfg *identity.Config) *testServer {
	t.Helper()
	n := testnode.Start(t, testnode.Options{
		Engine:     engine.Options{MasterKey: bytes.Repeat([]byte{7}, 32), Partitions: 4, Identity: cfg},
		API:        &api.Options{RequestTimeout: 20 * time.Second},
		AdminToken: adminToken,
	})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	key, err := n.Engine.Gate().CreateSource(ctx, "web")
	if err != nil {
		t.Fatalf("CreateSource: %v", err)
	}
	return &testServer{t: t, e: n.Engine, srv: n.API, URL: n.URL, webKey: key}
}

// identify sends an identify call and returns the profile id of ref.
func (s *testServer) identify(body, ref string) []byte {
	s.t.Helper()
	if r := s.do(req{path: "/v1/identify", key: s.webKey, body: []byte(body)}); r.code != http.StatusOK {
		s.t.Fatalf("identify %s: %s", body, r)
	}
	return s.profileID(ref)
}

func (s *testServer) profileID(ref string) []byte {
	s.t.Helper()
	p := s.waitProfile(ref)
	u, err := ulid.ParseStrict(p["profile_id"].(string))
	if err != nil {
		s.t.Fatal(err)
	}
	return u[:]
}

func (s *testServer) propose(a, b []byte, p float64) matching.Review {
	s.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	rv, err := s.e.Matching().Propose(ctx, a, b, match.Decision{Probability: p, Weight: 9.5, Contributions: []match.Contribution{
		{Field: "given_name", Level: "exact", Weight: 6.25}, {Field: "postcode", Level: "exact", Weight: 7.5}, {Field: "surname", Level: "jw_0.88", Weight: 3.5},
	}}, "model-1")
	if err != nil {
		s.t.Fatal(err)
	}
	return rv
}

func (s *testServer) explain(ref string) matching.Explanation {
	s.t.Helper()
	r := s.do(req{method: "GET", path: "/v1/profiles/" + ref + "/identity", admin: true})
	if r.code != http.StatusOK {
		s.t.Fatalf("explain %s: %s", ref, r)
	}
	var ex matching.Explanation
	if err := json.Unmarshal(r.body, &ex); err != nil {
		s.t.Fatal(err)
	}
	return ex
}

func (s *testServer) reviews() []matching.Review {
	s.t.Helper()
	r := s.do(req{method: "GET", path: "/v1/identity/reviews", admin: true})
	if r.code != http.StatusOK {
		s.t.Fatalf("reviews: %s", r)
	}
	var out struct{ Reviews []matching.Review }
	if err := json.Unmarshal(r.body, &out); err != nil {
		s.t.Fatal(err)
	}
	return out.Reviews
}

func (s *testServer) decide(id, decision string) resp {
	s.t.Helper()
	return s.do(req{path: "/v1/identity/reviews/" + id, admin: true, body: []byte(fmt.Sprintf(`{"decision":%q}`, decision))})
}

func sameProfile(t *testing.T, s *testServer, a, b string) bool {
	t.Helper()
	_, pa := s.profile(a)
	_, pb := s.profile(b)
	return pa["profile_id"] == pb["profile_id"]
}

// TestIdentityExplainReviewConstraints is must-show 4 of issue #13: the
// explanation's content (an event link with its shared identifier, a
// probabilistic link with probability and per-field contributions), the
// review queue (accept, reject, a rejected pair never merged again) and
// hard constraints beating a high probability.
func TestIdentityExplainReviewConstraints(t *testing.T) {
	s := newIdentityServer(t)
	alice := s.identify(`{"userId":"u-alice","traits":{"given_name":"Alice","surname":"Smith","postcode":"2600"}}`, "user_id:u-alice")
	bob := s.identify(`{"userId":"u-bob","traits":{"given_name":"Alice","surname":"Smith","postcode":"2600"}}`, "user_id:u-bob")
	alice2 := s.identify(`{"anonymousId":"a-alice2","traits":{"given_name":"Alice","surname":"Smyth","postcode":"2600"}}`, "anonymous_id:a-alice2")

	// Hard constraint: two user_ids never merge, whatever the probability.
	if rv := s.propose(alice, bob, 0.999999); rv.Status != "refused" || !strings.Contains(rv.Reason, "user_id") {
		t.Fatalf("two user_ids: %+v", rv)
	}
	if sameProfile(t, s, "user_id:u-alice", "user_id:u-bob") {
		t.Fatal("two user_ids merged")
	}

	// Auto merge, and an event link.
	if rv := s.propose(alice2, alice, 0.995); rv.Status != "merged" {
		t.Fatalf("auto merge: %+v", rv)
	}
	s.identify(`{"anonymousId":"a-cookie","traits":{"plan":"pro"}}`, "anonymous_id:a-cookie")
	if r := s.do(req{path: "/v1/track", key: s.webKey, body: []byte(`{"userId":"u-alice","anonymousId":"a-cookie","event":"Signed In","messageId":"m-link"}`)}); r.code != 200 {
		t.Fatalf("track: %s", r)
	}
	var ex matching.Explanation
	deadline := time.Now().Add(30 * time.Second)
	for {
		ex = s.explain("anonymous_id:a-alice2")
		if len(ex.Links) == 2 || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if ex.ProfileID != ulid.ULID(alice).String() {
		t.Fatalf("profile %s, want alice's %s", ex.ProfileID, ulid.ULID(alice).String())
	}
	for _, typ := range []string{"user_id", "anonymous_id"} {
		if len(ex.Identifiers[typ]) == 0 {
			t.Fatalf("identifiers %v lack %s", ex.Identifiers, typ)
		}
	}
	if got := len(ex.Identifiers["anonymous_id"]); got != 2 {
		t.Fatalf("anonymous_ids = %d, want a-alice2 and a-cookie", got)
	}
	if len(ex.Links) != 2 {
		t.Fatalf("links = %+v, want the match and the event", ex.Links)
	}
	pl, el := ex.Links[0], ex.Links[1]
	if pl.Cause != "probabilistic" || pl.Match == nil || pl.Match.Probability != 0.995 || pl.Match.ModelVersion != "model-1" ||
		pl.From != ulid.ULID(alice2).String() || pl.Into != ex.ProfileID {
		t.Fatalf("probabilistic link = %+v", pl)
	}
	want := map[string]float64{"given_name": 6.25, "postcode": 7.5, "surname": 3.5}
	if len(pl.Match.Contributions) != 3 {
		t.Fatalf("contributions = %+v", pl.Match.Contributions)
	}
	for _, c := range pl.Match.Contributions {
		if want[c.Field] != c.Weight || c.Level == "" {
			t.Fatalf("contribution %+v, want weight %v", c, want[c.Field])
		}
	}
	if el.Cause != "event" || el.IdentifierType != "anonymous_id" || el.EventID == "" || el.Match != nil || el.Into != ex.ProfileID {
		t.Fatalf("event link = %+v", el)
	}

	// Review: reject, then never merged automatically again.
	c1 := s.identify(`{"anonymousId":"c1","traits":{"given_name":"Carol","surname":"Jones"}}`, "anonymous_id:c1")
	c2 := s.identify(`{"anonymousId":"c2","traits":{"given_name":"Carole","surname":"Jones"}}`, "anonymous_id:c2")
	rv := s.propose(c1, c2, 0.9)
	if rv.Status != "pending" {
		t.Fatalf("review: %+v", rv)
	}
	q := s.reviews()
	if len(q) != 1 || q[0].ID != rv.ID || len(q[0].Contributions) != 3 || q[0].ProfileA != ulid.ULID(c1).String() {
		t.Fatalf("queue = %+v", q)
	}
	if r := s.decide(rv.ID, "maybe"); r.code != http.StatusBadRequest {
		t.Fatalf("bad decision: %s", r)
	} else if _, field := r.errorBody(t); field != "decision" {
		t.Fatalf("bad decision names field %q", field)
	}
	if r := s.decide(ulid.Make().String(), "merge"); r.code != http.StatusNotFound {
		t.Fatalf("unknown review: %s", r)
	}
	r := s.decide(rv.ID, "reject")
	if r.code != http.StatusOK || !strings.Contains(string(r.body), `"status":"rejected"`) {
		t.Fatalf("reject: %s", r)
	}
	if r := s.decide(rv.ID, "merge"); r.code != http.StatusBadRequest {
		t.Fatalf("decided twice: %s", r)
	}
	if q := s.reviews(); len(q) != 0 {
		t.Fatalf("queue after the decision = %+v", q)
	}
	if rv := s.propose(c2, c1, 1); rv.Status != "refused" || !strings.Contains(rv.Reason, "rejected") {
		t.Fatalf("rejected pair proposed again: %+v", rv)
	}
	if sameProfile(t, s, "anonymous_id:c1", "anonymous_id:c2") {
		t.Fatal("rejected pair merged")
	}

	// Review: accept.
	d1 := s.identify(`{"anonymousId":"d1","traits":{"given_name":"Dave","surname":"Brown"}}`, "anonymous_id:d1")
	d2 := s.identify(`{"anonymousId":"d2","traits":{"given_name":"David","surname":"Brown"}}`, "anonymous_id:d2")
	rv = s.propose(d2, d1, 0.85)
	if rv.Status != "pending" {
		t.Fatalf("review: %+v", rv)
	}
	if r := s.decide(rv.ID, "merge"); r.code != http.StatusOK || !strings.Contains(string(r.body), `"status":"merged"`) {
		t.Fatalf("accept: %s", r)
	}
	if !sameProfile(t, s, "anonymous_id:d1", "anonymous_id:d2") {
		t.Fatal("accepted pair not merged")
	}
	ex = s.explain("anonymous_id:d2")
	if len(ex.Links) != 1 || ex.Links[0].Match == nil || ex.Links[0].Match.Decision != "merge" || ex.Links[0].Match.Reviewer == "" {
		t.Fatalf("accepted link = %+v", ex.Links)
	}
	// A reviewer cannot override a hard constraint either.
	rv = s.propose(alice, bob, 0.85)
	if rv.Status != "refused" {
		t.Fatalf("queued despite the user_id limit: %+v", rv)
	}
	if r := s.do(req{method: "GET", path: "/v1/profiles/user_id:nobody/identity", admin: true}); r.code != http.StatusNotFound {
		t.Fatalf("unknown profile: %s", r)
	}
}
