package engine

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/aurumcdp/aurum/engine/base"
	alog "github.com/aurumcdp/aurum/log"
	"github.com/aurumcdp/aurum/projections"
	"github.com/aurumcdp/aurum/store"
)

func checkPartitions(db *store.DB, n int) (int, error) {
	b := db.NewBatch()
	defer b.Close()
	got, err := projections.CheckPartitions(b, n)
	if err != nil {
		return 0, err
	}
	if err := db.Commit(b, true); err != nil {
		return 0, fmt.Errorf("engine: record partitions: %w", err)
	}
	return got, nil
}

func readApplied(r store.Reader) (uint64, error) { return projections.Applied(r) }

// applyLoop runs the state machine over the log from seq from onward. The
// entries the reader already has at hand are applied as a group in one
// Pebble batch with the last one's applied position (group), so a crash at
// any point resumes exactly after the last commit. An entry alone is
// applied at once: a group never waits to fill.
//
// The commits do not sync the state's WAL: at most every
// stateSyncInterval while it applies, and once it goes idle, the loop asks
// the state syncer (stateSyncLoop) to, and goes on applying while it does.
func (e *Engine) applyLoop(ctx context.Context, from uint64) error {
	r, err := e.log.NewReader(from)
	if err != nil {
		return err
	}
	defer r.Close()
	var lastSync time.Time // the last sync asked for
	unsynced := false      // commits since lastSync
	for {
		nctx, cancel := ctx, context.CancelFunc(func() {})
		if unsynced {
			nctx, cancel = context.WithTimeout(ctx, stateSyncInterval)
		}
		ent, err := r.Next(nctx)
		idle := err != nil && unsynced && ctx.Err() == nil && nctx.Err() != nil
		cancel()
		if idle {
			// Idle: sync the commits of the last burst.
			e.requestStateSync()
			lastSync, unsynced = time.Now(), false
			continue
		}
		if err != nil {
			return err
		}
		start := time.Now()
		gt := GroupTimes{First: ent.Seq, Stored: ent.Time, Read: start}
		results, err := e.applyGroup(ctx, r, ent, start, &gt)
		if err != nil {
			return err
		}
		unsynced = true
		if e.opts.afterCommit != nil {
			e.opts.afterCommit()
		}
		if start.Sub(lastSync) >= stateSyncInterval {
			e.requestStateSync() // after the commit: the sync covers it
			lastSync, unsynced, gt.Sync = start, false, true
		}
		if err := e.afterApply(results, start); err != nil {
			return err
		}
		if tr := e.opts.Trace; tr != nil && tr.Group != nil {
			gt.Last, gt.Done = results[len(results)-1].seq, time.Now()
			tr.Group(gt)
		}
	}
}

// requestStateSync asks stateSyncLoop to sync the live state's WAL. A
// request made while a sync runs is kept (one), so the commits before it
// are synced by the next one. Without Options.StateWAL there is no WAL to
// sync: checkpointLoop flushes by time instead.
func (e *Engine) requestStateSync() {
	if !e.opts.StateWAL {
		return
	}
	select {
	case e.stateSync <- struct{}{}:
	default:
	}
}

// stateSyncLoop syncs the live state's WAL when the apply loop asks
// (requestStateSync), off the apply loop: an fsync took the loop 10-100 ms
// every stateSyncInterval, and every transition behind it waited as long
// (bench/RESULTS.md, "Issue #15 (session 10): the latency tail"). Pebble
// goes on committing while a sync runs (its commit pipeline publishes a
// later batch without waiting for an earlier one's sync).
func (e *Engine) stateSyncLoop(ctx context.Context) error {
	if !e.opts.StateWAL {
		return e.checkpointLoop(ctx)
	}
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-e.stateSync:
		}
		if err := e.persistState(ctx, "sync", (*store.DB).SyncWAL); err != nil {
			return err
		}
	}
}

// persistState runs op (SyncWAL or Flush) on the live state under the
// state lock (a replay's swap closes the live store it replaces) and
// traces it (Trace.StateSync). what names it in the error.
func (e *Engine) persistState(ctx context.Context, what string, op func(*store.DB) error) error {
	start := time.Now()
	e.stateMu.RLock()
	err := op(e.state)
	e.stateMu.RUnlock()
	if err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return fmt.Errorf("engine: %s the state: %w", what, err)
	}
	if tr := e.opts.Trace; tr != nil && tr.StateSync != nil {
		tr.StateSync(start, time.Since(start))
	}
	return nil
}

// requestCheckpoint asks checkpointLoop for a checkpoint now (without
// Options.StateWAL): the apply loop asks after entries that changed who
// may connect (sources, write keys, tokens, users). A node restarted after
// a SIGKILL must know the credentials it issued before it answers: NATS
// clients refused twice while it re-applies the log give up (nats.go
// closes the connection), which TestChaos's producers did. Such entries
// are rare, so their checkpoints cost no compaction work to speak of.
func (e *Engine) requestCheckpoint() {
	if e.opts.StateWAL {
		return
	}
	select {
	case e.stateSync <- struct{}{}:
	default:
	}
}

// DefaultStateCheckpoint is Options.StateCheckpoint's default.
const DefaultStateCheckpoint = 30 * time.Second

// checkpointLoop flushes the live state's memtables to tables every
// Options.StateCheckpoint, and when the apply loop asks
// (requestCheckpoint), if the apply loop committed since the last flush: the state a crash goes back to (the store has no WAL). Pebble
// flushes a memtable that fills by itself, so under load a crash loses at
// most about a memtable of applied work; at low rates, at most the
// interval's. Off the apply loop, which goes on committing into a new
// memtable while the flush writes the old one.
func (e *Engine) checkpointLoop(ctx context.Context) error {
	t := time.NewTicker(e.opts.StateCheckpoint)
	defer t.Stop()
	var flushed uint64 // the applied position the last flush covered
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		case <-e.stateSync: // requestCheckpoint
		}
		at := e.applied.get()
		if at == flushed {
			continue
		}
		if err := e.persistState(ctx, "checkpoint", (*store.DB).Flush); err != nil {
			return err
		}
		flushed = at
		e.metrics.checkpoints.Inc()
	}
}

// applyGroup applies ent and, while the reader holds more entries
// (Entry.Pending) and the group is within Options.ApplyGroupEntries,
// ApplyGroupBytes and ApplyGroupTime, the entries after it, to the live
// state in one batch under stateMu (shared), and commits it.
// gt (Options.Trace) gets the times the batch was applied and committed.
func (e *Engine) applyGroup(ctx context.Context, r *alog.Reader, ent alog.Entry, start time.Time, gt *GroupTimes) ([]entryResult, error) {
	e.stateMu.RLock()
	defer e.stateMu.RUnlock()
	g := newGroup(e.state, e.sm)
	defer g.close()
	var rctx context.Context
	for {
		if err := g.add(ent); err != nil {
			return nil, err
		}
		if ent.Pending == 0 || g.count() >= e.opts.ApplyGroupEntries || g.bytes() >= e.opts.ApplyGroupBytes ||
			time.Since(start) >= e.opts.ApplyGroupTime {
			break
		}
		if rctx == nil {
			// The entry is on the stream, usually in the reader's buffer;
			// the deadline bounds the wait (and the lock) if it is not.
			var cancel context.CancelFunc
			rctx, cancel = context.WithDeadline(ctx, start.Add(e.opts.ApplyGroupTime))
			defer cancel()
		}
		next, err := r.Next(rctx)
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, alog.ErrClosed) {
				return nil, err
			}
			break // the group's time is up: commit what it holds
		}
		ent = next
	}
	if e.opts.Trace == nil {
		return g.commit()
	}
	gt.Applied = time.Now()
	res, err := g.commit()
	gt.Committed, gt.Bytes = time.Now(), g.size
	return res, err
}

// afterApply acts on the results of committed entries: caches reloaded,
// metrics, waiters woken, the outbox and erasure workers kicked.
func (e *Engine) afterApply(results []entryResult, start time.Time) error {
	var access, sources, dests, erasures, outbox bool
	var outboxes []int // with duplicates: Wake marks each once
	for _, er := range results {
		if er.corrupt != nil {
			e.opts.Logger.Error("engine: skipped a corrupt log entry", "seq", er.seq, "err", er.corrupt)
			e.metrics.corrupt.Inc()
		}
		res := &er.res
		e.gate.AddSources(res.Sources)
		sources = sources || len(res.Sources) > 0
		access = access || res.Access
		dests = dests || res.Destinations
		erasures = erasures || res.Erasures > 0
		e.privacy.DestroyErased(res.ErasedKeys)
		e.matching.Enqueue(res.MatchProfiles)
		outbox = outbox || res.Outbox > 0
		outboxes = append(outboxes, res.Outboxes...)
		e.metrics.applied.Add(float64(res.Events))
		e.metrics.duplicates.Add(float64(res.Duplicates))
		e.metrics.invalid.Add(float64(res.Invalid))
		e.metrics.merges.Add(float64(res.Merges))
		e.metrics.profiles.Add(float64(res.Created))
		e.metrics.transitions.Add(float64(res.Transitions))
		e.metrics.suppressed.Add(float64(res.Suppressed))
	}
	if access {
		if err := e.gate.Reload(); err != nil {
			return fmt.Errorf("engine: reload tokens and users: %w", err)
		}
	}
	if access || sources {
		e.closeRevokedNATS() // revoked tokens, deleted sources, rotated-out keys
	}
	if dests {
		if err := e.reloadDestinations(); err != nil {
			e.opts.Logger.Error("engine: reload destinations", "err", err)
		}
	}
	if erasures {
		e.privacy.KickErasures()
	}
	last := results[len(results)-1].seq
	e.metrics.appliedSeq.Set(float64(last))
	per := time.Since(start).Seconds() / float64(len(results))
	for range results {
		e.metrics.applySeconds.Observe(per)
	}
	e.metrics.applyGroup.Observe(float64(len(results)))
	e.applied.advance(last)
	if access || sources {
		// After advance: the checkpointer skips a flush when the applied
		// position has not moved since its last one, and asked before
		// advance it could read the old position and skip this entry's
		// (CI: a restart after a SIGKILL 300 ms later went back before
		// the source).
		e.requestCheckpoint()
	}
	switch {
	case e.opts.Cluster != nil: // a new owner waits to catch up
		e.publisher.Kick()
	case outbox:
		e.publisher.Wake(outboxes)
	}
	return nil
}

// entryResult is what applying one log entry did.
type entryResult struct {
	seq     uint64
	res     projections.Result
	corrupt error // set when the entry was skipped as corrupt (wraps projections.ErrCorruptEntry)
}

// group applies consecutive log entries to db through sm in ONE Pebble
// batch, committed once; the applied position it records is the last
// entry's. The result is that of applying them one batch each:
//   - sm.ApplyHeld writes the entry's changes and its position to the batch
//     and reads through it, so each entry sees the ones before it; the
//     GCRs it changes may stay decoded in sm's memory, where the next
//     entries change them, until commit releases them into the batch
//     (StateMachine.Release), each encoded once per group;
//   - an entry that fails (a corrupt one, whose Apply leaves partial
//     writes) makes the group discard its batch, reload sm's in-memory
//     parts, apply the entries before it again in a fresh batch and commit
//     them, and then apply the failed entry alone (applyOne: a corrupt
//     entry is skipped, only its position recorded). sm's state cache
//     drops itself: its position is then not the store's.
//
// Results are handed out by commit, so their effects (waiters, outbox,
// caches) happen only once the entries are durable in db. A group is used
// by one goroutine.
type group struct {
	db   *store.DB
	sm   *projections.StateMachine
	b    *store.Batch  // holds pend; nil when pend is empty
	pend []alog.Entry  // applied into b, not committed
	res  []entryResult // since the last commit, in log order; the last len(pend) are pend's
	size int           // bytes of the last committed batch: the next one is allocated that large
}

// stateSyncInterval bounds what a SIGKILL takes from the live state: a
// commit that is not synced may stay in Pebble's WAL buffer (up to a 32
// KiB block) and die with the process. Nothing is lost for the log (the
// entries are applied again from the position that survived), but a
// restarted node would re-apply all of it first, and answer meanwhile as
// of an older position. The state syncer (stateSyncLoop) syncs at most
// this long after a commit, plus the time a sync in progress takes.
const stateSyncInterval = 200 * time.Millisecond

// maxBatchPrealloc bounds the room reserved for a group's batch.
const maxBatchPrealloc = 64 << 20

func newGroup(db *store.DB, sm *projections.StateMachine) *group {
	return &group{db: db, sm: sm}
}

// count is the number of entries added since the last commit.
func (g *group) count() int { return len(g.res) }

// bytes is the size of the uncommitted batch.
func (g *group) bytes() int {
	if g.b == nil {
		return 0
	}
	return g.b.Len()
}

// add applies ent after the entries already in the group. It returns an
// error only when ent failed other than as a corrupt entry (the entries
// before it are then committed) or when the store failed.
func (g *group) add(ent alog.Entry) error {
	if g.b == nil {
		g.b = g.db.NewBatchSize(min(g.size, maxBatchPrealloc))
	}
	res, err := g.sm.ApplyHeld(g.b, ent.Seq, ent.Subject, ent.Data)
	if err == nil {
		g.pend = append(g.pend, ent)
		g.res = append(g.res, entryResult{seq: ent.Seq, res: res})
		return nil
	}
	g.b.Close()
	g.b = nil
	if err := g.redo(); err != nil {
		return err
	}
	res, err = applyOne(g.db, g.sm, ent.Seq, ent.Subject, ent.Data)
	er := entryResult{seq: ent.Seq, res: res}
	if errors.Is(err, projections.ErrCorruptEntry) {
		er.corrupt, err = err, nil
	}
	if err != nil {
		return err
	}
	g.res = append(g.res, er)
	return nil
}

// redo applies the pending entries again in a fresh batch and commits it,
// after their batch was discarded.
func (g *group) redo() error {
	if len(g.pend) == 0 {
		return nil
	}
	if err := g.sm.Load(g.db); err != nil {
		return fmt.Errorf("engine: reload the state machine: %w", err)
	}
	b := g.db.NewBatch()
	defer b.Close()
	base := len(g.res) - len(g.pend)
	for i, p := range g.pend {
		res, err := g.sm.Apply(b, p.Seq, p.Subject, p.Data)
		if err != nil {
			return fmt.Errorf("engine: apply seq %d again: %w", p.Seq, err)
		}
		g.res[base+i].res = res
	}
	if err := g.db.Commit(b, false); err != nil {
		return fmt.Errorf("engine: commit seqs %d-%d: %w", g.pend[0].Seq, g.pend[len(g.pend)-1].Seq, err)
	}
	g.pend = g.pend[:0]
	return nil
}

// commit commits the group's batch and returns the results of the entries
// added since the last commit, in log order.
func (g *group) commit() ([]entryResult, error) {
	if g.b != nil {
		// The GCRs the entries changed, held decoded in memory, each
		// encoded once for the whole group (StateMachine.ApplyHeld).
		if err := g.sm.Release(g.b); err != nil {
			g.b.Close()
			g.b = nil
			return nil, fmt.Errorf("engine: release seqs %d-%d: %w", g.pend[0].Seq, g.pend[len(g.pend)-1].Seq, err)
		}
		g.size = g.b.Len()
		err := g.db.Commit(g.b, false)
		g.b.Close()
		g.b = nil
		if err != nil {
			return nil, fmt.Errorf("engine: commit seqs %d-%d: %w", g.pend[0].Seq, g.pend[len(g.pend)-1].Seq, err)
		}
	}
	out := g.res
	g.res, g.pend = nil, g.pend[:0]
	return out, nil
}

// close discards what was not committed. The state machine's in-memory
// parts are reloaded from db, since they moved with the discarded entries.
func (g *group) close() {
	if g.b != nil {
		g.b.Close()
		g.b = nil
	}
	if len(g.pend) > 0 {
		_ = g.sm.Load(g.db) // best effort: the caller is failing; the next start loads anew
	}
	g.pend, g.res = nil, nil
}

// applyOne applies log entry seq to db through sm in one batch: the state
// changes and the applied position commit together. An entry that cannot
// be decoded is skipped deterministically (only its position is recorded)
// and reported with ErrCorruptEntry after the commit.
func applyOne(db *store.DB, sm *projections.StateMachine, seq uint64, subject string, data []byte) (projections.Result, error) {
	b := db.NewBatch()
	defer func() { b.Close() }()
	res, applyErr := sm.Apply(b, seq, subject, data)
	if errors.Is(applyErr, projections.ErrCorruptEntry) {
		b.Close()
		b = db.NewBatch()
		res = projections.Result{}
		if err := sm.Skip(b, seq); err != nil {
			return res, err
		}
	} else if applyErr != nil {
		return res, applyErr
	}
	if err := db.Commit(b, false); err != nil {
		return res, fmt.Errorf("engine: commit seq %d: %w", seq, err)
	}
	return res, applyErr
}

// WaitApplied blocks until the state machine has applied log position seq.
func (e *Engine) WaitApplied(ctx context.Context, seq uint64) error {
	return e.applied.wait(ctx, e.ctx, seq)
}

// AppliedSeq is the last applied log position.
func (e *Engine) AppliedSeq() uint64 { return e.applied.get() }

// Sync waits until everything appended to the log so far is applied.
func (e *Engine) Sync(ctx context.Context) error {
	last, err := e.log.LastSeq(ctx)
	if err != nil {
		return err
	}
	return e.WaitApplied(ctx, last)
}

// appliedWatch publishes the applied position to waiters.
type appliedWatch struct {
	mu  sync.Mutex
	seq uint64
	ch  chan struct{} // closed and replaced on every advance
}

func newAppliedWatch(seq uint64) *appliedWatch {
	return &appliedWatch{seq: seq, ch: make(chan struct{})}
}

func (w *appliedWatch) get() uint64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.seq
}

func (w *appliedWatch) advance(seq uint64) {
	w.mu.Lock()
	w.seq = seq
	close(w.ch)
	w.ch = make(chan struct{})
	w.mu.Unlock()
}

func (w *appliedWatch) wait(ctx, engineCtx context.Context, seq uint64) error {
	for {
		w.mu.Lock()
		cur, ch := w.seq, w.ch
		w.mu.Unlock()
		if cur >= seq {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		case <-engineCtx.Done():
			return base.ErrClosed
		}
	}
}

// Default bounds of a group of log entries applied in one Pebble batch
// (Options.ApplyGroupEntries, ApplyGroupBytes; ReplayOptions).
const (
	DefaultApplyGroupEntries = 256
	DefaultApplyGroupBytes   = 8 << 20
)

// Default bounds of an offline replay's groups (ReplayOptions): a replay
// has no outputs to publish and no reader waiting, so its groups are as
// large as memory allows: DefaultReplayGroupBytes without a memory limit,
// MemorySizes.ReplayGroup with one. (A live rebuild keeps
// Options.ApplyGroupEntries and ApplyGroupBytes: it runs in the serving
// process, whose memory they bound.) Above Pebble's large-batch
// threshold (half the memtable: 16 MiB of the store's default 32 MiB) a
// commit does not insert each key into the memtable: Pebble queues the
// batch as a memtable of its own, written to a table by its flush
// goroutine, off the apply goroutine (bench/RESULTS.md, "Issue #15: the
// replay pipeline").
const (
	DefaultReplayGroupEntries = 4096
	DefaultReplayGroupBytes   = 24 << 20
)
