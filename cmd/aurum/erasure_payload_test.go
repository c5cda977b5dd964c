package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/aurumcdp/aurum/internal/check"
	"github.com/aurumcdp/aurum/store"
)

// TestErasureSealsWholePayload (issue #10, defect 1): a person's email,
// name and phone are sent in traits, in properties (also nested in arrays
// and objects), in context.ip, in context.page.url and referrer query
// strings and in context.userAgent. After their erasure completes, no file
// under the data dir holds any of them in any stored spelling (as sent,
// normalised, lower and upper case, JSON-escaped, URL-encoded, E.164,
// digits only), neither in the raw bytes of the files (JetStream keeps its
// blocks uncompressed) nor in any value of the Pebble databases read
// through Pebble (its blocks are compressed, which could hide a plaintext
// from a grep). A person who is not erased still answers every query
// (profile, events, export, audience members) as before the erasure, and an
// offline replay of the log gives the node's digest.
func TestErasureSealsWholePayload(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a real aurum process")
	}
	parallelProcess(t)
	dataDir := t.TempDir()
	n := startNode(t, dataDir, "--tick", "0")
	key := n.createSource("shop")
	n.mustJSON("POST", "/v1/audiences", map[string]string{"name": "buyers", "rule": `count("Order Completed") >= 1`}, adminAuth, http.StatusCreated, nil)

	type person struct {
		user, anon, emailSent, email, name, phoneSent, phone, ip string
	}
	zeph := person{user: "u-zeph", anon: "a-zeph", emailSent: "Zephyrine.Q@Example.ORG", email: "zephyrine.q@example.org",
		name: "Zéphyrine Quillfeather", phoneSent: "+45 20 98 76 54", phone: "+4520987654", ip: "198.51.100.173"}
	kim := person{user: "u-kim", anon: "a-kim", emailSent: "Kimberly.V@Example.NET", email: "kimberly.v@example.net",
		name: "Kimberly Vantablack", phoneSent: "+45 31 41 59 26", phone: "+4531415926", ip: "203.0.113.42"}
	const control = "Control-Event-Zz4242" // an event name: in clear by design

	send := func(path string, body map[string]any) {
		t.Helper()
		n.mustJSON("POST", path, body, writeKeyAuth(key), http.StatusOK, nil)
	}
	sendAll := func(p person) {
		t.Helper()
		q := url.Values{"email": {p.email}, "name": {p.name}, "phone": {p.phoneSent}}.Encode()
		ctx := map[string]any{
			"ip":        p.ip,
			"userAgent": "Mozilla/5.0 (" + p.name + "; " + p.emailSent + "; " + p.phoneSent + ")",
			"page": map[string]any{
				"url":      "https://shop.example/thanks?" + q,
				"referrer": "https://mail.example/open?to=" + url.QueryEscape(p.emailSent) + "&n=" + url.PathEscape(p.name),
				"search":   "?" + q,
			},
		}
		send("/v1/identify", map[string]any{"userId": p.user, "anonymousId": p.anon, "messageId": p.user + "-1",
			"traits":  map[string]any{"email": p.emailSent, "name": p.name, "phone": p.phoneSent, "address": map[string]any{"recipient": p.name}},
			"context": ctx})
		send("/v1/track", map[string]any{"anonymousId": p.anon, "messageId": p.user + "-2", "event": "Order Completed",
			"properties": map[string]any{
				"revenue": 42.5,
				"note":    "Gift for " + p.name + ", call " + p.phoneSent,
				// category and product ids are property values: sealed like
				// the rest (the feature row does not keep them in clear)
				"category": "Gifts for " + p.name,
				"products": []any{map[string]any{"product_id": p.emailSent, "category": p.phoneSent}},
				"items":    []any{map[string]any{"sku": "A-1", "engraving": p.name}, []any{"cc", p.emailSent, p.phone}},
				"shipping": map[string]any{"to": map[string]any{"name": strings.ToUpper(p.name), "email": p.email,
					"phone": strings.Map(func(r rune) rune {
						if r >= '0' && r <= '9' {
							return r
						}
						return -1
					}, p.phone)}},
			},
			"context": ctx})
		send("/v1/page", map[string]any{"userId": p.user, "messageId": p.user + "-3", "name": "Thanks",
			"properties": map[string]any{"url": "https://shop.example/thanks?" + q, "title": "Thanks, " + p.name},
			"context":    ctx})
		send("/v1/track", map[string]any{"userId": p.user, "messageId": p.user + "-4", "event": control})
	}
	sendAll(zeph)
	sendAll(kim)

	members := func() []string {
		t.Helper()
		var out struct {
			Members []map[string]any `json:"members"`
		}
		n.mustJSON("GET", "/v1/audiences/buyers/members", nil, adminAuth, http.StatusOK, &out)
		var ids []string
		for _, m := range out.Members {
			ids = append(ids, fmt.Sprint(m["profile_id"]))
		}
		return ids
	}
	check.For(t, 30*time.Second, 50*time.Millisecond, func() error {
		if m := members(); len(m) != 2 {
			return fmt.Errorf("buyers: %v, want 2 members", m)
		}
		return nil
	})
	// What the non-erased person answers, before.
	kimRef := "email:" + kim.email
	answers := func() map[string]string {
		t.Helper()
		out := map[string]string{}
		for _, path := range []string{"/v1/profiles/" + kimRef, "/v1/profiles/" + kimRef + "/events", "/v1/profiles/" + kimRef + "/export"} {
			code, body, err := n.request("GET", path, nil, adminAuth)
			if err != nil || code != http.StatusOK {
				t.Fatalf("GET %s: %d %s %v", path, code, body, err)
			}
			if !strings.HasSuffix(path, "/events") { // all but what the clock moves
				var m map[string]any
				if err := json.Unmarshal(body, &m); err != nil {
					t.Fatal(err)
				}
				delete(m, "exported_at")
				prof := m
				if p, ok := m["profile"].(map[string]any); ok {
					prof = p
				}
				// The features are as of the log clock, which any entry moves.
				if f, ok := prof["features"].(map[string]any); ok {
					for _, k := range []string{"as_of", "days_since_last_activity", "events", "categories", "products"} {
						delete(f, k)
					}
				} else {
					t.Fatalf("GET %s: no features: %s", path, body)
				}
				body, _ = json.Marshal(m)
			}
			out[path] = string(body)
		}
		return out
	}
	// Wait until every one of Kim's events is applied (buyers counts her
	// after her second event; the last two may still be on their way).
	var before map[string]string
	check.For(t, 30*time.Second, 50*time.Millisecond, func() error {
		before = answers()
		// Every answer must show it: they are read one after another, and
		// the event may be applied between two reads.
		for path, body := range before {
			if !strings.Contains(body, control) {
				return fmt.Errorf("kim's last event %q not applied yet in GET %s", control, path)
			}
		}
		return nil
	})
	for _, s := range []string{`"note":"Gift for Kimberly Vantablack, call +45 31 41 59 26"`, `"engraving":"Kimberly Vantablack"`,
		`"ip":"203.0.113.42"`, `"revenue"`} {
		if !strings.Contains(before["/v1/profiles/"+kimRef+"/events"], s) {
			t.Fatalf("kim's events lack %s: %s", s, before["/v1/profiles/"+kimRef+"/events"])
		}
	}
	kimProfile, err := n.profile(kimRef)
	if err != nil {
		t.Fatal(err)
	}

	// Erase Zéphyrine.
	var info struct {
		ID     string `json:"id"`
		Status string `json:"status"`
	}
	n.mustJSON("POST", "/v1/privacy/erasures", map[string]string{"identifier": "email:" + zeph.emailSent}, adminAuth, http.StatusAccepted, &info)
	check.For(t, 60*time.Second, 100*time.Millisecond, func() error {
		n.mustJSON("GET", "/v1/privacy/erasures/"+info.ID, nil, adminAuth, http.StatusOK, &info)
		if info.Status != "completed" {
			return fmt.Errorf("status %s", info.Status)
		}
		return nil
	})
	if _, err := n.profile("email:" + zeph.email); err == nil {
		t.Fatal("the erased person still answers")
	}
	// Kim answers as before: profile, events, export, audience.
	after := answers()
	for path, b := range before {
		if after[path] != b {
			t.Errorf("GET %s changed by another person's erasure:\nbefore %s\nafter  %s", path, b, after[path])
		}
	}
	if m := members(); len(m) != 1 || m[0] != kimProfile["profile_id"] {
		t.Errorf("buyers after the erasure: %v, want kim (%v) only", m, kimProfile["profile_id"])
	}

	// The node's digest, for the offline replay below.
	out, code := aurumCLI(t, []string{"AURUM_SERVER=" + n.HTTP, "AURUM_ADMIN_TOKEN=" + testAdminToken}, "digest", "--server", n.HTTP)
	if code != 0 {
		t.Fatalf("digest: %s", out)
	}
	online, _ := parseDigest(t, out)

	// On disk, after a clean stop: nothing of her in any spelling.
	n.stop()
	var needles []string
	add := func(ss ...string) {
		for _, s := range ss {
			needles = append(needles, s, strings.ToLower(s), strings.ToUpper(s), url.QueryEscape(s), url.PathEscape(s))
			if j, _ := json.Marshal(s); len(j) > 2 {
				needles = append(needles, string(j[1:len(j)-1]))
			}
			var esc bytes.Buffer // JSON with every non-ASCII rune escaped
			for _, r := range s {
				if r < 0x80 {
					esc.WriteRune(r)
				} else {
					fmt.Fprintf(&esc, `\u%04x`, r)
				}
			}
			needles = append(needles, esc.String())
		}
	}
	add(zeph.emailSent, zeph.email, zeph.name, "Quillfeather", "Zéphyrine", zeph.phoneSent, zeph.phone, zeph.ip,
		"4520987654", "20987654", "20 98 76 54")
	slices.Sort(needles)
	needles = slices.Compact(needles)
	rawFound := scanDirAll(t, dataDir, needles...)
	for _, nd := range needles {
		for _, f := range rawFound[nd] {
			t.Errorf("after the erasure, %q in the bytes of %s", nd, f)
		}
	}
	pebbleFound := scanPebbleDirs(t, dataDir, append(needles, control)...)
	for _, nd := range needles {
		for _, f := range pebbleFound[nd] {
			t.Errorf("after the erasure, %q in a Pebble value of %s", nd, f)
		}
	}
	// Controls: the scans see what is in clear, in JetStream's files and
	// in Pebble's values.
	inJetStream := false
	for _, f := range scanDirAll(t, dataDir, control)[control] {
		inJetStream = inJetStream || strings.Contains(f, string(filepath.Separator)+"jetstream"+string(filepath.Separator))
	}
	if !inJetStream || len(pebbleFound[control]) == 0 {
		t.Fatalf("control %q not found (JetStream %v, Pebble %v): the scans prove nothing", control, inJetStream, pebbleFound[control])
	}
	// A replay of the log, whose erased properties no longer open, gives
	// the node's state.
	if offline, _ := parseDigest(t, digestOf(t, dataDir)); offline != online {
		t.Fatalf("offline replay digest %s, node %s", offline, online)
	}
}

// scanPebbleDirs opens every Pebble database under dir (a directory
// holding a MANIFEST) through the store package and reports, for each
// needle, the databases holding it in a key or value (decompressed).
func scanPebbleDirs(t *testing.T, dir string, needles ...string) map[string][]string {
	t.Helper()
	var dbs []string
	err := filepath.WalkDir(dir, func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() && strings.HasPrefix(d.Name(), "MANIFEST-") {
			dbs = append(dbs, filepath.Dir(path))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(dbs) == 0 {
		t.Fatal("no Pebble database under the data dir")
	}
	found := map[string][]string{}
	seen := map[string]bool{}
	for _, p := range dbs {
		if seen[p] {
			continue
		}
		seen[p] = true
		db, err := store.Open(p, nil)
		if err != nil {
			t.Fatalf("open %s: %v", p, err)
		}
		hit := map[string]bool{}
		err = db.Scan(nil, bytes.Repeat([]byte{0xff}, 8), false, func(k, v []byte) bool {
			for _, nd := range needles {
				if !hit[nd] && (bytes.Contains(k, []byte(nd)) || bytes.Contains(v, []byte(nd))) {
					hit[nd] = true
					found[nd] = append(found[nd], p)
				}
			}
			return true
		})
		if cerr := db.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			t.Fatalf("scan %s: %v", p, err)
		}
	}
	return found
}
