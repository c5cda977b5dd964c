package projections

import (
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/aurumcdp/aurum/store"
)

// indexRules are the rules TestAudienceIndexEquivalence draws from: every
// aggregate kind, windows, filters, funnels, traits (stable ones and ones
// true on an empty profile), the profile's stats, days_since and within
// over traits, and in_audience between the names a0..a7 (chains and, by
// chance, cycles).
var indexRules = []string{
	`count("Order Completed", "90d") >= 1 and count("Order Refunded", "90d") == 0`,
	`sum("Order Completed", "revenue", "365d") >= 100`,
	`count("Order Completed") >= 2 and days_since("Order Completed") > 3`,
	`avg("Order Completed", "revenue") > 50`,
	`min("Order Completed", "revenue", "30d") < 20 or max("Order Completed", "revenue") > 150`,
	`first_seen("Product Viewed") < date("2026-01-10")`,
	`last_seen("Product Added", "7d") > date("2026-01-05")`,
	`sum("Order Completed", "revenue", properties.coupon == "yes") > 40`,
	`traits.tier in ["gold", "platinum"] and traits.country == "DK"`,
	`exists(traits.age) and traits.age >= 30`,
	`not exists(traits.country)`,
	`count("Order Refunded", "180d", properties.reason == "damaged") >= 2`,
	`funnel(["Product Viewed", "Product Added", "Order Completed"], "2d")`,
	`funnel(["Product Viewed", "Product Added"], "2h") and count("Order Completed", "1d") == 0`,
	`count("Product Viewed") == 0`,
	`count("Page Opened") >= 2`,
	`first_seen < date("2026-01-05")`,
	`within(traits.signup, "10d")`,
	`days_since(traits.signup) > 5`,
	`in_audience("a0") and not in_audience("a1")`,
	`in_audience("a2") or count("Page Opened") >= 3`,
	`not in_audience("a3")`,
	`in_audience("a4") and traits.tier == "gold"`,
	`in_audience("a5") or in_audience("a6")`,
	`in_audience("a7") or traits.tier == "gold"`,
	`in_audience("a6") and traits.country == "DK"`,
	`in_audience("a1") or exists(traits.age)`,
}

// indexScript generates a random log: audiences put and deleted mid-log,
// track events (some fed to no aggregate), identifies (some setting only
// traits no rule reads), anonymous events and aliases (merges of two
// profiles), and ticks.
func indexScript(rng *rand.Rand, n int) []string {
	at := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	ts := func() string { return at.Format(time.RFC3339) }
	var users []string
	for i := range 14 {
		users = append(users, fmt.Sprint("u", i))
	}
	anons := []string{"d0", "d1", "d2", "d3", "d4"}
	events := []string{"Order Completed", "Order Refunded", "Product Viewed", "Product Added", "Page Opened", "Page Opened", "Video Played"}
	var out []string
	for i := 0; i < 4; i++ {
		out = append(out, fmt.Sprintf("audience a%d %s", rng.IntN(8), indexRules[rng.IntN(len(indexRules))]))
	}
	for len(out) < n {
		switch r := rng.IntN(100); {
		case r < 45:
			at = at.Add(time.Duration(rng.IntN(180)) * time.Minute)
		case r < 55:
			at = at.Add(time.Duration(rng.IntN(72)) * time.Hour)
		}
		user := users[rng.IntN(len(users))]
		switch r := rng.IntN(100); {
		case r < 45:
			ev := events[rng.IntN(len(events))]
			props := fmt.Sprintf("revenue=%d reason=%s coupon=%s", rng.IntN(200), []string{"damaged", "late"}[rng.IntN(2)], []string{"yes", "no"}[rng.IntN(2)])
			if rng.IntN(5) == 0 {
				props = "" // no revenue: sums and extremes skip the event
			}
			out = append(out, fmt.Sprintf("event %s %s %q %s", ts(), user, ev, props))
		case r < 60:
			var kv []string
			if rng.IntN(3) == 0 {
				kv = append(kv, "traits.nickname=x"+fmt.Sprint(rng.IntN(3))) // read by no rule
			} else {
				kv = append(kv, []string{"traits.tier=gold", "traits.tier=silver", "traits.tier=platinum", "traits.country=DK",
					"traits.country=SE", "traits.age=25", "traits.age=40", "traits.signup=2026-01-0" + fmt.Sprint(1+rng.IntN(9))}[rng.IntN(8)])
			}
			out = append(out, fmt.Sprintf("identify %s %s %s", ts(), user, strings.Join(kv, " ")))
		case r < 70:
			out = append(out, fmt.Sprintf("anon %s %s %q", ts(), anons[rng.IntN(len(anons))], events[rng.IntN(len(events))]))
		case r < 75:
			out = append(out, fmt.Sprintf("alias %s %s %s", ts(), user, anons[rng.IntN(len(anons))]))
		case r < 88:
			at = at.Add(time.Duration(rng.IntN(48)) * time.Hour)
			out = append(out, "tick "+ts())
		case r < 96:
			out = append(out, fmt.Sprintf("audience a%d %s", rng.IntN(8), indexRules[rng.IntN(len(indexRules))]))
		default:
			out = append(out, fmt.Sprintf("delete a%d", rng.IntN(8)))
		}
	}
	return out
}

// TestAudienceIndexEquivalence applies random logs with the audience
// dependency index on and off (Options.noAudienceIndex) and requires, after
// every entry, equal results and byte-identical stores: projections, timers,
// memberships, history and outboxes. Small backfill and timer bounds make
// profiles settle late and timers run late.
func TestAudienceIndexEquivalence(t *testing.T) {
	quiet := 0
	for seed := uint64(1); seed <= 4; seed++ {
		rng := rand.New(rand.NewPCG(seed, 99))
		opts := Options{Partitions: 4, BackfillPerEntry: 1 + rng.IntN(2), TimersPerEntry: 1 + rng.IntN(2),
			Open: func(_, sealed []byte) ([]byte, error) { return sealed, nil }}
		r := &audienceRun{t: t, sm: New(opts), s: store.NewMem(), users: map[string]string{}, opts: opts}
		o := opts
		o.noAudienceIndex = true
		r.shadows = append(r.shadows, shadow{sm: New(o), s: store.NewMem()})
		for _, cmd := range indexScript(rng, 300) {
			r.run(cmd, "") // compares with the shadow after every entry
		}
		if d1, d2 := digestOf(t, r.sm, r.s), digestOf(t, r.shadows[0].sm, r.shadows[0].s); d1 != d2 {
			t.Fatalf("seed %d: digests differ", seed)
		}
		for _, p := range r.sm.partitions {
			quiet += p.quiet
		}
		for _, p := range r.shadows[0].sm.partitions {
			if p.quiet != 0 {
				t.Fatalf("seed %d: the reference skipped %d evaluations", seed, p.quiet)
			}
		}
	}
	if quiet == 0 {
		t.Fatal("no evaluation was skipped as quiet: the test does not exercise the index")
	}
	t.Logf("%d quiet evaluations skipped", quiet)
}

func digestOf(t *testing.T, _ *StateMachine, s store.Reader) string {
	t.Helper()
	d, err := Digest(s)
	if err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("%x", d)
}
