package ingest

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aurumcdp/aurum/engine/base"
	"github.com/aurumcdp/aurum/internal/check"
	"github.com/aurumcdp/aurum/internal/testkeys"
	alog "github.com/aurumcdp/aurum/log"
	"github.com/aurumcdp/aurum/projections/identity"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

type allSources struct{}

func (allSources) SourceExists(string) bool { return true }

// TestGatewayRunsOnlyWhileLeader: with Options.Leader (a cluster node) the
// gateway reads AURUM_INGEST only while the node is the leader: a message
// waits while it is not, is ingested once it is, and the next one waits
// again after leadership is lost. Waits count the gateway's leadership
// polls, not time.
func TestGatewayRunsOnlyWhileLeader(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	l, err := alog.Open(ctx, alog.Options{Dir: t.TempDir(), Listen: "127.0.0.1:-1"})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	var leader atomic.Bool
	var polls atomic.Int64
	cfg := identity.DefaultConfig()
	e := New(ctx, Options{Identity: &cfg, MaxBatchBytes: 1 << 20, Now: time.Now,
		Leader: func() bool { polls.Add(1); return leader.Load() }}, l, testkeys.Keyring(t), base.NewIDSource(), allSources{})
	rctx, stop := context.WithCancel(ctx)
	var wg sync.WaitGroup
	for _, run := range []func(context.Context) error{e.RunCommitter, e.RunGateway} {
		wg.Add(1)
		go func() { // owned by the test: stop, then wg.Wait
			defer wg.Done()
			_ = run(rctx)
		}()
	}
	defer func() { stop(); wg.Wait() }()

	nc, err := nats.Connect(l.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	publish := func(id string) {
		t.Helper()
		if _, err := js.Publish(ctx, "aurum.ingest.web", fmt.Appendf(nil, `{"type":"track","event":"E","userId":"u","messageId":%q}`, id)); err != nil {
			t.Fatal(err)
		}
	}
	held := func() uint64 {
		t.Helper()
		s, err := js.Stream(ctx, alog.StreamIngest)
		if err != nil {
			t.Fatal(err)
		}
		return s.CachedInfo().State.Msgs
	}
	// waitPolls waits until the gateway asked Options.Leader n more times.
	waitPolls := func(n int64) {
		t.Helper()
		target := polls.Load() + n
		check.For(t, 30*time.Second, 5*time.Millisecond, func() error {
			if p := polls.Load(); p < target {
				return fmt.Errorf("%d of %d leadership polls", p, target)
			}
			return nil
		})
	}
	logged := func() uint64 {
		t.Helper()
		last, err := l.LastSeq(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return last
	}

	publish("m1")
	waitPolls(5)
	if n, last := held(), logged(); n != 1 || last != 0 {
		t.Fatalf("not the leader: AURUM_INGEST holds %d, the log ends at %d; want 1 and nothing read", n, last)
	}

	leader.Store(true)
	check.For(t, 30*time.Second, 5*time.Millisecond, func() error {
		if n, last := held(), logged(); n != 0 || last != 1 {
			return fmt.Errorf("leader: AURUM_INGEST holds %d, the log ends at %d; want 0 and one append", n, last)
		}
		return nil
	})

	leader.Store(false)
	waitPolls(3) // the gateway saw it and stopped
	publish("m2")
	waitPolls(5)
	if n, last := held(), logged(); n != 1 || last != 1 {
		t.Fatalf("leadership lost: AURUM_INGEST holds %d, the log ends at %d; want 1 and no new append", n, last)
	}
}
