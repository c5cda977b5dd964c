package api

import (
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"

	"github.com/aurumcdp/aurum/engine"
	"github.com/aurumcdp/aurum/engine/base"
	"github.com/aurumcdp/aurum/engine/query"
	"github.com/aurumcdp/aurum/projections/audience"
	"github.com/aurumcdp/aurum/rules"
)

// audienceBody is the JSON of POST /v1/audiences and PUT /v1/audiences/{name}.
type audienceBody struct {
	Name        *string `json:"name"`
	Description string  `json:"description"`
	Rule        *string `json:"rule"`
}

func (s *Server) readAudience(w http.ResponseWriter, r *http.Request) (audienceBody, bool) {
	var b audienceBody
	if !decodeJSON(w, r, 16<<10, &b, false) {
		return b, false
	}
	if b.Rule == nil {
		writeError(w, http.StatusBadRequest, "rule", "required")
		return b, false
	}
	return b, true
}

// ruleError is the 400 answer for a rule that does not compile.
type ruleError struct {
	Error  string `json:"error"`
	Field  string `json:"field"`
	Line   int    `json:"line,omitempty"`
	Column int    `json:"column,omitempty"`
	Reason string `json:"reason,omitempty"`
}

func (s *Server) putAudience(w http.ResponseWriter, r *http.Request, d audience.Definition, created bool) {
	ctx, cancel := s.requestContext(r)
	defer cancel()
	info, err := s.svc.Audiences.PutAudience(ctx, d)
	var re *rules.Error
	var ae *engine.AudienceRefError
	switch {
	case errors.As(err, &re):
		writeJSON(w, http.StatusBadRequest, ruleError{Error: "rule: " + re.Error(), Field: "rule", Line: re.Line, Column: re.Column, Reason: re.Reason})
	case errors.As(err, &ae):
		writeError(w, http.StatusBadRequest, "rule", ae.Reason())
	case errors.Is(err, base.ErrInvalid):
		writeError(w, http.StatusBadRequest, "name", err.Error())
	case err != nil:
		s.opts.Logger.Error("api: put audience", "err", err)
		writeError(w, http.StatusServiceUnavailable, "", "could not save the audience; retry")
	case created:
		writeJSON(w, http.StatusCreated, info)
	default:
		writeJSON(w, http.StatusOK, info)
	}
}

func (s *Server) handleCreateAudience(w http.ResponseWriter, r *http.Request) {
	b, ok := s.readAudience(w, r)
	if !ok {
		return
	}
	if b.Name == nil {
		writeError(w, http.StatusBadRequest, "name", "required")
		return
	}
	setAuditObject(r, "name", *b.Name)
	if _, err := s.svc.Reads.Audience(*b.Name); err == nil {
		writeError(w, http.StatusConflict, "name", fmt.Sprintf("audience %q exists (PUT /v1/audiences/%s replaces it)", *b.Name, *b.Name))
		return
	}
	s.putAudience(w, r, audience.Definition{Name: *b.Name, Description: b.Description, Rule: *b.Rule}, true)
}

func (s *Server) handleReplaceAudience(w http.ResponseWriter, r *http.Request) {
	b, ok := s.readAudience(w, r)
	if !ok {
		return
	}
	name := r.PathValue("name")
	if b.Name != nil && *b.Name != name {
		writeError(w, http.StatusBadRequest, "name", "does not match the audience in the path")
		return
	}
	_, err := s.svc.Reads.Audience(name)
	s.putAudience(w, r, audience.Definition{Name: name, Description: b.Description, Rule: *b.Rule}, errors.Is(err, base.ErrNotFound))
}

func (s *Server) handleListAudiences(w http.ResponseWriter, r *http.Request) {
	list, err := s.svc.Reads.Audiences()
	if err != nil {
		writeError(w, http.StatusInternalServerError, "", err.Error())
		return
	}
	if list == nil {
		list = []query.AudienceInfo{}
	}
	writeJSON(w, http.StatusOK, map[string]any{"audiences": list})
}

func (s *Server) handleGetAudience(w http.ResponseWriter, r *http.Request) {
	info, err := s.svc.Reads.Audience(r.PathValue("name"))
	if err != nil {
		s.lookupError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, info)
}

func (s *Server) handleDeleteAudience(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := s.requestContext(r)
	defer cancel()
	err := s.svc.Audiences.DeleteAudience(ctx, r.PathValue("name"))
	var ae *engine.AudienceRefError
	if errors.As(err, &ae) {
		first := "rules"
		if len(ae.UsedBy) > 0 {
			first = "destinations"
		}
		writeError(w, http.StatusConflict, "name", ae.Reason()+": change or delete those "+first+" first")
		return
	}
	if err != nil {
		s.lookupError(w, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (s *Server) handleAudienceMembers(w http.ResponseWriter, r *http.Request) {
	limit := 100
	if q := r.URL.Query().Get("limit"); q != "" {
		n, err := strconv.Atoi(q)
		if err != nil || n < 1 || n > 10000 {
			writeError(w, http.StatusBadRequest, "limit", "must be an integer in [1, 10000]")
			return
		}
		limit = n
	}
	withIDs := false
	switch v := r.URL.Query().Get("identifiers"); v {
	case "", "false":
	case "true":
		withIDs = true
	default:
		writeError(w, http.StatusBadRequest, "identifiers", "want true or false")
		return
	}
	var (
		members []query.Member
		next    string
		err     error
		extra   = map[string]any{}
	)
	name, cursor := r.PathValue("name"), r.URL.Query().Get("cursor")
	if q, searching := r.URL.Query()["q"]; searching {
		if len(q) != 1 || strings.TrimSpace(q[0]) == "" {
			writeError(w, http.StatusBadRequest, "q", "want one non-empty search: type:value (e.g. email:ann@example.com) or a prefix of an identifier")
			return
		}
		if len(q[0]) > 1024 {
			writeError(w, http.StatusBadRequest, "q", "longer than 1024 bytes")
			return
		}
		scan := 0
		if v := r.URL.Query().Get("scan"); v != "" {
			n, err := strconv.Atoi(v)
			if err != nil || n < 1 || n > query.MemberSearchScan {
				writeError(w, http.StatusBadRequest, "scan", fmt.Sprintf("must be an integer in [1, %d]", query.MemberSearchScan))
				return
			}
			scan = n
		}
		var res query.MemberSearch
		res, err = s.svc.Reads.SearchMembers(name, q[0], cursor, limit, scan)
		members, next = res.Members, res.Next
		extra["scanned"], extra["exact"] = res.Scanned, res.Exact
	} else {
		members, next, err = s.svc.Reads.AudienceMembers(name, cursor, limit)
	}
	if errors.Is(err, base.ErrInvalid) {
		writeError(w, http.StatusBadRequest, "cursor", err.Error())
		return
	}
	if err != nil {
		s.lookupError(w, err)
		return
	}
	if members == nil {
		members = []query.Member{}
	}
	answer := func(ms any) {
		out := map[string]any{"members": ms, "next": next}
		for k, v := range extra {
			out[k] = v
		}
		writeJSON(w, http.StatusOK, out)
	}
	if !withIDs {
		answer(members)
		return
	}
	out := make([]memberWithIDs, len(members))
	for i, m := range members {
		out[i] = memberWithIDs{Member: m, Identifiers: map[string][]*string{}}
		v, err := s.svc.Reads.Profile("profile_id:" + m.ProfileID)
		switch {
		case errors.Is(err, base.ErrNotFound):
			continue // gone since the page was read
		case err != nil:
			s.opts.Logger.Error("api: audience members: profile", "err", err)
			writeError(w, http.StatusInternalServerError, "", "could not read the members' identifiers")
			return
		case v.ProfileID == m.ProfileID: // else merged since the page was read
			out[i].Identifiers = identifiersOf(v)
		}
	}
	answer(out)
}

// memberWithIDs is a member of GET /v1/audiences/{name}/members?identifiers=true:
// its membership and the person's identifiers (type → values, oldest
// first; null for a value that could not be unsealed; empty when the
// profile was merged or erased since the page was read).
type memberWithIDs struct {
	query.Member
	Identifiers map[string][]*string `json:"identifiers"`
}

func (s *Server) handlePreviewAudience(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Rule   *string `json:"rule"`
		Sample *int    `json:"sample"`
		Exact  bool    `json:"exact"`
	}
	if !decodeJSON(w, r, 16<<10, &req, false) {
		return
	}
	if req.Rule == nil {
		writeError(w, http.StatusBadRequest, "rule", "required")
		return
	}
	sample := 20
	if req.Sample != nil {
		sample = *req.Sample
	}
	res, err := s.svc.Reads.Preview(*req.Rule, sample, req.Exact)
	var re *rules.Error
	switch {
	case errors.As(err, &re):
		writeJSON(w, http.StatusBadRequest, ruleError{Error: "rule: " + re.Error(), Field: "rule", Line: re.Line, Column: re.Column, Reason: re.Reason})
	case errors.Is(err, base.ErrInvalid):
		writeError(w, http.StatusBadRequest, "sample", err.Error())
	case err != nil:
		s.opts.Logger.Error("api: preview", "err", err)
		writeError(w, http.StatusInternalServerError, "", "preview failed")
	default:
		writeJSON(w, http.StatusOK, res)
	}
}
