package api_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/aurumcdp/aurum/api"
	"github.com/aurumcdp/aurum/internal/check"
)

// TestSetConsentAPI: PUT /v1/profiles/{ref}/consent states consent through
// the log (source "aurum"); bad bodies and references are JSON 400s naming
// the field.
func TestSetConsentAPI(t *testing.T) {
	s := newTestServer(t)
	if r := s.do(req{path: "/v1/identify", key: s.webKey, body: []byte(`{"userId":"u1","traits":{"email":"ann@example.com"}}`)}); r.code != http.StatusOK {
		t.Fatalf("identify: %s", r)
	}
	r := s.do(req{method: http.MethodPut, path: "/v1/profiles/email:Ann@Example.com/consent", admin: true, body: []byte(`{"email":false,"sms":true}`)})
	if r.code != http.StatusOK {
		t.Fatalf("PUT consent: %s", r)
	}
	check.For(t, 10*time.Second, 10*time.Millisecond, func() error {
		code, p := s.profile("user_id:u1")
		if code != http.StatusOK {
			return fmt.Errorf("profile: %d", code)
		}
		b, _ := json.Marshal(p["consent"])
		var c map[string]struct {
			Granted bool   `json:"granted"`
			Default bool   `json:"default"`
			Source  string `json:"source"`
		}
		if err := json.Unmarshal(b, &c); err != nil {
			return err
		}
		if c["email"].Granted || c["email"].Source != "aurum" || !c["sms"].Granted || !c["push"].Granted || !c["push"].Default {
			return fmt.Errorf("consent %s", b)
		}
		return nil
	})
	for _, tc := range []struct {
		name, path, body string
		code             int
		field            string
	}{
		{"unknown channel", "/v1/profiles/user_id:u1/consent", `{"fax":false}`, http.StatusBadRequest, "fax"},
		{"not a boolean", "/v1/profiles/user_id:u1/consent", `{"email":"no"}`, http.StatusBadRequest, "email"},
		{"empty", "/v1/profiles/user_id:u1/consent", `{}`, http.StatusBadRequest, ""},
		{"not json", "/v1/profiles/user_id:u1/consent", `{"email":`, http.StatusBadRequest, ""},
		{"profile_id ref", "/v1/profiles/profile_id:01ARZ3NDEKTSV4RRFFQ69G5FAV/consent", `{"email":false}`, http.StatusBadRequest, "ref"},
		{"bad ref", "/v1/profiles/nocolon/consent", `{"email":false}`, http.StatusBadRequest, "ref"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := s.do(req{method: http.MethodPut, path: tc.path, admin: true, body: []byte(tc.body)})
			if r.code != tc.code {
				t.Fatalf("got %s, want %d", r, tc.code)
			}
			if _, field := r.errorBody(t); field != tc.field {
				t.Errorf("field %q, want %q (%s)", field, tc.field, r)
			}
		})
	}
	if r := s.do(req{method: http.MethodPut, path: "/v1/profiles/user_id:u1/consent", body: []byte(`{"email":true}`)}); r.code != http.StatusUnauthorized {
		t.Errorf("without the admin token: %s", r)
	}
}

// TestAudienceExportConsent: an export for a channel leaves out the members
// without consent for it and counts them in the trailer; other channels
// and "none" keep them.
func TestAudienceExportConsent(t *testing.T) {
	s, want := exportFixture(t)
	bob := profileIDOf(s, "user_id:u2")
	// Bob withdraws email consent under his email address.
	if r := s.do(req{method: http.MethodPut, path: "/v1/profiles/email:bob@example.com/consent", admin: true, body: []byte(`{"email":false}`)}); r.code != http.StatusOK {
		t.Fatalf("PUT consent: %s", r)
	}
	check.For(t, 10*time.Second, 10*time.Millisecond, func() error {
		_, p := s.profile("user_id:u2")
		if c, _ := p["consent"].(map[string]any)["email"].(map[string]any); c["granted"] != false {
			return fmt.Errorf("consent %v", p["consent"])
		}
		return nil
	})
	for _, tc := range []struct {
		channel  string
		without  string // profile left out
		excluded string
	}{{"email", bob, "1"}, {"push", "", "0"}, {"none", "", "0"}} { // push needs no address; see TestAudienceExportOnlyReachable
		r := s.do(req{method: http.MethodGet, path: "/v1/audiences/buyers/export?format=ndjson&channel=" + tc.channel, admin: true})
		if r.code != http.StatusOK {
			t.Fatalf("export %s: %s", tc.channel, r)
		}
		got := map[string]bool{}
		for _, m := range parseNDJSONExport(t, r.body) {
			got[m.ProfileID] = true
		}
		for id := range want {
			if got[id] == (id == tc.without) {
				t.Errorf("channel %s: member %s exported %v (bob is %s)", tc.channel, id, got[id], bob)
			}
		}
		if x := r.trailer.Get(api.TrailerConsentExcluded); x != tc.excluded {
			t.Errorf("channel %s: trailer %q, want %s", tc.channel, x, tc.excluded)
		}
		if tc.channel == "email" && strings.Contains(string(r.body), "bob@example.com") {
			t.Errorf("channel email: the export holds bob's address")
		}
	}
}
