package hubspot_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/aurumcdp/aurum/activation/connectortest"
)

// fake is a fake of HubSpot's CRM v3 contacts and Lists v3 APIs, from the
// public documentation (developers.hubspot.com/docs/api/crm/contacts,
// /crm/lists): Bearer token auth (401 {"status":"error","category":"INVALID_AUTHENTICATION"}),
// batch calls of at most 100 inputs (400 VALIDATION_ERROR beyond), 429
// {"errorType":"RATE_LIMIT","policyName":"TEN_SECONDLY_ROLLING"} when
// throttled, list look-up by name (404 when absent), MANUAL lists whose
// memberships are changed with PUT .../memberships/add|remove and a JSON
// array of record ids, and GDPR deletion.
type fake struct {
	token  string
	book   *connectortest.Book
	faults *connectortest.Faults

	mu       sync.Mutex
	byEmail  map[string]string // email → contact id
	byID     map[string]string // contact id → email
	lists    map[string]string // list name → id
	listName map[string]string // id → name
	props    map[string]map[string]any
}

func newFake() *fake {
	return &fake{token: "pat-na1-0123456789", book: connectortest.NewBook(), faults: &connectortest.Faults{},
		byEmail: map[string]string{}, byID: map[string]string{}, lists: map[string]string{}, listName: map[string]string{},
		props: map[string]map[string]any{}}
}

func hsError(w http.ResponseWriter, status int, category, msg string, extra map[string]any) {
	body := map[string]any{"status": "error", "message": msg, "category": category, "correlationId": "00000000-0000-0000-0000-000000000000"}
	for k, v := range extra {
		body[k] = v
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(body)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func (f *fake) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Header.Get("Authorization") != "Bearer "+f.token {
		hsError(w, http.StatusUnauthorized, "INVALID_AUTHENTICATION", "Authentication credentials not found.", nil)
		return
	}
	switch f.faults.Get() {
	case connectortest.Throttle:
		hsError(w, http.StatusTooManyRequests, "RATE_LIMITS", "You have reached your ten_secondly_rolling limit.",
			map[string]any{"errorType": "RATE_LIMIT", "policyName": "TEN_SECONDLY_ROLLING"})
		return
	case connectortest.Outage:
		hsError(w, http.StatusBadGateway, "INTERNAL_ERROR", "Bad Gateway", nil)
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	p := r.URL.Path
	switch {
	case r.Method == http.MethodPost && p == "/crm/v3/objects/contacts/batch/upsert":
		var req struct {
			Inputs []struct {
				IDProperty string         `json:"idProperty"`
				ID         string         `json:"id"`
				Properties map[string]any `json:"properties"`
			} `json:"inputs"`
		}
		if json.NewDecoder(r.Body).Decode(&req) != nil || len(req.Inputs) == 0 || len(req.Inputs) > 100 {
			hsError(w, http.StatusBadRequest, "VALIDATION_ERROR", "inputs: 1 to 100 required", nil)
			return
		}
		var results []map[string]any
		for _, in := range req.Inputs {
			if in.IDProperty != "email" || !strings.Contains(in.ID, "@") {
				hsError(w, http.StatusBadRequest, "VALIDATION_ERROR", "Property values were not valid: email", nil)
				return
			}
			id, ok := f.byEmail[in.ID]
			if !ok {
				id = fmt.Sprint(1000 + len(f.byEmail))
				f.byEmail[in.ID], f.byID[id] = id, in.ID
			}
			f.props[id] = in.Properties
			results = append(results, map[string]any{"id": id, "properties": map[string]any{"email": in.ID}})
		}
		f.book.Request()
		writeJSON(w, http.StatusOK, map[string]any{"status": "COMPLETE", "results": results})
	case r.Method == http.MethodPost && p == "/crm/v3/objects/contacts/batch/read":
		var req struct {
			IDProperty string              `json:"idProperty"`
			Inputs     []map[string]string `json:"inputs"`
		}
		if json.NewDecoder(r.Body).Decode(&req) != nil || req.IDProperty != "email" || len(req.Inputs) > 100 {
			hsError(w, http.StatusBadRequest, "VALIDATION_ERROR", "bad batch read", nil)
			return
		}
		var results []map[string]any
		for _, in := range req.Inputs {
			if id, ok := f.byEmail[in["id"]]; ok {
				results = append(results, map[string]any{"id": id, "properties": map[string]any{"email": in["id"]}})
			}
		}
		writeJSON(w, http.StatusOK, map[string]any{"status": "COMPLETE", "results": results})
	case r.Method == http.MethodGet && strings.HasPrefix(p, "/crm/v3/lists/object-type-id/0-1/name/"):
		name := strings.TrimPrefix(p, "/crm/v3/lists/object-type-id/0-1/name/")
		id, ok := f.lists[name]
		if !ok {
			hsError(w, http.StatusNotFound, "OBJECT_NOT_FOUND", "List does not exist with name "+name, nil)
			return
		}
		writeJSON(w, http.StatusOK, map[string]any{"list": map[string]any{"listId": id, "name": name, "processingType": "MANUAL"}})
	case r.Method == http.MethodPost && p == "/crm/v3/lists":
		var req map[string]string
		if json.NewDecoder(r.Body).Decode(&req) != nil || req["name"] == "" || req["objectTypeId"] != "0-1" || req["processingType"] != "MANUAL" {
			hsError(w, http.StatusBadRequest, "VALIDATION_ERROR", "name, objectTypeId and processingType required", nil)
			return
		}
		if _, ok := f.lists[req["name"]]; ok {
			hsError(w, http.StatusConflict, "CONFLICT", "A list with this name already exists", nil)
			return
		}
		id := fmt.Sprint(len(f.lists) + 1)
		f.lists[req["name"]], f.listName[id] = id, req["name"]
		writeJSON(w, http.StatusOK, map[string]any{"list": map[string]any{"listId": id, "name": req["name"], "processingType": "MANUAL"}})
	case r.Method == http.MethodPut && strings.HasPrefix(p, "/crm/v3/lists/") && (strings.HasSuffix(p, "/memberships/add") || strings.HasSuffix(p, "/memberships/remove")):
		parts := strings.Split(p, "/")
		name, ok := f.listName[parts[4]]
		if !ok {
			hsError(w, http.StatusNotFound, "OBJECT_NOT_FOUND", "list not found", nil)
			return
		}
		var ids []string
		if json.NewDecoder(r.Body).Decode(&ids) != nil {
			hsError(w, http.StatusBadRequest, "VALIDATION_ERROR", "want a JSON array of record ids", nil)
			return
		}
		audience := strings.TrimPrefix(name, "aurum-")
		var done, missing []string
		for _, id := range ids {
			email, ok := f.byID[id]
			if !ok {
				missing = append(missing, id)
				continue
			}
			if strings.HasSuffix(p, "/add") {
				f.book.Add(audience, email)
			} else {
				f.book.Remove(audience, email)
			}
			done = append(done, id)
		}
		f.book.Request()
		key := "recordIdsAdded"
		if strings.HasSuffix(p, "/remove") {
			key = "recordIdsRemoved"
		}
		writeJSON(w, http.StatusOK, map[string]any{key: done, "recordIdsMissing": missing})
	case r.Method == http.MethodPost && p == "/crm/v3/objects/contacts/gdpr-delete":
		var req map[string]string
		if json.NewDecoder(r.Body).Decode(&req) != nil {
			hsError(w, http.StatusBadRequest, "VALIDATION_ERROR", "objectId required", nil)
			return
		}
		email, ok := f.byID[req["objectId"]]
		if !ok {
			hsError(w, http.StatusNotFound, "OBJECT_NOT_FOUND", "contact not found", nil)
			return
		}
		delete(f.byID, req["objectId"])
		delete(f.byEmail, email)
		f.book.Delete(email)
		w.WriteHeader(http.StatusNoContent)
	default:
		hsError(w, http.StatusNotFound, "OBJECT_NOT_FOUND", "no route "+r.Method+" "+p, nil)
	}
}

func TestHubSpot(t *testing.T) {
	f := newFake()
	connectortest.Run(t, connectortest.Case{
		Kind: "hubspot",
		Config: func(url string) json.RawMessage {
			return json.RawMessage(fmt.Sprintf(`{"access_token":%q,"properties":{"firstname":"first_name"},"api_url":%q}`, f.token, url))
		},
		Handler: f, Book: f.book, Faults: f.faults,
		Key: connectortest.KeyEmail, Deletes: true,
	})
	f.mu.Lock()
	defer f.mu.Unlock()
	if got := f.props[f.byEmail[connectortest.Email(1)]]["firstname"]; got != "P1" {
		t.Fatalf("contact 1's firstname = %v, want the trait first_name (P1)", got)
	}
}

// TestRecordedRequest: docs/connectors.md shows what the connector sends.
func TestRecordedRequest(t *testing.T) {
	f := newFake()
	got := connectortest.Record(t, "hubspot", f, func(url string) json.RawMessage {
		return json.RawMessage(fmt.Sprintf(`{"access_token":%q,"properties":{"firstname":"first_name"},"api_url":%q}`, f.token, url))
	})
	connectortest.CheckDoc(t, "hubspot", got)
}
