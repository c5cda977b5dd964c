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
	// Stream names the AURUM_INGEST stream the message was read from: the
	// Unix nanoseconds of its creation, or 0 for the work queue of an
	// earlier build that ConsumeIngest drains once (the upgrade). With Seq
	// it names the message for good: a stream deleted and created again
	// starts its sequences over, its creation time differs.
	Stream int64
	// Delivered counts deliveries of this message (1 on the first; more
	// after the batch holding it failed and was read again).
	Delivered uint64
}

// MaxIngestBatch bounds the max argument of ConsumeIngest.
const MaxIngestBatch = 10000

// ingestFetchWait is how long ConsumeIngest waits to fill a batch.
const ingestFetchWait = 50 * time.Millisecond

// ingestCheckEvery is how often an idle gateway asks the server whether
// its consumer still exists: the consumer is an R1 ephemeral on one
// server, and a fetch from a consumer whose server died just comes back
// empty.
const ingestCheckEvery = time.Second

// ingestConsumerInactive is the InactiveThreshold of the gateway's
// consumer: one left behind by a crash goes away by itself.
const ingestConsumerInactive = time.Minute

var ackBody = []byte("+ACK")

// ConsumeIngest consumes AURUM_INGEST until ctx is done (it then returns
// nil) or the Log is closed (ErrClosed).
//
// It fetches batches of up to max messages, waiting at most ~50 ms to fill
// one, and calls handle with each non-empty batch. When handle returns nil
// the batch's messages are removed from the stream (one purge up to its
// last sequence) before the next fetch; when handle returns an error the
// batch is read again, from its first message, after an exponential
// backoff (Options.IngestRetryMin .. IngestRetryMax). Messages are handled
// in stream order.
//
// Delivery is at least once: after a crash between a batch's handle and
// its purge, the batch is read again. Run one ConsumeIngest at a time:
// concurrent ones read the same messages. handle must not retain the
// slice; it may retain RawMsg.Data. Close waits (at most
// Options.RequestTimeout) for a running ConsumeIngest to finish its
// current batch.
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
// goroutine). A batch is removed from the stream (purged, with every
// message before it) only after its wait returned nil. When a wait fails,
// that batch and every later batch in flight are read again, whatever
// their own outcome (a later batch that succeeded comes again, and the
// caller must deduplicate), after the backoff: the first delivery of
// every message is in stream order. start must not retain the slice; it
// may retain RawMsg.Data.
//
// AURUM_INGEST is a limits stream read through an ephemeral consumer
// without acks, from the stream's first message: the purges are the
// gateway's position (what is gone was handled), so there is one purge
// per batch instead of one ack, and one message removal, per message. A
// work-queue AURUM_INGEST of an earlier build is drained first (sealed,
// read and acked to the end, deleted, created again as a limits stream
// whose sequences continue): the upgrade, see upgradeIngest.
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
	return l.runActive(ctx, func(ctx context.Context) error {
		if l.ingestLegacy.Load() {
			if err := l.upgradeIngest(ctx, max, depth, start); err != nil {
				return err
			}
		}
		_, err := l.consumeIngest(ctx, &ingestReader{l: l}, max, depth, start)
		return err
	})
}

// ingestBatch is one fetched batch in flight.
type ingestBatch struct {
	msgs []jetstream.Msg // the work queue's (acks); nil from the limits stream
	raws []RawMsg
	wait func() error
}

// ingestSource is where consumeIngest takes raw messages from: the limits
// stream (ingestReader) or, during the upgrade, the work queue of an
// earlier build (workQueueDrain).
type ingestSource interface {
	// fetch returns up to max messages in stream order, waiting up to
	// ingestFetchWait for the first one when wait is set. After an error
	// the next fetch re-opens the source where it stood.
	fetch(ctx context.Context, max int, wait bool) (*ingestBatch, error)
	// handled is called, in batch order, for each batch whose wait
	// returned nil.
	handled(b *ingestBatch)
	// failed is called with a batch whose wait failed and every later one
	// in flight, in order: they are to be read again.
	failed(bs []*ingestBatch)
	// idle is called when a waiting fetch brought nothing and nothing is
	// in flight; done ends consumeIngest (the end of a drain).
	idle(ctx context.Context) (done bool, err error)
	// close releases the source when consumeIngest returns.
	close()
}

// consumeIngest runs the pipeline of ConsumeIngestPipelined on src until
// ctx ends (false, ctx's error) or src reports it is done (true, nil).
func (l *Log) consumeIngest(ctx context.Context, src ingestSource, max, depth int, start func([]RawMsg) func() error) (bool, error) {
	var (
		failures int
		inflight []*ingestBatch // oldest first; at most depth
	)
	// finish waits for the oldest batch in flight and hands it to src; on
	// failure it hands it and all later ones back. It reports false if
	// consumption must pause.
	finish := func() bool {
		b := inflight[0]
		if herr := b.wait(); herr != nil {
			for _, later := range inflight[1:] {
				_ = later.wait() // the outcome no longer matters: read again
			}
			src.failed(inflight)
			inflight = inflight[:0]
			failures++
			l.logger.Warn("log: consume ingest: handler failed; batch read again",
				"err", herr, "msgs", len(b.raws), "first_seq", b.raws[0].Seq, "failures", failures)
			return false
		}
		inflight = inflight[1:]
		failures = 0
		// The batch is handled: remove it even if ctx ends meanwhile
		// (Close waits for this), so that it is not handled twice.
		src.handled(b)
		return true
	}
	defer func() { // batches started are finished (removed or not), even when ctx ends
		for len(inflight) > 0 {
			finish()
		}
		src.close()
	}()
	for ctx.Err() == nil {
		if len(inflight) == depth {
			if !finish() && !l.pause(ctx, failures) {
				return false, ctx.Err()
			}
			continue
		}
		// Batches in flight: take what is there now, and finish the
		// oldest when nothing is.
		b, err := src.fetch(ctx, max, len(inflight) == 0)
		if err != nil {
			if ctx.Err() != nil {
				break
			}
			failures++
			l.logger.Warn("log: consume ingest: fetch", "err", err, "failures", failures)
			if !l.pause(ctx, failures) {
				return false, ctx.Err()
			}
			continue
		}
		if len(b.raws) == 0 {
			if len(inflight) > 0 {
				if !finish() && !l.pause(ctx, failures) {
					return false, ctx.Err()
				}
				continue
			}
			done, err := src.idle(ctx)
			if err != nil && ctx.Err() == nil {
				failures++
				l.logger.Warn("log: consume ingest: consumer", "err", err, "failures", failures)
				if !l.pause(ctx, failures) {
					return false, ctx.Err()
				}
				continue
			}
			if done {
				return true, nil
			}
			continue
		}
		b.wait = start(b.raws)
		inflight = append(inflight, b)
	}
	return false, ctx.Err()
}

// ingestReader reads the limits stream AURUM_INGEST through an ephemeral
// consumer without acks (R1, in memory) and purges each handled batch.
//
// Invariant: every message below the stream's first sequence was handled
// (its batch's wait returned nil before the purge that removed it), and
// next is the first sequence not handed out since the consumer was opened
// (or the first of the batches handed back by failed): the consumer is
// (re)opened at max(next, first sequence), so nothing is skipped.
type ingestReader struct {
	l       *Log
	stream  jetstream.Stream // the handle purges go through
	created int64            // the stream's creation (RawMsg.Stream)
	cons    jetstream.Consumer
	name    string            // the consumer's, "" when none is open
	cseq    uint64            // consumer sequence of the last message taken
	next    uint64            // stream sequence to open the consumer at
	again   map[uint64]uint64 // deliveries before, of messages read again
	checked time.Time         // last consumer check while idle
}

// open creates the consumer at max(next, the stream's first sequence).
func (r *ingestReader) open(ctx context.Context) error {
	l := r.l
	octx, cancel := context.WithTimeout(ctx, l.opts.RequestTimeout)
	defer cancel()
	s, err := l.js.Stream(octx, StreamIngest)
	if err != nil {
		return fmt.Errorf("log: consume ingest: stream: %w", err)
	}
	info := s.CachedInfo()
	if info.Config.Retention == jetstream.WorkQueuePolicy {
		// Only a peer of an earlier build creates one now.
		return fmt.Errorf("log: consume ingest: %s is a work queue again (a node of an earlier build?)", StreamIngest)
	}
	if created := info.Created.UnixNano(); r.created != 0 && created != r.created {
		// Deleted and created again meanwhile (by hand): its sequences
		// started over, and what it holds was never handled.
		l.logger.Warn("log: consume ingest: AURUM_INGEST was created again; reading it from its start",
			"first_seq", info.State.FirstSeq, "was_at", r.next)
		r.next = 0
	}
	from := max(r.next, info.State.FirstSeq, 1)
	cons, err := l.js.CreateConsumer(octx, StreamIngest, jetstream.ConsumerConfig{
		Description:       "Aurum gateway",
		DeliverPolicy:     jetstream.DeliverByStartSequencePolicy,
		OptStartSeq:       from,
		AckPolicy:         jetstream.AckNonePolicy,
		InactiveThreshold: ingestConsumerInactive,
		Replicas:          1,
		MemoryStorage:     true,
	})
	if err != nil {
		return fmt.Errorf("log: consume ingest: consumer at %d: %w", from, err)
	}
	r.stream, r.created = s, info.Created.UnixNano()
	r.cons, r.name, r.cseq, r.next = cons, cons.CachedInfo().Name, 0, from
	r.checked = time.Now()
	return nil
}

func (r *ingestReader) fetch(ctx context.Context, max int, wait bool) (*ingestBatch, error) {
	if r.cons == nil {
		if err := r.open(ctx); err != nil {
			return nil, err
		}
	}
	batch, err := fetchBatch(r.cons, max, wait)
	b := &ingestBatch{}
	if err == nil {
		for m := range batch.Messages() {
			if err != nil {
				continue // drain the channel
			}
			md, merr := m.Metadata()
			if merr != nil {
				err = fmt.Errorf("metadata: %w", merr)
				continue
			}
			// What an ordered consumer checks: every delivery, none
			// dropped (a slow consumer's message dropped by the server).
			if md.Sequence.Consumer != r.cseq+1 {
				err = fmt.Errorf("gap in the deliveries: consumer sequence %d, want %d", md.Sequence.Consumer, r.cseq+1)
				continue
			}
			r.cseq = md.Sequence.Consumer
			seq := md.Sequence.Stream
			b.raws = append(b.raws, RawMsg{
				Seq:       seq,
				Source:    strings.TrimPrefix(m.Subject(), IngestPrefix),
				Data:      m.Data(),
				Time:      md.Timestamp,
				Stream:    r.created,
				Delivered: 1 + r.again[seq],
			})
		}
		if err == nil {
			err = batch.Error()
		}
	}
	if err != nil {
		// Nothing of this fetch was handed out: it is read again from next.
		r.reset()
		return nil, fmt.Errorf("log: consume ingest: fetch: %w", err)
	}
	if n := len(b.raws); n > 0 {
		r.next = b.raws[n-1].Seq + 1
	}
	return b, nil
}

// handled purges the stream up to the batch's last message: every message
// before it was handled too (batches finish in order).
func (r *ingestReader) handled(b *ingestBatch) {
	last := b.raws[len(b.raws)-1].Seq
	if len(r.again) > 0 {
		for _, m := range b.raws {
			delete(r.again, m.Seq)
		}
	}
	var err error
	if hook := r.l.beforeIngestPurge; hook != nil {
		err = hook(last)
	}
	ctx, cancel := context.WithTimeout(context.Background(), r.l.opts.RequestTimeout)
	defer cancel()
	if err == nil {
		// The stream the batch came from, not one created again since
		// (by hand): its sequences started over, and a purge by sequence
		// would remove messages nobody handled.
		var info *jetstream.StreamInfo
		if info, err = r.stream.Info(ctx); err == nil && info.Created.UnixNano() != r.created {
			r.l.logger.Warn("log: consume ingest: AURUM_INGEST was created again; its messages are read from its start")
			r.reset()
			return
		}
	}
	if err == nil {
		err = r.stream.Purge(ctx, jetstream.WithPurgeSequence(last+1))
	}
	if err != nil {
		// The next purge removes these too; a restart before it reads
		// them again (the handler deduplicates).
		r.l.logger.Warn("log: consume ingest: purge failed; the batch stays until the next purge",
			"err", err, "msgs", len(b.raws), "last_seq", last)
	}
}

func (r *ingestReader) failed(bs []*ingestBatch) {
	if r.again == nil {
		r.again = map[uint64]uint64{}
	}
	for _, b := range bs {
		for _, m := range b.raws {
			r.again[m.Seq] = m.Delivered
		}
	}
	r.next = bs[0].raws[0].Seq
	r.reset() // the next fetch re-opens at next
}

func (r *ingestReader) idle(ctx context.Context) (bool, error) {
	if time.Since(r.checked) < ingestCheckEvery {
		return false, nil
	}
	r.checked = time.Now()
	cctx, cancel := context.WithTimeout(ctx, r.l.opts.RequestTimeout)
	defer cancel()
	if _, err := r.cons.Info(cctx); err != nil {
		r.reset()
		return false, fmt.Errorf("log: consume ingest: consumer %s: %w", r.name, err)
	}
	return false, nil
}

// reset drops the consumer; the next fetch opens another at next.
func (r *ingestReader) reset() {
	if r.name != "" {
		r.l.deleteConsumerAsync(StreamIngest, r.name)
	}
	r.cons, r.name = nil, ""
}

func (r *ingestReader) close() { r.reset() }

// deleteConsumerAsync deletes a consumer without waiting: its server may
// be gone (then its InactiveThreshold or the server's restart removes it).
func (l *Log) deleteConsumerAsync(stream, name string) {
	l.bg.Add(1)
	go func() { // owned by the Log: Close waits (bounded by the timeout)
		defer l.bg.Done()
		ctx, cancel := context.WithTimeout(context.Background(), readerOpenTimeout)
		defer cancel()
		_ = l.js.DeleteConsumer(ctx, stream, name)
	}()
}

// ingestConfig is AURUM_INGEST's configuration: a limits stream, emptied
// by the gateway's purges.
func (l *Log) ingestConfig() jetstream.StreamConfig {
	cfg := l.baseStreamConfig(StreamIngest, IngestPrefix+">")
	cfg.Description = "Aurum raw ingest (purged by the gateway once handled)"
	return cfg
}

// ensureIngest creates or updates AURUM_INGEST (cfg), unless it is the
// work queue of an earlier build: that one is left as it is, for the
// gateway to drain and re-create (ingestLegacy). An existing stream keeps
// its first sequence (set by the upgrade).
func (l *Log) ensureIngest(ctx context.Context, cfg jetstream.StreamConfig) error {
	s, err := l.js.Stream(ctx, StreamIngest)
	switch {
	case errors.Is(err, jetstream.ErrStreamNotFound):
	case err != nil:
		return err
	default:
		old := s.CachedInfo().Config
		if old.Retention == jetstream.WorkQueuePolicy {
			if !l.ingestLegacy.Swap(true) {
				l.logger.Info("log: AURUM_INGEST is the work queue of an earlier build: the gateway drains it, then creates it again as a limits stream",
					"msgs", s.CachedInfo().State.Msgs, "sealed", old.Sealed)
			}
			return nil
		}
		cfg.FirstSeq = old.FirstSeq
	}
	if _, err := l.js.CreateOrUpdateStream(ctx, cfg); err != nil {
		return err
	}
	l.ingestLegacy.Store(false)
	return nil
}

// upgradeIngest turns the work-queue AURUM_INGEST of an earlier build into
// the limits stream, without losing a message:
//
//  1. seal it: producers' publishes are refused from then on (they retry,
//     as after any refusal) until step 4;
//  2. drain it: delete its durable consumer (messages delivered and never
//     acked come at once, not after AckWait), read every message through a
//     new one, hand the batches to start, ack them, until the consumer has
//     nothing pending and nothing un-acked;
//  3. delete it;
//  4. create the limits stream, its first sequence after the old last one.
//
// A crash anywhere repeats what is left: a sealed work queue is drained
// again from its first message (the handler deduplicates what it handled
// before), a missing stream is created. Every step is retried with the
// backoff until it succeeds or ctx ends.
func (l *Log) upgradeIngest(ctx context.Context, max, depth int, start func([]RawMsg) func() error) error {
	for attempt := 1; ; attempt++ {
		err := l.upgradeIngestOnce(ctx, max, depth, start)
		if err == nil || ctx.Err() != nil {
			return err
		}
		l.logger.Warn("log: consume ingest: upgrade of AURUM_INGEST", "err", err, "failures", attempt)
		if !l.pause(ctx, attempt) {
			return ctx.Err()
		}
	}
}

func (l *Log) upgradeIngestOnce(ctx context.Context, max, depth int, start func([]RawMsg) func() error) error {
	rctx, cancel := context.WithTimeout(ctx, l.opts.RequestTimeout)
	defer cancel()
	s, err := l.js.Stream(rctx, StreamIngest)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		return l.finishIngestUpgrade(ctx, 0)
	}
	if err != nil {
		return fmt.Errorf("stream: %w", err)
	}
	info := s.CachedInfo()
	if info.Config.Retention != jetstream.WorkQueuePolicy {
		l.ingestLegacy.Store(false) // another node finished it
		return nil
	}
	if !info.Config.Sealed {
		cfg := info.Config
		cfg.Sealed = true
		if _, err := l.js.UpdateStream(rctx, cfg); err != nil {
			return fmt.Errorf("seal: %w", err)
		}
	}
	l.logger.Info("log: upgrade of AURUM_INGEST: sealed (publishes refused until it is a limits stream); draining",
		"msgs", info.State.Msgs, "first_seq", info.State.FirstSeq, "last_seq", info.State.LastSeq)
	if err := l.js.DeleteConsumer(rctx, StreamIngest, GatewayConsumer); err != nil && !errors.Is(err, jetstream.ErrConsumerNotFound) {
		return fmt.Errorf("delete consumer %s: %w", GatewayConsumer, err)
	}
	cancel()
	drained, err := l.consumeIngest(ctx, &workQueueDrain{l: l, depth: depth}, max, depth, start)
	if !drained {
		return err // ctx ended
	}
	rctx, cancel = context.WithTimeout(ctx, l.opts.RequestTimeout)
	defer cancel()
	if s, err = l.js.Stream(rctx, StreamIngest); err != nil {
		return fmt.Errorf("stream: %w", err)
	}
	last := s.CachedInfo().State.LastSeq
	if err := l.js.DeleteStream(rctx, StreamIngest); err != nil && !errors.Is(err, jetstream.ErrStreamNotFound) {
		return fmt.Errorf("delete the drained work queue: %w", err)
	}
	return l.finishIngestUpgrade(ctx, last)
}

// finishIngestUpgrade creates the limits AURUM_INGEST, its first sequence
// after last (the drained work queue's last sequence; 0: unknown).
func (l *Log) finishIngestUpgrade(ctx context.Context, last uint64) error {
	cfg := l.ingestConfig()
	cfg.FirstSeq = last + 1
	if err := l.ensureStreams(ctx, []jetstream.StreamConfig{cfg}); err != nil {
		return err
	}
	if l.ingestLegacy.Load() { // ensureIngest found a work queue again
		return fmt.Errorf("log: upgrade of AURUM_INGEST: a work queue again after its deletion (a node of an earlier build?)")
	}
	l.logger.Info("log: upgrade of AURUM_INGEST done: a limits stream purged by the gateway", "first_seq", cfg.FirstSeq)
	return nil
}

// workQueueDrain reads the sealed work queue of an earlier build through
// its durable consumer "aurum-gateway" (explicit acks, as that build did)
// until nothing is left.
type workQueueDrain struct {
	l     *Log
	depth int
	cons  jetstream.Consumer
}

func (d *workQueueDrain) fetch(ctx context.Context, max int, wait bool) (*ingestBatch, error) {
	l := d.l
	if d.cons == nil {
		cons, err := l.js.CreateOrUpdateConsumer(ctx, StreamIngest, jetstream.ConsumerConfig{
			Durable:       GatewayConsumer,
			Description:   "Aurum gateway (draining the work queue of an earlier build)",
			DeliverPolicy: jetstream.DeliverAllPolicy,
			AckPolicy:     jetstream.AckExplicitPolicy,
			AckWait:       l.opts.IngestAckWait,
			MaxDeliver:    -1,
			MaxAckPending: (d.depth + 1) * max,
		})
		if err != nil {
			return nil, fmt.Errorf("log: consume ingest: consumer %s: %w", GatewayConsumer, err)
		}
		d.cons = cons
	}
	batch, err := fetchBatch(d.cons, max, wait)
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
	if err != nil {
		// Messages received before the error stay un-acked and are
		// redelivered after AckWait; nak them to speed that up.
		l.nakAll(b.msgs)
		d.cons = nil
		return nil, err
	}
	return b, nil
}

func (d *workQueueDrain) handled(b *ingestBatch) {
	l := d.l
	ctx, cancel := context.WithTimeout(context.Background(), l.opts.RequestTimeout)
	err := ackAll(ctx, l.nc, b.msgs)
	cancel()
	if err != nil {
		l.logger.Warn("log: consume ingest: acks not flushed; batch may be redelivered after AckWait",
			"err", err, "msgs", len(b.msgs), "first_seq", b.raws[0].Seq, "ack_wait", l.opts.IngestAckWait)
	}
}

func (d *workQueueDrain) failed(bs []*ingestBatch) {
	for _, b := range bs {
		d.l.nakAll(b.msgs)
	}
}

// idle reports the drain done once the consumer has delivered every
// message of the sealed stream and holds no un-acked one.
func (d *workQueueDrain) idle(ctx context.Context) (bool, error) {
	cctx, cancel := context.WithTimeout(ctx, d.l.opts.RequestTimeout)
	defer cancel()
	info, err := d.cons.Info(cctx)
	if err != nil {
		d.cons = nil
		return false, fmt.Errorf("log: consume ingest: consumer %s: %w", GatewayConsumer, err)
	}
	return info.NumPending == 0 && info.NumAckPending == 0, nil
}

func (d *workQueueDrain) close() {}

// fetchBatch pulls up to max messages from cons: what is there now, or
// with wait what comes within ingestFetchWait.
func fetchBatch(cons jetstream.Consumer, max int, wait bool) (jetstream.MessageBatch, error) {
	if wait {
		return cons.Fetch(max, jetstream.FetchMaxWait(ingestFetchWait))
	}
	return cons.FetchNoWait(max)
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

// ackAll acks every message of a handled batch of the work queue being
// drained: one "+ACK" per message (a work-queue stream requires explicit
// acks; AckAll is refused), sent without a reply subject, then one flush
// (PING/PONG) for the batch. The server reads a connection's messages in
// order, so when the flush returns it holds every ack, sent before any
// later fetch request. A lost ack means a redelivery after AckWait, and
// the state machine drops the duplicate by (source, messageId).
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
