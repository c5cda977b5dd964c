package api_test

import (
	"net/http"
	"strings"
	"testing"
)

// TestCreateConnectorDestination: a connector destination's config is
// checked at creation; a bad one answers 400 naming the field, and the
// credentials never come back.
func TestCreateConnectorDestination(t *testing.T) {
	s := newTestServer(t)
	if r := s.do(req{path: "/v1/audiences", admin: true, body: []byte(`{"name":"a","rule":"count(\"Order Completed\") >= 1"}`)}); r.code != http.StatusCreated {
		t.Fatalf("create audience a: %s", r)
	}
	for _, tc := range []struct {
		body, field string
	}{
		{`{"name":"d","kind":"carrier-pigeon","audiences":["a"],"config":{}}`, "kind"},
		{`{"name":"d","kind":"sms","audiences":["a"]}`, "config"},
		{`{"name":"d","kind":"sms","audiences":["a"],"config":{"account_sid":"AC1","auth_token":"t","body":"hi"}}`, "config.from"},
		{`{"name":"d","kind":"sms","audiences":["a"],"config":{"account_sid":"AC1","auth_token":"t","from":"+1","body":"{{.Bad"}}`, "config.body"},
		{`{"name":"d","kind":"hubspot","audiences":["a"],"config":{"access_token":"x","colour":"red"}}`, "config.colour"},
		{`{"name":"d","kind":"meta_audience","audiences":["a","b"],"config":{"access_token":"x","custom_audiences":{"a":"1"}}}`, "config.custom_audiences"},
		{`{"name":"d","kind":"smtp","audiences":["a"],"config":{"host":"mx","from":"a@b","subject":"s","body":"b","tls":"ssl3"}}`, "config.tls"},
		{`{"name":"d","kind":"sms","audiences":["a"],"channel":"email","config":{"account_sid":"AC1","auth_token":"t","from":"+1","body":"hi"}}`, "channel"},
	} {
		r := s.do(req{path: "/v1/destinations", admin: true, body: []byte(tc.body)})
		if r.code != http.StatusBadRequest {
			t.Errorf("%s: %s, want 400", tc.body, r)
			continue
		}
		if _, field := r.errorBody(t); field != tc.field {
			t.Errorf("%s: field %q, want %q (%s)", tc.body, field, tc.field, r)
		}
	}
	r := s.do(req{path: "/v1/destinations", admin: true, body: []byte(`{"name":"texts","kind":"sms","audiences":["a"],
		"config":{"account_sid":"AC1","auth_token":"secret-token-123","from":"+4512345678","body":"hi","api_url":"http://127.0.0.1:9"}}`)})
	if r.code != http.StatusCreated || strings.Contains(r.String(), "secret-token-123") || !strings.Contains(r.String(), `"kind":"sms"`) ||
		!strings.Contains(r.String(), `"channel":"sms"`) {
		t.Fatalf("create: %s", r)
	}
	if r := s.do(req{method: http.MethodGet, path: "/v1/destinations/texts", admin: true}); r.code != http.StatusOK || strings.Contains(r.String(), "secret-token-123") {
		t.Fatalf("get: %s", r)
	}
}
