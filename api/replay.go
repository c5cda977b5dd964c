package api

import (
	"errors"
	"net/http"

	"github.com/aurumcdp/aurum/engine"
	"github.com/aurumcdp/aurum/engine/base"
)

func (s *Server) handleStartReplay(w http.ResponseWriter, r *http.Request) {
	var opts engine.RebuildOptions
	if !decodeJSON(w, r, 4<<10, &opts, true) {
		return
	}
	switch err := s.svc.Replay.StartRebuild(opts); {
	case errors.Is(err, engine.ErrBusy):
		writeError(w, http.StatusConflict, "", err.Error())
	case errors.Is(err, base.ErrInvalid), errors.Is(err, engine.ErrNoSnapshot):
		writeError(w, http.StatusBadRequest, "from", err.Error())
	case err != nil:
		writeError(w, http.StatusInternalServerError, "", err.Error())
	default:
		writeJSON(w, http.StatusAccepted, s.svc.Replay.RebuildStatus())
	}
}

func (s *Server) handleReplayStatus(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, s.svc.Replay.RebuildStatus())
}

func (s *Server) handleCreateSnapshot(w http.ResponseWriter, r *http.Request) {
	// No options yet: the body is empty or {}.
	if !decodeJSON(w, r, 1<<10, &struct{}{}, true) {
		return
	}
	info, err := s.svc.Replay.CreateSnapshot()
	if err != nil {
		s.opts.Logger.Error("api: snapshot", "err", err)
		writeError(w, http.StatusInternalServerError, "", "snapshot failed: "+err.Error())
		return
	}
	writeJSON(w, http.StatusCreated, info)
}

func (s *Server) handleListSnapshots(w http.ResponseWriter, r *http.Request) {
	list, err := s.svc.Replay.Snapshots()
	if err != nil {
		writeError(w, http.StatusInternalServerError, "", err.Error())
		return
	}
	if list == nil {
		list = []engine.SnapshotInfo{}
	}
	writeJSON(w, http.StatusOK, map[string]any{"snapshots": list})
}

func (s *Server) handleDigest(w http.ResponseWriter, r *http.Request) {
	d, err := s.svc.Replay.Digest()
	if err != nil {
		writeError(w, http.StatusInternalServerError, "", err.Error())
		return
	}
	writeJSON(w, http.StatusOK, d)
}
