package connectortest

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/aurumcdp/aurum/activation"
	"github.com/aurumcdp/aurum/engine"
	"github.com/aurumcdp/aurum/engine/privacy"
	"github.com/aurumcdp/aurum/internal/check"
)

// clusterView is one node's view of a test cluster, set by the test
// (engine.Cluster): every partition owned under one epoch, or none.
type clusterView struct {
	name  string
	mu    sync.Mutex
	epoch uint64
	owns  bool
}

func (c *clusterView) Name() string { return c.name }

func (c *clusterView) Owns(int) (uint64, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.epoch, c.owns
}

func (c *clusterView) IsLeader() bool { return c.name == "n1" }

func (c *clusterView) set(epoch uint64, owns bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.epoch, c.owns = epoch, owns
}

// clusterNode opens an engine of a two-node test cluster: n1 embeds the
// NATS server (url ""), n2 uses n1's. The caller closes it.
func clusterNode(t *testing.T, c *clusterView, url string) *engine.Engine {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	e, err := engine.Open(ctx, engine.Options{DataDir: t.TempDir(), NATSListen: "127.0.0.1:-1", NATSURL: url, NATSNoAuth: url == "",
		MasterKey: bytes.Repeat([]byte{7}, 32), Partitions: 2, Cluster: c, SharedKeys: true, TickPeriod: -1,
		WebhookTimeout: 30 * time.Second, WebhookBackoffMin: 20 * time.Millisecond, WebhookBackoffMax: 200 * time.Millisecond,
		WebhookMaxAttempts: 10000, ConnectorConsentSweep: -1, ErasureRetry: 100 * time.Millisecond})
	if err != nil {
		t.Fatalf("open %s: %v", c.name, err)
	}
	return e
}

// holdAfter passes the first n requests to h; the next one is held until
// its client gives up (closed is then closed) and answered nothing; once
// released, requests pass again.
type holdAfter struct {
	h       http.Handler
	n       int
	mu      sync.Mutex
	seen    int
	release bool
	held    chan struct{}
	once    sync.Once
}

func (a *holdAfter) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	// The body read, the server watches the connection: a client that
	// gives up ends r's context.
	body, err := io.ReadAll(r.Body)
	if err != nil {
		return
	}
	r.Body = io.NopCloser(bytes.NewReader(body))
	a.mu.Lock()
	hold := !a.release && a.seen >= a.n
	a.seen++
	a.mu.Unlock()
	if hold {
		a.once.Do(func() { close(a.held) })
		<-r.Context().Done()
		return
	}
	a.h.ServeHTTP(w, r)
}

func (a *holdAfter) open() {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.release = true
}

// Failover is the suite's cluster case (issue #11): a destination of kind
// c on two engines sharing one NATS server, with a cluster view the test
// sets. n2 owns partition 0 (it delivers) and feeds the tool, then it is
// closed (the failover: its process gone with its DATA_DIR/activation) and
// n1, which never delivered, takes partition 0 over. The activation store
// is the cluster's, so n1 has what n2 wrote:
//   - a tool that sends messages (c.Messages): n2 is closed in the middle
//     of the first sync, with one text or email in flight; n1 redoes the
//     sync and sends nobody a second message (n2's marks: the sent are
//     skipped, the one in flight dead-lettered);
//   - a tool that keeps a list: after n2's first sync, and the exit of a
//     member while n2 delivered, n1 erases a member and that former member:
//     both need the tool's ids n2 recorded (an erased exit carries no
//     identifier), and the tool takes them off (deletes their records
//     where it does).
func Failover(t *testing.T, c Case) {
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	hold := &holdAfter{h: c.Handler, n: 12, held: make(chan struct{})}
	if !c.Messages {
		hold.open()
	}
	srv := newServer(t, hold)
	c1, c2 := &clusterView{name: "n1"}, &clusterView{name: "n2"}
	c2.set(1, true)
	e1 := clusterNode(t, c1, "")
	defer func() {
		if err := e1.Close(); err != nil {
			t.Errorf("close n1: %v", err)
		}
	}()
	e2 := clusterNode(t, c2, e1.NATSURL())
	e2open := true
	defer func() {
		if e2open {
			_ = e2.Close()
		}
	}()
	channel := activation.Kinds()[c.Kind].Channel
	const n = 30
	Setup(ctx, t, e2)
	Ingest(ctx, t, e2, channel, 0, n, "gold")
	WaitSize(t, e1, n)
	WaitSize(t, e2, n)
	if _, err := e2.PutDestination(ctx, activation.Destination{Name: "dest", Kind: c.Kind, Config: c.Config(srv), Audiences: []string{"vip"}}); err != nil {
		t.Fatal(err)
	}
	former, member := 5, 6
	if c.Messages {
		select {
		case <-hold.held:
		case <-ctx.Done():
			t.Fatal("the first sync never reached the held request")
		}
	} else {
		in := map[int]bool{}
		for i := range n {
			in[i] = true
		}
		expectOn(t, c, in, n, "n2's first sync")
		Ingest(ctx, t, e2, channel, former, former+1, "bronze") // an exit, delivered by n2
		delete(in, former)
		expectOn(t, c, in, n, "the exit of a member")
	}

	// The failover: n2 is gone, n1 owns every partition under epoch 2.
	if err := e2.Close(); err != nil {
		t.Fatal(err)
	}
	e2open = false
	hold.open()
	before := c.Book.Requests()
	c1.set(2, true)
	check.For(t, 60*time.Second, 20*time.Millisecond, func() error {
		st, err := Stats(e1, "dest")
		if err != nil || !st.Running || st.FirstSync != activation.SyncDone {
			return fmt.Errorf("n1's worker: running %v, first sync %q (%v)", st.Running, st.FirstSync, err)
		}
		return nil
	})

	if c.Messages {
		st, _ := Stats(e1, "dest")
		consenting, got := 0, 0
		for i := range n {
			k := c.Key(Email(i), Phone(i))
			sent := c.Book.Sent(k)
			if noConsent(i) {
				if sent != 0 {
					t.Fatalf("person %d without consent was sent %d messages", i, sent)
				}
				continue
			}
			consenting++
			if sent != 1 && sent != 0 {
				t.Fatalf("person %d was sent %d messages across the failover", i, sent)
			}
			got += sent
		}
		unknown := consenting - got
		t.Logf("%s: %d messages by n2, %d by n1 after the failover, %d in flight at the failover dead-lettered", c.Kind, before, c.Book.Requests()-before, unknown)
		if unknown != 1 || st.DeadLettered != 1 || before < hold.n {
			t.Fatalf("%d people without a message, n1 dead-lettered %d, n2 sent %d: want the one in flight (1) dead-lettered after at least %d sent",
				unknown, st.DeadLettered, before, hold.n)
		}
		return
	}

	// n1 erases a member on the list and the former member.
	ids := map[int]string{}
	for _, i := range []int{member, former} {
		er, err := e1.Privacy().RequestErasure(ctx, "email:"+Email(i))
		if err != nil {
			t.Fatal(err)
		}
		ids[i] = er.ID
	}
	want := []activation.DestinationErasure{{Name: "dest", Status: activation.ErasureDone}}
	for i, id := range ids {
		check.For(t, 60*time.Second, 20*time.Millisecond, func() error {
			info, err := e1.Privacy().Erasure(id)
			if err != nil {
				return err
			}
			if info.Status != privacy.ErasureCompleted {
				return fmt.Errorf("erasure of person %d: %s %+v", i, info.Status, info.Destinations)
			}
			if i == former && !slices.Equal(info.Destinations, want) {
				t.Fatalf("the former member's erasure completed with destinations %+v, want %+v (n2's refs not found)", info.Destinations, want)
			}
			return nil
		})
	}
	for _, i := range []int{member, former} {
		k := c.Key(Email(i), Phone(i))
		check.For(t, 30*time.Second, 20*time.Millisecond, func() error {
			if c.Book.On("vip", k) {
				return fmt.Errorf("erased person %d still on the list", i)
			}
			if c.Deletes && !c.Book.Deleted(k) {
				return fmt.Errorf("erased person %d: record not deleted", i)
			}
			if want := 1 + btoi(i == former); !c.Deletes && c.Book.Removals(k) < want {
				return fmt.Errorf("erased person %d: %d removals, want %d", i, c.Book.Removals(k), want)
			}
			return nil
		})
	}
	if d := c.Book.Dups(); d != 0 {
		t.Fatalf("%d duplicates: n1 sent again what n2 had", d)
	}
	t.Logf("%s: n1 erased a member and a former member through the tool's ids n2 recorded", c.Kind)
}

// expectOn waits until the tool's list holds exactly the consenting people
// of in among the first n.
func expectOn(t *testing.T, c Case, in map[int]bool, n int, when string) {
	t.Helper()
	check.For(t, 60*time.Second, 20*time.Millisecond, func() error {
		for i := range n {
			want := in[i] && !noConsent(i)
			if got := c.Book.On("vip", c.Key(Email(i), Phone(i))); got != want {
				return fmt.Errorf("%s: person %d on the list: %v, want %v", when, i, got, want)
			}
		}
		return nil
	})
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}
