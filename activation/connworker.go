package activation

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/aurumcdp/aurum/activation/connector"
	alog "github.com/aurumcdp/aurum/log"
	"github.com/aurumcdp/aurum/store"
)

// First sync states (DestStats.FirstSync).
const (
	SyncPending = "pending"
	SyncRunning = "running"
	SyncDone    = "done"
)

// transition is what a connector worker reads of an AURUM_OUT message.
type transition struct {
	Type        string              `json:"type"`
	Audience    string              `json:"audience"`
	ProfileID   string              `json:"profile_id"`
	Reason      string              `json:"reason"`
	Seq         uint64              `json:"seq"`
	Identifiers map[string][]string `json:"identifiers"`
}

// runConnector is run for a connector destination: its first sync, then
// its changes from AURUM_OUT.
func (w *worker) runConnector() {
	o := &w.d.opts
	if o.People == nil {
		w.failed(errors.New("no People: connectors cannot run"), false)
		return
	}
	if w.dest.SyncedAt == 0 {
		w.stats.update(func(s *DestStats) { s.FirstSync = SyncRunning })
		for failures := uint64(1); ; failures++ {
			err := w.firstSync()
			if err == nil || w.ctx.Err() != nil {
				// Marked on the log: the reload restarts this worker with
				// SyncedAt set.
				return
			}
			w.logger.Warn("activation: first sync failed; retrying", "err", err, "failures", failures)
			w.failed(fmt.Errorf("first sync: %w", err), false)
			if !w.sleep(o.backoff(failures)) {
				return
			}
		}
	}
	w.stats.update(func(s *DestStats) { s.FirstSync = SyncDone })
	if err := w.clearSyncMarks(); err != nil { // left by a crash after MarkSynced
		w.logger.Warn("activation: clearing first sync marks", "err", err)
	}
	swept := make(chan struct{})
	go func() { // owned by this worker: stops with its ctx, waited for below
		defer close(swept)
		w.sweepLoop()
	}()
	w.consumeBatch(alog.ConsumeOptions{StartSeq: w.dest.OutStart, Batch: min(w.conn.MaxBatch(), alog.MaxConsumeBatch)},
		w.handleChanges)
	<-swept
}

// sweepLoop runs the consent sweep every Options.ConsentSweep until the
// worker stops (only for tools that keep a list).
func (w *worker) sweepLoop() {
	o := &w.d.opts
	if !w.kind.KeepsList || o.ConsentSweep < 0 || o.Consent == nil {
		return
	}
	for w.sleep(o.ConsentSweep) {
		if err := w.sweep(); err != nil && w.ctx.Err() == nil {
			w.logger.Warn("activation: consent sweep failed", "err", err)
			w.failed(fmt.Errorf("consent sweep: %w", err), false)
		}
	}
}

// sweepPage bounds the refs one sweep step reads.
const sweepPage = 1000

// sweep removes from the tool the people it holds (a kept Ref) whose
// consent for the kind's channel is withdrawn. Their Ref moves to the
// withdrawn prefix: an erasure still finds it, the next sweep skips them,
// and their next entry (with consent) brings it back.
func (w *worker) sweep() error {
	o := &w.d.opts
	prefix := []byte("cr/" + w.dest.Name + "\x00")
	lower := prefix
	for {
		type kept struct {
			key, ref []byte
		}
		var page []kept
		err := w.d.refs.Scan(lower, store.PrefixEnd(prefix), false, func(k, v []byte) bool {
			page = append(page, kept{bytes.Clone(k), bytes.Clone(v)})
			return len(page) < sweepPage
		})
		if err != nil || len(page) == 0 {
			return err
		}
		var batch []connector.Change
		for _, p := range page {
			audience, profile, ok := strings.Cut(string(p.key[len(prefix):]), "\x00")
			if !ok {
				continue
			}
			if _, found, err := o.People.Person(profile); err != nil || !found {
				continue // erased (its exit follows) or unreadable now
			}
			allowed, err := o.Consent.Allowed(profile, w.kind.Channel)
			if err != nil || allowed {
				continue
			}
			batch = append(batch, connector.Change{ID: "consent:" + w.dest.Name + ":" + audience + ":" + profile,
				Op: connector.Remove, Audience: audience, ProfileID: profile})
		}
		for lo := 0; lo < len(batch); lo += w.conn.MaxBatch() {
			if err := w.deliverBatch(batch[lo:min(lo+w.conn.MaxBatch(), len(batch))], func(connector.Change) {}); err != nil {
				return err
			}
		}
		if len(page) < sweepPage {
			return nil
		}
		lower = append(page[len(page)-1].key, 0)
	}
}

// sleep waits d or until the worker stops (false).
func (w *worker) sleep(d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-w.ctx.Done():
		return false
	}
}

// firstSync sends the destination's audiences' members as of one log
// position, then records that position on the log (People.MarkSynced)
// with the AURUM_OUT sequence its consumer starts at:
//
//  1. L = the last sequence of AURUM_OUT, read first;
//  2. the members as of the applied log position S, read in one view;
//  3. every member sent (Add; Remove when they have no consent and the
//     tool keeps a list);
//  4. the consumer (if any: a sync redone) deleted, and (S, L+1) marked.
//
// The consumer then starts at L+1 and skips every transition caused at a
// log position <= S (its "seq"): those are in the members already. No
// gap: a transition caused after S is published after it is applied, so
// after step 2, so after step 1: its sequence is > L. No duplicate: what
// is skipped is exactly what S includes.
func (w *worker) firstSync() error {
	o := &w.d.opts
	ctx, cancel := context.WithTimeout(w.ctx, deleteTimeout)
	last, err := w.d.log.OutLastSeq(ctx)
	cancel()
	if err != nil {
		return err
	}
	applied, members, err := o.People.Members(w.dest.Audiences)
	if err != nil {
		return fmt.Errorf("members: %w", err)
	}
	w.logger.Info("activation: first sync", "members", len(members), "as_of", applied, "out_start", last+1)
	batch := make([]connector.Change, 0, w.conn.MaxBatch())
	for i, m := range members {
		c, send, err := w.syncChange(m, applied)
		if err != nil {
			return err
		}
		if send && !w.kind.KeepsList {
			if send, err = w.syncUnsent(c); err != nil {
				return err
			}
		}
		if send {
			batch = append(batch, c)
		}
		if len(batch) == cap(batch) || (i == len(members)-1 && len(batch) > 0) {
			if err := w.markSync(batch, syncPending); err != nil {
				return err
			}
			var markErr error
			if err := w.deliverBatch(batch, func(c connector.Change) {
				w.stats.update(func(s *DestStats) { s.Synced++ })
				if err := w.markSync([]connector.Change{c}, syncSent); err != nil && markErr == nil {
					markErr = err
				}
			}); err != nil {
				return err
			}
			if markErr != nil {
				return markErr
			}
			batch = batch[:0]
			if o.SyncBatchPause > 0 && !w.sleep(o.SyncBatchPause) {
				return w.ctx.Err()
			}
		}
	}
	// A node that lost the deliveries meanwhile leaves the consumer and
	// the mark to the one that has them.
	if err := w.checkFence(); err != nil {
		return err
	}
	ctx, cancel = context.WithTimeout(w.ctx, deleteTimeout)
	err = w.d.log.DeleteConsumer(ctx, alog.StreamOut, w.durable)
	cancel()
	if err != nil {
		return err
	}
	if err := o.People.MarkSynced(w.ctx, w.dest.Name, w.dest.Version, applied, last+1); err != nil {
		return err
	}
	return w.clearSyncMarks()
}

// Progress marks of a first sync to a tool that sends messages (no list:
// SMTP, SMS), kept in the activation store per destination, version,
// audience and person: a message cannot be taken back, and its tool has no
// idempotency key, so a crash in the middle of the sync must not send it
// again. The mark is written (synced) before the batch is sent
// (syncPending) and after (syncSent): a sync redone after a crash skips
// those sent, and dead-letters those pending (sent or not: the outcome is
// unknown) without sending them again. At most once, where the list tools
// are at least once (an add repeated changes nothing). The marks are
// deleted once the sync is marked done on the log.
const (
	syncPending = "p"
	syncSent    = "s"
)

func (w *worker) syncMarkPrefix() []byte {
	return []byte(fmt.Sprintf("fs/%s\x00%d\x00", w.dest.Name, w.dest.Version))
}

func (w *worker) syncMarkKey(c connector.Change) []byte {
	return append(w.syncMarkPrefix(), c.Audience+"\x00"+c.ProfileID...)
}

// markSync marks batch (messages only).
func (w *worker) markSync(batch []connector.Change, state string) error {
	if w.kind.KeepsList {
		return nil
	}
	for _, c := range batch {
		if err := w.d.refs.Set(w.syncMarkKey(c), []byte(state)); err != nil {
			return fmt.Errorf("activation: %s: sync mark: %w", w.dest.Name, err)
		}
	}
	return nil
}

// syncUnsent reports whether c must be sent: not marked by an earlier,
// interrupted run of this sync. A pending mark is dead-lettered (the
// outcome is unknown) and becomes sent.
func (w *worker) syncUnsent(c connector.Change) (bool, error) {
	v, err := w.d.refs.Get(w.syncMarkKey(c))
	if errors.Is(err, store.ErrNotFound) {
		return true, nil
	}
	if err != nil {
		return false, fmt.Errorf("activation: %s: sync mark: %w", w.dest.Name, err)
	}
	if string(v) == syncPending {
		if err := w.deadLetterChange(c, 1, "first sync interrupted while this message was being sent: "+
			"outcome unknown, not sent again (at most once)"); err != nil {
			return false, err
		}
		if err := w.markSync([]connector.Change{c}, syncSent); err != nil {
			return false, err
		}
	}
	w.stats.update(func(s *DestStats) { s.Synced++ })
	return false, nil
}

// clearSyncMarks deletes the destination's first sync marks (every
// version).
func (w *worker) clearSyncMarks() error {
	prefix := []byte("fs/" + w.dest.Name + "\x00")
	var keys [][]byte
	err := w.d.refs.Scan(prefix, store.PrefixEnd(prefix), false, func(k, _ []byte) bool {
		keys = append(keys, bytes.Clone(k))
		return true
	})
	for _, k := range keys {
		if err == nil {
			err = w.d.refs.Delete(k)
		}
	}
	if err != nil {
		return fmt.Errorf("activation: %s: clear sync marks: %w", w.dest.Name, err)
	}
	return nil
}

// syncChange is the change of one member in the first sync; send is false
// for a person gone since (an erasure: its exit follows) or skipped for
// consent.
func (w *worker) syncChange(m Member, applied uint64) (connector.Change, bool, error) {
	p, found, err := w.d.opts.People.Person(m.ProfileID)
	if err != nil || !found {
		return connector.Change{}, false, err
	}
	c := connector.Change{ID: fmt.Sprintf("sync:%s:%d:%s:%s", w.dest.Name, applied, m.Audience, m.ProfileID),
		Op: connector.Add, Audience: m.Audience, ProfileID: m.ProfileID, Sync: true,
		Emails: p.Emails, Phones: p.Phones, Traits: p.Traits}
	send, err := w.consentOp(&c)
	if err != nil {
		return c, false, err
	}
	return c, send, nil
}

// consentOp applies consent to c (not an erasure): without consent for the
// kind's channel an Add becomes a Remove where the tool keeps a list, and
// is not sent otherwise (send false, counted as skipped).
func (w *worker) consentOp(c *connector.Change) (bool, error) {
	o := &w.d.opts
	if o.Consent == nil || c.Op == connector.Erase {
		return true, nil
	}
	ok, err := o.Consent.Allowed(c.ProfileID, w.kind.Channel)
	if err != nil {
		return false, fmt.Errorf("consent check: %w", err)
	}
	if ok {
		return true, nil
	}
	if w.kind.KeepsList {
		c.Op = connector.Remove
		return true, nil
	}
	w.stats.update(func(s *DestStats) { s.Skipped++ })
	if o.OnSkip != nil {
		o.OnSkip(w.dest.Name, SkipConsent)
	}
	return false, nil
}

// deliverBatch delivers a batch outside the consumer (the first sync, the
// consent sweep): what the tool throttles or fails temporarily is retried
// (after the backoff, or the tool's Retry-After when longer) up to
// MaxAttempts, then dead-lettered with what refused for good; done is
// called for each change delivered.
func (w *worker) deliverBatch(batch []connector.Change, done func(connector.Change)) error {
	return w.deliverBatchDL(batch, done, w.deadLetterChange)
}

// deliverBatchDL is deliverBatch with the dead-letter writer of a change
// given up on.
func (w *worker) deliverBatchDL(batch []connector.Change, done func(connector.Change),
	deadLetter func(c connector.Change, attempts uint64, reason string) error) error {
	o := &w.d.opts
	pending := batch
	for attempt := uint64(1); len(pending) > 0; attempt++ {
		res, err := w.deliver(pending)
		var ra *alog.RetryAfter
		if errors.As(err, &ra) { // the fence could not be checked: not an attempt
			attempt--
			if !w.sleep(max(ra.Delay, o.BackoffMin)) {
				return w.ctx.Err()
			}
			continue
		}
		if err != nil {
			return err
		}
		var retry []connector.Change
		var wait time.Duration
		for i, r := range res {
			c := pending[i]
			switch {
			case r.Status == connector.Delivered:
				if err := w.delivered(c, r); err != nil {
					return err
				}
				done(c)
			case r.Status == connector.Retry && attempt < uint64(o.MaxAttempts):
				retry = append(retry, c)
				wait = max(wait, r.RetryAfter)
			default:
				if err := deadLetter(c, attempt, r.Reason); err != nil {
					return err
				}
			}
		}
		if w.ctx.Err() != nil {
			return w.ctx.Err()
		}
		pending = retry
		if len(pending) > 0 && !w.sleep(max(o.backoff(attempt), min(wait, o.BackoffMax))) {
			return w.ctx.Err()
		}
	}
	return nil
}

// deliver runs the connector on changes (the Refs of removals filled in),
// bounded by Options.Timeout per change batch, and counts its failures.
// The fence is checked first (checkFence): its error is returned and
// nothing is sent.
func (w *worker) deliver(changes []connector.Change) ([]connector.Result, error) {
	w.connMu.Lock()
	defer w.connMu.Unlock()
	if err := w.checkFence(); err != nil {
		return nil, err
	}
	for i := range changes {
		if changes[i].Op != connector.Add {
			ref, err := w.d.refs.Get(w.refKey(changes[i]))
			if err != nil {
				ref, err = w.d.refs.Get(w.withdrawnKey(changes[i]))
			}
			if err == nil {
				changes[i].Ref = ref
			}
		}
	}
	ctx, cancel := context.WithTimeout(w.ctx, w.d.opts.Timeout)
	defer cancel()
	res := w.conn.Deliver(ctx, changes)
	if len(res) != len(changes) {
		res = connector.All(len(changes), connector.Result{Status: connector.Retry,
			Reason: fmt.Sprintf("connector returned %d results for %d changes", len(res), len(changes))})
	}
	for _, r := range res {
		if r.Status != connector.Delivered {
			w.failed(errors.New(r.Reason), true)
		}
	}
	return res, nil
}

// delivered records a delivered change: its Ref kept after an Add,
// moved to the former members' after an exit (the tool may still hold the
// person: an erasure finds them there), moved to the withdrawn prefix
// after a consent sweep's removal (an erasure may still need it), and
// dropped after an erasure.
func (w *worker) delivered(c connector.Change, r connector.Result) error {
	var err error
	switch {
	case c.Op == connector.Add && len(r.Ref) > 0:
		if err = w.d.refs.Set(w.refKey(c), r.Ref); err == nil {
			if err = w.deleteIfSet(w.withdrawnKey(c)); err == nil {
				err = w.deleteIfSet(w.formerKey(c))
			}
		}
	case c.Op == connector.Remove && strings.HasPrefix(c.ID, "consent:") && len(c.Ref) > 0:
		if err = w.d.refs.Set(w.withdrawnKey(c), c.Ref); err == nil {
			err = w.d.refs.Delete(w.refKey(c))
		}
	case c.Op == connector.Remove:
		if len(c.Ref) > 0 {
			err = w.d.refs.Set(w.formerKey(c), c.Ref)
		}
		if err == nil {
			if err = w.deleteIfSet(w.refKey(c)); err == nil {
				err = w.deleteIfSet(w.withdrawnKey(c))
			}
		}
	case c.Op == connector.Erase:
		if err = w.deleteIfSet(w.refKey(c)); err == nil {
			if err = w.deleteIfSet(w.withdrawnKey(c)); err == nil {
				err = w.deleteIfSet(w.formerKey(c))
			}
		}
	}
	if err != nil {
		return fmt.Errorf("activation: %s: ref: %w", w.dest.Name, err)
	}
	w.stats.update(func(s *DestStats) {
		s.Delivered++
		if c.Op != connector.Add {
			s.Removed++
		}
	})
	return nil
}

// refKey is where the Ref of c's person in c's audience is kept.
func (w *worker) refKey(c connector.Change) []byte {
	return []byte(refMember + w.dest.Name + "\x00" + c.Audience + "\x00" + c.ProfileID)
}

// withdrawnKey is where the Ref of a person the consent sweep removed is
// kept (for an erasure).
func (w *worker) withdrawnKey(c connector.Change) []byte {
	return []byte(refWithdrawn + w.dest.Name + "\x00" + c.Audience + "\x00" + c.ProfileID)
}

// deadLetterChange dead-letters a change of the first sync.
func (w *worker) deadLetterChange(c connector.Change, attempts uint64, reason string) error {
	body, err := json.Marshal(map[string]any{"type": "sync", "op": c.Op.String(), "audience": c.Audience,
		"profile_id": c.ProfileID, "identifiers": map[string][]string{"email": c.Emails, "phone": c.Phones}})
	if err != nil {
		return err
	}
	return w.writeDeadLetter(DeadLetter{Destination: w.dest.Name, Kind: w.dest.Kind, Subject: "sync." + c.Audience,
		DeliveryID: c.ID, Body: body, Attempts: attempts, Reason: reason, Time: w.d.opts.Now()}, 0)
}

// handleChanges is the consumer's handler of a connector destination:
// the transitions ready in AURUM_OUT (up to the kind's MaxBatch), in
// stream order. They go to the tool in batches of at most MaxBatch
// changes, cut before a second change of the same person in the same
// audience (so a tool never gets an entry and an exit of one person in
// one request, whatever order it applies them in). Every change is first
// prepared (consent, identifiers, traits): an error there naks the whole
// batch before anything was sent. A batch is then retried within the
// handler (the tool's retryable answers, after the backoff or its
// Retry-After) up to MaxAttempts, and what fails for good is
// dead-lettered with the transition; the next batch is sent only after
// this one, so a person's changes reach the tool in order.
func (w *worker) handleChanges(msgs []alog.Msg) error {
	type item struct {
		c connector.Change
		m alog.Msg
	}
	var items []item
	for _, m := range msgs {
		c, send, err := w.change(m)
		if err != nil {
			if w.ctx.Err() != nil {
				return err
			}
			w.failed(err, true)
			return &alog.RetryAfter{Delay: w.d.opts.backoff(m.Delivered), Err: err}
		}
		if send {
			items = append(items, item{c, m})
		}
	}
	origin := make(map[string]alog.Msg, len(items))
	for _, it := range items {
		origin[it.c.ID] = it.m
	}
	deadLetter := func(c connector.Change, attempts uint64, reason string) error {
		return w.giveUp(origin[c.ID], &attemptError{Err: errors.New(reason)})
	}
	seen := map[string]bool{}
	var batch []connector.Change
	flush := func() error {
		if len(batch) == 0 {
			return nil
		}
		err := w.deliverBatchDL(batch, func(connector.Change) {}, deadLetter)
		batch = batch[:0]
		clear(seen)
		return err
	}
	for _, it := range items {
		k := it.c.Audience + "\x00" + it.c.ProfileID
		if seen[k] || len(batch) == w.conn.MaxBatch() {
			if err := flush(); err != nil {
				return err
			}
		}
		seen[k] = true
		batch = append(batch, it.c)
	}
	if err := flush(); err != nil {
		return err
	}
	last := msgs[len(msgs)-1]
	w.stats.update(func(s *DestStats) { s.LastSeq, s.Lag = last.Seq, last.Pending })
	return nil
}

// change prepares the change of one transition; send is false for one
// skipped (in the first sync already, no consent where the tool keeps no
// list) or dead-lettered (unreadable).
func (w *worker) change(m alog.Msg) (connector.Change, bool, error) {
	o := &w.d.opts
	var tr transition
	if err := json.Unmarshal(m.Data, &tr); err != nil || tr.ProfileID == "" || tr.Audience == "" {
		err := errors.New("transition without a profile_id or audience")
		w.failed(err, true)
		if err := w.giveUp(m, err); err != nil {
			return connector.Change{}, false, err
		}
		return connector.Change{}, false, nil
	}
	if tr.Seq != 0 && tr.Seq <= w.dest.SyncedAt {
		return connector.Change{}, false, nil // in the first sync's members already
	}
	c := connector.Change{ID: deliveryID(m), Op: connector.Add, Audience: tr.Audience, ProfileID: tr.ProfileID,
		Emails: tr.Identifiers["email"], Phones: tr.Identifiers["phone"]}
	switch {
	case tr.Type == "audience.exited" && tr.Reason == ReasonErased:
		c.Op = connector.Erase
	case tr.Type == "audience.exited":
		c.Op = connector.Remove
	}
	send, err := w.consentOp(&c)
	if err != nil || !send {
		return c, false, err
	}
	if c.Op == connector.Add {
		p, found, err := o.People.Person(c.ProfileID)
		if err != nil {
			return c, false, err
		}
		if found {
			c.Traits = p.Traits
			if len(c.Emails) == 0 && len(c.Phones) == 0 {
				c.Emails, c.Phones = p.Emails, p.Phones
			}
		}
	}
	return c, true, nil
}
