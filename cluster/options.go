package cluster

import (
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"time"
)

// Options configure a Node. Zero fields take the defaults of
// EnsureDefaults; Validate checks the relations between fields.
type Options struct {
	// Config is the cluster file (required, Validated).
	Config *Config
	// Name is this node's name in Config (required).
	Name string
	// Dir holds the Raft log, stable store (raft.db, bbolt) and snapshots
	// (required; e.g. <data-dir>/raft).
	Dir string
	// Join: the node does not bootstrap; it waits until the leader adds it
	// (Node.AddNode). Its own entry must be in its Config all the same. Without it a node with no Raft state bootstraps the
	// configuration of every node in Config (they all must: hashicorp/raft
	// requires the same configuration on each).
	Join bool

	// Raft timings (hashicorp/raft's meaning). LeaderLeaseTimeout ≤
	// HeartbeatTimeout.
	HeartbeatTimeout time.Duration // default 1 s
	ElectionTimeout  time.Duration // default 1 s
	// LeaderLeaseTimeout: a leader that heard from no quorum for this long
	// steps down. 1 s: at 500 ms leaders of a loaded two-core machine
	// stepped down and were re-elected every few seconds, and each new
	// leader starts DownAfter again (failovers of 7-9 s, bench/RESULTS.md
	// "Issue #11: failover steps"). Owns' lease does not depend on it.
	LeaderLeaseTimeout time.Duration // default 1 s
	CommitTimeout      time.Duration // default 50 ms

	// DownAfter: the leader marks a member down, and moves its partitions
	// with epoch+1, once heartbeats to it have failed for this long
	// (default 2 s), or at once when it left the Raft configuration.
	DownAfter time.Duration
	// Lease: Owns answers true on a follower only within Lease of its last
	// contact with a leader (default 1 s; less than DownAfter, the margin
	// covering clock rate drift between the nodes and the leader's
	// detection).
	Lease time.Duration
	// LivenessInterval: how often the leader compares the liveness it
	// observes with the map (default 250 ms).
	LivenessInterval time.Duration
	// ApplyTimeout bounds a proposal (default 5 s).
	ApplyTimeout time.Duration
	// SnapshotsKept: Raft snapshots kept on disk (default 2).
	SnapshotsKept int

	// Now is the clock of the liveness decisions and of Owns' lease
	// (default time.Now). hashicorp/raft keeps its own timers, and Owns
	// compares Now with raft's last contact, a time.Now reading: an
	// injected clock must keep to the wall clock there.
	Now func() time.Time
	// TLS, if set, makes the Raft transport mutual TLS: it serves and dials
	// with this configuration (Config.TLSFor builds it from the cluster
	// file). nil: plain TCP (a private network).
	TLS *tls.Config
	// Applied, if set, gives a partition's applied log position for Status.
	Applied func(partition int) uint64
	// Logger receives the node's and hashicorp/raft's logs (default:
	// discarded).
	Logger *slog.Logger
}

// EnsureDefaults fills zero fields with their defaults.
func (o *Options) EnsureDefaults() {
	def := func(d *time.Duration, v time.Duration) {
		if *d == 0 {
			*d = v
		}
	}
	def(&o.HeartbeatTimeout, time.Second)
	def(&o.ElectionTimeout, time.Second)
	def(&o.LeaderLeaseTimeout, time.Second)
	def(&o.CommitTimeout, 50*time.Millisecond)
	def(&o.DownAfter, 2*time.Second)
	def(&o.Lease, time.Second)
	def(&o.LivenessInterval, 250*time.Millisecond)
	def(&o.ApplyTimeout, 5*time.Second)
	if o.SnapshotsKept == 0 {
		o.SnapshotsKept = 2
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
}

// Validate checks the Options after EnsureDefaults.
func (o *Options) Validate() error {
	var errs []error
	if o.Config == nil {
		errs = append(errs, errors.New("cluster: options: Config is required"))
	} else if err := o.Config.Validate(); err != nil {
		errs = append(errs, err)
	} else if _, ok := o.Config.Node(o.Name); !ok {
		errs = append(errs, fmt.Errorf("cluster: options: node %q is not in the cluster file", o.Name))
	}
	if o.Dir == "" {
		errs = append(errs, errors.New("cluster: options: Dir is required"))
	}
	if o.LeaderLeaseTimeout > o.HeartbeatTimeout {
		errs = append(errs, fmt.Errorf("cluster: options: LeaderLeaseTimeout %v exceeds HeartbeatTimeout %v", o.LeaderLeaseTimeout, o.HeartbeatTimeout))
	}
	if o.HeartbeatTimeout >= o.DownAfter {
		errs = append(errs, fmt.Errorf("cluster: options: HeartbeatTimeout %v must be less than DownAfter %v (a paused peer's heartbeat must fail before it is judged)", o.HeartbeatTimeout, o.DownAfter))
	}
	if o.Lease >= o.DownAfter {
		errs = append(errs, fmt.Errorf("cluster: options: Lease %v must be less than DownAfter %v (an owner must stop before the leader moves its partitions)", o.Lease, o.DownAfter))
	}
	for _, d := range []struct {
		name string
		v    time.Duration
	}{{"HeartbeatTimeout", o.HeartbeatTimeout}, {"ElectionTimeout", o.ElectionTimeout}, {"LeaderLeaseTimeout", o.LeaderLeaseTimeout},
		{"CommitTimeout", o.CommitTimeout}, {"DownAfter", o.DownAfter}, {"Lease", o.Lease}, {"LivenessInterval", o.LivenessInterval}, {"ApplyTimeout", o.ApplyTimeout}} {
		if d.v < 0 {
			errs = append(errs, fmt.Errorf("cluster: options: %s %v is negative", d.name, d.v))
		}
	}
	return errors.Join(errs...)
}
