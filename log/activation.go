package log

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// The activation store of a cluster (the engine's; see ARCHITECTURE.md
// "Cluster", "The activation store"): the connector refs, the first sync
// marks and the former members' index, kept where every node reads them,
// so that the node that delivers after a move of partition 0 has what the
// previous one wrote. AURUM_ACTIVATION is a key-value stream: one subject
// per key (aurum.activation.<key in base64url, unpadded>), at most one
// message per subject (MaxMsgsPerSubject 1: a write replaces the key's
// previous value), a delete being a tombstone that replaces the value (so
// that a node following the stream learns of it). A record is
// version(1) || op(1) || value. The stream sequence of a record is the
// key's revision.
//
// The stream is created by EnsureActivationStream (a cluster's engine),
// not by Open: a single node keeps its activation store in Pebble only.
const (
	StreamActivation = "AURUM_ACTIVATION"
	ActivationPrefix = "aurum.activation."

	// MaxActivationKey bounds a key (its subject token is about 4/3 of it).
	MaxActivationKey = 1024
	// MaxActivationValue bounds a value.
	MaxActivationValue = 32 << 10

	activationMaxMsgSize = 64 << 10 // of AURUM_ACTIVATION, headers included

	activationVersion = 1
	activationSet     = 1
	activationDelete  = 2
)

// ErrMalformedActivationRecord is returned for a message on
// AURUM_ACTIVATION that is not a record of this version.
var ErrMalformedActivationRecord = errors.New("log: malformed activation record")

// ActivationRecord is a record of AURUM_ACTIVATION: a key's value, or its
// deletion. Seq is its stream sequence (the key's revision).
type ActivationRecord struct {
	Seq     uint64
	Key     []byte
	Value   []byte
	Deleted bool
}

// activationEncoding encodes keys into subject tokens: base64url without
// padding uses [A-Za-z0-9_-] only, which is a valid subject token (no
// '.', '*', '>' or white space) and a valid JetStream KV key.
var activationEncoding = base64.RawURLEncoding

// ActivationSubject is the subject of key on AURUM_ACTIVATION.
func ActivationSubject(key []byte) (string, error) {
	if len(key) == 0 || len(key) > MaxActivationKey {
		return "", fmt.Errorf("log: activation: key of %d bytes (1..%d)", len(key), MaxActivationKey)
	}
	return ActivationPrefix + activationEncoding.EncodeToString(key), nil
}

// ActivationKey is the key of a subject of AURUM_ACTIVATION (the inverse of
// ActivationSubject).
func ActivationKey(subject string) ([]byte, error) {
	tok, ok := strings.CutPrefix(subject, ActivationPrefix)
	if !ok {
		return nil, fmt.Errorf("%w: subject %q is not under %s", ErrMalformedActivationRecord, subject, ActivationPrefix)
	}
	key, err := activationEncoding.DecodeString(tok)
	if err != nil || len(key) == 0 || len(key) > MaxActivationKey {
		return nil, fmt.Errorf("%w: subject %q is not a key", ErrMalformedActivationRecord, subject)
	}
	return key, nil
}

func encodeActivation(value []byte, deleted bool) []byte {
	if deleted {
		return []byte{activationVersion, activationDelete}
	}
	return append([]byte{activationVersion, activationSet}, value...)
}

// activationRecordOf decodes the message data on subject.
func activationRecordOf(subject string, data []byte) (ActivationRecord, error) {
	key, err := ActivationKey(subject)
	if err != nil {
		return ActivationRecord{}, err
	}
	if len(data) < 2 || data[0] != activationVersion {
		return ActivationRecord{}, fmt.Errorf("%w: %s: %d bytes, not version %d", ErrMalformedActivationRecord, subject, len(data), activationVersion)
	}
	switch data[1] {
	case activationSet:
		return ActivationRecord{Key: key, Value: bytes.Clone(data[2:])}, nil
	case activationDelete:
		if len(data) != 2 {
			return ActivationRecord{}, fmt.Errorf("%w: %s: a delete with a value", ErrMalformedActivationRecord, subject)
		}
		return ActivationRecord{Key: key, Deleted: true}, nil
	default:
		return ActivationRecord{}, fmt.Errorf("%w: %s: op %d", ErrMalformedActivationRecord, subject, data[1])
	}
}

func (l *Log) activationConfig() jetstream.StreamConfig {
	return jetstream.StreamConfig{
		Name:              StreamActivation,
		Description:       "Aurum activation store (connector refs, first sync marks) of a cluster",
		Subjects:          []string{ActivationPrefix + ">"},
		Retention:         jetstream.LimitsPolicy,
		Storage:           jetstream.FileStorage,
		Replicas:          l.opts.Replicas,
		MaxMsgSize:        activationMaxMsgSize,
		MaxMsgs:           -1,
		MaxBytes:          -1,
		MaxMsgsPerSubject: 1,
		Discard:           jetstream.DiscardOld,
	}
}

// EnsureActivationStream creates or updates AURUM_ACTIVATION (Options.Replicas
// copies), waiting for the cluster as Open does for its streams.
func (l *Log) EnsureActivationStream(ctx context.Context) error {
	if l.isClosed() {
		return ErrClosed
	}
	return l.ensureStreams(ctx, []jetstream.StreamConfig{l.activationConfig()})
}

// activationAttempt bounds one attempt of a write; a write is retried while
// the stream has no leader (an election after a node's death), until its
// context ends.
const activationAttempt = 2 * time.Second

// PutActivation stores value under key and returns its revision once the
// stream acknowledged it (stored by a majority of its replicas).
func (l *Log) PutActivation(ctx context.Context, key, value []byte) (uint64, error) {
	if len(value) > MaxActivationValue {
		return 0, fmt.Errorf("log: activation: value of %d bytes (max %d)", len(value), MaxActivationValue)
	}
	return l.writeActivation(ctx, key, encodeActivation(value, false), "")
}

// DeleteActivation deletes key (a tombstone replaces its value) and
// returns the tombstone's revision once acknowledged.
func (l *Log) DeleteActivation(ctx context.Context, key []byte) (uint64, error) {
	return l.writeActivation(ctx, key, encodeActivation(nil, true), "")
}

// ImportActivation stores value under key only if the stream never held
// the key (no value, no tombstone): the import of a node's local store
// never overrides what the cluster wrote since. It reports whether the
// value was stored.
func (l *Log) ImportActivation(ctx context.Context, key, value []byte) (bool, error) {
	if len(value) > MaxActivationValue {
		return false, fmt.Errorf("log: activation: value of %d bytes (max %d)", len(value), MaxActivationValue)
	}
	_, err := l.writeActivation(ctx, key, encodeActivation(value, false), "0")
	if isWrongLastSeq(err) {
		return false, nil
	}
	return err == nil, err
}

// writeActivation publishes data on key's subject (conditional on the
// subject's last sequence when expectLast is set) and waits for the ack,
// retrying attempts the stream could not answer (no leader, a busy
// condition) until ctx ends (RequestTimeout without a deadline). A retried
// write may be stored twice: the same value, the later one the key's
// revision.
func (l *Log) writeActivation(ctx context.Context, key, data []byte, expectLast string) (uint64, error) {
	if l.isClosed() {
		return 0, ErrClosed
	}
	subject, err := ActivationSubject(key)
	if err != nil {
		return 0, err
	}
	ctx, cancel := l.withTimeout(ctx)
	defer cancel()
	wait := 20 * time.Millisecond
	for {
		m := nats.NewMsg(subject)
		m.Data = data
		if expectLast != "" {
			m.Header.Set(jetstream.ExpectedLastSubjSeqHeader, expectLast)
		}
		actx, acancel := context.WithTimeout(ctx, activationAttempt)
		ack, err := l.js.PublishMsg(actx, m)
		acancel()
		if err == nil {
			return ack.Sequence, nil
		}
		if isWrongLastSeq(err) {
			return 0, err
		}
		// No stream leader (an election): no responders, or no answer.
		retry := retryableStreamError(err) || isConditionBusy(err) || errors.Is(err, jetstream.ErrNoStreamResponse)
		if !retry || ctx.Err() != nil || l.isClosed() {
			return 0, fmt.Errorf("log: activation: write %s: %w", subject, err)
		}
		select {
		case <-ctx.Done():
			return 0, fmt.Errorf("log: activation: write %s: %w (last error: %v)", subject, ctx.Err(), err)
		case <-l.done:
			return 0, ErrClosed
		case <-time.After(wait):
		}
		wait = min(2*wait, 500*time.Millisecond)
	}
}

// ActivationLastSeq is the last sequence of AURUM_ACTIVATION, read from its
// leader: a follower that has handled it has every write acknowledged
// before the call.
func (l *Log) ActivationLastSeq(ctx context.Context) (uint64, error) {
	if l.isClosed() {
		return 0, ErrClosed
	}
	ctx, cancel := l.withTimeout(ctx)
	defer cancel()
	s, err := l.js.Stream(ctx, StreamActivation)
	if err != nil {
		return 0, fmt.Errorf("log: %s last sequence: %w", StreamActivation, err)
	}
	return s.CachedInfo().State.LastSeq, nil
}

// FollowActivation hands fn the records of AURUM_ACTIVATION from sequence
// from on (0 or 1: from the first), in stream order and in batches of at
// most 256, as they are stored, until ctx ends (nil) or the log closes
// (ErrClosed). A record that is not of this version is skipped and logged
// (its sequence still passes: fn gets it with a nil Key, to move past it).
// fn's error, or a failure to read, ends it; the caller restarts it after
// the last sequence it handled.
func (l *Log) FollowActivation(ctx context.Context, from uint64, fn func([]ActivationRecord) error) error {
	return l.runActive(ctx, func(ctx context.Context) error { return l.followActivation(ctx, max(from, 1), fn) })
}

func (l *Log) followActivation(ctx context.Context, from uint64, fn func([]ActivationRecord) error) error {
	return followStream(ctx, l, StreamActivation, "activation", from, func(subject string, data []byte, seq uint64) (ActivationRecord, bool) {
		rec, err := activationRecordOf(subject, data)
		if err != nil {
			l.logger.Warn("log: follow activation: skipped a record", "seq", seq, "err", err)
			rec = ActivationRecord{} // handed on without a key: the position passes it
		}
		rec.Seq = seq
		return rec, true
	}, fn)
}
