package api

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/aurumcdp/aurum/engine/access"
	"github.com/aurumcdp/aurum/engine/base"
	"github.com/aurumcdp/aurum/engine/query"
)

func (s *Server) handleCreateSource(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Name *string `json:"name"`
	}
	if !decodeJSON(w, r, 4<<10, &req, false) {
		return
	}
	if req.Name == nil {
		writeError(w, http.StatusBadRequest, "name", "required")
		return
	}
	setAuditObject(r, "name", *req.Name)
	ctx, cancel := s.requestContext(r)
	defer cancel()
	key, err := s.svc.Access.CreateSource(ctx, *req.Name)
	switch {
	case errors.Is(err, access.ErrSourceExists):
		writeError(w, http.StatusConflict, "name", "a source with this name exists")
	case errors.Is(err, base.ErrInvalid):
		writeError(w, http.StatusBadRequest, "name", err.Error())
	case err != nil:
		s.opts.Logger.Error("api: create source", "err", err)
		writeError(w, http.StatusServiceUnavailable, "", "could not create the source; retry")
	default:
		writeJSON(w, http.StatusCreated, map[string]string{"name": *req.Name, "write_key": key})
	}
}

func (s *Server) handleListSources(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, map[string]any{"sources": s.svc.Access.Sources()})
}

// handleDeleteSource deletes a source: its write keys stop working.
func (s *Server) handleDeleteSource(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := s.requestContext(r)
	defer cancel()
	err := s.svc.Access.DeleteSource(ctx, r.PathValue("name"))
	switch {
	case errors.Is(err, base.ErrNotFound):
		writeError(w, http.StatusNotFound, "name", err.Error())
	case err != nil:
		s.opts.Logger.Error("api: delete source", "err", err)
		writeError(w, http.StatusServiceUnavailable, "", "could not delete the source; retry")
	default:
		w.WriteHeader(http.StatusNoContent)
	}
}

// handleRotateSourceKey gives a source a new write key; the old one keeps
// working for grace (a Go duration, default 24h, at most 720h; "0s": it
// stops at once):
//
//	POST /v1/sources/{name}/rotate-key   {"grace": "24h"}
func (s *Server) handleRotateSourceKey(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Grace *string `json:"grace"`
	}
	if !decodeJSON(w, r, 4<<10, &req, true) {
		return
	}
	grace := 24 * time.Hour
	if req.Grace != nil {
		d, err := time.ParseDuration(*req.Grace)
		if err != nil {
			writeError(w, http.StatusBadRequest, "grace", fmt.Sprintf("%q is not a duration (e.g. 24h, 30m, 0s)", *req.Grace))
			return
		}
		grace = d
	}
	ctx, cancel := s.requestContext(r)
	defer cancel()
	name := r.PathValue("name")
	key, until, err := s.svc.Access.RotateSourceKey(ctx, name, grace)
	switch {
	case errors.Is(err, base.ErrNotFound):
		writeError(w, http.StatusNotFound, "name", err.Error())
	case errors.Is(err, base.ErrInvalid):
		writeError(w, http.StatusBadRequest, "grace", err.Error())
	case err != nil:
		s.opts.Logger.Error("api: rotate source key", "err", err)
		writeError(w, http.StatusServiceUnavailable, "", "could not rotate the key; retry")
	default:
		writeJSON(w, http.StatusOK, map[string]any{"name": name, "write_key": key, "old_key_valid_until": until.Format(time.RFC3339)})
	}
}

func (s *Server) handleProfile(w http.ResponseWriter, r *http.Request) {
	v, err := s.svc.Reads.Profile(r.PathValue("ref"))
	if err != nil {
		s.lookupError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, v)
}

// pageParams reads a page's limit (default def, at most max) and cursor.
func pageParams(w http.ResponseWriter, r *http.Request, def, max int) (limit int, cursor string, ok bool) {
	limit = def
	if q := r.URL.Query().Get("limit"); q != "" {
		n, err := strconv.Atoi(q)
		if err != nil || n < 1 || n > max {
			writeError(w, http.StatusBadRequest, "limit", fmt.Sprintf("must be an integer in [1, %d]", max))
			return 0, "", false
		}
		limit = n
	}
	return limit, r.URL.Query().Get("cursor"), true
}

// pageError answers a paged read's error: a bad cursor is 400 naming it.
func (s *Server) pageError(w http.ResponseWriter, err error) {
	if errors.Is(err, base.ErrInvalid) {
		writeError(w, http.StatusBadRequest, "cursor", err.Error())
		return
	}
	s.lookupError(w, err)
}

// handleEvents answers GET /v1/profiles/{ref}/events: a page of the
// person's events, newest first, decrypted; "next" is the cursor of the
// older page ("" when there is none).
func (s *Server) handleEvents(w http.ResponseWriter, r *http.Request) {
	limit, cursor, ok := pageParams(w, r, 50, 1000)
	if !ok {
		return
	}
	evs, next, err := s.svc.Reads.EventsPage(r.PathValue("ref"), cursor, limit)
	if err != nil {
		s.pageError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"events": evs, "next": next})
}

// handleAudienceHistory answers GET /v1/profiles/{ref}/audience-history:
// a page of the person's audience entries and exits, newest first, with
// their times and reasons; "next" is the cursor of the older page.
func (s *Server) handleAudienceHistory(w http.ResponseWriter, r *http.Request) {
	limit, cursor, ok := pageParams(w, r, 50, 1000)
	if !ok {
		return
	}
	hist, next, err := s.svc.Reads.AudienceHistory(r.PathValue("ref"), cursor, limit)
	if err != nil {
		s.pageError(w, err)
		return
	}
	if hist == nil {
		hist = []query.HistoryItem{}
	}
	writeJSON(w, http.StatusOK, map[string]any{"history": hist, "next": next})
}

func (s *Server) lookupError(w http.ResponseWriter, err error) {
	switch {
	case errors.Is(err, base.ErrNotFound):
		writeError(w, http.StatusNotFound, "ref", err.Error())
	case errors.Is(err, base.ErrBadRef):
		writeError(w, http.StatusBadRequest, "ref", err.Error())
	default:
		s.opts.Logger.Error("api: profile look-up", "err", err)
		writeError(w, http.StatusInternalServerError, "", "look-up failed")
	}
}

func (s *Server) handleDeadLetters(w http.ResponseWriter, r *http.Request) {
	from := uint64(1)
	if q := r.URL.Query().Get("from"); q != "" {
		n, err := strconv.ParseUint(q, 10, 64)
		if err != nil || n == 0 {
			writeError(w, http.StatusBadRequest, "from", "must be a positive integer")
			return
		}
		from = n
	}
	limit := 100
	if q := r.URL.Query().Get("limit"); q != "" {
		n, err := strconv.Atoi(q)
		if err != nil || n < 1 || n > 1000 {
			writeError(w, http.StatusBadRequest, "limit", "must be an integer in [1, 1000]")
			return
		}
		limit = n
	}
	ctx, cancel := s.requestContext(r)
	defer cancel()
	dl, err := s.svc.Ingest.DeadLetters(ctx, from, limit)
	if err != nil {
		writeError(w, http.StatusServiceUnavailable, "", err.Error())
		return
	}
	// Each record gets its stream sequence ("seq", which the record's own
	// JSON leaves out) and the answer the position of the next page.
	views := make([]json.RawMessage, 0, len(dl))
	next := from
	for _, d := range dl {
		b, err := json.Marshal(d)
		if err != nil || len(b) < 2 || b[0] != '{' || b[1] == '}' {
			writeError(w, http.StatusInternalServerError, "", fmt.Sprintf("dead letter %d: cannot encode", d.Seq))
			return
		}
		views = append(views, append(fmt.Appendf(nil, `{"seq":%d,`, d.Seq), b[1:]...))
		next = d.Seq + 1
	}
	writeJSON(w, http.StatusOK, map[string]any{"dead_letters": views, "next": next})
}
