package console_test

import (
	"io/fs"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/aurumcdp/aurum/api"
	"github.com/aurumcdp/aurum/console"
)

// consoleRoute is one entry of static/assets/routes.js.
type consoleRoute struct {
	key, pattern, access string
	roles                []string
}

var routeEntry = regexp.MustCompile(`(?m)^\s*(\w+): \{ route: "([A-Z]+ /[^"]*)", access: "(\w+)"(?:, roles: \[([^\]]*)\])? \},(?: *//.*)?$`)

// consoleRoutes parses routes.js; it fails the test on any line that looks
// like an entry but does not parse, so no route slips past the check.
func consoleRoutes(t *testing.T) []consoleRoute {
	t.Helper()
	b, err := fs.ReadFile(console.Assets(), "assets/routes.js")
	if err != nil {
		t.Fatal(err)
	}
	var out []consoleRoute
	for _, m := range routeEntry.FindAllStringSubmatch(string(b), -1) {
		r := consoleRoute{key: m[1], pattern: m[2], access: m[3]}
		for _, q := range strings.Split(m[4], ",") {
			if q = strings.Trim(strings.TrimSpace(q), `"`); q != "" {
				r.roles = append(r.roles, q)
			}
		}
		out = append(out, r)
	}
	if n := strings.Count(string(b), "route: "); n != len(out) || n == 0 {
		t.Fatalf("routes.js: %d entries parsed of %d \"route:\" lines: keep each entry on one line as the others", len(out), n)
	}
	return out
}

// TestConsoleRoutesInAPI is issue #14's must-show 3: every request the
// console's JavaScript makes is a route of the API's one route table, with
// the same access and roles (no private back door), and no JavaScript
// file reaches the server any other way than api.js's call() over
// routes.js. The browser test (TestBrowser) also records every request the
// pages make and checks each against the same table.
func TestConsoleRoutesInAPI(t *testing.T) {
	table := apiRoutes(t)
	for _, r := range consoleRoutes(t) {
		info, ok := table[r.pattern]
		if !ok {
			t.Errorf("routes.js %s: %q is not a route of the API", r.key, r.pattern)
			continue
		}
		if info.Access != r.access {
			t.Errorf("routes.js %s: access %q, the API's table says %q", r.key, r.access, info.Access)
		}
		var want []string
		for _, role := range info.Roles {
			want = append(want, string(role))
		}
		if !slices.Equal(slices.Sorted(slices.Values(r.roles)), slices.Sorted(slices.Values(want))) {
			t.Errorf("routes.js %s: roles %v, the API's table says %v (besides admin)", r.key, r.roles, want)
		}
	}

	// Nothing but api.js talks to the server, and only with paths from
	// routes.js: no other fetch, XHR, socket, beacon or form post, and no
	// API path written anywhere else.
	forbidden := regexp.MustCompile(`\bfetch\(|XMLHttpRequest|WebSocket|EventSource|sendBeacon|\.submit\(\)|import\(`)
	apiPath := regexp.MustCompile(`["'\x60]/(v1|metrics|healthz)\b`)
	err := fs.WalkDir(console.Assets(), ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := fs.ReadFile(console.Assets(), p)
		if err != nil {
			return err
		}
		src := string(b)
		if strings.HasSuffix(p, ".html") {
			if regexp.MustCompile(`<script(?:\s[^>]*)?>\s*[^<\s]|<style|\sstyle=|\son\w+=`).MatchString(src) {
				t.Errorf("%s: inline script, style or handler (the CSP forbids them)", p)
			}
			return nil
		}
		if !strings.HasSuffix(p, ".js") {
			return nil
		}
		for _, m := range forbidden.FindAllStringIndex(src, -1) {
			if p == "assets/api.js" && src[m[0]:m[1]] == "fetch(" {
				continue
			}
			t.Errorf("%s: %q: only api.js's call() may reach the server", p, src[m[0]:m[1]])
		}
		if p != "assets/routes.js" && apiPath.MatchString(src) {
			t.Errorf("%s: names an API path %q: declare it in routes.js and call it through api.js", p, apiPath.FindString(src))
		}
		if strings.Contains(src, "innerHTML") || strings.Contains(src, "eval(") {
			t.Errorf("%s: innerHTML or eval: build elements with ui.js's h()", p)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// apiRoutes is the API's route table by pattern.
func apiRoutes(t *testing.T) map[string]api.RouteInfo {
	t.Helper()
	sso, _ := withSSO(t)
	n := startNode(t, sso) // the sign-in routes of single sign-on exist only with it
	out := map[string]api.RouteInfo{}
	for _, r := range n.API.Routes() {
		out[r.Pattern] = r
	}
	return out
}
