package engine

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	alog "github.com/aurumcdp/aurum/log"
	"github.com/aurumcdp/aurum/store"
)

// The activation store (activation.Options.Refs: connector refs, first
// sync marks, the former members' index) is DATA_DIR/activation, Pebble.
// On a single node it is that alone (refStore: every write a synced
// commit). In a cluster the destination workers run on the owner of
// partition 0, which moves; so there (clusterRefs) the store is the log's
// replicated AURUM_ACTIVATION stream (log/activation.go), and
// DATA_DIR/activation its local mirror:
//
//   - a write is published to the stream and acknowledged (by a majority
//     of its replicas) before it returns, then applied to the mirror;
//   - every node follows the stream into its mirror (goroutine
//     "activation"), so that the node that gains the deliveries has the
//     previous deliverer's writes, and reads are local (Get and Scan keep
//     Pebble's semantics: ranges, both orders);
//   - a node that gains the deliveries runs no worker (and no erasure's
//     shared step) until its mirror has applied the stream's last
//     sequence, read from the stream's leader (CatchUp).
//
// The mirror keeps, beside each key, the revision (stream sequence) of the
// record it holds, a deleted key's included, so that the follower and a
// write's own apply, which may arrive in either order, keep the newest.
// Its layout, in the reserved range from 0xff on (the store's keys are
// printable prefixes: cr/, cw/, cx/, fs/):
//
//	0xff m/pos          → uint64: the stream sequence the follower applied up to
//	0xff m/imported     → 1: the store a node kept before (its plain keys) was put into the stream
//	0xff m/rev/<key>    → uint64 revision || 1 if deleted, 0 if set
var (
	mirrorReserved = []byte{0xff}
	mirrorPos      = []byte("\xffm/pos")
	mirrorImported = []byte("\xffm/imported")
	mirrorRev      = []byte("\xffm/rev/")
)

// refStore is the activation store of a single node as a
// store.ReadWriter: every write is its own synced commit (a ref must
// survive the crash after the tool acknowledged the add).
type refStore struct{ db *store.DB }

func (s refStore) Get(key []byte) ([]byte, error) { return s.db.Get(key) }

func (s refStore) Scan(lower, upper []byte, reverse bool, fn func(k, v []byte) bool) error {
	return s.db.Scan(lower, clipReserved(upper), reverse, fn)
}

func (s refStore) Set(key, value []byte) error {
	if err := checkStoreKey(key); err != nil {
		return err
	}
	b := s.db.NewBatch()
	defer b.Close()
	if err := b.Set(key, value); err != nil {
		return err
	}
	return s.db.Commit(b, true)
}

func (s refStore) Delete(key []byte) error {
	b := s.db.NewBatch()
	defer b.Close()
	if err := b.Delete(key); err != nil {
		return err
	}
	return s.db.Commit(b, true)
}

// checkStoreKey refuses the keys of the mirror's reserved range.
func checkStoreKey(key []byte) error {
	if len(key) == 0 || key[0] == mirrorReserved[0] {
		return fmt.Errorf("engine: activation store: key %q is empty or in the reserved range", key)
	}
	return nil
}

// clipReserved bounds a scan's upper bound below the reserved range.
func clipReserved(upper []byte) []byte {
	if upper == nil || bytes.Compare(upper, mirrorReserved) > 0 {
		return mirrorReserved
	}
	return upper
}

// leaveCluster makes the activation store of a node that ran in a cluster
// and now runs alone plain again: the mirror's keys hold the values, and
// its bookkeeping is dropped, so that joining a cluster later imports this
// node's store again (ImportActivation adds only keys the stream never
// had).
func leaveCluster(db *store.DB, logger *slog.Logger) error {
	if _, err := db.Get(mirrorImported); errors.Is(err, store.ErrNotFound) {
		return nil
	} else if err != nil {
		return fmt.Errorf("engine: activation store: %w", err)
	}
	if err := db.DeleteRange(mirrorReserved, []byte{0xff, 0xff}, true); err != nil {
		return fmt.Errorf("engine: activation store: %w", err)
	}
	logger.Info("engine: the activation store was a cluster's mirror; it is this node's alone now")
	return nil
}

// activationLog is what clusterRefs needs of the log.
type activationLog interface {
	PutActivation(ctx context.Context, key, value []byte) (uint64, error)
	DeleteActivation(ctx context.Context, key []byte) (uint64, error)
	ImportActivation(ctx context.Context, key, value []byte) (bool, error)
	ActivationLastSeq(ctx context.Context) (uint64, error)
	FollowActivation(ctx context.Context, from uint64, fn func([]alog.ActivationRecord) error) error
}

var _ activationLog = (*alog.Log)(nil)

// clusterRefsWrite bounds one write (publish and ack, retried through a
// stream leader election).
const clusterRefsWrite = 30 * time.Second

// clusterRefs is the activation store of a cluster node (see above).
type clusterRefs struct {
	db     *store.DB
	log    activationLog
	ctx    context.Context // the engine's: writes end with it
	logger *slog.Logger

	mu  sync.Mutex    // serialises applies to the mirror
	pos *appliedWatch // the follower's position
}

var _ store.ReadWriter = (*clusterRefs)(nil)

// openClusterRefs opens the mirror in db: it imports, once, the plain
// store a node kept before (a single node's, or a cluster node's from
// before the stream), then reads the follower's position. Run follows.
func openClusterRefs(ctx, engineCtx context.Context, db *store.DB, l activationLog, logger *slog.Logger) (*clusterRefs, error) {
	r := &clusterRefs{db: db, log: l, ctx: engineCtx, logger: logger}
	if err := r.importLocal(ctx); err != nil {
		return nil, err
	}
	pos, err := readMirrorPos(db)
	if err != nil {
		return nil, err
	}
	r.pos = newAppliedWatch(pos)
	return r, nil
}

func readMirrorPos(db *store.DB) (uint64, error) {
	v, err := db.Get(mirrorPos)
	if errors.Is(err, store.ErrNotFound) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("engine: activation mirror: %w", err)
	}
	if len(v) != 8 {
		return 0, fmt.Errorf("engine: activation mirror: position of %d bytes", len(v))
	}
	return binary.BigEndian.Uint64(v), nil
}

// importLocal puts the plain keys of db (a store from before the mirror)
// into the stream, each only where the stream never held the key, and
// marks it done. The keys stay: the follower, from position 0, then sets
// each to the stream's value (the import's, or the cluster's since) or
// deletes it (a tombstone). A crash before the mark imports again; what
// was imported is then refused as already there.
func (r *clusterRefs) importLocal(ctx context.Context) error {
	if _, err := r.db.Get(mirrorImported); err == nil {
		return nil
	} else if !errors.Is(err, store.ErrNotFound) {
		return fmt.Errorf("engine: activation store: %w", err)
	}
	type kv struct{ k, v []byte }
	var local []kv
	err := r.db.Scan(nil, mirrorReserved, false, func(k, v []byte) bool {
		local = append(local, kv{bytes.Clone(k), bytes.Clone(v)})
		return true
	})
	if err != nil {
		return fmt.Errorf("engine: activation store: %w", err)
	}
	imported := 0
	for _, e := range local {
		ok, err := r.log.ImportActivation(ctx, e.k, e.v)
		if err != nil {
			return fmt.Errorf("engine: activation store: import %q: %w", e.k, err)
		}
		if ok {
			imported++
		}
	}
	b := r.db.NewBatch()
	defer b.Close()
	if err := b.Set(mirrorImported, []byte{1}); err != nil {
		return err
	}
	if err := r.db.Commit(b, true); err != nil {
		return fmt.Errorf("engine: activation store: %w", err)
	}
	if len(local) > 0 {
		r.logger.Info("engine: put this node's activation store into the cluster's", "keys", len(local), "imported", imported)
	}
	return nil
}

func (r *clusterRefs) Get(key []byte) ([]byte, error) {
	if err := checkStoreKey(key); err != nil {
		return nil, err
	}
	return r.db.Get(key)
}

func (r *clusterRefs) Scan(lower, upper []byte, reverse bool, fn func(k, v []byte) bool) error {
	return r.db.Scan(lower, clipReserved(upper), reverse, fn)
}

// Set publishes key's value and, once acknowledged, applies it to the
// mirror (a crash between the two: the follower applies it).
func (r *clusterRefs) Set(key, value []byte) error {
	if err := checkStoreKey(key); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(r.ctx, clusterRefsWrite)
	defer cancel()
	seq, err := r.log.PutActivation(ctx, key, value)
	if err != nil {
		return fmt.Errorf("engine: activation store: %w", err)
	}
	return r.apply([]alog.ActivationRecord{{Seq: seq, Key: key, Value: value}}, false)
}

// Delete publishes key's tombstone and, once acknowledged, applies it.
func (r *clusterRefs) Delete(key []byte) error {
	if err := checkStoreKey(key); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(r.ctx, clusterRefsWrite)
	defer cancel()
	seq, err := r.log.DeleteActivation(ctx, key)
	if err != nil {
		return fmt.Errorf("engine: activation store: %w", err)
	}
	return r.apply([]alog.ActivationRecord{{Seq: seq, Key: key, Deleted: true}}, false)
}

// apply writes recs to the mirror, each only over an older revision of its
// key, in one batch (not synced: the stream is the truth, and a lost tail
// is followed again, the position being in the same batch); follow moves
// the follower's position to the last record's sequence. A record without
// a key (one the follower could not read) only moves the position.
func (r *clusterRefs) apply(recs []alog.ActivationRecord, follow bool) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	b := r.db.NewBatch()
	defer b.Close()
	for _, rec := range recs {
		if len(rec.Key) == 0 || rec.Key[0] == mirrorReserved[0] {
			continue
		}
		revKey := append(bytes.Clone(mirrorRev), rec.Key...)
		if v, err := b.Get(revKey); err == nil && len(v) == 9 && binary.BigEndian.Uint64(v) >= rec.Seq {
			continue // the mirror holds this revision or a newer one
		} else if err != nil && !errors.Is(err, store.ErrNotFound) {
			return fmt.Errorf("engine: activation mirror: %w", err)
		}
		rev := binary.BigEndian.AppendUint64(nil, rec.Seq)
		var err error
		if rec.Deleted {
			if err = b.Delete(rec.Key); err == nil {
				err = b.Set(revKey, append(rev, 1))
			}
		} else if err = b.Set(rec.Key, rec.Value); err == nil {
			err = b.Set(revKey, append(rev, 0))
		}
		if err != nil {
			return fmt.Errorf("engine: activation mirror: %w", err)
		}
	}
	var last uint64
	if follow && len(recs) > 0 {
		last = recs[len(recs)-1].Seq
		if err := b.Set(mirrorPos, binary.BigEndian.AppendUint64(nil, last)); err != nil {
			return err
		}
	}
	if err := r.db.Commit(b, false); err != nil {
		return fmt.Errorf("engine: activation mirror: %w", err)
	}
	if last > 0 {
		r.pos.advance(last)
	}
	return nil
}

// run follows the stream into the mirror until ctx ends; a failure (the
// stream electing a leader, a node gone) is logged and the follower
// restarts from its position after a short wait.
func (r *clusterRefs) run(ctx context.Context) error {
	for {
		err := r.log.FollowActivation(ctx, r.pos.get()+1, func(recs []alog.ActivationRecord) error {
			return r.apply(recs, true)
		})
		if err == nil || errors.Is(err, alog.ErrClosed) || ctx.Err() != nil {
			return ctx.Err()
		}
		r.logger.Warn("engine: activation store follower: will restart", "err", err)
		t := time.NewTimer(250 * time.Millisecond)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
	}
}

// CatchUp waits until the mirror has applied every write the stream
// acknowledged before the call (its last sequence, read from its leader).
func (r *clusterRefs) CatchUp(ctx context.Context) error {
	last, err := r.log.ActivationLastSeq(ctx)
	if err != nil {
		return fmt.Errorf("engine: activation store: %w", err)
	}
	if err := r.pos.wait(ctx, r.ctx, last); err != nil {
		return fmt.Errorf("engine: activation store: catching up to %d (at %d): %w", last, r.pos.get(), err)
	}
	return nil
}
