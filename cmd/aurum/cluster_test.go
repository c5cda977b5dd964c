package main

import (
	"context"
	"crypto/tls"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/aurumcdp/aurum/cluster"
	"github.com/aurumcdp/aurum/internal/check"
	"github.com/aurumcdp/aurum/internal/testcert"
	"github.com/nats-io/nats.go/jetstream"
)

// writeClusterFile writes a cluster file of the named nodes on free
// loopback ports and returns its path.
func writeClusterFile(t *testing.T, replicas, partitions int, names ...string) string {
	t.Helper()
	var b strings.Builder
	fmt.Fprintf(&b, "replicas: %d\npartitions: %d\nnodes:\n", replicas, partitions)
	used := map[int]bool{}
	addr := func() string { // freePort may hand out a port twice: the file needs distinct ones
		for {
			if p := freePort(t); !used[p] {
				used[p] = true
				return fmt.Sprintf("127.0.0.1:%d", p)
			}
		}
	}
	for _, name := range names {
		fmt.Fprintf(&b, "  - {name: %s, http: %s, nats: %s, routes: %s, raft: %s}\n", name, addr(), addr(), addr(), addr())
	}
	path := filepath.Join(t.TempDir(), "cluster.yaml")
	if err := os.WriteFile(path, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// startCluster starts one `aurum serve --cluster` process per name, all
// with the same master key and admin token, and waits until each listens
// (a node listens once the JetStream cluster has placed its streams, so
// the processes are launched together).
func startCluster(t *testing.T, file string, names ...string) []*node {
	t.Helper()
	return startClusterWith(t, file, nil, names...)
}

// startClusterWith is startCluster with extra serve arguments.
func startClusterWith(t *testing.T, file string, extra []string, names ...string) []*node {
	t.Helper()
	master := "AURUM_MASTER_KEY=" + base64.StdEncoding.EncodeToString([]byte(strings.Repeat("k", 32)))
	nodes := make([]*node, len(names))
	for i, name := range names {
		n := &node{t: t, dataDir: t.TempDir(), env: []string{master}}
		n.args = append([]string{"serve", "--data-dir", n.dataDir, "--log-format", "json", "--cluster", file, "--node", name}, extra...)
		if err := n.launch(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(n.stop)
		nodes[i] = n
	}
	for _, n := range nodes {
		if err := n.waitListening(90 * time.Second); err != nil {
			t.Fatal(err)
		}
	}
	return nodes
}

// TestClusterServe runs three real `aurum serve --cluster` processes:
// events ingested on n1 reach the profile read on n3, and every node is
// healthy, and the audience entry is published once. The count comes from
// n3's own state: it applied the replicated log; n1's sealed traits open on
// n3 through the shared data keys. The file has a tls block: the routes
// and the Raft transport are mutual TLS (checked from outside at the end).
func TestClusterServe(t *testing.T) {
	if testing.Short() {
		t.Skip("starts three real aurum processes")
	}
	parallelProcess(t)
	names := []string{"n1", "n2", "n3"}
	file := writeClusterFile(t, 3, 4, names...)
	caFile, certFile, keyFile := testcert.Write(t)
	addClusterTLS(t, file, caFile, certFile, keyFile)
	nodes := startCluster(t, file, names...)
	n1, n3 := nodes[0], nodes[2]

	key := n1.createSource("web")
	n1.mustJSON("POST", "/v1/audiences", map[string]string{"name": "buyers", "rule": `count("Order Completed") >= 1`}, adminAuth, http.StatusCreated, nil)
	batch := []map[string]any{
		{"type": "identify", "userId": "ann", "messageId": "m1", "traits": map[string]any{"plan": "pro"}},
		{"type": "track", "userId": "ann", "messageId": "m2", "event": "Signed Up"},
		{"type": "track", "userId": "ann", "messageId": "m3", "event": "Order Completed"},
	}
	n1.mustJSON("POST", "/v1/batch", map[string]any{"batch": batch}, writeKeyAuth(key), http.StatusOK, nil)

	check.For(t, 30*time.Second, 50*time.Millisecond, func() error {
		p, err := n3.profile("user_id:ann")
		if err != nil {
			return err
		}
		stats, _ := p["stats"].(map[string]any)
		if stats == nil || stats["total_events"] != float64(3) {
			return fmt.Errorf("profile on n3: stats %v, want 3 events", p["stats"])
		}
		// Sealed on n1 under a data key n1 created: n3 opens it (AURUM_KEYS).
		if traits, _ := p["traits"].(map[string]any); traits["plan"] != "pro" {
			return fmt.Errorf("profile on n3: traits %v, want plan pro", p["traits"])
		}
		return nil
	})
	// The owner of ann's partition publishes her entry, once, through its
	// fence on the replicated AURUM_OUT (read on n2's NATS listener).
	pubs := readPublished(t, nodes[1].NATS, 1, 30*time.Second)
	if len(pubs) != 1 || pubs[0].subject != "aurum.audience.buyers.entered" {
		t.Fatalf("published %+v, want one aurum.audience.buyers.entered", pubs)
	}
	// The node's Raft member is wired: GET /v1/cluster on n2 shows the three.
	check.For(t, 30*time.Second, 50*time.Millisecond, func() error {
		var st struct {
			Leader string `json:"leader"`
			Nodes  []struct {
				Name string `json:"name"`
			} `json:"nodes"`
		}
		code, body, err := nodes[1].request("GET", "/v1/cluster", nil, adminAuth)
		if err != nil || code != http.StatusOK {
			return fmt.Errorf("GET /v1/cluster on n2: %d %s %v", code, body, err)
		}
		if err := json.Unmarshal(body, &st); err != nil {
			return err
		}
		if st.Leader == "" || len(st.Nodes) != 3 {
			return fmt.Errorf("GET /v1/cluster on n2: %+v, want a leader and 3 nodes", st)
		}
		return nil
	})
	// Healthy once each node's JetStream replicas are current (a node
	// answers 503 "catching up" until then).
	for i, n := range nodes {
		check.For(t, 30*time.Second, 50*time.Millisecond, func() error {
			code, body, err := n.request("GET", "/healthz", nil, nil)
			if err != nil || code != http.StatusOK {
				return fmt.Errorf("GET /healthz on %s: %d %s %v", names[i], code, body, err)
			}
			return nil
		})
	}
	checkClusterTLS(t, file)
}

// addClusterTLS appends a cluster-wide tls block to the cluster file.
func addClusterTLS(t *testing.T, file, ca, cert, key string) {
	t.Helper()
	f, err := os.OpenFile(file, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := fmt.Fprintf(f, "tls: {cert_file: %s, key_file: %s, ca_file: %s}\n", cert, key, ca); err != nil {
		t.Fatal(err)
	}
}

// checkClusterTLS checks from outside that n1's routes and Raft listeners
// speak TLS only: in the clear a route listener greets with INFO, over TLS
// it waits for the handshake; the Raft listener completes a handshake with
// the cluster's certificate and refuses one without a certificate.
func checkClusterTLS(t *testing.T, file string) {
	t.Helper()
	cfg, err := cluster.LoadConfig(file)
	if err != nil {
		t.Fatal(err)
	}
	n1 := cfg.Nodes[0]
	c, err := net.DialTimeout("tcp", n1.Routes, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	_ = c.SetDeadline(time.Now().Add(time.Second))
	if b, _ := io.ReadAll(c); strings.Contains(string(b), "INFO") {
		t.Fatalf("routes of n1 greet in the clear: %q", b)
	}
	c.Close()
	tc, err := cfg.TLSFor(n1.Name, "")
	if err != nil {
		t.Fatal(err)
	}
	tc.ServerName = "127.0.0.1"
	for _, addr := range []string{n1.Routes, n1.Raft} {
		conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", addr, tc)
		if err != nil {
			t.Fatalf("TLS to %s with the cluster's certificate: %v", addr, err)
		}
		conn.Close()
	}
	anon := &tls.Config{RootCAs: tc.RootCAs, ServerName: "127.0.0.1"}
	conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", n1.Raft, anon)
	if err == nil {
		_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
		_, err = conn.Read(make([]byte, 1)) // TLS 1.3: the refusal comes with the first read
		conn.Close()
	}
	if err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Fatalf("raft of n1 accepted TLS without a client certificate (err %v)", err)
	}
}

// TestClusterServeOneNode: a cluster file of one node starts (Raft elects
// its one voter, JetStream runs unclustered), owns every partition, and
// publishes an audience entry once.
func TestClusterServeOneNode(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a real aurum process")
	}
	parallelProcess(t)
	file := writeClusterFile(t, 1, 4, "n1")
	n1 := startCluster(t, file, "n1")[0]
	check.For(t, 30*time.Second, 50*time.Millisecond, func() error {
		var st struct {
			Leader     string `json:"leader"`
			Partitions []struct {
				Owner string `json:"owner"`
			} `json:"partitions"`
		}
		code, body, err := n1.request("GET", "/v1/cluster", nil, adminAuth)
		if err != nil || code != http.StatusOK {
			return fmt.Errorf("GET /v1/cluster: %d %s %v", code, body, err)
		}
		if err := json.Unmarshal(body, &st); err != nil {
			return err
		}
		if st.Leader != "n1" || len(st.Partitions) != 4 {
			return fmt.Errorf("GET /v1/cluster: %s", body)
		}
		for _, p := range st.Partitions {
			if p.Owner != "n1" {
				return fmt.Errorf("GET /v1/cluster: %s", body)
			}
		}
		return nil
	})
	key := n1.createSource("web")
	n1.mustJSON("POST", "/v1/audiences", map[string]string{"name": "buyers", "rule": `count("Order Completed") >= 1`}, adminAuth, http.StatusCreated, nil)
	n1.mustJSON("POST", "/v1/batch", map[string]any{"batch": []map[string]any{
		{"type": "track", "userId": "ann", "messageId": "m1", "event": "Order Completed"}}}, writeKeyAuth(key), http.StatusOK, nil)
	pubs := readPublished(t, n1.NATS, 1, 30*time.Second)
	if len(pubs) != 1 || pubs[0].subject != "aurum.audience.buyers.entered" {
		t.Fatalf("published %+v, want one aurum.audience.buyers.entered", pubs)
	}
}

// TestServeClusterFlagErrors: serve refuses bad cluster settings before it
// touches the data directory, naming the flag or the file's field.
func TestServeClusterFlagErrors(t *testing.T) {
	file := writeClusterFile(t, 3, 8, "n1", "n2", "n3")
	noNATS := filepath.Join(t.TempDir(), "nonats.yaml")
	if err := os.WriteFile(noNATS, []byte("nodes:\n  - {name: n1, http: 127.0.0.1:8081, raft: 127.0.0.1:7031}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	badReplicas := filepath.Join(t.TempDir(), "bad.yaml")
	if err := os.WriteFile(badReplicas, []byte("replicas: 7\nnodes:\n  - {name: n1, http: 127.0.0.1:8081, nats: 127.0.0.1:4231, routes: 127.0.0.1:6231, raft: 127.0.0.1:7031}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name string
		set  func(*serveFlags)
		want string
	}{
		{"node without cluster", func(f *serveFlags) { f.cluster.node = "n1" }, "--node: only with --cluster"},
		{"cluster without node", func(f *serveFlags) { f.cluster.file = file }, "--node: required with --cluster"},
		{"missing file", func(f *serveFlags) { f.cluster.file, f.cluster.node = file+".missing", "n1" }, "--cluster: cluster: config: open"},
		{"unknown node", func(f *serveFlags) { f.cluster.file, f.cluster.node = file, "n9" }, `--node "n9": not in the nodes of`},
		{"conflicting partitions", func(f *serveFlags) {
			f.cluster.file, f.cluster.node, f.cluster.partitionsSet, f.partitions = file, "n1", true, 16
		}, "--partitions 16: conflicts with partitions: 8 in"},
		{"no NATS addresses", func(f *serveFlags) { f.cluster.file, f.cluster.node = noNATS, "n1" }, "--cluster: the nodes of"},
		{"bad replicas", func(f *serveFlags) { f.cluster.file, f.cluster.node = badReplicas, "n1" }, "--cluster: cluster: config: replicas"},
	} {
		t.Run(tt.name, func(t *testing.T) { checkServeRefuses(t, tt.set, tt.want) })
	}
}

// TestClusterJetStreamFaults: three real nodes take batches (retried
// until acknowledged, as SDKs do) while the AURUM_LOG stream leader's
// process is paused (SIGSTOP) and while two nodes are killed (SIGKILL) in
// quick succession and restarted. Afterwards every node counts every
// event exactly once.
func TestClusterJetStreamFaults(t *testing.T) {
	if testing.Short() {
		t.Skip("starts three real aurum processes")
	}
	parallelProcess(t)
	names := []string{"n1", "n2", "n3"}
	file := writeClusterFile(t, 3, 4, names...)
	nodes := startCluster(t, file, names...)
	key := nodes[0].createSource("web")
	created, err := nodes[0].appliedSeq()
	if err != nil {
		t.Fatal(err)
	}
	// A node accepts the source's write key once it applied its creation
	// (a restarted node replays the log past its last flushed state first).
	knowsSource := func(n *node) {
		t.Helper()
		check.For(t, 60*time.Second, 50*time.Millisecond, func() error {
			got, err := n.appliedSeq()
			if err == nil && got < created {
				err = fmt.Errorf("applied %d of %d", got, created)
			}
			return err
		})
	}
	knowsSource(nodes[1])
	knowsSource(nodes[2])

	const users = 5
	perUser := 0
	var acked atomic.Int64
	round := 0
	send := func(n *node, batches int) { // each batch: one event per user
		t.Helper()
		for range batches {
			round++
			b := make([]map[string]any, users)
			for u := range b {
				b[u] = map[string]any{"type": "track", "userId": fmt.Sprintf("u%d", u), "event": "Viewed",
					"messageId": fmt.Sprintf("m-%d-%d", round, u)}
			}
			sendUntilAcked(t, n, key, b, &acked, true)
			perUser++
		}
	}
	send(nodes[0], 3)

	// Pause the process leading AURUM_LOG: the other two elect a leader
	// and acknowledge batches; then it wakes up.
	leader := logLeader(t, nodes)
	paused := nodes[leader]
	if err := paused.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	resumed := false
	resume := func() {
		if !resumed {
			resumed = true
			_ = paused.cmd.Process.Signal(syscall.SIGCONT)
		}
	}
	t.Cleanup(resume) // before stop's SIGTERM (cleanups run last first)
	send(nodes[(leader+1)%3], 3)
	resume()
	send(nodes[leader], 3)

	// Kill two nodes in quick succession, restart them: ingestion
	// resumes once a majority is back.
	a, b := nodes[(leader+1)%3], nodes[(leader+2)%3]
	a.kill()
	b.kill()
	for _, n := range []*node{a, b} {
		if err := n.launch(); err != nil {
			t.Fatal(err)
		}
	}
	for _, n := range []*node{a, b} {
		if err := n.waitListening(90 * time.Second); err != nil {
			t.Fatal(err)
		}
	}
	knowsSource(a)
	send(a, 3)

	for i, n := range nodes {
		check.For(t, 60*time.Second, 100*time.Millisecond, func() error {
			for u := range users {
				p, err := n.profile(fmt.Sprintf("user_id:u%d", u))
				if err != nil {
					return err
				}
				stats, _ := p["stats"].(map[string]any)
				if stats == nil || stats["total_events"] != float64(perUser) {
					return fmt.Errorf("%s: u%d stats %v, want %d events", names[i], u, p["stats"], perUser)
				}
			}
			return nil
		})
	}
	if acked.Load() != int64(round) {
		t.Fatalf("%d batches acknowledged, %d sent", acked.Load(), round)
	}
}

// logLeader is the index of the node whose NATS server leads AURUM_LOG.
func logLeader(t *testing.T, nodes []*node) int {
	t.Helper()
	js, err := jetstream.New(natsConnect(t, nodes[0].NATS, natsAdmin()))
	if err != nil {
		t.Fatal(err)
	}
	leader := -1
	check.For(t, 30*time.Second, 50*time.Millisecond, func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		s, err := js.Stream(ctx, "AURUM_LOG")
		if err != nil {
			return err
		}
		info, err := s.Info(ctx)
		if err != nil {
			return err
		}
		if info.Cluster == nil {
			return errors.New("AURUM_LOG has no cluster info")
		}
		for i := range nodes {
			if info.Cluster.Leader == fmt.Sprintf("n%d", i+1) {
				leader = i
				return nil
			}
		}
		return fmt.Errorf("AURUM_LOG leader %q", info.Cluster.Leader)
	})
	return leader
}

// TestRouteSecret: the route password is derived from the master key (the
// same on every node that shares it, another for another key) and is
// absent without one.
func TestRouteSecret(t *testing.T) {
	k1, k2 := []byte(strings.Repeat("k", 32)), []byte(strings.Repeat("j", 32))
	if s := routeSecret(nil); s != "" {
		t.Fatalf("without a master key: %q", s)
	}
	a, b, c := routeSecret(k1), routeSecret(append([]byte(nil), k1...)), routeSecret(k2)
	if len(a) != 64 || a != b || a == c || strings.Contains(a, hex.EncodeToString(k1[:8])) {
		t.Fatalf("secrets %q %q %q", a, b, c)
	}
}
