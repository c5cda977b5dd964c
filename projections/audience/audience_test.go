package audience

import (
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/aurumcdp/aurum/rules"
	"github.com/aurumcdp/aurum/rules/rulestest"
)

var examples = []string{
	`count("Order Completed", "90d") >= 1 and count("Order Refunded", "90d") == 0`,
	`sum("Order Completed", "revenue", "365d") >= 1000`,
	`count("Order Completed") >= 2 and days_since("Order Completed") > 90`,
	`count("Product Viewed", "7d") >= 5 and count("Order Completed", "30d") == 0`,
	`count("Order Refunded", "180d", properties.reason == "damaged") >= 2`,
	`funnel(["Product Viewed", "Product Added"], "2h") and count("Order Completed", "1d") == 0`,
	`avg("Order Completed", "revenue", "30d") > 300 or max("Order Completed", "revenue") > 900`,
	`within(last_seen("Product Viewed"), "3d") and min("Order Completed", "revenue", "60d") < 50`,
}

// TestIncrementalMatchesReference: for every example rule, the incremental
// evaluation (events arriving out of time order, interleaved with ticks
// that move the log clock, timers honoured) decides the same membership as
// the brute-force reference over the whole event list, at every step, and
// never misses a time-driven change: between steps, the reference's result
// can only change at or after the timer the incremental state set.
func TestIncrementalMatchesReference(t *testing.T) {
	const day = 86_400_000
	names := []string{"Order Completed", "Order Refunded", "Product Viewed", "Product Added", "Page"}
	for ri, src := range examples {
		set, err := Compile([]Definition{{Name: "a", Rule: src, Version: 1}})
		if err != nil {
			t.Fatalf("rule %d: %v", ri, err)
		}
		rule, _ := rules.Compile(src)
		for seed := range uint64(20) {
			r := rand.New(rand.NewPCG(seed, uint64(ri)))
			st := &State{}
			ref := &rulestest.Facts{}
			now := int64(1_800_000_000_000)
			for step := range 120 {
				// No time-driven change before the timer: sample the
				// reference between now and the timer (or 5 days on).
				limit := now + 5*day
				if st.Timer != 0 {
					limit = st.Timer
				}
				_, in := st.member("a")
				for range 3 {
					if limit <= now+1 {
						break
					}
					ref.At = now + 1 + r.Int64N(limit-now-1)
					if got, _ := rule.Eval(ref); got != in {
						t.Fatalf("rule %d seed %d step %d: the reference changes to %v at %d, before the timer %d (now %d)", ri, seed, step, got, ref.At, st.Timer, now)
					}
				}
				var evs []Event
				if r.IntN(3) > 0 { // an event, possibly late (event time before now)
					id := make([]byte, 16)
					binary.BigEndian.PutUint64(id, seed<<32|uint64(step))
					ev := Event{Name: names[r.IntN(len(names))], Time: now - int64(r.IntN(200))*day/10 + int64(r.IntN(3600_000)), ID: id,
						Props: map[string]any{"revenue": float64(r.IntN(1200)), "reason": []string{"damaged", "other"}[r.IntN(2)]}}
					evs = append(evs, ev)
					ref.Events = append(ref.Events, rulestest.Event{Name: ev.Name, Time: ev.Time, Props: ev.Props})
				}
				// The log clock advances, sometimes past the state's timer.
				next := now + int64(r.IntN(5*day))
				if st.Timer != 0 && st.Timer < next && r.IntN(2) == 0 {
					next = st.Timer
				}
				// Before moving, check the reference cannot change between now
				// and the timer (if the clock jumps past it, a tick at the
				// timer would have come first: emulate it).
				for st.Timer != 0 && st.Timer < next && len(evs) == 0 {
					now = st.Timer
					check(t, set, st, ref, rule, now, nil, fmt.Sprintf("rule %d seed %d step %d (timer)", ri, seed, step))
				}
				now = max(now, next)
				check(t, set, st, ref, rule, now, evs, fmt.Sprintf("rule %d seed %d step %d", ri, seed, step))
			}
		}
	}
}

// check applies one step and compares membership with the reference.
func check(t *testing.T, set *Set, st *State, ref *rulestest.Facts, rule *rules.Rule, now int64, evs []Event, where string) {
	t.Helper()
	// As the partition does: a step at or past the profile's timer
	// re-evaluates everything.
	all := len(evs) == 0 || st.Timer != 0 && st.Timer <= now
	if _, err := set.Apply(st, Step{Now: now, Events: evs, All: all}); err != nil {
		t.Fatalf("%s: %v", where, err)
	}
	ref.At = now
	want, err := rule.Eval(ref)
	if err != nil {
		t.Fatal(err)
	}
	_, got := st.member("a")
	if got != want {
		t.Fatalf("%s: incremental says %v, reference %v (now %d, %d events)", where, got, want, now, len(ref.Events))
	}
}
