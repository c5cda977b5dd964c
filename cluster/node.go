package cluster

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"
	"go.etcd.io/bbolt"
)

// ErrNotLeader: membership changes are made on the leader.
var ErrNotLeader = errors.New("cluster: not the leader")

// ErrUnavailable wraps a change Raft could not commit now (no leader,
// leadership lost while committing, a full queue, shutting down): nothing
// is wrong with the request; try again.
var ErrUnavailable = errors.New("cluster: no Raft leader could commit the change now")

// unavailable wraps hashicorp/raft's transient errors in ErrUnavailable.
func unavailable(err error) error {
	for _, t := range []error{raft.ErrNotLeader, raft.ErrLeadershipLost, raft.ErrEnqueueTimeout,
		raft.ErrLeadershipTransferInProgress, raft.ErrRaftShutdown, raft.ErrAbortedByRestore} {
		if errors.Is(err, t) {
			return fmt.Errorf("%w: %w", ErrUnavailable, err)
		}
	}
	return err
}

// Node is one member of the cluster: it runs hashicorp/raft over TCP on
// its raft address with a bbolt log store (raft-boltdb/v2), replicates
// the control state (Map) and, while it is the leader, keeps the liveness
// of the members in the map and proposes membership changes.
//
// Goroutines: hashicorp/raft's own (stopped by its Shutdown), the
// liveness loop (run) and the heartbeat observer (observe); Close stops
// and waits for all of them, and for the transport's connection handlers.
type Node struct {
	opts     Options
	name     string
	fsm      *fsm
	raft     *raft.Raft
	stream   *streamLayer
	trans    *raft.NetworkTransport
	store    *raftboltdb.BoltStore
	observer *raft.Observer
	obsCh    chan raft.Observation
	leaderCh chan bool

	// failing: peer → first failed heartbeat not yet resumed, as observed
	// while this node leads (cleared on every leadership change).
	failingMu sync.Mutex
	failing   map[string]time.Time
	// suspect is the leader this node followed before it was elected, and
	// suspectSince when its failure may be counted from (see run): a
	// failed heartbeat to it counts from then, not from the first failure
	// this new leader observes.
	suspect      string
	suspectSince time.Time
	suspectUntil time.Time // the first failure must come before (it is used once)
	// verified: UnixNano (Options.Now) at which the leader's last
	// successful VerifyLeader began: a quorum followed it then.
	verified atomic.Int64

	done      chan struct{}
	wg        sync.WaitGroup
	closeOnce sync.Once
	closeErr  error

	watchMu  sync.Mutex
	watchers map[*Watcher]struct{}
	closed   bool
	// prev is the map notify saw last (raft's FSM goroutine only): the
	// moves of each change are logged against it.
	prev *Map
}

// Open starts the node. With no Raft state in Options.Dir and without
// Options.Join it bootstraps the configuration of every node in the
// cluster file; the first leader then writes the first Map (every node up,
// partitions balanced, epoch 1).
func Open(opts Options) (_ *Node, err error) {
	opts.EnsureDefaults()
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	self, _ := opts.Config.Node(opts.Name)
	n := &Node{
		opts:     opts,
		name:     opts.Name,
		obsCh:    make(chan raft.Observation, 64),
		leaderCh: make(chan bool, 4),
		done:     make(chan struct{}),
		watchers: map[*Watcher]struct{}{},
		failing:  map[string]time.Time{},
	}
	n.fsm = newFSM(n.notify)
	if err := os.MkdirAll(opts.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("cluster: %w", err)
	}
	logger := newRaftLogger(opts.Logger, opts.Name)
	// A timeout on the file lock: a second process on the same Dir gets an
	// error instead of waiting for ever.
	n.store, err = raftboltdb.New(raftboltdb.Options{Path: filepath.Join(opts.Dir, "raft.db"), BoltOptions: &bbolt.Options{Timeout: time.Second}})
	if err != nil {
		return nil, fmt.Errorf("cluster: raft store: %w", err)
	}
	defer func() {
		if err != nil {
			if n.trans != nil {
				n.trans.Close()
				n.stream.wait()
			}
			n.store.Close()
		}
	}()
	snaps, err := raft.NewFileSnapshotStoreWithLogger(opts.Dir, opts.SnapshotsKept, logger)
	if err != nil {
		return nil, fmt.Errorf("cluster: raft snapshots: %w", err)
	}
	n.stream, err = listenStream(self.Raft, opts.TLS)
	if err != nil {
		return nil, fmt.Errorf("cluster: raft transport on %s: %w", self.Raft, err)
	}
	// The transport's timeout is the heartbeat timeout: a paused peer's
	// heartbeat fails within it, inside DownAfter.
	n.trans = raft.NewNetworkTransportWithLogger(n.stream, 3, opts.HeartbeatTimeout, logger)
	conf := raft.DefaultConfig()
	conf.LocalID = raft.ServerID(opts.Name)
	conf.HeartbeatTimeout = opts.HeartbeatTimeout
	conf.ElectionTimeout = opts.ElectionTimeout
	conf.LeaderLeaseTimeout = opts.LeaderLeaseTimeout
	conf.CommitTimeout = opts.CommitTimeout
	conf.NotifyCh = n.leaderCh
	conf.Logger = logger
	if err := raft.ValidateConfig(conf); err != nil {
		return nil, fmt.Errorf("cluster: %w", err)
	}
	if !opts.Join {
		has, err := raft.HasExistingState(n.store, n.store, snaps)
		if err != nil {
			return nil, fmt.Errorf("cluster: raft state: %w", err)
		}
		if !has {
			var servers []raft.Server
			for _, nc := range opts.Config.Nodes {
				servers = append(servers, raft.Server{ID: raft.ServerID(nc.Name), Address: raft.ServerAddress(nc.Raft)})
			}
			if err := raft.BootstrapCluster(conf, n.store, n.store, snaps, n.trans, raft.Configuration{Servers: servers}); err != nil {
				return nil, fmt.Errorf("cluster: bootstrap: %w", err)
			}
		}
	}
	n.raft, err = raft.NewRaft(conf, n.fsm, n.store, n.store, snaps, n.trans)
	if err != nil {
		return nil, fmt.Errorf("cluster: raft: %w", err)
	}
	n.observer = raft.NewObserver(n.obsCh, false, func(o *raft.Observation) bool {
		switch o.Data.(type) {
		case raft.FailedHeartbeatObservation, raft.ResumedHeartbeatObservation:
			return true
		}
		return false
	})
	n.raft.RegisterObserver(n.observer)
	n.wg.Add(2)
	go n.observe()
	go n.run()
	return n, nil
}

// Close stops the node: Raft, the liveness loop, the transport and the
// store; it closes the watchers' channels. It waits for every goroutine
// it started.
func (n *Node) Close() error {
	n.closeOnce.Do(func() {
		close(n.done)
		// The liveness loop stops before Raft does: a VerifyLeader
		// future handed to Raft while it shuts down can sit in its
		// buffered channel unanswered for ever (hashicorp/raft v1.8.0
		// answers verify futures only from its running loops, and the
		// future does not watch shutdown). While Raft runs, every verify
		// is answered: at once as a follower or candidate, or, on a
		// leader that lost its quorum, when it steps down after
		// LeaderLeaseTimeout.
		n.wg.Wait()
		n.raft.DeregisterObserver(n.observer)
		errs := []error{n.raft.Shutdown().Error()}
		n.trans.CloseStreams() // the pooled outgoing connections: peers stop serving them
		errs = append(errs, n.trans.Close())
		n.stream.wait()
		errs = append(errs, n.store.Close())
		n.watchMu.Lock()
		n.closed = true
		for w := range n.watchers {
			close(w.c)
			delete(n.watchers, w)
		}
		n.watchMu.Unlock()
		if err := errors.Join(errs...); err != nil {
			n.closeErr = fmt.Errorf("cluster: close: %w", err)
		}
	})
	return n.closeErr
}

// Name is this node's name.
func (n *Node) Name() string { return n.name }

// Map is the control state as this node has applied it (possibly behind
// the leader's). It must not be modified.
func (n *Node) Map() Map { return *n.fsm.cur.Load() }

// Leader is the name of the leader this node knows ("" if none).
func (n *Node) Leader() string {
	_, id := n.raft.LeaderWithID()
	return string(id)
}

// IsLeader reports whether this node is the Raft leader.
func (n *Node) IsLeader() bool { return n.raft.State() == raft.Leader }

// Owns reports whether this node may act as the owner of partition p now,
// and under which epoch: the map it has applied names it, and within
// Options.Lease it heard from a leader (a follower) or a quorum confirmed
// its leadership (the leader verifies it every LivenessInterval). It is the cheap
// local check made before each publish; it cannot see a pause that
// happens after it returns, so every publish also carries the epoch and
// the fence check of ARCHITECTURE.md "Cluster", which is the authority.
func (n *Node) Owns(p int) (epoch uint64, ok bool) {
	m := n.fsm.cur.Load()
	if p < 0 || p >= len(m.Partitions) || m.Partitions[p].Owner != n.name {
		return 0, false
	}
	var last time.Time
	if n.raft.State() == raft.Leader {
		last = time.Unix(0, n.verified.Load())
	} else {
		last = n.raft.LastContact()
	}
	if last.IsZero() || n.opts.Now().Sub(last) > n.opts.Lease {
		return 0, false
	}
	return m.Partitions[p].Epoch, true
}

// AddNode adds a node (started with Options.Join) to the Raft
// configuration as a voter and to the membership; partitions rebalance.
// It is called on the leader.
func (n *Node) AddNode(nc NodeConfig) error {
	if err := n.checkLeader(); err != nil {
		return err
	}
	m := n.fsm.cur.Load()
	if !m.Initialised() {
		return ErrNotInitialised
	}
	if err := checkName(nc.Name); err != nil {
		return fmt.Errorf("cluster: add: name: %w", err)
	}
	if err := checkAddr(nc.Raft); err != nil {
		return fmt.Errorf("cluster: add %s: raft: %w", nc.Name, err)
	}
	if _, ok := m.Member(nc.Name); ok {
		return fmt.Errorf("%w: %s", ErrNodeExists, nc.Name)
	}
	if err := n.raft.AddVoter(raft.ServerID(nc.Name), raft.ServerAddress(nc.Raft), 0, n.opts.ApplyTimeout).Error(); err != nil {
		return fmt.Errorf("cluster: add %s: %w", nc.Name, unavailable(err))
	}
	return n.propose(command{op: opAdd, members: []Member{{NodeConfig: nc}}})
}

// RemoveNode removes a node from the membership (its partitions move,
// epoch+1) and then from the Raft configuration. It is called on the
// leader; removing the leader itself makes it step down.
func (n *Node) RemoveNode(name string) error {
	if err := n.checkLeader(); err != nil {
		return err
	}
	if _, ok := n.fsm.cur.Load().Member(name); !ok {
		return fmt.Errorf("%w: %s", ErrUnknownNode, name)
	}
	if err := n.propose(command{op: opRemove, name: name}); err != nil {
		return err
	}
	if err := n.raft.RemoveServer(raft.ServerID(name), 0, n.opts.ApplyTimeout).Error(); err != nil {
		return fmt.Errorf("cluster: remove %s: %w", name, unavailable(err))
	}
	return nil
}

func (n *Node) checkLeader() error {
	if n.raft.State() != raft.Leader {
		return fmt.Errorf("%w (the leader is %q)", ErrNotLeader, n.Leader())
	}
	return nil
}

// propose replicates c and returns the error its Apply returned, if any.
func (n *Node) propose(c command) error {
	f := n.raft.Apply(c.encode(), n.opts.ApplyTimeout)
	if err := f.Error(); err != nil {
		return fmt.Errorf("cluster: propose: %w", unavailable(err))
	}
	if err, ok := f.Response().(error); ok {
		return err
	}
	return nil
}

// observe keeps n.failing from raft's heartbeat observations. It only
// takes a mutex, so it keeps up with raft (the observer drops what does
// not fit in obsCh, and a lost "resumed" would keep a peer failing).
func (n *Node) observe() {
	defer n.wg.Done()
	for {
		select {
		case <-n.done:
			return
		case o := <-n.obsCh:
			n.failingMu.Lock()
			switch d := o.Data.(type) {
			case raft.FailedHeartbeatObservation:
				if _, ok := n.failing[string(d.PeerID)]; !ok {
					since := n.opts.Now()
					if string(d.PeerID) == n.suspect {
						// Used once, and only for the first failure
						// seen soon after the election: a later one
						// is a new failure of a node that came back.
						if since.Before(n.suspectUntil) && n.suspectSince.Before(since) {
							since = n.suspectSince
						}
						n.suspect = ""
					}
					n.failing[string(d.PeerID)] = since
					// The first step of a failover (ARCHITECTURE.md
					// "Cluster", "Where a failover's time goes").
					n.opts.Logger.Info("cluster: heartbeats failing", "peer", string(d.PeerID), "counted_from", since)
				}
			case raft.ResumedHeartbeatObservation:
				if _, ok := n.failing[string(d.PeerID)]; ok {
					n.opts.Logger.Info("cluster: heartbeats resumed", "peer", string(d.PeerID))
				}
				delete(n.failing, string(d.PeerID))
				if string(d.PeerID) == n.suspect {
					n.suspect = ""
				}
			}
			n.failingMu.Unlock()
		}
	}
}

// run is the liveness loop. On the leader it writes the first map and
// brings the members' Up in the map in line with what it observes:
//   - itself: up;
//   - a member not in the Raft configuration: down;
//   - a member whose heartbeats have failed for DownAfter: down;
//   - a member marked down whose heartbeats work: up again once this node
//     has led for DownAfter (its heartbeats had time to fail) and no
//     failure is outstanding.
func (n *Node) run() {
	defer n.wg.Done()
	tick := time.NewTicker(n.opts.LivenessInterval)
	defer tick.Stop()
	var leaderSince time.Time
	var followed string // the last leader this node followed
	for {
		select {
		case <-n.done:
			return
		case l := <-n.leaderCh:
			leaderSince = time.Time{}
			suspect, suspectSince := "", time.Time{}
			if l {
				leaderSince = n.opts.Now()
				if followed != "" && followed != n.name {
					// Elected: the previous leader went silent. Its
					// lease (Owns on a leader: a quorum confirmed it
					// within Lease) ran out by the time a majority voted
					// here: each voter had heard nothing from it for a
					// heartbeat timeout (≥ Lease) and hashicorp/raft
					// refuses votes while it has a leader. So its
					// failure may count from this node's last contact
					// with it, but no earlier than Lease before the
					// election, to keep the margin DownAfter - Lease
					// between its lease's end and its partitions moving.
					suspect = followed
					suspectSince = n.raft.LastContact()
					if floor := leaderSince.Add(-n.opts.Lease); suspectSince.Before(floor) {
						suspectSince = floor
					}
				}
			}
			n.failingMu.Lock()
			clear(n.failing)
			n.suspect, n.suspectSince, n.suspectUntil = suspect, suspectSince, leaderSince.Add(n.opts.DownAfter)
			n.failingMu.Unlock()
			n.opts.Logger.Info("cluster: leadership", "leader", l, "previous", followed)
		case <-tick.C:
			if n.raft.State() != raft.Leader {
				if l := n.Leader(); l != "" {
					followed = l
				}
			}
			if !leaderSince.IsZero() && n.raft.State() == raft.Leader {
				start := n.opts.Now()
				if n.raft.VerifyLeader().Error() == nil {
					n.verified.Store(start.UnixNano())
				}
				n.failingMu.Lock()
				failing := maps.Clone(n.failing)
				n.failingMu.Unlock()
				n.reconcile(leaderSince, failing)
			}
		}
	}
}

func (n *Node) reconcile(leaderSince time.Time, failing map[string]time.Time) {
	m := n.fsm.cur.Load()
	if !m.Initialised() {
		c := command{op: opInit, partitions: n.opts.Config.Partitions, standbys: n.opts.Config.ReplicaCount() - 1}
		for _, nc := range n.opts.Config.Nodes {
			c.members = append(c.members, Member{NodeConfig: nc})
		}
		if err := n.propose(c); err != nil {
			n.opts.Logger.Warn("cluster: init", "err", err)
		}
		return
	}
	cf := n.raft.GetConfiguration()
	if cf.Error() != nil {
		return
	}
	inConf := map[string]bool{}
	for _, s := range cf.Configuration().Servers {
		inConf[string(s.ID)] = true
	}
	now := n.opts.Now()
	changes := livenessChanges(m, n.name, inConf, failing, leaderSince, now, n.opts.DownAfter)
	if len(changes) > 0 {
		var down, up []string
		for _, c := range changes {
			if c.Up {
				up = append(up, c.Name)
			} else {
				down = append(down, c.Name)
			}
		}
		if err := n.propose(command{op: opLiveness, liveness: changes}); err != nil {
			n.opts.Logger.Warn("cluster: liveness", "down", down, "up", up, "err", err)
			return
		}
		n.opts.Logger.Info("cluster: liveness committed", "down", down, "up", up, "took", n.opts.Now().Sub(now))
	}
}

// livenessChanges returns the members of m whose Up must change, as the
// leader self sees them at now (the rules of run).
func livenessChanges(m *Map, self string, inConf map[string]bool, failing map[string]time.Time, leaderSince, now time.Time, downAfter time.Duration) []Member {
	var changes []Member
	for _, mb := range m.Members {
		up := mb.Up
		since, isFailing := failing[mb.Name]
		switch {
		case mb.Name == self:
			up = true
		case !inConf[mb.Name]:
			up = false
		case isFailing && now.Sub(since) >= downAfter:
			up = false
		case !isFailing && !mb.Up && now.Sub(leaderSince) >= downAfter:
			up = true
		}
		if up != mb.Up {
			changes = append(changes, Member{NodeConfig: NodeConfig{Name: mb.Name}, Up: up})
		}
	}
	return changes
}

// Watcher receives the partition map after each change.
type Watcher struct {
	// C holds at most one Map, the newest: a map not received before the
	// next change is replaced by it. Closed by Stop or Node.Close. The maps
	// must not be modified.
	C <-chan Map
	c chan Map
	n *Node
}

// Watch returns a Watcher; its channel holds the current map at once.
func (n *Node) Watch() *Watcher {
	c := make(chan Map, 1)
	w := &Watcher{C: c, c: c, n: n}
	n.watchMu.Lock()
	defer n.watchMu.Unlock()
	if n.closed {
		close(c)
		return w
	}
	c <- *n.fsm.cur.Load()
	n.watchers[w] = struct{}{}
	return w
}

// Stop closes the watcher's channel.
func (w *Watcher) Stop() {
	w.n.watchMu.Lock()
	defer w.n.watchMu.Unlock()
	if _, ok := w.n.watchers[w]; ok {
		delete(w.n.watchers, w)
		close(w.c)
	}
}

// notify runs on raft's FSM goroutine after each change; it never blocks.
// It logs the partitions whose owner changed (the step "map change
// applied" of a failover, on every node).
func (n *Node) notify(m *Map) {
	if prev := n.prev; prev != nil && len(prev.Partitions) == len(m.Partitions) {
		var moved []string
		for i, p := range m.Partitions {
			if q := prev.Partitions[i]; q.Owner != p.Owner || q.Epoch != p.Epoch {
				moved = append(moved, fmt.Sprintf("%d:%s@%d", i, p.Owner, p.Epoch))
			}
		}
		if len(moved) > 0 {
			n.opts.Logger.Info("cluster: map applied", "index", m.Index, "moved", strings.Join(moved, " "))
		}
	}
	n.prev = m
	n.watchMu.Lock()
	defer n.watchMu.Unlock()
	for w := range n.watchers {
		select {
		case <-w.c:
		default:
		}
		w.c <- *m
	}
}

// newRaftLogger routes hashicorp/raft's hclog lines into l.
func newRaftLogger(l *slog.Logger, name string) hclog.Logger {
	level := hclog.Info
	if !l.Enabled(context.Background(), slog.LevelError) {
		level = hclog.Off
	}
	return hclog.New(&hclog.LoggerOptions{Name: "raft", Output: slogWriter{l.With("node", name)}, Level: level, DisableTime: true})
}

type slogWriter struct{ l *slog.Logger }

func (w slogWriter) Write(p []byte) (int, error) {
	line := strings.TrimSpace(string(p))
	level := slog.LevelInfo
	switch {
	case strings.Contains(line, "[ERROR]"):
		level = slog.LevelError
	case strings.Contains(line, "[WARN]"):
		level = slog.LevelWarn
	case strings.Contains(line, "[DEBUG]"), strings.Contains(line, "[TRACE]"):
		level = slog.LevelDebug
	}
	w.l.Log(context.Background(), level, line)
	return len(p), nil
}
