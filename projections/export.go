package projections

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/aurumcdp/aurum/store"
	"github.com/vmihailenco/msgpack/v5"
)

// The warehouse export's schedule (engine/export, docs/export.md) is
// control state on the log, like destinations and audiences: every node of
// a cluster and every replay applies it at the same position, and it
// survives restarts.

// ControlExportSchedule carries Config: the JSON ExportSchedule in effect
// from this entry on.
const ControlExportSchedule = "export.schedule"

// keyExportSchedule holds the JSON ExportSchedule in effect (absent: the
// node's --export-* flags).
var keyExportSchedule = []byte("meta/exportschedule")

// ExportSchedule is the warehouse export's schedule.
type ExportSchedule struct {
	IntervalMs int64 `json:"interval_ms"` // ≥ MinExportIntervalMs
	Keep       int   `json:"keep"`        // runs kept, ≥ 1
	Personal   bool  `json:"personal"`    // decrypted personal columns in scheduled runs
	Updated    int64 `json:"updated"`     // log time of the record, Unix ms (set by Apply)
}

// MinExportIntervalMs is the shortest schedule interval (1 min).
const MinExportIntervalMs = 60_000

// Validate checks s; errors name the field.
func (s ExportSchedule) Validate() error {
	if s.IntervalMs < MinExportIntervalMs {
		return fmt.Errorf("interval: %dms is shorter than the minimum of 1m", s.IntervalMs)
	}
	if s.Keep < 1 {
		return fmt.Errorf("keep: %d, want at least 1", s.Keep)
	}
	return nil
}

// EncodeExportSchedule returns the Config of an export.schedule record.
func EncodeExportSchedule(s ExportSchedule) ([]byte, error) {
	s.Updated = 0
	b, err := json.Marshal(s)
	if err != nil {
		return nil, fmt.Errorf("projections: encode export schedule: %w", err)
	}
	return b, nil
}

// ExportScheduleOf returns the schedule in effect; ok is false when no
// export.schedule record was applied.
func ExportScheduleOf(r store.Reader) (s ExportSchedule, ok bool, err error) {
	v, err := r.Get(keyExportSchedule)
	if errors.Is(err, store.ErrNotFound) {
		return ExportSchedule{}, false, nil
	}
	if err != nil {
		return ExportSchedule{}, false, fmt.Errorf("projections: export schedule: %w", err)
	}
	if err := json.Unmarshal(v, &s); err != nil {
		return ExportSchedule{}, false, fmt.Errorf("projections: export schedule: %w", err)
	}
	return s, true, nil
}

// applyExportSchedule stores the schedule of c; an invalid one is ignored
// alike by every replay.
func applyExportSchedule(rw store.ReadWriter, c *Control) error {
	var s ExportSchedule
	dec := json.NewDecoder(bytes.NewReader(c.Config))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&s); err != nil || s.Validate() != nil {
		return nil
	}
	s.Updated = c.Time
	b, err := json.Marshal(s)
	if err != nil {
		return err
	}
	return rw.Set(keyExportSchedule, b)
}

// EachAudienceHistory calls fn with every audience history row of every
// profile (partition by partition, then profile id, time and log
// position), the profile the row was recorded for and the row.
func (sm *StateMachine) EachAudienceHistory(r store.Reader, fn func(profile []byte, h HistoryEntry) error) error {
	for _, p := range sm.partitions {
		prefix := p.key([]byte("h/"))
		var ferr error
		err := r.Scan(prefix, store.PrefixEnd(prefix), false, func(k, v []byte) bool {
			if len(k) < len(prefix)+16 {
				return true
			}
			var h HistoryEntry
			if ferr = msgpack.Unmarshal(v, &h); ferr != nil {
				ferr = fmt.Errorf("projections: audience history: %w", ferr)
				return false
			}
			ferr = fn(k[len(prefix):len(prefix)+16], h)
			return ferr == nil
		})
		if err == nil {
			err = ferr
		}
		if err != nil {
			return err
		}
	}
	return nil
}
