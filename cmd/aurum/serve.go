package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"runtime/debug"
	"strings"
	"sync/atomic"
	"time"

	"github.com/aurumcdp/aurum/api"
	"github.com/aurumcdp/aurum/console"
	"github.com/aurumcdp/aurum/engine"
	"github.com/aurumcdp/aurum/engine/access"
	"github.com/aurumcdp/aurum/engine/audit"
	"github.com/aurumcdp/aurum/engine/export"
	"github.com/aurumcdp/aurum/engine/ingest"
	"github.com/aurumcdp/aurum/engine/matching"
	"github.com/aurumcdp/aurum/engine/models"
	"github.com/aurumcdp/aurum/engine/privacy"
	"github.com/aurumcdp/aurum/engine/query"
	alog "github.com/aurumcdp/aurum/log"
	"github.com/aurumcdp/aurum/projections/identity"
	"github.com/aurumcdp/aurum/seal"
	"github.com/aurumcdp/aurum/sso"
	"github.com/spf13/cobra"
)

type serveFlags struct {
	dataDir, httpAddr, natsAddr, natsURL, fsync string
	adminToken, masterKeyFile, identityFile     string
	phoneRegion, logFormat, logLevel            string
	consentDefault                              string
	exportDir                                   string
	memoryLimit                                 string
	exportInterval                              time.Duration
	exportPersonal                              bool
	exportKeep                                  int
	exportLeaderOnly                            bool
	tlsCert, tlsKey, natsTLSCert, natsTLSKey    string
	partitions                                  int
	dedupWindow, tick                           time.Duration
	stateWAL                                    bool
	stateCheckpoint                             time.Duration
	outDuplicateWindow                          time.Duration
	ingestRate                                  float64
	publicMetrics, natsNoAuth                   bool
	sessionTTL, sessionIdle                     time.Duration
	oidc                                        oidcFlags
	cluster                                     clusterFlags
}

// oidcFlags configure single sign-on with OpenID Connect.
type oidcFlags struct {
	issuer, clientID, secretFile, roleClaim, redirectURL string
}

// ssoClient is the OpenID Connect client of the --oidc-* flags: nil when
// none is given.
func (o oidcFlags) ssoClient() (api.SSO, error) {
	if o == (oidcFlags{}) {
		return nil, nil
	}
	for _, f := range []struct{ flag, v string }{{"--oidc-issuer", o.issuer}, {"--oidc-client-id", o.clientID},
		{"--oidc-role-claim", o.roleClaim}} {
		if f.v == "" {
			return nil, fmt.Errorf("%s: required with the other --oidc-* flags", f.flag)
		}
	}
	var secret string
	if o.secretFile != "" {
		b, err := os.ReadFile(o.secretFile)
		if err != nil {
			return nil, fmt.Errorf("--oidc-client-secret-file: %w", err)
		}
		secret = strings.TrimSpace(string(b))
		if secret == "" {
			return nil, fmt.Errorf("--oidc-client-secret-file: %s is empty", o.secretFile)
		}
	}
	if o.redirectURL != "" {
		if u, err := url.Parse(o.redirectURL); err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
			return nil, fmt.Errorf("--oidc-redirect-url: %q is not an http(s) URL", o.redirectURL)
		}
	}
	c, err := sso.New(sso.Options{Issuer: o.issuer, ClientID: o.clientID, ClientSecret: secret, RedirectURL: o.redirectURL, RoleClaim: o.roleClaim})
	if err != nil {
		return nil, fmt.Errorf("--oidc-issuer: %w", err)
	}
	return c, nil
}

// optionFlags names the serve flag of each engine.Options field it sets.
var optionFlags = map[string]string{
	"DataDir":         "--data-dir",
	"NATSListen":      "--nats",
	"NATSURL":         "--nats-url",
	"NATSTLSCertFile": "--nats-tls-cert",
	"NATSTLSKeyFile":  "--nats-tls-key",
	"Partitions":      "--partitions",
	"Replicas":        "replicas (--cluster file)",
	"DedupWindow":     "--dedup-window",
	"TickPeriod":      "--tick",
	"Export":          "--export-dir/--export-interval/--export-keep/--export-leader-only",
	"SessionTTL":      "--session-ttl",
	"Identity":        "--identity-config",
	"MasterKey":       "master key",
	"AdminTokenHash":  "admin token",
	"MemoryLimit":     "--memory-limit",
}

// flagError restates an engine.OptionError with the flags that set the
// fields; other errors are returned as they are.
func flagError(err error) error {
	var oe *engine.OptionError
	if !errors.As(err, &oe) {
		return err
	}
	names := make([]string, len(oe.Fields))
	for i, f := range oe.Fields {
		if names[i] = optionFlags[f]; names[i] == "" {
			names[i] = f
		}
	}
	msg := strings.Join(names, " and ") + ": " + oe.Reason
	if len(oe.Fields) == 1 && oe.Fields[0] == "TickPeriod" {
		msg += " (0 disables)"
	}
	return errors.New(msg)
}

func newServeCmd() *cobra.Command {
	var f serveFlags
	var configFile string
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Run an Aurum node",
		Long: `Run an Aurum node: an embedded NATS server with JetStream (the log) and Pebble (the
projections), both under --data-dir, the HTTP API on --http and a NATS listener for outside
producers and subscribers on --nats. With --nats-url an existing NATS/JetStream deployment is
used instead of the embedded server. On restart the node continues where it stopped.

The admin token comes from --admin-token or $AURUM_ADMIN_TOKEN; without either, one is
generated on first start, printed once, and only its hash is kept in the data directory.
It is the root credential (role admin); create role-scoped API tokens with "aurum token add"
and people who log in with "aurum user add" (docs/security.md).
The master key that wraps the data keys comes from $AURUM_MASTER_KEY or --master-key-file
(32 bytes, base64 or hex); without either, DATA_DIR/master.key is created: back it up.

Consent: a webhook destination or an export for a channel (email, sms, push, ads, web)
never gets a person whose consent for it is not granted. A channel the person made no
statement about takes --consent-default: "granted" (opt-out model, the default) or
"denied" (opt-in; EU marketing under GDPR/ePrivacy usually needs it). See docs/privacy.md.

TLS: --tls-cert and --tls-key (PEM files) serve the HTTP API over HTTPS only; the CLI trusts a
private CA with --ca-file or $AURUM_CA_FILE. --nats-tls-cert and --nats-tls-key make the NATS
listener require TLS from every client (the node's own connection is in-process).

NATS clients authenticate: a producer with user = its source's name and password = the
source's write key, and may publish only on aurum.ingest.<source>; a reader with token = an
API token or login session of role viewer or editor, and may follow aurum.audience.> and
aurum.identity.> (JetStream: AURUM_OUT only, with the inbox prefix _INBOX_AURUM); the admin
token and admin-role tokens may do everything. --nats-no-auth turns this off (local
experiments only). With --nats-url the deployment's own authentication applies
(docs/security.md).

Memory: --memory-limit (e.g. 512MiB, 2GiB) is the resident memory the node may use. The state
cache, Pebble's block caches and memtables, the dedup filter and the data-key caches are sized
from it, and the Go runtime's soft limit is set to what they leave, so the node's memory stops
growing with the number of profiles below it; caches shrink, data does not. Default: $GOMEMLIMIT
if set, else 80% of the cgroup (container) memory limit, else half the physical memory. The
bounds in effect are logged at start and exported as aurum_memory_bound_bytes.

Every setting can also come from a YAML file (--config FILE; keys are the flag names without
--, e.g. "data-dir: /var/lib/aurum"); a flag given on the command line wins over the file.

Console sign-in: POST /v1/session (an API token, or a user's name, password and TOTP code)
sets an HttpOnly session cookie and a CSRF cookie (docs/security.md). Single sign-on with
OpenID Connect: --oidc-issuer, --oidc-client-id, --oidc-client-secret-file and
--oidc-role-claim; register https://HOST/v1/session/oidc/callback at the provider
(or give --oidc-redirect-url). The claim's value maps to the role; no role, no access.`,
		Example: `  aurum serve --data-dir /var/lib/aurum --http 0.0.0.0:8080
  aurum serve --oidc-issuer https://idp.example.com --oidc-client-id aurum --oidc-client-secret-file /etc/aurum/oidc-secret --oidc-role-claim aurum_role
  aurum serve --config docs/serve.example.yaml --log-level debug   # flags win over the file
  aurum serve --memory-limit 2GiB   # caches, memtables and the Go runtime's soft limit sized to fit 2 GiB`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if configFile != "" {
				if err := applyConfigFile(cmd.Flags(), configFile); err != nil {
					return err
				}
			}
			f.cluster.noteExplicit(cmd.Flags())
			return runServe(cmd.Context(), f)
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&configFile, "config", "", "YAML file of serve settings: flag names without -- as keys (docs/serve.example.yaml); flags given on the command line win")
	fl.StringVar(&f.dataDir, "data-dir", "./aurum-data", "directory for the log, the projections and the keys")
	fl.StringVar(&f.httpAddr, "http", "127.0.0.1:8080", "HTTP API listen address (port 0 picks a free port)")
	fl.StringVar(&f.natsAddr, "nats", "127.0.0.1:4222", "embedded NATS client listen address (port -1 picks a free port)")
	fl.StringVar(&f.natsURL, "nats-url", "", "use this NATS/JetStream deployment instead of the embedded server")
	fl.StringVar(&f.fsync, "fsync", "default", `"default" (an acknowledged event survives a process crash) or "always" (fsync before every acknowledgement: survives power loss)`)
	fl.StringVar(&f.adminToken, "admin-token", "", "admin bearer token (default $AURUM_ADMIN_TOKEN, else generated on first start)")
	fl.StringVar(&f.masterKeyFile, "master-key-file", "", "file holding the 32-byte master key (default DATA_DIR/master.key; $AURUM_MASTER_KEY wins)")
	fl.StringVar(&f.identityFile, "identity-config", "", "identity settings (YAML): priority, limits, blocked values")
	fl.StringVar(&f.phoneRegion, "phone-region", "", "default region (e.g. DK, US) for phone numbers without an international prefix")
	fl.IntVar(&f.partitions, "partitions", 16, "profile partitions (fixed when the data directory is created)")
	fl.DurationVar(&f.dedupWindow, "dedup-window", 30*24*time.Hour, "how long a messageId is remembered per source (log time)")
	fl.DurationVar(&f.tick, "tick", time.Second, "how often the passage of time is recorded on the log (fires time-driven audience exits); 0 disables")
	fl.StringVar(&f.consentDefault, "consent-default", "granted", `consent of a channel without any statement from the person: "granted" (opt-out: contacted until they withdraw) or "denied" (opt-in: what EU marketing usually needs)`)
	fl.StringVar(&f.exportDir, "export-dir", "", "warehouse export: write Parquet runs (profiles, audience memberships, a manifest) into this directory (docs/export.md)")
	fl.DurationVar(&f.exportInterval, "export-interval", 0, "warehouse export: write a run this often (at least 1m; 0: none) until aurum export schedule sets the schedule of every node")
	fl.BoolVar(&f.exportPersonal, "export-personal", false, "warehouse export: scheduled runs include decrypted identifier values and traits (until aurum export schedule sets the schedule)")
	fl.IntVar(&f.exportKeep, "export-keep", 0, "warehouse export: runs kept (the oldest deleted; 0: all) until aurum export schedule sets the schedule")
	fl.BoolVar(&f.exportLeaderOnly, "export-leader-only", false, "warehouse export in a cluster: only the Raft leader writes the scheduled runs (for an --export-dir every node shares); default: each node writes its own")
	fl.StringVar(&f.tlsCert, "tls-cert", "", "PEM certificate (chain) file: serve the HTTP API over HTTPS (with --tls-key)")
	fl.StringVar(&f.tlsKey, "tls-key", "", "PEM private key file of --tls-cert")
	fl.StringVar(&f.natsTLSCert, "nats-tls-cert", "", "PEM certificate file: the NATS listener requires TLS (with --nats-tls-key)")
	fl.StringVar(&f.natsTLSKey, "nats-tls-key", "", "PEM private key file of --nats-tls-cert")
	fl.BoolVar(&f.natsNoAuth, "nats-no-auth", false, "let any client on the NATS listener do anything without credentials (local experiments only)")
	fl.Float64Var(&f.ingestRate, "ingest-rate", 100000, "events per second each write key may send over HTTP (burst: 2 s worth); over it, 429 with Retry-After; 0 disables")
	fl.BoolVar(&f.publicMetrics, "public-metrics", false, "serve /metrics without a token (default: a viewer, editor or admin token)")
	fl.DurationVar(&f.sessionTTL, "session-ttl", 12*time.Hour, "how long a login session (POST /v1/login) or console session (POST /v1/session, single sign-on) lasts")
	fl.DurationVar(&f.sessionIdle, "session-idle", time.Hour, "a console session (cookie) ends after this long without a request")
	fl.StringVar(&f.oidc.issuer, "oidc-issuer", "", "single sign-on: the OpenID Connect provider's issuer URL (with --oidc-client-id and --oidc-role-claim)")
	fl.StringVar(&f.oidc.clientID, "oidc-client-id", "", "single sign-on: Aurum's client id at the provider")
	fl.StringVar(&f.oidc.secretFile, "oidc-client-secret-file", "", "single sign-on: file holding the client secret")
	fl.StringVar(&f.oidc.roleClaim, "oidc-role-claim", "", "single sign-on: ID token claim whose value (admin, editor, viewer or privacy; or a list of them) is the role; none: no access")
	fl.StringVar(&f.oidc.redirectURL, "oidc-redirect-url", "", "single sign-on: the callback URL registered at the provider (default: this server's URL + /v1/session/oidc/callback, from the request)")
	fl.StringVar(&f.memoryLimit, "memory-limit", "", "resident memory the node may use, e.g. 512MiB or 2GiB: sizes its caches and sets the Go runtime's soft limit (default $GOMEMLIMIT, else 80% of the cgroup's memory limit, else half the physical memory; at least 256MiB)")
	fl.BoolVar(&f.stateWAL, "state-wal", false, "give the projections' store a write-ahead log synced every 200 ms (default: none; its memory is flushed at checkpoints and a crash applies the log again from the last one)")
	fl.DurationVar(&f.stateCheckpoint, "state-checkpoint", engine.DefaultStateCheckpoint, "without --state-wal: how long applied work stays in memory at most before it is flushed to disk (a full memtable is flushed at once); a crash applies at most this much of the log again")
	fl.DurationVar(&f.outDuplicateWindow, "out-duplicate-window", alog.DefaultOutDuplicateWindow, "how long AURUM_OUT remembers the message id of every audience transition and identity record it took, so that what an outbox publishes again after a crash or a cluster takeover (the last moments before it, which its progress on the log had not recorded yet) is not delivered twice; the NATS server keeps each id in memory that long, so that memory grows with transitions per second times the window: shorter saves it, and a node down for longer than the window may deliver those last transitions again (1s to 720h)")
	fl.StringVar(&f.logFormat, "log-format", "text", `log format: "text" or "json"`)
	fl.StringVar(&f.logLevel, "log-level", "info", "log level: debug, info, warn, error")
	addClusterFlags(cmd, &f.cluster)
	return cmd
}

func newLogger(format, level string) (*slog.Logger, error) {
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("--log-level: %w", err)
	}
	o := &slog.HandlerOptions{Level: lv}
	switch format {
	case "text":
		return slog.New(slog.NewTextHandler(os.Stderr, o)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(os.Stderr, o)), nil
	}
	return nil, fmt.Errorf("--log-format: want text or json, got %q", format)
}

func runServe(ctx context.Context, f serveFlags) error {
	logger, err := newLogger(f.logFormat, f.logLevel)
	if err != nil {
		return err
	}
	opts := engine.Options{
		DataDir:     f.dataDir,
		NATSListen:  f.natsAddr,
		NATSURL:     f.natsURL,
		PhoneRegion: strings.ToUpper(f.phoneRegion),
		Partitions:  f.partitions,
		DedupWindow: f.dedupWindow,
		TickPeriod:  f.tick,
		SessionTTL:  f.sessionTTL,
		Logger:      logger,
		NATSNoAuth:  f.natsNoAuth,
		StateWAL:    f.stateWAL,
		Export: export.Options{Dir: f.exportDir, Interval: f.exportInterval, Personal: f.exportPersonal,
			Keep: f.exportKeep, LeaderOnly: f.exportLeaderOnly},
	}
	limit, limitFrom, err := memoryLimit(f.memoryLimit, readMachineMemory())
	if err != nil {
		return err
	}
	opts.MemoryLimit = limit
	if f.ingestRate < 0 {
		return fmt.Errorf("--ingest-rate: must not be negative (0 disables), got %g", f.ingestRate)
	}
	if f.stateCheckpoint != 0 && f.stateCheckpoint < time.Second { // 0: the default
		return fmt.Errorf("--state-checkpoint: at least 1s, got %v", f.stateCheckpoint)
	}
	opts.StateCheckpoint = f.stateCheckpoint
	if f.outDuplicateWindow != 0 && (f.outDuplicateWindow < time.Second || f.outDuplicateWindow > alog.DefaultOutMaxAge) { // 0: the default
		return fmt.Errorf("--out-duplicate-window: must be in [1s, %v], got %v", alog.DefaultOutMaxAge, f.outDuplicateWindow)
	}
	opts.OutDuplicateWindow = f.outDuplicateWindow
	if f.sessionTTL == 0 { // for Options, zero is the default
		return fmt.Errorf("--session-ttl: must be positive, got %v", f.sessionTTL)
	}
	switch { // the flag's 0 disables ticks, as a negative TickPeriod does
	case f.tick == 0:
		opts.TickPeriod = -1
	case f.tick < 0:
		return fmt.Errorf("--tick: at least %v, got %v (0 disables)", engine.MinTickPeriod, f.tick)
	}
	switch f.consentDefault {
	case "granted":
	case "denied":
		opts.ConsentDefaultDenied = true
	default:
		return fmt.Errorf("--consent-default: want granted or denied, got %q", f.consentDefault)
	}
	switch f.fsync {
	case "default":
	case "always":
		opts.FsyncAlways = true
	default:
		return fmt.Errorf("--fsync: want default or always, got %q", f.fsync)
	}
	if (f.tlsCert == "") != (f.tlsKey == "") {
		return errors.New("--tls-cert and --tls-key: give both or neither")
	}
	opts.NATSTLSCertFile, opts.NATSTLSKeyFile = f.natsTLSCert, f.natsTLSKey
	var tlsCfg *tls.Config
	if f.tlsCert != "" {
		cert, err := tls.LoadX509KeyPair(f.tlsCert, f.tlsKey)
		if err != nil {
			return fmt.Errorf("--tls-cert/--tls-key: %w", err)
		}
		tlsCfg = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	}
	if f.identityFile != "" {
		cfg, err := identity.LoadConfig(f.identityFile)
		if err != nil {
			return fmt.Errorf("--identity-config: %w", err)
		}
		opts.Identity = &cfg
	}
	if env := os.Getenv("AURUM_MASTER_KEY"); env != "" || f.masterKeyFile != "" {
		k, err := seal.LoadMasterKey(f.masterKeyFile, env)
		if err != nil {
			return fmt.Errorf("master key: %w", err)
		}
		opts.MasterKey = k
	}
	ssoClient, err := f.oidc.ssoClient()
	if err != nil {
		return err
	}
	cl, err := applyClusterFile(&f, &opts, logger)
	if err != nil {
		return err
	}
	if err := opts.Validate(); err != nil {
		return flagError(err)
	}
	if f.sessionIdle < 0 {
		return fmt.Errorf("--session-idle: must be positive, got %v", f.sessionIdle)
	}
	if err := os.MkdirAll(f.dataDir, 0o700); err != nil {
		return fmt.Errorf("--data-dir: %w", err)
	}
	tokenHash, err := adminTokenHash(f.dataDir, f.adminToken)
	if err != nil {
		return err
	}
	if storedAdminTokenDiffers(f.dataDir, tokenHash) {
		logger.Warn("the admin token given (--admin-token or $AURUM_ADMIN_TOKEN) replaces the one generated on first start while it is given: that one does not work now",
			"stored_hash", filepath.Join(f.dataDir, adminTokenFile))
	}
	opts.AdminTokenHash = tokenHash
	if f.natsNoAuth && f.natsURL == "" {
		logger.Warn("--nats-no-auth: any client on the NATS listener may read and write everything", "nats", f.natsAddr)
	}

	// The Go runtime's soft limit: what the memory limit leaves beside the
	// engine's memory outside the Go heap (engine.MemorySizes). It is
	// process-wide, so serve (the process's owner) sets it, and puts the
	// previous one back when it returns.
	mem := engine.MemorySizesFor(opts.MemoryLimit)
	defer debug.SetMemoryLimit(debug.SetMemoryLimit(mem.GoLimit))
	logger.Info("memory limit", "limit", formatSize(mem.Limit), "from", limitFrom, "go_limit", formatSize(mem.GoLimit),
		"state_cache", formatSize(int64(mem.StateCache)), "state_block_cache", formatSize(mem.StateBlockCache))

	// Shutdown order (deferred): HTTP, the engine (its log last), the
	// cluster node.
	var running atomic.Pointer[engine.Engine]
	if cl != nil {
		if err := cl.open(f.dataDir, &running, logger); err != nil {
			return err
		}
		defer cl.close(logger)
		opts.Cluster = cl.node
	}
	e, err := engine.Open(ctx, opts)
	if err != nil {
		return err
	}
	running.Store(e)
	defer func() {
		if err := e.Close(); err != nil {
			logger.Error("close", "err", err)
		}
		logger.Info("stopped")
	}()
	svc := apiServices(e)
	if cl != nil {
		svc.Cluster = cl.node
	}
	srv, err := api.New(svc, api.Options{AdminTokenHash: tokenHash, Logger: logger,
		IngestRate: f.ingestRate, PublicMetrics: f.publicMetrics, SessionTTL: f.sessionTTL, SessionIdle: f.sessionIdle,
		SSO: ssoClient})
	if err != nil {
		return err
	}
	web, err := console.New(console.Options{API: srv})
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", f.httpAddr)
	if err != nil {
		return fmt.Errorf("--http: %w", err)
	}
	hs := &http.Server{Handler: web, ReadHeaderTimeout: 10 * time.Second, ReadTimeout: time.Minute, IdleTimeout: 2 * time.Minute}
	scheme := "http://"
	if tlsCfg != nil {
		hs.TLSConfig = tlsCfg
		ln = tls.NewListener(ln, tlsCfg)
		scheme = "https://"
	}
	logger.Info("aurum listening", "http", scheme+ln.Addr().String(), "nats", e.NATSURL(), "data_dir", f.dataDir)
	errc := make(chan error, 1)
	go func() { errc <- hs.Serve(ln) }()
	var failed error
	select {
	case <-ctx.Done():
		logger.Info("shutting down")
	case err := <-errc:
		return fmt.Errorf("http: %w", err)
	case <-e.Done(): // a background task failed: exit so a supervisor restarts the node
		failed = e.Err()
		logger.Error("engine stopped; shutting down", "err", failed)
	}
	sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := hs.Shutdown(sctx); err != nil {
		logger.Warn("http shutdown", "err", err)
	}
	if err := <-errc; err != nil && !errors.Is(err, http.ErrServerClosed) {
		logger.Warn("http", "err", err)
	}
	return failed
}

// adminTokenHash returns the SHA-256 of the admin token: the given one (flag
// or $AURUM_ADMIN_TOKEN), else the one generated on first start, whose hash
// is kept in DATA_DIR/admin-token.sha256. A generated token is printed once.
// adminTokenFile, in the data directory, holds the SHA-256 (hex) of the
// admin token generated on first start. Deleting it while the node is
// stopped makes the next start generate and print a new one (README,
// "Lost admin token").
const adminTokenFile = "admin-token.sha256"

// storedAdminTokenDiffers reports whether the data directory holds the hash
// of a generated admin token other than h (a given token replaces it).
func storedAdminTokenDiffers(dataDir string, h []byte) bool {
	data, err := os.ReadFile(filepath.Join(dataDir, adminTokenFile))
	if err != nil {
		return false
	}
	stored, err := hex.DecodeString(strings.TrimSpace(string(data)))
	return err == nil && !bytes.Equal(stored, h)
}

func adminTokenHash(dataDir, flagToken string) ([]byte, error) {
	tok := flagToken
	if tok == "" {
		tok = os.Getenv("AURUM_ADMIN_TOKEN")
	}
	if tok != "" {
		if len(tok) < 16 {
			return nil, errors.New("admin token: must be at least 16 characters")
		}
		h := sha256.Sum256([]byte(tok))
		return h[:], nil
	}
	path := filepath.Join(dataDir, adminTokenFile)
	data, err := os.ReadFile(path)
	if err == nil {
		h, err := hex.DecodeString(strings.TrimSpace(string(data)))
		if err != nil || len(h) != sha256.Size {
			return nil, fmt.Errorf("admin token: %s is corrupt; delete it to generate a new token", path)
		}
		return h, nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("admin token: %w", err)
	}
	raw := make([]byte, 24)
	if _, err := rand.Read(raw); err != nil {
		return nil, err
	}
	tok = "at_" + base64.RawURLEncoding.EncodeToString(raw)
	h := sha256.Sum256([]byte(tok))
	if err := os.WriteFile(path, []byte(hex.EncodeToString(h[:])+"\n"), 0o600); err != nil {
		return nil, fmt.Errorf("admin token: %w", err)
	}
	fmt.Fprintf(os.Stdout, "\nGenerated admin token (shown once, only its hash is kept):\n\n    export AURUM_ADMIN_TOKEN=%s\n\n", tok)
	return h[:], nil
}

// apiServices hands the API each concern from the stage that owns it.
func apiServices(e *engine.Engine) api.Services {
	return api.Services{Ingest: e.Edge(), Access: e.Gate(), Reads: e.Reader(), Audiences: e, Destinations: e,
		Privacy: e.Privacy(), Replay: e, Models: e.Models(), Identity: e.Matching(), Audit: e.Recorder(), Node: e,
		Exports: e.Exporter()}
}

// The stages satisfy the API's interfaces.
var (
	_ api.Ingest       = (*ingest.Edge)(nil)
	_ api.Access       = (*access.Gate)(nil)
	_ api.Reads        = (*query.Reader)(nil)
	_ api.Audiences    = (*engine.Engine)(nil)
	_ api.Destinations = (*engine.Engine)(nil)
	_ api.Privacy      = (*privacy.Service)(nil)
	_ api.Replay       = (*engine.Engine)(nil)
	_ api.Models       = (*models.Service)(nil)
	_ api.Identity     = (*matching.Service)(nil)
	_ api.Auditor      = (*audit.Recorder)(nil)
	_ api.Node         = (*engine.Engine)(nil)
	_ api.Exports      = (*export.Exporter)(nil)
)
