package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/aurumcdp/aurum/engine/matching"
	"github.com/aurumcdp/aurum/internal/check"
	"github.com/nats-io/nats.go"
)

// TestSplitRealProcess (issue #13, must-show 3): against a real `aurum
// serve`, a wrong merge (Bob's till receipt carries the family email Ann
// signed up with: a deterministic link through a shared identifier), then
// `aurum profile split`: afterwards the GCRs and audience memberships of
// both people are right, a subscriber on aurum.audience.> sees the exits
// and entries of the split exactly once, and a live `aurum replay` gives an
// equal digest.
func TestSplitRealProcess(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a real aurum process")
	}
	parallelProcess(t)
	n := startNode(t, t.TempDir(), "--tick", "0") // no ticks: the digest stands still between its reads
	key := n.createSource("pos")
	for name, rule := range map[string]string{
		"buyers":  `count("Order Completed", "30d") >= 1`,
		"big":     `sum("Order Completed", "revenue") >= 100`,
		"viewers": `count("Product Viewed") >= 2`,
	} {
		n.mustJSON("POST", "/v1/audiences", map[string]string{"name": name, "rule": rule}, adminAuth, http.StatusCreated, nil)
	}
	msgs := n.followAudiences(t, 256)
	env := []string{"AURUM_SERVER=" + n.HTTP, "AURUM_ADMIN_TOKEN=" + testAdminToken}

	seq := 0
	send := func(crm, email, typ, name string, revenue float64) {
		t.Helper()
		seq++
		m := map[string]any{"type": typ, "messageId": fmt.Sprintf("m%d", seq),
			"context": map[string]any{"externalIds": []any{map[string]any{"type": "crm_id", "id": crm}}}}
		traits := map[string]any{}
		if email != "" {
			traits["email"] = email
		}
		if typ == "identify" {
			traits["first_name"] = map[string]string{"A1": "Ann", "B1": "Bob"}[crm]
			m["traits"] = traits
		} else {
			m["event"] = name
			if len(traits) > 0 {
				m["context"].(map[string]any)["traits"] = traits
			}
			if revenue > 0 {
				m["properties"] = map[string]any{"revenue": revenue}
			}
		}
		n.mustJSON("POST", "/v1/batch", map[string]any{"batch": []any{m}}, writeKeyAuth(key), http.StatusOK, nil)
	}
	profile := func(ref string, cond func(p map[string]any) error) map[string]any {
		t.Helper()
		var p map[string]any
		check.For(t, 60*time.Second, 20*time.Millisecond, func() error {
			var err error
			if p, err = n.profile(ref); err != nil {
				return err
			}
			return cond(p)
		})
		return p
	}
	audiences := func(p map[string]any) string {
		var names []string
		for a := range p["audiences"].(map[string]any) {
			names = append(names, a)
		}
		slices.Sort(names)
		return strings.Join(names, ",")
	}
	events := func(p map[string]any) int {
		return int(p["stats"].(map[string]any)["total_events"].(float64))
	}
	revenue := func(p map[string]any) float64 {
		r, _ := p["revenue"].(map[string]any)["Order Completed"].(map[string]any)
		v, _ := r["total"].(float64)
		return v
	}
	want := func(ev int, rev float64, auds string) func(p map[string]any) error {
		return func(p map[string]any) error {
			if events(p) != ev || revenue(p) != rev || audiences(p) != auds {
				return fmt.Errorf("profile %v: %d events, revenue %v, audiences %q; want %d, %v, %q",
					p["profile_id"], events(p), revenue(p), audiences(p), ev, rev, auds)
			}
			return nil
		}
	}

	// Ann and Bob, apart; then Bob's receipt with the family email merges him into Ann.
	send("A1", "family@example.com", "identify", "", 0)
	send("A1", "", "track", "Order Completed", 60)
	send("B1", "", "identify", "", 0)
	send("B1", "", "track", "Order Completed", 70)
	send("B1", "", "track", "Product Viewed", 0)
	send("B1", "", "track", "Product Viewed", 0)
	ann := profile("crm_id:A1", want(2, 60, "buyers"))
	profile("crm_id:B1", want(4, 70, "buyers,viewers"))
	send("B1", "family@example.com", "track", "Receipt Emailed", 0)
	merged := profile("crm_id:B1", want(7, 130, "big,buyers,viewers"))
	if merged["profile_id"] != ann["profile_id"] {
		t.Fatalf("not merged: bob is %v, ann %v", merged["profile_id"], ann["profile_id"])
	}

	// The split, with the CLI.
	out, code := aurumCLI(t, env, "profile", "split", "crm_id:A1", "--identifier", "crm_id:B1", "--output", "json")
	var info matching.SplitInfo
	if code != 0 || json.Unmarshal([]byte(out), &info) != nil {
		t.Fatalf("aurum profile split: exit %d\n%s", code, out)
	}
	if info.Status != "split" || info.From != ann["profile_id"] || info.EventsMoved != 4 || info.EventsKept != 3 {
		t.Fatalf("split: %+v", info)
	}
	// Ann keeps her events and the receipt that linked them (it carried her
	// email); Bob gets his back, in a profile of his own.
	ann = profile("crm_id:A1", want(3, 60, "buyers"))
	bob := profile("crm_id:B1", want(4, 70, "buyers,viewers"))
	if bob["profile_id"] != info.Into || ann["profile_id"] == bob["profile_id"] {
		t.Fatalf("after the split: ann %v, bob %v, split %+v", ann["profile_id"], bob["profile_id"], info)
	}
	if tr := ann["traits"].(map[string]any); tr["first_name"] != "Ann" {
		t.Errorf("ann's traits %v", tr)
	}
	if tr := bob["traits"].(map[string]any); tr["first_name"] != "Bob" {
		t.Errorf("bob's traits %v", tr)
	}
	ids := bob["identifiers"].(map[string]any)
	if len(ids) != 1 || ids["crm_id"] == nil {
		t.Errorf("bob's identifiers %v", ids)
	}
	// The explanation shows it, from either side.
	for _, ref := range []string{"crm_id:A1", "crm_id:B1"} {
		out, code := aurumCLI(t, env, "identity", "explain", ref, "--output", "json")
		var ex matching.Explanation
		if code != 0 || json.Unmarshal([]byte(out), &ex) != nil || len(ex.Splits) != 1 || ex.Splits[0].ID != info.ID {
			t.Errorf("aurum identity explain %s: exit %d\n%s", ref, code, out)
		}
	}

	// One more event each, whose transitions come after the split's in
	// their profiles' outboxes: once both arrived, every output of the
	// split has been published.
	send("A1", "", "track", "Product Viewed", 0)
	send("A1", "", "track", "Product Viewed", 0)
	send("B1", "", "track", "Order Completed", 40)
	profile("crm_id:A1", want(5, 60, "buyers,viewers"))
	profile("crm_id:B1", want(5, 110, "big,buyers,viewers"))
	reason := "split:" + info.ID
	var got []string
	seen := map[string]int{}
	last := map[string]bool{}
	deadline := time.After(60 * time.Second)
	for !last[ann["profile_id"].(string)] || !last[bob["profile_id"].(string)] {
		var m *nats.Msg
		select {
		case m = <-msgs:
		case <-deadline:
			t.Fatalf("the transitions after the split did not arrive; got %v", got)
		}
		var tr struct {
			Audience  string `json:"audience"`
			ProfileID string `json:"profile_id"`
			Reason    string `json:"reason"`
			Type      string `json:"type"`
		}
		if err := json.Unmarshal(m.Data, &tr); err != nil {
			t.Fatal(err)
		}
		seen[m.Header.Get(nats.MsgIdHdr)]++
		if tr.Reason == reason {
			who := map[string]string{ann["profile_id"].(string): "ann", bob["profile_id"].(string): "bob"}[tr.ProfileID]
			got = append(got, fmt.Sprintf("%s %s %s", who, tr.Type, tr.Audience))
		}
		if (tr.Audience == "viewers" && tr.ProfileID == ann["profile_id"]) || (tr.Audience == "big" && tr.ProfileID == bob["profile_id"]) {
			if tr.Type == "audience.entered" && strings.HasPrefix(tr.Reason, "event") {
				last[tr.ProfileID] = true
			}
		}
	}
	slices.Sort(got)
	wantSplit := []string{"ann audience.exited big", "ann audience.exited viewers", "bob audience.entered buyers", "bob audience.entered viewers"}
	if !slices.Equal(got, wantSplit) {
		t.Errorf("transitions of the split:\n%s\nwant (each once)\n%s", strings.Join(got, "\n"), strings.Join(wantSplit, "\n"))
	}
	for id, k := range seen {
		if k != 1 {
			t.Errorf("message %s delivered %d times", id, k)
		}
	}

	// A live replay rebuilds the same state: the split is on the log.
	digest := func() string {
		t.Helper()
		out, code := aurumCLI(t, env, "digest", "--server", n.HTTP)
		if code != 0 {
			t.Fatalf("digest: %s", out)
		}
		d, _ := parseDigest(t, out)
		return d
	}
	before := digest()
	if out, code := aurumCLI(t, env, "replay", "--dry-run", "--no-progress", "--output", "json"); code != 0 || !strings.Contains(out, `"keys_changed": 0`) {
		t.Fatalf("aurum replay --dry-run: the replayed state differs: exit %d: %s", code, out)
	}
	if out, code := aurumCLI(t, env, "replay", "--no-progress", "--output", "json"); code != 0 || !strings.Contains(out, `"status": "done"`) {
		t.Fatalf("aurum replay: exit %d: %s", code, out)
	}
	if after := digest(); after != before {
		t.Fatalf("digest after the live replay %s, before %s", after, before)
	}
	if p, err := n.profile("crm_id:B1"); err != nil || p["profile_id"] != info.Into || audiences(p) != "big,buyers,viewers" {
		t.Fatalf("bob after the replay: %v %v", p, err)
	}
}
