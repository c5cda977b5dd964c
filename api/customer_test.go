package api_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/aurumcdp/aurum/internal/check"
)

// memberSearch is the answer of GET /v1/audiences/{name}/members?q=...
type memberSearch struct {
	Members []struct {
		ProfileID   string              `json:"profile_id"`
		Identifiers map[string][]string `json:"identifiers"`
	} `json:"members"`
	Next    string `json:"next"`
	Scanned int    `json:"scanned"`
	Exact   bool   `json:"exact"`
}

func searchMembers(t *testing.T, s *testServer, query string) (resp, memberSearch) {
	t.Helper()
	r := s.do(req{method: http.MethodGet, path: "/v1/audiences/buyers/members?" + query, admin: true})
	var m memberSearch
	if r.code == http.StatusOK {
		if err := json.Unmarshal(r.body, &m); err != nil {
			t.Fatalf("%s: %v: %s", query, err, r)
		}
	}
	return r, m
}

// TestAudienceMembersSearch: GET /v1/audiences/{name}/members?q= finds
// members on the server: type:value of a known identifier exactly (through
// the keychain), anything else as a case-blind prefix of any identifier
// value or profile id, paged with next; only members are found.
func TestAudienceMembersSearch(t *testing.T) {
	s, _ := exportFixture(t)
	id := map[string]string{}
	for _, u := range []string{"u1", "u2", "u3", "u4"} {
		id[u] = profileIDOf(s, "user_id:"+u)
	}
	for _, tc := range []struct {
		q     string
		exact bool
		want  []string // user ids
	}{
		{"email:ann@example.com", true, []string{"u1"}},
		{"EMAIL:Ann@Example.com", true, []string{"u1"}}, // normalized as the keychain stores it
		{"user_id:u2", true, []string{"u2"}},
		{"email:dee@example.com", true, nil}, // a person, not a member
		{"bob", false, []string{"u2"}},
		{"B", false, []string{"u2"}},
		{"u", false, []string{"u1", "u2", "u3"}},
		{"anon-", false, []string{"u1"}},
		{"email:c", false, []string{"u3"}},       // no such email: a prefix of emails only
		{"email:u", false, nil},                  // u1..u3 are user ids, not emails
		{"loyalty_id:L;", false, []string{"u2"}}, // external ids too
		{"dee", false, nil},                      // dee is not a member
		{"profile_id:" + id["u3"], true, []string{"u3"}},
		{strings.ToLower(id["u1"][:20]), false, []string{"u1"}},
	} {
		r, m := searchMembers(t, s, "q="+url.QueryEscape(tc.q))
		if r.code != http.StatusOK {
			t.Errorf("q=%s: %s", tc.q, r)
			continue
		}
		var got, want []string
		for _, x := range m.Members {
			got = append(got, x.ProfileID)
		}
		for _, u := range tc.want {
			want = append(want, id[u])
		}
		slices.Sort(got)
		slices.Sort(want)
		if !slices.Equal(got, want) || m.Exact != tc.exact || m.Next != "" {
			t.Errorf("q=%s: members %v exact %v next %q, want %v (%v) exact %v", tc.q, got, m.Exact, m.Next, want, tc.want, tc.exact)
		}
	}

	// Paged: limit 2 of 3 matches, then the rest from next.
	var all []string
	r, m := searchMembers(t, s, "q=u&limit=2&identifiers=true")
	if r.code != http.StatusOK || len(m.Members) != 2 || m.Next == "" {
		t.Fatalf("first page: %s", r)
	}
	for _, x := range m.Members {
		if len(x.Identifiers["user_id"]) != 1 || !strings.HasPrefix(x.Identifiers["user_id"][0], "u") {
			t.Errorf("member %s without its identifiers: %v", x.ProfileID, x.Identifiers)
		}
		all = append(all, x.ProfileID)
	}
	r, m = searchMembers(t, s, "q=u&limit=2&cursor="+m.Next)
	if r.code != http.StatusOK || len(m.Members) != 1 || m.Next != "" {
		t.Fatalf("second page: %s", r)
	}
	all = append(all, m.Members[0].ProfileID)
	slices.Sort(all)
	want := []string{id["u1"], id["u2"], id["u3"]}
	slices.Sort(want)
	if !slices.Equal(all, want) {
		t.Errorf("pages gave %v, want %v", all, want)
	}

	// A bounded scan: one member read per call; the calls, following next,
	// search the whole audience and find bob once.
	var found []string
	calls, empty := 0, 0
	for cursor := ""; calls < 10; {
		r, m := searchMembers(t, s, "q=bob&scan=1&cursor="+cursor)
		calls++
		if r.code != http.StatusOK || m.Scanned > 1 || m.Exact {
			t.Fatalf("scan=1: %s", r)
		}
		for _, x := range m.Members {
			found = append(found, x.ProfileID)
		}
		if len(m.Members) == 0 && m.Next != "" {
			empty++ // nothing in this slice, more to search
		}
		if m.Next == "" {
			break
		}
		cursor = m.Next
	}
	if !slices.Equal(found, []string{id["u2"]}) || calls != 4 || empty != 2 {
		t.Errorf("scan=1 over 3 members: found %v in %d calls (%d empty with a next), want bob in 4 calls, 2 empty", found, calls, empty)
	}
	r, _ = searchMembers(t, s, "q=bob&scan=0")
	if _, field := r.errorBody(t); r.code != http.StatusBadRequest || field != "scan" {
		t.Errorf("scan=0: %s, want 400 naming scan", r)
	}

	for _, q := range []string{"q=", "q=%20", "q=a&q=b"} {
		r, _ := searchMembers(t, s, q)
		if _, field := r.errorBody(t); r.code != http.StatusBadRequest || field != "q" {
			t.Errorf("%s: %s, want 400 naming q", q, r)
		}
	}
	r, _ = searchMembers(t, s, "q=u&cursor=nope")
	if _, field := r.errorBody(t); r.code != http.StatusBadRequest || field != "cursor" {
		t.Errorf("bad cursor: %s, want 400 naming cursor", r)
	}
}

// TestProfileEventsPaged: GET /v1/profiles/{ref}/events pages with a
// cursor: the pages, newest first, join into the whole timeline with no
// event twice or missing; the last page has no next; a bad cursor is a 400.
func TestProfileEventsPaged(t *testing.T) {
	s := newTestServer(t)
	var batch []map[string]any
	batch = append(batch, map[string]any{"type": "identify", "userId": "pager", "traits": map[string]any{"email": "pager@example.com"},
		"timestamp": "2026-01-01T00:00:00Z"})
	for i := range 7 {
		batch = append(batch, map[string]any{"type": "track", "userId": "pager", "event": fmt.Sprintf("Step %d", i),
			"timestamp": time.Date(2026, 1, 1, 0, i+1, 0, 0, time.UTC).Format(time.RFC3339)})
	}
	if r := s.do(req{path: "/v1/batch", key: s.webKey, body: jsonBody(t, map[string]any{"batch": batch})}); r.code != http.StatusOK {
		t.Fatalf("batch: %s", r)
	}
	check.For(t, 30*time.Second, 10*time.Millisecond, func() error {
		if _, p := s.profile("user_id:pager"); totalEvents(p) != 8 {
			return fmt.Errorf("events applied: %v", totalEvents(p))
		}
		return nil
	})
	type page struct {
		Events []map[string]any `json:"events"`
		Next   string           `json:"next"`
	}
	get := func(q string) page {
		t.Helper()
		r := s.do(req{method: http.MethodGet, path: "/v1/profiles/email:pager@example.com/events?" + q, admin: true})
		var p page
		if r.code != http.StatusOK || json.Unmarshal(r.body, &p) != nil {
			t.Fatalf("events?%s: %s", q, r)
		}
		return p
	}
	whole := get("limit=100")
	if len(whole.Events) != 8 || whole.Next != "" {
		t.Fatalf("whole timeline: %d events, next %q", len(whole.Events), whole.Next)
	}
	if whole.Events[0]["event"] != "Step 6" || whole.Events[7]["type"] != "identify" {
		t.Fatalf("not newest first: first %v last %v", whole.Events[0], whole.Events[7])
	}
	var paged []any
	var sizes []int
	cursor := ""
	for range 10 {
		p := get("limit=3&cursor=" + cursor)
		sizes = append(sizes, len(p.Events))
		for _, e := range p.Events {
			paged = append(paged, e["messageId"])
		}
		if p.Next == "" {
			break
		}
		cursor = p.Next
	}
	var want []any
	for _, e := range whole.Events {
		want = append(want, e["messageId"])
	}
	if !slices.Equal(sizes, []int{3, 3, 2}) || !slices.Equal(paged, want) {
		t.Errorf("pages of 3: sizes %v, ids %v, want %v", sizes, paged, want)
	}
	if p := get("limit=8"); p.Next != "" || len(p.Events) != 8 {
		t.Errorf("a page holding the rest: %d events, next %q (want none)", len(p.Events), p.Next)
	}
	for _, q := range []string{"cursor=nope", "cursor=AAAA", "limit=0", "limit=1001"} {
		r := s.do(req{method: http.MethodGet, path: "/v1/profiles/email:pager@example.com/events?" + q, admin: true})
		if _, field := r.errorBody(t); r.code != http.StatusBadRequest || (field != "cursor" && field != "limit") {
			t.Errorf("events?%s: %s, want 400 naming the parameter", q, r)
		}
	}
}

// historyPage is the answer of GET /v1/profiles/{ref}/audience-history.
type historyPage struct {
	History []struct {
		Audience    string    `json:"audience"`
		Event       string    `json:"event"`
		Time        time.Time `json:"time"`
		Reason      string    `json:"reason"`
		RuleVersion int64     `json:"rule_version"`
		Seq         uint64    `json:"seq"`
		ProfileID   string    `json:"profile_id"`
	} `json:"history"`
	Next string `json:"next"`
}

// TestAudienceHistory: GET /v1/profiles/{ref}/audience-history lists a
// person's entries and past exits, newest first, with times, rule versions
// and reasons: entered on an event, exited when the rule changed
// (backfill) and when the audience was deleted; it pages with next.
func TestAudienceHistory(t *testing.T) {
	s, _ := exportFixture(t) // u1..u3 entered buyers on their order
	if r := s.do(req{path: "/v1/audiences", admin: true, body: jsonBody(t, map[string]string{
		"name": "viewers", "rule": `count("Order Completed") >= 1 or count("Product Viewed") >= 1`})}); r.code != http.StatusCreated {
		t.Fatalf("create viewers: %s", r)
	}
	if r := s.do(req{method: http.MethodPut, path: "/v1/audiences/buyers", admin: true, body: jsonBody(t, map[string]string{
		"rule": `count("Order Completed") >= 2`})}); r.code != http.StatusOK {
		t.Fatalf("change buyers: %s", r)
	}
	waitAudienceSize(s, "buyers", 0)
	waitAudienceSize(s, "viewers", 4)
	if r := s.do(req{method: http.MethodDelete, path: "/v1/audiences/viewers", admin: true}); r.code != http.StatusNoContent {
		t.Fatalf("delete viewers: %s", r)
	}
	get := func(ref, q string) historyPage {
		t.Helper()
		r := s.do(req{method: http.MethodGet, path: "/v1/profiles/" + ref + "/audience-history?" + q, admin: true})
		var p historyPage
		if r.code != http.StatusOK || json.Unmarshal(r.body, &p) != nil {
			t.Fatalf("audience-history?%s: %s", q, r)
		}
		return p
	}
	var h historyPage
	check.For(t, 30*time.Second, 20*time.Millisecond, func() error {
		if h = get("email:ann@example.com", "limit=100"); len(h.History) != 4 {
			return fmt.Errorf("%d entries: %+v", len(h.History), h.History)
		}
		return nil
	})
	ann := profileIDOf(s, "user_id:u1")
	type row struct {
		aud, ev, reason string
		version         int64
	}
	var got []row
	for i, e := range h.History {
		reason := e.Reason
		if strings.HasPrefix(reason, "event:") || reason == "events" {
			reason = "event" // one event or a batch of the person's events
		}
		got = append(got, row{e.Audience, e.Event, reason, e.RuleVersion})
		if e.ProfileID != ann || e.Time.IsZero() || e.Seq == 0 {
			t.Errorf("entry %d: %+v", i, e)
		}
		if i > 0 && (e.Time.After(h.History[i-1].Time) || e.Seq > h.History[i-1].Seq) {
			t.Errorf("entry %d is newer than entry %d: %+v", i, i-1, h.History)
		}
	}
	want := []row{
		{"viewers", "exited", "audience deleted", 1},
		{"buyers", "exited", "backfill", 2},
		{"viewers", "entered", "backfill", 1},
		{"buyers", "entered", "event", 1},
	}
	if !slices.Equal(got, want) {
		t.Errorf("ann's history:\n got %+v\nwant %+v", got, want)
	}
	// Pages of one join into the same history.
	var paged []row
	cursor := ""
	for range 10 {
		p := get("user_id:u1", "limit=1&cursor="+cursor)
		for _, e := range p.History {
			reason := e.Reason
			if strings.HasPrefix(reason, "event:") || reason == "events" {
				reason = "event"
			}
			paged = append(paged, row{e.Audience, e.Event, reason, e.RuleVersion})
		}
		if p.Next == "" {
			break
		}
		cursor = p.Next
	}
	if !slices.Equal(paged, want) {
		t.Errorf("paged history:\n got %+v\nwant %+v", paged, want)
	}
	// Dee never bought: she entered and left viewers only.
	if d := get("user_id:u4", ""); len(d.History) != 2 || d.History[0].Audience != "viewers" || d.History[1].Event != "entered" {
		t.Errorf("dee's history: %+v", d.History)
	}
	for _, tc := range []struct{ path, field string }{
		{"/v1/profiles/user_id:u1/audience-history?cursor=nope", "cursor"},
		{"/v1/profiles/user_id:u1/audience-history?limit=x", "limit"},
		{"/v1/profiles/nobody/audience-history", "ref"},
	} {
		r := s.do(req{method: http.MethodGet, path: tc.path, admin: true})
		if _, field := r.errorBody(t); r.code != http.StatusBadRequest || field != tc.field {
			t.Errorf("%s: %s, want 400 naming %s", tc.path, r, tc.field)
		}
	}
	if r := s.do(req{method: http.MethodGet, path: "/v1/profiles/user_id:nobody/audience-history", admin: true}); r.code != http.StatusNotFound {
		t.Errorf("unknown person: %s", r)
	}
}
