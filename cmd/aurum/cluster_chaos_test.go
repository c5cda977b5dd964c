package main

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"runtime"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/aurumcdp/aurum/engine"
	"github.com/aurumcdp/aurum/internal/check"
	"github.com/aurumcdp/aurum/internal/workload"
	"github.com/aurumcdp/aurum/projections"
	"github.com/aurumcdp/aurum/projections/gcr"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/oklog/ulid/v2"
)

// testCluster is a cluster of real `aurum serve --cluster` processes on
// loopback.
type testCluster struct {
	t          *testing.T
	file       string
	partitions int
	nodes      []*node
	names      []string
}

// newTestCluster starts three `aurum serve --cluster` processes with extra
// serve arguments (fixed ports: restarted nodes keep their addresses).
func newTestCluster(t *testing.T, partitions int, extra ...string) *testCluster {
	t.Helper()
	names := []string{"n1", "n2", "n3"}
	c := &testCluster{t: t, partitions: partitions, names: names}
	c.file = writeClusterFile(t, 3, partitions, names...)
	c.nodes = startClusterWith(t, c.file, extra, names...)
	return c
}

// node returns the node of that name.
func (c *testCluster) node(name string) *node {
	for i, n := range c.names {
		if n == name {
			return c.nodes[i]
		}
	}
	c.t.Fatalf("no node %q", name)
	return nil
}

// natsURLs lists every node's NATS URL, for clients that fail over.
func (c *testCluster) natsURLs() string {
	var urls []string
	for _, n := range c.nodes {
		urls = append(urls, n.NATS)
	}
	return strings.Join(urls, ",")
}

// clusterStatus is GET /v1/cluster.
type clusterStatus struct {
	Leader string `json:"leader"`
	Nodes  []struct {
		Name  string `json:"name"`
		State string `json:"state"`
		Raft  string `json:"raft"`
	} `json:"nodes"`
	Partitions []struct {
		ID      int    `json:"id"`
		Owner   string `json:"owner"`
		Epoch   uint64 `json:"epoch"`
		Applied uint64 `json:"applied"`
	} `json:"partitions"`
}

func (n *node) clusterStatus() (clusterStatus, error) {
	var st clusterStatus
	code, body, err := n.request("GET", "/v1/cluster", nil, adminAuth)
	if err != nil || code != http.StatusOK {
		return st, fmt.Errorf("GET /v1/cluster: %d %s %v", code, body, err)
	}
	return st, json.Unmarshal(body, &st)
}

// settled waits until a live node reports a leader, every node in
// `up` up and the others down, and every partition owned by an up node;
// it returns that status.
func (c *testCluster) settled(timeout time.Duration, up ...string) clusterStatus {
	c.t.Helper()
	var st clusterStatus
	check.For(c.t, timeout, 50*time.Millisecond, func() error {
		var err error
		st, err = c.node(up[0]).clusterStatus()
		if err != nil {
			return err
		}
		if st.Leader == "" || !slices.Contains(up, st.Leader) {
			return fmt.Errorf("leader %q", st.Leader)
		}
		// A node that has just restarted answers with an empty map until
		// its Raft state is restored: not settled.
		if len(st.Nodes) != len(c.names) || len(st.Partitions) != c.partitions {
			return fmt.Errorf("%d nodes and %d partitions in the map", len(st.Nodes), len(st.Partitions))
		}
		for _, n := range st.Nodes {
			if want := slices.Contains(up, n.Name); want != (n.State == "up") {
				return fmt.Errorf("node %s is %s", n.Name, n.State)
			}
		}
		owned := map[string]int{}
		for _, p := range st.Partitions {
			if !slices.Contains(up, p.Owner) {
				return fmt.Errorf("partition %d owned by %q", p.ID, p.Owner)
			}
			owned[p.Owner]++
		}
		// Balanced: owner counts differ by at most one.
		lo, hi := len(st.Partitions), 0
		for _, n := range up {
			lo, hi = min(lo, owned[n]), max(hi, owned[n])
		}
		if hi-lo > 1 {
			return fmt.Errorf("partitions per node %v", owned)
		}
		return nil
	})
	return st
}

// current waits until every node answers /healthz 200: its JetStream
// replicas have caught up. A node restarted a moment ago is still catching
// up; killing another one then is a second failure at once (a stream may
// be left without a quorum until it caught up), which R3 does not promise
// to survive: the chaos kills one node at a time.
func (c *testCluster) current(timeout time.Duration) {
	c.t.Helper()
	check.For(c.t, timeout, 50*time.Millisecond, func() error {
		for i, n := range c.nodes {
			if code, body, err := n.request("GET", "/healthz", nil, nil); err != nil || code != http.StatusOK {
				return fmt.Errorf("%s: /healthz %d %s %v", c.names[i], code, body, err)
			}
		}
		return nil
	})
}

// owned lists the partitions name owns in st.
func (st clusterStatus) owned(name string) []int {
	var ps []int
	for _, p := range st.Partitions {
		if p.Owner == name {
			ps = append(ps, p.ID)
		}
	}
	return ps
}

// seenTransition is one transition the subscriber received.
type seenTransition struct {
	id, subject string
	partition   int // -1: no Aurum-Profile header (an erasure exit)
	epoch       string
	stored      time.Time // AURUM_OUT's timestamp
	seq         uint64    // AURUM_OUT sequence
}

// transitionSubscriber follows aurum.audience.> on AURUM_OUT over a
// connection to every node (it survives kills). It re-opens its ordered
// consumer itself, after the last stream sequence it saw: nats.go's own
// reset of a Consume gave up for good when the consumer's server died
// during a JetStream election (the CI flake of issue #11: transitions were
// stored, the subscriber never saw them), and its default heartbeat (5 s)
// noticed a dead server only after 10 s.
type transitionSubscriber struct {
	mu   sync.Mutex
	seen []seenTransition
}

func subscribeTransitions(t *testing.T, c *testCluster) *transitionSubscriber {
	t.Helper()
	nc := natsConnect(t, c.natsURLs(), natsAdmin(), nats.MaxReconnects(-1), nats.ReconnectWait(100*time.Millisecond))
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	s := &transitionSubscriber{}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	t.Cleanup(func() { cancel(); <-done })
	go func() { // owned by the test: Cleanup stops it and waits
		defer close(done)
		next := uint64(1)
		for ctx.Err() == nil {
			next = s.follow(ctx, js, c.partitions, next)
			select {
			case <-ctx.Done():
			case <-time.After(100 * time.Millisecond):
			}
		}
	}()
	return s
}

// follow reads AURUM_OUT's transitions from sequence next until an error
// or ctx's end, and returns the sequence to go on from.
func (s *transitionSubscriber) follow(ctx context.Context, js jetstream.JetStream, partitions int, next uint64) uint64 {
	octx, cancel := context.WithTimeout(ctx, 5*time.Second)
	cons, err := js.OrderedConsumer(octx, "AURUM_OUT", jetstream.OrderedConsumerConfig{FilterSubjects: []string{"aurum.audience.>"},
		DeliverPolicy: jetstream.DeliverByStartSequencePolicy, OptStartSeq: next, MaxResetAttempts: 1})
	cancel()
	if err != nil {
		return next
	}
	it, err := cons.Messages(jetstream.PullHeartbeat(time.Second))
	if err != nil {
		return next
	}
	defer it.Stop()
	returned := make(chan struct{})
	defer close(returned)
	go func() { // ends with this call; on ctx's end Stop unblocks Next
		select {
		case <-ctx.Done():
			it.Stop()
		case <-returned:
		}
	}()
	for {
		m, err := it.Next()
		if err != nil {
			return next
		}
		md, err := m.Metadata()
		if err != nil || md.Sequence.Stream < next {
			continue
		}
		next = md.Sequence.Stream + 1
		tr := seenTransition{id: m.Headers().Get("Nats-Msg-Id"), subject: m.Subject(), partition: -1,
			epoch: m.Headers().Get("Aurum-Epoch"), stored: md.Timestamp, seq: md.Sequence.Stream}
		if p := m.Headers().Get("Aurum-Profile"); p != "" {
			if id, err := ulid.ParseStrict(p); err == nil {
				tr.partition = gcr.PartitionOf(id[:], partitions)
			}
		}
		s.mu.Lock()
		s.seen = append(s.seen, tr)
		s.mu.Unlock()
	}
}

func (s *transitionSubscriber) snapshot() []seenTransition {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.seen)
}

// firstAfter is the first transition of one of parts stored after t.
func (s *transitionSubscriber) firstAfter(t time.Time, parts []int) (seenTransition, bool) {
	for _, tr := range s.snapshot() {
		if tr.stored.After(t) && slices.Contains(parts, tr.partition) {
			return tr, true
		}
	}
	return seenTransition{}, false
}

// TestClusterChaos is the cluster's exactly-once proof (issue #11): three
// `aurum serve --cluster` processes; four producers with retries sending
// the synthetic store to random nodes, two over HTTP (/v1/batch) and two
// over NATS (aurum.ingest.<source>, acknowledged by JetStream); an ordered
// consumer following aurum.audience.> on AURUM_OUT. Meanwhile: SIGKILLs of
// the Raft leader and of partition owners (each restarted once the others
// have taken over), one SIGSTOP of an owner for longer than its lease, and
// one rolling restart of every node. Afterwards:
//
//  1. every accepted event is counted exactly once in look-ups on every node;
//  2. the transitions the subscriber saw equal an offline replay's (none
//     twice, none missing, same order per profile and audience), and no
//     transition of a partition was stored under an older epoch after a
//     newer one (the fence);
//  3. all nodes report equal digests at the same applied position.
//
// The failover time (SIGKILL of an owner → the next transition of one of
// its partitions stored) is logged. Short version in CI; the long one:
//
//	AURUM_CHAOS=long go test -run TestClusterChaos -timeout 30m ./cmd/aurum
//
// AURUM_CHAOS_LOGS=DIR keeps every node's log in DIR/<node>.log: the
// engine logs each step of a take-over ("engine: outbox: owner of
// partition", "caught up", "publishing partition", "first publish").
func TestClusterChaos(t *testing.T) {
	if testing.Short() {
		t.Skip("kills real aurum processes")
	}
	t.Parallel() // waits on real processes more than it computes: overlaps the other long tests
	cfg := chaosConfigFromEnv(t)
	kills := 3
	if cfg.name == "long" {
		kills = 10
	}
	cfg.batch, cfg.rate = 10, 4 // a stream long enough for the chaos below
	start := time.Now()
	w := newChaosWorkload(t, cfg)
	c := newTestCluster(t, 8, "--tick", "100ms")
	// AURUM_CHAOS_LOGS=DIR keeps every node's log there (DIR/<node>.log),
	// to see where a failover's time went.
	if dir := os.Getenv("AURUM_CHAOS_LOGS"); dir != "" {
		t.Cleanup(func() { saveNodeLogs(t, c, dir) })
	}
	st := c.settled(60*time.Second, c.names...)
	t.Logf("cluster up in %v, leader %s", time.Since(start).Round(time.Millisecond), st.Leader)

	// Sources and audiences created on n1 hold on every node.
	keys := map[string]string{}
	for _, s := range workload.Sources {
		keys[s] = c.nodes[0].createSource(s)
	}
	for _, a := range chaosAudiences {
		c.nodes[0].mustJSON("POST", "/v1/audiences", map[string]string{"name": a.name, "rule": a.rule}, adminAuth, http.StatusCreated, nil)
	}
	for _, n := range c.nodes[1:] {
		check.For(t, 30*time.Second, 50*time.Millisecond, func() error {
			sizes, err := n.audienceSizes()
			if err != nil {
				return err
			}
			if len(sizes) != len(chaosAudiences) {
				return fmt.Errorf("%d audiences", len(sizes))
			}
			return nil
		})
	}
	sub := subscribeTransitions(t, c)

	// Producers.
	var acked, rejected, dups atomic.Int64
	sendDeadline := time.Now().Add(10 * time.Minute)
	var wg sync.WaitGroup
	for p, batches := range w.producers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := rand.New(rand.NewPCG(cfg.seed, uint64(p)))
			overNATS := p%2 == 1
			var js map[string]jetstream.JetStream
			if overNATS {
				var closeJS func()
				var err error
				if js, closeJS, err = natsProducers(c.natsURLs(), keys, nats.DontRandomize()); err != nil {
					t.Errorf("producer %d: %v", p, err)
					return
				}
				defer closeJS()
			}
			pace := time.NewTicker(time.Second / time.Duration(cfg.rate))
			defer pace.Stop()
			for i, b := range batches {
				<-pace.C
				now := time.Now().UTC().Format(time.RFC3339Nano)
				for _, ev := range b.events {
					ev["timestamp"] = now
				}
				sends := 1
				if b.dup {
					sends = 2
				}
				for s := range sends {
					var err error
					if overNATS {
						err = natsSendBatch(js[b.source], b, sendDeadline)
					} else {
						var body []byte
						if body, err = json.Marshal(map[string]any{"batch": b.events}); err == nil {
							var rj int
							rj, err = clusterSend(c, r, keys[b.source], body, sendDeadline)
							rejected.Add(int64(rj))
						}
					}
					if err != nil {
						t.Errorf("producer %d batch %d (send %d): %v", p, i, s+1, err)
						return
					}
					if s == 0 {
						acked.Add(1)
					} else {
						dups.Add(1)
					}
				}
			}
		}()
	}

	// The chaos, one step at a time, each once the cluster has settled.
	var failovers []time.Duration
	var breakdowns []failoverBreakdown
	var steps []string
	chaosDone := make(chan struct{})
	go func() {
		defer close(chaosDone)
		// Not n.start: t.Fatal belongs to the test's goroutine. (check.For
		// in settled fails with FailNow here too: it ends this goroutine,
		// chaosDone is closed, and the test stops after the producers.)
		restart := func(n *node) {
			err := n.launch()
			if err == nil {
				err = n.waitListening(90 * time.Second)
			}
			if err != nil {
				t.Error(err)
				runtime.Goexit()
			}
		}
		r := rand.New(rand.NewPCG(cfg.seed, 0xc105))
		for k := range kills {
			b, step := killOwner(t, c, sub, r, k%2 == 0)
			failovers = append(failovers, b.at["stored"])
			breakdowns = append(breakdowns, b)
			steps = append(steps, step)
		}
		// SIGSTOP of an owner for longer than its lease (and DownAfter).
		c.current(60 * time.Second)
		st := c.settled(60*time.Second, c.names...)
		victim := c.names[0]
		if victim == st.Leader {
			victim = c.names[1]
		}
		n := c.node(victim)
		_ = n.cmd.Process.Signal(syscall.SIGSTOP)
		rest := slices.DeleteFunc(slices.Clone(c.names), func(s string) bool { return s == victim })
		c.settled(30*time.Second, rest...)
		time.Sleep(time.Second) // transitions flow on the new owners meanwhile
		_ = n.cmd.Process.Signal(syscall.SIGCONT)
		steps = append(steps, fmt.Sprintf("SIGSTOP %s until the others took its partitions %v, then SIGCONT", victim, st.owned(victim)))
		// A rolling restart of every node.
		for _, name := range c.names {
			c.current(60 * time.Second)
			c.settled(60*time.Second, c.names...)
			n := c.node(name)
			n.stop()
			restart(n)
		}
		steps = append(steps, "rolling restart of "+strings.Join(c.names, ", "))
	}()
	wg.Wait()
	<-chaosDone
	if t.Failed() {
		t.FailNow()
	}
	for _, s := range steps {
		t.Log(s)
	}
	t.Logf("failover steps (seconds after each SIGKILL):\n%s", failoverTable(breakdowns))
	if got := acked.Load(); got != int64(w.batches) {
		t.Fatalf("%d of %d batches acknowledged", got, w.batches)
	}
	if got := rejected.Load(); got != 0 {
		t.Fatalf("%d events rejected; the workload's events are all valid", got)
	}
	c.settled(60*time.Second, c.names...)

	// Windowed audiences empty by time alone once the stream is over.
	waitWindowedEmpty(t, c.nodes[0], 60*time.Second)
	// No more ticks: restart every node with --tick 0, so that the log
	// stays put while it is compared.
	for _, n := range c.nodes {
		n.stop()
		n.args = append(n.args, "--tick", "0")
	}
	for _, n := range c.nodes {
		if err := n.launch(); err != nil {
			t.Fatal(err)
		}
	}
	for _, n := range c.nodes {
		if err := n.waitListening(90 * time.Second); err != nil {
			t.Fatal(err)
		}
	}
	c.settled(60*time.Second, c.names...)
	last := logLastSeq(t, c.natsURLs())

	// (3) Equal digests at the same applied position; (1) every event once.
	var digests []string
	for i, n := range c.nodes {
		waitApplied(t, n, last, 2*time.Minute)
		var d struct {
			Applied uint64 `json:"applied"`
			Digest  string `json:"digest"`
		}
		n.mustJSON("GET", "/v1/digest", nil, adminAuth, http.StatusOK, &d)
		if d.Applied != last {
			t.Fatalf("%s: digest at %d, log ends at %d", c.names[i], d.Applied, last)
		}
		digests = append(digests, d.Digest)
		counted, _, err := countEvents(n, w.truth)
		if err != nil {
			t.Fatalf("%s: %v", c.names[i], err)
		}
		if counted != int64(w.events) {
			t.Fatalf("%s counts %d events; %d distinct messageIds were accepted", c.names[i], counted, w.events)
		}
	}
	if digests[0] != digests[1] || digests[0] != digests[2] {
		t.Fatalf("digests at %d differ: %v", last, digests)
	}

	// (2) The transitions equal an offline replay's (n1 stopped: its keys
	// database is the replay's; the log is the cluster's).
	c.nodes[0].stop()
	var replayed []projections.OutMsg
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	res, err := engine.Replay(ctx, engine.ReplayOptions{DataDir: c.nodes[0].dataDir,
		MasterKey: []byte(strings.Repeat("k", 32)), SharedKeys: true, // as startClusterWith
		NATSURL: "nats://" + testAdminToken + "@" + strings.TrimPrefix(c.nodes[1].NATS, "nats://"),
		Out: func(m projections.OutMsg) error {
			if strings.HasPrefix(m.Subject, projections.SubjectAudiencePrefix) {
				replayed = append(replayed, m)
			}
			return nil
		}})
	if err != nil {
		t.Fatal(err)
	}
	if res.Applied != last {
		t.Fatalf("replay applied %d, the log ends at %d", res.Applied, last)
	}
	check.For(t, 30*time.Second, 50*time.Millisecond, func() error {
		if n := len(sub.snapshot()); n < len(replayed) {
			return fmt.Errorf("subscriber saw %d of %d transitions", n, len(replayed))
		}
		return nil
	})
	seen := sub.snapshot()
	pubs := make([]published, len(seen))
	for i, s := range seen {
		pubs[i] = published{s.id, s.subject}
	}
	compareTransitions(t, pubs, replayed)
	checkEpochOrder(t, seen)

	sort.Slice(failovers, func(i, j int) bool { return failovers[i] < failovers[j] })
	t.Logf("cluster chaos %s, seed %d: %d events (%d batches, %d sent twice) over HTTP and NATS; %d transitions identical to a replay of %d log entries on every node; failovers %v (median %v); total %v",
		cfg.name, cfg.seed, w.events, w.batches, dups.Load(), len(seen), last, failovers, failovers[len(failovers)/2], time.Since(start).Round(time.Millisecond))
}

// clusterSend posts a batch to random nodes until one acknowledges it.
func clusterSend(c *testCluster, r *rand.Rand, key string, body []byte, deadline time.Time) (int, error) {
	for {
		n := c.nodes[r.IntN(len(c.nodes))]
		rj, err := chaosSend(n, key, body, time.Now().Add(2*time.Second))
		if err == nil {
			return rj, nil
		}
		if time.Now().After(deadline) {
			return 0, err
		}
	}
}

// natsSendBatch publishes each event of b on aurum.ingest.<source> until
// JetStream acknowledges it, across reconnects.
func natsSendBatch(js jetstream.JetStream, b chaosBatch, deadline time.Time) error {
	for _, ev := range b.events {
		data, err := json.Marshal(ev)
		if err != nil {
			return err
		}
		for {
			ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
			_, err = js.Publish(ctx, "aurum.ingest."+b.source, data)
			cancel()
			if err == nil {
				break
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("publish not acknowledged before the deadline: %w", err)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	return nil
}

// checkEpochOrder checks the fence from the outside: per partition, the
// epochs of stored transitions never go down (a fenced owner's late publish
// would store an older epoch after a newer one).
func checkEpochOrder(t *testing.T, seen []seenTransition) {
	t.Helper()
	last := map[int]uint64{}
	for _, s := range seen {
		if s.partition < 0 || s.epoch == "" {
			continue
		}
		var p int
		var e uint64
		if _, err := fmt.Sscanf(s.epoch, "%d.%d", &p, &e); err != nil || p != s.partition {
			t.Fatalf("transition %s: Aurum-Epoch %q for partition %d", s.id, s.epoch, s.partition)
		}
		if e < last[p] {
			t.Fatalf("transition %s (seq %d) of partition %d stored at epoch %d after epoch %d", s.id, s.seq, p, e, last[p])
		}
		last[p] = e
	}
}
