package engine

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"time"
)

// Stats history (issue #14): the console's dashboard charts events per second
// and audience sizes over the last hour. The node samples its own counters
// every HistoryInterval into a bounded ring (HistorySamples long), so the
// charts do not depend on how long a browser tab has been open. The history
// is not state (no projection of the log): the node appends each sample to
// DataDir/stats-history.jsonl and loads the samples still inside the window
// at start, so a restart keeps the charts (the profile and merge counts, like
// /metrics, count from the process's start, so they drop at a restart). A
// file it cannot read or write costs the history, never the node: it logs
// and goes on in memory.

// historyFileName is the history's file in DataDir.
const historyFileName = "stats-history.jsonl"

// StatsSample is one point of the history.
type StatsSample struct {
	Time time.Time `json:"time"`
	// EventsPerSecond: events applied to the projections per second since
	// the previous sample.
	EventsPerSecond float64 `json:"events_per_second"`
	// IngestedPerSecond: events accepted by ingest per second since the
	// previous sample.
	IngestedPerSecond float64 `json:"ingested_per_second"`
	// Profiles: profiles this process created minus those it merged away,
	// since it started (the engine's counters, as on /metrics).
	Profiles int64 `json:"profiles"`
	// Merges: profile merges this process applied since it started.
	Merges int64 `json:"merges"`
	// Audiences: each audience's size at Time.
	Audiences map[string]int64 `json:"audiences"`
}

// statsRing is a fixed-capacity ring of samples, oldest first; safe for
// concurrent use.
type statsRing struct {
	mu    sync.Mutex
	buf   []StatsSample
	next  int
	count int
}

func newStatsRing(capacity int) *statsRing {
	if capacity < 1 {
		capacity = 1
	}
	return &statsRing{buf: make([]StatsSample, capacity)}
}

func (r *statsRing) add(s StatsSample) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.buf[r.next] = s
	r.next = (r.next + 1) % len(r.buf)
	if r.count < len(r.buf) {
		r.count++
	}
}

// samples returns a copy, oldest first.
func (r *statsRing) samples() []StatsSample {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]StatsSample, 0, r.count)
	start := (r.next - r.count + len(r.buf)) % len(r.buf)
	for i := 0; i < r.count; i++ {
		out = append(out, r.buf[(start+i)%len(r.buf)])
	}
	return out
}

// rate is (cur-prev)/seconds, 0 for a first sample, a counter reset or no
// elapsed time.
func rate(prev, cur float64, elapsed time.Duration) float64 {
	if elapsed <= 0 || cur < prev {
		return 0
	}
	return (cur - prev) / elapsed.Seconds()
}

// StatsHistory returns the sampling interval and the samples of the last
// HistoryInterval*HistorySamples, oldest first.
func (e *Engine) StatsHistory() (time.Duration, []StatsSample) {
	return e.opts.HistoryInterval, e.history.samples()
}

// counters are the sums of the engine's counters a sample is made of.
type counters struct {
	applied, ingested, created, merges float64
}

// counterSums sums the applied, ingested, created and merged counters in
// the engine's registry (every label).
func (e *Engine) counterSums() (counters, error) {
	var c counters
	fams, err := e.opts.Registry.Gather()
	if err != nil {
		return c, fmt.Errorf("gather metrics: %w", err)
	}
	for _, f := range fams {
		var dst *float64
		switch f.GetName() {
		case "aurum_apply_events_total":
			dst = &c.applied
		case "aurum_ingest_events_total":
			dst = &c.ingested
		case "aurum_identity_profiles_created_total":
			dst = &c.created
		case "aurum_identity_merges_total":
			dst = &c.merges
		default:
			continue
		}
		for _, m := range f.GetMetric() {
			if v := m.GetCounter(); v != nil {
				*dst += v.GetValue()
			}
		}
	}
	return c, nil
}

// sample makes the sample at now from the counters' change since prev
// (taken at prevAt) and the audiences' sizes.
func sample(now time.Time, prev, cur counters, prevAt time.Time, sizes map[string]int64) StatsSample {
	elapsed := now.Sub(prevAt)
	return StatsSample{Time: now.UTC().Truncate(time.Millisecond), Audiences: sizes,
		EventsPerSecond:   rate(prev.applied, cur.applied, elapsed),
		IngestedPerSecond: rate(prev.ingested, cur.ingested, elapsed),
		Profiles:          int64(cur.created - cur.merges),
		Merges:            int64(cur.merges)}
}

// historyFile keeps the ring on disk: one JSON sample per line, appended as
// sampled; when the file holds twice the ring's capacity it is rewritten
// with the ring's samples (a new file renamed over the old one).
type historyFile struct {
	path     string
	f        *os.File
	lines    int
	capacity int
	log      *slog.Logger
}

// openHistoryFile loads the samples of path taken at or after since into
// ring (at most its capacity, the newest) and opens path to append to. A
// line that does not parse is skipped and logged.
func openHistoryFile(path string, ring *statsRing, since time.Time, log *slog.Logger) (*historyFile, error) {
	h := &historyFile{path: path, capacity: len(ring.buf), log: log}
	f, err := os.Open(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
	case err != nil:
		return nil, fmt.Errorf("stats history: %w", err)
	default:
		sc := bufio.NewScanner(f)
		sc.Buffer(make([]byte, 64<<10), 16<<20)
		bad := 0
		for sc.Scan() {
			h.lines++
			var s StatsSample
			if err := json.Unmarshal(sc.Bytes(), &s); err != nil || s.Time.IsZero() {
				bad++
				continue
			}
			if !s.Time.Before(since) {
				ring.add(s)
			}
		}
		err := sc.Err()
		f.Close()
		if err != nil {
			return nil, fmt.Errorf("stats history: read %s: %w", path, err)
		}
		if bad > 0 {
			log.Warn("engine: stats history: lines skipped", "path", path, "lines", bad)
		}
	}
	if h.f, err = os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600); err != nil {
		return nil, fmt.Errorf("stats history: %w", err)
	}
	return h, nil
}

// append writes s, and rewrites the file from ring (which holds s) once it
// has twice the ring's capacity in lines.
func (h *historyFile) append(s StatsSample, ring *statsRing) error {
	line, err := json.Marshal(s)
	if err != nil {
		return fmt.Errorf("stats history: %w", err)
	}
	if _, err := h.f.Write(append(line, '\n')); err != nil {
		return fmt.Errorf("stats history: write %s: %w", h.path, err)
	}
	h.lines++
	if h.lines < 2*h.capacity {
		return nil
	}
	return h.rewrite(ring.samples())
}

func (h *historyFile) rewrite(samples []StatsSample) error {
	tmp := h.path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return fmt.Errorf("stats history: %w", err)
	}
	w := bufio.NewWriter(f)
	enc := json.NewEncoder(w)
	for _, s := range samples {
		if err = enc.Encode(s); err != nil {
			break
		}
	}
	if err == nil {
		err = w.Flush()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, h.path)
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("stats history: rewrite %s: %w", h.path, err)
	}
	h.f.Close()
	if h.f, err = os.OpenFile(h.path, os.O_WRONLY|os.O_APPEND, 0o600); err != nil {
		return fmt.Errorf("stats history: %w", err)
	}
	h.lines = len(samples)
	return nil
}

func (h *historyFile) close() {
	if h != nil && h.f != nil {
		h.f.Close()
	}
}

// historyLoop samples every HistoryInterval until the engine stops (its
// context is the engine's: Close ends it).
func (e *Engine) historyLoop(ctx context.Context) error {
	window := e.opts.HistoryInterval * time.Duration(e.opts.HistorySamples)
	file, err := openHistoryFile(filepath.Join(e.opts.DataDir, historyFileName), e.history, time.Now().Add(-window), e.opts.Logger)
	if err != nil {
		e.opts.Logger.Warn("engine: stats history kept in memory only", "err", err)
	}
	defer file.close()
	t := time.NewTicker(e.opts.HistoryInterval)
	defer t.Stop()
	prev, err := e.counterSums()
	if err != nil {
		e.opts.Logger.Warn("engine: stats history", "err", err)
	}
	prevAt := time.Now()
	for {
		select {
		case <-ctx.Done():
			return nil
		case now := <-t.C:
			cur, err := e.counterSums()
			if err != nil {
				e.opts.Logger.Warn("engine: stats history", "err", err)
				continue
			}
			sizes := map[string]int64{}
			if list, err := e.Reader().Audiences(); err == nil {
				for _, a := range list {
					sizes[a.Name] = a.Size
				}
			} else {
				e.opts.Logger.Warn("engine: stats history: audiences", "err", err)
			}
			smp := sample(now, prev, cur, prevAt, sizes)
			e.history.add(smp)
			if file != nil {
				if err := file.append(smp, e.history); err != nil {
					e.opts.Logger.Warn("engine: stats history kept in memory only", "err", err)
					file.close()
					file = nil
				}
			}
			prev, prevAt = cur, now
		}
	}
}
