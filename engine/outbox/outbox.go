// Package outbox is the outbox publisher: it publishes the outputs the
// state machine wrote to the outbox (aurum.identity.merged,
// aurum.audience.<name>.entered|exited) on AURUM_OUT with their
// deterministic message ids, identifiers unsealed and consent added, and
// deletes each once the log acknowledged it. The engine runs Run and
// kicks it (Kick) after an apply that wrote outbox rows.
package outbox

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/aurumcdp/aurum/engine/base"
	alog "github.com/aurumcdp/aurum/log"
	"github.com/aurumcdp/aurum/projections"
	"github.com/aurumcdp/aurum/seal"
	"github.com/aurumcdp/aurum/store"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/vmihailenco/msgpack/v5"
)

// State runs fn with the live state store and its state machine under the
// engine's state lock (shared): fn may delete outbox rows.
type State interface {
	Live(fn func(db *store.DB, sm *projections.StateMachine) error) error
}

// Consent adds a person's consent to an audience transition (the privacy
// stage).
type Consent interface {
	// ConsentWithDefaults is the consent of every channel: the explicit
	// statements, the default for the rest.
	ConsentWithDefaults(stated map[string]bool) map[string]bool
	// WithConsent adds the current consent of m's profile_id to m as
	// "consent", reading r with sm.
	WithConsent(r store.Reader, sm *projections.StateMachine, m map[string]any) error
}

// Cluster says which partitions this node publishes (the engine's
// Cluster). Without one the node publishes every outbox.
type Cluster interface {
	Name() string
	Owns(p int) (epoch uint64, ok bool)
}

// Options configure a Publisher.
type Options struct {
	// Partitions is the number of profile partitions (each has an outbox).
	Partitions int
	// Cluster, when set, limits publishing to the partitions this node
	// owns, fenced (cluster.go). Nil: every outbox, unfenced.
	Cluster Cluster
	// Applied is the log position the state has applied (required with
	// Cluster: a new owner publishes once it has caught up).
	Applied func() uint64
	// Poll is how often ownership is checked with Cluster. Default 100 ms.
	Poll time.Duration
	// ProgressPoll is how often a partition this node does not own reads
	// its owner's progress to prune the rows published. Default 1 s.
	ProgressPoll time.Duration
	// RequestTimeout bounds each request of a cluster pass (a claim, a
	// progress read or record, a fenced publish's ack). A request to a
	// stream whose leader just died gets no answer until JetStream has
	// elected another; with the log's own timeout (10 s) one such request
	// held up the pass of every partition, new owners' included. Default 2 s.
	RequestTimeout time.Duration
	// Erasing reports whether an erasure is pending in the state (with
	// Cluster): while one is, an owner records its watermark (WaitPassed)
	// at least every ProgressPoll even with nothing to publish. nil: never.
	Erasing func() bool
	// Logger receives failed publishes. Default: discard.
	Logger *slog.Logger
	// Registry receives aurum_outbox_published_total (nil: none).
	Registry prometheus.Registerer
	// Trace, when set, is called after each pass of a single node's
	// publisher that published something, with its times (latency
	// measurements: engine.Trace). It must return quickly.
	Trace func(PassTimes)
}

// PassTimes are the times of one pass of the publisher over the outboxes
// (Options.Trace).
type PassTimes struct {
	// Start is when the pass began (it had the publisher's lock).
	Start time.Time
	// Sent is when every message of the pass was handed to the log.
	Sent time.Time
	// Acked is when the log had acknowledged them all.
	Acked time.Time
	// Committed is when their outbox rows were deleted.
	Committed time.Time
	// MsgIDs are the message ids published and acknowledged, in order.
	MsgIDs []string
}

// Publisher is the outbox publisher.
type Publisher struct {
	opts      Options
	log       *alog.Log
	keys      *seal.Keyring
	state     State
	consent   Consent
	published prometheus.Counter
	kick      chan struct{} // 1-buffered: rows were written
	// dirty is what the next pass of a single node scans (dirty.go).
	dirty dirtySet
	// scan is the outboxes the pass under way scans (under mu); scans
	// counts the outboxes passes scanned (under mu; for the tests).
	scan  []bool
	scans int
	// mu is held while a range is published (shared by the partitions a
	// cluster node publishes in parallel); Barrier takes it (see the
	// erasure worker).
	mu sync.RWMutex
	// cur is where the next pass of drainOutbox scans each outbox from
	// (under mu; not used with a Cluster).
	cur cursors
	// floors are the single node's published rows per outbox and its
	// progress records (progress.go; under mu; not used with a Cluster).
	floors floors
	// parts is each partition's publishing state with a Cluster; one
	// partition pass at a time touches parts[p] (runCluster).
	parts []partState
	// claimed is, per partition, the epoch of this node's claim while it
	// publishes the partition under it (0: none); read by Claimed.
	claimed []atomic.Uint64
	// erasing is Options.Erasing as of the last scheduling round of
	// runCluster (partition passes of several rounds may overlap).
	erasing atomic.Bool
}

// New returns a publisher on l; keys unseal identifiers.
func New(opts Options, l *alog.Log, keys *seal.Keyring, state State, consent Consent) *Publisher {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Poll <= 0 {
		opts.Poll = 100 * time.Millisecond
	}
	if opts.ProgressPoll <= 0 {
		opts.ProgressPoll = time.Second
	}
	if opts.RequestTimeout <= 0 {
		opts.RequestTimeout = 2 * time.Second
	}
	p := &Publisher{parts: make([]partState, opts.Partitions), claimed: make([]atomic.Uint64, opts.Partitions), opts: opts, log: l, keys: keys, state: state, consent: consent, kick: make(chan struct{}, 1),
		published: prometheus.NewCounter(prometheus.CounterOpts{Name: "aurum_outbox_published_total",
			Help: "Outbox messages published."})}
	p.dirty.markAll() // at start every outbox may hold rows
	if opts.Registry != nil {
		opts.Registry.MustRegister(p.published)
	}
	return p
}

// Kick wakes Run to scan every outbox (a cluster node: its publisher
// decides per partition what to do).
func (e *Publisher) Kick() {
	e.dirty.markAll()
	e.signal()
}

// Wake wakes Run: the apply loop committed rows to these outboxes (indexes
// in projections.OutboxPrefixes, as projections.Result.Outboxes lists
// them); the next pass scans them (and any other still marked).
func (e *Publisher) Wake(outboxes []int) {
	e.dirty.mark(outboxes)
	e.signal()
}

func (e *Publisher) signal() {
	select {
	case e.kick <- struct{}{}:
	default:
	}
}

// Barrier returns once a publish in flight (if any) has finished: a
// publish that starts later reads the outbox rows as they are then.
func (e *Publisher) Barrier() {
	e.mu.Lock()
	e.mu.Unlock() //nolint:staticcheck // an intended barrier
}

// Run publishes outbox entries with their deterministic message ids
// and deletes each once the log acknowledged it. A crash between the two
// re-publishes the entry with the same id, which the output stream's
// duplicate window drops. A single node records how far it published on
// the log (progress.go) and reads it back first, so outputs the state
// derives again after it lost its last commits are not published twice.
func (e *Publisher) Run(ctx context.Context) error {
	if e.opts.Cluster != nil {
		return e.runCluster(ctx)
	}
	if err := e.resume(ctx); err != nil {
		return err
	}
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		for {
			n, err := e.drainOutbox(ctx, drainMax)
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
		e.mu.Lock()
		err := e.recordProgress(ctx, true) // idle: record what is left
		e.mu.Unlock()
		if err != nil && ctx.Err() == nil {
			e.opts.Logger.Warn("engine: outbox: record progress failed; will retry", "err", err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-e.kick:
		case <-tick.C:
			e.rescan() // the periodic pass scans every outbox from its start (or floor)
			if err := e.pruneFloors(); err != nil && ctx.Err() == nil {
				e.opts.Logger.Warn("engine: outbox: prune published rows", "err", err)
			}
		}
	}
}

// drainMax bounds the entries one pass publishes from each outbox.
const drainMax = 256

// cursors remember, per outbox (in the order of projections.OutboxPrefixes),
// the key of the last row the publisher deleted from db, so that the next
// pass starts its scan after it. A drained outbox is a run of deleted keys
// (Pebble tombstones, until a compaction drops them) followed by the rows
// still pending; a scan from the prefix's start steps over every tombstone,
// and at 10,000 transitions/s that made each pass slower than the last (the
// scan was half of the publisher's CPU, and transitions waited seconds).
//
// Invariant: every row of an outbox at or below its cursor was deleted by
// the publisher. It holds because Apply writes outbox rows at increasing keys
// (log position, then index) and the publisher deletes a prefix of what it
// scanned; an erasure rewrites pending rows in place (above the cursor). A
// rebuild swaps in another store (db differs: the cursors start over), and
// the pass after the 1-second tick starts over too, so a row written below a
// cursor by any other writer would still go out within a second.
type cursors struct {
	db    *store.DB
	after [][]byte // nil: scan from the prefix's start
}

// rescan makes the next pass of drainOutbox scan every outbox from its start.
func (e *Publisher) rescan() {
	e.mu.Lock()
	e.cur = cursors{}
	e.mu.Unlock()
	e.dirty.markAll()
}

// afterKey narrows Scans of a store.Reader to keys after from (projections.Outbox
// scans the whole prefix).
type afterKey struct {
	store.Reader
	from []byte // the smallest key to read
}

func (r afterKey) Scan(lower, upper []byte, reverse bool, fn func(k, v []byte) bool) error {
	if bytes.Compare(r.from, lower) > 0 {
		lower = r.from
	}
	return r.Reader.Scan(lower, upper, reverse, fn)
}

// drainOutbox publishes up to max pending entries of every outbox: all of
// them first, then it waits for their acks (one round trip for the pass,
// not one per outbox) and deletes the acknowledged ones in one batch.
func (e *Publisher) drainOutbox(ctx context.Context, max int) (int, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	total := 0
	var pt PassTimes
	if e.opts.Trace != nil {
		pt.Start = time.Now()
	}
	err := e.state.Live(func(db *store.DB, sm *projections.StateMachine) error {
		prefixes := projections.OutboxPrefixes(e.opts.Partitions)
		e.scan = e.dirty.take(len(prefixes), e.scan)
		if e.cur.db != db || len(e.cur.after) != len(prefixes) {
			e.cur = cursors{db: db, after: make([][]byte, len(prefixes))}
			for i := range e.scan { // another store: whatever it holds
				e.scan[i] = true
			}
		}
		var (
			started []rangeInFlight
			pubErr  error
		)
		for i, prefix := range prefixes {
			if !e.scan[i] {
				continue
			}
			e.scans++
			var r store.Reader = db
			if last := e.from(i); last != nil {
				r = afterKey{Reader: db, from: append(bytes.Clone(last), 0)}
			}
			rf, err := e.publishRange(r, db, sm, prefix, max, e.log.AppendAsyncWithHeaders)
			rf.outbox = i
			if len(rf.futs) > 0 {
				started = append(started, rf)
			}
			if err != nil {
				pubErr = err
				break // the later outboxes go out on the next pass
			}
			if len(rf.entries) >= max {
				e.dirty.mark([]int{i}) // more may be pending
			}
		}
		if e.opts.Trace != nil {
			pt.Sent = time.Now()
		}
		b := db.NewBatch()
		defer b.Close()
		lasts := make([][]byte, len(prefixes))
		for _, rf := range started {
			n, err := rf.wait(ctx, b)
			if err != nil && pubErr == nil {
				pubErr = err
			}
			if n > 0 {
				lasts[rf.outbox] = rf.entries[n-1].Key
				total += n
				if e.opts.Trace != nil {
					for _, ent := range rf.entries[:n] {
						pt.MsgIDs = append(pt.MsgIDs, ent.Msg.MsgID)
					}
				}
			}
		}
		if total == 0 {
			return pubErr
		}
		if e.opts.Trace != nil {
			pt.Acked = time.Now()
		}
		if err := db.Commit(b, false); err != nil {
			return err
		}
		if e.opts.Trace != nil {
			pt.Committed = time.Now()
			e.opts.Trace(pt)
		}
		for i, k := range lasts {
			if k != nil {
				e.cur.after[i] = k
				e.raiseFloor(i, k)
			}
		}
		e.published.Add(float64(total))
		return pubErr
	})
	if err != nil {
		// Rows of a failed publish, or outboxes the pass did not reach:
		// the next pass scans them all.
		e.dirty.markAll()
	}
	if total > 0 { // after the state lock: the record is a round trip
		if rerr := e.recordProgress(ctx, false); rerr != nil && err == nil {
			err = rerr
		}
	}
	return total, err
}

// rangeInFlight is the published part of one outbox range, acks pending.
type rangeInFlight struct {
	outbox  int // index in projections.OutboxPrefixes (drainOutbox)
	entries []projections.OutboxEntry
	futs    []*alog.Future // futs[i] is entries[i]'s publish
}

// wait waits for the acks in order and deletes the acknowledged entries
// in b, up to the first failure (the rest go out again, same ids, on the
// next pass). It returns how many were deleted.
func (rf *rangeInFlight) wait(ctx context.Context, b *store.Batch) (int, error) {
	for i, f := range rf.futs {
		if _, _, err := f.Wait(ctx); err != nil {
			return i, err
		}
		if err := b.Delete(rf.entries[i].Key); err != nil {
			return i, err
		}
	}
	return len(rf.futs), nil
}

// appendFunc publishes one output: the log's AppendAsyncWithHeaders, or
// its fenced form bound to a fence.
type appendFunc func(subject, msgID string, hdr map[string]string, data []byte) (*alog.Future, error)

// publishRange reads up to max entries of the outbox at prefix through r
// (db, or db narrowed to the keys after a cursor) and publishes them with
// publish, in order, so a subscriber sees each profile's transitions in
// the order they happened. One goroutine's async appends are stored in
// call order. It stops at the first failure; what was published before is
// in the result.
func (e *Publisher) publishRange(r store.Reader, db *store.DB, sm *projections.StateMachine, prefix []byte, max int, publish appendFunc) (rangeInFlight, error) {
	entries, err := projections.Outbox(r, prefix, max)
	if err != nil || len(entries) == 0 {
		return rangeInFlight{}, err
	}
	rf := rangeInFlight{entries: entries, futs: make([]*alog.Future, 0, len(entries))}
	for _, ent := range entries {
		data := ent.Msg.Data
		audience := strings.HasPrefix(ent.Msg.Subject, projections.SubjectAudiencePrefix)
		if len(ent.Msg.Identifiers) > 0 || audience {
			if data, err = e.decorateOutput(db, sm, data, &ent.Msg, audience); err != nil {
				return rf, err
			}
		}
		var hdr map[string]string
		if len(ent.Msg.Profile) == 16 {
			hdr = map[string]string{alog.HeaderProfile: base.ULIDString(ent.Msg.Profile)}
		}
		f, err := publish(ent.Msg.Subject, ent.Msg.MsgID, hdr, data)
		if err != nil {
			return rf, err
		}
		rf.futs = append(rf.futs, f)
	}
	return rf, nil
}

// drainOutboxRange publishes up to max entries of one outbox (the global one
// or a partition's) with publish (publishRange), waits for the acks and
// deletes the acknowledged entries. It returns how many were published and
// deleted, and the key of the last of them.
func (e *Publisher) drainOutboxRange(ctx context.Context, db *store.DB, sm *projections.StateMachine, prefix []byte, max int, publish appendFunc) (int, []byte, error) {
	rf, pubErr := e.publishRange(db, db, sm, prefix, max, publish)
	if len(rf.futs) == 0 {
		return 0, nil, pubErr
	}
	b := db.NewBatch()
	defer b.Close()
	acked, err := rf.wait(ctx, b)
	if pubErr == nil {
		pubErr = err
	}
	if acked == 0 {
		return 0, nil, pubErr
	}
	if err := db.Commit(b, false); err != nil {
		return 0, nil, err
	}
	e.published.Add(float64(acked))
	return acked, rf.entries[acked-1].Key, pubErr
}

// decorateOutput adds to an output message's JSON what the state machine
// does not put there: the unsealed identifiers and, for an audience
// transition, the person's consent per channel (the statements recorded
// with the transition, defaults for the rest; the current consent when the
// transition recorded none).
func (e *Publisher) decorateOutput(r store.Reader, sm *projections.StateMachine, data []byte, msg *projections.OutMsg, audience bool) ([]byte, error) {
	var m map[string]any
	if err := json.Unmarshal(data, &m); err != nil {
		return nil, fmt.Errorf("outbox: message: %w", err)
	}
	if len(msg.Identifiers) > 0 {
		e.withIdentifiers(m, msg.Identifiers)
	}
	if audience {
		if msg.ConsentKnown {
			m["consent"] = e.consent.ConsentWithDefaults(msg.Consent)
		} else if err := e.consent.WithConsent(r, sm, m); err != nil {
			return nil, fmt.Errorf("outbox: message: %w", err)
		}
	}
	return json.Marshal(m)
}

// withIdentifiers adds the unsealed identifiers to an output message as
// "identifiers": {type: [values]}. A value whose key was destroyed is left
// out.
func (e *Publisher) withIdentifiers(m map[string]any, ids []projections.OutIdent) {
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
