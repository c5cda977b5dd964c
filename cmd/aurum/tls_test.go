package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
)

// testCerts writes a throwaway CA and a server certificate for 127.0.0.1
// and localhost signed by it.
func testCerts(t *testing.T) (caFile, certFile, keyFile string) {
	t.Helper()
	dir := t.TempDir()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "aurum test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, err := x509.ParseCertificate(caDER)
	if err != nil {
		t.Fatal(err)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "localhost"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		DNSNames: []string{"localhost"}, IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	write := func(name, typ string, b []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: b}), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	return write("ca.pem", "CERTIFICATE", caDER), write("cert.pem", "CERTIFICATE", der), write("key.pem", "EC PRIVATE KEY", keyDER)
}

// TestTLS: a node with --tls-cert/--tls-key serves HTTPS only, the CLI
// trusts its private CA with --ca-file or $AURUM_CA_FILE, and with
// --nats-tls-cert/--nats-tls-key a NATS producer must use TLS; the node
// itself still works (an event published over TLS shows on its profile).
func TestTLS(t *testing.T) {
	caFile, certFile, keyFile := testCerts(t)
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
	checkFor(t, 20*time.Second, 20*time.Millisecond, func() error {
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
