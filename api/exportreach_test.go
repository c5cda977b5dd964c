package api_test

import (
	"net/http"
	"slices"
	"testing"

	"github.com/aurumcdp/aurum/api"
)

// TestAudienceExportOnlyReachable: an export for a channel holds only the
// members reachable on it, with consent AND an address for it (an email
// export listed people without an email address before); its trailers
// count the members exported and those left out, per reason.
func TestAudienceExportOnlyReachable(t *testing.T) {
	s := newTestServer(t)
	if r := s.do(req{path: "/v1/audiences", admin: true, body: jsonBody(t, map[string]string{
		"name": "buyers", "rule": `count("Order Completed") >= 1`})}); r.code != http.StatusCreated {
		t.Fatalf("create audience: %s", r)
	}
	batch := []map[string]any{
		// reachable by email
		{"type": "identify", "userId": "u1", "messageId": "i1", "traits": map[string]any{"email": "ann@example.com"}},
		// no address at all for email or sms
		{"type": "identify", "userId": "u2", "messageId": "i2", "traits": map[string]any{"name": "Bob"}},
		// an email address, but no consent for email; a phone number
		{"type": "identify", "userId": "u3", "messageId": "i3", "traits": map[string]any{"email": "cy@example.com", "phone": "+4512345678",
			"consent": map[string]any{"email": false}}},
	}
	for _, u := range []string{"u1", "u2", "u3"} {
		batch = append(batch, map[string]any{"type": "track", "userId": u, "event": "Order Completed", "messageId": "o-" + u})
	}
	if r := s.do(req{path: "/v1/batch", key: s.webKey, body: jsonBody(t, map[string]any{"batch": batch})}); r.code != http.StatusOK {
		t.Fatalf("batch: %s", r)
	}
	waitAudienceSize(s, "buyers", 3)
	for _, tt := range []struct {
		channel                        string
		exported, noConsent, noAddress string
		wantIDs                        []string
	}{
		{"email", "1", "1", "1", []string{"u1"}},
		{"sms", "1", "0", "2", []string{"u3"}},
		{"none", "3", "0", "0", []string{"u1", "u2", "u3"}},
		{"web", "3", "0", "0", []string{"u1", "u2", "u3"}}, // no address needed
	} {
		r := s.do(req{method: http.MethodGet, path: "/v1/audiences/buyers/export?format=json&channel=" + tt.channel, admin: true})
		if r.code != http.StatusOK {
			t.Fatalf("export %s: %s", tt.channel, r)
		}
		var got []string
		for _, m := range parseJSONExport(t, r.body) {
			got = append(got, m.UserIDs...)
		}
		slices.Sort(got)
		if !slices.Equal(got, tt.wantIDs) {
			t.Errorf("channel %s exported %v, want %v", tt.channel, got, tt.wantIDs)
		}
		for k, want := range map[string]string{api.TrailerExported: tt.exported, api.TrailerConsentExcluded: tt.noConsent, api.TrailerNoAddressExcluded: tt.noAddress} {
			if v := r.trailer.Get(k); v != want {
				t.Errorf("channel %s: trailer %s = %q, want %q", tt.channel, k, v, want)
			}
		}
	}
}
