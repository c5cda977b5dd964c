package log

import (
	"context"
	"fmt"
	"sync"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

func (l *Log) newMsg(subject, msgID string, data []byte) (*nats.Msg, error) {
	if err := checkSubject(subject); err != nil {
		return nil, err
	}
	if len(data) > MaxMessageSize {
		return nil, fmt.Errorf("%w: %d bytes on %s (max %d)", ErrTooLarge, len(data), subject, MaxMessageSize)
	}
	m := nats.NewMsg(subject)
	m.Data = data
	if msgID != "" {
		m.Header.Set(jetstream.MsgIDHeader, msgID)
	}
	return m, nil
}

// Append publishes data on subject with the JetStream message id msgID and
// waits for the PubAck: on return the message is stored (and, with
// FsyncAlways, synced). It returns the stream sequence and whether
// JetStream reported the message a duplicate of one already stored within
// the stream's duplicate window (seq is then the original's sequence).
// An empty msgID disables de-duplication for this message. Without a
// deadline on ctx, Options.RequestTimeout applies.
func (l *Log) Append(ctx context.Context, subject, msgID string, data []byte) (seq uint64, dup bool, err error) {
	if l.isClosed() {
		return 0, false, ErrClosed
	}
	m, err := l.newMsg(subject, msgID, data)
	if err != nil {
		return 0, false, err
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

// Future is the pending result of an AppendAsync.
type Future struct {
	l       *Log
	subject string
	paf     jetstream.PubAckFuture
	fenced  bool // AppendAsyncFenced: a wrong last sequence is ErrFenced

	mu       sync.Mutex
	resolved bool
	seq      uint64
	dup      bool
	err      error
}

// AppendAsync publishes without waiting for the PubAck; many appends may be
// in flight, at most Options.MaxAsyncPending. At the bound AppendAsync
// blocks until a slot frees, for at most Options.RequestTimeout. The
// Future resolves with the PubAck (or an error after RequestTimeout).
// Appends are stored in the order of the AppendAsync calls made from one
// goroutine.
func (l *Log) AppendAsync(subject, msgID string, data []byte) (*Future, error) {
	return l.AppendAsyncWithHeaders(subject, msgID, nil, data)
}

// AppendAsyncWithHeaders is AppendAsync with extra message headers.
func (l *Log) AppendAsyncWithHeaders(subject, msgID string, hdr map[string]string, data []byte) (*Future, error) {
	if l.isClosed() {
		return nil, ErrClosed
	}
	m, err := l.newMsg(subject, msgID, data)
	if err != nil {
		return nil, err
	}
	for k, v := range hdr {
		m.Header.Set(k, v)
	}
	paf, err := l.js.PublishMsgAsync(m, jetstream.WithStallWait(l.opts.RequestTimeout))
	if err != nil {
		return nil, fmt.Errorf("log: append async %s: %w", subject, err)
	}
	return &Future{l: l, subject: subject, paf: paf}, nil
}

// Wait blocks until the PubAck arrives, ctx is done or the Log's
// connection is closed (ErrClosed).
// Wait may be called more than once, also concurrently.
func (f *Future) Wait(ctx context.Context) (seq uint64, dup bool, err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.resolved {
		return f.seq, f.dup, f.err
	}
	select {
	case ack := <-f.paf.Ok():
		f.seq, f.dup = ack.Sequence, ack.Duplicate
	case err := <-f.paf.Err():
		f.err = f.wrap(err)
	case <-f.l.connGone:
		// Close waits for pending acks before it closes the connection;
		// a PubAck that arrived before that takes precedence.
		select {
		case ack := <-f.paf.Ok():
			f.seq, f.dup = ack.Sequence, ack.Duplicate
		case err := <-f.paf.Err():
			f.err = f.wrap(err)
		default:
			return 0, false, ErrClosed
		}
	case <-ctx.Done():
		return 0, false, fmt.Errorf("log: append async %s: %w", f.subject, ctx.Err())
	}
	f.resolved = true
	return f.seq, f.dup, f.err
}

func (f *Future) wrap(err error) error {
	if f.fenced && isWrongLastSeq(err) {
		return fmt.Errorf("log: append async %s: %w: %w", f.subject, ErrFenced, err)
	}
	return fmt.Errorf("log: append async %s: %w", f.subject, err)
}
