package engine

import (
	"fmt"
	"strings"
	"time"

	alog "github.com/aurumcdp/aurum/log"
)

// MinTickPeriod is the shortest TickPeriod: each tick is a log entry.
const MinTickPeriod = 10 * time.Millisecond

// An OptionError is an invalid Options field, or an invalid relation
// between fields. Fields names them as in Options (e.g. "TickPeriod"), so
// that a caller can name its own setting instead (a CLI flag).
type OptionError struct {
	Fields []string
	Reason string
	Err    error // the cause, if any (Reason is then its text)
}

func (e *OptionError) Error() string {
	return "engine: " + strings.Join(e.Fields, " and ") + ": " + e.Reason
}

func (e *OptionError) Unwrap() error { return e.Err }

func optionErr(reason string, fields ...string) error {
	return &OptionError{Fields: fields, Reason: reason}
}

// Validate checks the fields of o and the relations between them, as Open
// does before it touches anything; a zero field stands for its default
// (a negative TickPeriod disables ticks).
// Errors are *OptionError.
func (o *Options) Validate() error {
	if err := o.Export.Validate(); err != nil {
		return optionErr(err.Error(), "Export")
	}
	if o.Partitions != 0 && (o.Partitions < 1 || o.Partitions > 1024) {
		return optionErr(fmt.Sprintf("must be in [1, 1024], got %d", o.Partitions), "Partitions")
	}
	if o.DedupWindow < 0 {
		return optionErr(fmt.Sprintf("must not be negative, got %v", o.DedupWindow), "DedupWindow")
	}
	if o.MaxBatchBytes != 0 && (o.MaxBatchBytes < 64<<10 || o.MaxBatchBytes > 4<<20) {
		return optionErr(fmt.Sprintf("must be in [64 KB, 4 MB], got %d", o.MaxBatchBytes), "MaxBatchBytes")
	}
	if o.TickPeriod > 0 && o.TickPeriod < MinTickPeriod {
		return optionErr(fmt.Sprintf("at least %v, got %v", MinTickPeriod, o.TickPeriod), "TickPeriod")
	}
	if o.ErasureRetry < 0 {
		return optionErr(fmt.Sprintf("must not be negative, got %v", o.ErasureRetry), "ErasureRetry")
	}
	if err := validMemoryLimit(o.MemoryLimit); err != nil {
		return optionErr(err.Error(), "MemoryLimit")
	}
	if o.SessionTTL < 0 {
		return optionErr(fmt.Sprintf("must be positive, got %v", o.SessionTTL), "SessionTTL")
	}
	if (o.NATSTLSCertFile == "") != (o.NATSTLSKeyFile == "") {
		return optionErr("give both or neither", "NATSTLSCertFile", "NATSTLSKeyFile")
	}
	if o.NATSTLSCertFile != "" && o.NATSURL != "" {
		return optionErr("TLS files are only for the embedded server; an external deployment decides its own TLS", "NATSTLSCertFile", "NATSURL")
	}
	if o.Replicas < 0 || o.Replicas > alog.MaxReplicas {
		return optionErr(fmt.Sprintf("must be in [1, %d], got %d", alog.MaxReplicas, o.Replicas), "Replicas")
	}
	if o.NATSCluster != nil && o.NATSURL != "" {
		return optionErr("a NATS cluster of embedded servers or an external deployment, not both", "NATSCluster", "NATSURL")
	}
	if o.Replicas > 1 && o.NATSCluster == nil && o.NATSURL == "" {
		return optionErr(fmt.Sprintf("%d replicas need a NATS cluster (NATSCluster or NATSURL); a standalone embedded server keeps one copy", o.Replicas), "Replicas")
	}
	if len(o.AdminTokenHash) != 0 && len(o.AdminTokenHash) != 32 {
		return optionErr(fmt.Sprintf("must be 32 bytes (SHA-256), got %d", len(o.AdminTokenHash)), "AdminTokenHash")
	}
	if o.MasterKey != nil && len(o.MasterKey) != 32 {
		return optionErr(fmt.Sprintf("must be 32 bytes, got %d", len(o.MasterKey)), "MasterKey")
	}
	if o.Identity != nil {
		if err := o.Identity.Validate(); err != nil {
			return &OptionError{Fields: []string{"Identity"}, Reason: err.Error(), Err: err}
		}
	}
	return nil
}

// validMemoryLimit checks a memory limit: 0 (none) or at least
// MinMemoryLimit.
func validMemoryLimit(v int64) error {
	if v != 0 && v < MinMemoryLimit {
		return fmt.Errorf("at least %d MiB (0: none), got %d bytes", MinMemoryLimit>>20, v)
	}
	return nil
}
