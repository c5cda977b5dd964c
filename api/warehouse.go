package api

import (
	"errors"
	"net/http"
	"path/filepath"
	"time"

	"github.com/aurumcdp/aurum/engine/export"
)

// The warehouse export (engine/export, docs/export.md): the runs written,
// a run now, and the schedule in effect (set by serve's --export-* flags).

// exportRun is one run in GET /v1/exports and POST /v1/exports.
type exportRun struct {
	ID         string            `json:"id"`
	AppliedSeq uint64            `json:"applied_seq"`
	Created    time.Time         `json:"created"`
	LogClock   time.Time         `json:"log_clock"`
	Personal   bool              `json:"personal"`
	Directory  string            `json:"directory"`
	Files      []export.FileInfo `json:"files"`
}

func newExportRun(dir string, m export.Manifest) exportRun {
	files := m.Files
	if files == nil {
		files = []export.FileInfo{}
	}
	return exportRun{ID: m.Run, AppliedSeq: m.AppliedSeq, Created: m.Created, LogClock: m.LogClock,
		Personal: m.Personal, Directory: filepath.Join(dir, m.Run), Files: files}
}

// exportSchedule is GET /v1/exports/schedule.
type exportSchedule struct {
	Directory       string  `json:"directory"`
	Configured      bool    `json:"configured"`
	Interval        string  `json:"interval"` // Go duration; "0s": no schedule
	IntervalSeconds float64 `json:"interval_seconds"`
	Keep            int     `json:"keep"` // 0: all runs kept
	Personal        bool    `json:"personal"`
}

// exportsOff answers 503 when the node has no export directory; it
// reports whether it did.
func (s *Server) exportsOff(w http.ResponseWriter) bool {
	if s.svc.Exports == nil || s.svc.Exports.Schedule().Dir == "" {
		writeError(w, http.StatusServiceUnavailable, "", "no export directory is configured: start serve with --export-dir (docs/export.md)")
		return true
	}
	return false
}

func (s *Server) handleListExports(w http.ResponseWriter, r *http.Request) {
	if s.exportsOff(w) {
		return
	}
	runs, err := s.svc.Exports.Runs()
	if err != nil {
		writeError(w, http.StatusInternalServerError, "", "listing export runs: "+err.Error())
		return
	}
	dir := s.svc.Exports.Schedule().Dir
	out := make([]exportRun, 0, len(runs))
	for _, m := range runs {
		out = append(out, newExportRun(dir, m))
	}
	writeJSON(w, http.StatusOK, map[string]any{"runs": out})
}

func (s *Server) handleRunExport(w http.ResponseWriter, r *http.Request) {
	var b struct {
		Personal *bool `json:"personal"`
	}
	if !decodeJSON(w, r, 1<<10, &b, true) {
		return
	}
	if s.exportsOff(w) {
		return
	}
	ro := export.RunOptions{}
	if b.Personal != nil {
		ro.Personal = *b.Personal
	}
	m, err := s.svc.Exports.TryRun(r.Context(), ro)
	switch {
	case errors.Is(err, export.ErrRunning):
		writeError(w, http.StatusConflict, "", "an export run is in progress: try again when it has finished")
		return
	case errors.Is(err, export.ErrNoDir):
		writeError(w, http.StatusServiceUnavailable, "", "no export directory is configured: start serve with --export-dir (docs/export.md)")
		return
	case err != nil:
		s.opts.Logger.Error("api: export run", "err", err)
		writeError(w, http.StatusInternalServerError, "", "export run failed: "+err.Error())
		return
	}
	writeJSON(w, http.StatusCreated, newExportRun(s.svc.Exports.Schedule().Dir, m))
}

func (s *Server) handleExportSchedule(w http.ResponseWriter, r *http.Request) {
	if s.svc.Exports == nil {
		writeJSON(w, http.StatusOK, exportSchedule{Interval: "0s"})
		return
	}
	sc := s.svc.Exports.Schedule()
	writeJSON(w, http.StatusOK, exportSchedule{Directory: sc.Dir, Configured: sc.Dir != "", Interval: sc.Interval.String(),
		IntervalSeconds: sc.Interval.Seconds(), Keep: sc.Keep, Personal: sc.Personal})
}
