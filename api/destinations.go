package api

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"

	"github.com/aurumcdp/aurum/activation"
	"github.com/aurumcdp/aurum/engine"
	"github.com/aurumcdp/aurum/engine/base"
)

func (s *Server) handleCreateDestination(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Name      string          `json:"name"`
		Kind      string          `json:"kind"`
		URL       string          `json:"url"`
		Secret    string          `json:"secret"`
		Config    json.RawMessage `json:"config"`
		Audiences []string        `json:"audiences"`
		Channel   string          `json:"channel"`
	}
	if !decodeJSON(w, r, 64<<10, &req, false) {
		return
	}
	webhook := req.Kind == "" || req.Kind == activation.KindWebhook
	if !webhook && !slices.Contains(activation.KindNames(), req.Kind) {
		writeError(w, http.StatusBadRequest, "kind", fmt.Sprintf("%q is not a kind (want one of %s)", req.Kind, strings.Join(activation.KindNames(), ", ")))
		return
	}
	required := []struct {
		field   string
		missing bool
	}{{"name", req.Name == ""}, {"url", webhook && req.URL == ""}, {"secret", webhook && req.Secret == ""},
		{"config", !webhook && len(req.Config) == 0}, {"audiences", len(req.Audiences) == 0}}
	for _, f := range required {
		if f.missing {
			writeError(w, http.StatusBadRequest, f.field, "required")
			return
		}
	}
	if webhook && !slices.Contains(activation.Channels, req.Channel) {
		why := "required: how the destination contacts people, one of " + strings.Join(activation.Channels, ", ") + " (none: a system that contacts nobody; it bypasses consent)"
		if req.Channel != "" {
			why = fmt.Sprintf("%q is not a channel (want one of %s)", req.Channel, strings.Join(activation.Channels, ", "))
		}
		writeError(w, http.StatusBadRequest, "channel", why)
		return
	}
	setAuditObject(r, "name", req.Name)
	ctx, cancel := s.requestContext(r)
	defer cancel()
	info, err := s.svc.Destinations.PutDestination(ctx, activation.Destination{Name: req.Name, Kind: req.Kind, URL: req.URL,
		Secret: req.Secret, Config: req.Config, Audiences: req.Audiences, Channel: req.Channel})
	var ce *activation.ConfigError
	var ae *engine.AudienceRefError
	switch {
	case errors.As(err, &ce):
		writeError(w, http.StatusBadRequest, ce.Field(), fmt.Sprintf("destination %s: %v", ce.Destination, ce.Err))
	case errors.As(err, &ae):
		writeError(w, http.StatusBadRequest, "audiences", ae.Reason())
	case errors.Is(err, base.ErrInvalid):
		writeError(w, http.StatusBadRequest, "", err.Error())
	case err != nil:
		s.opts.Logger.Error("api: put destination", "err", err)
		writeError(w, http.StatusServiceUnavailable, "", "could not save the destination; retry")
	default:
		writeJSON(w, http.StatusCreated, info)
	}
}

func (s *Server) handleListDestinations(w http.ResponseWriter, r *http.Request) {
	list, err := s.svc.Destinations.Destinations()
	if err != nil {
		writeError(w, http.StatusInternalServerError, "", err.Error())
		return
	}
	if list == nil {
		list = []engine.DestinationInfo{}
	}
	writeJSON(w, http.StatusOK, map[string]any{"destinations": list})
}

func (s *Server) handleGetDestination(w http.ResponseWriter, r *http.Request) {
	list, err := s.svc.Destinations.Destinations()
	if err != nil {
		writeError(w, http.StatusInternalServerError, "", err.Error())
		return
	}
	name := r.PathValue("name")
	for _, d := range list {
		if d.Name == name {
			writeJSON(w, http.StatusOK, d)
			return
		}
	}
	writeError(w, http.StatusNotFound, "name", fmt.Sprintf("no destination %q (GET /v1/destinations lists them)", name))
}

func (s *Server) handleDeleteDestination(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := s.requestContext(r)
	defer cancel()
	if err := s.svc.Destinations.DeleteDestination(ctx, r.PathValue("name")); err != nil {
		s.lookupError(w, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}
