package log

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// Entry is one message of the truth log (AURUM_LOG).
type Entry struct {
	Seq     uint64
	Subject string
	Data    []byte // owned by the caller
	Time    time.Time
	// Pending is how many entries the stream held after this one when it
	// was delivered (a lower bound of what Next can return at once): the
	// apply loop groups entries into one Pebble batch while it is > 0.
	Pending uint64
}

// readerBatch bounds the messages (and bytes) a Reader buffers. The byte
// bound stays well under the client's per-subscription pending limit
// (64 MB): the iterator asks for the next batch before the current one is
// consumed, and at 64 MB a reader far behind the log (a big backlog, a
// replay) overflowed it, so the server dropped messages ("slow consumer")
// and the ordered consumer had to start over from the gap. It is also
// resident memory, held twice (the server's copies on their way, the
// client's pending ones) and doubled again by the GC's headroom, whenever
// the reader is behind: with 16 MiB a benchmark engine far behind held
// ~29 MiB of messages in flight, against ~8 MiB when it kept up. It must
// not be below ServerMaxPayload: a pull whose byte limit is smaller than
// the next message never delivers it. So it is ServerMaxPayload, 8 MiB.
const (
	readerBatch      = 1024
	readerBatchBytes = ServerMaxPayload
)

// readerHeartbeat is the idle heartbeat a Reader asks of its consumer; two
// missed ones re-open the Reader. The ordered consumer is an R1 ephemeral
// on one server of the cluster (usually the stream leader's): when that
// server dies, nothing else tells the Reader, and with nats.go's default
// (5 s) every node's apply stalled 10 s, which was most of a failover
// (bench/RESULTS.md "Issue #11"). 1 s detects it in 2 s at the cost of one
// tiny message a second while the log is idle.
const readerHeartbeat = time.Second

// Reader reads AURUM_LOG in sequence order through an ordered consumer.
// It is not safe for concurrent use.
//
// Invariant: the sequences returned by Next are strictly increasing; after
// any failure (consumer reset, reconnect, server restart) the Reader
// re-opens at the last returned sequence + 1, so it never repeats an entry,
// and it never skips one that the stream still holds.
type Reader struct {
	l    *Log
	next uint64 // sequence to re-open at: last returned + 1

	mu     sync.Mutex // guards it, cons and closed against Log.Close
	it     jetstream.MessagesContext
	cons   string // the current consumer's name
	cseq   uint64 // the consumer sequence of the last message taken from it
	closed bool
}

// NewReader returns a Reader of AURUM_LOG starting at fromSeq (0 or 1 = the
// beginning). No server request is made until the first Next.
func (l *Log) NewReader(fromSeq uint64) (*Reader, error) {
	if fromSeq == 0 {
		fromSeq = 1
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return nil, ErrClosed
	}
	r := &Reader{l: l, next: fromSeq}
	l.readers[r] = struct{}{}
	return r, nil
}

// Next returns the next entry, blocking until there is one, ctx is done or
// the Reader or Log is closed (ErrClosed). Transient errors are logged and
// retried with a backoff.
func (r *Reader) Next(ctx context.Context) (Entry, error) {
	backoff := 50 * time.Millisecond
	for {
		it, err := r.iterator(ctx)
		if err != nil {
			if errors.Is(err, ErrClosed) || ctx.Err() != nil {
				return Entry{}, r.stopErr(ctx, err)
			}
			r.l.logger.Warn("log: reader: open", "from_seq", r.next, "err", err)
			if err := r.sleep(ctx, &backoff); err != nil {
				return Entry{}, err
			}
			continue
		}
		msg, err := it.Next(jetstream.NextContext(ctx))
		if err != nil {
			if ctx.Err() != nil || r.isStopped() {
				return Entry{}, r.stopErr(ctx, err)
			}
			r.l.logger.Warn("log: reader: re-opening", "from_seq", r.next, "err", err)
			r.reset()
			if err := r.sleep(ctx, &backoff); err != nil {
				return Entry{}, err
			}
			continue
		}
		md, err := msg.Metadata()
		if err != nil {
			return Entry{}, fmt.Errorf("log: reader: metadata: %w", err)
		}
		// What an ordered consumer checks: every delivery of the consumer,
		// none dropped (a slow consumer's message dropped by the server).
		if md.Sequence.Consumer != r.cseq+1 {
			r.l.logger.Warn("log: reader: gap in the deliveries, re-opening", "from_seq", r.next,
				"consumer_seq", md.Sequence.Consumer, "want", r.cseq+1)
			r.reset()
			continue
		}
		r.cseq = md.Sequence.Consumer
		seq := md.Sequence.Stream
		if seq < r.next {
			continue // already returned; never repeat
		}
		r.next = seq + 1
		return Entry{Seq: seq, Subject: msg.Subject(), Data: msg.Data(), Time: md.Timestamp, Pending: md.NumPending}, nil
	}
}

func (r *Reader) iterator(ctx context.Context) (jetstream.MessagesContext, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return nil, ErrClosed
	}
	if r.it != nil {
		return r.it, nil
	}
	// What nats.go's ordered consumer creates (an R1 ephemeral in memory,
	// no acks), made here: the ordered consumer re-creates itself after a
	// missed heartbeat with a fixed 10 s request timeout, and a request
	// sent while JetStream was electing a new leader waited all of it (a
	// failover's apply stalled ~12 s). Here a failed open is retried by
	// Next with a short timeout and a backoff that honours ctx and Close.
	octx, cancel := context.WithTimeout(ctx, readerOpenTimeout)
	defer cancel()
	cons, err := r.l.js.CreateConsumer(octx, StreamLog, jetstream.ConsumerConfig{
		DeliverPolicy:     jetstream.DeliverByStartSequencePolicy,
		OptStartSeq:       r.next,
		AckPolicy:         jetstream.AckNonePolicy,
		InactiveThreshold: 5 * time.Minute,
		Replicas:          1,
		MemoryStorage:     true,
	})
	if err != nil {
		return nil, err
	}
	it, err := cons.Messages(jetstream.PullMaxMessagesWithBytesLimit(readerBatch, readerBatchBytes),
		jetstream.PullHeartbeat(readerHeartbeat))
	if err != nil {
		r.deleteConsumer(cons.CachedInfo().Name)
		return nil, err
	}
	r.it, r.cons, r.cseq = it, cons.CachedInfo().Name, 0
	return it, nil
}

// readerOpenTimeout bounds the creation of a Reader's consumer.
const readerOpenTimeout = 2 * time.Second

func (r *Reader) reset() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.stopLocked()
}

// stopLocked stops the iterator and deletes its consumer (r.mu held).
func (r *Reader) stopLocked() {
	if r.it != nil {
		r.it.Stop()
		r.it = nil
	}
	if r.cons != "" {
		r.deleteConsumer(r.cons)
		r.cons = ""
	}
}

// deleteConsumer deletes a consumer the Reader no longer reads, without
// waiting: its server may be gone (then InactiveThreshold or the server's
// restart removes it).
func (r *Reader) deleteConsumer(name string) {
	r.l.bg.Add(1)
	go func() { // owned by the Log: Close waits (bounded by the timeout)
		defer r.l.bg.Done()
		ctx, cancel := context.WithTimeout(context.Background(), readerOpenTimeout)
		defer cancel()
		_ = r.l.js.DeleteConsumer(ctx, StreamLog, name)
	}()
}

func (r *Reader) isStopped() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.closed
}

func (r *Reader) stopErr(ctx context.Context, err error) error {
	if r.isStopped() {
		return ErrClosed
	}
	if ctx.Err() != nil {
		return fmt.Errorf("log: reader: %w", ctx.Err())
	}
	return fmt.Errorf("log: reader: %w", err)
}

func (r *Reader) sleep(ctx context.Context, backoff *time.Duration) error {
	t := time.NewTimer(*backoff)
	defer t.Stop()
	*backoff = min(2**backoff, 2*time.Second)
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("log: reader: %w", ctx.Err())
	case <-r.l.done:
		return ErrClosed
	}
}

// stop is called by Log.Close.
func (r *Reader) stop() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.closed = true
	r.stopLocked()
}

// Close stops the Reader. It is idempotent.
func (r *Reader) Close() error {
	r.stop()
	r.l.mu.Lock()
	delete(r.l.readers, r)
	r.l.mu.Unlock()
	return nil
}

// LastSeq returns the last sequence of AURUM_LOG (0 when empty).
func (l *Log) LastSeq(ctx context.Context) (uint64, error) {
	if l.isClosed() {
		return 0, ErrClosed
	}
	s, err := l.js.Stream(ctx, StreamLog)
	if err != nil {
		return 0, fmt.Errorf("log: last seq: %w", err)
	}
	return s.CachedInfo().State.LastSeq, nil
}
