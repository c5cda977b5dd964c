package console_test

import (
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/aurumcdp/aurum/console"
)

// TestHandler checks how the console is served: the assets with the
// security headers (a CSP with no inline script or style, no framing,
// nosniff), JavaScript as JavaScript, no directory listing, no writes; and
// every other path handed to the API unchanged.
func TestHandler(t *testing.T) {
	if _, err := console.New(console.Options{}); err == nil {
		t.Fatal("New without an API: no error")
	}
	base := serveConsole(t, startNode(t))
	for _, tc := range []struct {
		method, path string
		code         int
		ctype        string // prefix of Content-Type
		body         string // substring of the body
		console      bool   // served by the console (security headers)
	}{
		{"GET", "/", 200, "text/html", `<script type="module" src="/assets/app.js">`, true},
		{"HEAD", "/", 200, "text/html", "", true},
		{"GET", "/index.html", 301, "", "", true},
		{"GET", "/assets/app.js", 200, "text/javascript", "import", true},
		{"GET", "/assets/style.css", 200, "text/css", "", true},
		{"GET", "/assets/pages/audiences.js", 200, "text/javascript", "audience-new", true},
		{"GET", "/assets/", 404, "", "", true},
		{"GET", "/assets/nope.js", 404, "", "", true},
		{"POST", "/", 405, "", "", true},
		{"GET", "/healthz", 200, "", "", false},
		{"GET", "/v1/audiences", 401, "application/json", "missing bearer token", false},
		{"GET", "/v1/nothing", 404, "application/json", "no route", false},
	} {
		req, _ := http.NewRequest(tc.method, base+tc.path, nil)
		resp, err := (&http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}).Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		name := tc.method + " " + tc.path
		if resp.StatusCode != tc.code {
			t.Errorf("%s: %d, want %d (%s)", name, resp.StatusCode, tc.code, b)
		}
		if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, tc.ctype) {
			t.Errorf("%s: Content-Type %q, want %q", name, ct, tc.ctype)
		}
		if !strings.Contains(string(b), tc.body) {
			t.Errorf("%s: body lacks %q", name, tc.body)
		}
		csp := resp.Header.Get("Content-Security-Policy")
		if !tc.console {
			if csp != "" {
				t.Errorf("%s: an API answer got the console's CSP", name)
			}
			continue
		}
		if csp != console.ContentSecurityPolicy || !strings.Contains(csp, "default-src 'self'") ||
			!strings.Contains(csp, "frame-ancestors 'none'") || strings.Contains(csp, "unsafe-inline") || strings.Contains(csp, "unsafe-eval") {
			t.Errorf("%s: CSP %q", name, csp)
		}
		if got := resp.Header.Get("X-Content-Type-Options"); got != "nosniff" {
			t.Errorf("%s: X-Content-Type-Options %q", name, got)
		}
	}
}
