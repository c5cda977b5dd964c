package engine

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"sync"
	"time"

	"github.com/aurumcdp/aurum/engine/base"
	"github.com/aurumcdp/aurum/projections"
	"github.com/aurumcdp/aurum/store"
)

// Errors of rebuilds and snapshots.
var (
	ErrBusy       = errors.New("engine: a replay is already running")
	ErrNoSnapshot = errors.New("engine: no snapshot at or before the requested position")
)

// RebuildOptions choose where a replay starts and whether it swaps.
type RebuildOptions struct {
	// From is "start" (the first log entry), "snapshot" (the latest
	// snapshot), a log sequence or an RFC 3339 time (the latest snapshot
	// at or before it). Default "start".
	From string `json:"from"`
	// DryRun rebuilds and reports what would differ, without swapping.
	DryRun bool `json:"dry_run"`
	// Projections limits the swap (and a dry run's comparison) to these
	// projections (projections.ProjectionNames: "gcr", "audiences"); the
	// others keep their live state. Empty: all.
	Projections []string `json:"projections,omitempty"`
}

// RebuildStatus reports a replay's progress and outcome.
type RebuildStatus struct {
	Status    string       `json:"status"` // idle, running, swapping, done, failed
	DryRun    bool         `json:"dry_run"`
	From      uint64       `json:"from"`          // first sequence replayed
	Applied   uint64       `json:"applied"`       // last sequence applied by the replay
	Target    uint64       `json:"target"`        // the live node's applied sequence
	Rate      float64      `json:"entries_per_s"` // log entries replayed per second
	ETA       float64      `json:"eta_s"`         // 0 until there is a rate
	Started   time.Time    `json:"started"`
	Finished  time.Time    `json:"finished,omitzero"`
	Error     string       `json:"error,omitempty"`
	Diff      *RebuildDiff `json:"diff,omitempty"`
	Discarded int          `json:"outputs_not_re_emitted"` // outputs the replay derived but did not publish
}

// RebuildDiff is what a dry run found different between the rebuilt and
// the live projections at the same log position.
type RebuildDiff struct {
	Seq             uint64   `json:"seq"`
	ProfilesChanged int      `json:"profiles_changed"`
	KeysChanged     int      `json:"keys_changed"`
	WouldEnter      int      `json:"transitions_would_enter"`
	WouldExit       int      `json:"transitions_would_exit"`
	Partitions      []int    `json:"partitions_differing"`
	Examples        []string `json:"examples,omitempty"`
}

// rebuilder runs at most one replay at a time beside the live state.
type rebuilder struct {
	mu     sync.Mutex
	status RebuildStatus
	cancel context.CancelFunc
}

func (e *Engine) rebuildDir() string { return filepath.Join(e.opts.DataDir, "state-rebuild") }

// StartRebuild starts a replay of the log into a fresh set of projections
// beside the live one, which keeps serving. When the replay has caught up
// with the live state it swaps them atomically (or, with DryRun, reports
// the differences and discards it). Outputs the replay derives are never
// published: they were published by the live state already, or (for
// changed rules) are the backfill's business after the swap.
func (e *Engine) StartRebuild(opts RebuildOptions) error {
	for _, p := range opts.Projections {
		if !slices.Contains(projections.ProjectionNames(), p) {
			return fmt.Errorf("%w: projection %q: want one of %v", base.ErrInvalid, p, projections.ProjectionNames())
		}
	}
	e.rebuild.mu.Lock()
	defer e.rebuild.mu.Unlock()
	if e.rebuild.status.Status == "running" || e.rebuild.status.Status == "swapping" {
		return ErrBusy
	}
	snap, err := e.pickSnapshot(opts.From)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(e.ctx)
	e.rebuild.cancel = cancel
	e.rebuild.status = RebuildStatus{Status: "running", DryRun: opts.DryRun, Started: time.Now(), Target: e.AppliedSeq()}
	e.goRun("rebuild", func(context.Context) error {
		defer cancel()
		err := e.runRebuild(ctx, opts, snap)
		e.rebuild.mu.Lock()
		defer e.rebuild.mu.Unlock()
		e.rebuild.status.Finished = time.Now()
		if err != nil {
			e.rebuild.status.Status, e.rebuild.status.Error = "failed", err.Error()
			e.opts.Logger.Error("engine: replay failed", "err", err)
		} else {
			e.rebuild.status.Status = "done"
			e.opts.Logger.Info("engine: replay done", "applied", e.rebuild.status.Applied, "dry_run", opts.DryRun)
		}
		return nil // a failed replay leaves the live state alone
	})
	return nil
}

// RebuildStatus returns the current or last replay's status.
func (e *Engine) RebuildStatus() RebuildStatus {
	e.rebuild.mu.Lock()
	defer e.rebuild.mu.Unlock()
	st := e.rebuild.status
	if st.Status == "" {
		st.Status = "idle"
	}
	if st.Diff != nil {
		d := *st.Diff
		st.Diff = &d
	}
	return st
}

func (e *Engine) progress(fn func(*RebuildStatus)) {
	e.rebuild.mu.Lock()
	defer e.rebuild.mu.Unlock()
	fn(&e.rebuild.status)
}

func (e *Engine) runRebuild(ctx context.Context, opts RebuildOptions, snapDir string) error {
	dir := e.rebuildDir()
	if err := os.RemoveAll(dir); err != nil {
		return err
	}
	if snapDir != "" {
		if err := copyDir(snapDir, dir); err != nil {
			return fmt.Errorf("engine: replay from snapshot: %w", err)
		}
	}
	// No write-ahead log: the directory is deleted if the process dies
	// before the swap, and flushed before it.
	sopts := e.mem.stateStore(e.opts.Logger)
	sopts.NoWAL = true
	db, err := store.Open(dir, sopts)
	if err != nil {
		return err
	}
	closed := false
	defer func() {
		if !closed {
			db.Close()
			os.RemoveAll(dir)
		}
	}()
	po := newPreOpener(e.keys)
	sm, err := openReplayStateMachine(db, e.opts.Partitions, e.opts.DedupWindow, e.keys, e.mem, po)
	if err != nil {
		return err
	}
	if _, err := checkPartitions(db, e.opts.Partitions); err != nil {
		return err
	}
	from, err := projections.Applied(db)
	if err != nil {
		return err
	}
	e.progress(func(s *RebuildStatus) { s.From = from + 1; s.Applied = from })
	r, err := e.log.NewReader(from + 1)
	if err != nil {
		return err
	}
	defer r.Close()
	f := startFetcher(ctx, r, e.keys, e.mem.FetchAhead)
	defer f.stop() // before r.Close: the fetch stage owns r until then
	applied, discarded := from, 0
	start := time.Now()
	var lastReport time.Time // of progress: at most every 50 ms
	g := newGroup(db, sm)
	defer g.close()
	report := func(applied, target uint64) {
		e.progress(func(s *RebuildStatus) {
			s.Applied, s.Target, s.Discarded = applied, target, discarded
			if secs := time.Since(start).Seconds(); secs > 0 {
				s.Rate = float64(applied-from) / secs
				if s.Rate > 0 && target > applied {
					s.ETA = float64(target-applied) / s.Rate
				} else {
					s.ETA = 0
				}
			}
		})
	}
	// apply applies a group of the entries up to target (the live state
	// applied them: the log holds them).
	apply := func(ctx context.Context, target uint64) error {
		// Progress moves with each entry added to the group, not only at
		// its commit: a group holds up to ApplyGroupEntries entries, and
		// a progress bar (and an operator watching it) should not stand
		// still for a whole group. Applied may thus be ahead of what is
		// committed; a crash throws state-rebuild/ away in any case.
		added := func(seq uint64) {
			if time.Since(lastReport) > 50*time.Millisecond {
				report(seq, target)
				lastReport = time.Now()
			}
		}
		if err := readGroup(ctx, f, po, g, target, e.opts.ApplyGroupEntries, e.opts.ApplyGroupBytes, added); err != nil {
			return err
		}
		done, err := g.commit()
		if err != nil {
			return err
		}
		n, err := drainTo(db, e.opts.Partitions, nil) // never re-emitted
		if err != nil {
			return err
		}
		applied, discarded = done[len(done)-1].seq, discarded+n
		return nil
	}
	// Catch up without holding the live state; close the gap under the lock.
	const gap = 64
	for {
		target := e.AppliedSeq()
		if applied+gap >= target {
			break
		}
		if err := apply(ctx, target); err != nil {
			return err
		}
		if time.Since(lastReport) > 50*time.Millisecond {
			report(applied, target)
			lastReport = time.Now()
		}
	}
	e.progress(func(s *RebuildStatus) { s.Status = "swapping" })
	e.stateMu.Lock()
	locked := true
	defer func() {
		if locked {
			e.stateMu.Unlock()
		}
	}()
	// The live apply loop is parked: the live state's position does not
	// move. Read it from the store: the loop announces a commit
	// (AppliedSeq) only after it let go of the lock, so the announced
	// position may lag the committed one, and a swap at it would miss the
	// entries in between (the loop goes on after them: TestReplaySwapsUnderLoad).
	target, err := projections.Applied(e.state)
	if err != nil {
		return fmt.Errorf("engine: the live state's position: %w", err)
	}
	for applied < target {
		if err := apply(ctx, target); err != nil {
			return err
		}
	}
	report(applied, target)
	if opts.DryRun {
		// Compare at the same position: a snapshot of the live state taken
		// under the lock, then the lock is released for the comparison.
		snap := e.state.NewSnapshot()
		e.stateMu.Unlock()
		locked = false
		diff, err := diffStates(snap, db, opts.Projections, e.opts.Partitions)
		snap.Close()
		if err != nil {
			return err
		}
		diff.Seq = target
		e.progress(func(s *RebuildStatus) { s.Diff = &diff })
		return nil
	}
	// Carry over from the live state what the rebuild must not replace:
	// the outboxes (outputs decided but not yet published) and, when only
	// some projections are rebuilt, the ranges of the others.
	keep := projections.OutboxPrefixes(e.opts.Partitions)
	if len(opts.Projections) > 0 {
		for _, name := range projections.ProjectionNames() {
			if !slices.Contains(opts.Projections, name) {
				keep = append(keep, projections.ProjectionPrefixes(name, e.opts.Partitions)...)
			}
		}
	}
	if err := copyRanges(e.state, db, keep); err != nil {
		return fmt.Errorf("engine: carry over live ranges: %w", err)
	}
	sm.ResetCache()   // the carried-over ranges were written behind its back
	sm.ResetFilters() // the keychain's among them, when only the audiences were rebuilt
	// Swap: the rebuilt store becomes the live one. A crash between the
	// renames is finished by recoverSwap on the next Open. The store has
	// no write-ahead log: flush it before it is closed and marked complete.
	if err := db.Flush(); err != nil {
		return fmt.Errorf("engine: flush the rebuilt state: %w", err)
	}
	if err := db.Close(); err != nil {
		return err
	}
	closed = true
	if err := os.WriteFile(filepath.Join(dir, "COMPLETE"), []byte(strconv.FormatUint(target, 10)), 0o600); err != nil {
		return err
	}
	live := filepath.Join(e.opts.DataDir, "state")
	if err := e.state.Close(); err != nil {
		return err
	}
	if err := os.Rename(live, live+".old"); err != nil {
		return err
	}
	if err := os.Rename(dir, live); err != nil {
		return err
	}
	_ = os.Remove(filepath.Join(live, "COMPLETE"))
	ndb, err := store.Open(live, e.liveStateOptions())
	if err != nil {
		return fmt.Errorf("engine: reopen after swap: %w", err)
	}
	e.state, e.sm = ndb, sm
	if err := os.RemoveAll(live + ".old"); err != nil {
		e.opts.Logger.Warn("engine: remove the replaced state", "err", err)
	}
	e.opts.Logger.Info("engine: replay swapped in", "applied", target)
	return nil
}

// recoverSwap finishes or undoes a swap a crash interrupted, and removes an
// unfinished replay's directory.
func recoverSwap(dataDir string) error {
	live := filepath.Join(dataDir, "state")
	rebuilt := filepath.Join(dataDir, "state-rebuild")
	_, errLive := os.Stat(live)
	_, errDone := os.Stat(filepath.Join(rebuilt, "COMPLETE"))
	switch {
	case errors.Is(errLive, os.ErrNotExist) && errDone == nil: // crashed between the renames
		if err := os.Rename(rebuilt, live); err != nil {
			return err
		}
		_ = os.Remove(filepath.Join(live, "COMPLETE"))
	case errors.Is(errLive, os.ErrNotExist):
		if _, err := os.Stat(live + ".old"); err == nil {
			if err := os.Rename(live+".old", live); err != nil {
				return err
			}
		}
	}
	if err := os.RemoveAll(rebuilt); err != nil {
		return err
	}
	return os.RemoveAll(live + ".old")
}

// diffStates compares two projection states key by key (outboxes aside).
func diffStates(live, rebuilt store.Reader, only []string, partitions int) (RebuildDiff, error) {
	var d RebuildDiff
	var ranges [][]byte
	for _, name := range only {
		ranges = append(ranges, projections.ProjectionPrefixes(name, partitions)...)
	}
	collect := func(r store.Reader) (map[string][]byte, error) {
		m := map[string][]byte{}
		err := r.Scan(nil, nil, false, func(k, v []byte) bool {
			if projections.IsOutboxKey(k) {
				return true
			}
			if len(ranges) > 0 && !slices.ContainsFunc(ranges, func(p []byte) bool { return bytes.HasPrefix(k, p) }) {
				return true
			}
			m[string(k)] = append([]byte(nil), v...)
			return true
		})
		return m, err
	}
	a, err := collect(live)
	if err != nil {
		return d, err
	}
	b, err := collect(rebuilt)
	if err != nil {
		return d, err
	}
	parts := map[int]bool{}
	profiles := map[string]bool{}
	note := func(k string) {
		d.KeysChanged++
		if len(d.Examples) < 10 {
			d.Examples = append(d.Examples, fmt.Sprintf("%q", k))
		}
		if p, kind, id, ok := projections.SplitPartitionKey([]byte(k)); ok {
			parts[p] = true
			if kind == 'g' {
				profiles[string(id)] = true
			}
			if kind == 'm' {
				if _, inLive := a[k]; inLive {
					d.WouldExit++
				} else {
					d.WouldEnter++
				}
			}
		}
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || string(w) != string(v) {
			note(k)
		}
	}
	for k := range b {
		if _, ok := a[k]; !ok {
			note(k)
		}
	}
	d.ProfilesChanged = len(profiles)
	for p := range parts {
		d.Partitions = append(d.Partitions, p)
	}
	sort.Ints(d.Partitions)
	sort.Strings(d.Examples)
	return d, nil
}

// copyRanges replaces the given key ranges of dst with those of src.
func copyRanges(src store.Reader, dst *store.DB, prefixes [][]byte) error {
	for _, p := range prefixes {
		if err := dst.DeleteRange(p, store.PrefixEnd(p), false); err != nil {
			return err
		}
		b := dst.NewBatch()
		n := 0
		var werr error
		err := src.Scan(p, store.PrefixEnd(p), false, func(k, v []byte) bool {
			if werr = b.Set(k, v); werr != nil {
				return false
			}
			if n++; n%4096 == 0 {
				if werr = dst.Commit(b, false); werr != nil {
					return false
				}
				b.Close()
				b = dst.NewBatch()
			}
			return true
		})
		if err == nil {
			err = werr
		}
		if err == nil {
			err = dst.Commit(b, false)
		}
		b.Close()
		if err != nil {
			return err
		}
	}
	return nil
}
