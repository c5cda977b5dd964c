package log

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// HeaderProfile is the header of an output message (AURUM_OUT) that names
// the profile (a ULID) it is about, so that an erasure finds the copies of a
// person's outputs with a headers-only scan.
const HeaderProfile = "Aurum-Profile"

// AppendWithHeaders is Append with extra message headers.
func (l *Log) AppendWithHeaders(ctx context.Context, subject, msgID string, hdr map[string]string, data []byte) (seq uint64, dup bool, err error) {
	if l.isClosed() {
		return 0, false, ErrClosed
	}
	m, err := l.newMsg(subject, msgID, data)
	if err != nil {
		return 0, false, err
	}
	for k, v := range hdr {
		m.Header.Set(k, v)
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, l.opts.RequestTimeout)
		defer cancel()
	}
	ack, err := l.js.PublishMsg(ctx, m)
	if err != nil {
		return 0, false, fmt.Errorf("log: append %s: %w", subject, err)
	}
	return ack.Sequence, ack.Duplicate, nil
}

// ScanOptions select the messages Scan visits.
type ScanOptions struct {
	// Since starts the scan at the first message stored at or after it
	// (zero: the beginning of the stream).
	Since time.Time
	// HeadersOnly delivers headers without payloads (Data is nil).
	HeadersOnly bool
	// Batch is the number of messages fetched per request (default 256).
	Batch int
}

// ScanMsg is one message visited by Scan.
type ScanMsg struct {
	Seq     uint64
	Subject string
	Header  map[string][]string
	Data    []byte // nil with HeadersOnly
}

// Scan visits, in sequence order, the messages of stream (one of the
// package's stream names) stored up to the moment of the call, through an
// ephemeral ordered consumer: a point-in-time pass for maintenance (an
// erasure's search for copies of a person's data), not a subscription.
// Messages deleted while the scan runs may or may not be visited. fn's
// error ends the scan and is returned.
func (l *Log) Scan(ctx context.Context, stream string, opts ScanOptions, fn func(ScanMsg) error) error {
	if l.isClosed() {
		return ErrClosed
	}
	if opts.Batch <= 0 {
		opts.Batch = 256
	}
	s, err := l.js.Stream(ctx, stream)
	if err != nil {
		return fmt.Errorf("log: scan %s: %w", stream, err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		return fmt.Errorf("log: scan %s: %w", stream, err)
	}
	last := info.State.LastSeq
	if info.State.Msgs == 0 || last == 0 {
		return nil
	}
	// One reset attempt: nats.go's own resets retry forever without a
	// context; a failed scan is the caller's to retry.
	cfg := jetstream.OrderedConsumerConfig{DeliverPolicy: jetstream.DeliverAllPolicy, HeadersOnly: opts.HeadersOnly, MaxResetAttempts: 1}
	if !opts.Since.IsZero() {
		since := opts.Since
		cfg.DeliverPolicy, cfg.OptStartTime = jetstream.DeliverByStartTimePolicy, &since
	}
	cons, err := l.js.OrderedConsumer(ctx, stream, cfg)
	if err != nil {
		return fmt.Errorf("log: scan %s: %w", stream, err)
	}
	for {
		batch, err := cons.Fetch(opts.Batch, jetstream.FetchMaxWait(time.Second))
		if err != nil {
			return fmt.Errorf("log: scan %s: %w", stream, err)
		}
		n := 0
		for m := range batch.Messages() {
			n++
			md, err := m.Metadata()
			if err != nil {
				return fmt.Errorf("log: scan %s: metadata: %w", stream, err)
			}
			seq := md.Sequence.Stream
			if seq > last {
				return nil
			}
			sm := ScanMsg{Seq: seq, Subject: m.Subject(), Header: m.Headers()}
			if !opts.HeadersOnly {
				sm.Data = m.Data()
			}
			if err := fn(sm); err != nil {
				return err
			}
			if seq == last {
				return nil
			}
		}
		if err := batch.Error(); err != nil && !errors.Is(err, jetstream.ErrNoMessages) && !errors.Is(err, context.DeadlineExceeded) {
			return fmt.Errorf("log: scan %s: %w", stream, err)
		}
		if n == 0 {
			return nil // nothing more before last (the rest was deleted or expired)
		}
		if err := ctx.Err(); err != nil {
			return err
		}
	}
}

// SecureDelete deletes message seq from stream and overwrites its bytes in
// the stream's files (JetStream's erase). A message already gone is not an
// error.
func (l *Log) SecureDelete(ctx context.Context, stream string, seq uint64) error {
	if l.isClosed() {
		return ErrClosed
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, l.opts.RequestTimeout)
		defer cancel()
	}
	s, err := l.js.Stream(ctx, stream)
	if err != nil {
		return fmt.Errorf("log: secure delete %s %d: %w", stream, seq, err)
	}
	err = s.SecureDeleteMsg(ctx, seq)
	if err != nil && errors.Is(err, jetstream.ErrMsgDeleteUnsuccessful) {
		// The server says why only in text: a message that is gone is fine.
		if _, gerr := s.GetMsg(ctx, seq); errors.Is(gerr, jetstream.ErrMsgNotFound) {
			err = nil
		}
	}
	if err != nil && !errors.Is(err, jetstream.ErrMsgNotFound) {
		return fmt.Errorf("log: secure delete %s %d: %w", stream, seq, err)
	}
	return nil
}
