package api

import (
	"errors"
	"net/http"
	"strconv"

	"github.com/aurumcdp/aurum/engine/base"
	"github.com/aurumcdp/aurum/engine/matching"
	"github.com/aurumcdp/aurum/projections/match"
)

// identityError answers a failed probabilistic-identity request.
func (s *Server) identityError(w http.ResponseWriter, field, what string, err error) {
	switch {
	case errors.Is(err, base.ErrBadRef):
		writeError(w, http.StatusBadRequest, "ref", err.Error())
	case errors.Is(err, base.ErrNotFound):
		writeError(w, http.StatusNotFound, field, err.Error())
	case errors.Is(err, matching.ErrNotLeader):
		writeError(w, http.StatusConflict, "", err.Error())
	case errors.Is(err, base.ErrInvalid), errors.Is(err, match.ErrInvalid), errors.Is(err, match.ErrTooFewRecords):
		writeError(w, http.StatusBadRequest, field, err.Error())
	default:
		s.opts.Logger.Error("api: "+what, "err", err)
		writeError(w, http.StatusServiceUnavailable, "", what+" failed; retry")
	}
}

func (s *Server) handleTrainIdentity(w http.ResponseWriter, r *http.Request) {
	var req matching.TrainRequest
	if !decodeJSON(w, r, 4<<10, &req, true) {
		return
	}
	// Training reads and fits for as long as the sample needs: bounded by
	// the client's wait, not by the request timeout (meant for durability).
	info, err := s.svc.Identity.Train(r.Context(), req)
	if err != nil {
		s.identityError(w, "sample", "train identity model", err)
		return
	}
	writeJSON(w, http.StatusCreated, info)
}

func (s *Server) handleIdentityModel(w http.ResponseWriter, r *http.Request) {
	info, err := s.svc.Identity.Model()
	if err != nil {
		s.identityError(w, "", "identity model", err)
		return
	}
	writeJSON(w, http.StatusOK, info)
}

func (s *Server) handleListReviews(w http.ResponseWriter, r *http.Request) {
	limit := 100
	if q := r.URL.Query().Get("limit"); q != "" {
		n, err := strconv.Atoi(q)
		if err != nil || n < 1 || n > 1000 {
			writeError(w, http.StatusBadRequest, "limit", "must be an integer in [1, 1000]")
			return
		}
		limit = n
	}
	list, err := s.svc.Identity.Reviews(limit)
	if err != nil {
		s.identityError(w, "", "list reviews", err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"reviews": list})
}

func (s *Server) handleDecideReview(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Decision string `json:"decision"`
	}
	if !decodeJSON(w, r, 4<<10, &req, false) {
		return
	}
	if req.Decision != "merge" && req.Decision != "reject" {
		writeError(w, http.StatusBadRequest, "decision", `must be "merge" or "reject"`)
		return
	}
	ctx, cancel := s.requestContext(r)
	defer cancel()
	actor, _ := principalFrom(r)
	rv, err := s.svc.Identity.Decide(ctx, r.PathValue("id"), req.Decision, actor)
	if err != nil {
		s.identityError(w, "id", "review", err)
		return
	}
	writeJSON(w, http.StatusOK, rv)
}

func (s *Server) handleProfileIdentity(w http.ResponseWriter, r *http.Request) {
	ex, err := s.svc.Identity.Explain(r.PathValue("ref"))
	if err != nil {
		s.identityError(w, "ref", "explain identity", err)
		return
	}
	writeJSON(w, http.StatusOK, ex)
}

func (s *Server) handleSplitProfile(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Identifiers []string `json:"identifiers"`
	}
	if !decodeJSON(w, r, 64<<10, &req, false) {
		return
	}
	if len(req.Identifiers) == 0 {
		writeError(w, http.StatusBadRequest, "identifiers", "give at least one identifier (type:value) to split off, e.g. [\"crm_id:12345\"]")
		return
	}
	ctx, cancel := s.requestContext(r)
	defer cancel()
	actor, _ := principalFrom(r)
	info, err := s.svc.Identity.Split(ctx, r.PathValue("ref"), req.Identifiers, actor)
	if err != nil {
		if errors.Is(err, base.ErrInvalid) {
			writeError(w, http.StatusBadRequest, "identifiers", err.Error())
			return
		}
		s.identityError(w, "ref", "split profile", err)
		return
	}
	writeJSON(w, http.StatusCreated, info)
}
