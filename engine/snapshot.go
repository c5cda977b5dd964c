package engine

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"time"

	"github.com/aurumcdp/aurum/engine/base"
	"github.com/aurumcdp/aurum/projections"
	"github.com/aurumcdp/aurum/store"
)

// SnapshotInfo describes a snapshot of the projections.
type SnapshotInfo struct {
	Seq     uint64    `json:"seq"` // the log position it holds
	Path    string    `json:"path"`
	Created time.Time `json:"created"`
}

func (e *Engine) snapshotsDir() string { return filepath.Join(e.opts.DataDir, "snapshots") }

// CreateSnapshot writes a consistent copy of the projections with their log
// position to DATA_DIR/snapshots/<seq>, keeping the newest
// Options.SnapshotsKept. A replay (or a new node) can start from it instead
// of the first log entry.
func (e *Engine) CreateSnapshot() (SnapshotInfo, error) {
	e.stateMu.RLock()
	defer e.stateMu.RUnlock()
	if err := os.MkdirAll(e.snapshotsDir(), 0o700); err != nil {
		return SnapshotInfo{}, err
	}
	tmp := filepath.Join(e.snapshotsDir(), fmt.Sprintf(".tmp-%d", time.Now().UnixNano()))
	if err := e.state.Checkpoint(tmp); err != nil {
		return SnapshotInfo{}, err
	}
	db, err := store.Open(tmp, e.mem.stateStore(e.opts.Logger))
	if err != nil {
		os.RemoveAll(tmp)
		return SnapshotInfo{}, err
	}
	seq, err := projections.Applied(db)
	db.Close()
	if err != nil {
		os.RemoveAll(tmp)
		return SnapshotInfo{}, err
	}
	final := filepath.Join(e.snapshotsDir(), strconv.FormatUint(seq, 10))
	if _, err := os.Stat(final); err == nil {
		os.RemoveAll(tmp) // nothing applied since the last one
	} else if err := os.Rename(tmp, final); err != nil {
		os.RemoveAll(tmp)
		return SnapshotInfo{}, err
	}
	if err := e.pruneSnapshots(); err != nil {
		e.opts.Logger.Warn("engine: prune snapshots", "err", err)
	}
	return SnapshotInfo{Seq: seq, Path: final, Created: time.Now().UTC()}, nil
}

// Snapshots lists the snapshots, oldest first.
func (e *Engine) Snapshots() ([]SnapshotInfo, error) {
	ents, err := os.ReadDir(e.snapshotsDir())
	if os.IsNotExist(err) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var out []SnapshotInfo
	for _, d := range ents {
		seq, err := strconv.ParseUint(d.Name(), 10, 64)
		if err != nil || !d.IsDir() {
			continue
		}
		info, _ := d.Info()
		out = append(out, SnapshotInfo{Seq: seq, Path: filepath.Join(e.snapshotsDir(), d.Name()), Created: info.ModTime().UTC()})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Seq < out[j].Seq })
	return out, nil
}

func (e *Engine) pruneSnapshots() error {
	all, err := e.Snapshots()
	if err != nil {
		return err
	}
	for len(all) > e.opts.SnapshotsKept {
		if err := os.RemoveAll(all[0].Path); err != nil {
			return err
		}
		all = all[1:]
	}
	return nil
}

// pickSnapshot returns the snapshot directory a replay starts from ("" for
// the start of the log).
func (e *Engine) pickSnapshot(from string) (string, error) {
	if from == "" || from == "start" {
		return "", nil
	}
	all, err := e.Snapshots()
	if err != nil {
		return "", err
	}
	limit := ^uint64(0)
	switch {
	case from == "snapshot":
	default:
		if seq, err := strconv.ParseUint(from, 10, 64); err == nil {
			limit = seq
			break
		}
		t, err := time.Parse(time.RFC3339, from)
		if err != nil {
			return "", fmt.Errorf("%w: from %q: want start, snapshot, a log sequence or an RFC 3339 time", base.ErrInvalid, from)
		}
		// The latest snapshot whose log clock is at or before t.
		for i := len(all) - 1; i >= 0; i-- {
			db, err := store.Open(all[i].Path, e.mem.stateStore(e.opts.Logger))
			if err != nil {
				return "", err
			}
			clock, err := projections.LogClock(db)
			db.Close()
			if err != nil {
				return "", err
			}
			if clock <= t.UnixMilli() {
				return all[i].Path, nil
			}
		}
		return "", ErrNoSnapshot
	}
	for i := len(all) - 1; i >= 0; i-- {
		if all[i].Seq <= limit {
			return all[i].Path, nil
		}
	}
	return "", ErrNoSnapshot
}

// copyDir copies a snapshot directory (flat: Pebble's files) to dst.
func copyDir(src, dst string) error {
	if err := os.MkdirAll(dst, 0o700); err != nil {
		return err
	}
	ents, err := os.ReadDir(src)
	if err != nil {
		return err
	}
	for _, d := range ents {
		if d.IsDir() {
			if err := copyDir(filepath.Join(src, d.Name()), filepath.Join(dst, d.Name())); err != nil {
				return err
			}
			continue
		}
		in, err := os.Open(filepath.Join(src, d.Name()))
		if err != nil {
			return err
		}
		out, err := os.Create(filepath.Join(dst, d.Name()))
		if err != nil {
			in.Close()
			return err
		}
		_, err = io.Copy(out, in)
		in.Close()
		if cerr := out.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return err
		}
	}
	return nil
}
