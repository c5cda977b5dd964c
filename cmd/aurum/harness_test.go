package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"math/rand"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// The integration tests run the real aurum binary as a child process.

var aurumBin string

const testAdminToken = "test-admin-token-0123456789"

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "aurum-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	aurumBin = filepath.Join(dir, "aurum")
	// The child is built without -race: the crash tests need its speed; the
	// packages it is made of run under -race in their own tests.
	out, err := exec.Command("go", "build", "-o", aurumBin, ".").CombinedOutput()
	if err != nil {
		fmt.Fprintf(os.Stderr, "building aurum: %v\n%s", err, out)
		os.Exit(1)
	}
	defaultParallel(testParallel)
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// testParallel is -test.parallel when the command line does not set it
// (go test's default is GOMAXPROCS, 2 in CI). The tests here wait on real
// processes (non-race aurum nodes, their elections, ticks, failovers) far
// more than they compute, so more of them run at once than there are
// cores: the two chaos tests (the longest by far) start as soon as the
// serial tests are done, and the other real-process tests run beside them,
// processSlots at a time (parallelProcess). The package's time comes near
// TestClusterChaos's instead of the sum of its tests.
const testParallel = 64 // more than the package's parallel tests: none waits for a -parallel slot

// processSlots bounds the real-process tests (other than the two chaos
// tests) that run at once.
var processSlots = make(chan struct{}, 3)

// parallelProcess marks a real-process test parallel and waits for one of
// processSlots, given back when the test's other cleanups (its nodes'
// stops) are done. The -parallel slot it holds meanwhile costs nothing:
// testParallel leaves the chaos tests room to start at once.
func parallelProcess(t *testing.T) {
	t.Helper()
	t.Parallel()
	processSlots <- struct{}{}
	t.Cleanup(func() { <-processSlots })
}

// defaultParallel sets -test.parallel to n unless the command line set it.
func defaultParallel(n int) {
	flag.Parse()
	set := false
	flag.Visit(func(f *flag.Flag) { set = set || f.Name == "test.parallel" })
	if !set && runtime.GOMAXPROCS(0) < n {
		if err := flag.Set("test.parallel", strconv.Itoa(n)); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
	}
}

// node is a running `aurum serve` process.
type node struct {
	t       *testing.T
	dataDir string
	args    []string
	cmd     *exec.Cmd
	HTTP    string // base URL
	NATS    string
	env     []string // extra environment; AURUM_ADMIN_TOKEN is set unless noToken
	noToken bool
	logMu   sync.Mutex
	logs    bytes.Buffer
	stdout  lockedBuffer
	exited  chan struct{}
	ready   chan map[string]any // the "aurum listening" record of the current process
}

// lockedBuffer is a bytes.Buffer safe for a writer goroutine and readers.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func (b *lockedBuffer) Reset() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.buf.Reset()
}

// freePort returns a TCP port that was free a moment ago. Ports come from
// below Linux's default ephemeral range (32768–60999), so that no outgoing
// connection takes a node's fixed port while the node restarts, and a port
// is handed out once per test binary, so that tests running in parallel
// never share one.
func freePort(t *testing.T) int {
	t.Helper()
	return testPorts.take(t)
}

// portPool hands out distinct loopback ports for the processes tests start.
type portPool struct {
	mu   sync.Mutex
	used map[int]bool
	rng  *rand.Rand
}

var testPorts = &portPool{used: map[int]bool{}, rng: rand.New(rand.NewSource(time.Now().UnixNano()))}

func (p *portPool) take(t *testing.T) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	const lo, hi = 20000, 32768
	for i := 0; i < 1000; i++ {
		port := lo + p.rng.Intn(hi-lo)
		if p.used[port] {
			continue
		}
		ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port))
		if err != nil {
			continue // taken by another process
		}
		ln.Close()
		p.used[port] = true
		return port
	}
	t.Fatal("no free port in 20000-32767 after 1000 tries")
	return 0
}

// startNode starts `aurum serve` on dataDir with fixed ports (so that a
// restarted node keeps its addresses) and waits until it listens.
func startNode(t *testing.T, dataDir string, extra ...string) *node {
	t.Helper()
	return startNodeWith(t, &node{dataDir: dataDir}, extra...)
}

// startNodeWith starts a node prepared by the caller (environment, token).
func startNodeWith(t *testing.T, n *node, extra ...string) *node {
	t.Helper()
	n.t = t
	dataDir := n.dataDir
	n.args = append([]string{"serve", "--data-dir", dataDir, "--log-format", "json",
		"--http", fmt.Sprintf("127.0.0.1:%d", freePort(t)),
		"--nats", fmt.Sprintf("127.0.0.1:%d", freePort(t))}, extra...)
	n.start()
	t.Cleanup(func() { n.stop() })
	return n
}

func (n *node) start() {
	n.t.Helper()
	if err := n.launch(); err != nil {
		n.t.Fatal(err)
	}
	if err := n.waitListening(60 * time.Second); err != nil {
		n.t.Fatal(err)
	}
}

// launch starts the process; waitListening waits for it to listen. Nodes
// of a cluster are launched together: each waits for the others' quorum.
func (n *node) launch() error {
	n.cmd = exec.Command(aurumBin, n.args...)
	n.cmd.Env = append(os.Environ(), n.env...)
	if !n.noToken {
		n.cmd.Env = append(n.cmd.Env, "AURUM_ADMIN_TOKEN="+testAdminToken)
	}
	stderr, err := n.cmd.StderrPipe()
	if err != nil {
		return err
	}
	n.stdout.Reset()
	n.cmd.Stdout = &n.stdout
	if err := n.cmd.Start(); err != nil {
		return err
	}
	n.exited = make(chan struct{})
	n.ready = make(chan map[string]any, 1)
	ready := n.ready
	go func() {
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			line := sc.Bytes()
			n.logMu.Lock()
			n.logs.Write(line)
			n.logs.WriteByte('\n')
			n.logMu.Unlock()
			var rec map[string]any
			if json.Unmarshal(line, &rec) == nil && rec["msg"] == "aurum listening" {
				select {
				case ready <- rec:
				default:
				}
			}
		}
	}()
	exited := n.exited
	go func() {
		_ = n.cmd.Wait()
		close(exited)
	}()
	return nil
}

func (n *node) waitListening(timeout time.Duration) error {
	select {
	case rec := <-n.ready:
		// Ports are fixed per node, so a restart listens where the first
		// start did; other goroutines read these fields without locks.
		if n.HTTP == "" {
			n.HTTP, _ = rec["http"].(string)
			n.NATS, _ = rec["nats"].(string)
		} else if rec["http"] != n.HTTP {
			return fmt.Errorf("restarted node listens on %v, first start on %s", rec["http"], n.HTTP)
		}
		return nil
	case <-n.exited:
		return fmt.Errorf("aurum serve exited before listening:\n%s", n.logText())
	case <-time.After(timeout):
		return fmt.Errorf("aurum serve did not start within %v:\n%s", timeout, n.logText())
	}
}

func (n *node) logText() string {
	n.logMu.Lock()
	defer n.logMu.Unlock()
	return n.logs.String()
}

// kill sends SIGKILL and waits for the process to go.
func (n *node) kill() {
	if n.cmd == nil || n.cmd.Process == nil {
		return
	}
	_ = n.cmd.Process.Signal(syscall.SIGKILL)
	<-n.exited
}

// stop sends SIGTERM and waits for a clean exit.
func (n *node) stop() {
	if n.cmd == nil || n.cmd.Process == nil {
		return
	}
	select {
	case <-n.exited:
		return
	default:
	}
	_ = n.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-n.exited:
	case <-time.After(30 * time.Second):
		n.t.Errorf("aurum serve did not stop on SIGTERM within 30s; killing")
		n.kill()
	}
}

// restart starts the process again on the same data dir and ports.
func (n *node) restart() { n.t.Helper(); n.start() }

// request sends a request and returns status and body.
func (n *node) request(method, path string, body any, auth func(*http.Request)) (int, []byte, error) {
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case []byte:
		rd = bytes.NewReader(b)
	case string:
		rd = strings.NewReader(b)
	default:
		data, err := json.Marshal(b)
		if err != nil {
			return 0, nil, err
		}
		rd = bytes.NewReader(data)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, n.HTTP+path, rd)
	if err != nil {
		return 0, nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	if auth != nil {
		auth(req)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	return resp.StatusCode, data, err
}

func adminAuth(r *http.Request) { r.Header.Set("Authorization", "Bearer "+testAdminToken) }

func writeKeyAuth(key string) func(*http.Request) {
	return func(r *http.Request) { r.SetBasicAuth(key, "") }
}

// mustJSON sends a request that must answer want, and decodes the body.
func (n *node) mustJSON(method, path string, body any, auth func(*http.Request), want int, out any) {
	n.t.Helper()
	code, data, err := n.request(method, path, body, auth)
	if err != nil {
		n.t.Fatalf("%s %s: %v", method, path, err)
	}
	if code != want {
		n.t.Fatalf("%s %s: status %d, want %d: %s", method, path, code, want, data)
	}
	if out != nil {
		if err := json.Unmarshal(data, out); err != nil {
			n.t.Fatalf("%s %s: decode %s: %v", method, path, data, err)
		}
	}
}

func (n *node) createSource(name string) string {
	n.t.Helper()
	var out struct {
		Name     string `json:"name"`
		WriteKey string `json:"write_key"`
	}
	n.mustJSON("POST", "/v1/sources", map[string]string{"name": name}, adminAuth, http.StatusCreated, &out)
	if out.WriteKey == "" || out.Name != name {
		n.t.Fatalf("create source: %+v", out)
	}
	return out.WriteKey
}

// profile fetches a GCR (status 200) or returns an error.
func (n *node) profile(ref string) (map[string]any, error) {
	code, data, err := n.request("GET", "/v1/profiles/"+ref, nil, adminAuth)
	if err != nil {
		return nil, err
	}
	if code != http.StatusOK {
		return nil, fmt.Errorf("GET profile %s: %d %s", ref, code, data)
	}
	var p map[string]any
	return p, json.Unmarshal(data, &p)
}

func digestOf(t *testing.T, dataDir string) string {
	t.Helper()
	out, err := exec.Command(aurumBin, "digest", "--data-dir", dataDir).CombinedOutput()
	if err != nil {
		t.Fatalf("aurum digest: %v\n%s", err, out)
	}
	return strings.TrimSpace(string(out))
}
