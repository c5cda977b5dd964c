// Package engine wires Aurum's stages together and runs their lifecycle.
// The stages are packages of their own, each handed what it needs as small
// interfaces it declares (wiring, state.go):
//
//	engine/ingest   Edge: validate → seal → group commit; the NATS gateway
//	engine/query    Reader: profile view, events, audiences, preview
//	engine/access   Gate: tokens, sessions, users, sources, NATS authorizer
//	engine/audit    Recorder: the audit log
//	engine/privacy  Service: erasure worker, export, consent
//	engine/outbox   Publisher: outbox → AURUM_OUT
//
// engine itself keeps Open/Close and the goroutines it owns (goRun), the
// apply loop (the state machine over the log, one Pebble batch per group
// of entries) and what it calls after an apply (reload access, kick the
// outbox and the erasure worker), the ticker, control appends (audiences,
// destinations), live rebuilds, offline replay, snapshots, digests and
// metrics. The stages are unexported fields with accessors (Edge, Reader,
// Gate, Recorder, Privacy): *Engine has only its own methods, and whoever
// wires a surface (cmd/aurum's HTTP API, tests) takes each stage from it.
//
// Data flow:
//
//	HTTP / aurum.ingest.<source>  →  ingest.Edge.Ingest (parse, normalise, hash, seal)
//	  → committer (many requests → one log append)  →  AURUM_LOG aurum.log.events
//	  → apply loop (one Pebble batch per group of entries: state + applied position)
//	  → outbox.Publisher  →  AURUM_OUT aurum.identity.merged, aurum.audience.<name>.*
//
// The engine owns every goroutine it starts; Close stops and waits for them.
package engine

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/aurumcdp/aurum/activation"
	"github.com/aurumcdp/aurum/auth"
	"github.com/aurumcdp/aurum/engine/access"
	"github.com/aurumcdp/aurum/engine/audit"
	"github.com/aurumcdp/aurum/engine/base"
	"github.com/aurumcdp/aurum/engine/export"
	"github.com/aurumcdp/aurum/engine/ingest"
	"github.com/aurumcdp/aurum/engine/matching"
	"github.com/aurumcdp/aurum/engine/models"
	"github.com/aurumcdp/aurum/engine/outbox"
	"github.com/aurumcdp/aurum/engine/privacy"
	"github.com/aurumcdp/aurum/engine/query"
	alog "github.com/aurumcdp/aurum/log"
	"github.com/aurumcdp/aurum/projections"
	"github.com/aurumcdp/aurum/projections/identity"
	"github.com/aurumcdp/aurum/seal"
	"github.com/aurumcdp/aurum/store"
	"github.com/prometheus/client_golang/prometheus"
)

// Options configure an Engine. The zero value of every field has a default.
type Options struct {
	// DataDir holds the JetStream store (jetstream/), the projections
	// (state/), the data keys (keys/) and, unless MasterKey is set, the master
	// key file (master.key). Default "./aurum-data".
	DataDir string
	// NATSListen is the embedded NATS server's client listener. Default
	// "127.0.0.1:4222"; port -1 picks a free port.
	NATSListen string
	// NATSURL, when set, uses an existing NATS/JetStream deployment instead of
	// the embedded server.
	NATSURL string
	// NATSTLSCertFile and NATSTLSKeyFile (PEM, both or neither) make the
	// embedded server's client listener require TLS. The engine's own
	// connection is in-process and unaffected.
	NATSTLSCertFile, NATSTLSKeyFile string
	// AdminTokenHash is the SHA-256 of the bootstrap admin token (the one
	// given to serve): on the embedded NATS server it gets full
	// permissions. Empty: no bootstrap token on NATS.
	AdminTokenHash []byte
	// NATSNoAuth lets any client on the embedded server's listener do
	// anything, without credentials: for local experiments only. By
	// default producers present their source's write key and readers an
	// API token (see natsPermissions and docs/security.md). No effect with
	// NATSURL: the deployment's authentication applies.
	NATSNoAuth bool
	// NATSCluster, when set, makes the embedded NATS server a node of a NATS
	// cluster with clustered JetStream (server name, route listener,
	// routes). Not with NATSURL: the deployment is then the cluster.
	NATSCluster *alog.ClusterOptions
	// Replicas is the replica count of every stream of the log, in
	// [1, 5] (0 means 1). Above 1 it needs NATSCluster or NATSURL.
	Replicas int
	// FsyncAlways makes every acknowledged event survive power loss: the log
	// fsyncs before it acknowledges. Without it an acknowledged event survives
	// a crash of the process, not of the machine.
	FsyncAlways bool
	// MasterKey wraps the data keys (32 bytes). Default: read or create
	// DataDir/master.key.
	MasterKey []byte
	// SharedKeys keeps the data keys also in the log's replicated stream
	// AURUM_KEYS, so that every node of a cluster opens what any node
	// sealed (all nodes share the master key; see ARCHITECTURE.md
	// "Erasure"). cmd/aurum sets it with --cluster.
	SharedKeys bool
	// Identity configures the keychain. Default identity.DefaultConfig().
	Identity *identity.Config
	// Partitions splits the profile space. Default 16. Fixed when the data
	// directory is created.
	Partitions int
	// DedupWindow is how long (in log time) a messageId is remembered per
	// source. Default 30 days.
	DedupWindow time.Duration
	// PhoneRegion is the default region for phone numbers without an
	// international prefix ("" = only international numbers become E.164).
	PhoneRegion string
	// MaxBatchBytes bounds one log append. Default 1 MB.
	MaxBatchBytes int
	// ApplyGroupEntries, ApplyGroupBytes and ApplyGroupTime bound a group:
	// log entries the apply loop finds already at hand and applies in one
	// Pebble batch, committed once (replays use the first two). Defaults
	// 256 entries, 8 MiB of batch, 5 ms; ApplyGroupEntries 1: one batch
	// per entry. A lone entry is applied at once.
	ApplyGroupEntries int
	ApplyGroupBytes   int
	ApplyGroupTime    time.Duration
	// StateWAL gives the live state store a write-ahead log, synced off
	// the apply loop every 200 ms and when it goes idle (the engine before
	// write-back state). Default false: the live state has no WAL of its
	// own; what the apply loop commits stays in Pebble's memtables until a
	// checkpoint flushes them to tables (a memtable that fills is flushed
	// at once; otherwise StateCheckpoint after the last one), and a crash
	// takes the state back to its last checkpoint, from where the log is
	// applied again. The outputs derived again carry the same ids, and
	// the publisher's progress recorded on the log keeps them from going
	// out twice (engine/outbox/progress.go).
	StateWAL bool
	// StateCheckpoint is how long applied work stays at most in memory
	// only, without StateWAL (default 30 s). A checkpoint writes a table
	// that later compactions merge into the rest, so a short interval
	// costs compaction work at low event rates.
	StateCheckpoint time.Duration
	// OutDuplicateWindow is AURUM_OUT's duplicate window (default
	// log.DefaultOutDuplicateWindow).
	OutDuplicateWindow time.Duration
	// Webhook delivery: per-attempt timeout, retry backoff bounds and
	// attempts before a transition is dead-lettered (zero: the activation
	// package's defaults).
	WebhookTimeout                       time.Duration
	WebhookBackoffMin, WebhookBackoffMax time.Duration
	WebhookMaxAttempts                   int
	// ConnectorSyncPause is waited between two batches of a connector's
	// first sync (zero: none).
	ConnectorSyncPause time.Duration
	// ConnectorConsentSweep is how often connectors whose tool keeps a list
	// remove the people whose consent was withdrawn (zero: the activation
	// package's default, 1 min; negative: never).
	ConnectorConsentSweep time.Duration
	// ErasureRetry is how often the erasure worker retries what an
	// erasure has not finished: the connector destinations that still hold
	// the person (zero: privacy.DefaultInterval, 5 s).
	ErasureRetry time.Duration
	// Export is the warehouse export (engine/export, docs/export.md):
	// its directory (empty: none), schedule, personal columns and the
	// runs kept. Its Now and Logger are the engine's.
	Export export.Options
	// ConsentDefaultDenied makes a channel without any consent statement
	// count as denied (opt-in, what EU marketing usually needs). Default:
	// granted (opt-out: a person is contacted until they withdraw).
	ConsentDefaultDenied bool
	// SnapshotsKept is how many snapshots of the projections are kept.
	// Default 3.
	SnapshotsKept int
	// TickPeriod is how often the passage of time is recorded on the log
	// (a tick record), which fires time-driven audience exits and entries.
	// Default 1 s; negative disables ticks.
	TickPeriod time.Duration
	// HistoryInterval is how often the node samples its event rates and
	// audience sizes for the console's charts (StatsHistory). Default 10 s.
	HistoryInterval time.Duration
	// HistorySamples is how many samples the history keeps. Default 360
	// (one hour at 10 s).
	HistorySamples int
	// SessionTTL is how long a login session lasts. Default 12 h.
	SessionTTL time.Duration
	// PasswordParams are the argon2id costs of new password hashes. Zero:
	// auth.DefaultPasswordParams.
	PasswordParams auth.PasswordParams
	// Now is the edge clock that stamps receive times. Default time.Now. The
	// state machine never reads it: it sees only the times on the log.
	Now func() time.Time
	// Logger receives operational logs. Default: discard.
	Logger *slog.Logger
	// Registry receives the engine's metrics. Default: a fresh registry.
	Registry *prometheus.Registry
	// MemoryLimit is the resident memory (bytes) the whole process may
	// use: the engine sizes its caches, filters and Pebble's memtables
	// from it (MemorySizesFor), so that its memory stops growing with the
	// profiles below it. The engine does not set the Go runtime's soft
	// limit (process-wide): the embedding process sets
	// MemorySizes().GoLimit with debug.SetMemoryLimit, as aurum serve
	// does. 0: no limit, the fixed sizes (MemorySizesFor(0)); else at
	// least MinMemoryLimit.
	MemoryLimit int64
	// Cluster is this node's view of the cluster (cmd/aurum passes its
	// *cluster.Node). Nil: a single node that publishes every partition
	// and runs every singleton.
	Cluster Cluster
	// Trace receives the times of the stages from the log to the outputs
	// (apply groups, outbox passes, the live state store's stalls,
	// flushes and compactions), for latency measurements. Nil: none.
	Trace *Trace

	// afterCommit, set by this package's tests, runs in the apply loop
	// after a group committed and let go of the state lock, before the
	// loop acts on it (afterApply): it widens the moment a replay's swap
	// must not miss (TestReplaySwapsUnderLoad).
	afterCommit func()
}

// Cluster is this node's view of the cluster; nil means a single node that
// owns every partition and runs every singleton. With one, the outbox
// publishes only the partitions this node owns, fenced by epoch; the
// destination workers, and with them the shared steps of an erasure, run on
// the owner of partition 0, fenced by its claim; the ticker and the other
// singletons (the NATS gateway among them) run on the leader only
// (cluster.go).
type Cluster interface {
	Name() string                       // this node's name (goes into fence claims)
	Owns(p int) (epoch uint64, ok bool) // owner of partition p now (lease-checked), under epoch
	IsLeader() bool                     // runs the singletons
}

func (o *Options) ensureDefaults() {
	if o.DataDir == "" {
		o.DataDir = "./aurum-data"
	}
	if o.NATSListen == "" {
		o.NATSListen = "127.0.0.1:4222"
	}
	if o.Identity == nil {
		c := identity.DefaultConfig()
		o.Identity = &c
	}
	if o.Partitions == 0 {
		o.Partitions = 16
	}
	if o.DedupWindow == 0 {
		o.DedupWindow = 30 * 24 * time.Hour
	}
	if o.SnapshotsKept == 0 {
		o.SnapshotsKept = 3
	}
	if o.TickPeriod == 0 {
		o.TickPeriod = time.Second
	}
	if o.HistoryInterval <= 0 {
		o.HistoryInterval = 10 * time.Second
	}
	if o.HistorySamples <= 0 {
		o.HistorySamples = 360
	}
	if o.MaxBatchBytes == 0 {
		o.MaxBatchBytes = 1 << 20
	}
	if o.ApplyGroupEntries <= 0 {
		o.ApplyGroupEntries = DefaultApplyGroupEntries
	}
	if o.ApplyGroupBytes <= 0 {
		o.ApplyGroupBytes = DefaultApplyGroupBytes
	}
	if o.ApplyGroupTime <= 0 {
		o.ApplyGroupTime = 5 * time.Millisecond
	}
	if o.StateCheckpoint <= 0 {
		o.StateCheckpoint = DefaultStateCheckpoint
	}
	if o.SessionTTL == 0 {
		o.SessionTTL = 12 * time.Hour
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Registry == nil {
		o.Registry = prometheus.NewRegistry()
	}
}

// keysStoreOptions configures a keys/ database without a memory limit
// (MemorySizes.smallStore).
func keysStoreOptions(logger *slog.Logger) *store.Options {
	return MemorySizesFor(0).smallStore(logger)
}

// Engine is a running Aurum node.
type Engine struct {
	opts    Options
	mem     MemorySizes // of opts.MemoryLimit
	history *statsRing
	log     *alog.Log
	state   *store.DB
	keysDB  *store.DB
	refsDB  *store.DB // activation's connector refs (actstore.go)
	keys    *seal.Keyring
	sm      *projections.StateMachine
	metrics *metrics
	ids     *base.IDSource
	// clusterRefs is the activation store of a cluster node (the stream
	// and refsDB as its mirror); nil on a single node (refStore).
	clusterRefs *clusterRefs

	// stateMu guards state and sm against a rebuild's swap: readers and
	// the apply loop hold it shared while they use them; the swap holds it
	// exclusively.
	stateMu    sync.RWMutex
	rebuild    *rebuilder
	dispatcher *activation.Dispatcher
	destMu     sync.Mutex // serialises reloadDestinations (apply loop, leadership watcher)
	// destsOK and destsEpoch: whether the last reloadDestinations ran the
	// workers here, and under which epoch (deliverer; under destMu).
	destsOK    bool
	destsEpoch uint64
	// destsReady is 1 + the epoch under which the destinations were last
	// loaded here, the activation store caught up (0: they were not):
	// erasureRunner asks it.
	destsReady atomic.Uint64
	// deliveryFenced is the epoch under which a fence check found this
	// node's claim superseded (deliveryFence).
	deliveryFenced atomic.Uint64
	applied        *appliedWatch
	openTarget     uint64 // the log's last sequence at Open (CatchingUp)
	// stateSync carries the apply loop's requests to sync the live
	// state's WAL to stateSyncLoop, or without a WAL for a checkpoint to
	// checkpointLoop (1-buffered: one request kept).
	stateSync chan struct{}

	// The stages, wired by Open (their accessors are in state.go).
	edge      *ingest.Edge
	reader    *query.Reader
	gate      *access.Gate
	recorder  *audit.Recorder
	publisher *outbox.Publisher
	models    *models.Service
	exporter  *export.Exporter
	matching  *matching.Service
	privacy   *privacy.Service

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	closeOnce sync.Once
	closeErr  error

	failMu  sync.Mutex
	failErr error // the first background task failure
}

// Open starts an engine: the log (embedded NATS unless NATSURL is set), the
// stores, the apply loop, the outbox publisher, the committer and the gateway
// consuming aurum.ingest.>.
func Open(ctx context.Context, opts Options) (_ *Engine, err error) {
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	opts.ensureDefaults()
	if err := os.MkdirAll(opts.DataDir, 0o700); err != nil {
		return nil, fmt.Errorf("engine: data dir: %w", err)
	}
	e := &Engine{opts: opts, mem: MemorySizesFor(opts.MemoryLimit), ids: base.NewIDSource(), rebuild: &rebuilder{}, stateSync: make(chan struct{}, 1),
		history: newStatsRing(opts.HistorySamples)}
	if e.mem.Limit > 0 {
		opts.Logger.Info("engine: memory bounds", "sizes", e.mem.String())
	}
	var closers []func() error
	defer func() {
		if err != nil {
			for i := len(closers) - 1; i >= 0; i-- {
				_ = closers[i]()
			}
		}
	}()

	master := opts.MasterKey
	if master == nil {
		k, created, err := seal.EnsureMasterKeyFile(filepath.Join(opts.DataDir, "master.key"))
		if err != nil {
			return nil, fmt.Errorf("engine: master key: %w", err)
		}
		if created {
			opts.Logger.Warn("generated a master key; back it up, without it the data is unreadable",
				"path", filepath.Join(opts.DataDir, "master.key"))
		}
		master = k
	}
	if e.keysDB, err = store.Open(filepath.Join(opts.DataDir, "keys"), e.mem.smallStore(opts.Logger)); err != nil {
		return nil, fmt.Errorf("engine: keys store: %w", err)
	}
	closers = append(closers, e.keysDB.Close)
	// What connectors need to erase a person later (activation.Options.Refs):
	// not state (not rebuildable from the log), not keys.
	if e.refsDB, err = store.Open(filepath.Join(opts.DataDir, "activation"), e.mem.smallStore(opts.Logger)); err != nil {
		return nil, fmt.Errorf("engine: activation store: %w", err)
	}
	closers = append(closers, e.refsDB.Close)
	keyOpts := e.mem.sealOptions()
	if opts.SharedKeys {
		keyOpts.Shared = sharedKeys{func() *alog.Log { return e.log }}
	}
	if e.keys, err = seal.NewKeyring(e.keysDB, master, &keyOpts); err != nil {
		return nil, err
	}
	if err := recoverSwap(opts.DataDir); err != nil {
		return nil, fmt.Errorf("engine: recover an interrupted replay: %w", err)
	}
	if e.state, err = store.Open(filepath.Join(opts.DataDir, "state"), e.liveStateOptions()); err != nil {
		return nil, fmt.Errorf("engine: state store: %w", err)
	}
	closers = append(closers, e.state.Close)
	parts, err := checkPartitions(e.state, opts.Partitions)
	if err != nil {
		return nil, err
	}
	e.opts.Partitions = parts
	if n, err := projections.MigrateEventRecords(e.state, parts); err != nil {
		return nil, fmt.Errorf("engine: state store: %w", err)
	} else if n > 0 {
		e.opts.Logger.Info("engine: state store: event records moved to their own key range (issue #15)", "records", n)
	}
	if e.sm, err = openStateMachine(e.state, parts, opts.DedupWindow, e.keys, e.mem); err != nil {
		return nil, err
	}

	// The NATS authorizer reads the sources and tokens: load them first.
	if e.gate, err = access.New(e.state, access.Options{Now: opts.Now, SessionTTL: opts.SessionTTL,
		PasswordParams: opts.PasswordParams, AdminTokenHash: opts.AdminTokenHash}, e.keys, e.ids, wiring{e}, wiring{e}, wiring{e}); err != nil {
		return nil, err
	}
	fsync := alog.FsyncDefault
	if opts.FsyncAlways {
		fsync = alog.FsyncAlways
	}
	var authz alog.Authorizer
	if !opts.NATSNoAuth {
		authz = alog.AuthorizerFunc(e.gate.AuthorizeNATS)
	}
	if e.log, err = alog.Open(ctx, alog.Options{
		Dir:        filepath.Join(opts.DataDir, "jetstream"),
		Listen:     opts.NATSListen,
		URL:        opts.NATSURL,
		Fsync:      fsync,
		Cluster:    opts.NATSCluster,
		Replicas:   opts.Replicas,
		Logger:     opts.Logger,
		Authorizer: authz,

		OutDuplicateWindow: opts.OutDuplicateWindow,

		TLSCertFile: opts.NATSTLSCertFile,
		TLSKeyFile:  opts.NATSTLSKeyFile,
	}); err != nil {
		return nil, err
	}
	closers = append(closers, e.log.Close)
	if opts.SharedKeys {
		// Once per keys database: the keys of a node that ran alone.
		n, err := e.keys.Share()
		if err != nil {
			return nil, fmt.Errorf("engine: shared keys: %w", err)
		}
		if n > 0 {
			opts.Logger.Info("engine: put this node's data keys into the shared key store", "keys", n)
		}
	}
	// After the log: with SharedKeys the keys are destroyed there too.
	if err := privacy.RedestroySuppressed(e.state, e.keys, opts.Logger); err != nil {
		return nil, err
	}

	e.metrics = newMetrics(opts.Registry)
	registerMemoryMetrics(opts.Registry, e.mem)
	e.recorder = audit.New(audit.Options{Now: opts.Now, PhoneRegion: opts.PhoneRegion, Logger: opts.Logger, Registry: opts.Registry},
		e.log, e.keys, e.ids)
	applied, err := readApplied(e.state)
	if err != nil {
		return nil, err
	}
	e.applied = newAppliedWatch(applied)
	e.metrics.appliedSeq.Set(float64(applied))
	if last, err := e.log.LastSeq(ctx); err == nil {
		e.openTarget = last
	} else {
		opts.Logger.Warn("engine: the log's end is unknown at start; not reporting a catch-up", "err", err)
	}

	if err := e.publishIdentityConfig(ctx); err != nil {
		return nil, err
	}
	e.ctx, e.cancel = context.WithCancel(context.Background())
	var refs store.ReadWriter = refStore{e.refsDB}
	if opts.Cluster != nil {
		if err := e.log.EnsureActivationStream(ctx); err != nil {
			e.cancel()
			return nil, err
		}
		if e.clusterRefs, err = openClusterRefs(ctx, e.ctx, e.refsDB, e.log, opts.Logger); err != nil {
			e.cancel()
			return nil, err
		}
		refs = e.clusterRefs
	} else if err := leaveCluster(e.refsDB, opts.Logger); err != nil {
		e.cancel()
		return nil, err
	}
	e.edge = ingest.New(e.ctx, ingest.Options{Identity: opts.Identity, PhoneRegion: opts.PhoneRegion,
		MaxBatchBytes: opts.MaxBatchBytes, Now: opts.Now, Registry: opts.Registry, Leader: gatewayLeader(opts)},
		e.log, e.keys, e.ids, e.gate)
	e.reader = query.New(query.Options{PhoneRegion: opts.PhoneRegion, ConsentDefaultDenied: opts.ConsentDefaultDenied}, e.keys, wiring{e})
	e.privacy = privacy.New(privacy.Options{Now: opts.Now, PhoneRegion: opts.PhoneRegion,
		ConsentDefaultDenied: opts.ConsentDefaultDenied, Logger: opts.Logger, Registry: opts.Registry, Leader: e.erasureRunner,
		Interval: opts.ErasureRetry},
		privacy.Deps{Log: e.log, Keys: e.keys, IDs: e.ids, Control: wiring{e}, Applied: wiring{e}, State: wiring{e},
			Outbox: outboxBarrier{e}, Profiles: e.reader, Ingest: e.edge, Sources: e.gate, Destinations: erasureDestinations{e}})
	e.models = models.New(models.Options{Logger: opts.Logger, Leader: e.leader, Now: opts.Now},
		models.Deps{State: wiring{e}, Control: wiring{e}, Applied: wiring{e}, Synced: e, Open: stateOpener(e.keys)})
	xo := opts.Export
	xo.Now, xo.Logger, xo.Leader = opts.Now, opts.Logger, e.leader
	e.exporter = export.New(xo, export.Deps{State: wiring{e}, Control: wiring{e}, Applied: wiring{e}, Open: e.keys.Open})
	e.matching = matching.New(matching.Options{Logger: opts.Logger, Leader: e.leader,
		NewID: func() []byte { return e.ids.Next(e.opts.Now()) }},
		matching.Deps{State: wiring{e}, Control: wiring{e}, Applied: wiring{e}, Profiles: e.reader, Identifiers: e.reader})
	e.publisher = outbox.New(outbox.Options{Partitions: e.opts.Partitions, Logger: opts.Logger, Registry: opts.Registry,
		Cluster: opts.Cluster, Applied: e.applied.get, Erasing: e.erasing, Trace: e.passTrace()},
		e.log, e.keys, wiring{e}, e.privacy)
	e.dispatcher = activation.NewDispatcher(e.log, activation.Options{Logger: opts.Logger, Timeout: opts.WebhookTimeout,
		BackoffMin: opts.WebhookBackoffMin, BackoffMax: opts.WebhookBackoffMax, MaxAttempts: opts.WebhookMaxAttempts,
		Consent: e.privacy.ConsentChecker(), OnSkip: func(dest, reason string) { e.metrics.webhookSkipped.WithLabelValues(dest, reason).Inc() },
		People: people{e}, Refs: refs, SyncBatchPause: opts.ConnectorSyncPause,
		ConsentSweep: opts.ConnectorConsentSweep, Fence: e.deliveryFence()})
	if err := e.reloadDestinations(); err != nil {
		e.dispatcher.Close()
		e.cancel()
		return nil, err
	}
	e.start(applied)
	opts.Logger.Info("engine started", "data_dir", opts.DataDir, "partitions", parts,
		"applied_seq", applied, "nats", e.log.ClientURL(), "fsync_always", opts.FsyncAlways)
	return e, nil
}

func (e *Engine) start(applied uint64) {
	e.goRun("committer", e.edge.RunCommitter)
	e.goRun("apply", func(ctx context.Context) error { return e.applyLoop(ctx, applied+1) })
	e.goRun("statesync", e.stateSyncLoop)
	e.goRun("outbox", e.publisher.Run)
	e.goRun("gateway", e.edge.RunGateway)
	e.goRun("erasure", e.privacy.RunErasures)
	e.goRun("models", e.models.Run)
	e.goRun("export", func(ctx context.Context) error { e.exporter.Scheduler(ctx); return nil })
	e.goRun("matching", e.matching.Run)
	e.goRun("history", e.historyLoop)
	if e.opts.SharedKeys {
		e.goRun("keys", e.followKeys)
	}
	if e.opts.TickPeriod > 0 {
		e.goRun("ticker", e.tickLoop)
	}
	if e.opts.Cluster != nil {
		e.goRun("activation", e.clusterRefs.run)
		e.goRun("leadership", e.watchLeadership)
	}
}

// goRun runs fn in a goroutine owned by the engine. A failure other than
// shutdown is logged and stops the engine's background work (a state machine
// that cannot apply must not skip).
func (e *Engine) goRun(name string, fn func(ctx context.Context) error) {
	e.wg.Add(1)
	go func() {
		defer e.wg.Done()
		err := fn(e.ctx)
		if err != nil && !errors.Is(err, context.Canceled) && e.ctx.Err() == nil {
			e.opts.Logger.Error("engine: background task failed", "task", name, "err", err)
			e.metrics.failures.WithLabelValues(name).Inc()
			e.failMu.Lock()
			if e.failErr == nil {
				e.failErr = fmt.Errorf("engine: %s: %w", name, err)
			}
			e.failMu.Unlock()
			e.cancel()
		}
	}()
}

// Done is closed when the engine stops, by Close or because a background
// task failed (Err then says which and why).
func (e *Engine) Done() <-chan struct{} { return e.ctx.Done() }

// Err returns the failure that stopped the engine, or nil.
func (e *Engine) Err() error {
	e.failMu.Lock()
	defer e.failMu.Unlock()
	return e.failErr
}

// Healthy reports whether the background tasks are running and, in a
// cluster, whether this node's JetStream replicas are current (a restarted
// node is catching up until they are).
func (e *Engine) Healthy() error {
	if e.ctx.Err() != nil {
		return base.ErrClosed
	}
	return e.log.Current()
}

// CatchingUp reports whether this node is still applying what the log
// held when it started (applied < target): its credentials, sources and
// other state may lag the cluster's until then.
func (e *Engine) CatchingUp() (applied, target uint64, catching bool) {
	applied = e.applied.get()
	return applied, e.openTarget, applied < e.openTarget
}

// NATSURL is the URL outside producers and subscribers connect to.
func (e *Engine) NATSURL() string { return e.log.ClientURL() }

// Registry is the engine's metrics registry.
func (e *Engine) Registry() *prometheus.Registry { return e.opts.Registry }

// Partitions is the number of profile partitions.
func (e *Engine) Partitions() int { return e.opts.Partitions }

// Close stops the background tasks, waits for them and closes the log and the
// stores. Events acknowledged before Close are on the log; the apply loop
// picks up where it stopped on the next Open.
func (e *Engine) Close() error {
	e.closeOnce.Do(func() {
		e.cancel()
		e.wg.Wait()
		var flush error
		if !e.opts.StateWAL {
			flush = e.state.Flush() // a last checkpoint: the next Open starts from here
		}
		errs := []error{flush, e.dispatcher.Close(), e.log.Close(), e.state.Close(), e.keysDB.Close(), e.refsDB.Close()}
		e.closeErr = errors.Join(errs...)
	})
	return e.closeErr
}
