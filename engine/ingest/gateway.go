package ingest

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"time"

	"github.com/aurumcdp/aurum/event"
	alog "github.com/aurumcdp/aurum/log"
)

// gatewayDepth is how many pulled batches the gateway keeps in flight:
// while one batch's append waits for its acknowledgement, the next ones are
// parsed, sealed and queued for the committer (which joins them into
// bigger appends).
const gatewayDepth = 4

// gatewayLeaderPoll is how often a cluster node's gateway asks whether it
// is (still) the leader.
const gatewayLeaderPoll = 100 * time.Millisecond

// RunGateway validates events that producers publish straight to
// aurum.ingest.<source>: valid ones go through Ingest like HTTP events,
// invalid ones to the dead-letter stream; then the raw messages are
// removed from AURUM_INGEST (log.ConsumeIngestPipelined: one purge per
// batch, which is also the gateway's position). Up to gatewayDepth pulls
// of 500 are in flight; a batch is removed only once the append holding
// its events is durable and its dead letters are written. An event
// without messageId gets one from its raw message (stream and sequence),
// so a second read after a crash is deduplicated.
//
// Each batch is parsed and sealed on a goroutine of its own (at most
// gatewayDepth at a time: the batches in flight), so the consumer goes on
// fetching meanwhile; the batches' records are queued for the committer
// in stream order all the same (each waits for the one before).
//
// With Options.Leader (a cluster) the gateway runs only while it reports
// true: one reader of the stream (two for a moment at a change of leader
// read the same messages: the state machine drops the second copies).
func (e *Edge) RunGateway(ctx context.Context) error {
	if e.opts.Leader == nil {
		return e.runGateway(ctx)
	}
	t := time.NewTicker(gatewayLeaderPoll)
	defer t.Stop()
	for {
		if e.opts.Leader() {
			if err := e.gatewayWhileLeader(ctx, t.C); err != nil {
				return err
			}
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
}

// gatewayWhileLeader runs the gateway until ctx ends or Options.Leader
// turns false (asked at each tick); it returns the gateway's failure.
func (e *Edge) gatewayWhileLeader(ctx context.Context, tick <-chan time.Time) error {
	lctx, cancel := context.WithCancel(ctx)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- e.runGateway(lctx) }() // owned here: waited for below
	for {
		select {
		case err := <-done:
			if ctx.Err() != nil || lctx.Err() != nil {
				return nil
			}
			return err
		case <-tick:
			if !e.opts.Leader() {
				cancel()
				<-done
				return nil
			}
		}
	}
}

func (e *Edge) runGateway(ctx context.Context) error {
	var prev chan struct{} // closed once the previous batch's records are queued
	return e.log.ConsumeIngestPipelined(ctx, 500, gatewayDepth, func(msgs []alog.RawMsg) func() error {
		b := &gatewayBatch{ctx: ctx, e: e, msgs: slices.Clone(msgs), // the slice is not ours to keep
			after: prev, queued: make(chan struct{}), done: make(chan struct{})}
		prev = b.queued
		go b.run() // owned by the batch: its wait function waits for it
		return b.wait
	})
}

// gatewayBatch is one pulled batch of raw messages in the gateway.
type gatewayBatch struct {
	ctx    context.Context
	e      *Edge
	msgs   []alog.RawMsg
	after  chan struct{} // the previous batch's queued (nil for the first)
	queued chan struct{} // closed when this batch's records are queued (or it failed)
	done   chan struct{} // closed when run returned

	// Set by run, read by wait after done.
	waits    []func(context.Context) error
	startErr error
	bad      []rejectedMsg
}

type rejectedMsg struct {
	m   alog.RawMsg
	err error
}

// run parses and seals the batch, then, after the previous batch, queues
// its records for the committer, source by source in order of first
// appearance.
func (b *gatewayBatch) run() {
	defer close(b.done)
	defer close(b.queued)
	ctx, e := b.ctx, b.e
	bySource := map[string][]event.Event{}
	var order []string
	for _, m := range b.msgs {
		ev, err := e.parseRaw(m)
		if err != nil {
			b.bad = append(b.bad, rejectedMsg{m, err})
			continue
		}
		if _, ok := bySource[m.Source]; !ok {
			order = append(order, m.Source)
		}
		bySource[m.Source] = append(bySource[m.Source], ev)
	}
	sealed := make([]*pending, 0, len(order))
	for _, src := range order {
		p, err := e.sealed(src, bySource[src])
		if err != nil {
			b.startErr = fmt.Errorf("engine: gateway ingest %q: %w", src, err)
			break
		}
		sealed = append(sealed, p)
	}
	if b.after != nil {
		<-b.after // closed by the previous batch's run, whatever happened to it
	}
	for i, p := range sealed {
		wait, err := e.enqueue(ctx, p)
		if err != nil {
			b.startErr = fmt.Errorf("engine: gateway ingest %q: %w", order[i], err)
			break
		}
		b.waits = append(b.waits, wait)
	}
}

// wait returns once the batch's valid events are durable on the log and
// its invalid ones are on the dead-letter stream, or with the first error.
// Only then is the batch removed from AURUM_INGEST: a crash before that
// reads it again (its events are dropped by the state machine's dedup,
// its dead letters by the message id within AURUM_DLQ's duplicate window).
func (b *gatewayBatch) wait() error {
	<-b.done
	// Valid events first: if their ingest fails the batch is
	// redelivered, and dead letters written before would be
	// written twice.
	err := b.startErr
	for _, wait := range b.waits {
		if werr := wait(b.ctx); werr != nil && err == nil {
			err = fmt.Errorf("engine: gateway ingest: %w", werr)
		}
	}
	if err != nil {
		return err
	}
	for _, r := range b.bad {
		if err := b.e.deadLetter(b.ctx, r.m.Source, 0, r.m.Data, r.err, rawID("ingest", r.m)); err != nil {
			return err
		}
	}
	return nil
}

func (e *Edge) parseRaw(m alog.RawMsg) (event.Event, error) {
	ev, err := e.parseDoc(m.Source, m.Data, e.ParseOptions())
	if err != nil {
		return ev, err
	}
	if ev.MessageID == "" {
		ev.MessageID = rawID("nats", m)
	}
	return ev, nil
}

// rawID names a raw message for good: prefix-<stream>-<seq> (the stream's
// creation in Unix nanoseconds: a stream created again starts its
// sequences over), or prefix-<seq> for the work queue of an earlier build,
// the id that build gave.
func rawID(prefix string, m alog.RawMsg) string {
	if m.Stream == 0 {
		return prefix + "-" + strconv.FormatUint(m.Seq, 10)
	}
	return prefix + "-" + strconv.FormatInt(m.Stream, 10) + "-" + strconv.FormatUint(m.Seq, 10)
}

// parseDoc parses one raw JSON event (a Segment message whose "type" says
// its call) of source with opts: the parse of the gateway and of
// IngestJSON. An unknown source is a *event.FieldError on "source".
func (e *Edge) parseDoc(source string, data []byte, opts event.ParseOptions) (event.Event, error) {
	if !e.sources.SourceExists(source) {
		return event.Event{}, &event.FieldError{Field: "source", Reason: fmt.Sprintf("unknown source %q (create it first)", source)}
	}
	return event.Parse(data, "", opts)
}

// IngestJSON parses raw JSON events of source as the gateway does (one
// Segment message per document, the edge's ParseOptions) and ingests them
// in order as Ingest does. A document that does not parse fails the call
// before anything is appended (its index and the *event.FieldError are in
// the error); nothing goes to the dead-letter stream: the caller holds the
// documents. An unknown source is ErrUnknownSource.
func (e *Edge) IngestJSON(ctx context.Context, source string, docs [][]byte) error {
	if len(docs) == 0 {
		return nil
	}
	if !e.sources.SourceExists(source) {
		return fmt.Errorf("%w: %q", ErrUnknownSource, source)
	}
	opts := e.ParseOptions()
	evs := make([]event.Event, len(docs))
	for i, d := range docs {
		ev, err := e.parseDoc(source, d, opts)
		if err != nil {
			return fmt.Errorf("engine: ingest %q: document %d: %w", source, i, err)
		}
		evs[i] = ev
	}
	return e.Ingest(ctx, source, evs)
}

// DeadLetter keeps a rejected event on the dead-letter stream with its reason.
// msgID, when not empty, deduplicates the record on the stream (within its
// duplicate window).
func (e *Edge) deadLetter(ctx context.Context, source string, index int, payload []byte, cause error, msgID string) error {
	d := alog.DeadLetter{Source: source, Index: index, Reason: cause.Error(), Payload: payload, Received: e.opts.Now(), MsgID: msgID}
	var fe *event.FieldError
	if errors.As(cause, &fe) {
		d.Field, d.Reason = fe.Field, fe.Reason
	}
	e.metrics.deadLetters.WithLabelValues(source).Inc()
	return e.log.DeadLetter(ctx, d)
}

// DeadLetter keeps a rejected event (field and reason given) on the
// dead-letter stream.
func (e *Edge) DeadLetter(ctx context.Context, source string, index int, field, reason string, payload []byte) error {
	return e.deadLetter(ctx, source, index, payload, &event.FieldError{Field: field, Reason: reason}, "")
}

// DeadLetters reads dead-letter records from the stream position from.
func (e *Edge) DeadLetters(ctx context.Context, from uint64, max int) ([]alog.DeadLetter, error) {
	return e.log.ReadDeadLetters(ctx, from, max)
}
