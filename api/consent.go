package api

import (
	"errors"
	"fmt"
	"net/http"

	"github.com/aurumcdp/aurum/engine/base"
	"github.com/aurumcdp/aurum/engine/privacy"
	"github.com/aurumcdp/aurum/event"
)

// maxConsentBody bounds a PUT /v1/profiles/{ref}/consent body.
const maxConsentBody = 4 << 10

// handleSetConsent states consent for the person identified by ref:
//
//	PUT /v1/profiles/{ref}/consent   {"email": false, "sms": true}
//
// ref is an identifier (email:..., phone:..., user_id:..., anonymous_id:...,
// any external id type), not a profile_id. The statement is ingested as a
// "Consent Updated" event from the internal source "aurum" and is on the log
// like every other one; the answer comes once it is durable, and the GCR
// shows it once applied. 400 names the offending channel.
func (s *Server) handleSetConsent(w http.ResponseWriter, r *http.Request) {
	body, err := readBody(r, maxConsentBody)
	if errors.Is(err, errTooLarge) {
		writeError(w, http.StatusRequestEntityTooLarge, "", fmt.Sprintf("request body exceeds %d KB", maxConsentBody>>10))
		return
	}
	if err != nil {
		writeError(w, http.StatusBadRequest, "", err.Error())
		return
	}
	consent, err := event.ParseConsentObject(body)
	if err != nil {
		var fe *event.FieldError
		if !errors.As(err, &fe) {
			fe = &event.FieldError{Reason: err.Error()}
		}
		if fe.Field == "" {
			if why := notJSON(body); why != "" {
				fe.Reason = why
			}
		}
		writeError(w, http.StatusBadRequest, fe.Field, fe.Reason)
		return
	}
	ref := r.PathValue("ref")
	ctx, cancel := s.requestContext(r)
	defer cancel()
	switch err := s.svc.Privacy.SetConsent(ctx, ref, consent); {
	case errors.Is(err, base.ErrBadRef):
		writeError(w, http.StatusBadRequest, "ref", err.Error())
	case errors.Is(err, base.ErrInvalid):
		writeError(w, http.StatusBadRequest, "", err.Error())
	case err != nil:
		s.ingestError(w, err)
	default:
		writeJSON(w, http.StatusOK, map[string]any{"success": true, "ref": ref, "consent": consent, "source": privacy.ConsentSource})
	}
}
