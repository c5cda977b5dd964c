package console_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	cdplog "github.com/chromedp/cdproto/log"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"

	"github.com/aurumcdp/aurum/auth"
	"github.com/aurumcdp/aurum/internal/check"
	"github.com/aurumcdp/aurum/internal/testnode"
)

// findChromium returns a Chromium (or Chrome) binary: $AURUM_CHROMIUM, or
// the first of the usual names on PATH; "" if none.
func findChromium() string {
	if p := os.Getenv("AURUM_CHROMIUM"); p != "" {
		return p
	}
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "headless_shell"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	return ""
}

// waitFor bounds every wait on the page: generous, for a loaded CI machine.
const waitFor = 30 * time.Second

// browser is one headless Chromium driving the console at base, recording
// every request its pages make.
type browser struct {
	t    *testing.T
	ctx  context.Context
	base string

	mu       sync.Mutex
	requests []string // "METHOD host path" of every request the pages made
	queries  []string // "path?query" of every request the pages made
	problems []string // uncaught JavaScript exceptions and CSP violations
}

// chromiumOrSkip returns the Chromium binary, or skips the test saying why
// (fails it when AURUM_REQUIRE_BROWSER is set, as in CI).
func chromiumOrSkip(t *testing.T) string {
	t.Helper()
	exe := findChromium()
	if exe == "" {
		if os.Getenv("AURUM_REQUIRE_BROWSER") != "" {
			t.Fatal("AURUM_REQUIRE_BROWSER is set but no chromium binary was found (apt-get install chromium, or set AURUM_CHROMIUM)")
		}
		t.Skip("no chromium binary found (chromium, chromium-browser, google-chrome or $AURUM_CHROMIUM); apt-get install chromium to run the console's browser tests")
	}
	return exe
}

// newBrowser starts headless Chromium exe for the console at base.
func newBrowser(t *testing.T, exe, base string) *browser {
	t.Helper()
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(exe),
		chromedp.NoSandbox, // CI runs as root
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.Flag("disable-gpu", true),
		chromedp.WindowSize(1280, 860),
		chromedp.UserDataDir(t.TempDir()),
	)
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelCtx := chromedp.NewContext(actx, chromedp.WithErrorf(t.Logf))
	t.Cleanup(func() { cancelCtx(); cancelAlloc() })
	b := &browser{t: t, ctx: ctx, base: base}
	if err := chromedp.Listen(ctx, func(ev any) {
		switch e := ev.(type) {
		case *runtime.EventExceptionThrown:
			msg := e.ExceptionDetails.Text
			if e.ExceptionDetails.Exception != nil && e.ExceptionDetails.Exception.Description != "" {
				msg += " " + e.ExceptionDetails.Exception.Description
			}
			b.mu.Lock()
			b.problems = append(b.problems, "exception: "+msg)
			b.mu.Unlock()
		case *cdplog.EventEntryAdded:
			if strings.Contains(e.Entry.Text, "Content Security Policy") || strings.Contains(e.Entry.Text, "Refused to") {
				b.mu.Lock()
				b.problems = append(b.problems, "console: "+e.Entry.Text)
				b.mu.Unlock()
			}
		}
		if e, ok := ev.(*network.EventRequestWillBeSent); ok {
			u, err := url.Parse(e.Request.URL)
			if err != nil || e.Request.URL == "" || u.Scheme == "data" || u.Scheme == "blob" {
				return
			}
			b.mu.Lock()
			b.requests = append(b.requests, e.Request.Method+" "+u.Host+" "+u.Path)
			b.queries = append(b.queries, u.Path+"?"+u.RawQuery)
			b.mu.Unlock()
		}
	}); err != nil {
		t.Fatalf("start chromium %s: %v", exe, err)
	}
	return b
}

// run runs actions, failing the test (with the step's name) on error.
func (b *browser) run(step string, actions ...chromedp.Action[chromedp.Void]) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, waitFor)
	defer cancel()
	if err := chromedp.Do(ctx, actions...); err != nil {
		b.t.Fatalf("%s: %v", step, err)
	}
}

// eval evaluates a JavaScript expression giving a string (a promise is
// awaited).
func (b *browser) eval(expr string) (string, error) {
	ctx, cancel := context.WithTimeout(b.ctx, waitFor)
	defer cancel()
	return chromedp.Run(ctx, chromedp.Evaluate[string](expr, chromedp.EvalAwaitPromise))
}

// js is an action that runs a JavaScript statement.
func js(expr string) chromedp.Action[chromedp.Void] {
	return chromedp.Func(func(ctx context.Context, t *chromedp.Target) error {
		_, err := chromedp.Evaluate[*runtime.RemoteObject](expr)(ctx, t)
		return err
	})
}

// until polls a JavaScript condition (an expression giving a string:
// "" when it holds, else why not) until it holds or waitFor passes.
func (b *browser) until(what, expr string) {
	b.t.Helper()
	deadline := time.Now().Add(waitFor)
	for {
		why, err := b.eval(expr)
		if err == nil && why == "" {
			return
		}
		if err != nil {
			why = err.Error()
		}
		if time.Now().After(deadline) {
			b.t.Fatalf("%s: not after %v: %s", what, waitFor, why)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// text is a JS expression giving the text of the element with data-testid id ("" if absent).
func text(id string) string {
	return fmt.Sprintf(`(document.querySelector('[data-testid=%q]')||{}).innerText||""`, id)
}

func sel(id string) chromedp.CSS { return chromedp.CSS(fmt.Sprintf(`[data-testid=%q]`, id)) }

// screenshot writes the page to dir/name.png.
func (b *browser) screenshot(dir, name string) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, waitFor)
	defer cancel()
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100)) // 100: PNG
	if err != nil {
		b.t.Logf("screenshot %s: %v", name, err)
		return
	}
	p := filepath.Join(dir, name+".png")
	if err := os.WriteFile(p, png, 0o644); err != nil {
		b.t.Logf("screenshot %s: %v", name, err)
	}
}

// pages are the console's pages, for screenshots.
var pages = []struct{ name, hash, ready string }{
	{"dashboard", "#/dashboard", "page-dashboard"},
	{"audiences", "#/audiences", "page-audiences"},
	{"builder", "#/audiences/new", "page-builder"},
	{"members", "#/audiences/members/buyers", "page-members"},
	{"customer", "#/customers/email%3Aann%40example.com", "profile-timeline"},
	{"destinations", "#/destinations", "page-destinations"},
	{"access", "#/access", "page-access"},
}

// screenshotAll visits every page and writes its screenshot into dir.
func (b *browser) screenshotAll(dir string) {
	for _, p := range pages {
		ctx, cancel := context.WithTimeout(b.ctx, 5*time.Second)
		err := chromedp.Do(ctx, chromedp.Navigate(b.base+"/"+p.hash), chromedp.WaitVisible(sel(p.ready)), chromedp.Sleep(300*time.Millisecond))
		cancel()
		if err != nil {
			b.t.Logf("screenshot %s: page not ready: %v", p.name, err)
		}
		b.screenshot(dir, p.name)
	}
}

// seed ingests three people through the tracking API and waits until
// each profile can be read: ann and bob bought, cy only browsed.
func seed(t *testing.T, n *testnode.Node) (writeKey string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	key, err := n.Engine.Gate().CreateSource(ctx, "web")
	if err != nil {
		t.Fatal(err)
	}
	batch := `{"batch":[
	 {"type":"identify","userId":"u-ann","traits":{"email":"ann@example.com","plan":"gold","country":"DK"}},
	 {"type":"track","userId":"u-ann","event":"Order Completed","properties":{"revenue":30}},
	 {"type":"track","userId":"u-ann","event":"Order Completed","properties":{"revenue":50}},
	 {"type":"identify","userId":"u-bob","traits":{"email":"bob@example.com","plan":"silver"}},
	 {"type":"track","userId":"u-bob","event":"Order Completed","properties":{"revenue":12}},
	 {"type":"identify","userId":"u-cy","traits":{"email":"cy@example.com"}},
	 {"type":"track","userId":"u-cy","event":"Product Viewed","properties":{"sku":"A1"}}]}`
	postBatch(t, n.URL, key, batch)
	for _, who := range []string{"ann", "bob", "cy"} {
		check.For(t, waitFor, 50*time.Millisecond, func() error {
			code, body := apiGet(t, n.URL, "/v1/profiles/email:"+who+"@example.com")
			if code != 200 || !strings.Contains(body, `"total_events":`) {
				return fmt.Errorf("profile %s: %d %s", who, code, body)
			}
			if who == "ann" && !strings.Contains(body, `"total_events":3`) {
				return fmt.Errorf("ann's events not all applied: %s", body)
			}
			return nil
		})
	}
	return key
}

// track posts a batch of count "Product Viewed" events for cy.
func track(t *testing.T, base, key string, count int) {
	t.Helper()
	var evs []string
	for i := range count {
		evs = append(evs, fmt.Sprintf(`{"type":"track","userId":"u-cy","event":"Product Viewed","properties":{"sku":"B%d"}}`, i))
	}
	postBatch(t, base, key, `{"batch":[`+strings.Join(evs, ",")+`]}`)
}

// postBatch posts a batch with the write key; the batch must be accepted
// (its bad events go to the dead letters).
func postBatch(t *testing.T, base, key, body string) {
	t.Helper()
	req, _ := http.NewRequest("POST", base+"/v1/batch", strings.NewReader(body))
	req.SetBasicAuth(key, "")
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("POST /v1/batch: %s", resp.Status)
	}
}

func apiGet(t *testing.T, base, path string) (int, string) {
	t.Helper()
	return apiDo(t, base, "GET", path, "")
}

// apiDo makes a request with the admin token.
func apiDo(t *testing.T, base, method, path, body string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(method, base+path, strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+adminToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(b)
}

// TestBrowser is issue #14's must-show 1 in a real headless Chromium: sign
// in with a token; build an audience with the visual builder, see the
// preview size, save it and see it listed with its size; enter a broken
// rule and see the error at its position; find a person by email and see
// identifiers, traits, timeline and audiences; sign in as a viewer, see no
// control that changes anything, and have a forced request refused (403).
// Every request the pages made is a route of the API's table (must-show
// 3). On failure it writes a screenshot of each page into a directory it
// names in the log; AURUM_SCREENSHOTS=DIR writes them there after a pass
// (docs/img: docs/console.md).
func TestBrowser(t *testing.T) {
	exe := chromiumOrSkip(t)
	sso, issuer := withSSO(t)
	n := startNode(t, sso)
	base := serveConsole(t, n)
	key := seed(t, n)
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	viewerToken, _, err := n.Engine.Gate().CreateToken(ctx, "watcher", auth.RoleViewer, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	privacyToken, _, err := n.Engine.Gate().CreateToken(ctx, "dpo", auth.RolePrivacy, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	var ann struct {
		ProfileID string `json:"profile_id"`
	}
	if _, body := apiGet(t, n.URL, "/v1/profiles/email:ann@example.com"); json.Unmarshal([]byte(body), &ann) != nil || ann.ProfileID == "" {
		t.Fatalf("ann's profile: %s", body)
	}
	annID := ann.ProfileID
	b := newBrowser(t, exe, base)
	t.Cleanup(func() {
		if !t.Failed() {
			return
		}
		dir, err := os.MkdirTemp("", "aurum-console-screens-")
		if err != nil {
			t.Log(err)
			return
		}
		b.screenshot(dir, "failed-at")
		b.screenshotAll(dir)
		t.Logf("screenshots of each page: %s", dir)
	})

	signIn := func(token string) {
		b.run("open the sign-in page", chromedp.Navigate(base+"/"), chromedp.WaitVisible(sel("login-token")))
		b.run("sign in with a token", chromedp.SendKeys(sel("login-token"), token), chromedp.Click(sel("login-submit")),
			chromedp.WaitVisible(sel("whoami")))
	}

	// Sign in with a token (the bootstrap admin token).
	signIn(adminToken)
	b.until("signed in as admin", `document.querySelector('[data-testid="whoami"]').innerText.includes("admin") ? "" : "whoami: " + document.querySelector('[data-testid="whoami"]').innerText`)

	// Build an audience with the visual builder.
	b.run("open the builder", chromedp.Click(sel("nav-audiences")), chromedp.WaitVisible(sel("audience-new")),
		chromedp.Click(sel("audience-new")), chromedp.WaitVisible(sel("builder")))
	b.run("set the condition", chromedp.SetValue(sel("cond-window"), "7d"),
		js(`document.querySelector('[data-testid="cond-window"]').dispatchEvent(new Event("change"))`))
	const wantRule = `count("Order Completed", "7d") >= 1`
	b.until("the visual editor writes the rule", fmt.Sprintf(`document.querySelector('[data-testid="rule-text"]').value === %q ? "" : "rule-text: " + document.querySelector('[data-testid="rule-text"]').value`, wantRule))
	b.until("preview size", `document.querySelector('[data-testid="preview-size"]').dataset.size === "2" ? "" : "preview-size: " + `+text("preview-size"))
	b.run("name and save", chromedp.SendKeys(sel("audience-name"), "buyers"), chromedp.Click(sel("audience-save")),
		chromedp.WaitVisible(sel("audience-row")))
	b.until("listed with its size", `[...document.querySelectorAll('[data-testid="audience-row"]')].some(r => r.querySelector('[data-testid="audience-name-cell"]').innerText === "buyers" && r.querySelector('[data-testid="audience-size"]').innerText === "2") ? "" : "rows: " + [...document.querySelectorAll('[data-testid="audience-row"]')].map(r => r.innerText).join(" | ")`)
	if code, body := apiGet(t, n.URL, "/v1/audiences/buyers"); code != 200 || !strings.Contains(body, `count(\"Order Completed\", \"7d\") \u003e= 1`) {
		t.Fatalf("saved audience: %d %s", code, body)
	}

	// Every kind of condition the visual editor offers writes a rule the
	// API compiles, alone and joined with "or".
	kinds, err := b.eval(`(async () => {
		const m = await import("/assets/builder.js");
		const csrf = decodeURIComponent((document.cookie.match(/(?:^|; )aurum_csrf=([^;]*)/) || [])[1] || "");
		const out = [];
		const conds = Object.keys(m.kinds).map(k => { const c = m.newCondition(k); if (k === "in_audience") c.fields.audience = "buyers"; return c; });
		for (const rule of [...conds.map(c => m.toRule([c], "and")), m.toRule(conds, "or")]) {
			const r = await fetch("/v1/audiences/preview", {method: "POST", credentials: "same-origin",
				headers: {"Content-Type": "application/json", "X-Aurum-CSRF": csrf}, body: JSON.stringify({rule})});
			out.push(r.status + " " + rule + (r.ok ? "" : " " + await r.text()));
		}
		return out.join("\n");
	})()`)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(kinds, "\n")
	if len(lines) != 8 {
		t.Fatalf("builder kinds: %d rules, want 7 kinds and their join:\n%s", len(lines), kinds)
	}
	for _, l := range lines {
		if !strings.HasPrefix(l, "200 ") {
			t.Errorf("the visual editor wrote a rule the API refuses: %s", l)
		}
	}
	t.Logf("rules the visual editor writes:\n%s", kinds)

	// A broken rule: the error shows at the position the API names.
	const broken = `count("Order Completed") >= 1 and cnt("Product Viewed") > 2`
	col := strings.Index(broken, "cnt") + 1
	b.run("open the builder again", chromedp.Click(sel("audience-new")), chromedp.WaitVisible(sel("rule-text")),
		chromedp.SetValue(sel("rule-text"), broken),
		js(`document.querySelector('[data-testid="rule-text"]').dispatchEvent(new Event("input"))`))
	b.until("the error at its position", fmt.Sprintf(`(() => {
		const e = document.querySelector('[data-testid="rule-error"]');
		if (e.hidden) return "rule-error hidden";
		const lines = e.innerText.split("\n");
		if (!lines[0].startsWith("line 1, column %d: ") || !lines[0].includes("cnt")) return "message: " + lines[0];
		if (lines[1] !== %q) return "rule line: " + lines[1];
		if (lines[2] !== " ".repeat(%d) + "^") return "caret: " + JSON.stringify(lines[2]);
		if (e.dataset.column !== "%d") return "data-column " + e.dataset.column;
		const ta = document.querySelector('[data-testid="rule-text"]');
		if (ta.selectionStart !== %d) return "selection at " + ta.selectionStart;
		return "";
	})()`, col, broken, col-1, col, col-1))

	// The dashboard draws its charts from the node's stats history
	// (GET /v1/stats/history): both charts have lines, the audience chart
	// one for buyers at its size, and the stats show the seeded profiles.
	b.run("open the dashboard", chromedp.Navigate(base+"/#/dashboard"), chromedp.WaitVisible(sel("chart-events")))
	b.until("the charts drawn from the history", `(() => {
		const ev = document.querySelector('[data-testid="chart-events"]'), au = document.querySelector('[data-testid="chart-audiences"]');
		if (!ev || !au) return "no charts";
		if (+ev.dataset.samples < 2) return "samples: " + ev.dataset.samples;
		const evLines = [...ev.querySelectorAll("path.line title")].map(t => t.textContent);
		if (evLines.join(",") !== "events applied/s,ingest accepted/s") return "event lines: " + evLines;
		const buyers = [...au.querySelectorAll("path.line")].find(p => p.querySelector("title").textContent === "buyers");
		if (!buyers) return "no buyers line: " + [...au.querySelectorAll("path.line title")].map(t => t.textContent);
		return "";
	})()`)
	b.until("the dashboard's stats", fmt.Sprintf(`%s.startsWith("3") ? "" : "profiles: " + %s`, text("stat-profiles"), text("stat-profiles")))
	if code, body := apiGet(t, n.URL, "/v1/stats/history"); code != 200 || !strings.Contains(body, `"buyers":2`) {
		t.Fatalf("GET /v1/stats/history: %d %.300s", code, body)
	}

	// Find a person by email.
	b.run("search", chromedp.Click(sel("nav-customers")), chromedp.WaitVisible(sel("search-identifier")),
		chromedp.SendKeys(sel("search-identifier"), "ann@example.com"), chromedp.Click(sel("search-submit")),
		chromedp.WaitVisible(sel("profile-identifiers")))
	for _, c := range []struct{ id, want string }{
		{"profile-identifiers", "ann@example.com"},
		{"profile-identifiers", "u-ann"},
		{"profile-traits", "gold"},
		{"profile-traits", "DK"},
		{"profile-timeline", "Order Completed"},
		{"profile-timeline", "identify"},
		{"profile-audiences", "buyers"},
	} {
		b.until(c.id+" shows "+c.want, fmt.Sprintf(`%s.includes(%q) ? "" : "text: " + %s`, text(c.id), c.want, text(c.id)))
	}
	b.until("three events on the timeline", `document.querySelectorAll('[data-testid="timeline-event"]').length === 3 ? "" : "events: " + document.querySelectorAll('[data-testid="timeline-event"]').length`)

	// A past exit in the audience history: ann enters "repeat-buyers",
	// then leaves it when its rule changes.
	if code, body := apiDo(t, n.URL, "POST", "/v1/audiences", `{"name":"repeat-buyers","rule":"count(\"Order Completed\") >= 1"}`); code != 201 {
		t.Fatalf("create repeat-buyers: %d %s", code, body)
	}
	waitSize := func(name, size string) {
		check.For(t, waitFor, 50*time.Millisecond, func() error {
			if code, body := apiGet(t, n.URL, "/v1/audiences/"+name); code != 200 || !strings.Contains(body, `"size":`+size+`}`) {
				return fmt.Errorf("audience %s: %d %s, want size %s", name, code, body, size)
			}
			return nil
		})
	}
	waitSize("repeat-buyers", "2")
	if code, body := apiDo(t, n.URL, "PUT", "/v1/audiences/repeat-buyers", `{"rule":"count(\"Order Completed\") >= 3"}`); code != 200 {
		t.Fatalf("change repeat-buyers: %d %s", code, body)
	}
	waitSize("repeat-buyers", "0")
	b.run("ann again, by profile id (a new hash: the page draws afresh)", chromedp.Navigate(base+"/#/customers/profile_id%3A"+annID), chromedp.WaitVisible(sel("history-entry")))
	b.until("the past exit in the audience history", `(() => {
		const rows = [...document.querySelectorAll('[data-testid="profile-audience-history"] [data-testid="history-entry"]')].map(r => r.innerText.replace(/\s+/g, " "));
		const exit = rows.findIndex(r => r.includes("repeat-buyers") && r.includes("exited") && r.includes("rule created or changed") && r.includes("v2"));
		const entry = rows.findIndex(r => r.includes("repeat-buyers") && r.includes("entered"));
		if (exit < 0 || entry < exit) return "rows: " + rows.join(" | ");
		if (!rows.some(r => r.includes("buyers") && r.includes("entered"))) return "no entry into buyers: " + rows.join(" | ");
		if (document.querySelector('[data-testid="profile-audiences"]').innerText.includes("repeat-buyers")) return "repeat-buyers still among the current audiences";
		return "";
	})()`)

	// The timeline pages: cy has more events than a page; "Older events"
	// loads the rest from the API's cursor.
	track(t, n.URL, key, 24)
	check.For(t, waitFor, 50*time.Millisecond, func() error {
		if code, body := apiGet(t, n.URL, "/v1/profiles/email:cy@example.com"); code != 200 || !strings.Contains(body, `"total_events":26`) {
			return fmt.Errorf("cy's events not all applied: %d %s", code, body)
		}
		return nil
	})
	b.run("cy's timeline", chromedp.Navigate(base+"/#/customers/email%3Acy%40example.com"), chromedp.WaitVisible(sel("timeline-more")))
	b.until("a first page of 20", `document.querySelectorAll('[data-testid="timeline-event"]').length === 20 ? "" : "events: " + document.querySelectorAll('[data-testid="timeline-event"]').length`)
	b.run("older events", chromedp.Click(sel("timeline-more")))
	b.until("the older page appended", `(() => {
		const rows = [...document.querySelectorAll('[data-testid="timeline-event"]')].map(r => r.innerText);
		if (rows.length !== 26) return "events: " + rows.length;
		if (!document.querySelector('[data-testid="timeline-more"]').hidden) return "an older button after the last page";
		if (!rows[25].includes("identify")) return "the oldest is not cy's identify: " + rows[25];
		return new Set(rows).size === rows.length ? "" : "an event twice";
	})()`)

	// Member search asks the server: an email prefix, then an exact identifier.
	b.run("buyers' members", chromedp.Navigate(base+"/#/audiences/members/buyers"), chromedp.WaitVisible(sel("member-row")),
		chromedp.SendKeys(sel("members-search"), "BOB@"))
	memberRows := `[...document.querySelectorAll('[data-testid="member-row"]')].map(r => r.innerText.replace(/\s+/g, " "))`
	b.until("bob found by an email prefix", fmt.Sprintf(`(() => { const r = %s; return r.length === 1 && r[0].includes("email:bob@example.com") ? "" : "rows: " + r.join(" | "); })()`, memberRows))
	b.run("search exactly", js(`document.querySelector('[data-testid="members-search"]').value = ""`),
		chromedp.SendKeys(sel("members-search"), "email:ann@example.com\r"))
	b.until("ann found exactly", fmt.Sprintf(`(() => { const r = %s; return r.length === 1 && r[0].includes("user_id:u-ann") && %s.startsWith("exact") ? "" : "rows: " + r.join(" | ") + " note: " + %s; })()`, memberRows, text("members-note"), text("members-note")))
	b.mu.Lock()
	searched := slices.ContainsFunc(b.queries, func(r string) bool {
		return strings.HasPrefix(r, "/v1/audiences/buyers/members?") && strings.Contains(r, "q=email%3Aann%40example.com")
	})
	b.mu.Unlock()
	if !searched {
		t.Error("the search was not asked of the server (no GET /v1/audiences/buyers/members?q=email%3Aann%40example.com)")
	}

	if dir := os.Getenv("AURUM_SCREENSHOTS"); dir != "" {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		// A destination that delivers and a dead letter, for the pictures.
		hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(200) }))
		defer hook.Close()
		if code, body := apiDo(t, n.URL, "POST", "/v1/destinations", `{"name":"crm-hook","kind":"webhook","url":"`+hook.URL+`","secret":"hook-secret-0123456789","audiences":["buyers"],"channel":"email"}`); code != 201 {
			t.Fatalf("create destination: %d %s", code, body)
		}
		// (a batch of only rejected events is a 400: one good event with it)
		postBatch(t, n.URL, key, `{"batch":[{"type":"track","userId":"u-cy","event":"","properties":{"sku":"C1"}},{"type":"track","userId":"u-cy","event":"Product Viewed","properties":{"sku":"C2"}}]}`)
		// Let the dashboard take a few samples while events arrive, so
		// that its charts have lines.
		b.run("dashboard", chromedp.Navigate(base+"/#/dashboard"), chromedp.WaitVisible(sel("page-dashboard")))
		for i := range 60 { // the node samples every 200 ms here, the dashboard refreshes every second
			track(t, n.URL, key, 4+(i/6%5)*3)
			time.Sleep(200 * time.Millisecond)
		}
		b.screenshotAll(dir)
		b.run("sign out for the sign-in screenshot", chromedp.Navigate(base+"/#/dashboard"), chromedp.WaitVisible(sel("signout")), chromedp.Click(sel("signout")), chromedp.WaitVisible(sel("login-token")))
		b.screenshot(dir, "signin")
	} else {
		b.run("sign out", chromedp.Click(sel("signout")), chromedp.WaitVisible(sel("login-token")))
	}

	// A viewer: no control that changes anything, and a forced change is refused.
	signIn(viewerToken)
	controls := `[data-testid="audience-new"],[data-testid="audience-edit"],[data-testid="audience-delete"],[data-testid="audience-save"],` +
		`[data-testid="destination-form"],[data-testid="destination-delete"],[data-testid="destination-create"],[data-testid="profile-erase"],` +
		`[data-testid="profile-export"],[data-testid="token-create"],[data-testid="user-create"],[data-testid="nav-access"]`
	for _, p := range []struct{ hash, ready string }{
		{"#/dashboard", "page-dashboard"}, {"#/audiences", "audience-row"}, {"#/audiences/members/buyers", "member-row"},
		{"#/customers/email%3Aann%40example.com", "profile-audiences"}, {"#/destinations", "page-destinations"},
		{"#/audiences/new", "page-audiences"}, {"#/access", "page-dashboard"},
	} {
		b.run("viewer opens "+p.hash, chromedp.Navigate(base+"/"+p.hash), chromedp.WaitVisible(sel(p.ready)))
		b.until("viewer sees no edit control on "+p.hash, fmt.Sprintf(`(() => {
			const c = [...document.querySelectorAll(%q)].map(e => e.dataset.testid);
			const forms = [...document.querySelectorAll("main form")].filter(f => !f.querySelector('[data-testid="search-submit"]')).length;
			return c.length || forms ? "controls: " + c.join(", ") + " forms: " + forms : "";
		})()`, controls))
	}
	b.run("viewer exports the audience", chromedp.Navigate(base+"/#/audiences/members/buyers"), chromedp.WaitVisible(sel("audience-export")),
		chromedp.SetValue(sel("export-channel"), "none"), chromedp.Click(sel("audience-export")))
	check.For(t, waitFor, 50*time.Millisecond, func() error {
		b.mu.Lock()
		defer b.mu.Unlock()
		for _, r := range b.requests {
			if strings.HasSuffix(r, " /v1/audiences/buyers/export") {
				return nil
			}
		}
		return errors.New("no GET /v1/audiences/buyers/export after Export")
	})
	if b, err := b.eval(`[...document.querySelectorAll('[data-testid="page-members"] .error')].map(e => e.innerText).join(" ")`); err != nil || b != "" {
		t.Fatalf("export: %v %s", err, b)
	}
	b.run("viewer opens a member", chromedp.Navigate(base+"/#/audiences/members/buyers"), chromedp.WaitVisible(sel("member-link")),
		chromedp.Click(sel("member-link")), chromedp.WaitVisible(sel("profile-identifiers")))
	b.until("the member's profile", fmt.Sprintf(`/u-ann|u-bob/.test(%s) ? "" : "identifiers: " + %s`, text("profile-identifiers"), text("profile-identifiers")))
	b.run("viewer searches by profile id", chromedp.Navigate(base+"/#/customers"), chromedp.WaitVisible(sel("search-identifier")),
		chromedp.SendKeys(sel("search-identifier"), annID), chromedp.Click(sel("search-submit")), chromedp.WaitVisible(sel("profile-identifiers")))
	b.until("ann by profile id", fmt.Sprintf(`%s.includes("ann@example.com") ? "" : "identifiers: " + %s`, text("profile-identifiers"), text("profile-identifiers")))
	forced, err := b.eval(`(async () => {
		const csrf = (document.cookie.match(/(?:^|; )aurum_csrf=([^;]*)/) || [])[1] || "";
		const r = await fetch("/v1/audiences", {method: "POST", credentials: "same-origin",
			headers: {"Content-Type": "application/json", "X-Aurum-CSRF": decodeURIComponent(csrf)},
			body: JSON.stringify({name: "forced", rule: "count(\"x\") >= 1"})});
		return r.status + " " + (await r.text());
	})()`)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(forced, "403 ") || !strings.Contains(forced, "role viewer may not") {
		t.Errorf("viewer's forced POST /v1/audiences: %s, want 403 naming the role", forced)
	}
	if code, _ := apiGet(t, n.URL, "/v1/audiences/forced"); code != 404 {
		t.Errorf("the forced audience exists: GET answered %d", code)
	}

	// The privacy role: only the customer view, with export and an erasure
	// that asks for confirmation.
	b.run("sign out the viewer", chromedp.Click(sel("signout")), chromedp.WaitVisible(sel("login-token")))
	signIn(privacyToken)
	b.until("privacy sees only Customers", `[...document.querySelectorAll("#nav a")].map(a => a.dataset.testid).join(",") === "nav-customers" ? "" : "nav: " + [...document.querySelectorAll("#nav a")].map(a => a.dataset.testid).join(",")`)
	b.run("privacy finds bob", chromedp.Navigate(base+"/#/customers/email%3Abob%40example.com"), chromedp.WaitVisible(sel("profile-erase")),
		chromedp.WaitVisible(sel("profile-export")),
		chromedp.SendKeys(sel("erase-confirm"), "email:someone-else@example.com"), chromedp.Click(sel("profile-erase")))
	b.until("a wrong confirmation erases nothing", `document.querySelector('[data-testid="profile"] .error') && !document.querySelector('[data-testid="erase-status"]') ? "" : "no refusal shown"`)
	if code, body := apiGet(t, n.URL, "/v1/privacy/erasures"); code != 200 || strings.Contains(body, "bob") {
		t.Fatalf("erasures after a wrong confirmation: %d %s", code, body)
	}
	b.run("confirm the erasure", js(`document.querySelector('[data-testid="erase-confirm"]').value = ""`), chromedp.SendKeys(sel("erase-confirm"), "email:bob@example.com"),
		chromedp.Click(sel("profile-erase")), chromedp.WaitVisible(sel("erase-status")))
	check.For(t, waitFor, 50*time.Millisecond, func() error {
		if code, body := apiGet(t, n.URL, "/v1/privacy/erasures"); code != 200 || !strings.Contains(body, `"id"`) {
			return fmt.Errorf("no erasure request after the confirmation: %d %s", code, body)
		}
		return nil
	})

	// Single sign-on through the OpenID Connect provider: nob has no role
	// claim, ana's makes her an admin.
	// nob's claim maps to no role: the browser comes back to the sign-in
	// page, which says why, with no session.
	b.run("sign out", chromedp.Click(sel("signout")), chromedp.WaitVisible(sel("login-sso")))
	b.run("sign in through the provider without a role", chromedp.Click(sel("login-sso")),
		chromedp.WaitVisible(chromedp.CSS("input#username")),
		chromedp.SendKeys(chromedp.CSS("input#username"), "nob"), chromedp.SendKeys(chromedp.CSS("input#password"), "pw-nob"),
		chromedp.Click(chromedp.CSS("button[type=submit]")), chromedp.WaitVisible(sel("login-error")))
	b.until("the sign-in page says there is no role", fmt.Sprintf(`%s.includes("no Aurum role") && location.search === "" && !document.querySelector('[data-testid="whoami"]')?.offsetParent ? "" : "login-error: " + %s + " search: " + location.search`, text("login-error"), text("login-error")))
	b.run("sign in through the provider", chromedp.Click(sel("login-sso")),
		chromedp.WaitVisible(chromedp.CSS("input#username")),
		chromedp.SendKeys(chromedp.CSS("input#username"), "ana"), chromedp.SendKeys(chromedp.CSS("input#password"), "pw-ana"),
		chromedp.Click(chromedp.CSS("button[type=submit]")), chromedp.WaitVisible(sel("nav-access")))
	b.until("signed in as ana, admin", fmt.Sprintf(`%s === "ana@example.com · admin" ? "" : "whoami: " + %s`, text("whoami"), text("whoami")))

	// Every request the pages made is a console asset or a route of the
	// API's table that routes.js declares (must-show 3, seen in the browser).
	declared := map[string]bool{}
	for _, r := range consoleRoutes(t) {
		declared[r.pattern] = true
	}
	mux := http.NewServeMux()
	for _, r := range n.API.Routes() {
		mux.HandleFunc(r.Pattern, func(http.ResponseWriter, *http.Request) {})
	}
	host := strings.TrimPrefix(base, "http://")
	provider, err := url.Parse(issuer)
	if err != nil {
		t.Fatal(err)
	}
	b.mu.Lock()
	reqs := append([]string(nil), b.requests...)
	b.mu.Unlock()
	seen := map[string]int{}
	for _, r := range reqs {
		f := strings.SplitN(r, " ", 3)
		method, h, path := f[0], f[1], f[2]
		if h == provider.Host {
			continue // the provider's sign-in pages
		}
		if h != host {
			t.Errorf("request to another host: %s", r)
			continue
		}
		if path == "/" || strings.HasPrefix(path, "/assets/") {
			continue
		}
		req, _ := http.NewRequest(method, base+path, nil)
		_, pattern := mux.Handler(req)
		if pattern == "" || !declared[pattern] {
			t.Errorf("the console requested %s %s: API route %q, declared in routes.js: %v", method, path, pattern, declared[pattern])
		}
		seen[pattern]++
	}
	for _, p := range []string{"GET /v1/session/oidc/login", "GET /v1/session/oidc/callback", "POST /v1/session", "DELETE /v1/session", "GET /v1/stats/history"} {
		if seen[p] == 0 {
			t.Errorf("no %s seen in the browser", p)
		}
	}
	if len(seen) < 8 {
		t.Errorf("only %d API routes seen in the browser: %v", len(seen), seen)
	}
	t.Logf("%d requests; API routes seen: %v", len(reqs), seen)

	// The pages threw nothing and broke no rule of the CSP.
	b.mu.Lock()
	problems := append([]string(nil), b.problems...)
	b.mu.Unlock()
	for _, p := range problems {
		t.Errorf("in the browser: %s", p)
	}

}
