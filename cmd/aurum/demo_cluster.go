package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/aurumcdp/aurum/internal/workload"
	"github.com/aurumcdp/aurum/seal"
)

// MaxDemoNodes bounds demo --nodes.
const maxDemoNodes = 5

// demoNode is one `aurum serve --cluster` child process of the demo.
type demoNode struct {
	name, http, nats string
	dir              string
	cmd              *exec.Cmd
	exited           chan struct{}
	logFile          *os.File
}

// runDemoCluster is `aurum demo --nodes N`: N serve processes of this
// binary forming a cluster on this machine (ports from --http and --nats
// upwards, routes and Raft on free ports), the example audiences, and the
// synthetic store streamed over HTTP to the nodes in turn (a node that does
// not answer is skipped, so killing one shows the failover).
func runDemoCluster(ctx context.Context, out io.Writer, f demoFlags) (err error) {
	if f.nodes < 2 || f.nodes > maxDemoNodes {
		return fmt.Errorf("--nodes: want 1 (one process) or 2..%d, got %d", maxDemoNodes, f.nodes)
	}
	wcfg, err := f.workload()
	if err != nil {
		return err
	}
	if f.memoryLimit != "" { // checked here, given to every node
		if _, _, err := memoryLimit(f.memoryLimit, machineMemory{}); err != nil {
			return err
		}
	}
	self, err := os.Executable()
	if err != nil {
		return fmt.Errorf("demo: %w", err)
	}
	dataDir, removeDir, err := f.dataDirFor("aurum-demo-cluster-")
	if err != nil {
		return err
	}
	defer removeDemoDir(dataDir, removeDir, &err)

	nodes, file, err := writeDemoClusterFile(dataDir, f)
	if err != nil {
		return err
	}
	keyFile := filepath.Join(dataDir, "master.key")
	if _, _, err := seal.EnsureMasterKeyFile(keyFile); err != nil {
		return fmt.Errorf("demo: master key: %w", err)
	}
	raw := make([]byte, 24)
	if _, err := rand.Read(raw); err != nil {
		return fmt.Errorf("demo: admin token: %w", err)
	}
	token := "at_" + base64.RawURLEncoding.EncodeToString(raw)

	defer stopDemoNodes(nodes)
	for _, n := range nodes {
		if err := n.start(self, file, keyFile, token, f.memoryLimit); err != nil {
			return err
		}
	}
	c := &http.Client{Timeout: 10 * time.Second}
	for _, n := range nodes {
		if err := waitDemoNode(ctx, c, n, 2*time.Minute); err != nil {
			return err
		}
	}
	api := demoAPI{c: c, token: token}
	keys := map[string]string{}
	for _, s := range workload.Sources {
		var created struct {
			WriteKey string `json:"write_key"`
		}
		if err := api.do(ctx, nodes[0].http, "POST", "/v1/sources", map[string]string{"name": s}, &created); err != nil {
			return fmt.Errorf("demo: create source %s: %w", s, err)
		}
		keys[s] = created.WriteKey
	}
	for _, d := range demoAudiences {
		if err := api.do(ctx, nodes[0].http, "POST", "/v1/audiences", map[string]string{"name": d.Name, "description": d.Description, "rule": d.Rule}, nil); err != nil {
			return fmt.Errorf("demo: install audience %s: %w", d.Name, err)
		}
	}

	fmt.Fprintf(out, "Aurum demo: a cluster of %d nodes on this machine (cluster file %s), a synthetic store of %d customers streamed to the nodes in turn. Ctrl-C stops.\n\n", len(nodes), file, wcfg.People)
	for _, n := range nodes {
		fmt.Fprintf(out, "  %s  HTTP http://%s  NATS nats://%s  pid %d  log %s\n", n.name, n.http, n.nats, n.cmd.Process.Pid, n.logFile.Name())
	}
	fmt.Fprintf(out, "\nAdmin token (generated for this run):\n\n    export AURUM_ADMIN_TOKEN=%s\n    export AURUM_SERVER=http://%s\n\n", token, nodes[0].http)
	fmt.Fprintf(out, "Try:\n    aurum cluster status\n    kill -9 %d    # a node dies: its partitions move, transitions keep flowing\n\n", nodes[len(nodes)-1].cmd.Process.Pid)

	runCtx, stop := context.WithCancel(ctx)
	defer stop()
	if f.duration > 0 {
		var cancel context.CancelFunc
		runCtx, cancel = context.WithTimeout(runCtx, f.duration)
		defer cancel()
	}
	p := &clusterProducer{api: api, nodes: nodes, keys: keys, gen: workload.New(wcfg), rate: f.rate}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); p.run(runCtx) }()
	defer func() { stop(); wg.Wait() }()

	start := time.Now()
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	var lastSent int64
	for {
		select {
		case <-runCtx.Done():
			stop()
			wg.Wait()
			fmt.Fprintf(out, "stopping after %s: %d events sent (%d answered by another node after a failure)\n",
				time.Since(start).Round(time.Second), p.sent.Load(), p.rerouted.Load())
			return nil
		case <-tick.C:
			sent := p.sent.Load()
			fmt.Fprintf(out, "%5s  sent %d (%d/s)  %s\n", time.Since(start).Round(time.Second), sent, sent-lastSent, clusterLine(runCtx, api, nodes))
			lastSent = sent
		}
	}
}

// writeDemoClusterFile picks the nodes' addresses and writes the cluster
// file into dataDir.
func writeDemoClusterFile(dataDir string, f demoFlags) ([]*demoNode, string, error) {
	httpHost, httpPort, err := splitPort(f.httpAddr)
	if err != nil {
		return nil, "", fmt.Errorf("--http: %w", err)
	}
	natsHost, natsPort, err := splitPort(f.natsAddr)
	if err != nil {
		return nil, "", fmt.Errorf("--nats: %w", err)
	}
	var b strings.Builder
	fmt.Fprintf(&b, "# written by aurum demo --nodes %d\nreplicas: %d\npartitions: 16\nnodes:\n", f.nodes, min(f.nodes, 3))
	var nodes []*demoNode
	used := map[string]bool{}
	free := func(host string) (string, error) { // distinct: the OS may hand out a port twice
		for range 100 {
			a, err := freeAddr(host)
			if err != nil || !used[a] {
				used[a] = true
				return a, err
			}
		}
		return "", fmt.Errorf("demo: no distinct free port on %s", host)
	}
	for i := range f.nodes {
		port := func(host string, base int) (string, error) {
			if base > 0 {
				a := net.JoinHostPort(host, strconv.Itoa(base+i))
				used[a] = true
				return a, nil
			}
			return free(host)
		}
		n := &demoNode{name: fmt.Sprintf("n%d", i+1), dir: filepath.Join(dataDir, fmt.Sprintf("n%d", i+1))}
		if n.http, err = port(httpHost, httpPort); err != nil {
			return nil, "", err
		}
		if n.nats, err = port(natsHost, natsPort); err != nil {
			return nil, "", err
		}
		routes, err := free(natsHost)
		if err != nil {
			return nil, "", err
		}
		raft, err := free(natsHost)
		if err != nil {
			return nil, "", err
		}
		fmt.Fprintf(&b, "  - {name: %s, http: %s, nats: %s, routes: %s, raft: %s}\n", n.name, n.http, n.nats, routes, raft)
		nodes = append(nodes, n)
	}
	file := filepath.Join(dataDir, "cluster.yaml")
	if err := os.WriteFile(file, []byte(b.String()), 0o600); err != nil {
		return nil, "", fmt.Errorf("demo: %w", err)
	}
	return nodes, file, nil
}

// splitPort splits host:port; port 0 or -1 means free ports.
func splitPort(addr string) (string, int, error) {
	host, p, err := net.SplitHostPort(addr)
	if err != nil {
		return "", 0, err
	}
	port, err := strconv.Atoi(p)
	if err != nil || port < -1 || port > 65535-maxDemoNodes {
		return "", 0, fmt.Errorf("port %q: want a number (0 for free ports)", p)
	}
	if host == "" || host == "0.0.0.0" || host == "::" {
		host = "127.0.0.1"
	}
	return host, max(port, 0), nil
}

// freeAddr returns host:port with a port that was free a moment ago.
func freeAddr(host string) (string, error) {
	ln, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
	if err != nil {
		return "", fmt.Errorf("demo: no free port on %s: %w", host, err)
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

func (n *demoNode) start(self, file, keyFile, token, memoryLimit string) error {
	if err := os.MkdirAll(n.dir, 0o700); err != nil {
		return fmt.Errorf("demo: %w", err)
	}
	lf, err := os.OpenFile(filepath.Join(filepath.Dir(n.dir), n.name+".log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("demo: %w", err)
	}
	n.logFile = lf
	args := []string{"serve", "--cluster", file, "--node", n.name, "--data-dir", n.dir,
		"--master-key-file", keyFile, "--log-format", "json"}
	if memoryLimit != "" {
		args = append(args, "--memory-limit", memoryLimit)
	}
	n.cmd = exec.Command(self, args...)
	n.cmd.Env = append(os.Environ(), "AURUM_ADMIN_TOKEN="+token)
	n.cmd.Stdout, n.cmd.Stderr = lf, lf
	// Its own process group: a Ctrl-C in the terminal reaches the demo,
	// which stops the nodes in order.
	n.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := n.cmd.Start(); err != nil {
		return fmt.Errorf("demo: start %s: %w", n.name, err)
	}
	n.exited = make(chan struct{})
	go func() { _ = n.cmd.Wait(); close(n.exited) }()
	return nil
}

// waitDemoNode waits until the node answers /healthz.
func waitDemoNode(ctx context.Context, c *http.Client, n *demoNode, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		resp, err := c.Get("http://" + n.http + "/healthz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case <-n.exited:
			return fmt.Errorf("demo: node %s exited; see %s", n.name, n.logFile.Name())
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("demo: node %s did not answer within %v; see %s", n.name, timeout, n.logFile.Name())
		}
	}
}

// stopDemoNodes stops every node (SIGTERM, then SIGKILL after 30 s).
func stopDemoNodes(nodes []*demoNode) {
	for _, n := range nodes {
		if n.cmd != nil && n.cmd.Process != nil {
			_ = n.cmd.Process.Signal(syscall.SIGTERM)
		}
	}
	for _, n := range nodes {
		if n.exited == nil {
			continue
		}
		select {
		case <-n.exited:
		case <-time.After(30 * time.Second):
			_ = n.cmd.Process.Kill()
			<-n.exited
		}
		n.logFile.Close()
	}
}

// demoAPI calls the nodes' HTTP API with the admin token.
type demoAPI struct {
	c     *http.Client
	token string
}

func (a demoAPI) do(ctx context.Context, host, method, path string, body, out any) error {
	var rd io.Reader
	if body != nil {
		data, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(data)
	}
	req, err := http.NewRequestWithContext(ctx, method, "http://"+host+path, rd)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+a.token)
	req.Header.Set("Content-Type", "application/json")
	resp, err := a.c.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 8<<20))
	if err != nil {
		return err
	}
	if resp.StatusCode >= 300 {
		return fmt.Errorf("%s %s answered %d: %s", method, path, resp.StatusCode, bytes.TrimSpace(data))
	}
	if out != nil {
		return json.Unmarshal(data, out)
	}
	return nil
}

// clusterLine is the status of the cluster as the first node that answers
// sees it: leader, nodes up, audience sizes.
func clusterLine(ctx context.Context, api demoAPI, nodes []*demoNode) string {
	for _, n := range nodes {
		var st struct {
			Leader string `json:"leader"`
			Nodes  []struct {
				State string `json:"state"`
			} `json:"nodes"`
		}
		if api.do(ctx, n.http, "GET", "/v1/cluster", nil, &st) != nil {
			continue
		}
		up := 0
		for _, m := range st.Nodes {
			if m.State == "up" {
				up++
			}
		}
		var auds struct {
			Audiences []struct {
				Name string `json:"name"`
				Size int64  `json:"size"`
			} `json:"audiences"`
		}
		line := fmt.Sprintf("leader %s, %d/%d nodes up", st.Leader, up, len(st.Nodes))
		if api.do(ctx, n.http, "GET", "/v1/audiences", nil, &auds) == nil {
			var parts []string
			for _, a := range auds.Audiences {
				parts = append(parts, fmt.Sprintf("%s=%d", a.Name, a.Size))
			}
			line += "  audiences " + strings.Join(parts, " ")
		}
		return line
	}
	return "no node answers"
}

// clusterProducer streams the workload to the nodes in turn over HTTP,
// batching each source's events; a failed request goes to the next node.
type clusterProducer struct {
	api      demoAPI
	nodes    []*demoNode
	keys     map[string]string
	gen      *workload.Generator
	rate     float64
	sent     atomic.Int64
	rerouted atomic.Int64
	next     int
}

func (p *clusterProducer) run(ctx context.Context) {
	tick := time.NewTicker(demoTick)
	defer tick.Stop()
	var owed float64
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		n := demoMaxBatch
		if p.rate > 0 {
			owed += p.rate * demoTick.Seconds()
			n = min(int(owed), demoMaxBatch)
			owed -= float64(n)
		}
		batches := map[string][]json.RawMessage{}
		for range n {
			ev, ok := p.gen.Next()
			if !ok {
				break
			}
			batches[ev.Source] = append(batches[ev.Source], ev.JSON)
		}
		if len(batches) == 0 {
			return // the workload is complete
		}
		for _, src := range workload.Sources {
			if evs := batches[src]; len(evs) > 0 && !p.send(ctx, src, evs) {
				return
			}
		}
	}
}

// send posts one batch, trying each node at most twice.
func (p *clusterProducer) send(ctx context.Context, src string, evs []json.RawMessage) bool {
	body, err := json.Marshal(map[string]any{"batch": evs})
	if err != nil {
		return false
	}
	for try := range 2 * len(p.nodes) {
		n := p.nodes[p.next%len(p.nodes)]
		p.next++
		req, err := http.NewRequestWithContext(ctx, "POST", "http://"+n.http+"/v1/batch", bytes.NewReader(body))
		if err != nil {
			return false
		}
		req.SetBasicAuth(p.keys[src], "")
		req.Header.Set("Content-Type", "application/json")
		resp, err := p.api.c.Do(req)
		if err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				p.sent.Add(int64(len(evs)))
				if try > 0 {
					p.rerouted.Add(int64(len(evs)))
				}
				return true
			}
		}
		if ctx.Err() != nil || errors.Is(err, context.Canceled) {
			return false
		}
	}
	return ctx.Err() == nil // every node refused: drop the batch, keep going
}
