package api

import (
	"errors"
	"net/http"
	"strconv"

	"github.com/aurumcdp/aurum/engine/base"
	"github.com/aurumcdp/aurum/engine/models"
)

// modelError answers a failed model request: 400 naming the field, 404,
// 409 for a fit already running or a node that may not fit.
func (s *Server) modelError(w http.ResponseWriter, what string, err error) {
	var fe *models.FieldError
	switch {
	case errors.As(err, &fe):
		writeError(w, http.StatusBadRequest, fe.Field, fe.Reason)
	case errors.Is(err, base.ErrNotFound):
		writeError(w, http.StatusNotFound, "name", err.Error())
	case errors.Is(err, models.ErrBusy), errors.Is(err, models.ErrNotLeader):
		writeError(w, http.StatusConflict, "name", err.Error())
	default:
		s.opts.Logger.Error("api: "+what, "err", err)
		writeError(w, http.StatusServiceUnavailable, "", what+" failed; retry")
	}
}

func (s *Server) handleFitModel(w http.ResponseWriter, r *http.Request) {
	var req models.Request
	if !decodeJSON(w, r, 16<<10, &req, false) {
		return
	}
	setAuditObject(r, "name", req.Name)
	info, err := s.svc.Models.Fit(req)
	if err != nil {
		s.modelError(w, "fit model", err)
		return
	}
	writeJSON(w, http.StatusAccepted, info)
}

func (s *Server) handleListModels(w http.ResponseWriter, r *http.Request) {
	list, err := s.svc.Models.Models()
	if err != nil {
		s.modelError(w, "list models", err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"models": list})
}

func (s *Server) handleGetModel(w http.ResponseWriter, r *http.Request) {
	info, err := s.svc.Models.Model(r.PathValue("name"))
	if err != nil {
		s.modelError(w, "get model", err)
		return
	}
	writeJSON(w, http.StatusOK, info)
}

func (s *Server) handleDeleteModel(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := s.requestContext(r)
	defer cancel()
	if err := s.svc.Models.Delete(ctx, r.PathValue("name")); err != nil {
		s.modelError(w, "delete model", err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (s *Server) handleEvaluateModel(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	req := models.EvaluationRequest{HoldoutEnd: q.Get("holdout_end")}
	if v := q.Get("max_x"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 100 {
			writeError(w, http.StatusBadRequest, "max_x", "must be an integer in [1, 100]")
			return
		}
		req.MaxX = n
	}
	ev, err := s.svc.Models.Evaluate(r.PathValue("name"), req)
	if err != nil {
		s.modelError(w, "evaluate model", err)
		return
	}
	writeJSON(w, http.StatusOK, ev)
}

func (s *Server) handleSuggestAudiences(w http.ResponseWriter, r *http.Request) {
	var req models.SuggestRequest
	if !decodeJSON(w, r, 4<<10, &req, true) {
		return
	}
	ctx, cancel := s.requestContext(r)
	defer cancel()
	out, err := s.svc.Models.Suggest(ctx, req)
	if err != nil {
		s.modelError(w, "suggest audiences", err)
		return
	}
	writeJSON(w, http.StatusOK, out)
}
