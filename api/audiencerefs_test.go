package api_test

import (
	"net/http"
	"strings"
	"testing"
)

// TestAudienceRefsChecked: a rule naming an audience that does not exist
// (in_audience("nope"), always empty) is refused with a 400 on "rule"
// naming it, as is a rule that makes a cycle of audiences; deleting an
// audience that another rule names is refused with a 409 naming that
// audience, and works once nothing names it.
func TestAudienceRefsChecked(t *testing.T) {
	s := newTestServer(t)
	put := func(method, path, body string) resp {
		return s.do(req{method: method, path: path, body: []byte(body), admin: true})
	}
	wantErr := func(r resp, code int, field string, needles ...string) {
		t.Helper()
		if r.code != code {
			t.Fatalf("answer %s, want %d", r, code)
		}
		msg, f := r.errorBody(t)
		if f != field {
			t.Fatalf("field %q, want %q (%s)", f, field, r)
		}
		for _, n := range needles {
			if !strings.Contains(msg, n) {
				t.Fatalf("message %q does not name %q", msg, n)
			}
		}
		if strings.Contains(msg, "engine:") {
			t.Fatalf("message %q shows an internal package prefix", msg)
		}
	}
	wantErr(put("POST", "/v1/audiences", `{"name":"a","rule":"in_audience(\"nope\")"}`), http.StatusBadRequest, "rule", `"nope"`, "does not exist")
	wantErr(put("POST", "/v1/audiences", `{"name":"a","rule":"in_audience(\"a\")"}`), http.StatusBadRequest, "rule", `"a"`)
	if r := put("POST", "/v1/audiences", `{"name":"buyers","rule":"count(\"Order Completed\") >= 1"}`); r.code != http.StatusCreated {
		t.Fatalf("create buyers: %s", r)
	}
	if r := put("POST", "/v1/audiences", `{"name":"vip","rule":"in_audience(\"buyers\") and count(\"Order Completed\") >= 3"}`); r.code != http.StatusCreated {
		t.Fatalf("create vip naming buyers: %s", r)
	}
	// buyers → vip → buyers
	wantErr(put("PUT", "/v1/audiences/buyers", `{"rule":"in_audience(\"vip\")"}`), http.StatusBadRequest, "rule", "cycle", "buyers → vip → buyers")
	wantErr(put("DELETE", "/v1/audiences/buyers", ``), http.StatusConflict, "name", `"buyers"`, `"vip"`)
	if r := s.do(req{method: "GET", path: "/v1/audiences/buyers", admin: true}); r.code != http.StatusOK {
		t.Fatalf("buyers after a refused delete: %s", r)
	}
	if r := put("DELETE", "/v1/audiences/vip", ``); r.code != http.StatusNoContent {
		t.Fatalf("delete vip: %s", r)
	}
	if r := put("DELETE", "/v1/audiences/buyers", ``); r.code != http.StatusNoContent {
		t.Fatalf("delete buyers once nothing names it: %s", r)
	}
}

// TestDestinationAudiencesChecked: a destination naming an audience that
// does not exist is refused with a 400 on "audiences" naming it; deleting
// an audience that destinations deliver is refused with a 409 naming them,
// and works once the destinations are gone.
func TestDestinationAudiencesChecked(t *testing.T) {
	s := newTestServer(t)
	do := func(method, path, body string) resp {
		return s.do(req{method: method, path: path, body: []byte(body), admin: true})
	}
	wantErr := func(r resp, code int, field string, needles ...string) {
		t.Helper()
		if r.code != code {
			t.Fatalf("answer %s, want %d", r, code)
		}
		msg, f := r.errorBody(t)
		if f != field {
			t.Fatalf("field %q, want %q (%s)", f, field, r)
		}
		for _, n := range needles {
			if !strings.Contains(msg, n) {
				t.Fatalf("message %q does not name %q", msg, n)
			}
		}
	}
	if r := do("POST", "/v1/audiences", `{"name":"vip","rule":"count(\"Order Completed\") >= 3"}`); r.code != http.StatusCreated {
		t.Fatalf("create vip: %s", r)
	}
	hook := func(name string, audiences string) string {
		return `{"name":"` + name + `","url":"http://127.0.0.1:9/hook","secret":"0123456789abcdef","channel":"none","audiences":` + audiences + `}`
	}
	sms := `{"name":"texts","kind":"sms","audiences":["vip","nope"],"config":{"account_sid":"AC1","auth_token":"t","from":"+1","body":"hi","api_url":"http://127.0.0.1:9"}}`
	wantErr(do("POST", "/v1/destinations", hook("crm", `["vip","nope","gone"]`)), http.StatusBadRequest, "audiences", `"nope"`, `"gone"`, "do not exist")
	wantErr(do("POST", "/v1/destinations", sms), http.StatusBadRequest, "audiences", `"nope"`, "does not exist")
	if r := do("GET", "/v1/destinations/crm", ""); r.code != http.StatusNotFound {
		t.Fatalf("a refused destination exists: %s", r)
	}
	for _, name := range []string{"crm", "warehouse"} {
		if r := do("POST", "/v1/destinations", hook(name, `["vip"]`)); r.code != http.StatusCreated {
			t.Fatalf("create %s: %s", name, r)
		}
	}
	wantErr(do("DELETE", "/v1/audiences/vip", ""), http.StatusConflict, "name", `"vip"`, `"crm"`, `"warehouse"`, "destinations first")
	if r := do("GET", "/v1/audiences/vip", ""); r.code != http.StatusOK {
		t.Fatalf("vip after a refused delete: %s", r)
	}
	for _, name := range []string{"crm", "warehouse"} {
		if r := do("DELETE", "/v1/destinations/"+name, ""); r.code != http.StatusNoContent {
			t.Fatalf("delete %s: %s", name, r)
		}
	}
	if r := do("DELETE", "/v1/audiences/vip", ""); r.code != http.StatusNoContent {
		t.Fatalf("delete vip once no destination delivers it: %s", r)
	}
}
