package api_test

import (
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
	"testing"
)

// TestManagementAuth: every management and look-up route needs the admin
// bearer token.
func TestManagementAuth(t *testing.T) {
	s := newTestServer(t)
	routes := []struct{ method, path, body string }{
		{"POST", "/v1/sources", `{"name":"crm"}`},
		{"GET", "/v1/sources", ""},
		{"GET", "/v1/profiles/user_id:x", ""},
		{"GET", "/v1/profiles/user_id:x/events", ""},
		{"GET", "/v1/deadletters", ""},
		{"POST", "/v1/import/web", `{"batch":[]}`},
	}
	auths := []struct{ name, header, reason string }{
		{"none", "", "missing bearer token"},
		{"bad token", "Bearer not-the-admin-token", "invalid token"},
		{"empty bearer", "Bearer ", "missing bearer token"},
		{"lower-case scheme", "bearer " + adminToken, "missing bearer token"},
		{"write key as basic", basic(s.webKey), "missing bearer token"},
		{"token as basic user", basic(adminToken), "missing bearer token"},
	}
	for _, rt := range routes {
		for _, a := range auths {
			t.Run(rt.method+" "+rt.path+"/"+a.name, func(t *testing.T) {
				r := req{method: rt.method, path: rt.path}
				if rt.body != "" {
					r.body = []byte(rt.body)
				}
				if a.header != "" {
					r.header = map[string]string{"Authorization": a.header}
				}
				res := s.do(r)
				if res.code != http.StatusUnauthorized {
					t.Fatalf("got %s, want 401", res)
				}
				msg, field := res.errorBody(t)
				if field != "Authorization" || !strings.Contains(msg, a.reason) {
					t.Errorf("error %q field %q, want %q", msg, field, a.reason)
				}
				if !strings.HasPrefix(res.header.Get("WWW-Authenticate"), "Bearer") {
					t.Errorf("WWW-Authenticate = %q", res.header.Get("WWW-Authenticate"))
				}
			})
		}
	}
	// Nothing was created by the refused requests.
	r := s.do(req{method: "GET", path: "/v1/sources", admin: true})
	if r.code != 200 || strings.Contains(string(r.body), "crm") {
		t.Errorf("GET /v1/sources: %s, want only web", r)
	}
}

// TestCreateSourceBadInput: bad JSON, missing, invalid and duplicate names.
func TestCreateSourceBadInput(t *testing.T) {
	s := newTestServer(t)
	cases := []struct {
		name, body string
		want       int
		field      string
	}{
		{"not JSON", `name=crm`, 400, ""},
		{"empty body", ``, 400, ""},
		{"array", `["crm"]`, 400, ""},
		{"name not a string", `{"name":42}`, 400, "name"},
		{"missing name", `{}`, 400, "name"},
		{"null name", `{"name":null}`, 400, "name"},
		{"empty name", `{"name":""}`, 400, "name"},
		{"space", `{"name":"Web Site"}`, 400, "name"},
		{"upper case", `{"name":"Web"}`, 400, "name"},
		{"dot", `{"name":"a.b"}`, 400, "name"},
		{"wildcard", `{"name":"a*"}`, 400, "name"},
		{"subject wildcard", `{"name":">"}`, 400, "name"},
		{"leading dash", `{"name":"-web"}`, 400, "name"},
		{"too long", `{"name":"` + strings.Repeat("a", 65) + `"}`, 400, "name"},
		{"duplicate", `{"name":"web"}`, 409, "name"},
		{"too large", `{"name":"` + strings.Repeat("a", 5000) + `"}`, 413, ""},
		{"longest name", `{"name":"` + strings.Repeat("a", 64) + `"}`, 201, ""},
		{"ok", `{"name":"crm_2-x"}`, 201, ""},
		{"duplicate of new", `{"name":"crm_2-x"}`, 409, "name"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := s.do(req{path: "/v1/sources", body: []byte(c.body), admin: true})
			if r.code != c.want {
				t.Fatalf("got %s, want %d", r, c.want)
			}
			if c.want == 201 {
				var out struct{ Name, Write_Key string }
				if err := json.Unmarshal(r.body, &out); err != nil || out.Write_Key == "" {
					t.Fatalf("answer %s: want name and write_key", r)
				}
				// The new key works at once.
				tr := s.do(req{path: "/v1/track", key: out.Write_Key, body: []byte(`{"userId":"src-u","event":"E"}`)})
				if tr.code != 200 {
					t.Errorf("track with the new key: %s", tr)
				}
				return
			}
			if _, field := r.errorBody(t); field != c.field {
				t.Errorf("field %q, want %q", field, c.field)
			}
		})
	}
	r := s.do(req{method: "GET", path: "/v1/sources", admin: true})
	var list struct {
		Sources []struct{ Name string } `json:"sources"`
	}
	if err := json.Unmarshal(r.body, &list); err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, src := range list.Sources {
		names = append(names, src.Name)
	}
	if got, want := strings.Join(names, ","), strings.Repeat("a", 64)+",crm_2-x,web"; got != want {
		t.Errorf("sources %s, want %s", got, want)
	}
}

// TestLookupBadInput: unknown and malformed profile references, and bad
// limits.
func TestLookupBadInput(t *testing.T) {
	s := newTestServer(t)
	if r := s.do(req{path: "/v1/identify", key: s.webKey, body: []byte(`{"userId":"lk-1","traits":{"email":"lk@example.com"}}`)}); r.code != 200 {
		t.Fatalf("identify: %s", r)
	}
	s.waitProfile("user_id:lk-1")
	cases := []struct {
		path  string
		want  int
		field string
	}{
		{"/v1/profiles/user_id:lk-1", 200, ""},
		{"/v1/profiles/email:LK@Example.com", 200, ""},
		{"/v1/profiles/USER_ID:lk-1", 200, ""},
		{"/v1/profiles/user_id:nobody", 404, "ref"},
		{"/v1/profiles/email:nobody@example.com", 404, "ref"},
		{"/v1/profiles/loyalty_id:L-0", 404, "ref"},
		{"/v1/profiles/profile_id:01ARZ3NDEKTSV4RRFFQ69G5FAV", 404, "ref"},
		{"/v1/profiles/nocolon", 400, "ref"},
		{"/v1/profiles/:lk-1", 400, "ref"},
		{"/v1/profiles/user_id:", 400, "ref"},
		{"/v1/profiles/user_id:%20%20", 400, "ref"},
		{"/v1/profiles/profile_id:not-a-ulid", 400, "ref"},
		{"/v1/profiles/user_id:lk-1/events", 200, ""},
		{"/v1/profiles/user_id:lk-1/events?limit=1", 200, ""},
		{"/v1/profiles/user_id:lk-1/events?limit=1000", 200, ""},
		{"/v1/profiles/user_id:lk-1/events?limit=0", 400, "limit"},
		{"/v1/profiles/user_id:lk-1/events?limit=-1", 400, "limit"},
		{"/v1/profiles/user_id:lk-1/events?limit=1001", 400, "limit"},
		{"/v1/profiles/user_id:lk-1/events?limit=ten", 400, "limit"},
		{"/v1/profiles/user_id:lk-1/events?limit=99999999999999999999", 400, "limit"},
		{"/v1/profiles/user_id:nobody/events", 404, "ref"},
		{"/v1/profiles/nocolon/events", 400, "ref"},
		{"/v1/deadletters?limit=0", 400, "limit"},
		{"/v1/deadletters?limit=1001", 400, "limit"},
		{"/v1/deadletters?from=0", 400, "from"},
		{"/v1/deadletters?from=-3", 400, "from"},
		{"/v1/deadletters?from=x", 400, "from"},
		{"/v1/deadletters?from=1&limit=1", 200, ""},
	}
	for _, c := range cases {
		t.Run(c.path, func(t *testing.T) {
			r := s.do(req{method: "GET", path: c.path, admin: true})
			if r.code != c.want {
				t.Fatalf("got %s, want %d", r, c.want)
			}
			if c.want != 200 {
				if _, field := r.errorBody(t); field != c.field {
					t.Errorf("field %q, want %q", field, c.field)
				}
			}
		})
	}
}

// TestImportBadInput: /v1/import/{source} refuses unknown or invalid
// sources and reports rejected rows like /v1/batch.
func TestImportBadInput(t *testing.T) {
	s := newTestServer(t)
	cases := []struct {
		name, path, body string
		want             int
		field            string
	}{
		{"unknown source", "/v1/import/nosuch", `{"batch":[{"type":"identify","userId":"imp-x"}]}`, 404, "source"},
		{"invalid source name", "/v1/import/Bad.Name", `{"batch":[]}`, 400, "source"},
		{"not JSON", "/v1/import/web", `userId,email`, 400, ""},
		{"only invalid rows", "/v1/import/web", `{"batch":[{"type":"track","userId":"imp-x"}]}`, 400, ""},
		{"ok", "/v1/import/web", `{"batch":[{"type":"identify","userId":"imp-1"},{"type":"track","userId":"imp-x"}]}`, 200, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := s.do(req{path: c.path, body: []byte(c.body), admin: true})
			if r.code != c.want {
				t.Fatalf("got %s, want %d", r, c.want)
			}
			if c.name == "only invalid rows" || c.want == 200 {
				var a batchAnswer
				if err := json.Unmarshal(r.body, &a); err != nil || len(a.Rejected) != 1 || a.Rejected[0].Field != "event" {
					t.Errorf("answer %s: want one rejected row (event)", r)
				}
				return
			}
			if _, field := r.errorBody(t); field != c.field {
				t.Errorf("field %q, want %q", field, c.field)
			}
		})
	}
	s.waitProfile("user_id:imp-1")
	if code, _ := s.profile("user_id:imp-x"); code != 404 {
		t.Errorf("user_id:imp-x: %d, want 404", code)
	}
	// A write key is not an admin token.
	if r := s.do(req{path: "/v1/import/web", key: s.webKey, body: []byte(`{"batch":[]}`)}); r.code != 401 {
		t.Errorf("import with a write key: %s, want 401", r)
	}
}

// TestDeadLettersPaging: every dead letter carries its stream sequence and
// the answer the start of the next page, so a client can read them all.
func TestDeadLettersPaging(t *testing.T) {
	s := newTestServer(t)
	for i := range 5 {
		body := []byte(`{"userId":"dl-u","messageId":"dl-` + string(rune('a'+i)) + `"}`)
		if r := s.do(req{path: "/v1/track", key: s.webKey, body: body}); r.code != 400 {
			t.Fatalf("invalid track: %s", r)
		}
	}
	type page struct {
		DeadLetters []struct {
			Seq     uint64 `json:"seq"`
			Field   string `json:"field"`
			Payload struct {
				MessageID string `json:"messageId"`
			} `json:"payload"`
		} `json:"dead_letters"`
		Next uint64 `json:"next"`
	}
	var got []string
	from := uint64(1)
	for pages := 0; ; pages++ {
		if pages > 5 {
			t.Fatalf("paging does not end; got %v", got)
		}
		r := s.do(req{method: "GET", path: "/v1/deadletters?limit=2&from=" + strconv.FormatUint(from, 10), admin: true})
		var p page
		if r.code != 200 || json.Unmarshal(r.body, &p) != nil {
			t.Fatalf("page from %d: %s", from, r)
		}
		if len(p.DeadLetters) > 2 {
			t.Fatalf("page of %d, limit 2", len(p.DeadLetters))
		}
		if len(p.DeadLetters) == 0 {
			if p.Next != from {
				t.Errorf("empty page: next %d, want %d", p.Next, from)
			}
			break
		}
		for _, d := range p.DeadLetters {
			if d.Seq < from || d.Field != "event" {
				t.Errorf("dead letter seq %d field %q on the page from %d", d.Seq, d.Field, from)
			}
			got = append(got, d.Payload.MessageID)
		}
		if last := p.DeadLetters[len(p.DeadLetters)-1].Seq; p.Next != last+1 {
			t.Errorf("next %d, want %d", p.Next, last+1)
		}
		from = p.Next
	}
	if strings.Join(got, ",") != "dl-a,dl-b,dl-c,dl-d,dl-e" {
		t.Errorf("paged dead letters %v, want dl-a..dl-e in order", got)
	}
}
