package engine

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	alog "github.com/aurumcdp/aurum/log"
	"github.com/aurumcdp/aurum/projections"
	"github.com/aurumcdp/aurum/seal"
	"github.com/aurumcdp/aurum/store"
)

// ReplayOptions configure an offline replay of a stopped node's log.
type ReplayOptions struct {
	DataDir string
	// NATSURL, when set, reads the log from that NATS deployment (a
	// cluster's, or the --nats-url the node ran with) instead of starting
	// the embedded server on DataDir/jetstream.
	NATSURL     string
	MasterKey   []byte        // default: DataDir/master.key
	DedupWindow time.Duration // as the node ran with; default 30 days
	// Out receives every output the replay's state machine decides (merge
	// records, audience transitions), in outbox order after each group of
	// entries (the global outbox, then each partition's: a profile's
	// outputs keep their order); nothing is published.
	Out    func(projections.OutMsg) error
	Logger *slog.Logger
	// SharedKeys reads data keys missing from DataDir/keys in AURUM_KEYS
	// (as the node ran with Options.SharedKeys); the keys found there are
	// kept in DataDir/keys.
	SharedKeys bool
	// GroupEntries and GroupBytes bound the log entries applied in one
	// Pebble batch. Defaults DefaultReplayGroupEntries and the memory
	// limit's MemorySizes.ReplayGroup (DefaultReplayGroupBytes without a
	// limit); GroupEntries 1: one batch per entry. The replay's store has
	// no write-ahead log: it is thrown away.
	GroupEntries, GroupBytes int
	// MemoryLimit sizes the replay's caches and stores as
	// Options.MemoryLimit does the engine's (0: the fixed sizes; else at
	// least MinMemoryLimit). The caller sets the Go runtime's limit.
	MemoryLimit int64

	// watch, when set (tests: TestMemoryBudget), is handed the replay's
	// stores and state machine once they are open; the func it returns
	// runs before they close.
	watch func(stores []*store.DB, sm *projections.StateMachine) (unwatch func())
}

// ReplayResult summarises a replay.
type ReplayResult struct {
	Applied uint64 // last log position applied
	Digest  []byte // of the rebuilt projections
	Outputs int
	// OpenedAhead counts the sealed event properties the state machine
	// found opened by the fetch stage (replaypipe.go) instead of opening
	// them itself.
	OpenedAhead int64
}

// Replay rebuilds the projections of a stopped node from its log into a
// temporary state store (removed afterwards) and reports what they would
// publish. It does not touch the node's own state.
func Replay(ctx context.Context, opts ReplayOptions) (ReplayResult, error) {
	var res ReplayResult
	if err := validMemoryLimit(opts.MemoryLimit); err != nil {
		return res, fmt.Errorf("engine: replay: MemoryLimit %w", err)
	}
	mem := MemorySizesFor(opts.MemoryLimit)
	if opts.DedupWindow == 0 {
		opts.DedupWindow = 30 * 24 * time.Hour
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.GroupEntries <= 0 {
		opts.GroupEntries = DefaultReplayGroupEntries
	}
	if opts.GroupBytes <= 0 {
		opts.GroupBytes = mem.ReplayGroup
	}
	master := opts.MasterKey
	if master == nil {
		k, err := seal.LoadMasterKey(filepath.Join(opts.DataDir, "master.key"), "")
		if err != nil {
			return res, fmt.Errorf("engine: replay: %w", err)
		}
		master = k
	}
	keysDB, err := store.Open(filepath.Join(opts.DataDir, "keys"), mem.smallStore(opts.Logger))
	if err != nil {
		return res, fmt.Errorf("engine: replay: keys: %w", err)
	}
	defer keysDB.Close()
	var l *alog.Log // opened below
	keyOpts := mem.sealOptions()
	if opts.SharedKeys {
		keyOpts.Shared = sharedKeys{func() *alog.Log { return l }}
	}
	keys, err := seal.NewKeyring(keysDB, master, &keyOpts)
	if err != nil {
		return res, err
	}
	parts := 16
	if live, err := store.Open(filepath.Join(opts.DataDir, "state"), mem.stateStore(opts.Logger)); err == nil {
		if parts, err = projections.CheckPartitions(readOnly{live}, 16); err != nil {
			live.Close()
			return res, err
		}
		live.Close()
	}
	tmp, err := os.MkdirTemp("", "aurum-replay-")
	if err != nil {
		return res, err
	}
	defer os.RemoveAll(tmp)
	sopts := mem.stateStore(opts.Logger)
	sopts.NoWAL = true
	db, err := store.Open(tmp, sopts)
	if err != nil {
		return res, err
	}
	defer db.Close()
	if _, err := checkPartitions(db, parts); err != nil {
		return res, err
	}
	po := newPreOpener(keys)
	sm, err := openReplayStateMachine(db, parts, opts.DedupWindow, keys, mem, po)
	if err != nil {
		return res, err
	}
	if opts.watch != nil {
		defer opts.watch([]*store.DB{db, keysDB}, sm)()
	}

	lo := alog.Options{Dir: filepath.Join(opts.DataDir, "jetstream"), Listen: "127.0.0.1:-1", Logger: opts.Logger}
	if opts.NATSURL != "" {
		lo = alog.Options{URL: opts.NATSURL, Logger: opts.Logger}
	}
	l, err = alog.Open(ctx, lo)
	if err != nil {
		return res, err
	}
	defer l.Close()
	last, err := l.LastSeq(ctx)
	if err != nil {
		return res, err
	}
	r, err := l.NewReader(1)
	if err != nil {
		return res, err
	}
	defer r.Close()
	f := startFetcher(ctx, r, keys, mem.FetchAhead)
	defer f.stop() // before r.Close: the fetch stage owns r until then
	g := newGroup(db, sm)
	defer g.close()
	for res.Applied < last {
		if err := readGroup(ctx, f, po, g, last, opts.GroupEntries, opts.GroupBytes, nil); err != nil {
			return res, err
		}
		done, err := g.commit()
		if err != nil {
			return res, err
		}
		res.Applied = done[len(done)-1].seq
		n, err := drainTo(db, parts, opts.Out)
		if err != nil {
			return res, err
		}
		res.Outputs += n
	}
	res.OpenedAhead = po.hits.Load()
	res.Digest, err = projections.Digest(db)
	return res, err
}

// readGroup adds to g the log entries after the fetch stage's position up
// to last (which the log holds: they come without waiting for new
// appends), at most entries of them and while g's batch is under bytes.
// Each entry's plaintexts opened ahead are po's current ones while it is
// applied.
func readGroup(ctx context.Context, f *fetcher, po *preOpener, g *group, last uint64, entries, bytes int, added func(seq uint64)) error {
	defer func() { po.cur = nil }()
	for g.count() < entries && g.bytes() < bytes {
		fe, err := f.next(ctx)
		if err != nil {
			return err
		}
		ent := fe.Entry
		po.cur = fe.opened
		if err := g.add(ent); err != nil {
			return err
		}
		if added != nil {
			added(ent.Seq)
		}
		if ent.Seq >= last {
			return nil
		}
	}
	return nil
}

// drainTo hands every pending outbox entry to out, in outbox order, and
// deletes it.
func drainTo(db *store.DB, parts int, out func(projections.OutMsg) error) (int, error) {
	n := 0
	for _, prefix := range projections.OutboxPrefixes(parts) {
		entries, err := projections.Outbox(db, prefix, 1<<30)
		if err != nil || len(entries) == 0 {
			if err != nil {
				return n, err
			}
			continue
		}
		b := db.NewBatch()
		for _, e := range entries {
			if out != nil {
				if err := out(e.Msg); err != nil {
					b.Close()
					return n, err
				}
			}
			if err := b.Delete(e.Key); err != nil {
				b.Close()
				return n, err
			}
			n++
		}
		err = db.Commit(b, false)
		b.Close()
		if err != nil {
			return n, err
		}
	}
	return n, nil
}

// readOnly adapts a Reader to a ReadWriter whose writes are dropped: for
// reading through code that takes a ReadWriter and must not change the
// store (CheckPartitions on a stopped node's state, Preview on a snapshot).
type readOnly struct{ store.Reader }

func (readOnly) Set(_, _ []byte) error { return nil }
func (readOnly) Delete(_ []byte) error { return nil }
