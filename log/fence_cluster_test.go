package log

import (
	"errors"
	"fmt"
	"net/url"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/aurumcdp/aurum/internal/check"
)

// startJSCluster starts n nats-servers with JetStream joined into one
// cluster on loopback and returns the first one's client URL.
func startJSCluster(t *testing.T, n int) string {
	t.Helper()
	// The route ports are picked free and then bound by the servers: a
	// process of another test package may take one in between, and that
	// server's route listener never starts (CI: "server not ready").
	// Start again on other ports then.
	var srvs []*server.Server
	for attempt := 1; ; attempt++ {
		var ok bool
		if srvs, ok = tryJSCluster(t, n); ok {
			break
		}
		for _, s := range srvs {
			s.Shutdown()
			s.WaitForShutdown()
		}
		if attempt == 3 {
			t.Fatal("JetStream cluster: a server not ready for connections, 3 times")
		}
		t.Logf("JetStream cluster: a server not ready for connections (attempt %d); on other ports", attempt)
	}
	for _, s := range srvs {
		t.Cleanup(func() { s.Shutdown(); s.WaitForShutdown() })
	}
	check.For(t, 30*time.Second, 20*time.Millisecond, func() error {
		for _, s := range srvs {
			if !s.JetStreamIsCurrent() {
				return errors.New("JetStream not current")
			}
		}
		for _, s := range srvs {
			if s.JetStreamIsLeader() {
				return nil
			}
		}
		return errors.New("no meta leader")
	})
	return srvs[0].ClientURL()
}

// tryJSCluster starts n clustered servers on fresh route ports; ok is
// false when one of them is not ready for connections within 30 s (the
// caller shuts them down).
func tryJSCluster(t *testing.T, n int) (srvs []*server.Server, ok bool) {
	t.Helper()
	ports := make([]int, n)
	for i := range ports {
		ports[i] = freePort(t)
	}
	routes := make([]*url.URL, n)
	for i, p := range ports {
		routes[i] = &url.URL{Scheme: "nats", Host: fmt.Sprintf("127.0.0.1:%d", p)}
	}
	for i := range n {
		s, err := server.NewServer(&server.Options{
			ServerName: fmt.Sprintf("s%d", i), Host: "127.0.0.1", Port: -1,
			JetStream: true, StoreDir: t.TempDir(), NoSigs: true, DisableJetStreamBanner: true,
			Cluster: server.ClusterOpts{Name: "fence", Host: "127.0.0.1", Port: ports[i]},
			Routes:  routes,
		})
		if err != nil {
			t.Fatal(err)
		}
		s.Start()
		srvs = append(srvs, s)
	}
	for _, s := range srvs {
		if !s.ReadyForConnections(30 * time.Second) {
			return srvs, false
		}
	}
	return srvs, true
}

// openClusterLog opens a Log on the cluster at clientURL once it answers.
func openClusterLog(t *testing.T, clientURL string) *Log {
	t.Helper()
	var l *Log
	check.For(t, 30*time.Second, 100*time.Millisecond, func() error {
		var err error
		l, err = Open(testCtx(t), Options{URL: clientURL})
		return err
	})
	t.Cleanup(func() { _ = l.Close() })
	return l
}

// replicate sets stream's replicas to n and waits until they are current.
func replicate(t *testing.T, l *Log, stream string, n int) {
	t.Helper()
	ctx := testCtx(t)
	s, err := l.js.Stream(ctx, stream)
	if err != nil {
		t.Fatal(err)
	}
	cfg := s.CachedInfo().Config
	cfg.Replicas = n
	if _, err := l.js.UpdateStream(ctx, cfg); err != nil {
		t.Fatalf("%s to %d replicas: %v", stream, n, err)
	}
	check.For(t, 30*time.Second, 50*time.Millisecond, func() error {
		info, err := s.Info(ctx)
		if err != nil {
			return err
		}
		if info.Cluster == nil || len(info.Cluster.Replicas) != n-1 {
			return errors.New("replicas not up")
		}
		for _, r := range info.Cluster.Replicas {
			if !r.Current {
				return errors.New("replica not current")
			}
		}
		return nil
	})
}

// TestFenceReplicatedStream: the fence on a JetStream cluster with AURUM_OUT
// at three replicas. A second conditional publish on the same fence while
// the first replicates may be refused as busy (10164): not ErrFenced.
// Publishing one at a time works; a stale owner is refused (ErrFenced) once
// a newer claim exists, and a stale claim too.
func TestFenceReplicatedStream(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a three-server JetStream cluster")
	}
	clientURL := startJSCluster(t, 3)
	ctx := testCtx(t)
	l := openClusterLog(t, clientURL)
	replicate(t, l, StreamOut, 3)
	const subj = AudiencePrefix + "vip.entered"

	f1, err := l.ClaimFence(ctx, 0, 1, "n1")
	if err != nil {
		t.Fatalf("claim: %v", err)
	}
	// Pipelined: whatever is refused is refused as busy, never as fenced.
	var futs []*Future
	for i := range 20 {
		fut, err := l.AppendAsyncFenced(f1, subj, fmt.Sprintf("p%d", i), nil, []byte(`{}`))
		if err != nil {
			t.Fatal(err)
		}
		futs = append(futs, fut)
	}
	busy := 0
	for _, fut := range futs {
		if _, _, err := fut.Wait(ctx); err != nil {
			if errors.Is(err, ErrFenced) || !isConditionBusy(err) {
				t.Fatalf("pipelined fenced publish: %v", err)
			}
			busy++
		}
	}
	t.Logf("%d of 20 pipelined fenced publishes refused as busy", busy)
	// One at a time: all stored. The server may still refuse one as busy
	// right after the previous acknowledgement (it clears its in-flight
	// mark after sending the ack): published again, a bounded number of
	// times; never fenced.
	retried := 0
	for i := range 20 {
		for try := 0; ; try++ {
			fut, err := l.AppendAsyncFenced(f1, subj, fmt.Sprintf("s%d", i), nil, []byte(`{}`))
			if err != nil {
				t.Fatal(err)
			}
			_, dup, err := fut.Wait(ctx)
			if err == nil {
				if dup {
					t.Fatalf("serial fenced publish %d: a duplicate, not stored", i)
				}
				break
			}
			if !IsBusy(err) || try == 20 {
				t.Fatalf("serial fenced publish %d (try %d): %v", i, try, err)
			}
			retried++
			time.Sleep(time.Duration(try+1) * time.Millisecond)
		}
	}
	t.Logf("serial fenced publishes: %d refusals as busy published again", retried)
	// A duplicate id under the current fence.
	fut, err := l.AppendAsyncFenced(f1, subj, "s0", nil, []byte(`{}`))
	if err != nil {
		t.Fatal(err)
	}
	if _, dup, err := fut.Wait(ctx); err != nil || !dup {
		t.Fatalf("duplicate id: dup %v, err %v", dup, err)
	}
	if _, err := l.ClaimFence(ctx, 0, 2, "n2"); err != nil {
		t.Fatalf("newer claim: %v", err)
	}
	fut, err = l.AppendAsyncFenced(f1, subj, "stale", nil, []byte(`{}`))
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := fut.Wait(ctx); !errors.Is(err, ErrFenced) {
		t.Fatalf("stale publish: %v, want ErrFenced", err)
	}
	// A duplicate id from the stale owner: a replicated stream checks the
	// id first and answers a duplicate (a single server checks the fence
	// first: TestFenceDuplicateIDs). Nothing is stored either way.
	fut, err = l.AppendAsyncFenced(f1, subj, "s1", nil, []byte(`{}`))
	if err != nil {
		t.Fatal(err)
	}
	if _, dup, err := fut.Wait(ctx); err != nil || !dup {
		t.Fatalf("stale duplicate: dup %v, err %v", dup, err)
	}
	if _, err := l.ClaimFence(ctx, 0, 1, "n1"); !errors.Is(err, ErrFenced) {
		t.Fatalf("stale claim: %v, want ErrFenced", err)
	}
	if err := l.SetOutboxProgress(ctx, f1, []byte("x"), 0); !errors.Is(err, ErrFenced) {
		t.Fatalf("stale progress: %v, want ErrFenced", err)
	}
	s, err := l.js.Stream(ctx, StreamOut)
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(ctx, jetstream.WithSubjectFilter(subj))
	if err != nil {
		t.Fatal(err)
	}
	if want := uint64(20 + 20 - busy); info.State.Subjects[subj] != want {
		t.Fatalf("%d outputs stored, want %d", info.State.Subjects[subj], want)
	}
}
