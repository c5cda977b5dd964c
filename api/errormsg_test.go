package api_test

import (
	"net/http"
	"regexp"
	"testing"
)

// TestErrorMessagesWithoutPackagePrefixes: error answers say what was
// wrong without the internal package prefixes of the errors they came
// from (they said "engine: not found: ..." and "engine: invalid:
// activation: destination ...").
func TestErrorMessagesWithoutPackagePrefixes(t *testing.T) {
	s := newTestServer(t)
	internal := regexp.MustCompile(`\b(engine|activation|projections|invalid|ulid): `)
	for _, tc := range []struct {
		r    req
		code int
		want string
	}{
		{req{method: http.MethodDelete, path: "/v1/audiences/nope", admin: true}, http.StatusNotFound, `not found: audience "nope"`},
		{req{method: http.MethodGet, path: "/v1/profiles/email:nobody@example.com", admin: true}, http.StatusNotFound, "not found"},
		{req{method: http.MethodDelete, path: "/v1/destinations/nope", admin: true}, http.StatusNotFound, "nope"},
		{req{path: "/v1/destinations", admin: true, body: []byte(`{"name":"d","url":"ftp://x","secret":"0123456789abcdef0123","audiences":["a"],"channel":"email"}`)},
			http.StatusBadRequest, "destination d"},
		{req{method: http.MethodGet, path: "/v1/privacy/erasures/nope", admin: true}, http.StatusBadRequest, `"nope" is not an erasure id`},
		{req{method: http.MethodGet, path: "/v1/profiles/profile_id:nope", admin: true}, http.StatusBadRequest, `"nope" is not a profile id`},
		{req{path: "/v1/audiences", admin: true, body: []byte(`{"name":"Bad Name!","rule":"count(\"E\") >= 1"}`)}, http.StatusBadRequest, `name "Bad Name!"`},
	} {
		r := s.do(tc.r)
		if r.code != tc.code {
			t.Errorf("%s %s: %s, want %d", tc.r.method, tc.r.path, r, tc.code)
			continue
		}
		msg, _ := r.errorBody(t)
		if internal.MatchString(msg) || !regexp.MustCompile(regexp.QuoteMeta(tc.want)).MatchString(msg) {
			t.Errorf("%s %s: message %q, want %q without internal prefixes", tc.r.method, tc.r.path, msg, tc.want)
		}
	}
}
