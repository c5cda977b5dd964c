package cluster

import (
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"path/filepath"
	"reflect"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aurumcdp/aurum/internal/check"
	"go.uber.org/goleak"
)

// freeAddr returns a loopback address with a port free at the time of the
// call and not handed out before in this test (the kernel may hand a
// port just released out again).
func (c *testCluster) freeAddr() string {
	c.t.Helper()
	for {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			c.t.Fatal(err)
		}
		addr := l.Addr().String()
		l.Close()
		if !c.used[addr] {
			c.used[addr] = true
			return addr
		}
	}
}

func (c *testCluster) nodeConfig(name string) NodeConfig {
	return NodeConfig{Name: name, HTTP: c.freeAddr(), Raft: c.freeAddr()}
}

type testCluster struct {
	t     *testing.T
	cfg   *Config
	dir   string
	nodes map[string]*Node
	skew  map[string]*atomic.Int64 // added to each node's clock
	used  map[string]bool          // addresses handed out
	tls   *tls.Config              // the Raft transport's (nil: plain TCP)
}

// newTestCluster starts one node per name on loopback, all bootstrapped
// from the same cluster file.
func newTestCluster(t *testing.T, partitions int, names ...string) *testCluster {
	return newTestClusterTLS(t, partitions, nil, names...)
}

// newTestClusterTLS is newTestCluster with the cluster file's tls block
// (nil: none).
func newTestClusterTLS(t *testing.T, partitions int, files *TLSFiles, names ...string) *testCluster {
	c := &testCluster{t: t, cfg: &Config{Partitions: partitions, TLS: files}, dir: t.TempDir(), nodes: map[string]*Node{}, skew: map[string]*atomic.Int64{}, used: map[string]bool{}}
	for _, name := range names {
		c.cfg.Nodes = append(c.cfg.Nodes, c.nodeConfig(name))
	}
	if err := c.cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	if files != nil {
		var err error
		if c.tls, err = c.cfg.TLSFor(names[0], ""); err != nil {
			t.Fatal(err)
		}
	}
	for _, name := range names {
		c.start(name, false)
	}
	t.Cleanup(c.closeAll)
	return c
}

func testOptions(cfg *Config, name, dir string, join bool) Options {
	return Options{
		Config: cfg, Name: name, Dir: dir, Join: join,
		// Short but not flaky on a loaded two-core machine.
		HeartbeatTimeout: 300 * time.Millisecond, ElectionTimeout: 300 * time.Millisecond,
		LeaderLeaseTimeout: 150 * time.Millisecond, CommitTimeout: 10 * time.Millisecond,
		DownAfter: 800 * time.Millisecond, Lease: 400 * time.Millisecond, LivenessInterval: 50 * time.Millisecond,
	}
}

func (c *testCluster) start(name string, join bool) *Node {
	c.t.Helper()
	opts := testOptions(c.cfg, name, filepath.Join(c.dir, name), join)
	opts.TLS = c.tls
	skew := new(atomic.Int64)
	c.skew[name] = skew
	opts.Now = func() time.Time { return time.Now().Add(time.Duration(skew.Load())) }
	n, err := Open(opts)
	if err != nil {
		c.t.Fatalf("open %s: %v", name, err)
	}
	c.nodes[name] = n
	return n
}

func (c *testCluster) stop(name string) {
	c.t.Helper()
	if err := c.nodes[name].Close(); err != nil {
		c.t.Errorf("close %s: %v", name, err)
	}
	delete(c.nodes, name)
}

func (c *testCluster) closeAll() {
	for name := range c.nodes {
		c.stop(name)
	}
}

// leader waits for a leader among the running nodes that they all agree on.
func (c *testCluster) leader() *Node {
	c.t.Helper()
	var leader *Node
	check.For(c.t, 15*time.Second, 20*time.Millisecond, func() error {
		leader = nil
		for _, n := range c.nodes {
			if n.IsLeader() {
				leader = n
			}
		}
		if leader == nil {
			return errors.New("no leader")
		}
		for _, n := range c.nodes {
			if n.Leader() != leader.name {
				return fmt.Errorf("%s follows %q, not %s", n.name, n.Leader(), leader.name)
			}
		}
		return nil
	})
	return leader
}

// settled waits until every running node has applied the same map in
// which exactly the nodes up are up, and returns it.
func (c *testCluster) settled(up ...string) Map {
	c.t.Helper()
	var m Map
	check.For(c.t, 15*time.Second, 20*time.Millisecond, func() error {
		var first *Map
		for _, n := range c.nodes {
			nm := n.Map()
			if first == nil {
				first = &nm
			} else if nm.Index != first.Index {
				return fmt.Errorf("maps at %d and %d", nm.Index, first.Index)
			}
		}
		m = *first
		if err := checkMap(m, up); err != nil {
			return err
		}
		return nil
	})
	return m
}

// checkMap checks the invariants of a map in which exactly up are up.
func checkMap(m Map, up []string) error {
	if !m.Initialised() {
		return errors.New("not initialised")
	}
	isUp := map[string]bool{}
	for _, name := range up {
		isUp[name] = true
	}
	for _, mb := range m.Members {
		if mb.Up != isUp[mb.Name] {
			return fmt.Errorf("member %s up=%v", mb.Name, mb.Up)
		}
	}
	count := map[string]int{}
	for _, p := range m.Partitions {
		if !isUp[p.Owner] {
			return fmt.Errorf("partition %d owned by %q, not up", p.ID, p.Owner)
		}
		count[p.Owner]++
		for _, s := range p.Standbys {
			if !isUp[s] || s == p.Owner {
				return fmt.Errorf("partition %d: standby %q", p.ID, s)
			}
		}
	}
	lo, hi := len(m.Partitions), 0
	for _, name := range up {
		lo, hi = min(lo, count[name]), max(hi, count[name])
	}
	if hi-lo > 1 {
		return fmt.Errorf("unbalanced: %v", count)
	}
	return nil
}

func TestClusterFailoverAndMembership(t *testing.T) {
	t.Cleanup(func() { goleak.VerifyNone(t) }) // runs after the cluster's cleanup
	c := newTestCluster(t, 12, "n1", "n2", "n3")
	leader := c.leader()
	m0 := c.settled("n1", "n2", "n3")
	for _, p := range m0.Partitions {
		if p.Epoch != 1 || len(p.Standbys) != 2 {
			t.Fatalf("first map: partition %+v", p)
		}
	}
	st := leader.Status()
	if st.Leader != leader.name || len(st.Nodes) != 3 || len(st.Partitions) != 12 {
		t.Fatalf("status %+v", st)
	}
	var asJSON struct {
		Leader string                       `json:"leader"`
		Nodes  []map[string]string          `json:"nodes"`
		Parts  []map[string]json.RawMessage `json:"partitions"`
	}
	if b, err := json.Marshal(st); err != nil || json.Unmarshal(b, &asJSON) != nil {
		t.Fatalf("status JSON: %v", err)
	}
	if asJSON.Leader != leader.name || asJSON.Nodes[0]["name"] != "n1" || asJSON.Nodes[0]["http"] == "" ||
		asJSON.Nodes[0]["state"] != "up" || asJSON.Nodes[0]["raft"] == "" {
		t.Fatalf("status JSON %+v", asJSON)
	}
	for _, k := range []string{"id", "owner", "epoch", "applied"} {
		if _, ok := asJSON.Parts[0][k]; !ok {
			t.Fatalf("partition JSON lacks %q: %v", k, asJSON.Parts[0])
		}
	}
	for _, ns := range st.Nodes {
		if ns.State != "up" || (ns.Name == leader.name) != (ns.Raft == "leader") {
			t.Fatalf("status node %+v (leader %s)", ns, leader.name)
		}
	}

	// A watcher on a follower sees the failover.
	var follower *Node
	for _, n := range c.nodes {
		if n != leader {
			follower = n
		}
	}
	w := follower.Watch()
	if got := <-w.C; got.Index != m0.Index {
		t.Fatalf("watch starts at %d, want %d", got.Index, m0.Index)
	}

	// Stop the leader (after a Raft snapshot, which its restart restores):
	// a new leader, and its partitions move with epoch+1.
	dead := leader.name
	if err := leader.raft.Snapshot().Error(); err != nil {
		t.Fatalf("snapshot: %v", err)
	}
	stopped := time.Now()
	c.stop(dead)
	var up []string
	for name := range c.nodes {
		up = append(up, name)
	}
	newLeader := c.leader()
	if newLeader.name == dead {
		t.Fatal("dead leader still leads")
	}
	m1 := c.settled(up...)
	t.Logf("failover of the leader %s: %v to the settled map (DownAfter %v)", dead, time.Since(stopped), testOptions(c.cfg, "", "", false).DownAfter)
	for i, p := range m1.Partitions {
		old := m0.Partitions[i]
		switch {
		case old.Owner == dead && p.Epoch != old.Epoch+1:
			t.Errorf("partition %d of the dead %s: epoch %d → %d", i, dead, old.Epoch, p.Epoch)
		case old.Owner != dead && (p.Owner != old.Owner || p.Epoch != old.Epoch):
			t.Errorf("partition %d moved from live %s to %s", i, old.Owner, p.Owner)
		case old.Owner == dead && !contains(old.Standbys, p.Owner):
			t.Errorf("partition %d went to %s, not one of its standbys %v", i, p.Owner, old.Standbys)
		}
	}
	check.For(t, 10*time.Second, 20*time.Millisecond, func() error {
		for m := range len(w.C) {
			_ = m
			if got := <-w.C; got.Index >= m1.Index {
				return nil
			}
		}
		return errors.New("the watcher has not seen the failover map")
	})
	// Only owners with a fresh lease own.
	for _, p := range m1.Partitions {
		n := c.nodes[p.Owner]
		check.For(t, 5*time.Second, 20*time.Millisecond, func() error {
			if e, ok := n.Owns(p.ID); !ok || e != p.Epoch {
				return fmt.Errorf("%s: Owns(%d) = %d, %v", n.name, p.ID, e, ok)
			}
			return nil
		})
		for _, other := range c.nodes {
			if other != n {
				if _, ok := other.Owns(p.ID); ok {
					t.Errorf("%s owns partition %d of %s", other.name, p.ID, p.Owner)
				}
			}
		}
	}

	// A clock past the lease: a follower owner stops owning at once.
	for _, p := range m1.Partitions {
		if n := c.nodes[p.Owner]; !n.IsLeader() {
			c.skew[n.name].Store(int64(time.Hour))
			if _, ok := n.Owns(p.ID); ok {
				t.Errorf("%s owns partition %d with its lease an hour old", n.name, p.ID)
			}
			c.skew[n.name].Store(0)
			break
		}
	}

	// The dead node restarts (from its snapshot and log): it is up again
	// and gets its share back, each move with epoch+1.
	c.start(dead, false)
	m2 := c.settled("n1", "n2", "n3")
	back := 0
	for i, p := range m2.Partitions {
		if p.Owner != m1.Partitions[i].Owner {
			back++
			if p.Owner != dead || p.Epoch != m1.Partitions[i].Epoch+1 {
				t.Errorf("partition %d: %+v after %+v", i, p, m1.Partitions[i])
			}
		}
	}
	if back != 4 {
		t.Errorf("%d partitions went back to %s, want 4 of 12", back, dead)
	}

	// Membership: removing a node moves its partitions; adding a new one
	// gives it its share.
	for _, n := range c.nodes {
		if n != newLeader {
			if err := n.AddNode(c.nodeConfig("x")); !errors.Is(err, ErrNotLeader) {
				t.Fatalf("AddNode on follower %s: %v", n.name, err)
			}
		}
	}
	if err := c.leader().RemoveNode(dead); err != nil { // the leader may be dead itself
		t.Fatalf("remove %s: %v", dead, err)
	}
	c.stop(dead) // no longer replicated to
	newLeader = c.leader()
	m2 = c.settled(up...)
	if len(m2.Members) != 2 {
		t.Fatalf("members after remove: %+v", m2.Members)
	}
	n4 := c.nodeConfig("n4")
	c.cfg.Nodes = append(c.cfg.Nodes, n4)
	c.start("n4", true)
	if err := newLeader.AddNode(n4); err != nil {
		t.Fatalf("add n4: %v", err)
	}
	m3 := c.settled(append(up, "n4")...)
	moved := 0
	for i, p := range m3.Partitions {
		if p.Owner != m2.Partitions[i].Owner {
			moved++
			if p.Owner != "n4" || p.Epoch != m2.Partitions[i].Epoch+1 {
				t.Errorf("partition %d: %+v after %+v", i, p, m2.Partitions[i])
			}
		}
	}
	if moved != 4 {
		t.Errorf("%d partitions moved to n4, want 4 of 12", moved)
	}
	// n4 leaving the Raft configuration behind the map's back: the leader
	// marks it down and takes its partitions back.
	if err := newLeader.raft.RemoveServer("n4", 0, 5*time.Second).Error(); err != nil {
		t.Fatalf("raft remove n4: %v", err)
	}
	n4node := c.nodes["n4"] // still running, but no longer replicated to
	delete(c.nodes, "n4")
	if m4 := c.settled(up...); len(m4.Members) != 3 {
		t.Fatalf("members after n4 left raft: %+v", m4.Members)
	}
	if err := n4node.Close(); err != nil {
		t.Error(err)
	}
	if err := newLeader.RemoveNode("n4"); err != nil {
		t.Fatalf("remove n4: %v", err)
	}
	c.settled(up...)
	w.Stop()
	c.closeAll()
	for open := true; open; {
		select {
		case _, open = <-w.C:
		default:
			t.Fatal("watcher channel open after Stop")
		}
	}
}

func contains(s []string, v string) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}

func TestOptionsValidate(t *testing.T) {
	cfg := &Config{Partitions: 4, Nodes: []NodeConfig{{Name: "a", HTTP: "h:1", Raft: "h:2"}}}
	for _, tc := range []struct {
		name string
		edit func(*Options)
		want string
	}{
		{"defaults", func(*Options) {}, ""},
		{"no config", func(o *Options) { o.Config = nil }, "Config is required"},
		{"unknown node", func(o *Options) { o.Name = "b" }, `node "b" is not in the cluster file`},
		{"no dir", func(o *Options) { o.Dir = "" }, "Dir is required"},
		{"lease not below down", func(o *Options) { o.Lease = 3 * time.Second }, "Lease 3s must be less than DownAfter 2s"},
		{"heartbeat not below down", func(o *Options) { o.HeartbeatTimeout = 2 * time.Second }, "HeartbeatTimeout 2s must be less than DownAfter"},
		{"leader lease", func(o *Options) { o.LeaderLeaseTimeout = 1500 * time.Millisecond }, "LeaderLeaseTimeout 1.5s exceeds"},
		{"negative", func(o *Options) { o.CommitTimeout = -1 }, "CommitTimeout -1ns is negative"},
	} {
		o := Options{Config: cfg, Name: "a", Dir: "d"}
		o.EnsureDefaults()
		tc.edit(&o)
		err := o.Validate()
		if tc.want == "" && err != nil || tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)) {
			t.Errorf("%s: %v, want %q", tc.name, err, tc.want)
		}
	}
	if _, err := Open(Options{Config: cfg, Name: "zz", Dir: t.TempDir()}); err == nil {
		t.Error("Open accepted a node not in the file")
	}
}

func TestOpenTwiceOnOneDir(t *testing.T) {
	t.Cleanup(func() { goleak.VerifyNone(t) })
	c := newTestCluster(t, 2, "a")
	c.leader()
	c.settled("a")
	opts := testOptions(c.cfg, "a", filepath.Join(c.dir, "a"), false)
	if n, err := Open(opts); err == nil {
		n.Close()
		t.Fatal("a second node opened the same directory")
	}
}

func TestLivenessChanges(t *testing.T) {
	t0 := time.Unix(1000, 0)
	down := 2 * time.Second
	m := &Map{Members: []Member{
		{NodeConfig: NodeConfig{Name: "self"}, Up: false},  // a previous leader marked it down
		{NodeConfig: NodeConfig{Name: "gone"}, Up: true},   // left the Raft configuration
		{NodeConfig: NodeConfig{Name: "slow"}, Up: true},   // failing for less than DownAfter
		{NodeConfig: NodeConfig{Name: "dead"}, Up: true},   // failing for DownAfter
		{NodeConfig: NodeConfig{Name: "back"}, Up: false},  // down, heartbeats work
		{NodeConfig: NodeConfig{Name: "still"}, Up: false}, // down, failing
	}}
	inConf := map[string]bool{"self": true, "slow": true, "dead": true, "back": true, "still": true}
	failing := map[string]time.Time{"slow": t0.Add(-down + time.Millisecond), "dead": t0.Add(-down), "still": t0.Add(-time.Hour)}
	name := func(ms []Member) map[string]bool {
		out := map[string]bool{}
		for _, m := range ms {
			out[m.Name] = m.Up
		}
		return out
	}
	// Leading for long enough: "back" comes back.
	got := name(livenessChanges(m, "self", inConf, failing, t0.Add(-down), t0, down))
	want := map[string]bool{"self": true, "gone": false, "dead": false, "back": true}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("changes %v, want %v", got, want)
	}
	// A new leader does not bring "back" back before its heartbeats had
	// time to fail.
	got = name(livenessChanges(m, "self", inConf, failing, t0.Add(-down+time.Millisecond), t0, down))
	delete(want, "back")
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("new leader: changes %v, want %v", got, want)
	}
}

// TestCloseWhileVerifying closes a leader whose liveness loop verifies its
// leadership every millisecond: Close must return though a verify is in
// flight when it starts. (Raft answers no verify handed to it during its
// shutdown; a liveness loop still running then waited for ever: CI hung
// in Close for 14 minutes.)
func TestCloseWhileVerifying(t *testing.T) {
	for i := range 20 {
		c := &testCluster{t: t, cfg: &Config{Partitions: 2}, dir: t.TempDir(), nodes: map[string]*Node{}, skew: map[string]*atomic.Int64{}, used: map[string]bool{}}
		c.cfg.Nodes = []NodeConfig{c.nodeConfig("n1")}
		if err := c.cfg.Validate(); err != nil {
			t.Fatal(err)
		}
		opts := testOptions(c.cfg, "n1", filepath.Join(c.dir, "n1"), false)
		opts.LivenessInterval = time.Millisecond
		n, err := Open(opts)
		if err != nil {
			t.Fatal(err)
		}
		check.For(t, 15*time.Second, 5*time.Millisecond, func() error {
			if !n.IsLeader() {
				return errors.New("not leader yet")
			}
			return nil
		})
		time.Sleep(time.Duration(i%5) * time.Millisecond)
		closed := make(chan error, 1)
		go func() { closed <- n.Close() }()
		select {
		case err := <-closed:
			if err != nil {
				t.Fatalf("round %d: close: %v", i, err)
			}
		case <-time.After(20 * time.Second):
			t.Fatalf("round %d: Close did not return within 20 s", i)
		}
	}
}
