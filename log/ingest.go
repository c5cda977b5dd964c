package log

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// RawMsg is one raw message of AURUM_INGEST, as published by a producer on
// aurum.ingest.<source>.
type RawMsg struct {
	Seq    uint64    // stream sequence in AURUM_INGEST
	Source string    // subject suffix after "aurum.ingest."
	Data   []byte    // owned by the handler
	Time   time.Time // when the stream stored it
	// Delivered counts deliveries of this message (1 on the first).
	Delivered uint64
}

// MaxIngestBatch bounds the max argument of ConsumeIngest.
const MaxIngestBatch = 10000

// ingestFetchWait is how long ConsumeIngest waits to fill a batch.
const ingestFetchWait = 50 * time.Millisecond

var ackBody = []byte("+ACK")

// ConsumeIngest consumes AURUM_INGEST through the durable pull consumer
// "aurum-gateway" (explicit ack, at most 2*max messages un-acked) until ctx
// is done (it then returns nil) or the Log is closed (ErrClosed).
//
// It fetches batches of up to max messages, waiting at most ~50 ms to fill
// one, and calls handle with each non-empty batch. When handle returns nil
// every message of the batch is acked and the acks flushed to the
// server (so the messages leave the work queue) before the next fetch; when handle returns an error the batch is nak'ed and ConsumeIngest
// pauses for an exponential backoff (Options.IngestRetryMin ..
// IngestRetryMax) before fetching again. The server redelivers nak'ed
// messages before newer ones, so with one ConsumeIngest running, messages
// are handled in stream order.
//
// Delivery is at least once: a batch whose acks are lost is redelivered
// after Options.IngestAckWait, possibly after newer messages.
// Run one ConsumeIngest at a time: concurrent ones share the consumer and
// lose the ordering. handle must not retain the slice; it may retain
// RawMsg.Data. Close waits (at most Options.RequestTimeout) for a running
// ConsumeIngest to finish its current batch.
func (l *Log) ConsumeIngest(ctx context.Context, max int, handle func([]RawMsg) error) error {
	if handle == nil {
		return fmt.Errorf("log: consume ingest: nil handler")
	}
	return l.ConsumeIngestPipelined(ctx, max, 1, func(raws []RawMsg) func() error {
		err := handle(raws)
		return func() error { return err }
	})
}

// MaxIngestDepth bounds the depth argument of ConsumeIngestPipelined.
const MaxIngestDepth = 16

// ConsumeIngestPipelined is ConsumeIngest with up to depth batches in
// flight. start is called with each batch in stream order, from one
// goroutine; it must not block on the batch's outcome but return a wait
// function that does (it is called once, in batch order, from the same
// goroutine). A batch is acked (acks flushed to the server) only after its
// wait returned nil. When a wait fails, that batch and every later batch in
// flight are nak'ed, whatever their own outcome (a later batch that
// succeeded is redelivered, and the caller must deduplicate), and
// consumption pauses for the backoff: the first delivery of every message
// is in stream order, and after a failure the nak'ed batches are
// redelivered before newer messages. The consumer's MaxAckPending is
// (depth+1)*max. start must not retain the slice; it may retain
// RawMsg.Data.
func (l *Log) ConsumeIngestPipelined(ctx context.Context, max, depth int, start func([]RawMsg) func() error) error {
	if max <= 0 || max > MaxIngestBatch {
		return fmt.Errorf("log: consume ingest: batch size %d out of range [1, %d]", max, MaxIngestBatch)
	}
	if depth <= 0 || depth > MaxIngestDepth {
		return fmt.Errorf("log: consume ingest: depth %d out of range [1, %d]", depth, MaxIngestDepth)
	}
	if start == nil {
		return fmt.Errorf("log: consume ingest: nil handler")
	}
	return l.runActive(ctx, func(ctx context.Context) error { return l.consumeIngest(ctx, max, depth, start) })
}

func (l *Log) gatewayConsumer(ctx context.Context, max, depth int) (jetstream.Consumer, error) {
	cons, err := l.js.CreateOrUpdateConsumer(ctx, StreamIngest, jetstream.ConsumerConfig{
		Durable:       GatewayConsumer,
		Description:   "Aurum gateway",
		DeliverPolicy: jetstream.DeliverAllPolicy,
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       l.opts.IngestAckWait,
		MaxDeliver:    -1,
		MaxAckPending: (depth + 1) * max,
	})
	if err != nil {
		return nil, fmt.Errorf("log: consume ingest: consumer %s: %w", GatewayConsumer, err)
	}
	return cons, nil
}

// ingestBatch is one fetched batch in flight.
type ingestBatch struct {
	msgs []jetstream.Msg
	raws []RawMsg
	wait func() error
}

func (l *Log) consumeIngest(ctx context.Context, max, depth int, start func([]RawMsg) func() error) error {
	cons, err := l.gatewayConsumer(ctx, max, depth)
	// A cluster whose nodes all restarted, or that is electing, answers
	// late or "temporarily unavailable" for a few seconds: that is retried
	// (it stopped a node's engine in the chaos test); a refused
	// configuration is not.
	for attempt := 1; err != nil; attempt++ {
		if !retryableStreamError(err) {
			return err
		}
		l.logger.Warn("log: consume ingest: consumer", "err", err, "failures", attempt)
		if !l.pause(ctx, attempt) {
			return ctx.Err()
		}
		cons, err = l.gatewayConsumer(ctx, max, depth)
	}
	var (
		failures int
		inflight []*ingestBatch // oldest first; at most depth
	)
	// finish waits for the oldest batch in flight and acks it; on failure
	// it naks it and all later ones. It reports false if consumption must
	// pause.
	finish := func() bool {
		b := inflight[0]
		inflight = inflight[1:]
		if herr := b.wait(); herr != nil {
			l.nakAll(b.msgs)
			for _, later := range inflight {
				_ = later.wait() // the outcome no longer matters: nak'ed below
				l.nakAll(later.msgs)
			}
			inflight = inflight[:0]
			failures++
			l.logger.Warn("log: consume ingest: handler failed; batch nak'ed",
				"err", herr, "msgs", len(b.msgs), "first_seq", b.raws[0].Seq, "failures", failures)
			return false
		}
		failures = 0
		// The batch is handled: ack it even if ctx ends meanwhile (Close
		// waits for this), so that it is not handled twice.
		actx, cancel := context.WithTimeout(context.Background(), l.opts.RequestTimeout)
		err := ackAll(actx, l.nc, b.msgs)
		cancel()
		if err != nil {
			l.logger.Warn("log: consume ingest: acks not flushed; batch may be redelivered after AckWait",
				"err", err, "msgs", len(b.msgs), "first_seq", b.raws[0].Seq, "ack_wait", l.opts.IngestAckWait)
		}
		return true
	}
	defer func() { // batches started are finished (acked or nak'ed), even when ctx ends
		for len(inflight) > 0 {
			finish()
		}
	}()
	for ctx.Err() == nil {
		if len(inflight) == depth {
			if !finish() && !l.pause(ctx, failures) {
				return ctx.Err()
			}
			continue
		}
		if cons == nil {
			// Re-create after a fetch error: the consumer may have been
			// deleted, or the server restarted without it.
			if cons, err = l.gatewayConsumer(ctx, max, depth); err != nil {
				failures++
				l.logger.Warn("log: consume ingest: consumer", "err", err, "failures", failures)
				if !l.pause(ctx, failures) {
					return ctx.Err()
				}
				continue
			}
		}
		var batch jetstream.MessageBatch
		if len(inflight) > 0 {
			// Batches are in flight: take what is there now, and finish the
			// oldest when nothing is.
			batch, err = cons.FetchNoWait(max)
		} else {
			batch, err = cons.Fetch(max, jetstream.FetchMaxWait(ingestFetchWait))
		}
		b := &ingestBatch{}
		if err == nil {
			for m := range batch.Messages() {
				b.msgs = append(b.msgs, m)
			}
			err = batch.Error()
		}
		for _, m := range b.msgs {
			raw, merr := toRaw(m)
			if merr != nil {
				err = errors.Join(err, merr)
				continue
			}
			b.raws = append(b.raws, raw)
		}
		if err != nil && ctx.Err() == nil {
			// Messages received before the error stay un-acked and are
			// redelivered after AckWait; nak them to speed that up.
			l.nakAll(b.msgs)
			cons = nil
			failures++
			l.logger.Warn("log: consume ingest: fetch", "err", err, "failures", failures)
			if !l.pause(ctx, failures) {
				return ctx.Err()
			}
			continue
		}
		if len(b.raws) == 0 {
			if len(inflight) > 0 && !finish() && !l.pause(ctx, failures) {
				return ctx.Err()
			}
			continue
		}
		b.wait = start(b.raws)
		inflight = append(inflight, b)
	}
	return ctx.Err()
}

func toRaw(m jetstream.Msg) (RawMsg, error) {
	md, err := m.Metadata()
	if err != nil {
		return RawMsg{}, fmt.Errorf("log: consume ingest: metadata: %w", err)
	}
	return RawMsg{
		Seq:       md.Sequence.Stream,
		Source:    strings.TrimPrefix(m.Subject(), IngestPrefix),
		Data:      m.Data(),
		Time:      md.Timestamp,
		Delivered: md.NumDelivered,
	}, nil
}

func (l *Log) nakAll(msgs []jetstream.Msg) {
	for _, m := range msgs {
		if err := m.Nak(); err != nil {
			l.logger.Warn("log: consume ingest: nak", "err", err)
			return // the rest is redelivered after AckWait
		}
	}
}

// pause sleeps for the backoff after the given number of consecutive
// failures; it reports false if ctx ended first.
func (l *Log) pause(ctx context.Context, failures int) bool {
	d := l.opts.IngestRetryMin
	for i := 1; i < failures && d < l.opts.IngestRetryMax; i++ {
		d *= 2
	}
	d = min(d, l.opts.IngestRetryMax)
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// ackAll acks every message of a handled batch: one "+ACK" per message
// (the work-queue stream requires explicit acks; AckAll is refused), sent
// without a reply subject, then one flush (PING/PONG) for the batch. The
// server reads a connection's messages in order, so when the flush
// returns it holds every ack, sent before any later fetch request. Until
// session 9 each ack asked for the server's confirmation (a reply per
// message, twice the messages and a wait per batch). A lost ack is what it
// was then: the message is redelivered after AckWait and the state
// machine drops the duplicate by (source, messageId).
func ackAll(ctx context.Context, nc *nats.Conn, msgs []jetstream.Msg) error {
	for _, m := range msgs {
		if m.Reply() == "" {
			return fmt.Errorf("ack: message without reply subject")
		}
		if err := nc.Publish(m.Reply(), ackBody); err != nil {
			return fmt.Errorf("ack: %w", err)
		}
	}
	if err := nc.FlushWithContext(ctx); err != nil {
		return fmt.Errorf("ack: %d acks not flushed: %w", len(msgs), err)
	}
	return nil
}
