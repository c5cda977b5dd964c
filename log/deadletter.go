package log

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// DeadLetter is a rejected input, stored as JSON on aurum.dlq.<source>
// (stream AURUM_DLQ).
//
// Payload holds the rejected input when it is valid JSON; otherwise
// DeadLetter moves it to PayloadRaw (base64 in JSON). A record whose JSON
// would exceed MaxMessageSize keeps only the first maxDeadLetterPayload
// bytes of the input in PayloadRaw and sets Truncated.
type DeadLetter struct {
	// Seq is the AURUM_DLQ sequence, set by ReadDeadLetters (not stored).
	Seq        uint64          `json:"-"`
	Source     string          `json:"source"`
	Reason     string          `json:"reason"`
	Field      string          `json:"field,omitempty"`
	Index      int             `json:"index"` // position of the event in its batch
	Payload    json.RawMessage `json:"payload,omitempty"`
	PayloadRaw []byte          `json:"payload_raw,omitempty"`
	Truncated  bool            `json:"truncated,omitempty"`
	Received   time.Time       `json:"received"`
	// MsgID, when set, is the JetStream message id of the record (not
	// stored in it): a second record with the id within AURUM_DLQ's
	// duplicate window (2 min) is dropped, as the gateway's dead letter of
	// a raw message read again after a crash.
	MsgID string `json:"-"`
}

// UnknownSource is the subject token of dead letters without a usable
// source.
const UnknownSource = "_"

// maxDeadLetterPayload is what a truncated dead letter keeps of its input.
const maxDeadLetterPayload = 64 << 10

// DeadLetter stores d on aurum.dlq.<source> and waits for the PubAck.
// The source token is "_" when d.Source is empty or not a valid subject
// token (d.Source itself is kept in the record). A zero d.Received is set
// from Options.Now.
func (l *Log) DeadLetter(ctx context.Context, d DeadLetter) error {
	token := d.Source
	if token == "" || strings.ContainsAny(token, " \t\r\n*>.") {
		token = UnknownSource
	}
	if d.Received.IsZero() {
		d.Received = l.opts.Now()
	}
	if len(d.Payload) > 0 && !json.Valid(d.Payload) {
		d.PayloadRaw = append([]byte(nil), d.Payload...)
		d.Payload = nil
	}
	data, err := json.Marshal(d)
	if err != nil {
		return fmt.Errorf("log: dead letter: encode: %w", err)
	}
	if len(data) > MaxMessageSize {
		orig := d.PayloadRaw
		if len(d.Payload) > 0 {
			orig = d.Payload
		}
		d.Payload = nil
		d.PayloadRaw = orig[:min(len(orig), maxDeadLetterPayload)]
		d.Truncated = true
		if data, err = json.Marshal(d); err != nil {
			return fmt.Errorf("log: dead letter: encode: %w", err)
		}
	}
	if _, _, err := l.Append(ctx, DeadLetterPrefix+token, d.MsgID, data); err != nil {
		return fmt.Errorf("log: dead letter: %w", err)
	}
	return nil
}

// ReadDeadLetters returns up to max dead letters (max <= 0: 100; at most
// 10000) with sequence >= fromSeq, in sequence order; each has Seq set, so
// the next page starts at the last Seq + 1. Meant for tests and the CLI:
// it makes one request per record.
func (l *Log) ReadDeadLetters(ctx context.Context, fromSeq uint64, max int) ([]DeadLetter, error) {
	if l.isClosed() {
		return nil, ErrClosed
	}
	if max <= 0 {
		max = 100
	}
	max = min(max, 10000)
	if fromSeq == 0 {
		fromSeq = 1
	}
	stream, err := l.js.Stream(ctx, StreamDeadLetter)
	if err != nil {
		return nil, fmt.Errorf("log: read dead letters: %w", err)
	}
	var out []DeadLetter
	for seq := fromSeq; len(out) < max; {
		m, err := stream.GetMsg(ctx, seq, jetstream.WithGetMsgSubject(DeadLetterPrefix+">"))
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			break
		}
		if err != nil {
			return out, fmt.Errorf("log: read dead letters: seq %d: %w", seq, err)
		}
		var d DeadLetter
		if err := json.Unmarshal(m.Data, &d); err != nil {
			return out, fmt.Errorf("log: read dead letters: seq %d: decode: %w", m.Sequence, err)
		}
		d.Seq = m.Sequence
		out = append(out, d)
		seq = m.Sequence + 1
	}
	return out, nil
}
