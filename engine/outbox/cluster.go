package outbox

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	alog "github.com/aurumcdp/aurum/log"
	"github.com/aurumcdp/aurum/projections"
	"github.com/aurumcdp/aurum/store"
)

// Publishing in a cluster (ARCHITECTURE.md "Cluster"). Every node applies
// the whole log, so every node holds the same outbox rows (same keys, same
// message ids). The owner of partition p publishes p's outbox (and, for
// p = 0, the global outbox of merge records), fenced by its claim on p:
//
//  1. On becoming owner at epoch E it notes the log's last sequence and
//     waits until its state has applied it (catch-up).
//  2. It claims p at E (log.ClaimFence) and seeds its progress with the
//     previous owner's.
//  3. It drains p's outboxes with AppendAsyncFenced, one publish at a time
//     (see AppendAsyncFenced), and records its progress (the last key
//     published of each outbox, fenced) after each drained range.
//     ErrFenced stops p until the map gives p another epoch.
//
// A partition it does not own is pruned: every ProgressPoll it reads the
// owner's progress and deletes its own rows up to it (they were
// published). Rows left on becoming owner are published: rows the last
// owner had published carry the same message ids and are dropped by
// AURUM_OUT's duplicate window.

// partState is one partition's publishing state.
type partState struct {
	epoch   uint64 // the ownership epoch this state is for; 0: not owner
	target  uint64 // the log's last sequence when ownership began
	fence   *alog.Fence
	claimed time.Time // when fence was claimed or renewed
	fenced  bool      // a newer claim exists: wait for another epoch
	pos     [][]byte  // last key published of each outbox of the partition
	pruned  time.Time // last read of the owner's progress (not owner)
	floor   uint64    // the previous owner's watermark: published from once applied
	mark    uint64    // the watermark last recorded (Progress.Applied)
	marked  time.Time // when it was recorded

	// The steps of taking over, logged once each with the time since
	// ownership was seen (where a failover's time goes).
	since     time.Time // ownership at epoch seen
	caughtUp  bool      // applied reached target
	published bool      // first output published under this epoch
}

// prefixesOf are the outboxes partition p publishes: its own and, for
// partition 0, the global one.
func (e *Publisher) prefixesOf(p int) [][]byte {
	all := projections.OutboxPrefixes(e.opts.Partitions)
	if p == 0 {
		return [][]byte{all[1], all[0]}
	}
	return [][]byte{all[p+1]}
}

// runCluster runs partitionPass for every partition after each Poll or
// Kick, up to passWorkers partitions at a time. Partitions do not wait
// for each other: a partition whose pass is still running (a request to a
// stream that is electing a leader waits up to RequestTimeout) is skipped
// by the rounds until it returns, and the others go on. A round that
// waited for every partition held a new owner's take-over back by the
// slowest request of any partition (failovers of 6 s, bench/RESULTS.md
// "Issue #11: failover steps"). Each partition's state is touched by one
// goroutine at a time (busy). It returns when ctx ends, once every
// partition pass has returned.
func (e *Publisher) runCluster(ctx context.Context) error {
	tick := time.NewTicker(e.opts.Poll)
	defer tick.Stop()
	sem := make(chan struct{}, passWorkers)
	busy := make([]atomic.Bool, len(e.parts))
	var wg sync.WaitGroup
	defer wg.Wait()
	for {
		e.erasing.Store(e.opts.Erasing != nil && e.opts.Erasing())
		for p := range e.parts {
			if busy[p].Load() {
				continue
			}
			select {
			case sem <- struct{}{}:
			case <-ctx.Done():
				return ctx.Err()
			}
			busy[p].Store(true)
			wg.Add(1)
			go func() { // owned by runCluster: it waits for them
				defer wg.Done()
				defer func() { busy[p].Store(false); <-sem }()
				start := time.Now()
				err := e.partitionPass(ctx, p)
				if err != nil && ctx.Err() == nil {
					e.opts.Logger.Warn("engine: outbox: partition pass failed; will retry", "partition", p, "err", err, "took", time.Since(start))
				} else if took := time.Since(start); took > slowPass {
					e.opts.Logger.Info("engine: outbox: slow partition pass", "partition", p, "took", took)
				}
			}()
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-e.kick:
		case <-tick.C:
		}
	}
}

// passWorkers bounds the partitions passed at the same time: each
// publishes one fenced output at a time, so partitions in parallel are
// what keeps a replicated stream busy.
const passWorkers = 8

// slowPass: a partition pass taking longer is logged.
const slowPass = time.Second

// partitionPass publishes partition p if this node owns it, or prunes
// what its owner has published.
func (e *Publisher) partitionPass(ctx context.Context, p int) error {
	st := &e.parts[p]
	epoch, ok := e.opts.Cluster.Owns(p)
	if !ok {
		if st.epoch != 0 {
			*st = partState{}
			e.claimed[p].Store(0)
		}
		if time.Since(st.pruned) < e.opts.ProgressPoll {
			return nil
		}
		st.pruned = time.Now()
		rctx, cancel := e.request(ctx)
		defer cancel()
		return e.prune(rctx, p)
	}
	if st.epoch != epoch {
		seen := time.Now()
		rctx, cancel := e.request(ctx)
		target, err := e.log.LastSeq(rctx)
		cancel()
		if err != nil {
			return err
		}
		*st = partState{epoch: epoch, target: target, since: seen}
		e.claimed[p].Store(0)
		e.opts.Logger.Info("engine: outbox: owner of partition", "partition", p, "epoch", epoch,
			"target", target, "applied", e.opts.Applied(), "took", time.Since(seen))
	}
	if st.fenced || e.opts.Applied() < st.target {
		return nil
	}
	if !st.caughtUp {
		st.caughtUp = true
		e.opts.Logger.Info("engine: outbox: caught up", "partition", p, "epoch", epoch, "since_owner", time.Since(st.since))
	}
	if st.fence == nil {
		start := time.Now()
		rctx, cancel := e.request(ctx)
		defer cancel()
		f, err := e.log.ClaimFence(rctx, p, epoch, e.opts.Cluster.Name())
		if err != nil {
			return e.fencedOr(st, p, err)
		}
		prog, err := e.log.OutboxProgress(rctx, p)
		if err != nil {
			return err
		}
		st.fence, st.claimed, st.pos = &f, time.Now(), e.positions(p, prog.Pos)
		// Rows at or below the recorded progress were published (by this
		// node before it lost its last commits, or by another owner): the
		// node caught up, so every such row it derives again is here.
		if err := e.pruneTo(p, st.pos); err != nil {
			return err
		}
		st.floor, st.mark = prog.Applied, prog.Applied
		e.claimed[p].Store(epoch)
		e.opts.Logger.Info("engine: outbox: publishing partition", "partition", p, "epoch", epoch, "fence", f.Seq,
			"claim_took", time.Since(start), "since_owner", time.Since(st.since))
	} else if time.Since(st.claimed) >= e.log.FenceRenewal() {
		rctx, cancel := e.request(ctx)
		defer cancel()
		f, err := e.log.RenewFence(rctx, *st.fence)
		if err != nil {
			return e.fencedOr(st, p, err)
		}
		st.fence, st.claimed = &f, time.Now()
	}
	if e.opts.Applied() < st.floor {
		// The previous owner stated a watermark this node has not
		// applied yet: rows read now could be older than what an
		// erasure waiting on that watermark scrubbed.
		return nil
	}
	for {
		n, err := e.drainPartition(ctx, p, st, 256)
		if err != nil {
			return e.fencedOr(st, p, err)
		}
		if n == 0 {
			return nil
		}
		if !st.published {
			st.published = true
			e.opts.Logger.Info("engine: outbox: first publish", "partition", p, "epoch", epoch, "since_owner", time.Since(st.since))
		}
	}
}

// Claimed reports whether this node publishes partition p now, and under
// which epoch: it owned p, caught up and claimed it, and was not fenced
// since (as of its last pass: Owns is checked again by the caller). The
// last claim on p's fence may have moved on meanwhile; log.CheckFence is
// the authority. Without a cluster it reports false.
func (e *Publisher) Claimed(p int) (epoch uint64, ok bool) {
	if p < 0 || p >= len(e.claimed) {
		return 0, false
	}
	epoch = e.claimed[p].Load()
	return epoch, epoch != 0
}

// WaitPassed returns once the owner of every partition has recorded a
// watermark of at least at: no output of a row read from a state that had
// applied less than at can be stored any more (its publish was
// acknowledged or refused before the record, and a later owner publishes
// only once it applied the watermark it took over). The erasure's shared
// steps wait for it before they scrub (owners record watermarks while
// Options.Erasing). It polls every Poll until ctx ends. Without a cluster
// it returns at once: Barrier is the local wait.
func (e *Publisher) WaitPassed(ctx context.Context, at uint64) error {
	if e.opts.Cluster == nil {
		return nil
	}
	t := time.NewTicker(e.opts.Poll)
	defer t.Stop()
	p := 0
	for p < e.opts.Partitions {
		rctx, cancel := e.request(ctx)
		prog, err := e.log.OutboxProgress(rctx, p)
		cancel()
		if err == nil && prog.Applied >= at {
			p++
			continue
		}
		select {
		case <-ctx.Done():
			if err == nil {
				err = fmt.Errorf("the owner's watermark is %d (epoch %d)", prog.Applied, prog.Epoch)
			}
			return fmt.Errorf("outbox: partition %d has not passed log position %d: %w", p, at, err)
		case <-t.C:
		}
	}
	return nil
}

// request bounds one request of a cluster pass (Options.RequestTimeout).
// A publish that timed out is tried again by a later pass under the same
// message id: stored once, in key order (see the package comment).
func (e *Publisher) request(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, e.opts.RequestTimeout)
}

// fencedOr marks p fenced on ErrFenced (and returns nil), or returns err.
func (e *Publisher) fencedOr(st *partState, p int, err error) error {
	if !errors.Is(err, alog.ErrFenced) {
		return err
	}
	st.fenced = true
	e.claimed[p].Store(0)
	e.opts.Logger.Warn("engine: outbox: fenced, stopped publishing the partition until ownership changes",
		"partition", p, "epoch", st.epoch, "err", err)
	return nil
}

// busyRetries bounds how many times drainPartition publishes a row again
// after a refusal as busy (alog.IsBusy) within one pass.
const busyRetries = 8

// drainPartition publishes up to max rows of each of p's outboxes under
// st's fence, then records the progress.
func (e *Publisher) drainPartition(ctx context.Context, p int, st *partState, max int) (int, error) {
	e.mu.RLock()
	defer e.mu.RUnlock()
	f := *st.fence
	// The watermark of this drain: its rows are read from a state that
	// applied at least this.
	at := e.opts.Applied()
	// One fenced publish at a time: a replicated stream refuses a second
	// conditional publish on the same fence while the first replicates.
	// A refusal as busy (the server had not cleared the previous
	// publish's in-flight mark yet) is published again after a short
	// pause, a few times, before the pass gives up and retries later.
	publish := func(subject, msgID string, hdr map[string]string, data []byte) (*alog.Future, error) {
		pause := time.Millisecond
		for try := 0; ; try++ {
			fut, err := e.log.AppendAsyncFenced(f, subject, msgID, hdr, data)
			if err != nil {
				return nil, err
			}
			wctx, cancel := e.request(ctx)
			_, _, err = fut.Wait(wctx)
			cancel()
			if err == nil {
				return fut, nil
			}
			if !alog.IsBusy(err) || try == busyRetries {
				return nil, err
			}
			select {
			case <-ctx.Done():
				return nil, ctx.Err()
			case <-time.After(pause):
			}
			pause = min(2*pause, 50*time.Millisecond)
		}
	}
	total := 0
	var pubErr error
	err := e.state.Live(func(db *store.DB, sm *projections.StateMachine) error {
		for i, prefix := range e.prefixesOf(p) {
			n, last, err := e.drainOutboxRange(ctx, db, sm, prefix, max, publish)
			if n > 0 {
				st.pos[i] = last
				total += n
			}
			if err != nil {
				pubErr = err
				return nil
			}
		}
		return nil
	})
	if err != nil {
		return 0, err
	}
	mark := pubErr == nil && e.erasing.Load() && at > st.mark && time.Since(st.marked) >= e.opts.ProgressPoll
	if total > 0 || mark {
		rctx, cancel := e.request(ctx)
		defer cancel()
		if pubErr != nil {
			at = st.mark // rows read at `at` may be unpublished
		}
		if err := e.log.SetOutboxProgress(rctx, f, encodePos(st.pos), at); err != nil {
			return 0, err
		}
		st.mark, st.marked = at, time.Now()
	}
	return total, pubErr
}

// prune deletes the rows of p's outboxes up to the progress its owner
// recorded: those were published.
func (e *Publisher) prune(ctx context.Context, p int) error {
	prog, err := e.log.OutboxProgress(ctx, p)
	if err != nil || prog.Pos == nil {
		return err
	}
	return e.pruneTo(p, e.positions(p, prog.Pos))
}

// pruneTo deletes the rows of p's outboxes up to pos (one key per outbox
// of p, in the order of prefixesOf; nil: none).
func (e *Publisher) pruneTo(p int, pos [][]byte) error {
	e.mu.RLock()
	defer e.mu.RUnlock()
	return e.state.Live(func(db *store.DB, _ *projections.StateMachine) error {
		b := db.NewBatch()
		defer b.Close()
		for i, prefix := range e.prefixesOf(p) {
			if err := deleteThrough(db, b, prefix, pos[i]); err != nil {
				return fmt.Errorf("outbox: prune partition %d: %w", p, err)
			}
		}
		if b.Count() == 0 {
			return nil
		}
		return db.Commit(b, false)
	})
}

// encodePos encodes the last keys published of a partition's outboxes:
// per outbox a uvarint length and the key (length 0: none yet).
func encodePos(keys [][]byte) []byte {
	var out []byte
	for _, k := range keys {
		out = binary.AppendUvarint(out, uint64(len(k)))
		out = append(out, k...)
	}
	return out
}

// positions decodes a progress record of partition p into one key per
// outbox of p; a key that is not in its outbox's range (a corrupt or
// foreign record) counts as none.
func (e *Publisher) positions(p int, raw []byte) [][]byte {
	prefixes := e.prefixesOf(p)
	pos := make([][]byte, len(prefixes))
	for i := range prefixes {
		n, w := binary.Uvarint(raw)
		if w <= 0 || n > uint64(len(raw)-w) {
			break
		}
		k := raw[w : w+int(n)]
		raw = raw[w+int(n):]
		if len(k) > len(prefixes[i]) && bytes.HasPrefix(k, prefixes[i]) {
			pos[i] = append([]byte(nil), k...)
		}
	}
	return pos
}
