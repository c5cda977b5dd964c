package outbox

import (
	"context"
	"testing"
	"time"
)

// TestDrainScansDirty: a pass scans every outbox at start, after Kick and
// after the periodic rescan; otherwise only those Wake named and those a
// pass left rows in (it published its maximum). A row whose outbox was
// not named waits for the rescan, and goes out then.
func TestDrainScansDirty(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	l, got := mergedLog(t, ctx)
	state := &liveDB{db: openStore(t)}
	e := New(Options{Partitions: 2}, l, nil, state, nil) // 3 outboxes
	// drain runs one pass and checks how many outboxes it scanned and
	// what it published.
	drain := func(wantScans int, wantSeqs ...uint64) {
		t.Helper()
		if n := drainPass(t, ctx, e, got, 4, wantSeqs...); n != wantScans {
			t.Fatalf("the pass scanned %d outboxes, want %d", n, wantScans)
		}
	}
	drain(3) // at start: every outbox
	drain(0) // nothing written, nothing named

	putRow(t, state.db, 1)
	e.Wake([]int{0})
	drain(1, 1)
	drain(0)

	putRow(t, state.db, 2)
	e.Wake([]int{2}) // another outbox named: row 2 waits
	drain(1)
	e.rescan() // the periodic pass
	drain(3, 2)

	for seq := uint64(10); seq < 16; seq++ {
		putRow(t, state.db, seq)
	}
	e.Wake([]int{0, 0})
	drain(1, 10, 11, 12, 13) // the maximum: the outbox stays marked
	drain(1, 14, 15)
	drain(0)

	putRow(t, state.db, 20)
	e.Kick()
	drain(3, 20)
}
