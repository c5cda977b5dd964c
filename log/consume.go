package log

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Defaults of ConsumeOptions (applied to zero fields).
const (
	DefaultConsumeMaxDeliver = 12
	DefaultConsumeBackoffMin = 500 * time.Millisecond
	DefaultConsumeBackoffMax = 5 * time.Minute
	DefaultConsumeAckWait    = 30 * time.Second
)

// consumeFetchWait is how long one pull request of ConsumeDurable waits
// for a message before it is renewed.
const consumeFetchWait = 30 * time.Second

// MaxConsumeFilters bounds the subject filters of one durable consumer.
const MaxConsumeFilters = 256

// ErrPermanent marks a handler error that retrying cannot fix: a handle
// error wrapping it (errors.Is) sends the message to OnGiveUp at once.
var ErrPermanent = errors.New("log: permanent failure")

// RetryAfter is a handler error asking ConsumeDurable to redeliver the
// message after Delay (instead of the exponential backoff). Delay <= 0
// means the backoff.
type RetryAfter struct {
	Delay time.Duration
	Err   error
}

func (e *RetryAfter) Error() string {
	return fmt.Sprintf("retry after %v: %v", e.Delay, e.Err)
}

func (e *RetryAfter) Unwrap() error { return e.Err }

// Msg is one message delivered by ConsumeDurable.
type Msg struct {
	Seq     uint64 // stream sequence
	Subject string
	MsgID   string // Nats-Msg-Id header ("" when published without one)
	Data    []byte // owned by the handler
	Time    time.Time
	// Delivered counts deliveries of this message to the consumer, 1 on
	// the first (a delivery interrupted by ctx or Close counts too).
	Delivered uint64
	// Pending is the number of messages of the consumer after this one
	// that were not yet delivered: the consumer's lag.
	Pending uint64
}

// ConsumeOptions configures ConsumeDurable. The zero value is valid.
type ConsumeOptions struct {
	// MaxDeliver is the number of attempts after which a failing message
	// is handed to OnGiveUp (default 12).
	MaxDeliver int
	// BackoffMin and BackoffMax bound the redelivery delay after a failed
	// attempt: BackoffMin * 2^(attempt-1), at most BackoffMax (default
	// 500 ms, 5 min).
	BackoffMin, BackoffMax time.Duration
	// StartTime, when set, makes a new consumer start with the first
	// message published at or after it (instead of the stream's first).
	// It must stay the same across calls for one durable: JetStream does
	// not change an existing consumer's start.
	StartTime time.Time
	// StartSeq, when set, makes a new consumer start at this stream
	// sequence (it wins over StartTime). Like StartTime it must stay the
	// same across calls for one durable.
	StartSeq uint64
	// AckWait is how long the server waits for a verdict on a delivered
	// message before it redelivers it: handle must return well within it
	// (default 30 s).
	AckWait time.Duration
	// OnGiveUp receives a message that failed MaxDeliver times or with an
	// ErrPermanent error, and that error. When it returns nil the message
	// is acked and consumption moves on; when it fails the message is
	// redelivered after the backoff (and handle is tried again). nil means
	// the message is dropped (logged at Warn).
	OnGiveUp func(Msg, error) error
	// Batch is the most messages ConsumeDurableBatch hands at once
	// (default 1; at most MaxConsumeBatch). ConsumeDurable ignores it.
	Batch int
}

// MaxConsumeBatch bounds ConsumeOptions.Batch.
const MaxConsumeBatch = 10000

// EnsureDefaults fills in zero fields with their defaults.
func (o *ConsumeOptions) EnsureDefaults() {
	if o.MaxDeliver == 0 {
		o.MaxDeliver = DefaultConsumeMaxDeliver
	}
	if o.BackoffMin == 0 {
		o.BackoffMin = DefaultConsumeBackoffMin
	}
	if o.BackoffMax == 0 {
		o.BackoffMax = DefaultConsumeBackoffMax
	}
	if o.Batch == 0 {
		o.Batch = 1
	}
	if o.AckWait == 0 {
		o.AckWait = DefaultConsumeAckWait
	}
}

// Validate checks the options after EnsureDefaults.
func (o *ConsumeOptions) Validate() error {
	if o.MaxDeliver < 1 {
		return fmt.Errorf("log: consume options: MaxDeliver %d < 1", o.MaxDeliver)
	}
	if o.BackoffMin < 0 || o.BackoffMax < 0 || o.AckWait < 0 {
		return fmt.Errorf("log: consume options: negative duration")
	}
	if o.BackoffMin > o.BackoffMax {
		return fmt.Errorf("log: consume options: BackoffMin %v exceeds BackoffMax %v", o.BackoffMin, o.BackoffMax)
	}
	return nil
}

// Backoff is the redelivery delay after the given failed attempt
// (1-based): BackoffMin * 2^(attempt-1), at most BackoffMax.
func (o *ConsumeOptions) Backoff(attempt uint64) time.Duration {
	d := o.BackoffMin
	for i := uint64(1); i < attempt && d < o.BackoffMax; i++ {
		d *= 2
	}
	return min(d, o.BackoffMax)
}

// checkName accepts JetStream stream and consumer names.
func checkName(what, name string) error {
	if name == "" || len(name) > 255 || strings.ContainsAny(name, " \t\r\n.*>/\\") {
		return fmt.Errorf("log: invalid %s name %q", what, name)
	}
	return nil
}

// ConsumeDurable runs the durable pull consumer named durable on stream
// (e.g. StreamOut) with the given subject filters (which must not
// overlap), until ctx is done (it then returns nil) or the Log is closed
// (ErrClosed). The consumer is created, or updated to these filters, on
// start; JetStream keeps its position, so a later ConsumeDurable with the
// same durable continues where this one stopped. A new consumer starts at
// the beginning of the stream.
//
// Messages are handed to handle one at a time, in stream order (the
// consumer has MaxAckPending 1). handle returns:
//   - nil: the message is acked (and the ack confirmed) and the next one
//     is delivered;
//   - an error wrapping ErrPermanent, or any error on the MaxDeliver-th
//     attempt: the message goes to OnGiveUp, then is acked;
//   - a *RetryAfter (errors.As): the message is nak'ed with its Delay;
//   - any other error: the message is nak'ed with the backoff.
//
// Nothing after a nak'ed message is delivered before it. Delivery is at
// least once: an ack lost with the connection leads to a redelivery after
// AckWait. A redelivered message that was already acked in this call is
// acked again without calling handle, so within one call handle sees
// strictly increasing sequences apart from retries of the same message.
// Run one ConsumeDurable per durable at a time. Stop it (cancel ctx)
// before DeleteConsumer: a running one re-creates its consumer, from the
// start of the stream. Close waits (at most Options.RequestTimeout) for a
// running handle to return.
//
// The first creation of the consumer is not retried: its error is
// returned (a bad stream, filter or option). Later failures (consumer
// lost, server restart) are logged and retried with a backoff.
func (l *Log) ConsumeDurable(ctx context.Context, stream, durable string, filters []string, opts ConsumeOptions, handle func(Msg) error) error {
	opts.EnsureDefaults()
	if handle == nil {
		return fmt.Errorf("log: consume %s/%s: nil handler", stream, durable)
	}
	return l.consumeDurable(ctx, stream, durable, filters, opts, handle, nil)
}

func (l *Log) consumeDurable(ctx context.Context, stream, durable string, filters []string, opts ConsumeOptions,
	handle func(Msg) error, handleBatch func([]Msg) error) error {
	if err := opts.Validate(); err != nil {
		return err
	}
	if err := checkName("stream", stream); err != nil {
		return err
	}
	if err := checkName("consumer", durable); err != nil {
		return err
	}
	if len(filters) == 0 || len(filters) > MaxConsumeFilters {
		return fmt.Errorf("log: consume %s/%s: %d filters, want 1..%d", stream, durable, len(filters), MaxConsumeFilters)
	}
	for i, f := range filters {
		if !server.IsValidSubject(f) {
			return fmt.Errorf("log: consume %s/%s: invalid filter %q", stream, durable, f)
		}
		for _, g := range filters[:i] {
			if server.SubjectsCollide(f, g) {
				return fmt.Errorf("log: consume %s/%s: filters %q and %q overlap", stream, durable, g, f)
			}
		}
	}
	c := &durableConsumer{
		l:           l,
		stream:      stream,
		durable:     durable,
		filters:     append([]string(nil), filters...),
		opts:        opts,
		handle:      handle,
		handleBatch: handleBatch,
	}
	return l.runActive(ctx, func(ctx context.Context) error {
		l.ownConsumer(stream, durable)
		return c.run(ctx)
	})
}

// DeleteConsumer deletes the durable consumer of stream, and with it its
// position. Deleting a consumer that does not exist is not an error.
func (l *Log) DeleteConsumer(ctx context.Context, stream, durable string) error {
	if l.isClosed() {
		return ErrClosed
	}
	if err := checkName("stream", stream); err != nil {
		return err
	}
	if err := checkName("consumer", durable); err != nil {
		return err
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, l.opts.RequestTimeout)
		defer cancel()
	}
	err := l.js.DeleteConsumer(ctx, stream, durable)
	if err != nil && !errors.Is(err, jetstream.ErrConsumerNotFound) {
		return fmt.Errorf("log: delete consumer %s/%s: %w", stream, durable, err)
	}
	return nil
}

// OutLastSeq is the sequence of the newest message of AURUM_OUT (0 when it
// is empty): a consumer started at OutLastSeq+1 sees exactly the messages
// published after the call.
func (l *Log) OutLastSeq(ctx context.Context) (uint64, error) {
	if l.isClosed() {
		return 0, ErrClosed
	}
	stream, err := l.js.Stream(ctx, StreamOut)
	if err != nil {
		return 0, fmt.Errorf("log: %s last sequence: %w", StreamOut, err)
	}
	return stream.CachedInfo().State.LastSeq, nil
}

// StreamOut returns the name of the outputs stream (the StreamOut
// constant), for callers that hold a *Log.
func (l *Log) StreamOut() string { return StreamOut }

// durableConsumer is the state of one ConsumeDurable call; it is used by
// that call's goroutine only.
type durableConsumer struct {
	l       *Log
	stream  string
	durable string
	filters []string
	opts    ConsumeOptions
	handle  func(Msg) error
	// handleBatch, when set (ConsumeDurableBatch), replaces handle.
	handleBatch func([]Msg) error

	// done is the highest stream sequence acked by this call.
	// Invariant: handle is never called for a sequence <= done.
	done uint64
}

func (c *durableConsumer) create(ctx context.Context) error {
	cfg := jetstream.ConsumerConfig{
		Durable:        c.durable,
		Description:    "Aurum durable consumer " + c.durable,
		DeliverPolicy:  jetstream.DeliverAllPolicy,
		AckPolicy:      jetstream.AckExplicitPolicy,
		AckWait:        c.opts.AckWait,
		MaxDeliver:     -1, // giving up is ours: OnGiveUp, then ack
		MaxAckPending:  1,  // strict order: nothing passes a nak'ed message
		FilterSubjects: c.filters,
	}
	if c.handleBatch != nil {
		// A batch is acked or nak'ed whole before the next is pulled.
		cfg.MaxAckPending = c.opts.Batch
	}
	if !c.opts.StartTime.IsZero() {
		t := c.opts.StartTime.UTC()
		cfg.DeliverPolicy, cfg.OptStartTime = jetstream.DeliverByStartTimePolicy, &t
	}
	if c.opts.StartSeq != 0 {
		cfg.DeliverPolicy, cfg.OptStartTime, cfg.OptStartSeq = jetstream.DeliverByStartSequencePolicy, nil, c.opts.StartSeq
	}
	if _, err := c.l.js.CreateOrUpdateConsumer(ctx, c.stream, cfg); err != nil {
		return fmt.Errorf("log: consume %s/%s: consumer: %w", c.stream, c.durable, err)
	}
	return nil
}

// checkFilters refuses filters that no subject of the stream can match
// (the server accepts them and the consumer would wait forever).
func (c *durableConsumer) checkFilters(ctx context.Context) error {
	s, err := c.l.js.Stream(ctx, c.stream)
	if err != nil {
		return fmt.Errorf("log: consume %s/%s: stream: %w", c.stream, c.durable, err)
	}
	subjects := s.CachedInfo().Config.Subjects
	for _, f := range c.filters {
		ok := false
		for _, sub := range subjects {
			if subjectSubset(f, sub) {
				ok = true
				break
			}
		}
		if !ok {
			return fmt.Errorf("log: consume %s/%s: filter %q is outside the stream's subjects %v", c.stream, c.durable, f, subjects)
		}
	}
	return nil
}

// subjectSubset reports whether every subject matching the valid subject
// filter f also matches the pattern p.
func subjectSubset(f, p string) bool {
	ft, pt := strings.Split(f, "."), strings.Split(p, ".")
	for i, t := range pt {
		if t == ">" {
			return len(ft) > i
		}
		if i >= len(ft) || ft[i] == ">" {
			return false
		}
		if t != "*" && (ft[i] == "*" || ft[i] != t) {
			return false
		}
	}
	return len(ft) == len(pt)
}

func (c *durableConsumer) run(ctx context.Context) error {
	cctx, cancel := context.WithTimeout(ctx, c.l.opts.RequestTimeout)
	err := c.checkFilters(cctx)
	if err == nil {
		err = c.create(cctx)
	}
	cancel()
	if err != nil {
		return err
	}
	pull, err := c.l.newPuller(c.stream, c.durable)
	if err != nil {
		return fmt.Errorf("log: consume %s/%s: %w", c.stream, c.durable, err)
	}
	defer pull.close()
	open, failures := true, 0
	for ctx.Err() == nil {
		if !open {
			cctx, cancel := context.WithTimeout(ctx, c.l.opts.RequestTimeout)
			err := c.create(cctx)
			cancel()
			if err != nil {
				failures++
				c.l.logger.Warn("log: consume: open", "stream", c.stream, "consumer", c.durable, "err", err, "failures", failures)
				if !c.l.pause(ctx, failures) {
					return ctx.Err()
				}
				continue
			}
			open = true
		}
		m, err := pull.next(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			if errors.Is(err, errPullExpired) {
				continue // nothing to deliver yet
			}
			open = false
			failures++
			c.l.logger.Warn("log: consume: re-opening", "stream", c.stream, "consumer", c.durable, "err", err, "failures", failures)
			if !c.l.pause(ctx, failures) {
				return ctx.Err()
			}
			continue
		}
		failures = 0
		if c.handleBatch != nil {
			if err := c.processBatch(ctx, pull, m); err != nil {
				return err
			}
			continue
		}
		if err := c.process(ctx, m); err != nil {
			return err
		}
	}
	return ctx.Err()
}

// process hands one message to handle and gives the server its verdict.
// It returns an error only for a message it cannot read.
func (c *durableConsumer) process(ctx context.Context, m *nats.Msg) error {
	md, err := m.Metadata()
	if err != nil {
		return fmt.Errorf("log: consume %s/%s: metadata: %w", c.stream, c.durable, err)
	}
	msg := Msg{
		Seq:       md.Sequence.Stream,
		Subject:   m.Subject,
		MsgID:     m.Header.Get(jetstream.MsgIDHeader),
		Data:      m.Data,
		Time:      md.Timestamp,
		Delivered: md.NumDelivered,
		Pending:   md.NumPending,
	}
	lg := c.l.logger.With("stream", c.stream, "consumer", c.durable, "seq", msg.Seq, "attempt", msg.Delivered)
	if msg.Seq <= c.done {
		// A redelivery of a message acked in this call whose ack was lost.
		c.ack(m, lg)
		return nil
	}
	lg.Debug("log: consume: handling")
	herr := c.handle(msg)
	lg.Debug("log: consume: handled", "err", herr)
	if herr == nil {
		c.ack(m, lg)
		c.done = msg.Seq
		return nil
	}
	if ctx.Err() != nil {
		// Interrupted (ctx or Close): redeliver at once to the next run.
		_ = m.Nak()
		return nil
	}
	if errors.Is(herr, ErrPermanent) || msg.Delivered >= uint64(c.opts.MaxDeliver) {
		var gerr error
		if c.opts.OnGiveUp != nil {
			gerr = c.opts.OnGiveUp(msg, herr)
		} else {
			lg.Warn("log: consume: giving up on message (no OnGiveUp)", "err", herr)
		}
		if gerr == nil {
			c.ack(m, lg)
			c.done = msg.Seq
			return nil
		}
		lg.Warn("log: consume: give-up handler failed; message will be retried", "err", gerr)
	}
	delay := c.opts.Backoff(msg.Delivered)
	var ra *RetryAfter
	if errors.As(herr, &ra) && ra.Delay > 0 {
		delay = ra.Delay
	}
	if err := m.NakWithDelay(delay); err != nil {
		lg.Warn("log: consume: nak; redelivery after AckWait", "err", err, "ack_wait", c.opts.AckWait)
	}
	return nil
}

// ConsumeDurableBatch is ConsumeDurable handing up to opts.Batch messages
// at once: the first message it waits for, and those ready behind it
// (the consumer has MaxAckPending opts.Batch). handle returns nil: every
// message is acked, in order; an error: every message is nak'ed (with a
// *RetryAfter's Delay, else the backoff of the first) and the batch comes
// back. There is no OnGiveUp: handle gives up on a message itself (a
// dead letter) and returns nil. While handle runs, the messages' AckWait
// is renewed (in-progress acks every AckWait/3), so handle may retry
// within the batch for longer than AckWait.
func (l *Log) ConsumeDurableBatch(ctx context.Context, stream, durable string, filters []string, opts ConsumeOptions, handle func([]Msg) error) error {
	opts.EnsureDefaults()
	if opts.Batch < 1 || opts.Batch > MaxConsumeBatch {
		return fmt.Errorf("log: consume %s/%s: batch %d, want 1..%d", stream, durable, opts.Batch, MaxConsumeBatch)
	}
	if handle == nil {
		return fmt.Errorf("log: consume %s/%s: nil handler", stream, durable)
	}
	return l.consumeDurable(ctx, stream, durable, filters, opts, nil, handle)
}

// processBatch pulls what is ready behind first and hands the batch to
// handleBatch. It returns an error only for a message it cannot read.
func (c *durableConsumer) processBatch(ctx context.Context, pull *puller, first *nats.Msg) error {
	raw := []*nats.Msg{first}
	if c.opts.Batch > 1 {
		more, err := pull.more(ctx, c.opts.Batch-1)
		raw = append(raw, more...)
		if err != nil && ctx.Err() == nil {
			c.l.logger.Warn("log: consume: pull of a batch's rest", "stream", c.stream, "consumer", c.durable, "err", err)
		}
	}
	var msgs []Msg
	var held []*nats.Msg
	for _, m := range raw {
		md, err := m.Metadata()
		if err != nil {
			return fmt.Errorf("log: consume %s/%s: metadata: %w", c.stream, c.durable, err)
		}
		lg := c.l.logger.With("stream", c.stream, "consumer", c.durable, "seq", md.Sequence.Stream)
		if md.Sequence.Stream <= c.done {
			c.ack(m, lg) // a redelivery of a message acked in this call
			continue
		}
		msgs = append(msgs, Msg{Seq: md.Sequence.Stream, Subject: m.Subject, MsgID: m.Header.Get(jetstream.MsgIDHeader),
			Data: m.Data, Time: md.Timestamp, Delivered: md.NumDelivered, Pending: md.NumPending})
		held = append(held, m)
	}
	if len(msgs) == 0 {
		return nil
	}
	stop := make(chan struct{})
	renewed := make(chan struct{})
	go func() { // owned by this call: stopped and waited for below
		defer close(renewed)
		t := time.NewTicker(c.opts.AckWait / 3)
		defer t.Stop()
		for {
			select {
			case <-stop:
				return
			case <-t.C:
				for _, m := range held {
					_ = m.InProgress()
				}
			}
		}
	}()
	herr := c.handleBatch(msgs)
	close(stop)
	<-renewed
	lg := c.l.logger.With("stream", c.stream, "consumer", c.durable, "first", msgs[0].Seq, "n", len(msgs))
	if herr == nil {
		for _, m := range held {
			c.ack(m, lg)
		}
		c.done = msgs[len(msgs)-1].Seq
		return nil
	}
	if ctx.Err() != nil {
		for _, m := range held {
			_ = m.Nak()
		}
		return nil
	}
	delay := c.opts.Backoff(msgs[0].Delivered)
	var ra *RetryAfter
	if errors.As(herr, &ra) && ra.Delay > 0 {
		delay = ra.Delay
	}
	lg.Debug("log: consume: batch failed", "err", herr, "delay", delay)
	for _, m := range held {
		if err := m.NakWithDelay(delay); err != nil {
			lg.Warn("log: consume: nak; redelivery after AckWait", "err", err)
		}
	}
	return nil
}

// ack acks m and waits (at most RequestTimeout) for the server to confirm;
// an unconfirmed ack is logged: the message then comes back after AckWait
// and is acked again without calling handle.
func (c *durableConsumer) ack(m *nats.Msg, lg *slog.Logger) {
	// Ack even if ctx ended meanwhile, so that the message is not handled
	// twice; Close waits for this.
	actx, cancel := context.WithTimeout(context.Background(), c.l.opts.RequestTimeout)
	defer cancel()
	if err := m.AckSync(nats.Context(actx)); err != nil {
		lg.Warn("log: consume: ack not confirmed", "err", err)
		return
	}
	lg.Debug("log: consume: acked")
}
