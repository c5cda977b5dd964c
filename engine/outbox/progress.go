package outbox

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"time"

	alog "github.com/aurumcdp/aurum/log"
	"github.com/aurumcdp/aurum/projections"
	"github.com/aurumcdp/aurum/store"
)

// A single node's publisher records how far it has published each
// partition's outboxes on the log (log.RecordOutboxProgress, the subjects a
// cluster's owners record their fenced progress on), so that outputs
// re-derived after the state lost its last commits are not published
// again, however long the node was down: the live state store has no
// write-ahead log of its own (engine.Options.StateWAL), so a crash takes
// it back to its last checkpoint, and re-applying the log from there
// writes the same outbox rows (same keys, same message ids) again.
//
// floors[i] is the key of the last row of outbox i (in the order of
// projections.OutboxPrefixes) that was published and acknowledged, as
// recorded or published since: rows at or below it are never published,
// and are deleted by the periodic pass. It is read from the log when Run
// starts (resume). Invariant: the recorded progress of a partition is at
// or below its floors, and every row at or below a floor was
// acknowledged once: the record is made after the acks it covers.
type floors struct {
	keys  [][]byte // per outbox; nil: none
	dirty []bool   // per partition: keys moved since its last record
	last  time.Time
}

// progressEvery is how often, at most, a busy single node records its
// progress; it records at once when it goes idle. A crash loses at most
// this much of the record: outputs acknowledged in it are published again
// after the restart, and dropped by AURUM_OUT's duplicate window if the
// node is back within it.
const progressEvery = 50 * time.Millisecond

// outboxIndexes are the indexes in projections.OutboxPrefixes of
// partition p's outboxes, in the order of prefixesOf(p) (and of its
// progress records).
func outboxIndexes(p int) []int {
	if p == 0 {
		return []int{1, 0}
	}
	return []int{p + 1}
}

// partitionOf is the partition whose progress records outbox i (the
// global outbox is recorded with partition 0's).
func partitionOf(i int) int {
	if i == 0 {
		return 0
	}
	return i - 1
}

// resume reads every partition's recorded progress into e.floors. It
// retries a failed read every Poll until ctx ends: publishing without the
// floors could send outputs a second time.
func (e *Publisher) resume(ctx context.Context) error {
	n := e.opts.Partitions
	fl := floors{keys: make([][]byte, n+1), dirty: make([]bool, n)}
	for p := range n {
		for {
			rctx, cancel := e.request(ctx)
			prog, err := e.log.OutboxProgress(rctx, p)
			cancel()
			if err == nil {
				for j, pos := range e.positions(p, prog.Pos) {
					fl.keys[outboxIndexes(p)[j]] = pos
				}
				break
			}
			if ctx.Err() != nil {
				return ctx.Err()
			}
			e.opts.Logger.Warn("engine: outbox: read the recorded progress; will retry", "partition", p, "err", err)
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(e.opts.Poll):
			}
		}
	}
	e.mu.Lock()
	e.floors = fl
	e.mu.Unlock()
	return nil
}

// from is where a pass scans outbox i: after its cursor or its floor,
// whichever is higher (nil: from the prefix's start). Under e.mu.
func (e *Publisher) from(i int) []byte {
	from := e.cur.after[i]
	if i < len(e.floors.keys) {
		if f := e.floors.keys[i]; f != nil && (from == nil || bytes.Compare(f, from) > 0) {
			from = f
		}
	}
	return from
}

// raiseFloor raises outbox i's floor to key, acknowledged and deleted.
// Under e.mu.
func (e *Publisher) raiseFloor(i int, key []byte) {
	if i >= len(e.floors.keys) {
		return
	}
	e.floors.keys[i] = key
	e.floors.dirty[partitionOf(i)] = true
}

// recordProgress records the progress of the partitions whose floors moved
// (all at once: one round trip), if force or progressEvery has passed
// since the last record. Under e.mu.
func (e *Publisher) recordProgress(ctx context.Context, force bool) error {
	if !force && time.Since(e.floors.last) < progressEvery {
		return nil
	}
	type pending struct {
		p   int
		fut *alog.Future
	}
	var futs []pending
	var errs []error
	for p, d := range e.floors.dirty {
		if !d {
			continue
		}
		idx := outboxIndexes(p)
		keys := make([][]byte, len(idx))
		for j, i := range idx {
			keys[j] = e.floors.keys[i]
		}
		fut, err := e.log.RecordOutboxProgress(p, encodePos(keys), 0)
		if err != nil {
			errs = append(errs, err)
			break
		}
		futs = append(futs, pending{p, fut})
	}
	if len(futs) == 0 && len(errs) == 0 {
		return nil
	}
	rctx, cancel := e.request(ctx)
	defer cancel()
	for _, f := range futs {
		if _, _, err := f.fut.Wait(rctx); err != nil {
			errs = append(errs, fmt.Errorf("partition %d: %w", f.p, err))
			continue
		}
		e.floors.dirty[f.p] = false
	}
	e.floors.last = time.Now()
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("outbox: record progress: %w", err)
	}
	return nil
}

// pruneFloors deletes the rows at or below each outbox's floor: outputs
// published before the state lost its last commits, written again since.
func (e *Publisher) pruneFloors() error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if len(e.floors.keys) == 0 {
		return nil
	}
	return e.state.Live(func(db *store.DB, _ *projections.StateMachine) error {
		b := db.NewBatch()
		defer b.Close()
		for i, prefix := range projections.OutboxPrefixes(e.opts.Partitions) {
			if err := deleteThrough(db, b, prefix, e.floors.keys[i]); err != nil {
				return fmt.Errorf("outbox: prune below the published rows: %w", err)
			}
		}
		if b.Count() == 0 {
			return nil
		}
		return db.Commit(b, false)
	})
}

// deleteThrough deletes in b the rows of the outbox at prefix up to and
// including last (nil: none).
func deleteThrough(db *store.DB, b *store.Batch, prefix, last []byte) error {
	if last == nil {
		return nil
	}
	var derr error
	err := db.Scan(prefix, append(bytes.Clone(last), 0), false, func(k, _ []byte) bool {
		derr = b.Delete(bytes.Clone(k))
		return derr == nil
	})
	if err == nil {
		err = derr
	}
	return err
}
