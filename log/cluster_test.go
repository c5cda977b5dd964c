package log

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/aurumcdp/aurum/internal/check"
	"github.com/aurumcdp/aurum/internal/testcert"
)

// freeAddrs returns n loopback addresses whose ports were free a moment ago.
func freeAddrs(t *testing.T, n int) []string {
	t.Helper()
	addrs := make([]string, n)
	lns := make([]net.Listener, n)
	for i := range lns {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		lns[i], addrs[i] = ln, ln.Addr().String()
	}
	for _, ln := range lns {
		ln.Close()
	}
	return addrs
}

// testRouteSecret authenticates the routes of openCluster's servers.
const testRouteSecret = "0f1e2d3c4b5a69788796a5b4c3d2e1f0"

// openCluster opens n logs whose embedded servers form one JetStream
// cluster, with every stream replicated replicas times. Open waits for the
// quorum, so the logs are opened concurrently.
func openCluster(t *testing.T, n, replicas int) []*Log {
	t.Helper()
	return openClusterWith(t, n, replicas, nil)
}

// openClusterWith is openCluster with each node's cluster options changed
// by set (nil: none).
func openClusterWith(t *testing.T, n, replicas int, set func(*ClusterOptions)) []*Log {
	t.Helper()
	routes := freeAddrs(t, n)
	logs := make([]*Log, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range logs {
		opts := testOptions(t.TempDir())
		opts.Replicas = replicas
		opts.Cluster = &ClusterOptions{ServerName: "n" + strconv.Itoa(i+1), Listen: routes[i], Routes: routes, Secret: testRouteSecret}
		if set != nil {
			set(opts.Cluster)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			logs[i], errs[i] = Open(ctx, opts)
		}()
	}
	wg.Wait()
	for _, l := range logs {
		if l != nil {
			t.Cleanup(func() { _ = l.Close() })
		}
	}
	if err := errors.Join(errs...); err != nil {
		t.Fatalf("open cluster: %v", err)
	}
	return logs
}

// TestClusterReplicatedStreams: three embedded servers form one JetStream
// cluster; every Aurum stream has three replicas; an append on one node is
// read from another; with the AURUM_LOG stream leader's server closed,
// appends on the other two still succeed and are read there.
func TestClusterReplicatedStreams(t *testing.T) {
	if testing.Short() {
		t.Skip("forms a three-server JetStream cluster")
	}
	ctx := testCtx(t)
	logs := openCluster(t, 3, 3)
	for _, cfg := range logs[0].streamConfigs() {
		s, err := logs[2].js.Stream(ctx, cfg.Name)
		if err != nil {
			t.Fatalf("stream %s on n3: %v", cfg.Name, err)
		}
		info, err := s.Info(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if info.Config.Replicas != 3 || info.Cluster == nil || info.Cluster.Name != DefaultClusterName {
			t.Fatalf("stream %s: replicas %d, cluster %+v; want 3 in cluster %q", cfg.Name, info.Config.Replicas, info.Cluster, DefaultClusterName)
		}
	}

	appendN(t, ctx, logs[0], 1, 20)
	r, err := logs[1].NewReader(1)
	if err != nil {
		t.Fatal(err)
	}
	readN(t, ctx, r, 1, 20)
	r.Close()

	// Close the server leading AURUM_LOG: the other two elect a new leader.
	leader := streamLeader(t, ctx, logs[0], StreamLog)
	if err := logs[leader].Close(); err != nil {
		t.Fatalf("close n%d: %v", leader+1, err)
	}
	writer, reader := logs[(leader+1)%3], logs[(leader+2)%3]
	// Appends retried with the same message id until the new leader
	// answers: each is stored once, at the next sequence.
	for i := 21; i <= 30; i++ {
		check.For(t, 30*time.Second, 50*time.Millisecond, func() error {
			actx, cancel := context.WithTimeout(ctx, 2*time.Second)
			defer cancel()
			seq, _, err := writer.Append(actx, "aurum.log.batch", "id-"+strconv.Itoa(i), payload(i))
			if err != nil {
				return err
			}
			if seq != uint64(i) {
				t.Fatalf("append %d after failover: seq %d", i, seq)
			}
			return nil
		})
	}
	r, err = reader.NewReader(1)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	readN(t, ctx, r, 1, 30)

	// The gateway's consumer on the replicated AURUM_INGEST (still two of
	// three servers): messages a producer published on one node are
	// handled once each, in order, on the other, and purged everywhere.
	pjs := producer(t, reader)
	publishRange(t, ctx, pjs, 1, 20)
	got := consumeUntil(t, ctx, writer, 8, nil, func(got []RawMsg) bool { return len(got) >= 20 })
	if !slices.Equal(seqsOf(got), seqRange(1, 20)) {
		t.Fatalf("gateway on a cluster handled %v, want 1..20", seqsOf(got))
	}
	check.For(t, 10*time.Second, 10*time.Millisecond, func() error {
		if info := ingestInfo(t, ctx, reader); info.State.Msgs != 0 {
			return fmt.Errorf("AURUM_INGEST holds %d messages after the gateway handled them", info.State.Msgs)
		}
		return nil
	})
}

// TestClusterNoQuorumFails: one node of three cannot place three
// replicas; Open gives up after ClusterWait with an error saying so.
func TestClusterNoQuorumFails(t *testing.T) {
	routes := freeAddrs(t, 3)
	opts := testOptions(t.TempDir())
	opts.Replicas = 3
	opts.ClusterWait = time.Second
	opts.Cluster = &ClusterOptions{ServerName: "n1", Listen: routes[0], Routes: routes}
	l, err := Open(testCtx(t), opts)
	if err == nil {
		l.Close()
		t.Fatal("Open of one node of three succeeded")
	}
	if !strings.Contains(err.Error(), "no JetStream quorum to place 3 replica(s)") {
		t.Fatalf("Open: %v, want the no-quorum error", err)
	}
}

func TestClusterOptionsValidate(t *testing.T) {
	cl := func() *ClusterOptions {
		return &ClusterOptions{ServerName: "n1", Listen: "127.0.0.1:6222", Routes: []string{"127.0.0.1:6222", "127.0.0.1:6223"}}
	}
	for _, tt := range []struct {
		name string
		set  func(*Options)
		want string // "" = valid
	}{
		{"cluster R3", func(o *Options) { o.Cluster, o.Replicas = cl(), 3 }, ""},
		{"URL R3", func(o *Options) { o.URL, o.Replicas = "nats://127.0.0.1:4222", 3 }, ""},
		{"replicas 0 is 1", func(o *Options) {}, ""},
		{"replicas 6", func(o *Options) { o.Cluster, o.Replicas = cl(), 6 }, "Replicas must be in [1, 5], got 6"},
		{"replicas negative", func(o *Options) { o.Replicas = -1 }, "Replicas must be in [1, 5], got -1"},
		{"standalone R3", func(o *Options) { o.Replicas = 3 }, "Replicas 3 needs Cluster or URL"},
		{"cluster with URL", func(o *Options) { o.Cluster, o.URL = cl(), "nats://127.0.0.1:4222" }, "Cluster is for the embedded server"},
		{"no server name", func(o *Options) { o.Cluster = cl(); o.Cluster.ServerName = "" }, "Cluster.ServerName"},
		{"dotted server name", func(o *Options) { o.Cluster = cl(); o.Cluster.ServerName = "a.b" }, "Cluster.ServerName"},
		{"bad cluster name", func(o *Options) { o.Cluster = cl(); o.Cluster.Name = "a b" }, "Cluster.Name"},
		{"bad listen", func(o *Options) { o.Cluster = cl(); o.Cluster.Listen = "nope" }, "Cluster.Listen"},
		{"random listen", func(o *Options) { o.Cluster = cl(); o.Cluster.Listen = "127.0.0.1:0" }, "needs a fixed port"},
		{"no routes", func(o *Options) { o.Cluster = cl(); o.Cluster.Routes = nil }, "Cluster.Routes: at least one"},
		{"bad route", func(o *Options) { o.Cluster = cl(); o.Cluster.Routes[1] = "127.0.0.1:x" }, "Cluster.Routes[1]"},
		{"negative wait", func(o *Options) { o.ClusterWait = -time.Second }, "ClusterWait is negative"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			o := testOptions("dir")
			tt.set(&o)
			o.EnsureDefaults()
			err := o.Validate()
			switch {
			case tt.want == "" && err != nil:
				t.Fatalf("Validate: %v", err)
			case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
				t.Fatalf("Validate: %v, want %q", err, tt.want)
			}
		})
	}
	o := testOptions("dir")
	o.Cluster = cl()
	o.EnsureDefaults()
	if o.Cluster.Name != DefaultClusterName || o.Replicas != 1 {
		t.Fatalf("defaults: cluster name %q, replicas %d", o.Cluster.Name, o.Replicas)
	}
}

// TestClusterTruncatedBlockOnOneNode: a follower's AURUM_LOG block files
// are cut to half their size while it is down (a torn or corrupt disk on a
// minority), and appends go on without it. It rejoins, catches up from the
// others, and once it leads the stream every entry is there (the issue's
// "truncated block file on one node", on the nats-server of go.mod).
func TestClusterTruncatedBlockOnOneNode(t *testing.T) {
	if testing.Short() {
		t.Skip("forms a three-server JetStream cluster")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	logs := openCluster(t, 3, 3)
	appendN(t, ctx, logs[0], 1, 50)
	leader := streamLeader(t, ctx, logs[0], StreamLog)
	victim := (leader + 1) % 3
	opts := logs[victim].opts
	if err := logs[victim].Close(); err != nil {
		t.Fatal(err)
	}
	blocks, err := filepath.Glob(filepath.Join(opts.Dir, "jetstream", "$G", "streams", StreamLog, "msgs", "*.blk"))
	if err != nil || len(blocks) == 0 {
		t.Fatalf("block files of %s: %v %v", StreamLog, blocks, err)
	}
	for _, b := range blocks {
		fi, err := os.Stat(b)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.Truncate(b, fi.Size()/2); err != nil {
			t.Fatal(err)
		}
	}
	writer := logs[leader]
	for i := 51; i <= 60; i++ {
		check.For(t, 30*time.Second, 50*time.Millisecond, func() error {
			actx, cancel := context.WithTimeout(ctx, 2*time.Second)
			defer cancel()
			_, _, err := writer.Append(actx, "aurum.log.batch", "id-"+strconv.Itoa(i), payload(i))
			return err
		})
	}
	reopened, err := Open(ctx, opts)
	if err != nil {
		t.Fatalf("reopen %s: %v", opts.Cluster.ServerName, err)
	}
	t.Cleanup(func() { _ = reopened.Close() })
	logs[victim] = reopened

	// The truncated replica catches up from the others.
	check.For(t, time.Minute, 100*time.Millisecond, func() error {
		if !reopened.srv.JetStreamIsStreamCurrent("$G", StreamLog) {
			return fmt.Errorf("the truncated replica of %s is not current", StreamLog)
		}
		return nil
	})
	// Move the stream's leadership to the truncated node, then read.
	name := opts.Cluster.ServerName
	check.For(t, time.Minute, time.Second, func() error {
		if streamLeader(t, ctx, writer, StreamLog) == victim {
			return nil
		}
		rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		resp, err := writer.nc.RequestWithContext(rctx, "$JS.API.STREAM.LEADER.STEPDOWN."+StreamLog,
			[]byte(`{"placement":{"preferred":"`+name+`"}}`))
		if err != nil {
			return err
		}
		return fmt.Errorf("leader is not %s yet (stepdown: %s)", name, resp.Data)
	})
	r, err := reopened.NewReader(1)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	readN(t, ctx, r, 1, 60)
}

// streamLeader is the index (n1 = 0) of the server leading stream.
func streamLeader(t *testing.T, ctx context.Context, l *Log, stream string) int {
	t.Helper()
	var leader string
	check.For(t, 30*time.Second, 50*time.Millisecond, func() error {
		s, err := l.js.Stream(ctx, stream)
		if err != nil {
			return err
		}
		info, err := s.Info(ctx)
		if err != nil {
			return err
		}
		if info.Cluster == nil || info.Cluster.Leader == "" {
			return fmt.Errorf("stream %s has no leader", stream)
		}
		leader = info.Cluster.Leader
		return nil
	})
	i, err := strconv.Atoi(strings.TrimPrefix(leader, "n"))
	if err != nil || i < 1 || i > 3 {
		t.Fatalf("stream %s leader %q is none of n1..n3", stream, leader)
	}
	return i - 1
}

// TestClusterRouteAuth: the servers of a cluster with a route secret form
// the cluster (openCluster), and a foreign route (a peer that does not
// present the secret, or presents another) is refused on the route port.
func TestClusterRouteAuth(t *testing.T) {
	logs := openCluster(t, 2, 1)
	for _, tc := range []struct {
		name, creds string
	}{
		{"no credentials", ""},
		{"wrong password", `,"user":"` + RouteUser + `","pass":"not-the-secret"`},
		{"wrong user", `,"user":"someone","pass":"` + testRouteSecret + `"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := net.DialTimeout("tcp", logs[0].opts.Cluster.Listen, 5*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			_ = c.SetDeadline(time.Now().Add(10 * time.Second))
			r := bufio.NewReader(c)
			info, err := r.ReadString('\n')
			if err != nil || !strings.HasPrefix(info, "INFO ") {
				t.Fatalf("route port greeting %q: %v", info, err)
			}
			connect := `CONNECT {"verbose":false,"pedantic":false,"name":"intruder","cluster":"` + DefaultClusterName + `"` + tc.creds + "}\r\nPING\r\n"
			if _, err := c.Write([]byte(connect)); err != nil {
				t.Fatal(err)
			}
			var lines []string
			for {
				line, err := r.ReadString('\n')
				if line != "" {
					lines = append(lines, strings.TrimSpace(line))
				}
				if strings.Contains(line, "Authorization Violation") {
					return // refused
				}
				if err != nil {
					t.Fatalf("a foreign route was not refused: %q (%v)", lines, err)
				}
				if len(lines) > 20 {
					t.Fatalf("a foreign route was not refused: %q", lines)
				}
			}
		})
	}
}

// TestClusterRouteTLS: with ClusterOptions.TLS the routes are TLS. Two
// servers form their cluster over it (an append on one is read on the
// other); the route listener serves nothing in the clear and refuses a TLS
// peer without a certificate of the CA.
func TestClusterRouteTLS(t *testing.T) {
	ca, cert, key := testcert.Write(t)
	conf := func(ca, cert, key string) *tls.Config {
		c, err := tls.LoadX509KeyPair(cert, key)
		if err != nil {
			t.Fatal(err)
		}
		pem, err := os.ReadFile(ca)
		if err != nil {
			t.Fatal(err)
		}
		pool := x509.NewCertPool()
		pool.AppendCertsFromPEM(pem)
		return &tls.Config{Certificates: []tls.Certificate{c}, RootCAs: pool, ClientCAs: pool,
			ClientAuth: tls.RequireAndVerifyClientCert, MinVersion: tls.VersionTLS12}
	}
	routeTLS := conf(ca, cert, key)
	logs := openClusterWith(t, 2, 1, func(o *ClusterOptions) { o.TLS = routeTLS })
	ctx := testCtx(t)
	appendN(t, ctx, logs[0], 1, 5)
	r, err := logs[1].NewReader(1)
	if err != nil {
		t.Fatal(err)
	}
	readN(t, ctx, r, 1, 5)
	r.Close()

	listen := logs[0].opts.Cluster.Listen
	t.Run("in the clear", func(t *testing.T) {
		c, err := net.DialTimeout("tcp", listen, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
		// The server expects a TLS handshake first (it sends nothing in the
		// clear); a route speaking the protocol with the secret is not served.
		connect := `CONNECT {"verbose":false,"pedantic":false,"name":"intruder","cluster":"` + DefaultClusterName +
			`","user":"` + RouteUser + `","pass":"` + testRouteSecret + "\"}\r\nPING\r\n"
		if _, err := c.Write([]byte(connect)); err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(c)
		if strings.Contains(string(b), "PONG") || strings.Contains(string(b), "INFO") {
			t.Fatalf("a route in the clear (with the secret) was served: %q", b)
		}
		if err != nil && !errors.Is(err, syscall.ECONNRESET) {
			t.Fatalf("not hung up on: %v", err)
		}
	})
	otherCA, otherCert, otherKey := testcert.Write(t)
	for _, tc := range []struct {
		name string
		conf *tls.Config
	}{
		{"a certificate of another CA", conf(otherCA, otherCert, otherKey)},
		{"no certificate", &tls.Config{RootCAs: routeTLS.RootCAs}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := net.DialTimeout("tcp", listen, 5*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			_ = c.SetDeadline(time.Now().Add(10 * time.Second))
			conf := tc.conf.Clone()
			conf.ServerName, conf.InsecureSkipVerify = "127.0.0.1", true // the server must refuse, not us
			tc := tls.Client(c, conf)
			err = tc.Handshake()
			if err == nil {
				_, err = tc.Read(make([]byte, 1)) // TLS 1.3: the verdict on our certificate comes with the first read
			}
			if err == nil || !strings.Contains(err.Error(), "certificate") {
				t.Fatalf("the route listener accepted it (err %v)", err)
			}
		})
	}
}
