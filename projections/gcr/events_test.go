package gcr

import (
	"fmt"
	"testing"

	"github.com/aurumcdp/aurum/store"
)

func TestEvents(t *testing.T) {
	p := New(&Options{Partitions: 3})
	rw := newCounting(store.NewMem())
	tx := p.Begin(rw)
	// A: 10, 40(id 5), 70. B: 20, 40(id 6), 40(id 4), 90. C: -5 (sorts as 0), 60.
	mustAdd(t, tx, pid(1), track(1, 10, "A", nil))
	mustAdd(t, tx, pid(1), track(5, 40, "A", nil))
	mustAdd(t, tx, pid(1), track(7, 70, "A", nil))
	mustAdd(t, tx, pid(2), track(2, 20, "B", nil))
	mustAdd(t, tx, pid(2), track(6, 40, "B", nil))
	mustAdd(t, tx, pid(2), track(4, 40, "B", nil))
	mustAdd(t, tx, pid(2), track(9, 90, "B", nil))
	mustAdd(t, tx, pid(3), track(3, -5, "C", nil))
	mustAdd(t, tx, pid(3), track(8, 60, "C", nil))
	mustAdd(t, tx, pid(4), track(99, 100, "other profile", nil))
	if err := tx.Merge(pid(3), pid(2)); err != nil {
		t.Fatal(err)
	}
	if err := tx.Merge(pid(2), pid(1)); err != nil {
		t.Fatal(err)
	}
	mustFlush(t, tx)
	prof := mustGet(t, p, rw, pid(1))

	all := []byte{9, 7, 8, 6, 5, 4, 2, 1, 3}
	for _, limit := range []int{0, 1, 3, 5, 9, 100} {
		t.Run(fmt.Sprint(limit), func(t *testing.T) {
			rw.scanned = 0
			got, err := p.Events(rw, prof, limit)
			if err != nil {
				t.Fatal(err)
			}
			want := all[:min(limit, len(all))]
			if len(got) != len(want) {
				t.Fatalf("got %d events, want %d", len(got), len(want))
			}
			for i, r := range got {
				if r.ID[15] != want[i] {
					t.Errorf("event %d has id %d, want %d", i, r.ID[15], want[i])
				}
				if r.Kind != "track" || r.Key == nil {
					t.Errorf("event %d not decoded: %+v", i, r)
				}
			}
			// One scan per profile id, each bounded by limit.
			if rw.scanned > 3*limit {
				t.Errorf("scanned %d keys for limit %d over 3 profiles", rw.scanned, limit)
			}
		})
	}
}
