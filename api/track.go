package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/aurumcdp/aurum/engine/base"
	"github.com/aurumcdp/aurum/engine/ingest"
	"github.com/aurumcdp/aurum/event"
)

// writeKey returns the write key of a tracking request: the user name of
// HTTP Basic auth (Segment's and RudderStack's SDKs), else the body's
// "writeKey" field (older analytics.js).
func writeKey(r *http.Request, body []byte) string {
	if u, _, ok := r.BasicAuth(); ok && u != "" {
		return u
	}
	var wk struct {
		WriteKey string `json:"writeKey"`
	}
	if json.Unmarshal(body, &wk) == nil {
		return wk.WriteKey
	}
	return ""
}

func (s *Server) authSource(w http.ResponseWriter, r *http.Request, body []byte) (string, bool) {
	key := writeKey(r, body)
	if key == "" {
		w.Header().Set("WWW-Authenticate", `Basic realm="aurum"`)
		writeError(w, http.StatusUnauthorized, "Authorization", "missing write key: send it as the user name of HTTP Basic auth")
		return "", false
	}
	src, ok := s.svc.Access.SourceForKey(key)
	if !ok {
		if s.catchingUp(w, r, "write key") {
			return "", false
		}
		w.Header().Set("WWW-Authenticate", `Basic realm="aurum"`)
		writeError(w, http.StatusUnauthorized, "Authorization", "unknown write key")
		return "", false
	}
	return src, true
}

func (s *Server) readTracking(w http.ResponseWriter, r *http.Request, limit int64) ([]byte, bool) {
	body, err := readBody(r, limit)
	if errors.Is(err, errTooLarge) {
		writeError(w, http.StatusRequestEntityTooLarge, "", fmt.Sprintf("request body exceeds %d KB", limit>>10))
		return nil, false
	}
	if err != nil {
		writeError(w, http.StatusBadRequest, "", err.Error())
		return nil, false
	}
	return body, true
}

func (s *Server) handleSingle(kind event.Kind) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		body, ok := s.readTracking(w, r, MaxEventBytes)
		if !ok {
			return
		}
		src, ok := s.authSource(w, r, body)
		if !ok || !s.allowIngest(w, src, 1) {
			return
		}
		ctx, cancel := s.requestContext(r)
		defer cancel()
		ev, err := event.Parse(body, kind, s.svc.Ingest.ParseOptions())
		if err != nil {
			var fe *event.FieldError
			if !errors.As(err, &fe) {
				fe = &event.FieldError{Reason: err.Error()}
			}
			if fe.Field == "" {
				if why := notJSON(body); why != "" {
					fe = &event.FieldError{Reason: why}
				}
			}
			if derr := s.svc.Ingest.DeadLetter(ctx, src, 0, fe.Field, fe.Reason, body); derr != nil {
				s.opts.Logger.Warn("api: dead letter failed", "err", derr)
			}
			writeError(w, http.StatusBadRequest, fe.Field, fe.Reason)
			return
		}
		if err := s.svc.Ingest.Ingest(ctx, src, []event.Event{ev}); err != nil {
			s.ingestError(w, err)
			return
		}
		writeJSON(w, http.StatusOK, map[string]any{"success": true})
	}
}

// batchResponse answers /v1/batch and /v1/import.
type batchResponse struct {
	Success  bool              `json:"success"`
	Accepted int               `json:"accepted"`
	Rejected []event.Rejection `json:"rejected"`
}

func (s *Server) handleBatch(w http.ResponseWriter, r *http.Request) {
	body, ok := s.readTracking(w, r, MaxRequestBytes)
	if !ok {
		return
	}
	src, ok := s.authSource(w, r, body)
	if !ok {
		return
	}
	s.ingestBatch(w, r, src, body, false)
}

func (s *Server) handleImport(w http.ResponseWriter, r *http.Request) {
	src := r.PathValue("source")
	if err := event.ValidSourceName(src); err != nil {
		writeError(w, http.StatusBadRequest, "source", err.Error())
		return
	}
	if !s.svc.Access.SourceExists(src) {
		writeError(w, http.StatusNotFound, "source", fmt.Sprintf("unknown source %q (create it with aurum source add)", src))
		return
	}
	body, ok := s.readTracking(w, r, MaxRequestBytes)
	if !ok {
		return
	}
	s.ingestBatch(w, r, src, body, true)
}

// importResponse is the answer of POST /v1/import/{source}: the rows that
// are new (accepted), those the node already holds (duplicates: their
// messageId was seen within the dedup window, or earlier in the same
// request; they change nothing), and the rejected ones.
type importResponse struct {
	Success    bool              `json:"success"`
	Accepted   int               `json:"accepted"`
	Duplicates int               `json:"duplicates"`
	Rejected   []event.Rejection `json:"rejected"`
}

// duplicates counts the events whose messageId the node already holds for
// src, or that repeat one earlier in evs.
func (s *Server) duplicates(src string, evs []event.Event) (int, error) {
	ids := make([]string, len(evs))
	for i, ev := range evs {
		ids[i] = ev.MessageID
	}
	seen, err := s.svc.Reads.Seen(src, ids, time.Now())
	if err != nil {
		return 0, err
	}
	n, earlier := 0, make(map[string]bool, len(ids))
	for i, id := range ids {
		if seen[i] || (id != "" && earlier[id]) {
			n++
		}
		earlier[id] = true
	}
	return n, nil
}

// ingestBatch ingests a batch body of source src: the tracking API's
// /v1/batch (Segment's answer) or, with imp, an import (importResponse).
func (s *Server) ingestBatch(w http.ResponseWriter, r *http.Request, src string, body []byte, imp bool) {
	ctx, cancel := s.requestContext(r)
	defer cancel()
	evs, rejected, err := event.ParseBatchEvents(body, s.svc.Ingest.ParseOptions())
	if err != nil {
		var fe *event.FieldError
		switch why := notJSON(body); {
		case why != "":
			writeError(w, http.StatusBadRequest, "", why)
		case errors.As(err, &fe):
			writeError(w, http.StatusBadRequest, fe.Field, fe.Reason)
		default:
			writeError(w, http.StatusBadRequest, "", err.Error())
		}
		return
	}
	if !s.allowIngest(w, src, len(evs)+len(rejected)) {
		return
	}
	for _, rj := range rejected {
		if derr := s.svc.Ingest.DeadLetter(ctx, src, rj.Index, rj.Field, rj.Reason, rj.Raw); derr != nil {
			s.opts.Logger.Warn("api: dead letter failed", "err", derr)
			writeError(w, http.StatusServiceUnavailable, "", "could not keep the rejected events; retry")
			return
		}
	}
	dups := 0
	if imp { // counted before the append (afterwards every id is seen), once the earlier appends are applied
		err := s.svc.Node.Sync(ctx)
		if err == nil {
			dups, err = s.duplicates(src, evs)
		}
		if err != nil {
			s.opts.Logger.Error("api: import: dedup look-up", "err", err)
			writeError(w, http.StatusServiceUnavailable, "", "could not check for duplicates; retry")
			return
		}
	}
	if err := s.svc.Ingest.Ingest(ctx, src, evs); err != nil {
		s.ingestError(w, err)
		return
	}
	if rejected == nil {
		rejected = []event.Rejection{}
	}
	code := http.StatusOK
	if len(evs) == 0 && len(rejected) > 0 {
		code = http.StatusBadRequest
	}
	if imp {
		writeJSON(w, code, importResponse{Success: code == http.StatusOK, Accepted: len(evs) - dups, Duplicates: dups, Rejected: rejected})
		return
	}
	writeJSON(w, code, batchResponse{Success: code == http.StatusOK, Accepted: len(evs), Rejected: rejected})
}

func (s *Server) ingestError(w http.ResponseWriter, err error) {
	switch {
	case errors.Is(err, ingest.ErrUnknownSource):
		writeError(w, http.StatusUnauthorized, "Authorization", "unknown source")
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled), errors.Is(err, base.ErrClosed):
		w.Header().Set("Retry-After", "1")
		writeError(w, http.StatusServiceUnavailable, "", "events not yet durable; retry with the same messageIds")
	default:
		s.opts.Logger.Error("api: ingest failed", "err", err)
		w.Header().Set("Retry-After", "1")
		writeError(w, http.StatusServiceUnavailable, "", "ingest failed; retry with the same messageIds")
	}
}
