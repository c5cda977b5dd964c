package main

import (
	"bytes"
	"context"
	"encoding/pem"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// runInProcess runs the CLI in this process with env set (t.Setenv: the
// test must not be parallel) and returns stdout, stderr and the error.
func runInProcess(t *testing.T, env map[string]string, args ...string) (string, string, error) {
	t.Helper()
	for _, k := range []string{"AURUM_SERVER", "AURUM_ADMIN_TOKEN", "AURUM_CA_FILE"} {
		t.Setenv(k, "")
		os.Unsetenv(k)
	}
	for k, v := range env {
		t.Setenv(k, v)
	}
	root := newRoot()
	var out, errOut bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&errOut)
	root.SetArgs(args)
	err := root.ExecuteContext(context.Background())
	return out.String(), errOut.String(), err
}

// TestDigestRefusesMissingDataDir: digest of a data directory that does
// not exist, or holds no Aurum state, is an error naming --data-dir, and
// creates nothing (it printed the digest of nothing with exit 0 before).
func TestDigestRefusesMissingDataDir(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "nope")
	empty := t.TempDir()
	for _, dir := range []string{missing, empty} {
		out, _, err := runInProcess(t, nil, "digest", "--data-dir", dir)
		if err == nil || !strings.Contains(err.Error(), "--data-dir "+dir) {
			t.Fatalf("digest --data-dir %s: %v, output %q; want an error naming --data-dir", dir, err, out)
		}
	}
	if _, err := os.Stat(missing); !os.IsNotExist(err) {
		t.Fatalf("digest created %s (%v)", missing, err)
	}
	if ents, _ := os.ReadDir(empty); len(ents) != 0 {
		t.Fatalf("digest wrote into the empty directory: %v", ents)
	}
	if _, _, err := runInProcess(t, nil, "digest", "--data-dir", empty, "--server", "http://127.0.0.1:1"); err == nil || !strings.Contains(err.Error(), "not both") {
		t.Fatalf("digest with --data-dir and --server: %v", err)
	}
}

// TestDigestServerFromEnvAndCAFile: digest asks the node of $AURUM_SERVER
// like every other client command, with the admin token, and trusts a
// private CA with --ca-file.
func TestDigestServerFromEnvAndCAFile(t *testing.T) {
	const digest = `{"applied":7,"digest":"abc123","global":"g","partitions":["p0"]}`
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/v1/digest" || r.Header.Get("Authorization") != "Bearer "+testAdminToken {
			http.Error(w, `{"error":"wrong request"}`, http.StatusUnauthorized)
			return
		}
		_, _ = w.Write([]byte(digest))
	}))
	defer srv.Close()
	ca := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}), 0o600); err != nil {
		t.Fatal(err)
	}
	env := map[string]string{"AURUM_SERVER": srv.URL, "AURUM_ADMIN_TOKEN": testAdminToken}
	if _, _, err := runInProcess(t, env, "digest"); err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Fatalf("digest of an https server with a private CA and no --ca-file: %v, want a certificate error", err)
	}
	out, _, err := runInProcess(t, env, "digest", "--ca-file", ca, "--partitions")
	if err != nil || out != "abc123 applied=7\nglobal g\npartition 0 p0\n" {
		t.Fatalf("digest with $AURUM_SERVER and --ca-file: %v, output %q", err, out)
	}
}
