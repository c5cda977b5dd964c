package cluster

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"path/filepath"
)

// TLSFiles are the PEM files of a node's TLS on the links between nodes
// (the cluster file's tls block): its certificate and key, and the CA that
// signed every node's certificate. All three are required: each side of a
// link verifies the other's certificate against the CA (mutual TLS), so a
// process without a certificate of that CA can neither join the routes nor
// speak Raft. A certificate must name the hosts of the node's routes and
// raft addresses (DNS or IP subject alternative names): the dialing side
// checks them.
type TLSFiles struct {
	CertFile string `yaml:"cert_file"`
	KeyFile  string `yaml:"key_file"`
	CAFile   string `yaml:"ca_file"`
}

// check reports a missing file name.
func (f *TLSFiles) check() error {
	var errs []error
	for _, x := range []struct{ field, v string }{{"cert_file", f.CertFile}, {"key_file", f.KeyFile}, {"ca_file", f.CAFile}} {
		if x.v == "" {
			errs = append(errs, fmt.Errorf("%s: missing (cert_file, key_file and ca_file go together)", x.field))
		}
	}
	return errors.Join(errs...)
}

// TLSFor loads the TLS configuration of node name: its own tls block, else
// the cluster's; nil without either. Relative paths are relative to dir
// (the cluster file's directory; "" for the working directory). The result
// serves and dials with the same certificate, requires and verifies the
// peer's certificate against the CA both ways, and is for the NATS routes
// and the Raft transport (Options.TLS).
func (c *Config) TLSFor(name, dir string) (*tls.Config, error) {
	f := c.TLS
	if n, ok := c.Node(name); ok && n.TLS != nil {
		f = n.TLS
	}
	if f == nil {
		return nil, nil
	}
	if err := f.check(); err != nil {
		return nil, fmt.Errorf("cluster: tls: %w", err)
	}
	path := func(p string) string {
		if dir == "" || filepath.IsAbs(p) {
			return p
		}
		return filepath.Join(dir, p)
	}
	cert, err := tls.LoadX509KeyPair(path(f.CertFile), path(f.KeyFile))
	if err != nil {
		return nil, fmt.Errorf("cluster: tls: cert_file %s, key_file %s: %w", f.CertFile, f.KeyFile, err)
	}
	pem, err := os.ReadFile(path(f.CAFile))
	if err != nil {
		return nil, fmt.Errorf("cluster: tls: ca_file: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("cluster: tls: ca_file %s: no PEM certificate in it", f.CAFile)
	}
	return &tls.Config{
		Certificates: []tls.Certificate{cert},
		RootCAs:      pool,
		ClientCAs:    pool,
		ClientAuth:   tls.RequireAndVerifyClientCert,
		MinVersion:   tls.VersionTLS12,
	}, nil
}
