package log

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// The shared data keys (seal.SharedKeys, adapted by the engine): one
// subject per key id on AURUM_KEYS, holding at most one key record (the
// first message, created only where the subject is empty) and then at most
// one tombstone (published only on top of the subject's last message). A
// tombstone is final: no key is created on a subject that has one.
//
// A record is version(1) || kind(1) || body:
//
//	kind 1, key:       body = the wrapped data key (1..MaxWrappedKey bytes)
//	kind 2, tombstone: body = the stream sequence of the key record it
//	                   erased (8 bytes, big-endian; 0: there was none)
//
// Destroying publishes the tombstone, then securely deletes the key record
// (the bytes overwritten, as SecureDelete does); a destroy interrupted in
// between is finished by the next one, which finds the sequence to erase in
// the tombstone. Reads go to the stream leader (GetLastMsgForSubject;
// AllowDirect is off), so a key acknowledged to its creator is seen by
// every node that reads after that.
const (
	StreamKeys = "AURUM_KEYS"
	KeysPrefix = "aurum.keys."

	// MaxWrappedKey bounds the wrapped key of a key record.
	MaxWrappedKey = 256
	// MaxKeyID bounds a key id (its subject token is the id in hex).
	MaxKeyID = 64

	keysMaxMsgSize = 4 << 10 // of AURUM_KEYS, headers included

	keyRecordVersion = 1
	keyKindKey       = 1
	keyKindTombstone = 2
)

// ErrMalformedKeyRecord is returned for a message on AURUM_KEYS that is not
// a key record of this version.
var ErrMalformedKeyRecord = errors.New("log: malformed key record")

// KeyState is what AURUM_KEYS holds for a key id.
type KeyState uint8

const (
	KeyUnknown   KeyState = iota // nothing
	KeyPresent                   // a key record
	KeyDestroyed                 // a tombstone
)

// KeyEntry is what AURUM_KEYS holds for one key id. Wrapped is set with
// KeyPresent only.
type KeyEntry struct {
	State   KeyState
	Wrapped []byte
}

// KeyOffer is a wrapped key offered for an id by CreateKeys.
type KeyOffer struct {
	ID      []byte
	Wrapped []byte
}

// keyRecord is a decoded message of AURUM_KEYS.
type keyRecord struct {
	kind    byte
	wrapped []byte // kind key
	erased  uint64 // kind tombstone
}

func encodeKeyRecord(r keyRecord) []byte {
	switch r.kind {
	case keyKindKey:
		return append([]byte{keyRecordVersion, keyKindKey}, r.wrapped...)
	default:
		return binary.BigEndian.AppendUint64([]byte{keyRecordVersion, keyKindTombstone}, r.erased)
	}
}

// decodeKeyRecord decodes a record; the key's wrapped bytes alias b.
func decodeKeyRecord(b []byte) (keyRecord, error) {
	if len(b) < 2 {
		return keyRecord{}, fmt.Errorf("%w: %d bytes", ErrMalformedKeyRecord, len(b))
	}
	if b[0] != keyRecordVersion {
		return keyRecord{}, fmt.Errorf("%w: version %d", ErrMalformedKeyRecord, b[0])
	}
	body := b[2:]
	switch b[1] {
	case keyKindKey:
		if len(body) == 0 || len(body) > MaxWrappedKey {
			return keyRecord{}, fmt.Errorf("%w: wrapped key of %d bytes (1..%d)", ErrMalformedKeyRecord, len(body), MaxWrappedKey)
		}
		return keyRecord{kind: keyKindKey, wrapped: body}, nil
	case keyKindTombstone:
		if len(body) != 8 {
			return keyRecord{}, fmt.Errorf("%w: tombstone of %d bytes, want 8", ErrMalformedKeyRecord, len(body))
		}
		return keyRecord{kind: keyKindTombstone, erased: binary.BigEndian.Uint64(body)}, nil
	default:
		return keyRecord{}, fmt.Errorf("%w: kind %d", ErrMalformedKeyRecord, b[1])
	}
}

func keySubject(id []byte) (string, error) {
	if len(id) == 0 || len(id) > MaxKeyID {
		return "", fmt.Errorf("log: keys: key id of %d bytes (1..%d)", len(id), MaxKeyID)
	}
	return KeysPrefix + hex.EncodeToString(id), nil
}

// keyAttempts bounds the reads and publishes of one id that lose races
// (another creator or destroyer, or a busy subject) before giving up.
const keyAttempts = 16

// waitRetry waits a little longer each attempt before a retry of a refused
// conditional publish.
func waitRetry(ctx context.Context, attempt int) error {
	t := time.NewTimer(time.Duration(attempt) * 5 * time.Millisecond)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return fmt.Errorf("log: keys: %w", ctx.Err())
	case <-t.C:
		return nil
	}
}

// publishKeyRecord publishes r on subject asynchronously, stored only if the
// subject's last message has sequence last (0: the subject is empty).
func (l *Log) publishKeyRecord(subject string, last uint64, r keyRecord) (jetstream.PubAckFuture, error) {
	m := nats.NewMsg(subject)
	m.Data = encodeKeyRecord(r)
	m.Header.Set(jetstream.ExpectedLastSubjSeqHeader, strconv.FormatUint(last, 10))
	paf, err := l.js.PublishMsgAsync(m, jetstream.WithStallWait(l.opts.RequestTimeout))
	if err != nil {
		return nil, fmt.Errorf("log: keys: publish %s: %w", subject, err)
	}
	return paf, nil
}

// waitAck waits for a PubAck of publishKeyRecord: (true, nil) stored,
// (false, nil) refused: the subject's last message is another (10071), or,
// on a replicated stream, another conditional publish on the subject is
// being replicated (10164, isConditionBusy). Either way: read, and retry.
func (l *Log) waitAck(ctx context.Context, subject string, paf jetstream.PubAckFuture) (bool, error) {
	select {
	case <-paf.Ok():
		return true, nil
	case err := <-paf.Err():
		if isWrongLastSeq(err) || isConditionBusy(err) {
			return false, nil
		}
		return false, fmt.Errorf("log: keys: publish %s: %w", subject, err)
	case <-l.connGone:
		return false, ErrClosed
	case <-ctx.Done():
		return false, fmt.Errorf("log: keys: publish %s: %w", subject, ctx.Err())
	}
}

// CreateKeys offers a wrapped key for each id, first writer wins, and
// returns for each offer (in order) what AURUM_KEYS holds afterwards: the
// offered key, the key another creator stored first, or a tombstone. The
// offers are published asynchronously and their acks awaited together;
// only an offer that lost costs a read.
func (l *Log) CreateKeys(ctx context.Context, offers []KeyOffer) ([]KeyEntry, error) {
	if l.isClosed() {
		return nil, ErrClosed
	}
	ctx, cancel := l.withTimeout(ctx)
	defer cancel()
	subjects := make([]string, len(offers))
	pafs := make([]jetstream.PubAckFuture, len(offers))
	for i, o := range offers {
		s, err := keySubject(o.ID)
		if err != nil {
			return nil, err
		}
		if len(o.Wrapped) == 0 || len(o.Wrapped) > MaxWrappedKey {
			return nil, fmt.Errorf("log: keys: %s: wrapped key of %d bytes (1..%d)", s, len(o.Wrapped), MaxWrappedKey)
		}
		subjects[i] = s
		if pafs[i], err = l.publishKeyRecord(s, 0, keyRecord{kind: keyKindKey, wrapped: o.Wrapped}); err != nil {
			return nil, err
		}
	}
	out := make([]KeyEntry, len(offers))
	var lost []int
	for i, paf := range pafs {
		ok, err := l.waitAck(ctx, subjects[i], paf)
		if err != nil {
			return nil, err
		}
		if ok {
			out[i] = KeyEntry{State: KeyPresent, Wrapped: offers[i].Wrapped}
		} else {
			lost = append(lost, i)
		}
	}
	for _, i := range lost {
		e, err := l.createKey(ctx, subjects[i], offers[i].Wrapped)
		if err != nil {
			return nil, err
		}
		out[i] = e
	}
	return out, nil
}

// createKey settles an offer refused once: the record on the subject is the
// answer; an empty subject (the other publish not stored yet, or a busy
// refusal) is offered again.
func (l *Log) createKey(ctx context.Context, subject string, wrapped []byte) (KeyEntry, error) {
	for attempt := 1; attempt < keyAttempts; attempt++ {
		e, _, err := l.lastKeyRecord(ctx, subject)
		if err != nil || e.State != KeyUnknown {
			return e, err
		}
		if err := waitRetry(ctx, attempt); err != nil {
			return KeyEntry{}, err
		}
		paf, err := l.publishKeyRecord(subject, 0, keyRecord{kind: keyKindKey, wrapped: wrapped})
		if err != nil {
			return KeyEntry{}, err
		}
		ok, err := l.waitAck(ctx, subject, paf)
		if err != nil {
			return KeyEntry{}, err
		}
		if ok {
			return KeyEntry{State: KeyPresent, Wrapped: wrapped}, nil
		}
	}
	return KeyEntry{}, fmt.Errorf("log: keys: create on %s lost %d races", subject, keyAttempts)
}

// GetKey returns what AURUM_KEYS holds for id.
func (l *Log) GetKey(ctx context.Context, id []byte) (KeyEntry, error) {
	if l.isClosed() {
		return KeyEntry{}, ErrClosed
	}
	s, err := keySubject(id)
	if err != nil {
		return KeyEntry{}, err
	}
	ctx, cancel := l.withTimeout(ctx)
	defer cancel()
	// A cluster electing AURUM_KEYS' leader answers "temporarily
	// unavailable" (or nothing) for a few seconds; a key read during a
	// replay's apply must outlast that, not fail the apply (a node died of
	// it in the chaos test). Short attempts, retried until ctx ends.
	wait := 50 * time.Millisecond
	for {
		actx, acancel := context.WithTimeout(ctx, keyReadAttempt)
		e, _, err := l.lastKeyRecord(actx, s)
		acancel()
		if err == nil || !retryableStreamError(err) || ctx.Err() != nil {
			return e, err
		}
		select {
		case <-ctx.Done():
			return e, err
		case <-time.After(wait):
		}
		wait = min(2*wait, time.Second)
	}
}

// keyReadAttempt bounds one attempt of GetKey.
const keyReadAttempt = 2 * time.Second

// lastKeyRecord reads the last message on subject: the entry, and the
// message's sequence and record (seq 0 when there is none).
func (l *Log) lastKeyRecord(ctx context.Context, subject string) (KeyEntry, lastKey, error) {
	stream, err := l.keys.get(ctx, l.js)
	if err != nil {
		return KeyEntry{}, lastKey{}, err
	}
	m, err := stream.GetLastMsgForSubject(ctx, subject)
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return KeyEntry{State: KeyUnknown}, lastKey{}, nil
	}
	if err != nil {
		return KeyEntry{}, lastKey{}, fmt.Errorf("log: keys: read %s: %w", subject, err)
	}
	r, err := decodeKeyRecord(m.Data)
	if err != nil {
		return KeyEntry{}, lastKey{}, fmt.Errorf("log: keys: %s seq %d: %w", subject, m.Sequence, err)
	}
	last := lastKey{seq: m.Sequence, rec: r}
	if r.kind == keyKindTombstone {
		return KeyEntry{State: KeyDestroyed}, last, nil
	}
	return KeyEntry{State: KeyPresent, Wrapped: r.wrapped}, last, nil
}

// keysStream is the handle of AURUM_KEYS, looked up on first use (a look-up
// is a round trip; reads by subject go by name, and the handle's cached
// config says direct gets are off).
type keysStream struct {
	mu sync.Mutex
	s  jetstream.Stream
}

func (k *keysStream) get(ctx context.Context, js jetstream.JetStream) (jetstream.Stream, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.s == nil {
		s, err := js.Stream(ctx, StreamKeys)
		if err != nil {
			return nil, fmt.Errorf("log: keys: %w", err)
		}
		k.s = s
	}
	return k.s, nil
}

type lastKey struct {
	seq uint64
	rec keyRecord
}

// DestroyKeys destroys the keys of ids: for each it publishes a tombstone
// on top of the subject's last message and securely deletes the key record
// (its bytes overwritten). Destroying an unknown or destroyed id is
// allowed; an id whose tombstone is there but whose key record is not yet
// erased (an interrupted destroy) has it erased now. It costs a read per
// id; the tombstones are published asynchronously.
func (l *Log) DestroyKeys(ctx context.Context, ids [][]byte) error {
	if l.isClosed() {
		return ErrClosed
	}
	ctx, cancel := l.withTimeout(ctx)
	defer cancel()
	subjects := make([]string, len(ids))
	for i, id := range ids {
		s, err := keySubject(id)
		if err != nil {
			return err
		}
		subjects[i] = s
	}
	todo := make([]int, len(ids))
	for i := range todo {
		todo[i] = i
	}
	// A refused tombstone (another destroyer's, a creator's key between
	// the read and the publish, or a busy subject) is read again: each
	// subject holds at most a key and a tombstone.
	for round := 0; len(todo) > 0; round++ {
		if round == keyAttempts {
			return fmt.Errorf("log: keys: destroy %s: lost %d races", subjects[todo[0]], keyAttempts)
		}
		if round > 0 {
			if err := waitRetry(ctx, round); err != nil {
				return err
			}
		}
		type pending struct {
			i   int
			paf jetstream.PubAckFuture
		}
		var pend []pending
		var erase []uint64
		for _, i := range todo {
			_, last, err := l.lastKeyRecord(ctx, subjects[i])
			if err != nil {
				return err
			}
			if last.seq > 0 && last.rec.kind == keyKindTombstone {
				if last.rec.erased > 0 {
					erase = append(erase, last.rec.erased)
				}
				continue
			}
			var erased uint64
			if last.seq > 0 {
				erased = last.seq // the key record
			}
			paf, err := l.publishKeyRecord(subjects[i], last.seq, keyRecord{kind: keyKindTombstone, erased: erased})
			if err != nil {
				return err
			}
			pend = append(pend, pending{i, paf})
			if erased > 0 {
				erase = append(erase, erased)
			}
		}
		todo = todo[:0]
		for _, p := range pend {
			ok, err := l.waitAck(ctx, subjects[p.i], p.paf)
			if err != nil {
				return err
			}
			if !ok {
				todo = append(todo, p.i)
			}
		}
		// A key record read as such is erased whoever's tombstone won.
		for _, seq := range erase {
			if err := l.SecureDelete(ctx, StreamKeys, seq); err != nil {
				return fmt.Errorf("log: keys: %w", err)
			}
		}
	}
	return nil
}

// KeyRecord is a record of AURUM_KEYS as FollowKeys delivers it: a key
// (State KeyPresent, Wrapped set) or a tombstone (KeyDestroyed).
type KeyRecord struct {
	Seq     uint64
	ID      []byte
	State   KeyState
	Wrapped []byte
}

// followBatch is the most records FollowKeys hands over at once.
const followBatch = 256

// FollowKeys hands fn the records of AURUM_KEYS from sequence from on (0
// or 1: from the first), in stream order and in batches of at most 256,
// as they are stored, until ctx ends (nil) or the log closes (ErrClosed).
// A record that is not a key record of this version, or on a subject that
// is not a key id, is skipped and logged. fn's error, or a failure to read,
// ends it; the caller restarts it after the last sequence it handled.
func (l *Log) FollowKeys(ctx context.Context, from uint64, fn func([]KeyRecord) error) error {
	return l.runActive(ctx, func(ctx context.Context) error { return l.followKeys(ctx, max(from, 1), fn) })
}

func (l *Log) followKeys(ctx context.Context, from uint64, fn func([]KeyRecord) error) error {
	return followStream(ctx, l, StreamKeys, "keys", from, func(subject string, data []byte, seq uint64) (KeyRecord, bool) {
		rec, err := keyRecordOf(subject, data)
		if err != nil {
			l.logger.Warn("log: follow keys: skipped a record", "seq", seq, "err", err)
			return KeyRecord{}, false
		}
		rec.Seq = seq
		return rec, true
	}, fn)
}

// followStream follows stream from sequence from with an ordered consumer
// and hands fn, in stream order and in batches of at most followBatch, the
// records decode makes of its messages (those it refuses are left out),
// until ctx ends (nil). What is stored is taken at once (FetchNoWait);
// when nothing was, the next message is waited for alone (up to a
// second), so that a record reaches fn as soon as it is stored. A failure
// to read, or fn's error, ends it: the caller follows again after the last
// sequence it handled.
func followStream[R any](ctx context.Context, l *Log, stream, what string, from uint64,
	decode func(subject string, data []byte, seq uint64) (R, bool), fn func([]R) error) error {
	cons, err := l.js.OrderedConsumer(ctx, stream, jetstream.OrderedConsumerConfig{
		DeliverPolicy: jetstream.DeliverByStartSequencePolicy, OptStartSeq: from,
		// One attempt: nats.go's own resets retry forever without a
		// context (a node whose cluster lost its quorum would never
		// stop); the caller re-follows with a backoff that honours ctx.
		MaxResetAttempts: 1})
	if err != nil {
		return fmt.Errorf("log: follow %s: %w", what, err)
	}
	idle := false
	for ctx.Err() == nil {
		var batch jetstream.MessageBatch
		if idle {
			batch, err = cons.Fetch(1, jetstream.FetchMaxWait(time.Second))
		} else {
			batch, err = cons.FetchNoWait(followBatch)
		}
		if err != nil {
			return fmt.Errorf("log: follow %s: %w", what, err)
		}
		var recs []R
		n := 0
		for m := range batch.Messages() {
			n++
			md, err := m.Metadata()
			if err != nil {
				return fmt.Errorf("log: follow %s: metadata: %w", what, err)
			}
			if rec, ok := decode(m.Subject(), m.Data(), md.Sequence.Stream); ok {
				recs = append(recs, rec)
			}
		}
		if err := batch.Error(); err != nil && !errors.Is(err, jetstream.ErrNoMessages) && !errors.Is(err, context.DeadlineExceeded) {
			return fmt.Errorf("log: follow %s: %w", what, err)
		}
		idle = n == 0
		if len(recs) > 0 {
			if err := fn(recs); err != nil {
				return err
			}
		}
	}
	return nil
}

// keyRecordOf decodes the record data on subject (aurum.keys.<hex id>).
func keyRecordOf(subject string, data []byte) (KeyRecord, error) {
	id, err := hex.DecodeString(strings.TrimPrefix(subject, KeysPrefix))
	if err != nil || len(id) == 0 || len(id) > MaxKeyID || !strings.HasPrefix(subject, KeysPrefix) {
		return KeyRecord{}, fmt.Errorf("%w: subject %q is not a key id", ErrMalformedKeyRecord, subject)
	}
	r, err := decodeKeyRecord(data)
	if err != nil {
		return KeyRecord{}, fmt.Errorf("%s: %w", subject, err)
	}
	if r.kind == keyKindTombstone {
		return KeyRecord{ID: id, State: KeyDestroyed}, nil
	}
	return KeyRecord{ID: id, State: KeyPresent, Wrapped: bytes.Clone(r.wrapped)}, nil
}
