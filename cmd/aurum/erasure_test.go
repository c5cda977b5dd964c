package main

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aurumcdp/aurum/engine"
	"github.com/aurumcdp/aurum/engine/audit"
	"github.com/aurumcdp/aurum/engine/privacy"
	"github.com/aurumcdp/aurum/internal/check"
	"github.com/nats-io/nats.go"
)

// TestErasureRealProcess: a person with an email, a name and a phone
// enters an audience that a webhook and a NATS subscriber follow, and
// leaves a dead letter; a snapshot is taken. After the erasure completes,
// no file under the data dir (JetStream, Pebble, snapshots, keys) holds
// their email, name or phone in plain text, while before it the plaintext
// copies in the output and dead-letter streams were found (the scan
// works) and a plaintext control is found throughout. The subscribers got
// an exit with reason "erased" and no identifiers; later events with the
// person's identifiers are dropped and counted; a live replay, an offline
// replay and a restart keep them gone with equal digests.
func TestErasureRealProcess(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a real aurum process")
	}
	parallelProcess(t)
	dataDir := t.TempDir()
	n := startNode(t, dataDir, "--tick", "0")
	key := n.createSource("web")

	var hookMu sync.Mutex
	var hooks []map[string]any
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		var v map[string]any
		if json.Unmarshal(body, &v) == nil {
			hookMu.Lock()
			hooks = append(hooks, v)
			hookMu.Unlock()
		}
		w.WriteHeader(http.StatusNoContent)
	}))
	defer hook.Close()
	n.mustJSON("POST", "/v1/audiences", map[string]string{"name": "signups", "rule": `count("Signed Up") >= 1`}, adminAuth, http.StatusCreated, nil)
	n.mustJSON("POST", "/v1/destinations", map[string]any{"name": "crm", "url": hook.URL, "secret": "s3cret-s3cret-s3cret",
		"audiences": []string{"signups"}, "channel": "email"}, adminAuth, http.StatusCreated, nil)

	_, viewer := n.createToken("follower", "viewer")
	nc := natsConnect(t, n.NATS, natsReader(viewer)...)
	var subMu sync.Mutex
	var subMsgs []map[string]any
	sub, err := nc.Subscribe("aurum.audience.>", func(m *nats.Msg) {
		var v map[string]any
		if json.Unmarshal(m.Data, &v) == nil {
			subMu.Lock()
			subMsgs = append(subMsgs, v)
			subMu.Unlock()
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}

	const (
		email     = "erin.erasmus@example.com" // as stored (normalised)
		emailSent = "Erin.Erasmus@Example.COM"
		name      = "Erinna Quintessa Erasmus"
		phoneSent = "+45 20 12 34 56"
		phone     = "+4520123456" // E.164, as stored
		control   = "Plaintext-Control-4242"
	)
	send := func(path string, body map[string]any, want int) {
		t.Helper()
		n.mustJSON("POST", path, body, writeKeyAuth(key), want, nil)
	}
	send("/v1/identify", map[string]any{"userId": "u-erin", "anonymousId": "a-erin", "messageId": "e1",
		"traits": map[string]any{"email": emailSent, "name": name, "phone": phoneSent}}, http.StatusOK)
	send("/v1/track", map[string]any{"anonymousId": "a-erin", "messageId": "e2", "event": "Signed Up"}, http.StatusOK)
	send("/v1/track", map[string]any{"userId": "u-kim", "messageId": "k1", "event": "Signed Up",
		"traits": map[string]any{"email": "kim@example.com"}}, http.StatusOK)
	// The control is an event name: in clear on the log and in the state
	// (properties are sealed).
	send("/v1/track", map[string]any{"userId": "u-kim", "messageId": "k2", "event": control}, http.StatusOK)
	// A dead letter holding the person's data (a track without an event name).
	send("/v1/track", map[string]any{"userId": "someone", "messageId": "dl1",
		"context": map[string]any{"traits": map[string]any{"email": strings.ToUpper(email), "name": name, "phone": phoneSent}}}, http.StatusBadRequest)

	hasExit := func(msgs []map[string]any, reason string) map[string]any {
		for _, m := range msgs {
			if m["type"] == "audience.exited" && m["reason"] == reason {
				return m
			}
		}
		return nil
	}
	entered := func(msgs []map[string]any) int {
		c := 0
		for _, m := range msgs {
			if m["type"] == "audience.entered" {
				c++
			}
		}
		return c
	}
	check.For(t, 30*time.Second, 50*time.Millisecond, func() error {
		hookMu.Lock()
		h := entered(hooks)
		hookMu.Unlock()
		subMu.Lock()
		s := entered(subMsgs)
		subMu.Unlock()
		if h < 2 || s < 2 {
			return fmt.Errorf("entries: webhook %d, subscriber %d, want 2 each", h, s)
		}
		return nil
	})
	erin, err := n.profile("email:" + email)
	if err != nil {
		t.Fatal(err)
	}
	pid := erin["profile_id"].(string)

	// Export: the whole record, before the erasure.
	code, body, err := n.request("GET", "/v1/profiles/email:"+emailSent+"/export", nil, adminAuth)
	if err != nil || code != http.StatusOK {
		t.Fatalf("export: %d %s %v", code, body, err)
	}
	var exp struct {
		Profile struct {
			ProfileID string         `json:"profile_id"`
			Traits    map[string]any `json:"traits"`
		} `json:"profile"`
		History []map[string]any `json:"audience_history"`
		Events  []map[string]any `json:"events"`
	}
	if err := json.Unmarshal(body, &exp); err != nil {
		t.Fatalf("export is not JSON: %v\n%s", err, body)
	}
	if exp.Profile.ProfileID != pid || exp.Profile.Traits["name"] != name || len(exp.Events) != 2 ||
		len(exp.History) != 1 || exp.History[0]["event"] != "entered" || exp.History[0]["audience"] != "signups" {
		t.Fatalf("export: %s", body)
	}

	// The snapshot is taken before the erasure.
	n.mustJSON("POST", "/v1/snapshots", nil, adminAuth, http.StatusCreated, nil)

	// Before: the output stream (identifiers unsealed at publish) and the
	// dead letter hold plaintext copies, and only JetStream does.
	needles := []string{email, strings.ToUpper(email), emailSent, name, phone, phoneSent, control}
	check.For(t, 20*time.Second, 100*time.Millisecond, func() error {
		found := scanDirAll(t, dataDir, needles...)
		for _, nd := range []string{email, phone, name, control} {
			if len(found[nd]) == 0 {
				return fmt.Errorf("%q not on disk yet: %v", nd, found)
			}
		}
		return nil
	})
	for nd, files := range scanDirAll(t, dataDir, needles...) {
		for _, f := range files {
			if nd != control && !strings.Contains(f, string(filepath.Separator)+"jetstream"+string(filepath.Separator)) {
				t.Errorf("before the erasure, %q in plain text outside JetStream: %s", nd, f)
			}
		}
	}

	// Bad requests name the field.
	for _, bad := range []string{`{}`, `{"identifier": "email:not-an-email"}`, `{"identifier": "nocolon"}`, `{"identifier": 7}`} {
		code, body, _ := n.request("POST", "/v1/privacy/erasures", bad, adminAuth)
		if code != http.StatusBadRequest || (bad != `{"identifier": 7}` && !strings.Contains(string(body), `"field":"identifier"`)) {
			t.Errorf("POST erasure %s: %d %s, want 400 naming identifier", bad, code, body)
		}
	}

	// The privacy officer erases, with a privacy-role token, on a loaded
	// node: producers keep streaming other people's events meanwhile.
	var tok struct {
		Token string `json:"token"`
	}
	n.mustJSON("POST", "/v1/tokens", map[string]string{"name": "dpo", "role": "privacy"}, adminAuth, http.StatusCreated, &tok)
	privacyAuth := func(r *http.Request) { r.Header.Set("Authorization", "Bearer "+tok.Token) }
	loadCtx, stopLoad := context.WithCancel(context.Background())
	var loadWG sync.WaitGroup
	var loadSent atomic.Int64
	for p := range 4 {
		loadWG.Add(1)
		go func() {
			defer loadWG.Done()
			for i := 0; loadCtx.Err() == nil; i++ {
				batch := make([]map[string]any, 50)
				for j := range batch {
					batch[j] = map[string]any{"type": "track", "userId": fmt.Sprintf("load-%d-%d", p, (i*50+j)%500),
						"messageId": fmt.Sprintf("load-%d-%d-%d", p, i, j), "event": "Page Viewed"}
				}
				if code, _, err := n.request("POST", "/v1/batch", map[string]any{"batch": batch}, writeKeyAuth(key)); err == nil && code == http.StatusOK {
					loadSent.Add(int64(len(batch)))
				}
			}
		}()
	}
	defer func() { stopLoad(); loadWG.Wait() }()
	check.For(t, 30*time.Second, 20*time.Millisecond, func() error {
		if loadSent.Load() < 2000 {
			return fmt.Errorf("load: %d events", loadSent.Load())
		}
		return nil
	})

	// Erase, by the email as a person would write it.
	started := time.Now()
	loadBefore := loadSent.Load()
	var info privacy.ErasureInfo
	n.mustJSON("POST", "/v1/privacy/erasures", map[string]string{"identifier": "email: " + emailSent}, privacyAuth, http.StatusAccepted, &info)
	if info.ID == "" || (info.Status != "applied" && info.Status != "completed") || !info.ProfileFound {
		t.Fatalf("erasure answer: %+v", info)
	}
	check.For(t, 60*time.Second, 100*time.Millisecond, func() error {
		n.mustJSON("GET", "/v1/privacy/erasures/"+info.ID, nil, adminAuth, http.StatusOK, &info)
		if info.Status != "completed" {
			return fmt.Errorf("status %s", info.Status)
		}
		return nil
	})
	took := time.Since(started)
	loadDuring := loadSent.Load() - loadBefore
	stopLoad()
	loadWG.Wait()
	t.Logf("erasure completed in %v under load (%d events accepted meanwhile): %+v", took, loadDuring, info.Counts)
	if took > time.Minute {
		t.Errorf("erasure took %v on a loaded node, want under a minute", took)
	}
	if loadDuring == 0 {
		t.Errorf("no load while erasing: the test did not test a loaded node")
	}
	var audit struct {
		Entries []audit.AuditEntry `json:"entries"`
	}
	n.mustJSON("GET", "/v1/audit?since="+started.Add(-time.Second).UTC().Format(time.RFC3339Nano), nil, adminAuth, http.StatusOK, &audit)
	var erasureAudited bool
	for _, e := range audit.Entries {
		if e.Action == "POST /v1/privacy/erasures" && e.Status == http.StatusAccepted {
			erasureAudited = e.Actor == "token:dpo" && e.Role == "privacy" && e.Result == "ok"
			if b, _ := json.Marshal(e); bytes.Contains(bytes.ToLower(b), []byte(email)) {
				t.Errorf("audit entry holds the email: %s", b)
			}
		}
	}
	if !erasureAudited {
		t.Errorf("no audit entry for the erasure by token:dpo (privacy): %+v", audit.Entries)
	}
	if c := info.Counts; c.Identifiers != 4 || c.Events != 2 || c.Audiences != 1 || c.Profiles < 1 {
		t.Errorf("counts %+v: want 4 identifiers (user, anonymous, email, phone), 2 events, 1 audience", c)
	}
	var list struct {
		Erasures []privacy.ErasureInfo `json:"erasures"`
	}
	n.mustJSON("GET", "/v1/privacy/erasures", nil, adminAuth, http.StatusOK, &list)
	if len(list.Erasures) != 1 || list.Erasures[0].ID != info.ID {
		t.Errorf("list: %+v", list)
	}

	// Both followers got an exit with reason "erased" and no identifiers.
	check.For(t, 20*time.Second, 50*time.Millisecond, func() error {
		hookMu.Lock()
		h := hasExit(hooks, "erased")
		hookMu.Unlock()
		subMu.Lock()
		s := hasExit(subMsgs, "erased")
		subMu.Unlock()
		if h == nil || s == nil {
			return fmt.Errorf("erased exit: webhook %v, subscriber %v", h != nil, s != nil)
		}
		for _, m := range []map[string]any{h, s} {
			if _, ok := m["identifiers"]; ok || m["profile_id"] != pid {
				t.Fatalf("erased exit carries identifiers or another profile: %v", m)
			}
		}
		return nil
	})

	// The person is gone from every read.
	for _, ref := range []string{"email:" + email, "user_id:u-erin", "anonymous_id:a-erin", "phone:" + phone, "profile_id:" + pid} {
		if code, body, _ := n.request("GET", "/v1/profiles/"+ref, nil, adminAuth); code != http.StatusNotFound {
			t.Errorf("GET profile %s after erasure: %d %s", ref, code, body)
		}
		if code, body, _ := n.request("GET", "/v1/profiles/"+ref+"/export", nil, adminAuth); code != http.StatusNotFound {
			t.Errorf("export %s after erasure: %d %s", ref, code, body)
		}
	}
	var aud struct {
		Size int `json:"size"`
	}
	n.mustJSON("GET", "/v1/audiences/signups", nil, adminAuth, http.StatusOK, &aud)
	if aud.Size != 1 {
		t.Errorf("signups has %d members after the erasure, want 1 (kim)", aud.Size)
	}

	// Later events with their identifiers are dropped and counted, never a
	// new profile: the email as anchor (dropped at the edge), the email
	// beside a new user id (dropped by the state machine), the old
	// anonymous id alone (edge).
	send("/v1/identify", map[string]any{"anonymousId": "a-new", "messageId": "x1", "traits": map[string]any{"email": emailSent}}, http.StatusOK)
	send("/v1/identify", map[string]any{"userId": "u-new", "messageId": "x2", "traits": map[string]any{"email": email}}, http.StatusOK)
	send("/v1/track", map[string]any{"anonymousId": "a-erin", "messageId": "x3", "event": "Signed Up"}, http.StatusOK)
	send("/v1/track", map[string]any{"userId": "marker", "messageId": "x4", "event": "M"}, http.StatusOK)
	check.For(t, 20*time.Second, 20*time.Millisecond, func() error { _, err := n.profile("user_id:marker"); return err })
	for _, ref := range []string{"email:" + email, "user_id:u-new", "anonymous_id:a-new", "anonymous_id:a-erin"} {
		if code, _, _ := n.request("GET", "/v1/profiles/"+ref, nil, adminAuth); code != http.StatusNotFound {
			t.Errorf("%s exists after the erasure: an event with an erased identifier was not dropped", ref)
		}
	}
	if got := metricValue(t, n, "aurum_suppressed_events_total"); got != 1 {
		t.Errorf("aurum_suppressed_events_total = %v, want 1 (u-new with the erased email)", got)
	}
	if got := metricValue(t, n, "aurum_ingest_suppressed_events_total"); got != 2 {
		t.Errorf("aurum_ingest_suppressed_events_total = %v, want 2", got)
	}

	// A live replay keeps the person gone, with the same digest.
	env := []string{"AURUM_SERVER=" + n.HTTP, "AURUM_ADMIN_TOKEN=" + testAdminToken}
	onlineDigest := func() string {
		t.Helper()
		out, code := aurumCLI(t, env, "digest", "--server", n.HTTP)
		if code != 0 {
			t.Fatalf("digest: %s", out)
		}
		d, _ := parseDigest(t, out)
		return d
	}
	before := onlineDigest()
	if out, code := aurumCLI(t, env, "replay", "--no-progress", "--output", "json"); code != 0 || !strings.Contains(out, `"status": "done"`) {
		t.Fatalf("aurum replay: exit %d: %s", code, out)
	}
	if after := onlineDigest(); after != before {
		t.Fatalf("digest after the live replay %s, before %s", after, before)
	}
	if _, err := n.profile("email:" + email); err == nil {
		t.Fatal("the person is back after a live replay")
	}
	if out, code := aurumCLI(t, env, "privacy", "status", info.ID, "--output", "json"); code != 0 || !strings.Contains(out, `"completed"`) {
		t.Fatalf("aurum privacy status: %d %s", code, out)
	}

	// On disk: nothing of the person in plain text anywhere (snapshots and
	// keys included); the control is still found, so the scan works.
	n.stop()
	found := scanDirAll(t, dataDir, needles...)
	for _, nd := range needles[:len(needles)-1] {
		if len(found[nd]) > 0 {
			t.Errorf("after the erasure, %q in plain text in %v", nd, found[nd])
		}
	}
	if len(found[control]) == 0 {
		t.Fatal("control failed: the plaintext event name was not found, so the scan proves nothing")
	}

	// An offline replay of the log gives the same digest as the node's state.
	offline, _ := parseDigest(t, digestOf(t, dataDir))
	if offline != before {
		t.Fatalf("offline digest %s, online %s", offline, before)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	res, err := engine.Replay(ctx, engine.ReplayOptions{DataDir: dataDir})
	if err != nil {
		t.Fatal(err)
	}
	if got := hex.EncodeToString(res.Digest); got != before {
		t.Fatalf("offline replay digest %s, node %s", got, before)
	}

	// A restart keeps it.
	n.restart()
	if _, err := n.profile("email:" + email); err == nil {
		t.Fatal("the person is back after a restart")
	}
	if _, err := n.profile("user_id:u-kim"); err != nil {
		t.Fatal(err)
	}
	n.mustJSON("GET", "/v1/privacy/erasures/"+info.ID, nil, adminAuth, http.StatusOK, &info)
	if info.Status != "completed" {
		t.Fatalf("after restart: %+v", info)
	}
}

// scanDirAll reports, for each needle, every file under dir holding it.
func scanDirAll(t *testing.T, dir string, needles ...string) map[string][]string {
	t.Helper()
	found := map[string][]string{}
	err := filepath.WalkDir(dir, func(path string, d os.DirEntry, err error) error {
		if os.IsNotExist(err) {
			return nil
		}
		if err != nil || d.IsDir() {
			return err
		}
		data, err := os.ReadFile(path)
		if os.IsNotExist(err) {
			return nil // a running node renames temporary files
		}
		if err != nil {
			return err
		}
		for _, nd := range needles {
			if strings.Contains(string(data), nd) {
				found[nd] = append(found[nd], path)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return found
}

var metricLine = regexp.MustCompile(`(?m)^([a-z_]+) ([0-9.e+]+)$`)

// metricValue reads an unlabelled counter from /metrics.
func metricValue(t *testing.T, n *node, name string) float64 {
	t.Helper()
	code, body, err := n.request("GET", "/metrics", nil, adminAuth)
	if err != nil || code != http.StatusOK {
		t.Fatalf("metrics: %d %v", code, err)
	}
	for _, m := range metricLine.FindAllStringSubmatch(string(body), -1) {
		if m[1] == name {
			v, _ := strconv.ParseFloat(m[2], 64)
			return v
		}
	}
	t.Fatalf("metric %s not found", name)
	return 0
}
