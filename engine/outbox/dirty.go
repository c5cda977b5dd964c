package outbox

import "sync"

// dirtySet is the outboxes (indexes in projections.OutboxPrefixes) the next
// pass of a single node's drainOutbox scans: those the apply loop wrote rows
// to since the last pass (Wake), those a pass may have left rows in (it
// published its maximum, or failed), and every one after Kick, the periodic
// rescan and at start. A pass used to open an iterator on each of the 17
// outboxes whatever the entry wrote; at 100k profiles those scans, almost
// all of empty outboxes, were 4 % of the engine's CPU (bench/RESULTS.md,
// session 13).
//
// Invariant: a row the apply loop committed is published by a pass that
// took the set after its commit, or its outbox is in the set. It holds
// because the apply loop commits, then marks (Wake), then signals Run, and
// a pass takes the set before it reads the store; a pass marks again what
// it could not finish. Rows written by anything else (a restore, a store
// swap) go out after the 1-second rescan, as before.
type dirtySet struct {
	mu  sync.Mutex
	all bool   // every outbox
	set []bool // by outbox index; grown on demand
}

// mark adds outboxes to the set.
func (d *dirtySet) mark(outboxes []int) {
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, i := range outboxes {
		if i < 0 {
			continue
		}
		if i >= len(d.set) {
			d.set = append(d.set, make([]bool, i+1-len(d.set))...)
		}
		d.set[i] = true
	}
}

// markAll puts every outbox in the set.
func (d *dirtySet) markAll() {
	d.mu.Lock()
	d.all = true
	d.mu.Unlock()
}

// take empties the set into scan (n outboxes; reused when large enough)
// and returns it: scan[i] says whether the pass scans outbox i.
func (d *dirtySet) take(n int, scan []bool) []bool {
	if cap(scan) < n {
		scan = make([]bool, n)
	}
	scan = scan[:n]
	d.mu.Lock()
	defer d.mu.Unlock()
	for i := range scan {
		scan[i] = d.all || (i < len(d.set) && d.set[i])
	}
	d.all = false
	clear(d.set)
	return scan
}
