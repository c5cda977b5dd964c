package engine_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/aurumcdp/aurum/engine"
	"github.com/aurumcdp/aurum/engine/export"
	alog "github.com/aurumcdp/aurum/log"
	"github.com/aurumcdp/aurum/projections/identity"
)

// TestOptionsValidate: each invalid field and relation is refused with an
// *OptionError naming the fields; zero values (the defaults) and valid
// settings pass.
func TestOptionsValidate(t *testing.T) {
	badIdentity := identity.DefaultConfig()
	badIdentity.Priority = []string{"email", "email"}
	for _, tt := range []struct {
		name   string
		opts   engine.Options
		fields string // "" = valid
		reason string
	}{
		{"zero value", engine.Options{}, "", ""},
		{"valid", engine.Options{Partitions: 1024, DedupWindow: time.Hour, MaxBatchBytes: 64 << 10,
			TickPeriod: engine.MinTickPeriod, SessionTTL: time.Minute, NATSTLSCertFile: "c.pem", NATSTLSKeyFile: "k.pem",
			AdminTokenHash: make([]byte, 32), MasterKey: make([]byte, 32)}, "", ""},
		{"ticks disabled", engine.Options{TickPeriod: -1}, "", ""},
		{"external NATS without TLS files", engine.Options{NATSURL: "nats://x:4222"}, "", ""},
		{"partitions negative", engine.Options{Partitions: -1}, "Partitions", "[1, 1024], got -1"},
		{"partitions too many", engine.Options{Partitions: 1025}, "Partitions", "got 1025"},
		{"dedup window negative", engine.Options{DedupWindow: -time.Second}, "DedupWindow", "negative"},
		{"export interval under 1m", engine.Options{Export: export.Options{Dir: "x", Interval: 30 * time.Second}}, "Export", "shorter than 1m0s"},
		{"export keep negative", engine.Options{Export: export.Options{Dir: "x", Keep: -1}}, "Export", "keep -1"},
		{"batch too small", engine.Options{MaxBatchBytes: 1000}, "MaxBatchBytes", "got 1000"},
		{"batch too large", engine.Options{MaxBatchBytes: 5 << 20}, "MaxBatchBytes", "[64 KB, 4 MB]"},
		{"tick too short", engine.Options{TickPeriod: 5 * time.Millisecond}, "TickPeriod", "at least 10ms, got 5ms"},
		{"session TTL negative", engine.Options{SessionTTL: -time.Hour}, "SessionTTL", "must be positive"},
		{"NATS TLS cert alone", engine.Options{NATSTLSCertFile: "c.pem"}, "NATSTLSCertFile NATSTLSKeyFile", "both or neither"},
		{"NATS TLS key alone", engine.Options{NATSTLSKeyFile: "k.pem"}, "NATSTLSCertFile NATSTLSKeyFile", "both or neither"},
		{"NATS TLS with an external deployment", engine.Options{NATSURL: "nats://x:4222", NATSTLSCertFile: "c.pem", NATSTLSKeyFile: "k.pem"},
			"NATSTLSCertFile NATSURL", "embedded server"},
		{"admin token hash short", engine.Options{AdminTokenHash: make([]byte, 16)}, "AdminTokenHash", "got 16"},
		{"master key short", engine.Options{MasterKey: make([]byte, 31)}, "MasterKey", "got 31"},
		{"master key empty but set", engine.Options{MasterKey: []byte{}}, "MasterKey", "got 0"},
		{"replicas on a NATS cluster", engine.Options{Replicas: 3, NATSCluster: &alog.ClusterOptions{ServerName: "n1"}}, "", ""},
		{"replicas on an external deployment", engine.Options{Replicas: 5, NATSURL: "nats://x:4222"}, "", ""},
		{"replicas too many", engine.Options{Replicas: 6, NATSURL: "nats://x:4222"}, "Replicas", "[1, 5], got 6"},
		{"replicas negative", engine.Options{Replicas: -1}, "Replicas", "got -1"},
		{"replicas on a standalone server", engine.Options{Replicas: 2}, "Replicas", "need a NATS cluster"},
		{"NATS cluster and external deployment", engine.Options{NATSCluster: &alog.ClusterOptions{}, NATSURL: "nats://x:4222"},
			"NATSCluster NATSURL", "not both"},
		{"identity invalid", engine.Options{Identity: &badIdentity}, "Identity", "twice"},
		{"memory limit at the minimum", engine.Options{MemoryLimit: engine.MinMemoryLimit}, "", ""},
		{"memory limit under the minimum", engine.Options{MemoryLimit: engine.MinMemoryLimit - 1}, "MemoryLimit", "at least 256 MiB"},
		{"memory limit negative", engine.Options{MemoryLimit: -1}, "MemoryLimit", "got -1 bytes"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.opts.Validate()
			if tt.fields == "" {
				if err != nil {
					t.Fatalf("Validate: %v", err)
				}
				return
			}
			var oe *engine.OptionError
			if !errors.As(err, &oe) {
				t.Fatalf("Validate: %v, want an *OptionError", err)
			}
			if got := strings.Join(oe.Fields, " "); got != tt.fields || !strings.Contains(oe.Reason, tt.reason) {
				t.Fatalf("Validate: fields %q reason %q, want %q with %q", got, oe.Reason, tt.fields, tt.reason)
			}
			if !strings.HasPrefix(err.Error(), "engine: ") {
				t.Fatalf("error %q lacks the package prefix", err)
			}
		})
	}
}
