package engine

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aurumcdp/aurum/activation"
	"github.com/aurumcdp/aurum/engine/export"
	"github.com/aurumcdp/aurum/engine/privacy"
	"github.com/aurumcdp/aurum/event"
	"github.com/aurumcdp/aurum/internal/check"
	alog "github.com/aurumcdp/aurum/log"
	"github.com/aurumcdp/aurum/projections"
	"github.com/aurumcdp/aurum/projections/audience"
	"github.com/aurumcdp/aurum/seal"
	"github.com/aurumcdp/aurum/store"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// fakeCluster is one node's view of the cluster, set by the test: every
// partition is owned under one epoch, or none is.
type fakeCluster struct {
	name   string
	mu     sync.Mutex
	epoch  uint64
	owns   bool
	leader bool
}

func (c *fakeCluster) Name() string { return c.name }

func (c *fakeCluster) Owns(int) (uint64, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.epoch, c.owns
}

func (c *fakeCluster) IsLeader() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.leader
}

func (c *fakeCluster) set(epoch uint64, owns bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.epoch, c.owns = epoch, owns
}

func (c *fakeCluster) setLeader(v bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.leader = v
}

const clusterTestPartitions = 4

// testLogger returns a logger writing to t's output (shown when it fails
// or with -v).
func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(t.Output(), nil))
}

// openClusterEngine opens an engine with the fake cluster c; url is the
// NATS server of the first engine ("": this one embeds it, without auth);
// tick is the TickPeriod (negative: no ticks).
func openClusterEngine(t *testing.T, c *fakeCluster, url string, tick time.Duration) *Engine {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	opts := Options{DataDir: t.TempDir(), NATSListen: "127.0.0.1:-1", NATSURL: url, NATSNoAuth: url == "",
		MasterKey: bytes.Repeat([]byte{7}, 32), Partitions: clusterTestPartitions, TickPeriod: tick, Cluster: c, SharedKeys: true, Logger: testLogger(t).With("node", c.name)}
	e, err := Open(ctx, opts)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() {
		if err := e.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return e
}

// counter is the value of e's counter name (0 when not registered).
func counter(t *testing.T, e *Engine, name string) float64 {
	t.Helper()
	mfs, err := e.opts.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name {
			return mf.GetMetric()[0].GetCounter().GetValue()
		}
	}
	return 0
}

func publishedCount(t *testing.T, e *Engine) float64 {
	t.Helper()
	return counter(t, e, "aurum_outbox_published_total")
}

// outboxRows counts the rows of e's outboxes.
func outboxRows(t *testing.T, e *Engine) int {
	t.Helper()
	n := 0
	err := e.read(func(r store.Reader, _ *projections.StateMachine) error {
		for _, prefix := range projections.OutboxPrefixes(e.opts.Partitions) {
			rows, err := projections.Outbox(r, prefix, 0)
			if err != nil {
				return err
			}
			n += len(rows)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// ingestOrders ingests one order of each of users users on the first
// engine (round numbers the message ids) and waits until every engine
// applied it.
func ingestOrders(ctx context.Context, t *testing.T, round, users int, engines ...*Engine) {
	t.Helper()
	e1 := engines[0]
	evs := make([]event.Event, users)
	for i := range evs {
		ev, err := event.Parse([]byte(fmt.Sprintf(`{"type":"track","event":"Order Completed","userId":"u%d","messageId":"o-%d-%d"}`, i, round, i)),
			"", e1.Edge().ParseOptions())
		if err != nil {
			t.Fatal(err)
		}
		evs[i] = ev
	}
	if err := e1.Edge().Ingest(ctx, "web", evs); err != nil {
		t.Fatal(err)
	}
	last, err := e1.log.LastSeq(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range engines {
		if err := e.WaitApplied(ctx, last); err != nil {
			t.Fatal(err)
		}
	}
}

// transition is one message a subscriber of aurum.audience.> saw.
type transition struct {
	id, audience, profile string
}

// TestClusterOutboxFencedFailover: two engines on one NATS server, each
// applying the whole log, with a fake cluster the test flips. Only the
// owner publishes; a stale owner that still believes it owns is fenced and
// publishes nothing; a new owner publishes what the old one had not;
// nothing is stored twice and each profile's transitions keep their order.
// The non-owner prunes the rows the owner published.
func TestClusterOutboxFencedFailover(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	c1 := &fakeCluster{name: "n1", leader: true}
	c2 := &fakeCluster{name: "n2"}
	c1.set(1, true)
	e1 := openClusterEngine(t, c1, "", -1)
	e2 := openClusterEngine(t, c2, e1.NATSURL(), -1)

	if _, err := e1.Gate().CreateSource(ctx, "web"); err != nil {
		t.Fatal(err)
	}
	// Audiences on event counts only: each engine has its own keys
	// database, so sealed values ingested on e1 are unreadable on e2.
	for i, name := range []string{"one", "two", "three"} {
		if _, err := e1.PutAudience(ctx, audience.Definition{Name: name, Rule: fmt.Sprintf(`count("Order Completed") >= %d`, i+1)}); err != nil {
			t.Fatal(err)
		}
	}

	nc, err := nats.Connect(e1.NATSURL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	cons, err := js.OrderedConsumer(ctx, alog.StreamOut, jetstream.OrderedConsumerConfig{FilterSubjects: []string{"aurum.audience.>"}})
	if err != nil {
		t.Fatal(err)
	}
	var seen []transition
	// await reads transitions until n in all were seen.
	await := func(n int) {
		t.Helper()
		for len(seen) < n {
			msg, err := cons.Next(jetstream.FetchMaxWait(20 * time.Second))
			if err != nil {
				t.Fatalf("%d of %d transitions seen: %v", len(seen), n, err)
			}
			var x struct {
				Audience  string `json:"audience"`
				ProfileID string `json:"profile_id"`
			}
			if err := json.Unmarshal(msg.Data(), &x); err != nil {
				t.Fatal(err)
			}
			seen = append(seen, transition{msg.Headers().Get(jetstream.MsgIDHeader), x.Audience, x.ProfileID})
		}
	}
	const users = 12
	round := 0
	// orders ingests one order of every user on e1 and waits until both
	// engines applied it.
	orders := func() {
		t.Helper()
		round++
		ingestOrders(ctx, t, round, users, e1, e2)
	}
	// claimedAt waits until every partition's last claim is epoch by node.
	claimedAt := func(epoch uint64, node string) {
		t.Helper()
		s, err := js.Stream(ctx, alog.StreamOut)
		if err != nil {
			t.Fatal(err)
		}
		check.For(t, 20*time.Second, 10*time.Millisecond, func() error {
			for p := range clusterTestPartitions {
				m, err := s.GetLastMsgForSubject(ctx, alog.FenceSubject(p))
				if err != nil {
					return fmt.Errorf("partition %d: %w", p, err)
				}
				var c struct {
					Epoch uint64 `json:"epoch"`
					Node  string `json:"node"`
				}
				if err := json.Unmarshal(m.Data, &c); err != nil {
					return err
				}
				if c.Epoch != epoch || c.Node != node {
					return fmt.Errorf("partition %d claimed at %d by %s", p, c.Epoch, c.Node)
				}
			}
			return nil
		})
	}

	// 1. n1 owns every partition at epoch 1: it publishes, n2 does not
	// and prunes what n1 published.
	orders()
	await(users)
	check.For(t, 20*time.Second, 10*time.Millisecond, func() error {
		if n := outboxRows(t, e2); n != 0 {
			return fmt.Errorf("%d rows left in the non-owner's outbox", n)
		}
		return nil
	})
	if n := publishedCount(t, e2); n != 0 {
		t.Fatalf("the non-owner published %v", n)
	}

	// 2. n2 takes over at epoch 2 while n1 still believes it owns at
	// epoch 1 (a paused owner): once n2 has claimed, n1's publishes are
	// refused by the fence.
	c1.setLeader(false)
	c2.setLeader(true)
	c2.set(2, true)
	claimedAt(2, "n2")
	before := publishedCount(t, e1)
	orders()
	await(2 * users)
	if n := publishedCount(t, e1); n != before {
		t.Fatalf("the fenced owner published %v messages", n-before)
	}
	if n := outboxRows(t, e1); n != users {
		t.Fatalf("the fenced owner holds %d rows, want its %d unpublished ones", n, users)
	}

	// 3. n2 loses its lease too: nobody publishes the third orders...
	c2.set(2, false)
	orders()
	// 4. ...until n1 owns at epoch 3: it catches up, claims and publishes
	// what n2 had not (its rows of step 2 again too: duplicates, dropped).
	c1.set(3, true)
	claimedAt(3, "n1")
	await(3 * users)
	check.For(t, 20*time.Second, 10*time.Millisecond, func() error {
		if n := outboxRows(t, e1); n != 0 {
			return fmt.Errorf("%d rows left in the owner's outbox", n)
		}
		return nil
	})
	if n := publishedCount(t, e2); n != users {
		t.Fatalf("n2 published %v messages, want %d", n, users)
	}

	// Every transition once, in order per profile: one, two, three.
	s, err := js.Stream(ctx, alog.StreamOut)
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(ctx, jetstream.WithSubjectFilter("aurum.audience.>"))
	if err != nil {
		t.Fatal(err)
	}
	stored := uint64(0)
	for _, n := range info.State.Subjects {
		stored += n
	}
	if stored != 3*users {
		t.Fatalf("%d transitions stored, want %d", stored, 3*users)
	}
	ids := map[string]bool{}
	order := map[string][]string{}
	for _, tr := range seen {
		if ids[tr.id] {
			t.Fatalf("message %s seen twice", tr.id)
		}
		ids[tr.id] = true
		order[tr.profile] = append(order[tr.profile], tr.audience)
	}
	if len(order) != users {
		t.Fatalf("%d profiles, want %d", len(order), users)
	}
	for p, got := range order {
		if fmt.Sprint(got) != "[one two three]" {
			t.Fatalf("profile %s: transitions %v", p, got)
		}
	}
}

func tickCount(t *testing.T, e *Engine) float64 {
	t.Helper()
	return counter(t, e, "aurum_ticks_total")
}

func destRunning(t *testing.T, e *Engine, name string) bool {
	t.Helper()
	d, err := e.Destination(name)
	if err != nil {
		t.Fatal(err)
	}
	return d.Stats.Running
}

// TestClusterSingletonsOnLeader: the ticker runs on the leader only, the
// destination workers on the owner of partition 0 only, and both move with
// the leadership and the ownership.
func TestClusterSingletonsOnLeader(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	c1 := &fakeCluster{name: "n1", leader: true}
	c1.set(1, true)
	c2 := &fakeCluster{name: "n2"}
	e1 := openClusterEngine(t, c1, "", 10*time.Millisecond)
	e2 := openClusterEngine(t, c2, e1.NATSURL(), 10*time.Millisecond)
	if _, err := e1.PutAudience(ctx, audience.Definition{Name: "vip", Rule: `count("Order Completed") >= 1`}); err != nil {
		t.Fatal(err)
	}
	if _, err := e1.PutDestination(ctx, activation.Destination{Name: "crm", URL: "http://127.0.0.1:1/hook",
		Secret: "0123456789abcdef0123456789abcdef", Audiences: []string{"vip"}, Channel: "email"}); err != nil {
		t.Fatal(err)
	}
	last, err := e1.log.LastSeq(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := e2.WaitApplied(ctx, last); err != nil {
		t.Fatal(err)
	}
	// Both tickers run by now: by the leader's fifth tick from here, a
	// non-leader that ticked would have ticked too.
	base := tickCount(t, e1)
	check.For(t, 20*time.Second, 5*time.Millisecond, func() error {
		if n := tickCount(t, e1); n < base+5 {
			return fmt.Errorf("leader: %v ticks", n)
		}
		return nil
	})
	if n := tickCount(t, e2); n != 0 {
		t.Fatalf("the non-leader ticked %v times", n)
	}
	check.For(t, 20*time.Second, 5*time.Millisecond, func() error {
		if !destRunning(t, e1, "crm") {
			return fmt.Errorf("the owner's worker does not run")
		}
		return nil
	})
	if destRunning(t, e2, "crm") {
		t.Fatal("the non-owner runs a destination worker")
	}

	// The leadership and the ownership move to n2: n1 suspends its worker
	// and stops ticking, n2 ticks and runs the worker.
	c1.setLeader(false)
	c1.set(1, false)
	c2.setLeader(true)
	c2.set(2, true)
	check.For(t, 20*time.Second, 5*time.Millisecond, func() error {
		if destRunning(t, e1, "crm") {
			return fmt.Errorf("the former owner's worker still runs")
		}
		if !destRunning(t, e2, "crm") {
			return fmt.Errorf("the new owner's worker does not run")
		}
		if n := tickCount(t, e2); n < 5 {
			return fmt.Errorf("new leader: %v ticks", n)
		}
		return nil
	})
	stopped, from := tickCount(t, e1), tickCount(t, e2)
	check.For(t, 20*time.Second, 5*time.Millisecond, func() error {
		if n := tickCount(t, e2); n < from+5 {
			return fmt.Errorf("new leader: %v ticks", n)
		}
		return nil
	})
	if n := tickCount(t, e1); n > stopped {
		t.Fatalf("the former leader ticked %v times after it stopped", n-stopped)
	}
}

// TestClusterErasureSharedStepsOnDeliverer: every node destroys its own
// copies of an erasure's keys; the shared steps (the scrub, the tools that
// keep the person, the erasure.completed record) wait for the node that
// delivers to destinations (the owner of partition 0, not the Raft leader:
// removing the person from the tools goes through its workers), and its
// scrub for every partition's owner to have passed the erasure (its
// watermark).
func TestClusterErasureSharedStepsOnDeliverer(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	c1 := &fakeCluster{name: "n1"}
	c2 := &fakeCluster{name: "n2"}
	e1 := openClusterEngine(t, c1, "", -1)
	e2 := openClusterEngine(t, c2, e1.NATSURL(), -1)
	if _, err := e1.Gate().CreateSource(ctx, "web"); err != nil {
		t.Fatal(err)
	}
	ev, err := event.Parse([]byte(`{"type":"identify","userId":"u1","messageId":"i1","traits":{"email":"ann@example.com","name":"Ann"}}`),
		"", e1.Edge().ParseOptions())
	if err != nil {
		t.Fatal(err)
	}
	if err := e1.Edge().Ingest(ctx, "web", []event.Event{ev}); err != nil {
		t.Fatal(err)
	}
	info, err := e1.Privacy().RequestErasure(ctx, "user_id:u1")
	if err != nil {
		t.Fatal(err)
	}
	var keys [][]byte
	err = e1.read(func(r store.Reader, _ *projections.StateMachine) error {
		pend, err := projections.PendingErasures(r)
		for _, p := range pend {
			keys = append(keys, p.Keys...)
		}
		return err
	})
	if err != nil || len(keys) == 0 {
		t.Fatalf("pending erasure keys %d, %v", len(keys), err)
	}
	// No deliverer: n1 destroys its keys, nobody completes the erasure.
	check.For(t, 20*time.Second, 5*time.Millisecond, func() error {
		for _, k := range keys {
			if _, err := e1.keys.Open(k, nil); !errors.Is(err, seal.ErrKeyDestroyed) && !errors.Is(err, seal.ErrUnknownKey) {
				return fmt.Errorf("key %x: %v", k, err)
			}
		}
		return nil
	})
	if st, err := e1.Privacy().Erasure(info.ID); err != nil || st.Status == privacy.ErasureCompleted {
		t.Fatalf("erasure without a leader: %+v, %v", st, err)
	}
	reqAt, err := e1.log.LastSeq(ctx) // the erasure request is the last entry
	if err != nil {
		t.Fatal(err)
	}
	// n2 becomes the leader and n1 the owner of every partition, so the
	// deliverer: n1's scrub waits until every owner has passed the
	// erasure, then completes it, on both nodes; the leader does not.
	c2.setLeader(true)
	c1.set(1, true)
	for _, e := range []*Engine{e1, e2} {
		check.For(t, 20*time.Second, 5*time.Millisecond, func() error {
			st, err := e.Privacy().Erasure(info.ID)
			if err != nil {
				return err
			}
			if st.Status != privacy.ErasureCompleted {
				return fmt.Errorf("status %s", st.Status)
			}
			return nil
		})
	}
	// The deliverer completed it, not the leader.
	check.For(t, 20*time.Second, 5*time.Millisecond, func() error {
		if n := counter(t, e1, "aurum_erasures_completed_total"); n != 1 {
			return fmt.Errorf("the deliverer completed %v erasures", n)
		}
		return nil
	})
	if n := counter(t, e2, "aurum_erasures_completed_total"); n != 0 {
		t.Fatalf("the leader, which does not deliver, completed %v erasures", n)
	}
	// Every partition's owner had stated a watermark past the request.
	for p := range clusterTestPartitions {
		prog, err := e1.log.OutboxProgress(ctx, p)
		if err != nil || prog.Applied < reqAt || prog.Epoch != 1 {
			t.Fatalf("partition %d: progress %+v (%v), want a watermark >= %d by epoch 1", p, prog, err, reqAt)
		}
	}
}

// hookCall is one request a webhook endpoint of the delivery test got.
type hookCall struct {
	delivery, epoch, audience string
}

// TestClusterDeliveriesFenced: the destination workers run on the owner of
// partition 0 under its claim, and a stale owner stops delivering at its
// next step once a newer claim exists, even while it still believes it
// owns the partition (a paused process that woke up). n1 delivers the
// first audience's entries under epoch 1; while its request for the first
// entry of the second audience is in flight, n2 takes over at epoch 2 and
// claims; n1 completes that request, reads the next message, finds the
// newer claim and stops; n2 delivers the rest. Every transition reaches
// the endpoint once.
func TestClusterDeliveriesFenced(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	var mu sync.Mutex
	var calls []hookCall
	held, release := make(chan struct{}), make(chan struct{})
	var holdOnce sync.Once
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var x struct {
			Audience string `json:"audience"`
		}
		body, _ := io.ReadAll(r.Body)
		_ = json.Unmarshal(body, &x)
		if x.Audience == "two" {
			holdOnce.Do(func() {
				close(held)
				<-release
			})
		}
		mu.Lock()
		calls = append(calls, hookCall{r.Header.Get(activation.HeaderDelivery), r.Header.Get(activation.HeaderEpoch), x.Audience})
		mu.Unlock()
	}))
	defer srv.Close()
	got := func() []hookCall {
		mu.Lock()
		defer mu.Unlock()
		return append([]hookCall(nil), calls...)
	}

	c1 := &fakeCluster{name: "n1", leader: true}
	c1.set(1, true)
	c2 := &fakeCluster{name: "n2"}
	e1 := openClusterEngine(t, c1, "", -1)
	e2 := openClusterEngine(t, c2, e1.NATSURL(), -1)
	if _, err := e1.Gate().CreateSource(ctx, "web"); err != nil {
		t.Fatal(err)
	}
	for i, name := range []string{"one", "two"} {
		if _, err := e1.PutAudience(ctx, audience.Definition{Name: name, Rule: fmt.Sprintf(`count("Order Completed") >= %d`, i+1)}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := e1.PutDestination(ctx, activation.Destination{Name: "crm", URL: srv.URL + "/hook",
		Secret: "0123456789abcdef0123456789abcdef", Audiences: []string{"one", "two"}, Channel: activation.ChannelNone}); err != nil {
		t.Fatal(err)
	}
	const users = 10
	waitCalls := func(n int) {
		t.Helper()
		check.For(t, 30*time.Second, 5*time.Millisecond, func() error {
			if c := got(); len(c) < n {
				return fmt.Errorf("%d of %d deliveries", len(c), n)
			}
			return nil
		})
	}

	// 1. n1 owns partition 0 at epoch 1: it delivers.
	ingestOrders(ctx, t, 1, users, e1, e2)
	waitCalls(users)
	if destRunning(t, e2, "crm") {
		t.Fatal("the non-owner runs a destination worker")
	}
	// 2. The second orders enter audience two; n1 publishes them all
	// (nothing left for its publisher to try after the take-over: only
	// the delivery check can stop it) and holds its first delivery.
	ingestOrders(ctx, t, 2, users, e1, e2)
	check.For(t, 30*time.Second, 5*time.Millisecond, func() error {
		if n := outboxRows(t, e1); n != 0 {
			return fmt.Errorf("%d rows left in n1's outbox", n)
		}
		return nil
	})
	select {
	case <-held:
	case <-ctx.Done():
		t.Fatal("no delivery of audience two")
	}
	// 3. n2 takes over at epoch 2 and claims partition 0 while n1 still
	// believes it owns it at epoch 1.
	c2.set(2, true)
	check.For(t, 30*time.Second, 5*time.Millisecond, func() error {
		return e1.log.CheckFence(ctx, deliveryPartition, 2, "n2")
	})
	close(release)
	waitCalls(2 * users)
	check.For(t, 30*time.Second, 5*time.Millisecond, func() error {
		d, err := e1.Destination("crm")
		if err != nil {
			return err
		}
		if d.Stats.Running || d.Stats.Fenced != 1 {
			return fmt.Errorf("n1's worker: running %v, fenced %d", d.Stats.Running, d.Stats.Fenced)
		}
		return nil
	})
	if !destRunning(t, e2, "crm") {
		t.Fatal("n2's worker does not run")
	}

	// Every transition once; epoch 1 up to the request in flight at the
	// take-over, epoch 2 after.
	calls = got()
	ids := map[string]bool{}
	for i, c := range calls {
		if ids[c.delivery] {
			t.Fatalf("delivery %s twice: %v", c.delivery, calls)
		}
		ids[c.delivery] = true
		want := "1"
		if i > users {
			want = "2"
		}
		if c.epoch != want {
			t.Fatalf("delivery %d (%+v) under epoch %q, want %q: %v", i, c, c.epoch, want, calls)
		}
	}
	if len(calls) != 2*users {
		t.Fatalf("%d deliveries, want %d", len(calls), 2*users)
	}
}

// TestExportScheduleLeaderOnly: with LeaderOnly, a node writes the
// scheduled runs of a shared export directory only while it leads.
func TestExportScheduleLeaderOnly(t *testing.T) {
	c := &fakeCluster{name: "n1", epoch: 1, owns: true}
	var off atomic.Int64
	now := func() time.Time { return time.Now().Add(time.Duration(off.Load())) }
	shared := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	e, err := Open(ctx, Options{DataDir: t.TempDir(), NATSListen: "127.0.0.1:-1", NATSNoAuth: true, MasterKey: bytes.Repeat([]byte{7}, 32),
		Partitions: clusterTestPartitions, TickPeriod: -1, Cluster: c, SharedKeys: true, Now: now, Logger: testLogger(t),
		Export: export.Options{Dir: shared, Interval: time.Minute, LeaderOnly: true, Poll: 10 * time.Millisecond}})
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := e.Close(); err != nil {
			t.Error(err)
		}
	}()
	runs := func() []export.Manifest {
		t.Helper()
		r, err := e.exporter.Runs()
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	// Two minutes pass every 50 ms: a run is due at every poll from the
	// Scheduler's start on (whenever the engine started it).
	for range 20 {
		off.Add(int64(2 * time.Minute))
		time.Sleep(50 * time.Millisecond)
	}
	if r := runs(); len(r) != 0 {
		t.Fatalf("a node that does not lead wrote %d scheduled runs", len(r))
	}
	c.setLeader(true)
	check.For(t, 30*time.Second, 20*time.Millisecond, func() error {
		off.Add(int64(2 * time.Minute))
		if r := runs(); len(r) == 0 || r[0].Trigger != "schedule" {
			return fmt.Errorf("runs %+v", r)
		}
		return nil
	})
}
