package projections

import (
	"bytes"
	"fmt"
	"strings"
	"testing"

	"github.com/aurumcdp/aurum/projections/gcr"
	"github.com/aurumcdp/aurum/store"
)

// TestParallelPartitionsMatchSequential applies logs with merges,
// duplicates, audiences, timers and backfills with the partitions one after
// the other (ApplyWorkers 1) and at once with 3 and 8 workers (8
// partitions), and compares the results after every entry and the whole
// stores (outboxes included) after every 16th entry and the last. The
// data-driven audience scenarios (erasures too) run at 4 workers against a
// sequential shadow compared after every entry, and the matching and split
// runs (newMatchRun) replay their logs sequentially at the end.
func TestParallelPartitionsMatchSequential(t *testing.T) {
	for name, log := range map[string][]entry{
		"identity":  syntheticLog(t, 40, 800, 11),
		"audiences": audienceLog(t),
	} {
		t.Run(name, func(t *testing.T) {
			var sms []*StateMachine
			var names []string
			for _, w := range []int{1, 3, 8} {
				sms = append(sms, New(Options{Partitions: 8, BackfillPerEntry: 7, ApplyWorkers: w, Open: openIdentity}))
				names = append(names, fmt.Sprintf("%d workers", w))
			}
			applyAndCompare(t, log, sms, names, 16)
		})
	}
}

// applyAndCompare applies log with every state machine of sms, each on its
// own store, and requires the results to equal the first one's after every
// entry and the stores (key by key, outboxes included) after every
// storeEvery-th entry and the last.
func applyAndCompare(t *testing.T, log []entry, sms []*StateMachine, names []string, storeEvery int) {
	t.Helper()
	stores := make([]*store.Mem, len(sms))
	for i := range stores {
		stores[i] = store.NewMem()
	}
	for n, e := range log {
		var results []string
		for i, sm := range sms {
			res, err := sm.Apply(stores[i], e.seq, e.subject, e.data)
			if err != nil {
				t.Fatalf("seq %d, %s: %v", e.seq, names[i], err)
			}
			results = append(results, fmt.Sprint(res))
		}
		for i := 1; i < len(sms); i++ {
			if results[i] != results[0] {
				t.Fatalf("seq %d: results differ: %s (%s) vs %s (%s)", e.seq, results[0], names[0], results[i], names[i])
			}
			if (n+1)%storeEvery != 0 && n != len(log)-1 {
				continue
			}
			if k, ok := firstDifference(stores[0], stores[i]); !ok {
				t.Fatalf("seq %d: the stores of %s and %s differ at %q", e.seq, names[0], names[i], k)
			}
		}
	}
}

// TestPartitionWritesOutsideItsRange: in the parallel stage a partition
// writing another's key fails the entry (its order against the other
// partition would decide the result) and nothing of the stage is written.
func TestPartitionWritesOutsideItsRange(t *testing.T) {
	base := store.NewMem()
	ov := store.NewOverlay(base)
	const parts = 4
	w := &partitionWriter{Overlay: ov, prefix: PartitionPrefix(1), part: 1, parts: parts}
	if err := w.Set(append(PartitionPrefix(1), 'g'), []byte("own")); err != nil {
		t.Fatal(err)
	}
	// Event records (ev/<event><profile>) of its own profiles only.
	record := func(part int) []byte {
		for i := range 256 {
			profile := make([]byte, 16)
			profile[0], profile[15] = byte(i), byte(i/7)
			if gcr.PartitionOf(profile, parts) == part {
				return append(append([]byte(gcr.RecordPrefix), bytes.Repeat([]byte{9}, 16)...), profile...)
			}
		}
		t.Fatalf("no profile of partition %d", part)
		return nil
	}
	if err := w.Set(record(1), []byte("own record")); err != nil {
		t.Fatal(err)
	}
	for _, k := range [][]byte{append(PartitionPrefix(2), 'g'), []byte("meta/now"), []byte("ik/x"), record(2), []byte(gcr.RecordPrefix + "short")} {
		if err := w.Set(k, []byte("x")); err == nil || !strings.Contains(err.Error(), "outside its range") {
			t.Fatalf("Set %q: err = %v, want a refusal", k, err)
		}
		if err := w.Delete(k); err == nil || !strings.Contains(err.Error(), "outside its range") {
			t.Fatalf("Delete %q: err = %v, want a refusal", k, err)
		}
	}
	if ov.Len() != 2 || base.Len() != 0 {
		t.Fatalf("overlay holds %d keys, base %d; want 2 and 0", ov.Len(), base.Len())
	}
}

// replaySequential applies log to a fresh state machine of opts with the
// partitions one after the other and requires the store to equal want.
func replaySequential(t *testing.T, opts Options, log []entry, want store.Reader) {
	t.Helper()
	opts.ApplyWorkers = 1
	sm, s := New(opts), store.NewMem()
	for _, e := range log {
		if _, err := sm.Apply(s, e.seq, e.subject, e.data); err != nil {
			t.Fatalf("sequential replay: seq %d: %v", e.seq, err)
		}
	}
	if k, ok := firstDifference(s, want); !ok {
		t.Fatalf("the sequential replay of %d entries differs from the parallel store at %q", len(log), k)
	}
}
