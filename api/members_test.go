package api_test

import (
	"encoding/json"
	"net/http"
	"slices"
	"testing"
)

// TestAudienceMembersWithIdentifiers: GET .../members?identifiers=true
// pages through the members with each person's identifiers (only profile
// ids before); a bad value is a 400 naming the parameter.
func TestAudienceMembersWithIdentifiers(t *testing.T) {
	s, want := exportFixture(t)
	var emails []string
	cursor, pages := "", 0
	for {
		r := s.do(req{method: http.MethodGet, path: "/v1/audiences/buyers/members?identifiers=true&limit=2&cursor=" + cursor, admin: true})
		var page struct {
			Members []struct {
				ProfileID   string              `json:"profile_id"`
				Identifiers map[string][]string `json:"identifiers"`
			} `json:"members"`
			Next string `json:"next"`
		}
		if r.code != http.StatusOK || json.Unmarshal(r.body, &page) != nil {
			t.Fatalf("members: %s", r)
		}
		pages++
		for _, m := range page.Members {
			w, ok := want[m.ProfileID]
			if !ok || !slices.Equal(m.Identifiers["email"], w.Emails) || !slices.Equal(m.Identifiers["user_id"], w.UserIDs) {
				t.Errorf("member %s: identifiers %v, want emails %v user ids %v", m.ProfileID, m.Identifiers, w.Emails, w.UserIDs)
			}
			emails = append(emails, m.Identifiers["email"]...)
		}
		if page.Next == "" {
			break
		}
		cursor = page.Next
	}
	slices.Sort(emails)
	if pages != 2 || !slices.Equal(emails, []string{"ann@example.com", "bob@example.com", "cy@example.com"}) {
		t.Errorf("%d pages, emails %v", pages, emails)
	}
	r := s.do(req{method: http.MethodGet, path: "/v1/audiences/buyers/members?identifiers=yes", admin: true})
	if _, field := r.errorBody(t); r.code != http.StatusBadRequest || field != "identifiers" {
		t.Errorf("identifiers=yes: %s", r)
	}
}
