package main

import (
	"github.com/aurumcdp/aurum/internal/check"
	"github.com/aurumcdp/aurum/internal/testcert"

	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
)

// TestTLS: a node with --tls-cert/--tls-key serves HTTPS only, the CLI
// trusts its private CA with --ca-file or $AURUM_CA_FILE, and with
// --nats-tls-cert/--nats-tls-key a NATS producer must use TLS; the node
// itself still works (an event published over TLS shows on its profile).
func TestTLS(t *testing.T) {
	parallelProcess(t)
	caFile, certFile, keyFile := testcert.Write(t)
	n := startNode(t, t.TempDir(), "--tls-cert", certFile, "--tls-key", keyFile,
		"--nats-tls-cert", certFile, "--nats-tls-key", keyFile, "--tick", "0")
	if !strings.HasPrefix(n.HTTP, "https://") || !strings.HasPrefix(n.NATS, "tls://") {
		t.Fatalf("node listens on %s and %s, want https:// and tls://", n.HTTP, n.NATS)
	}
	pem, err := os.ReadFile(caFile)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pem)
	hc := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	get := func(path string) (int, []byte) {
		t.Helper()
		req, _ := http.NewRequest("GET", n.HTTP+path, nil)
		adminAuth(req)
		resp, err := hc.Do(req)
		if err != nil {
			t.Fatalf("GET %s: %v", path, err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, b
	}
	if code, body := get("/healthz"); code != http.StatusOK {
		t.Fatalf("healthz over https: %d %s", code, body)
	}
	// serve puts the web console at / (issue #14), in front of the API.
	if code, body := get("/"); code != http.StatusOK || !strings.Contains(string(body), `src="/assets/app.js"`) {
		t.Fatalf("console at / over https: %d %.200s", code, body)
	}
	// Plain HTTP gets no API.
	plain := "http://" + strings.TrimPrefix(n.HTTP, "https://")
	if resp, err := http.Get(plain + "/healthz"); err == nil {
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode == http.StatusOK || strings.Contains(string(b), "applied_seq") {
			t.Fatalf("plain HTTP was served: %d %s", resp.StatusCode, b)
		}
	}
	// Without the CA the CLI refuses the server's certificate; with
	// --ca-file it works.
	cli := func(env []string, args ...string) (string, error) {
		cmd := exec.Command(aurumBin, append(args, "--server", n.HTTP)...)
		cmd.Env = append(append(os.Environ(), "AURUM_ADMIN_TOKEN="+testAdminToken, "AURUM_CA_FILE="), env...)
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	if out, err := cli(nil, "source", "list"); err == nil || !strings.Contains(out, "certificate") {
		t.Fatalf("CLI without the CA: %v: %s", err, out)
	}
	out, err := cli(nil, "source", "add", "web", "--ca-file", caFile)
	if err != nil {
		t.Fatalf("source add --ca-file: %v: %s", err, out)
	}
	var src struct {
		WriteKey string `json:"write_key"`
	}
	if err := json.Unmarshal([]byte(out), &src); err != nil || src.WriteKey == "" {
		t.Fatalf("source add: %v: %s", err, out)
	}
	if out, err := cli([]string{"AURUM_CA_FILE=" + caFile}, "audit", "--json"); err != nil || !strings.Contains(out, `"POST /v1/sources"`) {
		t.Fatalf("audit with $AURUM_CA_FILE: %v: %s", err, out)
	}

	// NATS: a client without TLS is refused, even with the write key; one
	// with it publishes an event through the gateway subject.
	plainNATS := strings.Replace(n.NATS, "tls://", "nats://", 1)
	if nc, err := nats.Connect(plainNATS, natsProducer("web", src.WriteKey), nats.Timeout(2*time.Second), nats.NoReconnect()); err == nil {
		nc.Close()
		t.Fatal("a NATS client without TLS connected")
	}
	nc, err := nats.Connect(n.NATS, natsProducer("web", src.WriteKey), nats.RootCAs(caFile), nats.Timeout(5*time.Second))
	if err != nil {
		t.Fatalf("NATS over TLS: %v", err)
	}
	defer nc.Close()
	if err := nc.Publish("aurum.ingest.web", []byte(`{"type":"track","event":"Signed Up","userId":"tls-1","messageId":"m-tls-1"}`)); err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	check.For(t, 20*time.Second, 20*time.Millisecond, func() error {
		if code, body := get("/v1/profiles/user_id:tls-1"); code != http.StatusOK {
			return fmt.Errorf("profile: %d %s", code, body)
		}
		return nil
	})
}

// TestTLSFlagsGoTogether: one of a pair of TLS flags is a clear error.
func TestTLSFlagsGoTogether(t *testing.T) {
	for _, args := range [][]string{
		{"--tls-cert", "c.pem"},
		{"--tls-key", "k.pem"},
		{"--nats-tls-cert", "c.pem"},
		{"--nats-tls-key", "k.pem"},
	} {
		cmd := exec.Command(aurumBin, append([]string{"serve", "--data-dir", t.TempDir(), "--http", "127.0.0.1:0", "--nats", "127.0.0.1:-1"}, args...)...)
		cmd.Env = append(os.Environ(), "AURUM_ADMIN_TOKEN="+testAdminToken)
		out, err := cmd.CombinedOutput()
		if err == nil || !strings.Contains(string(out), "both or neither") {
			t.Errorf("serve %v: %v: %s", args, err, out)
		}
	}
	cmd := exec.Command(aurumBin, "serve", "--data-dir", t.TempDir(), "--http", "127.0.0.1:0", "--nats", "127.0.0.1:-1",
		"--tls-cert", "/nonexistent/c.pem", "--tls-key", "/nonexistent/k.pem")
	cmd.Env = append(os.Environ(), "AURUM_ADMIN_TOKEN="+testAdminToken)
	if out, err := cmd.CombinedOutput(); err == nil || !strings.Contains(string(out), "--tls-cert") {
		t.Errorf("serve with missing cert files: %v: %s", err, out)
	}
}
