package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aurumcdp/aurum/internal/check"
)

// receiver is a webhook endpoint that records the transitions it got as
// "<audience>:<user>" (the person's user id from the payload's identifiers).
type receiver struct {
	mu     sync.Mutex
	got    []string
	bodies map[string]map[string]any // "<audience>:<user>" → payload
	srv    *httptest.Server
}

func newReceiver(t *testing.T) *receiver {
	r := &receiver{bodies: map[string]map[string]any{}}
	r.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		b, _ := io.ReadAll(req.Body)
		var m map[string]any
		if err := json.Unmarshal(b, &m); err != nil {
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		user := "?"
		if ids, ok := m["identifiers"].(map[string]any); ok {
			if u, ok := ids["user_id"].([]any); ok && len(u) > 0 {
				user, _ = u[0].(string)
			}
		}
		key := fmt.Sprintf("%v:%s", m["audience"], user)
		r.mu.Lock()
		r.got = append(r.got, key)
		r.bodies[key] = m
		r.mu.Unlock()
	}))
	t.Cleanup(r.srv.Close)
	return r
}

func (r *receiver) transitions() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := slices.Clone(r.got)
	slices.Sort(out)
	return out
}

func (r *receiver) body(key string) map[string]any {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.bodies[key]
}

// TestConsentEnforced is issue #5's consent test on the real binary: a
// person who withdraws email consent under one identifier (a cookie, merged
// into the person later; or the phone, through the API, after entering)
// receives nothing on any email destination, though still in the
// audiences, while an SMS destination still receives them; a person without
// any statement is delivered everywhere. The GCR shows the consent, the
// transitions carry it, and an email export leaves the person out.
func TestConsentEnforced(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a real aurum process")
	}
	parallelProcess(t)
	n := startNode(t, t.TempDir())
	key := n.createSource("web")
	for _, a := range []struct{ name, rule string }{
		{"viewers", `count("Product Viewed") >= 1`},
		{"buyers", `count("Order Completed") >= 1`},
	} {
		n.mustJSON("POST", "/v1/audiences", map[string]string{"name": a.name, "rule": a.rule}, adminAuth, http.StatusCreated, nil)
	}
	mailA, mailB, text := newReceiver(t), newReceiver(t), newReceiver(t)
	for _, d := range []struct {
		name, channel string
		r             *receiver
	}{{"mail-a", "email", mailA}, {"mail-b", "email", mailB}, {"text", "sms", text}} {
		n.mustJSON("POST", "/v1/destinations", map[string]any{"name": d.name, "url": d.r.srv.URL, "secret": "consent-test-secret-0123",
			"audiences": []string{"viewers", "buyers"}, "channel": d.channel}, adminAuth, http.StatusCreated, nil)
	}
	// A destination without a channel is refused, naming the choices.
	code, body, err := n.request("POST", "/v1/destinations", map[string]any{"name": "nochan", "url": "http://127.0.0.1:1/x",
		"secret": "consent-test-secret-0123", "audiences": []string{"viewers"}}, adminAuth)
	var eb struct{ Error, Field string }
	if err != nil || code != http.StatusBadRequest || json.Unmarshal(body, &eb) != nil || eb.Field != "channel" || !strings.Contains(eb.Error, "email, sms") {
		t.Fatalf("destination without a channel: %d %s (%v)", code, body, err)
	}
	send := func(events ...map[string]any) {
		t.Helper()
		n.mustJSON("POST", "/v1/batch", map[string]any{"batch": events}, writeKeyAuth(key), http.StatusOK, nil)
	}
	person := func(user, email, phone string) map[string]any {
		return map[string]any{"type": "identify", "userId": user, "traits": map[string]any{"email": email, "phone": phone}}
	}
	track := func(name string, ids map[string]any) map[string]any {
		ev := map[string]any{"type": "track", "event": name}
		for k, v := range ids {
			ev[k] = v
		}
		return ev
	}

	// Ann withdraws email consent under her cookie before she is known,
	// then signs in (the cookie's profile merges into hers) and enters
	// "viewers" and later "buyers".
	send(map[string]any{"type": "page", "anonymousId": "cookie-ann", "name": "Home"},
		track("Consent Updated", map[string]any{"anonymousId": "cookie-ann", "properties": map[string]any{"email": false}}))
	send(person("ann", "ann@example.com", "+4520000001"))
	send(track("Signed In", map[string]any{"userId": "ann", "anonymousId": "cookie-ann"}),
		track("Product Viewed", map[string]any{"userId": "ann"}))
	// Bob and the control, Cy, enter "viewers".
	send(person("bob", "bob@example.com", "+4520000002"), track("Product Viewed", map[string]any{"userId": "bob"}),
		person("cy", "cy@example.com", "+4520000003"), track("Product Viewed", map[string]any{"userId": "cy"}))
	waitFor := func(r *receiver, name string, want ...string) {
		t.Helper()
		check.For(t, 30*time.Second, 20*time.Millisecond, func() error {
			got := r.transitions()
			for _, w := range want {
				if !slices.Contains(got, w) {
					return fmt.Errorf("%s got %v, waiting for %s", name, got, w)
				}
			}
			return nil
		})
	}
	waitFor(mailA, "mail-a", "viewers:bob", "viewers:cy")
	waitFor(mailB, "mail-b", "viewers:bob", "viewers:cy")

	// Bob withdraws email consent through the API under his phone, after
	// entering; then Ann, Bob and Cy buy: a later transition.
	n.mustJSON("PUT", "/v1/profiles/phone:+4520000002/consent", map[string]bool{"email": false}, adminAuth, http.StatusOK, nil)
	check.For(t, 10*time.Second, 20*time.Millisecond, func() error {
		p, err := n.profile("user_id:bob")
		if err != nil {
			return err
		}
		if c := consentOf(p, "email"); c["granted"] != false || c["source"] != "aurum" {
			return fmt.Errorf("bob's email consent %v", c)
		}
		return nil
	})
	send(track("Order Completed", map[string]any{"userId": "ann"}), track("Order Completed", map[string]any{"userId": "bob"}),
		track("Order Completed", map[string]any{"userId": "cy"}))

	all := []string{"buyers:ann", "buyers:bob", "buyers:cy", "viewers:ann", "viewers:bob", "viewers:cy"}
	waitFor(text, "text (sms)", all...)
	// Every transition has been handled by the email destinations once
	// each has 3 deliveries and 3 skips.
	check.For(t, 30*time.Second, 20*time.Millisecond, func() error {
		var out struct {
			Destinations []struct {
				Name  string `json:"name"`
				Stats struct {
					Delivered, Skipped uint64
				} `json:"stats"`
			} `json:"destinations"`
		}
		n.mustJSON("GET", "/v1/destinations", nil, adminAuth, http.StatusOK, &out)
		for _, d := range out.Destinations {
			want := [2]uint64{3, 3}
			if d.Name == "text" {
				want = [2]uint64{6, 0}
			}
			if d.Stats.Delivered != want[0] || d.Stats.Skipped != want[1] {
				return fmt.Errorf("%s: %d delivered, %d skipped; want %v", d.Name, d.Stats.Delivered, d.Stats.Skipped, want)
			}
		}
		return nil
	})
	wantMail := []string{"buyers:cy", "viewers:bob", "viewers:cy"}
	for name, r := range map[string]*receiver{"mail-a": mailA, "mail-b": mailB} {
		if got := r.transitions(); !slices.Equal(got, wantMail) {
			t.Errorf("%s received %v, want %v (nothing for ann; bob only before withdrawing)", name, got, wantMail)
		}
	}
	if got := text.transitions(); !slices.Equal(got, all) {
		t.Errorf("the sms destination received %v, want %v", got, all)
	}
	// The transitions carry the person's consent.
	if c, _ := text.body("buyers:ann")["consent"].(map[string]any); c["email"] != false || c["sms"] != true {
		t.Errorf("ann's transition carries consent %v", text.body("buyers:ann")["consent"])
	}
	if c, _ := text.body("buyers:cy")["consent"].(map[string]any); c["email"] != true || c["sms"] != true {
		t.Errorf("cy's transition carries consent %v", text.body("buyers:cy")["consent"])
	}
	// The skips are counted.
	_, metrics, err := n.request("GET", "/metrics", nil, adminAuth)
	if err != nil || !strings.Contains(string(metrics), `aurum_webhook_skipped_total{destination="mail-a",reason="consent"} 3`) {
		t.Errorf("metrics lack the skips (%v):\n%s", err, grepLines(string(metrics), "aurum_webhook_skipped_total"))
	}

	// Ann and Bob are still members; the GCR shows the consent and where it
	// came from.
	ids := map[string]string{}
	for _, u := range []string{"ann", "bob", "cy"} {
		p, err := n.profile("user_id:" + u)
		if err != nil {
			t.Fatal(err)
		}
		ids[u], _ = p["profile_id"].(string)
	}
	for _, aud := range []string{"viewers", "buyers"} {
		var page struct {
			Members []struct {
				ProfileID string `json:"profile_id"`
			} `json:"members"`
		}
		n.mustJSON("GET", "/v1/audiences/"+aud+"/members", nil, adminAuth, http.StatusOK, &page)
		var got []string
		for _, m := range page.Members {
			got = append(got, m.ProfileID)
		}
		for u, id := range ids {
			if !slices.Contains(got, id) {
				t.Errorf("%s (%s) is not a member of %s: %v", u, id, aud, got)
			}
		}
	}
	ann, err := n.profile("email:ann@example.com")
	if err != nil {
		t.Fatal(err)
	}
	if c := consentOf(ann, "email"); c["granted"] != false || c["source"] != "web" || c["default"] == true {
		t.Errorf("ann's email consent %v, want withdrawn by her web statement", c)
	}
	if c := consentOf(ann, "sms"); c["granted"] != true || c["default"] != true {
		t.Errorf("ann's sms consent %v, want granted by default", c)
	}

	// Exports: email leaves Ann and Bob out (counted), push (no address
	// needed) keeps everyone.
	for _, tc := range []struct {
		channel  string
		want     []string
		excluded string
	}{{"email", []string{ids["cy"]}, "2"}, {"push", []string{ids["ann"], ids["bob"], ids["cy"]}, "0"}} {
		got, excluded := exportMembers(t, n, "buyers", tc.channel)
		slices.Sort(tc.want)
		if !slices.Equal(got, tc.want) || excluded != tc.excluded {
			t.Errorf("export channel=%s: %v (excluded %q), want %v (excluded %s)", tc.channel, got, excluded, tc.want, tc.excluded)
		}
	}

	// The CLI: aurum profile consent, export --channel, --consent-default.
	env := []string{"AURUM_SERVER=" + n.HTTP, "AURUM_ADMIN_TOKEN=" + testAdminToken, "HOME=" + t.TempDir()}
	if out, code := aurumCLI(t, env, "profile", "consent", "email:cy@example.com", "push=false"); code != 0 || !strings.Contains(out, `"success": true`) {
		t.Errorf("profile consent: exit %d:\n%s", code, out)
	}
	if out, code := aurumCLI(t, env, "profile", "consent", "email:cy@example.com", "fax=false"); code != 1 || !strings.Contains(out, "fax") {
		t.Errorf("profile consent fax=false: exit %d:\n%s", code, out)
	}
	if out, code := aurumCLI(t, env, "audience", "export", "buyers", "--channel", "email", "--format", "ndjson"); code != 0 ||
		strings.Count(out, "profile_id") != 1 || !strings.Contains(out, "aurum: buyers for channel email: 1 exported; left out: 2 without consent for email") {
		t.Errorf("export --channel email: exit %d:\n%s", code, out)
	}
	if out, code := aurumCLI(t, env, "serve", "--data-dir", t.TempDir(), "--consent-default", "maybe"); code != 1 || !strings.Contains(out, "--consent-default") {
		t.Errorf("serve --consent-default maybe: exit %d:\n%s", code, out)
	}
}

func consentOf(p map[string]any, channel string) map[string]any {
	c, _ := p["consent"].(map[string]any)
	ch, _ := c[channel].(map[string]any)
	return ch
}

// exportMembers exports an audience as NDJSON for channel and returns the
// sorted profile ids and the Aurum-Consent-Excluded trailer.
func exportMembers(t *testing.T, n *node, audience, channel string) ([]string, string) {
	t.Helper()
	req, err := http.NewRequest("GET", n.HTTP+"/v1/audiences/"+audience+"/export?format=ndjson&channel="+channel, nil)
	if err != nil {
		t.Fatal(err)
	}
	adminAuth(req)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("export %s: %d %s", channel, resp.StatusCode, b)
	}
	var ids []string
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		var m struct {
			ProfileID string `json:"profile_id"`
		}
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			t.Fatalf("export line %q: %v", sc.Text(), err)
		}
		ids = append(ids, m.ProfileID)
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	slices.Sort(ids)
	return ids, resp.Trailer.Get("Aurum-Consent-Excluded")
}

func grepLines(s, substr string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, substr) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
