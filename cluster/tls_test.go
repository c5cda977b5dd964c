package cluster

import (
	"crypto/tls"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/aurumcdp/aurum/internal/testcert"
)

// TestClusterTLS: with a tls block in the cluster file the Raft transport
// is mutual TLS. Three nodes elect a leader and write the first map over
// it; a peer speaking plain TCP, or TLS with a certificate of another CA,
// or none, is refused at the handshake.
func TestClusterTLS(t *testing.T) {
	ca, cert, key := testcert.Write(t)
	c := newTestClusterTLS(t, 4, &TLSFiles{CertFile: cert, KeyFile: key, CAFile: ca}, "a", "b", "c")
	c.settled("a", "b", "c")
	raftAddr := c.nodes["a"].opts.Config.Nodes[0].Raft

	otherCA, otherCert, otherKey := testcert.Write(t)
	foreign, err := (&Config{TLS: &TLSFiles{CertFile: otherCert, KeyFile: otherKey, CAFile: otherCA}}).TLSFor("x", "")
	if err != nil {
		t.Fatal(err)
	}
	own := c.tls.Clone()
	own.Certificates = nil // trusts the cluster's CA, presents no certificate
	for _, tc := range []struct {
		name string
		conf *tls.Config
	}{
		{"a certificate of another CA", foreign},
		{"no client certificate", own},
	} {
		t.Run(tc.name, func(t *testing.T) {
			conf := tc.conf.Clone()
			conf.ServerName = "127.0.0.1"
			conf.InsecureSkipVerify = tc.conf == foreign // the server's side must refuse it, not ours
			conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", raftAddr, conf)
			if err == nil {
				// TLS 1.3: the server's verdict on the client's
				// certificate arrives with the first read.
				_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
				_, err = conn.Read(make([]byte, 1))
				conn.Close()
			}
			if err == nil || !strings.Contains(err.Error(), "certificate") {
				t.Fatalf("the raft transport accepted it (err %v)", err)
			}
		})
	}
	t.Run("plain TCP", func(t *testing.T) {
		conn, err := net.DialTimeout("tcp", raftAddr, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
		// A raft RPC header in the clear: the server reads it as a TLS
		// record and hangs up.
		if _, err := conn.Write([]byte{0, 0, 0, 0, 0, 0, 0, 0, 0}); err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(conn)
		if err == nil && len(b) > 0 && b[0] != 0x15 { // 0x15: a TLS alert record
			t.Fatalf("plain TCP answered %x", b)
		}
	})
	// The cluster still works after the intruders: a change commits.
	c.stop("c")
	c.settled("a", "b")
}

func TestTLSFor(t *testing.T) {
	ca, cert, key := testcert.Write(t)
	for _, tc := range []struct {
		name string
		cfg  Config
		want string // "" valid, "nil" none, else in the error
	}{
		{name: "none", cfg: Config{Nodes: []NodeConfig{{Name: "n1"}}}, want: "nil"},
		{name: "cluster-wide", cfg: Config{TLS: &TLSFiles{cert, key, ca}, Nodes: []NodeConfig{{Name: "n1"}}}},
		{name: "per node overrides", cfg: Config{TLS: &TLSFiles{"/nope", "/nope", "/nope"}, Nodes: []NodeConfig{{Name: "n1", TLS: &TLSFiles{cert, key, ca}}}}},
		{name: "missing cert", cfg: Config{TLS: &TLSFiles{cert + ".x", key, ca}}, want: "cert_file"},
		{name: "ca not PEM", cfg: Config{TLS: &TLSFiles{cert, key, key}}, want: "ca_file"},
		{name: "ca missing", cfg: Config{TLS: &TLSFiles{cert, key, ca + ".x"}}, want: "ca_file"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := tc.cfg.TLSFor("n1", "")
			switch {
			case tc.want == "nil":
				if got != nil || err != nil {
					t.Fatalf("%v, %v; want none", got, err)
				}
			case tc.want == "":
				if err != nil || got == nil || len(got.Certificates) != 1 || got.ClientAuth != tls.RequireAndVerifyClientCert || got.RootCAs == nil {
					t.Fatalf("%+v, %v", got, err)
				}
			default:
				if err == nil || !strings.Contains(err.Error(), tc.want) {
					t.Fatalf("error %v, want one naming %s", err, tc.want)
				}
			}
		})
	}
}
