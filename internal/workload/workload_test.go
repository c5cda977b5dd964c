package workload_test

import (
	"bytes"
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/aurumcdp/aurum/event"
	"github.com/aurumcdp/aurum/internal/workload"
)

func drain(t *testing.T, g *workload.Generator) []workload.Event {
	t.Helper()
	var out []workload.Event
	for {
		ev, ok := g.Next()
		if !ok {
			return out
		}
		out = append(out, ev)
	}
}

func TestDeterministic(t *testing.T) {
	cfg := workload.Config{People: 200, Seed: 42, Days: 10}
	a, b := drain(t, workload.New(cfg)), drain(t, workload.New(cfg))
	if len(a) == 0 || len(a) != len(b) {
		t.Fatalf("same seed: %d and %d events", len(a), len(b))
	}
	for i := range a {
		if a[i].Source != b[i].Source || a[i].Person != b[i].Person || !a[i].Time.Equal(b[i].Time) || !bytes.Equal(a[i].JSON, b[i].JSON) {
			t.Fatalf("same seed, event %d differs:\n%s %d %s\n%s %d %s", i, a[i].Source, a[i].Person, a[i].JSON, b[i].Source, b[i].Person, b[i].JSON)
		}
	}
	cfg.Seed = 43
	c := drain(t, workload.New(cfg))
	if len(c) == len(a) && bytes.Equal(c[0].JSON, a[0].JSON) && bytes.Equal(c[len(c)-1].JSON, a[len(a)-1].JSON) {
		t.Fatalf("seeds 42 and 43 gave the same workload")
	}
}

// TestEventsValid: every event parses, comes in event-time order, carries
// only identifiers the truth knows (owned by its person, or its person is a
// recorded other user of a shared device), and the store's whole vocabulary
// shows up.
func TestEventsValid(t *testing.T) {
	start := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
	g := workload.New(workload.Config{People: 300, Seed: 7, Start: start, Days: 20, SharedDeviceRate: 0.2})
	evs := drain(t, g)
	truth := g.Truth()
	sources := map[string]int{}
	names := map[string]int{}
	reasons := map[string]int{}
	var prev time.Time
	var shared, loyaltyPOS, crmEmails, nightly int
	for i, w := range evs {
		ev, err := event.Parse(w.JSON, "", event.ParseOptions{Now: start})
		if err != nil {
			t.Fatalf("event %d (%s) does not parse: %v\n%s", i, w.Source, err, w.JSON)
		}
		if !ev.Timestamp.Equal(w.Time) {
			t.Fatalf("event %d: parsed time %v, generator said %v", i, ev.Timestamp, w.Time)
		}
		if w.Time.Before(prev) {
			t.Fatalf("event %d at %v is before the previous one at %v", i, w.Time, prev)
		}
		prev = w.Time
		if h := w.Time.Hour(); h >= 2 && h < 7 {
			nightly++
		}
		if ev.MessageID == "" || len(ev.Identifiers) == 0 {
			t.Fatalf("event %d has no messageId or no identifier: %s", i, w.JSON)
		}
		sources[w.Source]++
		names[string(ev.Kind)+":"+ev.Event]++
		for _, id := range ev.Identifiers {
			wid := workload.Identifier{Type: id.Type, Value: id.Value}
			owner, ok := truth.Person(wid)
			if !ok {
				t.Fatalf("event %d: identifier %s is not in the truth", i, wid)
			}
			if owner != w.Person {
				if !slices.Contains(truth.OtherUsers(wid), w.Person) {
					t.Fatalf("event %d of person %d carries %s of person %d, not recorded as shared", i, w.Person, wid, owner)
				}
				shared++
			}
			if w.Source == "pos" && id.Type == "loyalty_id" {
				loyaltyPOS++
			}
			if w.Source == "crm" && id.Type == event.Email {
				crmEmails++
			}
		}
		if ev.Event == "Order Refunded" {
			r, _ := ev.Properties["reason"].(string)
			reasons[r]++
		}
		if ev.Event == "Order Completed" {
			var rev float64
			switch x := ev.Properties["revenue"].(type) {
			case float64:
				rev = x
			case int64:
				rev = float64(x)
			}
			if rev <= 0 {
				t.Fatalf("event %d: order without a positive revenue: %s", i, w.JSON)
			}
		}
		if w.Source == "crm" {
			for _, k := range []string{"email", "first_name", "country"} {
				if ev.Traits[k] == nil {
					t.Fatalf("event %d: CRM row without trait %s: %s", i, k, w.JSON)
				}
			}
		}
	}
	for _, s := range workload.Sources {
		if sources[s] == 0 {
			t.Errorf("no events from source %s (%v)", s, sources)
		}
	}
	for _, n := range []string{"page:", "screen:", "identify:", "track:Signed In", "track:Product Viewed",
		"track:Product Added", "track:Order Completed", "track:Order Refunded"} {
		if names[n] == 0 {
			t.Errorf("no %q events (%v)", n, names)
		}
	}
	if len(reasons) != 3 || reasons["damaged"] == 0 || reasons["wrong_size"] == 0 || reasons["changed_mind"] == 0 {
		t.Errorf("refund reasons: %v", reasons)
	}
	if shared == 0 || truth.Shared() == 0 {
		t.Errorf("no shared-device use (%d events, %d shared identifiers)", shared, truth.Shared())
	}
	if loyaltyPOS == 0 || crmEmails == 0 {
		t.Errorf("pos events with loyalty ids: %d, CRM rows with emails: %d", loyaltyPOS, crmEmails)
	}
	if nightly*20 > len(evs) {
		t.Errorf("%d of %d events between 02:00 and 07:00: want mostly daytime", nightly, len(evs))
	}
	if got, want := len(truth.Identifiers()), truth.Len(); got != want || want == 0 {
		t.Errorf("Identifiers: %d, Len %d", got, want)
	}
}

// TestZipfHead: product views follow the Zipf law: the first products
// dominate.
func TestZipfHead(t *testing.T) {
	g := workload.New(workload.Config{People: 300, Seed: 3, Days: 20, Products: 1000})
	views := map[string]int{}
	total := 0
	for _, w := range drain(t, g) {
		var m struct {
			Event      string `json:"event"`
			Properties struct {
				SKU string `json:"sku"`
			} `json:"properties"`
		}
		if err := json.Unmarshal(w.JSON, &m); err != nil {
			t.Fatal(err)
		}
		if m.Event == "Product Viewed" {
			views[m.Properties.SKU]++
			total++
		}
	}
	if total < 5000 {
		t.Fatalf("only %d product views", total)
	}
	type kv struct {
		sku string
		n   int
	}
	var ranked []kv
	for s, n := range views {
		ranked = append(ranked, kv{s, n})
	}
	slices.SortFunc(ranked, func(a, b kv) int { return b.n - a.n })
	if ranked[0].sku != "SKU-00000" {
		t.Errorf("most viewed product %s (%d views), want SKU-00000", ranked[0].sku, ranked[0].n)
	}
	top10 := 0
	for _, r := range ranked[:10] {
		top10 += r.n
	}
	// With s = 1.1 over 1000 products the first 10 take about 45%; uniform
	// would give 1%.
	if share := float64(top10) / float64(total); share < 0.35 || share > 0.6 {
		t.Errorf("top 10 products have %.2f of %d views, want a Zipf head (~0.45)", share, total)
	}
	if views["SKU-00000"] <= views["SKU-00001"] || views["SKU-00001"] <= views["SKU-00009"] {
		t.Errorf("views not decreasing with rank: %d, %d, %d", views["SKU-00000"], views["SKU-00001"], views["SKU-00009"])
	}
	if len(views) < 300 {
		t.Errorf("only %d distinct products viewed: the tail is missing", len(views))
	}
}

// TestTimeCompression: compression divides the span of event time.
func TestTimeCompression(t *testing.T) {
	start := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	span := func(c float64) time.Duration {
		evs := drain(t, workload.New(workload.Config{People: 50, Seed: 1, Start: start, Days: 10, TimeCompression: c}))
		if evs[0].Time.Before(start) {
			t.Fatalf("compression %v: event before start", c)
		}
		return evs[len(evs)-1].Time.Sub(start)
	}
	plain, fast := span(1), span(24)
	// 10 days of sessions plus refunds up to 14 days later.
	if plain < 5*24*time.Hour || plain > 25*24*time.Hour {
		t.Errorf("uncompressed span %v, want 10 days plus refunds", plain)
	}
	if ratio := float64(plain) / float64(fast); ratio < 23.9 || ratio > 24.1 {
		t.Errorf("span %v uncompressed, %v compressed 24x: ratio %.2f", plain, fast, ratio)
	}
}

func TestConfigValidate(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  workload.Config
		want string
	}{
		{"defaults", workload.Config{}, ""},
		{"negative rate means none", workload.Config{SharedDeviceRate: -1, RefundRate: -1}, ""},
		{"people", workload.Config{People: -3}, "people"},
		{"rate above one", workload.Config{LoginRate: 1.5}, "login rate"},
		{"zipf", workload.Config{ZipfS: 0.5}, "zipf"},
		{"compression", workload.Config{TimeCompression: -2}, "compression"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := tc.cfg
			c.EnsureDefaults()
			err := c.Validate()
			if tc.want == "" && err != nil || tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)) {
				t.Fatalf("Validate = %v, want error containing %q", err, tc.want)
			}
		})
	}
	c := workload.Config{SharedDeviceRate: -1}
	c.EnsureDefaults()
	if c.SharedDeviceRate != 0 || c.People != 1000 || c.Days != 30 || c.TimeCompression != 1 {
		t.Fatalf("EnsureDefaults: %+v", c)
	}
	g := workload.New(workload.Config{People: 100, SharedDeviceRate: -1})
	drain(t, g)
	if n := g.Truth().Shared(); n != 0 {
		t.Fatalf("shared devices disabled, yet %d shared identifiers", n)
	}
}
