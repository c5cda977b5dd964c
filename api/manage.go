package api

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"

	"github.com/aurumcdp/aurum/engine/access"
	"github.com/aurumcdp/aurum/engine/base"
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

func (s *Server) handleProfile(w http.ResponseWriter, r *http.Request) {
	v, err := s.svc.Reads.Profile(r.PathValue("ref"))
	if err != nil {
		s.lookupError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, v)
}

func (s *Server) handleEvents(w http.ResponseWriter, r *http.Request) {
	limit := 50
	if q := r.URL.Query().Get("limit"); q != "" {
		n, err := strconv.Atoi(q)
		if err != nil || n < 1 || n > 1000 {
			writeError(w, http.StatusBadRequest, "limit", "must be an integer in [1, 1000]")
			return
		}
		limit = n
	}
	evs, err := s.svc.Reads.Events(r.PathValue("ref"), limit)
	if err != nil {
		s.lookupError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"events": evs})
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
