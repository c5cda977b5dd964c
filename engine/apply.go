package engine

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	alog "github.com/aurumcdp/aurum/log"
	"github.com/aurumcdp/aurum/projections"
	"github.com/aurumcdp/aurum/store"
	"github.com/vmihailenco/msgpack/v5"
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

// applyLoop runs the state machine over the log from seq from onward: one
// Pebble batch per log entry holds the state changes and the applied
// position, so a crash at any point resumes exactly after the last commit.
func (e *Engine) applyLoop(ctx context.Context, from uint64) error {
	r, err := e.log.NewReader(from)
	if err != nil {
		return err
	}
	defer r.Close()
	for {
		ent, err := r.Next(ctx)
		if err != nil {
			return err
		}
		start := time.Now()
		e.stateMu.RLock()
		res, err := e.applyEntry(ent.Seq, ent.Subject, ent.Data)
		e.stateMu.RUnlock()
		if err != nil {
			return err
		}
		for _, s := range res.Sources {
			e.sources.add(s)
		}
		if res.Access {
			if err := e.reloadAccess(); err != nil {
				return fmt.Errorf("engine: reload tokens and users: %w", err)
			}
			e.closeRevokedNATS()
		}
		if res.Destinations {
			if err := e.reloadDestinations(); err != nil {
				e.opts.Logger.Error("engine: reload destinations", "err", err)
			}
		}
		e.metrics.applied.Add(float64(res.Events))
		e.metrics.duplicates.Add(float64(res.Duplicates))
		e.metrics.invalid.Add(float64(res.Invalid))
		e.metrics.merges.Add(float64(res.Merges))
		e.metrics.profiles.Add(float64(res.Created))
		e.metrics.transitions.Add(float64(res.Transitions))
		e.metrics.suppressed.Add(float64(res.Suppressed))
		if res.Erasures > 0 {
			e.kickErasures()
		}
		e.metrics.appliedSeq.Set(float64(ent.Seq))
		e.metrics.applySeconds.Observe(time.Since(start).Seconds())
		e.applied.advance(ent.Seq)
		if res.Outbox > 0 {
			e.applied.kickOutbox()
		}
	}
}

// applyEntry applies one log entry to the live state (the caller holds
// stateMu shared).
func (e *Engine) applyEntry(seq uint64, subject string, data []byte) (projections.Result, error) {
	res, err := applyOne(e.state, e.sm, seq, subject, data)
	if errors.Is(err, projections.ErrCorruptEntry) {
		e.opts.Logger.Error("engine: skipped a corrupt log entry", "seq", seq, "err", err)
		e.metrics.corrupt.Inc()
		err = nil
	}
	return res, err
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
	mu     sync.Mutex
	seq    uint64
	ch     chan struct{} // closed and replaced on every advance
	outbox chan struct{} // 1-buffered kick for the outbox publisher
}

func newAppliedWatch(seq uint64) *appliedWatch {
	return &appliedWatch{seq: seq, ch: make(chan struct{}), outbox: make(chan struct{}, 1)}
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

func (w *appliedWatch) kickOutbox() {
	select {
	case w.outbox <- struct{}{}:
	default:
	}
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
			return ErrClosed
		}
	}
}

// outboxLoop publishes outbox entries with their deterministic message ids
// and deletes each once the log acknowledged it. A crash between the two
// re-publishes the entry with the same id, which the output stream's
// duplicate window drops.
func (e *Engine) outboxLoop(ctx context.Context) error {
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		for {
			n, err := e.drainOutbox(ctx, 256)
			if err != nil {
				if ctx.Err() != nil {
					return ctx.Err()
				}
				e.opts.Logger.Warn("engine: outbox publish failed; will retry", "err", err)
				break
			}
			if n == 0 {
				break
			}
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-e.applied.outbox:
		case <-tick.C:
		}
	}
}

func (e *Engine) drainOutbox(ctx context.Context, max int) (int, error) {
	e.outboxMu.Lock()
	defer e.outboxMu.Unlock()
	e.stateMu.RLock()
	defer e.stateMu.RUnlock()
	total := 0
	for _, prefix := range projections.OutboxPrefixes(e.opts.Partitions) {
		n, err := e.drainOutboxRange(ctx, prefix, max)
		if err != nil {
			return total, err
		}
		total += n
	}
	return total, nil
}

// drainOutboxRange publishes up to max entries of one outbox (the global one
// or a partition's): in order, so a subscriber sees each profile's
// transitions in the order they happened.
func (e *Engine) drainOutboxRange(ctx context.Context, prefix []byte, max int) (int, error) {
	entries, err := projections.Outbox(e.state, prefix, max)
	if err != nil || len(entries) == 0 {
		return 0, err
	}
	// Publish them all, then wait for the acks: one round trip for the
	// range, not one per entry. One goroutine's async appends are stored
	// in call order, so per-profile order holds. Only the entries up to the
	// first failure are deleted; the rest are published again (same ids)
	// on the next pass.
	futs := make([]*alog.Future, 0, len(entries))
	var pubErr error
	for _, ent := range entries {
		data := ent.Msg.Data
		audience := strings.HasPrefix(ent.Msg.Subject, projections.SubjectAudiencePrefix)
		if len(ent.Msg.Identifiers) > 0 || audience {
			if data, pubErr = e.decorateOutput(data, &ent.Msg, audience); pubErr != nil {
				break
			}
		}
		var hdr map[string]string
		if len(ent.Msg.Profile) == 16 {
			hdr = map[string]string{alog.HeaderProfile: ulidString(ent.Msg.Profile)}
		}
		f, err := e.log.AppendAsyncWithHeaders(ent.Msg.Subject, ent.Msg.MsgID, hdr, data)
		if err != nil {
			pubErr = err
			break
		}
		futs = append(futs, f)
	}
	b := e.state.NewBatch()
	defer b.Close()
	acked := 0
	for i, f := range futs {
		if _, _, err := f.Wait(ctx); err != nil {
			if pubErr == nil {
				pubErr = err
			}
			break
		}
		if err := b.Delete(entries[i].Key); err != nil {
			return 0, err
		}
		acked++
	}
	if acked > 0 {
		if err := e.state.Commit(b, false); err != nil {
			return 0, err
		}
		e.metrics.published.Add(float64(acked))
	}
	return acked, pubErr
}

// decorateOutput adds to an output message's JSON what the state machine
// does not put there: the unsealed identifiers and, for an audience
// transition, the person's consent per channel (the statements recorded
// with the transition, defaults for the rest; the current consent when the
// transition recorded none).
func (e *Engine) decorateOutput(data []byte, msg *projections.OutMsg, audience bool) ([]byte, error) {
	var m map[string]any
	if err := json.Unmarshal(data, &m); err != nil {
		return nil, fmt.Errorf("engine: outbox message: %w", err)
	}
	if len(msg.Identifiers) > 0 {
		e.withIdentifiers(m, msg.Identifiers)
	}
	if audience {
		if msg.ConsentKnown {
			m["consent"] = e.consentWithDefaults(msg.Consent)
		} else if err := e.withConsent(e.state, m); err != nil {
			return nil, fmt.Errorf("engine: outbox message: %w", err)
		}
	}
	return json.Marshal(m)
}

// withIdentifiers adds the unsealed identifiers to an output message as
// "identifiers": {type: [values]}. A value whose key was destroyed is left
// out.
func (e *Engine) withIdentifiers(m map[string]any, ids []projections.OutIdent) {
	out := map[string][]string{}
	for _, id := range ids {
		pt, err := e.keys.Open(id.Key, id.Sealed)
		if err != nil {
			continue
		}
		var v string
		if err := msgpack.Unmarshal(pt, &v); err != nil {
			continue
		}
		out[id.Type] = append(out[id.Type], v)
	}
	m["identifiers"] = out
}
