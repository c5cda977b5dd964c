// Package log is Aurum's event log: the only package that imports nats-server
// and nats.go. It owns the embedded NATS server with JetStream (or a
// connection to an external deployment), the six streams, appends, ordered
// reads of the truth log, the raw-ingest stream and its gateway consumer, dead letters, and
// durable in-order consumers of the other streams (ConsumeDurable, e.g.
// one per webhook destination on AURUM_OUT).
//
// Streams (created or updated by Open; file storage; Options.Replicas copies,
// see cluster.go):
//
//	AURUM_LOG     aurum.log.>                          truth log; limits, no max age, duplicate window 2 min
//	AURUM_INGEST  aurum.ingest.>                       raw JSON from producers; limits, purged by the
//	                                                   gateway once handled (ingest.go)
//	AURUM_DLQ     aurum.dlq.>                          dead letters (JSON); limits, MaxAge Options.DeadLetterMaxAge
//	AURUM_OUT     aurum.identity.>, aurum.audience.>   outputs; limits, MaxAge Options.OutMaxAge,
//	              aurum.fence.>                        duplicate window Options.OutDuplicateWindow;
//	                                                   fence claims and outbox progress (fence.go)
//	AURUM_AUDIT   aurum.audit                          audit log of management actions; limits, no max
//	                                                   age, DenyDelete and DenyPurge (see audit.go)
//	AURUM_KEYS    aurum.keys.>                         shared data keys (wrapped) and tombstones; limits,
//	                                                   no max age, MaxMsgSize 4 KiB (see keys.go)
//
// and, created by EnsureActivationStream for a cluster's engine only:
//
//	AURUM_ACTIVATION  aurum.activation.>               the activation store (connector refs, first sync
//	                                                   marks); one message per subject (see activation.go)
//
// Messages are at most MaxMessageSize (4 MiB); the embedded server's
// MaxPayload and every stream's MaxMsgSize but AURUM_KEYS's are
// ServerMaxPayload (8 MiB) to leave room for headers.
package log

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Stream names, subject prefixes and the gateway consumer name.
const (
	StreamLog        = "AURUM_LOG"
	StreamIngest     = "AURUM_INGEST"
	StreamDeadLetter = "AURUM_DLQ"
	StreamOut        = "AURUM_OUT"

	LogPrefix        = "aurum.log."
	IngestPrefix     = "aurum.ingest."
	DeadLetterPrefix = "aurum.dlq."
	IdentityPrefix   = "aurum.identity."
	AudiencePrefix   = "aurum.audience."

	// GatewayConsumer is the durable pull consumer of a work-queue
	// AURUM_INGEST of an earlier build, used once to drain it (the
	// gateway now reads through ephemeral consumers without acks).
	GatewayConsumer = "aurum-gateway"

	// MaxMessageSize is the largest payload Append accepts.
	MaxMessageSize = 4 << 20
	// ServerMaxPayload is the embedded server's MaxPayload and every
	// stream's MaxMsgSize (payload plus headers).
	ServerMaxPayload = 8 << 20

	logDuplicateWindow = 2 * time.Minute
)

// Errors returned by the package (match with errors.Is).
var (
	ErrClosed         = errors.New("log: closed")
	ErrInvalidSubject = errors.New("log: invalid subject")
	ErrTooLarge       = errors.New("log: message too large")
)

// Log is an open event log. Its methods are safe for concurrent use.
type Log struct {
	opts      Options
	logger    *slog.Logger
	srv       *server.Server // nil with Options.URL
	auth      *serverAuth    // nil without an embedded server or Options.Authorizer
	nc        *nats.Conn
	js        jetstream.JetStream
	clientURL string
	connGone  chan struct{} // closed by nc's ClosedHandler

	mu     sync.Mutex
	closed bool
	done   chan struct{} // closed at the start of Close
	// closing is cancelled at the start of Close, with done.
	closing       context.Context
	cancelClosing context.CancelFunc
	readers       map[*Reader]struct{}
	active        sync.WaitGroup // running ConsumeIngest and ConsumeDurable calls
	bg            sync.WaitGroup // Readers' deletions of their old consumers

	keys keysStream // AURUM_KEYS, looked up once (keys.go)

	// ingestLegacy is set while AURUM_INGEST is the work queue of an
	// earlier build, until the gateway has drained and re-created it
	// (ingest.go, upgradeIngest).
	ingestLegacy atomic.Bool
	// beforeIngestPurge is a test hook (nil in production): called before
	// each purge of AURUM_INGEST with the batch's last sequence; an error
	// stands for a crash before the purge, which is then skipped.
	beforeIngestPurge func(last uint64) error
}

// enter registers a long-running call that Close waits for; it reports
// false when the Log is closed. The caller calls l.active.Done.
func (l *Log) enter() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return false
	}
	l.active.Add(1)
	return true
}

// runActive runs a long-running call (a consumer) that Close stops and
// waits for: run's context ends with ctx or at Close. It returns ErrClosed
// when the Log is (or gets) closed, nil when ctx ended, and run's error
// otherwise.
func (l *Log) runActive(ctx context.Context, run func(ctx context.Context) error) error {
	if !l.enter() {
		return ErrClosed
	}
	defer l.active.Done()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stop := context.AfterFunc(l.closing, cancel)
	defer stop()
	err := run(ctx)
	if l.isClosed() {
		return ErrClosed
	}
	if ctx.Err() != nil {
		return nil
	}
	return err
}

// Open starts the embedded server (or connects to Options.URL), and creates
// or updates the streams. Open on the same Dir continues the same streams.
func Open(ctx context.Context, opts Options) (*Log, error) {
	opts.EnsureDefaults()
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	l := &Log{
		opts:     opts,
		logger:   opts.Logger,
		connGone: make(chan struct{}),
		done:     make(chan struct{}),
		readers:  make(map[*Reader]struct{}),
	}
	l.closing, l.cancelClosing = context.WithCancel(context.Background())
	natsOpts := []nats.Option{
		nats.Name("aurum"),
		nats.ClosedHandler(func(*nats.Conn) { close(l.connGone) }),
		nats.DrainTimeout(opts.RequestTimeout),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(250 * time.Millisecond),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			if err != nil {
				l.logger.Warn("log: disconnected from NATS", "err", err)
			}
		}),
		nats.ReconnectHandler(func(nc *nats.Conn) {
			l.logger.Info("log: reconnected to NATS", "url", nc.ConnectedUrlRedacted())
		}),
	}
	connectURL := opts.URL
	if opts.URL == "" {
		if opts.Authorizer != nil {
			a, tok, err := newServerAuth(opts.Authorizer, opts.Now, opts.Logger.Info)
			if err != nil {
				return nil, err
			}
			l.auth = a
			// Nobody but a Full grant may read the log's own replies.
			natsOpts = append(natsOpts, nats.Token(tok), nats.CustomInboxPrefix(InternalInboxPrefix))
			a.own(StreamIngest, GatewayConsumer)
		}
		srv, err := startServer(opts, l.auth)
		if err != nil {
			return nil, err
		}
		l.srv = srv
		l.clientURL = srv.ClientURL()
		natsOpts = append(natsOpts, nats.InProcessServer(srv))
		// The in-process connection bypasses the listener and its TLS.
		connectURL = strings.Replace(l.clientURL, "tls://", "nats://", 1)
		l.logger.Info("log: embedded NATS JetStream listening", "url", l.clientURL, "dir", opts.Dir, "fsync", opts.Fsync.String(), "auth", l.auth != nil)
	} else {
		l.clientURL = opts.URL
		if opts.Authorizer != nil {
			l.logger.Info("log: external NATS: its own authentication and permissions apply", "url", opts.URL)
		}
		if opts.Fsync == FsyncAlways {
			l.logger.Warn("log: fsync=always requested but an external NATS URL is set: syncing is the deployment's setting", "url", opts.URL)
		}
	}
	nc, err := nats.Connect(connectURL, natsOpts...)
	if err != nil {
		l.stopServer()
		return nil, fmt.Errorf("log: connect %s: %w", l.clientURL, err)
	}
	l.nc = nc
	if opts.URL != "" {
		l.logger.Info("log: connected to external NATS", "url", nc.ConnectedUrlRedacted())
		if nc.MaxPayload() < ServerMaxPayload {
			l.logger.Warn("log: external NATS max_payload is below the recommended size", "max_payload", nc.MaxPayload(), "recommended", ServerMaxPayload)
		}
	}
	js, err := jetstream.New(nc,
		jetstream.WithPublishAsyncMaxPending(opts.MaxAsyncPending),
		jetstream.WithPublishAsyncTimeout(opts.RequestTimeout),
	)
	if err != nil {
		l.shutdown()
		return nil, fmt.Errorf("log: jetstream: %w", err)
	}
	l.js = js
	if err := l.createStreams(ctx); err != nil {
		l.shutdown()
		return nil, err
	}
	return l, nil
}

// baseStreamConfig is the configuration every Aurum stream starts from:
// limits, file storage, Options.Replicas copies, no size limits.
func (l *Log) baseStreamConfig(name string, subjects ...string) jetstream.StreamConfig {
	return jetstream.StreamConfig{
		Name:       name,
		Subjects:   subjects,
		Retention:  jetstream.LimitsPolicy,
		Storage:    jetstream.FileStorage,
		Replicas:   l.opts.Replicas,
		MaxMsgSize: ServerMaxPayload,
		MaxMsgs:    -1,
		MaxBytes:   -1,
		Discard:    jetstream.DiscardOld,
	}
}

func (l *Log) streamConfigs() []jetstream.StreamConfig {
	base := l.baseStreamConfig
	logCfg := base(StreamLog, LogPrefix+">")
	logCfg.Description = "Aurum truth log"
	logCfg.Duplicates = logDuplicateWindow

	ingest := l.ingestConfig()

	dlq := base(StreamDeadLetter, DeadLetterPrefix+">")
	dlq.Description = "Aurum dead letters"
	dlq.MaxAge = l.opts.DeadLetterMaxAge

	out := base(StreamOut, IdentityPrefix+">", AudiencePrefix+">", FencePrefix+">")
	out.Description = "Aurum outputs for subscribers"
	out.AllowRollup = true // outbox progress (fence.go)
	out.MaxAge = l.opts.OutMaxAge
	out.Duplicates = l.opts.OutDuplicateWindow

	audit := base(StreamAudit, SubjectAudit)
	audit.Description = "Aurum audit log of management actions"
	audit.Duplicates = logDuplicateWindow
	audit.DenyDelete = true
	audit.DenyPurge = true

	keys := base(StreamKeys, KeysPrefix+">")
	keys.Description = "Aurum shared data keys (wrapped) and their tombstones"
	keys.MaxMsgSize = keysMaxMsgSize

	return []jetstream.StreamConfig{logCfg, ingest, dlq, out, audit, keys}
}

func startServer(opts Options, auth *serverAuth) (*server.Server, error) {
	host, port, err := splitListen(opts.Listen)
	if err != nil {
		return nil, fmt.Errorf("log: %w", err)
	}
	serverName := "aurum"
	if opts.Cluster != nil {
		serverName = opts.Cluster.ServerName
	}
	sopts := &server.Options{
		ServerName:             serverName,
		Host:                   host,
		Port:                   port,
		JetStream:              true,
		StoreDir:               opts.Dir,
		MaxPayload:             ServerMaxPayload,
		SyncAlways:             opts.Fsync == FsyncAlways,
		NoSigs:                 true,
		DisableJetStreamBanner: true,
	}
	if auth != nil {
		sopts.CustomClientAuthentication = auth
	}
	if opts.Cluster != nil {
		if err := clusterServerOptions(sopts, opts.Cluster); err != nil {
			return nil, err
		}
	}
	if opts.TLSCertFile != "" {
		tc, err := server.GenTLSConfig(&server.TLSConfigOpts{CertFile: opts.TLSCertFile, KeyFile: opts.TLSKeyFile})
		if err != nil {
			return nil, fmt.Errorf("log: TLS: %w", err)
		}
		// Clients on the listener must use TLS; the engine's own
		// in-process connection does not go through the listener.
		sopts.TLS, sopts.TLSConfig, sopts.TLSTimeout = true, tc, 2
	}
	srv, err := server.NewServer(sopts)
	if err != nil {
		return nil, fmt.Errorf("log: embedded server: %w", err)
	}
	srv.SetLoggerV2(serverLogger{opts.Logger}, false, false, false)
	srv.Start()
	if !srv.ReadyForConnections(30 * time.Second) {
		srv.Shutdown()
		srv.WaitForShutdown()
		return nil, fmt.Errorf("log: embedded server on %s not ready", opts.Listen)
	}
	if !srv.JetStreamEnabled() {
		srv.Shutdown()
		srv.WaitForShutdown()
		return nil, fmt.Errorf("log: embedded server: JetStream failed to start (store dir %s)", opts.Dir)
	}
	return srv, nil
}

// ClientURL is the URL outside producers and subscribers connect to.
func (l *Log) ClientURL() string { return l.clientURL }

// Close stops every Reader, waits (at most Options.RequestTimeout) for
// pending AppendAsync acks, drains the connection, and stops the embedded
// server, waiting for its goroutines. ConsumeIngest and ConsumeDurable
// calls return ErrClosed.
// Close is idempotent.
func (l *Log) Close() error {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return nil
	}
	l.closed = true
	close(l.done)
	l.cancelClosing()
	readers := make([]*Reader, 0, len(l.readers))
	for r := range l.readers {
		readers = append(readers, r)
	}
	l.mu.Unlock()

	for _, r := range readers {
		r.stop()
	}
	var err error
	// One deadline for the whole drain; its Done channel stays closed.
	deadline, cancel := context.WithTimeout(context.Background(), l.opts.RequestTimeout)
	defer cancel()
	idle := make(chan struct{})
	go func() { // owned here: ends when every Consume call has returned
		l.active.Wait()
		l.bg.Wait()
		close(idle)
	}()
	select {
	case <-idle:
	case <-deadline.Done():
		err = errors.Join(err, fmt.Errorf("log: close: ConsumeIngest or ConsumeDurable still running after %v", l.opts.RequestTimeout))
	}
	select {
	case <-l.js.PublishAsyncComplete():
	case <-deadline.Done():
		err = errors.Join(err, fmt.Errorf("log: close: %d async appends still pending after %v", l.js.PublishAsyncPending(), l.opts.RequestTimeout))
	}
	if derr := l.nc.Drain(); derr != nil && !errors.Is(derr, nats.ErrConnectionClosed) {
		l.nc.Close()
	}
	select {
	case <-l.connGone:
	case <-deadline.Done():
		l.nc.Close()
		<-l.connGone
	}
	l.stopServer()
	return err
}

// shutdown undoes a partial Open.
func (l *Log) shutdown() {
	l.cancelClosing()
	if l.nc != nil {
		l.nc.Close()
		<-l.connGone
	}
	l.stopServer()
}

func (l *Log) stopServer() {
	if l.srv != nil {
		l.srv.Shutdown()
		l.srv.WaitForShutdown()
	}
	if l.auth != nil {
		l.auth.release()
	}
}

func (l *Log) isClosed() bool {
	select {
	case <-l.done:
		return true
	default:
		return false
	}
}

// checkSubject refuses subjects that are empty, contain whitespace or
// wildcards, have empty tokens, or belong to no Aurum stream.
func checkSubject(subject string) error {
	if subject == "" {
		return fmt.Errorf("%w: empty", ErrInvalidSubject)
	}
	if strings.ContainsAny(subject, " \t\r\n*>") {
		return fmt.Errorf("%w: %q contains whitespace or a wildcard", ErrInvalidSubject, subject)
	}
	for _, tok := range strings.Split(subject, ".") {
		if tok == "" {
			return fmt.Errorf("%w: %q has an empty token", ErrInvalidSubject, subject)
		}
	}
	if subject == SubjectAudit {
		return nil
	}
	for _, p := range []string{LogPrefix, IngestPrefix, DeadLetterPrefix, IdentityPrefix, AudiencePrefix} {
		if strings.HasPrefix(subject, p) {
			return nil
		}
	}
	return fmt.Errorf("%w: %q is not aurum.audit or under aurum.{log,ingest,dlq,identity,audience}", ErrInvalidSubject, subject)
}

// serverLogger routes nats-server logs to slog. Notices go to Debug: the
// server is chatty at start-up; Open logs where it listens at Info. The
// exception: a new JetStream leader (meta, stream, consumer) is logged at
// Info, a step of a cluster's failover (ARCHITECTURE.md "Cluster").
type serverLogger struct{ l *slog.Logger }

func (s serverLogger) Noticef(format string, v ...any) {
	level := slog.LevelDebug
	if strings.HasPrefix(format, "JetStream cluster new ") {
		level = slog.LevelInfo
	}
	s.l.Log(context.Background(), level, "nats-server: "+fmt.Sprintf(format, v...))
}
func (s serverLogger) Warnf(format string, v ...any) {
	s.l.Warn("nats-server: " + fmt.Sprintf(format, v...))
}
func (s serverLogger) Fatalf(format string, v ...any) {
	s.l.Error("nats-server: fatal: " + fmt.Sprintf(format, v...))
}
func (s serverLogger) Errorf(format string, v ...any) {
	s.l.Error("nats-server: " + fmt.Sprintf(format, v...))
}
func (s serverLogger) Debugf(format string, v ...any) {
	s.l.Debug("nats-server: " + fmt.Sprintf(format, v...))
}
func (s serverLogger) Tracef(format string, v ...any) {}
