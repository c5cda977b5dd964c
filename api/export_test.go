package api_test

import (
	"bufio"
	"bytes"
	"encoding/csv"
	"encoding/json"
	"encoding/xml"
	"fmt"
	"mime"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/aurumcdp/aurum/api"
	"github.com/aurumcdp/aurum/internal/check"
)

// exported is one member as read back from an export, whatever the format.
type exported struct {
	ProfileID   string
	Since       time.Time
	RuleVersion int64
	Emails      []string
	Phones      []string
	UserIDs     []string
	Other       []string // "type:value" of the other identifier types, sorted
	FirstName   string   // traits.first_name
}

// exportFixture ingests three buyers and one browser and waits until the
// audience "buyers" (count("Order Completed") >= 1) holds the buyers.
func exportFixture(t *testing.T) (*testServer, map[string]exported) {
	s := newTestServer(t)
	r := s.do(req{path: "/v1/audiences", admin: true, body: jsonBody(t, map[string]string{
		"name": "buyers", "description": "bought at least once", "rule": `count("Order Completed") >= 1`})})
	if r.code != http.StatusCreated {
		t.Fatalf("create audience: %s", r)
	}
	var batch []map[string]any
	person := func(uid, email, first string, extra map[string]any, bought bool) {
		id := map[string]any{"type": "identify", "userId": uid, "messageId": "id-" + uid,
			"traits": map[string]any{"email": email, "first_name": first}}
		for k, v := range extra {
			id[k] = v
		}
		batch = append(batch, id)
		name := "Product Viewed"
		if bought {
			name = "Order Completed"
		}
		batch = append(batch, map[string]any{"type": "track", "userId": uid, "event": name, "messageId": "ev-" + uid,
			"properties": map[string]any{"revenue": 10}})
	}
	person("u1", "Ann@Example.com", "Ann", map[string]any{"anonymousId": "anon-1"}, true)
	person("u2", "bob@example.com", "Bob", map[string]any{"context": map[string]any{"externalIds": []map[string]any{
		{"id": "L;7", "type": "loyalty_id", "collection": "users", "encoding": "none"}}}}, true)
	person("u3", "cy@example.com", `Cy "<&>"`, nil, true)
	person("u4", "dee@example.com", "Dee", nil, false)
	if r := s.do(req{path: "/v1/batch", key: s.webKey, body: jsonBody(t, map[string]any{"batch": batch})}); r.code != http.StatusOK {
		t.Fatalf("batch: %s", r)
	}
	waitAudienceSize(s, "buyers", 3)

	want := map[string]exported{}
	for _, p := range []struct{ uid, email, first string }{{"u1", "ann@example.com", "Ann"}, {"u2", "bob@example.com", "Bob"}, {"u3", "cy@example.com", `Cy "<&>"`}} {
		code, prof := s.profile("user_id:" + p.uid)
		if code != http.StatusOK {
			t.Fatalf("profile %s: %d", p.uid, code)
		}
		id := prof["profile_id"].(string)
		want[id] = exported{ProfileID: id, RuleVersion: 1, Emails: []string{p.email}, UserIDs: []string{p.uid}, FirstName: p.first}
	}
	w := want[profileIDOf(s, "user_id:u1")]
	w.Other = []string{"anonymous_id:anon-1"}
	want[w.ProfileID] = w
	w = want[profileIDOf(s, "user_id:u2")]
	w.Other = []string{"loyalty_id:L;7"}
	want[w.ProfileID] = w
	return s, want
}

func profileIDOf(s *testServer, ref string) string {
	s.t.Helper()
	code, p := s.profile(ref)
	if code != http.StatusOK {
		s.t.Fatalf("profile %s: %d", ref, code)
	}
	return p["profile_id"].(string)
}

func waitAudienceSize(s *testServer, name string, want int) {
	s.t.Helper()
	check.For(s.t, 20*time.Second, 10*time.Millisecond, func() error {
		r := s.do(req{method: http.MethodGet, path: "/v1/audiences/" + name, admin: true})
		var a struct {
			Size int `json:"size"`
		}
		if r.code != http.StatusOK || json.Unmarshal(r.body, &a) != nil {
			return fmt.Errorf("GET audience: %s", r)
		}
		if a.Size != want {
			return fmt.Errorf("size %d, want %d", a.Size, want)
		}
		return nil
	})
}

// TestAudienceExport: each format carries every member with its identifiers
// and traits, and parses back with the standard decoders.
func TestAudienceExport(t *testing.T) {
	s, want := exportFixture(t)
	since := map[string]time.Time{}
	{
		r := s.do(req{method: http.MethodGet, path: "/v1/audiences/buyers/members", admin: true})
		var page struct {
			Members []struct {
				ProfileID string    `json:"profile_id"`
				Since     time.Time `json:"since"`
			} `json:"members"`
		}
		if r.code != http.StatusOK || json.Unmarshal(r.body, &page) != nil || len(page.Members) != 3 {
			t.Fatalf("members: %s", r)
		}
		for _, m := range page.Members {
			since[m.ProfileID] = m.Since
		}
	}
	for id, w := range want {
		if since[id].IsZero() {
			t.Fatalf("profile %s is not listed as a member", id)
		}
		w.Since = since[id]
		want[id] = w
	}

	formats := []struct {
		query, contentType, file string
		parse                    func(t *testing.T, body []byte) []exported
	}{
		{"?channel=email&format=csv", "text/csv; charset=utf-8", "buyers.csv", parseCSVExport},
		{"?channel=email", "text/csv; charset=utf-8", "buyers.csv", parseCSVExport}, // the default
		{"?channel=ads&format=json", "application/json", "buyers.json", parseJSONExport},
		{"?channel=none&format=ndjson", "application/x-ndjson", "buyers.ndjson", parseNDJSONExport},
		{"?channel=Web&format=XML", "application/xml; charset=utf-8", "buyers.xml", parseXMLExport},
	}
	for _, f := range formats {
		t.Run(strings.TrimPrefix(f.query, "?")+"/"+f.file, func(t *testing.T) {
			r := s.do(req{method: http.MethodGet, path: "/v1/audiences/buyers/export" + f.query, admin: true})
			if r.code != http.StatusOK {
				t.Fatalf("export: %s", r)
			}
			if ct := r.header.Get("Content-Type"); ct != f.contentType {
				t.Errorf("Content-Type %q, want %q", ct, f.contentType)
			}
			disp, params, err := mime.ParseMediaType(r.header.Get("Content-Disposition"))
			if err != nil || disp != "attachment" || params["filename"] != f.file {
				t.Errorf("Content-Disposition %q (%v), want attachment; filename=%s", r.header.Get("Content-Disposition"), err, f.file)
			}
			if x := r.trailer.Get(api.TrailerConsentExcluded); x != "0" {
				t.Errorf("trailer %s = %q, want 0 (nobody withdrew consent)", api.TrailerConsentExcluded, x)
			}
			got := f.parse(t, r.body)
			if len(got) != len(want) {
				t.Fatalf("%d members exported, want %d:\n%s", len(got), len(want), r.body)
			}
			seen := map[string]bool{}
			for _, g := range got {
				w, ok := want[g.ProfileID]
				if !ok || seen[g.ProfileID] {
					t.Fatalf("unexpected or repeated member %s:\n%s", g.ProfileID, r.body)
				}
				seen[g.ProfileID] = true
				if !g.Since.Equal(w.Since) || g.RuleVersion != w.RuleVersion ||
					!slices.Equal(g.Emails, w.Emails) || !slices.Equal(g.UserIDs, w.UserIDs) || len(g.Phones) != 0 ||
					!slices.Equal(g.Other, w.Other) || g.FirstName != w.FirstName {
					t.Errorf("member %s:\n got %+v\nwant %+v", g.ProfileID, g, w)
				}
			}
		})
	}
}

func parseCSVExport(t *testing.T, body []byte) []exported {
	t.Helper()
	rows, err := csv.NewReader(bytes.NewReader(body)).ReadAll()
	if err != nil {
		t.Fatalf("csv: %v\n%s", err, body)
	}
	header := "profile_id,since,rule_version,email,phone,user_id,identifiers,traits"
	if len(rows) == 0 || strings.Join(rows[0], ",") != header {
		t.Fatalf("csv header %q, want %q", rows, header)
	}
	split := func(s string) []string { // the documented ";" list with "\" escapes
		if s == "" {
			return nil
		}
		var out []string
		var cur strings.Builder
		for i := 0; i < len(s); i++ {
			switch {
			case s[i] == '\\' && i+1 < len(s):
				i++
				cur.WriteByte(s[i])
			case s[i] == ';':
				out = append(out, cur.String())
				cur.Reset()
			default:
				cur.WriteByte(s[i])
			}
		}
		return append(out, cur.String())
	}
	var out []exported
	for _, row := range rows[1:] {
		var m exported
		var err error
		m.ProfileID = row[0]
		if m.Since, err = time.Parse(time.RFC3339, row[1]); err != nil {
			t.Fatalf("since %q: %v", row[1], err)
		}
		if _, err := fmt.Sscan(row[2], &m.RuleVersion); err != nil {
			t.Fatalf("rule_version %q: %v", row[2], err)
		}
		m.Emails, m.Phones, m.UserIDs, m.Other = split(row[3]), split(row[4]), split(row[5]), split(row[6])
		var traits map[string]any
		if err := json.Unmarshal([]byte(row[7]), &traits); err != nil {
			t.Fatalf("traits %q: %v", row[7], err)
		}
		m.FirstName, _ = traits["first_name"].(string)
		out = append(out, m)
	}
	return out
}

// jsonMember is the JSON and NDJSON shape of one member.
type jsonMember struct {
	ProfileID   string              `json:"profile_id"`
	Since       time.Time           `json:"since"`
	RuleVersion int64               `json:"rule_version"`
	Identifiers map[string][]string `json:"identifiers"`
	Traits      map[string]any      `json:"traits"`
}

func (j jsonMember) exported() exported {
	m := exported{ProfileID: j.ProfileID, Since: j.Since, RuleVersion: j.RuleVersion,
		Emails: j.Identifiers["email"], Phones: j.Identifiers["phone"], UserIDs: j.Identifiers["user_id"]}
	for typ, vals := range j.Identifiers {
		if typ == "email" || typ == "phone" || typ == "user_id" {
			continue
		}
		for _, v := range vals {
			m.Other = append(m.Other, typ+":"+v)
		}
	}
	slices.Sort(m.Other)
	m.FirstName, _ = j.Traits["first_name"].(string)
	return m
}

func parseJSONExport(t *testing.T, body []byte) []exported {
	t.Helper()
	var list []jsonMember
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&list); err != nil {
		t.Fatalf("json: %v\n%s", err, body)
	}
	var out []exported
	for _, j := range list {
		out = append(out, j.exported())
	}
	return out
}

func parseNDJSONExport(t *testing.T, body []byte) []exported {
	t.Helper()
	var out []exported
	sc := bufio.NewScanner(bytes.NewReader(body))
	for sc.Scan() {
		var j jsonMember
		dec := json.NewDecoder(bytes.NewReader(sc.Bytes()))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&j); err != nil {
			t.Fatalf("ndjson line %q: %v", sc.Text(), err)
		}
		out = append(out, j.exported())
	}
	return out
}

func parseXMLExport(t *testing.T, body []byte) []exported {
	t.Helper()
	var doc struct {
		XMLName  xml.Name `xml:"audience"`
		Name     string   `xml:"name,attr"`
		Exported string   `xml:"exported,attr"`
		Members  []struct {
			ProfileID   string `xml:"profile_id,attr"`
			Since       string `xml:"since,attr"`
			RuleVersion int64  `xml:"rule_version,attr"`
			Identifiers []struct {
				Type  string `xml:"type,attr"`
				Value string `xml:",chardata"`
			} `xml:"identifier"`
			Traits []struct {
				Name  string `xml:"name,attr"`
				Value string `xml:",chardata"`
			} `xml:"trait"`
		} `xml:"member"`
	}
	if err := xml.Unmarshal(body, &doc); err != nil {
		t.Fatalf("xml: %v\n%s", err, body)
	}
	if doc.Name != "buyers" {
		t.Errorf("audience name %q", doc.Name)
	}
	if ts, err := time.Parse(time.RFC3339, doc.Exported); err != nil || time.Since(ts) > time.Minute || time.Until(ts) > time.Minute {
		t.Errorf("exported %q (%v): not the time of the export", doc.Exported, err)
	}
	var out []exported
	for _, x := range doc.Members {
		j := jsonMember{ProfileID: x.ProfileID, RuleVersion: x.RuleVersion, Identifiers: map[string][]string{}, Traits: map[string]any{}}
		var err error
		if j.Since, err = time.Parse(time.RFC3339, x.Since); err != nil {
			t.Fatalf("since %q: %v", x.Since, err)
		}
		for _, id := range x.Identifiers {
			j.Identifiers[id.Type] = append(j.Identifiers[id.Type], id.Value)
		}
		for _, tr := range x.Traits {
			j.Traits[tr.Name] = tr.Value
		}
		out = append(out, j.exported())
	}
	return out
}

// TestAudienceExportErrors: an unknown audience is a JSON 404, a bad format
// a JSON 400 naming the field, and the route needs the admin token.
func TestAudienceExportErrors(t *testing.T) {
	s := newTestServer(t)
	if r := s.do(req{path: "/v1/audiences", admin: true, body: jsonBody(t, map[string]string{
		"name": "empty", "rule": `count("Order Completed") >= 1`})}); r.code != http.StatusCreated {
		t.Fatalf("create audience: %s", r)
	}
	cases := []struct {
		name, path string
		admin      bool
		code       int
		field, msg string
	}{
		{"unknown audience", "/v1/audiences/nope/export?format=csv&channel=email", true, http.StatusNotFound, "", `"nope"`},
		{"bad format", "/v1/audiences/empty/export?format=pdf&channel=email", true, http.StatusBadRequest, "format", `"pdf"`},
		{"bad format, unknown audience", "/v1/audiences/nope/export?format=pdf&channel=email", true, http.StatusBadRequest, "format", "csv, json, ndjson or xml"},
		{"no channel", "/v1/audiences/empty/export?format=csv", true, http.StatusBadRequest, "channel", "required"},
		{"unknown channel", "/v1/audiences/empty/export?channel=fax", true, http.StatusBadRequest, "channel", `"fax"`},
		{"no token", "/v1/audiences/empty/export", false, http.StatusUnauthorized, "Authorization", "missing bearer token"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := s.do(req{method: http.MethodGet, path: c.path, admin: c.admin})
			if r.code != c.code {
				t.Fatalf("got %s, want %d", r, c.code)
			}
			msg, field := r.errorBody(t)
			if (c.field != "" && field != c.field) || !strings.Contains(msg, c.msg) {
				t.Errorf("error %q field %q, want %q in a message on field %q", msg, field, c.msg, c.field)
			}
		})
	}
	// An empty audience exports a well-formed empty document.
	for format, want := range map[string]string{
		"csv":    "profile_id,since,rule_version,email,phone,user_id,identifiers,traits\n",
		"json":   "[\n]\n",
		"ndjson": "",
	} {
		r := s.do(req{method: http.MethodGet, path: "/v1/audiences/empty/export?channel=email&format=" + format, admin: true})
		if r.code != http.StatusOK || string(r.body) != want {
			t.Errorf("empty %s export: %d %q, want %q", format, r.code, r.body, want)
		}
	}
	r := s.do(req{method: http.MethodGet, path: "/v1/audiences/empty/export?channel=email&format=xml", admin: true})
	var doc struct {
		Name    string     `xml:"name,attr"`
		Members []struct{} `xml:"member"`
	}
	if err := xml.Unmarshal(r.body, &doc); r.code != http.StatusOK || err != nil || doc.Name != "empty" || len(doc.Members) != 0 {
		t.Errorf("empty xml export: %s (%v)", r, err)
	}
}

// TestAudienceExportPages: an audience larger than one export page comes
// out whole, each member once.
func TestAudienceExportPages(t *testing.T) {
	if testing.Short() {
		t.Skip("ingests 1100 people")
	}
	const people = 1100 // more than two pages of 500
	s := newTestServer(t)
	if r := s.do(req{path: "/v1/audiences", admin: true, body: jsonBody(t, map[string]string{
		"name": "all", "rule": `count("Order Completed") >= 1`})}); r.code != http.StatusCreated {
		t.Fatalf("create audience: %s", r)
	}
	for start := 0; start < people; start += 500 {
		var batch []map[string]any
		for i := start; i < min(start+500, people); i++ {
			batch = append(batch, map[string]any{"type": "track", "userId": fmt.Sprintf("p%04d", i), "event": "Order Completed",
				"messageId": fmt.Sprintf("m%04d", i)})
		}
		if r := s.do(req{path: "/v1/batch", key: s.webKey, body: jsonBody(t, map[string]any{"batch": batch})}); r.code != http.StatusOK {
			t.Fatalf("batch: %s", r)
		}
	}
	waitAudienceSize(s, "all", people)
	r := s.do(req{method: http.MethodGet, path: "/v1/audiences/all/export?channel=none&format=ndjson", admin: true})
	if r.code != http.StatusOK {
		t.Fatalf("export: %s", r)
	}
	got := parseNDJSONExport(t, r.body)
	ids, users := map[string]bool{}, map[string]bool{}
	prev := ""
	for _, m := range got {
		if m.ProfileID <= prev {
			t.Fatalf("member %s after %s: not in profile id order", m.ProfileID, prev)
		}
		prev = m.ProfileID
		ids[m.ProfileID] = true
		for _, u := range m.UserIDs {
			users[u] = true
		}
	}
	if len(got) != people || len(ids) != people || len(users) != people {
		t.Fatalf("exported %d members, %d distinct, %d user ids; want %d", len(got), len(ids), len(users), people)
	}
}
