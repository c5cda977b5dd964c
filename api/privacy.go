package api

import (
	"errors"
	"io"
	"net/http"

	"github.com/aurumcdp/aurum/engine/base"
)

// Privacy endpoints (role: privacy or admin; today the admin token):
//
//	POST /v1/privacy/erasures        {"identifier": "type:value"} → 202 {id, status, ...}
//	GET  /v1/privacy/erasures        every erasure, oldest first
//	GET  /v1/privacy/erasures/{id}   one erasure's status and counts
//	GET  /v1/profiles/{ref}/export   the person's whole record (access and portability)

type erasureRequest struct {
	Identifier string `json:"identifier"`
}

func (s *Server) handleCreateErasure(w http.ResponseWriter, r *http.Request) {
	var req erasureRequest
	if !decodeJSON(w, r, 4<<10, &req, false) {
		return
	}
	if req.Identifier == "" {
		writeError(w, http.StatusBadRequest, "identifier", "required: type:value, e.g. email:rob@example.com")
		return
	}
	ctx, cancel := s.requestContext(r)
	defer cancel()
	info, err := s.svc.Privacy.RequestErasure(ctx, req.Identifier)
	switch {
	case errors.Is(err, base.ErrBadRef):
		writeError(w, http.StatusBadRequest, "identifier", err.Error())
	case err != nil:
		s.opts.Logger.Error("api: erasure request", "err", err)
		writeError(w, http.StatusServiceUnavailable, "", "the erasure could not be recorded; retry")
	default:
		w.Header().Set("Location", "/v1/privacy/erasures/"+info.ID)
		writeJSON(w, http.StatusAccepted, info)
	}
}

func (s *Server) handleGetErasure(w http.ResponseWriter, r *http.Request) {
	info, err := s.svc.Privacy.Erasure(r.PathValue("id"))
	switch {
	case errors.Is(err, base.ErrBadRef), errors.Is(err, base.ErrInvalid):
		writeError(w, http.StatusBadRequest, "id", err.Error())
	case errors.Is(err, base.ErrNotFound):
		writeError(w, http.StatusNotFound, "id", err.Error())
	case err != nil:
		s.opts.Logger.Error("api: erasure status", "err", err)
		writeError(w, http.StatusInternalServerError, "", "look-up failed")
	default:
		writeJSON(w, http.StatusOK, info)
	}
}

func (s *Server) handleListErasures(w http.ResponseWriter, r *http.Request) {
	all, err := s.svc.Privacy.Erasures()
	if err != nil {
		s.opts.Logger.Error("api: list erasures", "err", err)
		writeError(w, http.StatusInternalServerError, "", "look-up failed")
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"erasures": all})
}

// handleProfileExport streams the person's whole record: the GCR view,
// audience history and every event decrypted, as one JSON object.
func (s *Server) handleProfileExport(w http.ResponseWriter, r *http.Request) {
	started := false
	err := s.svc.Privacy.Export(r.PathValue("ref"), func() io.Writer {
		started = true
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Content-Disposition", `attachment; filename="profile-export.json"`)
		w.WriteHeader(http.StatusOK)
		return w
	})
	if err == nil {
		return
	}
	if !started {
		s.lookupError(w, err)
		return
	}
	// The body is under way: it ends without its closing brackets, so a
	// client sees invalid JSON rather than a silently short export.
	s.opts.Logger.Error("api: profile export interrupted", "err", err)
}
