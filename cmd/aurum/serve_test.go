package main

import (
	"context"
	"os"
	"strings"
	"testing"
	"time"
)

// TestServeFlagErrors: serve refuses invalid engine settings before it
// touches the data directory, naming the flags (engine.Options.Validate
// holds the checks).
func TestServeFlagErrors(t *testing.T) {
	for _, tt := range []struct {
		name string
		set  func(*serveFlags)
		want string
	}{
		{"tick too short", func(f *serveFlags) { f.tick = 5 * time.Millisecond }, "--tick: at least 10ms, got 5ms (0 disables)"},
		{"tick negative", func(f *serveFlags) { f.tick = -time.Second }, "--tick: at least 10ms, got -1s (0 disables)"},
		{"session TTL zero", func(f *serveFlags) { f.sessionTTL = 0 }, "--session-ttl: must be positive, got 0s"},
		{"session TTL negative", func(f *serveFlags) { f.sessionTTL = -time.Hour }, "--session-ttl: must be positive, got -1h0m0s"},
		{"state checkpoint too short", func(f *serveFlags) { f.stateCheckpoint = 500 * time.Millisecond }, "--state-checkpoint: at least 1s, got 500ms"},
		{"out duplicate window too short", func(f *serveFlags) { f.outDuplicateWindow = 100 * time.Millisecond }, "--out-duplicate-window: must be in [1s, 720h0m0s], got 100ms"},
		{"out duplicate window beyond the stream's age", func(f *serveFlags) { f.outDuplicateWindow = 800 * time.Hour }, "--out-duplicate-window: must be in [1s, 720h0m0s], got 800h0m0s"},
		{"partitions", func(f *serveFlags) { f.partitions = 2000 }, "--partitions: must be in [1, 1024], got 2000"},
		{"dedup window", func(f *serveFlags) { f.dedupWindow = -time.Hour }, "--dedup-window: must not be negative"},
		{"NATS TLS cert alone", func(f *serveFlags) { f.natsTLSCert = "c.pem" }, "--nats-tls-cert and --nats-tls-key: give both or neither"},
		{"NATS TLS with --nats-url", func(f *serveFlags) { f.natsTLSCert, f.natsTLSKey, f.natsURL = "c.pem", "k.pem", "nats://127.0.0.1:1" },
			"--nats-tls-cert and --nats-url: TLS files are only for the embedded server"},
		{"memory limit not a size", func(f *serveFlags) { f.memoryLimit = "lots" }, `--memory-limit: "lots" is not a size: want a number and a unit, e.g. 512MiB or 2GiB`},
		{"memory limit too small", func(f *serveFlags) { f.memoryLimit = "100MiB" }, "--memory-limit: at least 256MiB, got 100MiB"},
	} {
		t.Run(tt.name, func(t *testing.T) { checkServeRefuses(t, tt.set, tt.want) })
	}
}

// checkServeRefuses runs serve with valid flags changed by set: it must
// fail with an error starting with want, before it creates the data
// directory.
func checkServeRefuses(t *testing.T, set func(*serveFlags), want string) {
	t.Helper()
	f := serveFlags{dataDir: t.TempDir() + "/data", httpAddr: "127.0.0.1:0", natsAddr: "127.0.0.1:-1",
		fsync: "default", consentDefault: "granted", logFormat: "text", logLevel: "error",
		partitions: 16, dedupWindow: time.Hour, tick: time.Second, sessionTTL: time.Hour}
	set(&f)
	err := runServe(context.Background(), f)
	if err == nil || !strings.HasPrefix(err.Error(), want) {
		t.Fatalf("serve: %v, want %q", err, want)
	}
	if _, statErr := os.Stat(f.dataDir); statErr == nil {
		t.Fatalf("the data directory was created before the flags were checked")
	}
}
