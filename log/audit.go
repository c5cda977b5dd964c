package log

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// The audit stream: one message per management action (msgpack records of
// the engine), kept forever. DenyDelete and DenyPurge are set, and the server
// refuses to clear them on a stream update, so no JetStream API request can
// remove an entry.
const (
	StreamAudit  = "AURUM_AUDIT"
	SubjectAudit = "aurum.audit"

	// MaxAuditRead bounds one ReadAudit call.
	MaxAuditRead = 10000
)

// AuditRecord is one message of AURUM_AUDIT.
type AuditRecord struct {
	Seq  uint64
	Time time.Time // when the stream stored it
	Data []byte
}

// AppendAudit stores data on aurum.audit and waits for the PubAck (msgID,
// when set, deduplicates retries within the stream's 2-minute window). It
// returns the stream sequence.
func (l *Log) AppendAudit(ctx context.Context, msgID string, data []byte) (uint64, error) {
	seq, _, err := l.Append(ctx, SubjectAudit, msgID, data)
	if err != nil {
		return 0, fmt.Errorf("log: audit: %w", err)
	}
	return seq, nil
}

// AuditLastSeq is the sequence of the newest record of AURUM_AUDIT (0 when
// it is empty).
func (l *Log) AuditLastSeq(ctx context.Context) (uint64, error) {
	if l.isClosed() {
		return 0, ErrClosed
	}
	stream, err := l.js.Stream(ctx, StreamAudit)
	if err != nil {
		return 0, fmt.Errorf("log: audit: %w", err)
	}
	return stream.CachedInfo().State.LastSeq, nil
}

// ReadAudit returns up to limit records (limit <= 0: 100; at most MaxAuditRead)
// of AURUM_AUDIT in sequence order, starting at fromSeq, or, when fromSeq is
// 0, at the first record stored at or after since (the beginning when since
// is zero). next is where the following page starts: the last Seq + 1, or,
// with no records, the position the read started at (so polling with it
// sees only later records).
func (l *Log) ReadAudit(ctx context.Context, fromSeq uint64, since time.Time, limit int) (recs []AuditRecord, next uint64, err error) {
	if l.isClosed() {
		return nil, 0, ErrClosed
	}
	if limit <= 0 {
		limit = 100
	}
	limit = min(limit, MaxAuditRead)
	stream, err := l.js.Stream(ctx, StreamAudit)
	if err != nil {
		return nil, 0, fmt.Errorf("log: read audit: %w", err)
	}
	st := stream.CachedInfo().State
	if st.Msgs == 0 {
		return nil, max(fromSeq, st.LastSeq+1), nil
	}
	if fromSeq == 0 {
		if fromSeq, err = l.auditSeqAt(ctx, stream, st.FirstSeq, st.LastSeq, since); err != nil {
			return nil, 0, err
		}
	}
	fromSeq = max(fromSeq, st.FirstSeq)
	next = fromSeq
	for seq := fromSeq; seq <= st.LastSeq && len(recs) < limit; {
		m, err := stream.GetMsg(ctx, seq, jetstream.WithGetMsgSubject(SubjectAudit))
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			break
		}
		if err != nil {
			return recs, next, fmt.Errorf("log: read audit: seq %d: %w", seq, err)
		}
		recs = append(recs, AuditRecord{Seq: m.Sequence, Time: m.Time, Data: m.Data})
		seq = m.Sequence + 1
		next = seq
	}
	return recs, next, nil
}

// auditSeqAt finds the first sequence in [first, last] stored at or after t
// (last + 1 when none is) by binary search: stream timestamps do not
// decrease, and the stream has no gaps (nothing can be deleted).
func (l *Log) auditSeqAt(ctx context.Context, stream jetstream.Stream, first, last uint64, t time.Time) (uint64, error) {
	if t.IsZero() {
		return first, nil
	}
	lo, hi := first, last+1
	for lo < hi {
		mid := lo + (hi-lo)/2
		m, err := stream.GetMsg(ctx, mid, jetstream.WithGetMsgSubject(SubjectAudit))
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			hi = mid
			continue
		}
		if err != nil {
			return 0, fmt.Errorf("log: read audit: seq %d: %w", mid, err)
		}
		if m.Time.Before(t) {
			lo = m.Sequence + 1
		} else {
			hi = mid
		}
	}
	return lo, nil
}
