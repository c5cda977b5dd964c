package log

import (
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"time"
)

// FsyncMode selects when the embedded JetStream server syncs its files.
type FsyncMode int

const (
	// FsyncDefault leaves syncing to JetStream's periodic sync (every 2
	// minutes by default): a PubAck means the message is in the OS page
	// cache, not necessarily on disk.
	FsyncDefault FsyncMode = iota
	// FsyncAlways fsyncs every JetStream write before the PubAck is sent
	// (nats-server's SyncAlways).
	FsyncAlways
)

func (m FsyncMode) String() string {
	switch m {
	case FsyncDefault:
		return "default"
	case FsyncAlways:
		return "always"
	default:
		return fmt.Sprintf("FsyncMode(%d)", int(m))
	}
}

// Defaults applied by Options.EnsureDefaults.
const (
	DefaultListen             = "127.0.0.1:4222"
	DefaultDeadLetterMaxAge   = 30 * 24 * time.Hour
	DefaultOutMaxAge          = 30 * 24 * time.Hour
	DefaultOutDuplicateWindow = time.Hour
	DefaultMaxAsyncPending    = 4096
	DefaultRequestTimeout     = 10 * time.Second
	DefaultIngestAckWait      = 30 * time.Second
	DefaultIngestRetryMin     = 100 * time.Millisecond
	DefaultIngestRetryMax     = 5 * time.Second
	DefaultClusterName        = "aurum"
	DefaultClusterWait        = 5 * time.Minute
	// MaxReplicas is JetStream's limit on stream replicas.
	MaxReplicas = 5
)

// ClusterOptions make the embedded server one node of a NATS cluster with
// clustered JetStream: it listens for routes on Listen, connects to Routes,
// and joins the JetStream meta group as ServerName.
type ClusterOptions struct {
	// Name is the cluster's name, the same on every node (default
	// DefaultClusterName).
	Name string
	// ServerName is this node's unique server name (the cluster file's
	// node name). Required.
	ServerName string
	// Listen is host:port this node's routes listen on. Required.
	Listen string
	// Routes are host:port of every node's route listener; this node's own
	// may be included (the server ignores a route to itself). Required.
	Routes []string
	// Secret, when set, authenticates routes: this node's route listener
	// accepts only routes that present it (user RouteUser), and its own
	// routes present it. The same on every node. Empty: routes are not
	// authenticated (a private network only).
	Secret string
	// TLS, when set, makes the routes TLS: this node's route listener
	// serves it and its routes dial with it (a clone naming the route's
	// host). For mutual TLS it requires and verifies client certificates
	// (cluster.Config.TLSFor). nil: routes are plain TCP.
	TLS *tls.Config
}

// RouteUser is the user name routes authenticate as (ClusterOptions.Secret).
const RouteUser = "aurum-route"

// validate checks the cluster options after defaults.
func (c *ClusterOptions) validate() error {
	var errs []error
	if c.ServerName == "" || strings.ContainsAny(c.ServerName, " \t\r\n.*>") {
		errs = append(errs, fmt.Errorf("Cluster.ServerName %q: required, without whitespace, dots or wildcards", c.ServerName))
	}
	if strings.ContainsAny(c.Name, " \t\r\n.*>") {
		errs = append(errs, fmt.Errorf("Cluster.Name %q: no whitespace, dots or wildcards", c.Name))
	}
	if _, port, err := splitListen(c.Listen); err != nil {
		errs = append(errs, fmt.Errorf("Cluster.Listen: %w", err))
	} else if port == -1 {
		errs = append(errs, fmt.Errorf("Cluster.Listen %q: needs a fixed port (the other nodes route to it)", c.Listen))
	}
	if len(c.Routes) == 0 {
		errs = append(errs, errors.New("Cluster.Routes: at least one route is required"))
	}
	for i, r := range c.Routes {
		if _, port, err := splitListen(r); err != nil || port == -1 {
			errs = append(errs, fmt.Errorf("Cluster.Routes[%d] %q: want host:port with a port in [1, 65535]", i, r))
		}
	}
	return errors.Join(errs...)
}

// Options configures Open. The zero value is valid apart from Dir (or URL).
type Options struct {
	// Dir is the JetStream store directory of the embedded server. Required
	// unless URL is set.
	Dir string
	// Listen is host:port of the embedded server's client listener.
	// "" means DefaultListen; port -1 or 0 picks a random port (tests).
	Listen string
	// URL, when set, connects to an external NATS/JetStream deployment and
	// starts no server. Fsync is then the deployment's setting.
	URL string
	// Fsync selects the embedded server's sync mode.
	Fsync FsyncMode
	// Cluster, when set, makes the embedded server a node of a NATS
	// cluster with clustered JetStream (nil: a standalone server). Not
	// with URL.
	Cluster *ClusterOptions
	// Replicas is the replica count of every Aurum stream, in
	// [1, MaxReplicas] (0 means 1). Above 1 it needs Cluster or URL (a
	// clustered deployment), and Open waits until enough JetStream peers
	// are up to place the streams, for at most ClusterWait.
	Replicas int
	// ClusterWait bounds how long Open waits for a JetStream quorum (a
	// meta leader, and peers for Replicas) before it fails (default
	// DefaultClusterWait). The context given to Open bounds it too.
	ClusterWait time.Duration
	// TLSCertFile and TLSKeyFile (PEM), both or neither, make the embedded
	// server's client listener require TLS. Not with URL.
	TLSCertFile, TLSKeyFile string
	// Authorizer, when set, makes the embedded server require
	// authentication: every client but the log's own connection (which
	// presents a random per-process secret) is let in, with the grant it
	// returns, only if it says so. Ignored with URL: the deployment's own
	// authentication applies.
	Authorizer Authorizer

	// DeadLetterMaxAge is the MaxAge of AURUM_DLQ (default 30 days).
	DeadLetterMaxAge time.Duration
	// OutMaxAge is the MaxAge of AURUM_OUT (default 30 days).
	OutMaxAge time.Duration
	// OutDuplicateWindow is the duplicate window of AURUM_OUT (default 1 h):
	// outbox re-publishes after a crash carry the same message id.
	OutDuplicateWindow time.Duration

	// MaxAsyncPending bounds the AppendAsync calls in flight (default 4096).
	// AppendAsync blocks while the bound is reached, for at most
	// RequestTimeout.
	MaxAsyncPending int
	// RequestTimeout bounds every request to the server that has no
	// deadline of its own: the PubAck of an AppendAsync, the stall of an
	// AppendAsync at MaxAsyncPending, ack confirmations, drain on Close
	// (default 10 s).
	RequestTimeout time.Duration
	// IngestAckWait is the AckWait of the "aurum-gateway" consumer: a
	// message not acked within it is redelivered (default 30 s).
	IngestAckWait time.Duration
	// IngestRetryMin and IngestRetryMax bound the exponential backoff of
	// ConsumeIngest after a handler or fetch error (default 100 ms, 5 s).
	IngestRetryMin, IngestRetryMax time.Duration

	// Logger receives the package's and the embedded server's logs
	// (nil = discard).
	Logger *slog.Logger
	// Now is the clock used to stamp dead letters without a Received time
	// (nil = time.Now).
	Now func() time.Time
}

// EnsureDefaults fills in zero fields with their defaults.
func (o *Options) EnsureDefaults() {
	if o.Listen == "" {
		o.Listen = DefaultListen
	}
	if o.DeadLetterMaxAge == 0 {
		o.DeadLetterMaxAge = DefaultDeadLetterMaxAge
	}
	if o.OutMaxAge == 0 {
		o.OutMaxAge = DefaultOutMaxAge
	}
	if o.OutDuplicateWindow == 0 {
		o.OutDuplicateWindow = DefaultOutDuplicateWindow
	}
	if o.MaxAsyncPending == 0 {
		o.MaxAsyncPending = DefaultMaxAsyncPending
	}
	if o.RequestTimeout == 0 {
		o.RequestTimeout = DefaultRequestTimeout
	}
	if o.IngestAckWait == 0 {
		o.IngestAckWait = DefaultIngestAckWait
	}
	if o.IngestRetryMin == 0 {
		o.IngestRetryMin = DefaultIngestRetryMin
	}
	if o.IngestRetryMax == 0 {
		o.IngestRetryMax = DefaultIngestRetryMax
	}
	if o.Replicas == 0 {
		o.Replicas = 1
	}
	if o.ClusterWait == 0 {
		o.ClusterWait = DefaultClusterWait
	}
	if o.Cluster != nil && o.Cluster.Name == "" {
		c := *o.Cluster // the caller's struct stays as given
		c.Name = DefaultClusterName
		o.Cluster = &c
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if o.Now == nil {
		o.Now = time.Now
	}
}

// Validate checks the options after EnsureDefaults, including the relations
// between fields.
func (o *Options) Validate() error {
	if o.URL == "" {
		if o.Dir == "" {
			return fmt.Errorf("log: options: Dir is required unless URL is set")
		}
		if _, _, err := splitListen(o.Listen); err != nil {
			return fmt.Errorf("log: options: %w", err)
		}
	}
	if (o.TLSCertFile == "") != (o.TLSKeyFile == "") {
		return fmt.Errorf("log: options: TLSCertFile and TLSKeyFile go together")
	}
	if o.TLSCertFile != "" && o.URL != "" {
		return fmt.Errorf("log: options: TLSCertFile is for the embedded server; the URL's scheme and the deployment decide TLS")
	}
	if o.Cluster != nil {
		if o.URL != "" {
			return fmt.Errorf("log: options: Cluster is for the embedded server; with URL the deployment is the cluster")
		}
		if err := o.Cluster.validate(); err != nil {
			return fmt.Errorf("log: options: %w", err)
		}
	}
	if o.Replicas < 1 || o.Replicas > MaxReplicas {
		return fmt.Errorf("log: options: Replicas must be in [1, %d], got %d", MaxReplicas, o.Replicas)
	}
	if o.Replicas > 1 && o.Cluster == nil && o.URL == "" {
		return fmt.Errorf("log: options: Replicas %d needs Cluster or URL (a standalone embedded server keeps one copy)", o.Replicas)
	}
	switch o.Fsync {
	case FsyncDefault, FsyncAlways:
	default:
		return fmt.Errorf("log: options: unknown Fsync mode %d", int(o.Fsync))
	}
	for _, d := range []struct {
		name string
		v    time.Duration
	}{
		{"DeadLetterMaxAge", o.DeadLetterMaxAge},
		{"OutMaxAge", o.OutMaxAge},
		{"OutDuplicateWindow", o.OutDuplicateWindow},
		{"RequestTimeout", o.RequestTimeout},
		{"IngestAckWait", o.IngestAckWait},
		{"IngestRetryMin", o.IngestRetryMin},
		{"IngestRetryMax", o.IngestRetryMax},
		{"ClusterWait", o.ClusterWait},
	} {
		if d.v < 0 {
			return fmt.Errorf("log: options: %s is negative (%v)", d.name, d.v)
		}
	}
	if o.OutDuplicateWindow > o.OutMaxAge {
		return fmt.Errorf("log: options: OutDuplicateWindow %v exceeds OutMaxAge %v", o.OutDuplicateWindow, o.OutMaxAge)
	}
	if o.IngestRetryMin > o.IngestRetryMax {
		return fmt.Errorf("log: options: IngestRetryMin %v exceeds IngestRetryMax %v", o.IngestRetryMin, o.IngestRetryMax)
	}
	if o.MaxAsyncPending < 0 {
		return fmt.Errorf("log: options: MaxAsyncPending is negative (%d)", o.MaxAsyncPending)
	}
	return nil
}

// splitListen parses host:port; port -1 or 0 means random.
func splitListen(listen string) (string, int, error) {
	host, p, err := net.SplitHostPort(listen)
	if err != nil {
		return "", 0, fmt.Errorf("listen %q: %w", listen, err)
	}
	port, err := strconv.Atoi(p)
	if err != nil || port < -1 || port > 65535 {
		return "", 0, fmt.Errorf("listen %q: bad port", listen)
	}
	if port == 0 {
		port = -1 // nats-server's RANDOM_PORT
	}
	return host, port, nil
}
