package main

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"testing"

	"github.com/spf13/cobra"
)

// TestOutputFlagEverywhere: every list and show command follows the output
// convention: --output, table by default (profile get, profile events,
// privacy status, deadletters, audience members and replay printed JSON
// only).
func TestOutputFlagEverywhere(t *testing.T) {
	want := []string{
		"aurum profile get", "aurum profile events", "aurum privacy status", "aurum deadletters",
		"aurum audience members", "aurum audience list", "aurum audience show", "aurum replay",
		"aurum destination list", "aurum destination show", "aurum model list", "aurum model show",
		"aurum source list", "aurum snapshot list", "aurum audit", "aurum token list", "aurum user list", "aurum cluster status",
	}
	found := map[string]*cobra.Command{}
	var walk func(c *cobra.Command)
	walk = func(c *cobra.Command) {
		found[c.CommandPath()] = c
		for _, sub := range c.Commands() {
			walk(sub)
		}
	}
	walk(newRoot())
	for _, path := range want {
		c, ok := found[path]
		if !ok {
			t.Errorf("%s: no such command", path)
			continue
		}
		f := c.Flags().Lookup("output")
		if f == nil || f.DefValue != outputTable {
			t.Errorf("%s: --output flag %v, want one defaulting to %q", path, f, outputTable)
		}
	}
}

// fakeNode answers GET (and POST /v1/replay) with fixed JSON bodies by
// path; members pages by cursor.
func fakeNode(t *testing.T, answers map[string]string) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		key := r.URL.Path
		if c := r.URL.Query().Get("cursor"); c != "" {
			key += "?cursor=" + c
		}
		body, ok := answers[key]
		if !ok {
			w.WriteHeader(http.StatusNotFound)
			_, _ = w.Write([]byte(`{"error":"not found: ` + key + `","field":"ref"}`))
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(body))
	}))
	t.Cleanup(srv.Close)
	return srv
}

// runAgainst runs the aurum command line args in this process against
// srv (runInProcess) and returns its stdout, stderr and error.
func runAgainst(t *testing.T, srv *httptest.Server, args ...string) (string, string, error) {
	t.Helper()
	return runInProcess(t, nil, append(args, "--server", srv.URL, "--token", "test-token-0123456789")...)
}

// TestOutputTablesAndJSON runs each command the convention was missing on
// against fixed API answers: the table holds the answer's values under a
// header, --output json is the API's JSON itself (same keys, snake_case,
// the times as the API wrote them).
func TestOutputTablesAndJSON(t *testing.T) {
	const (
		profile = `{"profile_id":"01JDZ8Q6X0F7R2M4N8P3S5T7V9","identifiers":{"email":[{"value":"ann@example.com","first_seen":"2026-11-03T08:36:11.738Z"}]},` +
			`"traits":{"country":"DK"},"audiences":{"vip":"2026-12-03T04:45:46.834Z"},"merged_from":[],"revenue":{"Order Completed":{"count":2,"total":31.5}}}`
		events = `{"events":[{"id":"01M8X3J5KY4Y7DR16WMANX5CMV","type":"track","event":"Order Completed","source":"web","timestamp":"2026-12-01T00:20:05.909Z","messageId":"m1"},` +
			`{"id":"01M8X3J5KY4Y7DR16WM91JBNZK","type":"page","name":"Home","source":"web","timestamp":"2026-12-01T00:18:58.506Z"}]}`
		dead     = `{"dead_letters":[{"seq":7,"received":"2026-12-03T04:44:44.430272906Z","source":"web","index":1,"field":"userId","reason":"neither userId nor anonymousId","payload":{"event":"y"}}],"next":8}`
		erasures = `{"erasures":[{"id":"01M8X3G8A8FM7NEAMYHSY7FBG2","status":"completed","identifier_type":"email","requested":"2026-12-03T04:44:46.792Z",` +
			`"completed":"2026-12-03T04:44:46.807Z","counts":{"profiles":1,"events":2},"destinations":[{"name":"crm","status":"done"},{"name":"sms","status":"done"}]}]}`
		erasure = `{"id":"01M8X3G8A8FM7NEAMYHSY7FBG2","status":"pending","identifier_type":"email","requested":"2026-12-03T04:44:46.792Z","counts":{"profiles":1}}`
		page1   = `{"members":[{"profile_id":"01M6G84HKTEXY32HNKP1YSYJCQ","since":"2026-12-03T04:45:46.834Z","rule_version":1,"identifiers":{"email":["ann@example.com"]}}],"next":"01M6G84HKTEXY32HNKP1YSYJCQ"}`
		page2   = `{"members":[{"profile_id":"01M6G9YXMB9SR5NFFZQKZD5YK6","since":"2026-12-03T04:45:45.377Z","rule_version":2}],"next":""}`
		history = `{"history":[{"audience":"vip","event":"exited","time":"2026-12-02T10:00:00Z","reason":"time","rule_version":2,"seq":40,"profile_id":"01JDZ8Q6X0F7R2M4N8P3S5T7V9"},` +
			`{"audience":"vip","event":"entered","time":"2026-12-01T09:00:00Z","reason":"backfill","rule_version":2,"seq":31,"profile_id":"01JDZ8Q6X0F7R2M4N8P3S5T7V9"}],"next":"AAAAAZ"}`
		replay = `{"status":"done","dry_run":true,"from":1,"applied":1661,"target":1661,"entries_per_s":746.4276777985763,"eta_s":0,` +
			`"started":"2026-12-03T04:44:47.063500778Z","diff":{"seq":1661,"keys_changed":0,"transitions_would_enter":3}}`
	)
	srv := fakeNode(t, map[string]string{
		"/v1/profiles/email:ann@example.com":                  profile,
		"/v1/profiles/email:ann@example.com/events":           events,
		"/v1/profiles/email:ann@example.com/audience-history": history,
		"/v1/deadletters":      dead,
		"/v1/privacy/erasures": erasures,
		"/v1/privacy/erasures/01M8X3G8A8FM7NEAMYHSY7FBG2":             erasure,
		"/v1/audiences/vip/members":                                   page1,
		"/v1/audiences/vip/members?cursor=01M6G84HKTEXY32HNKP1YSYJCQ": page2,
		"/v1/replay": replay,
	})
	for _, tc := range []struct {
		args   []string
		answer string
		table  [][]string // the header, then rows that must be there (cells in order on one line)
	}{
		{[]string{"profile", "get", "email:ann@example.com"}, profile, [][]string{{"FIELD", "VALUE"},
			{"profile_id", "01JDZ8Q6X0F7R2M4N8P3S5T7V9"}, {"identifiers.email", "ann@example.com"}, {"traits.country", "DK"},
			{"audiences.vip", "2026-12-03T04:45:46.834Z"}, {"revenue.Order Completed.total", "31.5"}}},
		{[]string{"profile", "events", "email:ann@example.com"}, events, [][]string{{"TIME", "TYPE", "EVENT", "SOURCE", "ID"},
			{"2026-12-01T00:20:05.909Z", "track", "Order Completed", "web", "01M8X3J5KY4Y7DR16WMANX5CMV"},
			{"2026-12-01T00:18:58.506Z", "page", "Home", "web"}}},
		{[]string{"profile", "history", "email:ann@example.com"}, history, [][]string{{"TIME", "AUDIENCE", "EVENT", "REASON", "RULE_VERSION"},
			{"2026-12-02T10:00:00Z", "vip", "exited", "time", "2"}, {"2026-12-01T09:00:00Z", "vip", "entered", "backfill", "2"}}},
		{[]string{"deadletters"}, dead, [][]string{{"SEQ", "RECEIVED", "SOURCE", "INDEX", "FIELD", "REASON"},
			{"7", "2026-12-03T04:44:44Z", "web", "1", "userId", "neither userId nor anonymousId"}}},
		{[]string{"privacy", "status"}, erasures, [][]string{{"ID", "STATUS", "IDENTIFIER_TYPE", "REQUESTED", "COMPLETED", "PROFILES", "EVENTS", "DESTINATIONS"},
			{"01M8X3G8A8FM7NEAMYHSY7FBG2", "completed", "email", "2026-12-03T04:44:46Z", "2026-12-03T04:44:46Z", "1", "2", "crm:done,sms:done"}}},
		{[]string{"privacy", "status", "01M8X3G8A8FM7NEAMYHSY7FBG2"}, erasure, [][]string{{"FIELD", "VALUE"},
			{"id", "01M8X3G8A8FM7NEAMYHSY7FBG2"}, {"status", "pending"}, {"counts.profiles", "1"}}},
		{[]string{"audience", "members", "vip", "--identifiers"}, page1, [][]string{{"PROFILE_ID", "SINCE", "RULE_VERSION", "IDENTIFIERS"},
			{"01M6G84HKTEXY32HNKP1YSYJCQ", "2026-12-03T04:45:46Z", "1", "email:ann@example.com"}}},
		{[]string{"replay", "--dry-run", "--no-progress"}, replay, [][]string{{"FIELD", "VALUE"},
			{"status", "done"}, {"applied", "1661"}, {"diff.transitions_would_enter", "3"}, {"entries_per_s", "746.428"}}},
	} {
		name := strings.Join(tc.args, " ")
		out, _, err := runAgainst(t, srv, tc.args...)
		if err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		lines := strings.Split(out, "\n")
		if got := strings.Fields(lines[0]); !reflect.DeepEqual(got, tc.table[0]) {
			t.Errorf("%s: header %q, want %q\n%s", name, got, tc.table[0], out)
		}
		for _, row := range tc.table[1:] {
			if !hasRow(lines[1:], row) {
				t.Errorf("%s: no row %q in the table\n%s", name, row, out)
			}
		}
		out, _, err = runAgainst(t, srv, append(tc.args, "--output", "json")...)
		if err != nil {
			t.Errorf("%s --output json: %v", name, err)
			continue
		}
		var got, want any
		if err := json.Unmarshal([]byte(out), &got); err != nil {
			t.Errorf("%s --output json: not JSON: %v\n%s", name, err, out)
			continue
		}
		_ = json.Unmarshal([]byte(tc.answer), &want)
		if !reflect.DeepEqual(got, want) {
			t.Errorf("%s --output json: %s\nwant the API's answer %s", name, out, tc.answer)
		}
	}

	// Members: a page says where the next one starts; --all follows the
	// cursors (a table of both pages, one header; JSON of every member).
	out, errOut, err := runAgainst(t, srv, "audience", "members", "vip")
	if err != nil || strings.Count(out, "\n") != 2 || !strings.Contains(errOut, "--cursor 01M6G84HKTEXY32HNKP1YSYJCQ") {
		t.Errorf("members, one page: %v\n%s\nstderr: %s", err, out, errOut)
	}
	out, _, err = runAgainst(t, srv, "audience", "members", "vip", "--all")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if err != nil || len(lines) != 3 || !hasRow(lines[2:], []string{"01M6G9YXMB9SR5NFFZQKZD5YK6", "2026-12-03T04:45:45Z", "2"}) ||
		strings.Index(lines[1], "2026") != strings.Index(lines[2], "2026") {
		t.Errorf("members --all: %v\n%s", err, out)
	}
	out, _, err = runAgainst(t, srv, "audience", "members", "vip", "--all", "--output", "json")
	var all struct {
		Members []map[string]any `json:"members"`
	}
	if err != nil || json.Unmarshal([]byte(out), &all) != nil || len(all.Members) != 2 {
		t.Errorf("members --all --output json: %v\n%s", err, out)
	}
	// A paged table says where the older page starts.
	if _, errOut, err := runAgainst(t, srv, "profile", "history", "email:ann@example.com"); err != nil || !strings.Contains(errOut, "older entries: --cursor AAAAAZ") {
		t.Errorf("profile history: %v, stderr %q, want the next cursor", err, errOut)
	}
	// --search goes to the server as q.
	var gotQ string
	search := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		gotQ = r.URL.Query().Get("q")
		_, _ = w.Write([]byte(page2))
	}))
	defer search.Close()
	if out, _, err := runAgainst(t, search, "audience", "members", "vip", "--search", "email:ann@example.com"); err != nil || gotQ != "email:ann@example.com" ||
		!strings.Contains(out, "01M6G9YXMB9SR5NFFZQKZD5YK6") {
		t.Errorf("members --search: %v, q %q\n%s", err, gotQ, out)
	}
	if _, _, err := runAgainst(t, search, "audience", "members", "vip", "--search", " "); err == nil || !strings.Contains(err.Error(), "--search") {
		t.Errorf("members --search ' ': %v, want an error naming --search", err)
	}
	if _, _, err := runAgainst(t, srv, "profile", "get", "email:ann@example.com", "--output", "yaml"); err == nil || !strings.Contains(err.Error(), "--output") {
		t.Errorf("--output yaml: %v, want an error naming --output", err)
	}
}

// hasRow reports whether one of lines holds the cells in order.
func hasRow(lines []string, cells []string) bool {
	for _, l := range lines {
		rest, ok := l, true
		for _, c := range cells {
			i := strings.Index(rest, c)
			if i < 0 {
				ok = false
				break
			}
			rest = rest[i+len(c):]
		}
		if ok {
			return true
		}
	}
	return false
}

// TestAPIErrorText: the CLI's error for an API error answer says what was
// wrong and what to do, without "server answered" or the name of a URL
// parameter the user never wrote ("server answered 404: ref: not found: ...").
func TestAPIErrorText(t *testing.T) {
	for _, tc := range []struct {
		status  int
		body    string
		want    []string
		notWant []string
	}{
		{404, `{"error":"not found: email:nobody@example.com","field":"ref"}`,
			[]string{"not found: email:nobody@example.com", "404", "check the name or identifier"}, []string{"ref:", "server answered"}},
		{401, `{"error":"invalid token","field":"Authorization"}`,
			[]string{"invalid token", "$AURUM_ADMIN_TOKEN", "--token"}, []string{"Authorization:", "server answered"}},
		{400, `{"error":"bad profile reference: profile_id \"x\" is not a profile id","field":"ref"}`,
			[]string{`bad profile reference: profile_id "x"`, "400"}, []string{"ref:"}},
		{403, `{"error":"the role viewer may not do this"}`, []string{"viewer", "aurum token add --role"}, nil},
		{400, `{"error":"in_audience names audience \"nope\", which does not exist","field":"rule"}`,
			[]string{`rule: in_audience names audience "nope"`}, []string{"server answered"}},
		{400, `{"error":"\"bogus\" is not a channel","field":"channel"}`, []string{`channel: "bogus" is not a channel`}, nil},
		{413, `{"error":"body over 16384 bytes"}`, []string{"body over 16384 bytes", "Limits you may hit"}, nil},
		{503, `not ready`, []string{"not ready", "try again"}, nil},
		{500, ``, []string{"Internal Server Error", "the node's log"}, nil},
	} {
		got := newAPIError(tc.status, []byte(tc.body)).Error()
		for _, w := range tc.want {
			if !strings.Contains(got, w) {
				t.Errorf("%d %s: %q, want %q in it", tc.status, tc.body, got, w)
			}
		}
		for _, w := range tc.notWant {
			if strings.Contains(got, w) {
				t.Errorf("%d %s: %q, want no %q in it", tc.status, tc.body, got, w)
			}
		}
	}
}
