package projections

import (
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/aurumcdp/aurum/store"
)

// TestResultOutboxes: after every entry of a varied log (audiences and
// their changes, ticks with timed exits, merges, duplicates), the outboxes
// Result.Outboxes lists are exactly those that got rows. The
// publisher scans only those (engine/outbox dirty.go): one missing would
// hold its rows back until the periodic rescan.
func TestResultOutboxes(t *testing.T) {
	sm := newSM()
	s := store.NewMem()
	prefixes := OutboxPrefixes(4)
	// The last key of each outbox: rows are written at increasing keys
	// (log position, index) and nothing deletes them here.
	lasts := func() []string {
		out := make([]string, len(prefixes))
		for i, p := range prefixes {
			if err := s.Scan(p, store.PrefixEnd(p), true, func(k, v []byte) bool {
				out[i] = string(k)
				return false
			}); err != nil {
				t.Fatal(err)
			}
		}
		return out
	}
	before := lasts()
	var withRows, without int
	seen := make([]bool, len(prefixes))
	for _, e := range dedupScript(rand.New(rand.NewPCG(15, 1)), 300) {
		res, err := sm.Apply(s, e.seq, e.subject, e.data)
		if err != nil {
			t.Fatalf("apply %d: %v", e.seq, err)
		}
		after := lasts()
		var grew []int
		for i := range after {
			if after[i] != before[i] {
				grew = append(grew, i)
				seen[i] = true
			}
		}
		if !slices.Equal(res.Outboxes, grew) {
			t.Fatalf("entry %d (%s): Result.Outboxes %v, outboxes that got rows %v (Outbox %d, Transitions %d)",
				e.seq, e.subject, res.Outboxes, grew, res.Outbox, res.Transitions)
		}
		if len(grew) > 0 {
			withRows++
		} else {
			without++
		}
		before = after
	}
	if withRows == 0 || without == 0 || slices.Contains(seen, false) {
		t.Fatalf("the log did not cover the cases: %d entries with rows, %d without, outboxes reached %v", withRows, without, seen)
	}
}
