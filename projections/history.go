package projections

import (
	"bytes"
	"fmt"
	"slices"

	"github.com/aurumcdp/aurum/projections/gcr"
	"github.com/aurumcdp/aurum/store"
	"github.com/vmihailenco/msgpack/v5"
)

// HistoryOrderLen is the length of a history entry's order key: its time
// (Unix ms, u64 BE), the log position that caused it (u64 BE) and its
// index among that position's outputs (u32 BE).
const HistoryOrderLen = 8 + 8 + 4

// HistoryRow is one entry of a profile's audience history with the profile
// it was recorded under (the root or a profile merged into it) and its
// order key (AudienceHistoryBefore's cursor form).
type HistoryRow struct {
	HistoryEntry
	Profile []byte
	Order   []byte
}

// HistoryCursor is the position of a history row: its order key and its
// profile (AudienceHistoryBefore's cursor).
func HistoryCursor(row HistoryRow) []byte { return append(bytes.Clone(row.Order), row.Profile...) }

// AudienceHistoryBefore returns up to limit entries of the audience history
// of profiles (a root and the profiles merged into it) below the cursor
// before (HistoryCursor of the last row of the previous page; nil: from
// the newest), newest first by (time, log position, index, profile). It reads the history the apply already keeps (the h/
// keys written with every transition but an erasure's): one bounded
// reverse scan per profile, at most limit+1 entries each, merged.
func (sm *StateMachine) AudienceHistoryBefore(r store.Reader, profiles [][]byte, before []byte, limit int) ([]HistoryRow, error) {
	if limit <= 0 {
		return nil, nil
	}
	if before != nil && len(before) != HistoryOrderLen+16 {
		return nil, fmt.Errorf("projections: audience history: cursor has %d bytes, want %d", len(before), HistoryOrderLen+16)
	}
	var rows []HistoryRow
	for _, id := range profiles {
		p := sm.partitions[gcr.PartitionOf(id, len(sm.partitions))]
		prefix := p.historyPrefix(id)
		upper := store.PrefixEnd(prefix)
		if before != nil {
			order, prof := before[:HistoryOrderLen], before[HistoryOrderLen:]
			upper = append(bytes.Clone(prefix), order...)
			if bytes.Compare(id, prof) < 0 {
				upper = append(upper, 0) // this profile's row at the cursor's order comes after it
			}
		}
		n := 0
		var derr error
		err := r.Scan(prefix, upper, true, func(k, v []byte) bool {
			if len(k) != len(prefix)+HistoryOrderLen {
				derr = fmt.Errorf("key %x: %d bytes after the prefix, want %d", k, len(k)-len(prefix), HistoryOrderLen)
				return false
			}
			var h HistoryEntry
			if derr = msgpack.Unmarshal(v, &h); derr != nil {
				return false
			}
			rows = append(rows, HistoryRow{HistoryEntry: h, Profile: bytes.Clone(id), Order: bytes.Clone(k[len(prefix):])})
			n++
			return n < limit
		})
		if err == nil {
			err = derr
		}
		if err != nil {
			return nil, fmt.Errorf("projections: audience history: %w", err)
		}
	}
	slices.SortFunc(rows, func(a, b HistoryRow) int {
		if c := bytes.Compare(b.Order, a.Order); c != 0 {
			return c
		}
		return bytes.Compare(b.Profile, a.Profile)
	})
	if len(rows) > limit {
		rows = rows[:limit]
	}
	return rows, nil
}
