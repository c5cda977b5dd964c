package export_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aurumcdp/aurum/activation"
	"github.com/aurumcdp/aurum/activation/connectortest"
	"github.com/aurumcdp/aurum/engine"
	"github.com/aurumcdp/aurum/engine/export"
	"github.com/aurumcdp/aurum/internal/check"
	"github.com/aurumcdp/aurum/internal/testnode"
)

// TestExportReadBackByArrow (issue #17, must-show 3): a run's Parquet files,
// written by parquet-go, read back by Apache Arrow's reader (`make
// export-check`: build tag arrowcheck; the default build, CI's, reads them
// back with parquet-go's own reader: Arrow takes minutes to compile): the
// memberships are exactly what a subscriber of the transitions (a webhook)
// holds after folding every entry and exit it received, and the profiles
// are every person once, with consent per channel and, only when asked,
// the personal values.
func TestExportReadBackByArrow(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	dir := t.TempDir()
	e := testnode.Engine(t, engine.Options{TickPeriod: -1, WebhookBackoffMin: 20 * time.Millisecond,
		WebhookBackoffMax: 200 * time.Millisecond, Export: export.Options{Dir: dir, Keep: 2}})
	connectortest.Setup(ctx, t, e)

	var mu sync.Mutex
	seen := map[string]bool{} // audience \x00 profile → member, folded from the transitions
	received := 0
	var transitions []string // each as transitionKey
	sub := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var tr struct {
			Type, Audience, Reason string
			ProfileID              string `json:"profile_id"`
			RuleVersion            int64  `json:"rule_version"`
			Seq                    int64
		}
		if err := json.NewDecoder(r.Body).Decode(&tr); err != nil {
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		mu.Lock()
		defer mu.Unlock()
		received++
		seen[tr.Audience+"\x00"+tr.ProfileID] = tr.Type == "audience.entered"
		transitions = append(transitions, transitionKey(tr.ProfileID, tr.Audience, strings.TrimPrefix(tr.Type, "audience."),
			tr.Reason, tr.RuleVersion, tr.Seq))
	}))
	defer sub.Close()
	if _, err := e.PutDestination(ctx, activation.Destination{Name: "sub", URL: sub.URL, Secret: "0123456789abcdef0123",
		Audiences: []string{"vip"}, Channel: activation.ChannelNone}); err != nil {
		t.Fatal(err)
	}
	const n, left = 200, 40
	connectortest.Ingest(ctx, t, e, "email", 0, n, "gold")
	connectortest.Ingest(ctx, t, e, "email", 0, left, "silver") // they exit
	connectortest.WaitSize(t, e, n-left)
	check.For(t, 60*time.Second, 20*time.Millisecond, func() error {
		mu.Lock()
		defer mu.Unlock()
		if received != n+left {
			return fmt.Errorf("subscriber got %d transitions, want %d", received, n+left)
		}
		return nil
	})

	m, err := e.Exporter().Run(ctx, export.RunOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if m.Personal || len(m.Files) != 3 || m.File(export.ProfilesFile).Rows != n || m.File(export.MembershipsFile).Rows != n-left ||
		m.File(export.TransitionsFile).Rows != n+left || m.TransitionsAfterSeq != 0 || m.Trigger != "request" {
		t.Fatalf("manifest %+v", m)
	}
	runDir := filepath.Join(dir, m.Run)
	var onDisk export.Manifest
	b, err := os.ReadFile(filepath.Join(runDir, export.ManifestFile))
	if err != nil || json.Unmarshal(b, &onDisk) != nil || onDisk.Run != m.Run || onDisk.AppliedSeq != m.AppliedSeq {
		t.Fatalf("manifest on disk %s: %v", b, err)
	}

	// Memberships against the subscriber's transitions.
	members := readRows(t, filepath.Join(runDir, export.MembershipsFile))
	mu.Lock()
	want := map[string]bool{}
	for k, in := range seen {
		if in {
			want[k] = true
		}
	}
	mu.Unlock()
	got := map[string]bool{}
	for _, r := range members {
		k := r["audience"].(string) + "\x00" + r["profile_id"].(string)
		if got[k] {
			t.Fatalf("membership %q twice", k)
		}
		got[k] = true
		if !want[k] {
			t.Fatalf("exported membership %q that the subscriber does not hold", k)
		}
		if s, _ := r["since"].(string); !strings.HasPrefix(s, "20") {
			t.Fatalf("since %v", r["since"])
		}
	}
	if len(got) != len(want) {
		t.Fatalf("exported %d memberships, the subscriber holds %d", len(got), len(want))
	}

	// Transitions: the first run holds the whole history, exactly what
	// the subscriber received (entries and exits, reasons, log positions).
	mu.Lock()
	wantTr := slices.Clone(transitions)
	mu.Unlock()
	checkTransitions(t, filepath.Join(runDir, export.TransitionsFile), wantTr)

	// Profiles without personal values.
	profiles := readRows(t, filepath.Join(runDir, export.ProfilesFile))
	ids := map[string]bool{}
	for _, r := range profiles {
		ids[r["profile_id"].(string)] = true
		if len(r["emails"].([]string)) != 0 || r["traits_json"] != "" {
			t.Fatalf("personal values without asking: %v", r)
		}
		if tn := r["trait_names"].([]string); !slices.Contains(tn, "email") || !slices.Contains(tn, "plan") {
			t.Fatalf("trait names %v", tn)
		}
	}
	if len(ids) != n {
		t.Fatalf("%d distinct profiles, want %d", len(ids), n)
	}

	// Asked for: personal values, checked person by person.
	m2, err := e.Exporter().Run(ctx, export.RunOptions{Personal: true})
	if err != nil {
		t.Fatal(err)
	}
	if m2.Run == m.Run || !m2.Personal {
		t.Fatalf("second run %+v", m2)
	}
	byEmail := map[string]map[string]any{}
	for _, r := range readRows(t, filepath.Join(dir, m2.Run, export.ProfilesFile)) {
		em := r["emails"].([]string)
		if len(em) != 1 {
			t.Fatalf("emails %v", em)
		}
		byEmail[em[0]] = r
	}
	for i := range n {
		r := byEmail[connectortest.Email(i)]
		if r == nil {
			t.Fatalf("person %d missing", i)
		}
		if ph := r["phones"].([]string); len(ph) != 1 || ph[0] != connectortest.Phone(i) {
			t.Fatalf("person %d phones %v", i, ph)
		}
		wantConsent := ""
		if i%10 == 3 {
			wantConsent = "denied"
		}
		if r["consent_email"] != wantConsent {
			t.Fatalf("person %d consent_email %q, want %q", i, r["consent_email"], wantConsent)
		}
		var traits map[string]any
		if err := json.Unmarshal([]byte(r["traits_json"].(string)), &traits); err != nil {
			t.Fatal(err)
		}
		plan := "gold"
		if i < left {
			plan = "silver"
		}
		if traits["plan"] != plan {
			t.Fatalf("person %d traits %v", i, traits)
		}
		if inVIP := got["vip\x00"+r["profile_id"].(string)]; inVIP != (i >= left) {
			t.Fatalf("person %d in vip: %v", i, inVIP)
		}
	}

	if m2.TransitionsAfterSeq != m.AppliedSeq || m2.File(export.TransitionsFile).Rows != 0 {
		t.Fatalf("second run: transitions after %d (want %d), %d rows (nothing changed)", m2.TransitionsAfterSeq,
			m.AppliedSeq, m2.File(export.TransitionsFile).Rows)
	}

	// Ten more exits: the third run holds just them (since the second);
	// with Keep 2 it removes the first run; no temporary directory stays.
	const more = 10
	connectortest.Ingest(ctx, t, e, "email", left, left+more, "silver")
	connectortest.WaitSize(t, e, n-left-more)
	check.For(t, 60*time.Second, 20*time.Millisecond, func() error {
		mu.Lock()
		defer mu.Unlock()
		if received != n+left+more {
			return fmt.Errorf("subscriber got %d transitions, want %d", received, n+left+more)
		}
		return nil
	})
	m3, err := e.Exporter().Run(ctx, export.RunOptions{})
	if err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	wantTr = slices.Clone(transitions[n+left:])
	allTr := slices.Clone(transitions)
	mu.Unlock()
	checkTransitions(t, filepath.Join(dir, m3.Run, export.TransitionsFile), wantTr)
	for _, k := range wantTr {
		if !strings.Contains(k, "|exited|") {
			t.Fatalf("third run transition %s, want exits only", k)
		}
	}
	runs, err := e.Exporter().Runs()
	if err != nil || len(runs) != 2 || runs[0].Run != m3.Run || runs[1].Run != m2.Run {
		t.Fatalf("runs %v %v", runs, err)
	}
	ents, _ := os.ReadDir(dir)
	if len(ents) != 2 {
		t.Fatalf("%d entries in the export directory, want the 2 runs", len(ents))
	}
	// Asked for all: the whole history again.
	m4, err := e.Exporter().Run(ctx, export.RunOptions{AllTransitions: true})
	if err != nil {
		t.Fatal(err)
	}
	if m4.TransitionsAfterSeq != 0 {
		t.Fatalf("fourth run transitions after %d, want 0 (all)", m4.TransitionsAfterSeq)
	}
	checkTransitions(t, filepath.Join(dir, m4.Run, export.TransitionsFile), allTr)
}

func transitionKey(profile, aud, typ, reason string, version, seq int64) string {
	return fmt.Sprintf("%s|%s|%s|%s|v%d|%d", profile, aud, typ, reason, version, seq)
}

// checkTransitions compares transitions.parquet, read back, with want (as
// transitionKey) as multisets; every row has a time.
func checkTransitions(t *testing.T, path string, want []string) {
	t.Helper()
	var got []string
	for _, r := range readRows(t, path) {
		if s, _ := r["time"].(string); !strings.HasPrefix(s, "20") {
			t.Fatalf("transition time %v", r["time"])
		}
		got = append(got, transitionKey(r["profile_id"].(string), r["audience"].(string), r["type"].(string),
			r["reason"].(string), asInt(t, r["rule_version"]), asInt(t, r["seq"])))
	}
	slices.Sort(got)
	want = slices.Clone(want)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Fatalf("%s: %d transitions, want the %d the subscriber received; first rows %v, want %v",
			filepath.Base(path), len(got), len(want), got[:min(3, len(got))], want[:min(3, len(want))])
	}
}

// asInt is an int64 column's value as either reader gives it.
func asInt(t *testing.T, v any) int64 {
	switch x := v.(type) {
	case int64:
		return x
	case int32:
		return int64(x)
	case float64:
		return int64(x)
	}
	t.Fatalf("not an integer: %T %v", v, v)
	return 0
}
