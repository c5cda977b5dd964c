package api

import (
	"errors"
	"fmt"
	"net/http"
	"path/filepath"
	"strconv"
	"time"

	"github.com/aurumcdp/aurum/engine/export"
)

// The warehouse export (engine/export, docs/export.md): the runs written,
// a run now, and the schedule (control state on the log; until one is set,
// serve's --export-* flags).

// exportRun is one run in GET /v1/exports and POST /v1/exports.
type exportRun struct {
	ID                  string            `json:"id"`
	Created             time.Time         `json:"created"`
	AppliedSeq          uint64            `json:"applied_seq"`
	LogClock            time.Time         `json:"log_clock"`
	Personal            bool              `json:"personal"`
	Trigger             string            `json:"trigger"`
	TransitionsAfterSeq uint64            `json:"transitions_after_seq"`
	Directory           string            `json:"directory"`
	Files               []export.FileInfo `json:"files"`
}

func newExportRun(dir string, m export.Manifest) exportRun {
	files := m.Files
	if files == nil {
		files = []export.FileInfo{}
	}
	return exportRun{ID: m.Run, AppliedSeq: m.AppliedSeq, Created: m.Created, LogClock: m.LogClock,
		Personal: m.Personal, Trigger: m.Trigger, TransitionsAfterSeq: m.TransitionsAfterSeq,
		Directory: filepath.Join(dir, m.Run), Files: files}
}

// exportSchedule is GET and PUT /v1/exports/schedule.
type exportSchedule struct {
	Directory       string     `json:"directory"`  // this node's (--export-dir)
	Configured      bool       `json:"configured"` // this node writes runs (it has a directory)
	Interval        string     `json:"interval"`   // Go duration; "0s": no scheduled runs
	IntervalSeconds float64    `json:"interval_seconds"`
	Keep            int        `json:"keep"` // 0: all runs kept
	Personal        bool       `json:"personal"`
	Source          string     `json:"source"` // "log" (set through the API, every node) or "flags" (this node's serve flags)
	Updated         *time.Time `json:"updated,omitempty"`
}

func newExportSchedule(sc export.Schedule) exportSchedule {
	out := exportSchedule{Directory: sc.Dir, Configured: sc.Dir != "", Interval: sc.Interval.String(),
		IntervalSeconds: sc.Interval.Seconds(), Keep: sc.Keep, Personal: sc.Personal, Source: sc.Source}
	if !sc.Updated.IsZero() {
		u := sc.Updated
		out.Updated = &u
	}
	return out
}

const noExportDir = "no export directory is configured on this node: start serve with --export-dir (docs/export.md)"

// exportsOff answers 503 when the node has no exporter or no export
// directory; it reports whether it did.
func (s *Server) exportsOff(w http.ResponseWriter) bool {
	if s.svc.Exports == nil {
		writeError(w, http.StatusServiceUnavailable, "", "this node has no warehouse export")
		return true
	}
	sc, err := s.svc.Exports.Schedule()
	if err != nil {
		s.opts.Logger.Error("api: export schedule", "err", err)
		writeError(w, http.StatusInternalServerError, "", "reading the export schedule failed")
		return true
	}
	if sc.Dir == "" {
		writeError(w, http.StatusServiceUnavailable, "", noExportDir)
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
		s.opts.Logger.Error("api: export runs", "err", err)
		writeError(w, http.StatusInternalServerError, "", "listing export runs: "+err.Error())
		return
	}
	sc, _ := s.svc.Exports.Schedule()
	out := make([]exportRun, 0, len(runs))
	for _, m := range runs {
		out = append(out, newExportRun(sc.Dir, m))
	}
	writeJSON(w, http.StatusOK, map[string]any{"runs": out})
}

func (s *Server) handleRunExport(w http.ResponseWriter, r *http.Request) {
	var b struct {
		Personal       *bool `json:"personal"`        // default: the schedule's
		AllTransitions bool  `json:"all_transitions"` // default: those since the newest run
	}
	if !decodeJSON(w, r, 1<<10, &b, true) {
		return
	}
	if s.exportsOff(w) {
		return
	}
	sc, err := s.svc.Exports.Schedule()
	if err != nil {
		writeError(w, http.StatusInternalServerError, "", "reading the export schedule failed")
		return
	}
	ro := export.RunOptions{Personal: sc.Personal, AllTransitions: b.AllTransitions}
	if b.Personal != nil {
		ro.Personal = *b.Personal
	}
	m, err := s.svc.Exports.TryRun(r.Context(), ro)
	switch {
	case errors.Is(err, export.ErrRunning):
		writeError(w, http.StatusConflict, "", "an export run is in progress: try again when it has finished")
		return
	case errors.Is(err, export.ErrNoDir):
		writeError(w, http.StatusServiceUnavailable, "", noExportDir)
		return
	case err != nil:
		s.opts.Logger.Error("api: export run", "err", err)
		writeError(w, http.StatusInternalServerError, "", "export run failed: "+err.Error())
		return
	}
	setAuditObject(r, "run", m.Run)
	setAuditObject(r, "personal", strconv.FormatBool(m.Personal))
	writeJSON(w, http.StatusCreated, newExportRun(sc.Dir, m))
}

func (s *Server) handleExportSchedule(w http.ResponseWriter, r *http.Request) {
	if s.svc.Exports == nil {
		writeJSON(w, http.StatusOK, exportSchedule{Interval: "0s", Source: "flags"})
		return
	}
	sc, err := s.svc.Exports.Schedule()
	if err != nil {
		s.opts.Logger.Error("api: export schedule", "err", err)
		writeError(w, http.StatusInternalServerError, "", "reading the export schedule failed")
		return
	}
	writeJSON(w, http.StatusOK, newExportSchedule(sc))
}

// handleSetExportSchedule sets the schedule of every node (a control
// record on the log). A field left out keeps its value in effect.
func (s *Server) handleSetExportSchedule(w http.ResponseWriter, r *http.Request) {
	var b struct {
		Interval *string `json:"interval"` // Go duration, ≥ 1m
		Keep     *int    `json:"keep"`     // ≥ 1
		Personal *bool   `json:"personal"`
	}
	if !decodeJSON(w, r, 1<<10, &b, false) {
		return
	}
	if s.svc.Exports == nil {
		writeError(w, http.StatusServiceUnavailable, "", "this node has no warehouse export")
		return
	}
	sc, err := s.svc.Exports.Schedule()
	if err != nil {
		writeError(w, http.StatusInternalServerError, "", "reading the export schedule failed")
		return
	}
	interval, keep, personal := sc.Interval, sc.Keep, sc.Personal
	if b.Interval != nil {
		if interval, err = time.ParseDuration(*b.Interval); err != nil {
			writeError(w, http.StatusBadRequest, "interval", fmt.Sprintf("interval: %q is not a duration (e.g. \"1h\", \"30m\")", *b.Interval))
			return
		}
	}
	if b.Keep != nil {
		keep = *b.Keep
	}
	if b.Personal != nil {
		personal = *b.Personal
	}
	switch {
	case interval < export.MinInterval:
		writeError(w, http.StatusBadRequest, "interval", fmt.Sprintf("interval: %v is shorter than the minimum of %v", interval, export.MinInterval))
		return
	case keep < 1:
		writeError(w, http.StatusBadRequest, "keep", fmt.Sprintf("keep: %d, want at least 1 run", keep))
		return
	}
	setAuditObject(r, "interval", interval.String())
	setAuditObject(r, "keep", strconv.Itoa(keep))
	setAuditObject(r, "personal", strconv.FormatBool(personal))
	out, err := s.svc.Exports.SetSchedule(r.Context(), interval, keep, personal)
	if errors.Is(err, export.ErrInvalid) {
		writeError(w, http.StatusBadRequest, "", err.Error())
		return
	}
	if err != nil {
		s.opts.Logger.Error("api: set export schedule", "err", err)
		writeError(w, http.StatusInternalServerError, "", "setting the export schedule failed")
		return
	}
	writeJSON(w, http.StatusOK, newExportSchedule(out))
}
