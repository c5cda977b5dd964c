package projections

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"maps"
	"slices"

	"github.com/aurumcdp/aurum/projections/gcr"
	"github.com/aurumcdp/aurum/projections/match"
	"github.com/aurumcdp/aurum/store"
)

// The matcher's work, kept in the state (ARCHITECTURE.md "Probabilistic
// identity", "The matcher's work is durable"). The state machine, not the
// matcher, records what is to be matched, in the same batch as the change
// that makes it so; the matcher reports on the log what it has done. A
// crash, a restart or a new leader therefore loses no work, and the
// records are the same in every replay.
//
//	mq/<seq8><profile16> → empty: profile is to be matched (its matching
//	                       values changed at log position seq, or a pass
//	                       reached it); written only when a model is in effect
//	mi/pass              → msgpack MatchPass: a pass over every GCR in progress
//
// A pass re-indexes every profile and queues it: it starts when the
// probabilistic config's fields or blocking change (the profiles that
// existed before matching was enabled are indexed so: the backfill) and
// when a new model comes into effect (everyone is matched again). It
// advances by identity.progress records (Step profiles each), so each
// entry's work is bounded, and it resumes after a crash from its cursor.

// ControlIdentityProgress is the matcher's report: the queue up to a key is
// matched (Done), and/or the pass in progress is to advance (Step).
const ControlIdentityProgress = "identity.progress"

// MaxPassStep bounds the profiles one identity.progress entry re-indexes.
const MaxPassStep = 1000

var (
	prefixMatchQueue = []byte("mq/")
	prefixMatchInfo  = []byte("mi/")
	keyMatchPass     = []byte("mi/pass")
	keyIndexedConfig = []byte("mi/config") // fingerprint of the fields and blocking the index reflects
)

// MatchProgress is the identity.progress record's payload.
type MatchProgress struct {
	// Done: every queue entry up to and including this key (seq8 and
	// profile16, as QueuedMatch.Key) was matched; Apply removes them.
	Done []byte `msgpack:"d,omitempty"`
	// Step > 0 advances the pass in progress by up to Step profiles
	// (at most MaxPassStep), when its cursor is After (a repeated record
	// is no change).
	Step  int    `msgpack:"n,omitempty"`
	After []byte `msgpack:"a,omitempty"`
}

// MatchPass is a pass over every GCR in progress.
type MatchPass struct {
	Started uint64 `msgpack:"s"`           // log position that started it
	Reason  string `msgpack:"r"`           // "config" or "model"
	After   []byte `msgpack:"a,omitempty"` // gcr.ProfilesAfter cursor; nil: from the start
	Visited int    `msgpack:"v"`           // profiles visited so far
}

// QueuedMatch is an entry of the matcher's queue.
type QueuedMatch struct {
	Key     []byte // seq8 + profile16: the position in the queue
	Profile []byte
}

func matchQueueKey(seq uint64, p []byte) []byte {
	k := binary.BigEndian.AppendUint64(append([]byte(nil), prefixMatchQueue...), seq)
	return append(k, p...)
}

// QueuedMatches returns up to n queue entries after key after (nil: from
// the first), oldest first.
func QueuedMatches(r store.Reader, after []byte, n int) ([]QueuedMatch, error) {
	lower := prefixMatchQueue
	if after != nil {
		lower = append(append(append([]byte(nil), prefixMatchQueue...), after...), 0)
	}
	var out []QueuedMatch
	err := r.Scan(lower, prefixEnd(prefixMatchQueue), false, func(k, _ []byte) bool {
		k = k[len(prefixMatchQueue):]
		if len(k) != 8+16 {
			return true
		}
		out = append(out, QueuedMatch{Key: bytes.Clone(k), Profile: bytes.Clone(k[8:])})
		return len(out) < n
	})
	if err != nil {
		return nil, fmt.Errorf("projections: match queue: %w", err)
	}
	return out, nil
}

// PassInProgress returns the pass over every GCR in progress, if any.
func PassInProgress(r store.Reader) (MatchPass, bool, error) {
	p, ok, err := getMsgpack[MatchPass](r, keyMatchPass)
	if err != nil {
		return p, false, fmt.Errorf("projections: match pass: %w", err)
	}
	return p, ok, nil
}

// startPass starts (or restarts from the beginning) a pass over every GCR.
func startPass(rw store.ReadWriter, seq uint64, reason string) error {
	return setMsgpack(rw, keyMatchPass, &MatchPass{Started: seq, Reason: reason})
}

// hasMatchModel reports whether a model is in effect: without one there is
// nothing to match (training starts a pass over everyone).
func hasMatchModel(r store.Reader) (bool, error) {
	_, err := r.Get(keyMatchModel)
	if errors.Is(err, store.ErrNotFound) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("projections: identity model: %w", err)
	}
	return true, nil
}

// applyProgress applies an identity.progress record.
func (sm *StateMachine) applyProgress(rw store.ReadWriter, seq uint64, c *Control) error {
	pr := c.Progress
	if pr == nil {
		return nil
	}
	if len(pr.Done) == 8+16 {
		var keys [][]byte
		upper := append(append(append([]byte(nil), prefixMatchQueue...), pr.Done...), 0)
		if err := rw.Scan(prefixMatchQueue, upper, false, func(k, _ []byte) bool {
			keys = append(keys, bytes.Clone(k))
			return true
		}); err != nil {
			return fmt.Errorf("projections: match queue: %w", err)
		}
		for _, k := range keys {
			if err := rw.Delete(k); err != nil {
				return err
			}
		}
	}
	if pr.Step > 0 {
		return sm.stepPass(rw, seq, pr)
	}
	return nil
}

// stepPass re-indexes and queues the next profiles of the pass in progress.
func (sm *StateMachine) stepPass(rw store.ReadWriter, seq uint64, pr *MatchProgress) error {
	pass, ok, err := PassInProgress(rw)
	if err != nil || !ok || !bytes.Equal(pass.After, pr.After) {
		return err // no pass, or this step was taken already
	}
	cfg := sm.Keychain().Config().Probabilistic
	if cfg == nil {
		return rw.Delete(keyMatchPass)
	}
	queue, err := hasMatchModel(rw)
	if err != nil {
		return err
	}
	n := min(pr.Step, MaxPassStep)
	type indexed struct {
		p []byte
		e blockEntry
	}
	var todo []indexed
	last, err := sm.gcr.ProfilesAfter(rw, pass.After, n, func(_ []byte, g *gcr.Profile) error {
		e, err := sm.blockEntryOf(g, cfg)
		todo = append(todo, indexed{bytes.Clone(g.ID), e})
		return err
	})
	if err != nil {
		return fmt.Errorf("projections: match pass: %w", err)
	}
	visited := len(todo)
	for _, x := range todo { // written after the scan: no writes under an iterator
		if _, err := sm.replaceBlocks(rw, x.p, x.e); err != nil {
			return err
		}
		if queue && len(x.e.Keys) > 0 {
			if err := rw.Set(matchQueueKey(seq, x.p), nil); err != nil {
				return err
			}
		}
	}
	if visited < n {
		return rw.Delete(keyMatchPass) // complete
	}
	pass.After, pass.Visited = last, pass.Visited+visited
	return setMsgpack(rw, keyMatchPass, &pass)
}

// blockEntryOf is g's block index entry under cfg.
func (sm *StateMachine) blockEntryOf(g *gcr.Profile, cfg *match.Config) (blockEntry, error) {
	rec, err := sm.MatchRecordOf(g, cfg)
	if err != nil {
		return blockEntry{}, err
	}
	e := blockEntry{Sum: recordSum(rec)}
	for _, k := range match.BlockKeys(*cfg, rec) {
		e.Keys = append(e.Keys, sm.blockHash(k))
	}
	return e, nil
}

func configFingerprint(cfg *match.Config) []byte {
	h := sha256.New()
	for _, f := range slices.Sorted(maps.Keys(cfg.Fields)) {
		fmt.Fprintf(h, "f%d:%s=%s;", len(f), f, cfg.Fields[f])
	}
	for _, rule := range cfg.Blocking {
		fmt.Fprintf(h, "b%d", len(rule))
		for _, t := range rule {
			fmt.Fprintf(h, "%d:%s", len(t), t)
		}
	}
	return h.Sum(nil)[:16]
}

// configChanged starts a pass when the probabilistic config in effect
// indexes or compares other traits than the index reflects (matching just
// enabled: the backfill of the profiles that existed before).
func (sm *StateMachine) configChanged(rw store.ReadWriter, seq uint64) error {
	cfg := sm.Keychain().Config().Probabilistic
	if cfg == nil {
		if _, err := rw.Get(keyIndexedConfig); errors.Is(err, store.ErrNotFound) {
			return nil
		}
		if err := rw.Delete(keyIndexedConfig); err != nil {
			return err
		}
		return rw.Delete(keyMatchPass)
	}
	fp := configFingerprint(cfg)
	old, err := rw.Get(keyIndexedConfig)
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		return fmt.Errorf("projections: indexed config: %w", err)
	}
	if bytes.Equal(old, fp) {
		return nil
	}
	if err := rw.Set(keyIndexedConfig, fp); err != nil {
		return err
	}
	return startPass(rw, seq, "config")
}
