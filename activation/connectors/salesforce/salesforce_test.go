package salesforce_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aurumcdp/aurum/activation/connectortest"
)

// fake is a fake of Salesforce's OAuth 2.0 token endpoint and REST API,
// from the public documentation (help.salesforce.com "OAuth 2.0 Refresh
// Token Flow"; developer.salesforce.com REST API Developer Guide: sObject
// Collections upsert/create/delete, Query): the token response has
// access_token and instance_url (no expiry: sessions end on the org's
// timeout, here every 300 ms, answered 401 [{"errorCode":
// "INVALID_SESSION_ID"}]); collections take at most 200 records and answer
// per record {id, success, errors: [{statusCode, message}]}; a second
// CampaignMember of a contact is DUPLICATE_VALUE; the org's API limit is
// 403 REQUEST_LIMIT_EXCEEDED; an outage is 503 SERVER_UNAVAILABLE.
type fake struct {
	campaign string
	book     *connectortest.Book
	faults   *connectortest.Faults
	url      string

	mu        sync.Mutex
	tokens    map[string]time.Time // token → issued
	refreshes int
	contacts  map[string]string            // external id (email) → contact id
	byID      map[string]string            // contact id → email
	fields    map[string]map[string]any    // contact id → fields
	members   map[string]map[string]string // member id → {CampaignId, ContactId}
	n         int
}

func newFake() *fake {
	return &fake{campaign: "701000000000001AAA", book: connectortest.NewBook(), faults: &connectortest.Faults{},
		tokens: map[string]time.Time{}, contacts: map[string]string{}, byID: map[string]string{}, fields: map[string]map[string]any{},
		members: map[string]map[string]string{}}
}

func sfErrors(w http.ResponseWriter, status int, code, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode([]map[string]string{{"errorCode": code, "message": msg}})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

var inList = regexp.MustCompile(`(ContactId|Contact\.Aurum_Email__c) IN \(([^)]*)\)`)

func (f *fake) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if r.URL.Path == "/services/oauth2/token" {
		_ = r.ParseForm()
		if r.PostForm.Get("grant_type") != "refresh_token" || r.PostForm.Get("refresh_token") != "5Aep861-refresh" ||
			r.PostForm.Get("client_id") != "3MVG9-client" || r.PostForm.Get("client_secret") != "sf-secret" {
			writeJSON(w, http.StatusBadRequest, map[string]string{"error": "invalid_grant", "error_description": "expired access/refresh token"})
			return
		}
		f.n++
		f.refreshes++
		tok := fmt.Sprintf("00Dxx!token-%d", f.n)
		f.tokens[tok] = time.Now()
		writeJSON(w, http.StatusOK, map[string]string{"access_token": tok, "instance_url": f.url, "token_type": "Bearer", "issued_at": "1733045400000"})
		return
	}
	issued, ok := f.tokens[strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer ")]
	if !ok || time.Since(issued) > 300*time.Millisecond {
		sfErrors(w, http.StatusUnauthorized, "INVALID_SESSION_ID", "Session expired or invalid")
		return
	}
	switch f.faults.Get() {
	case connectortest.Throttle:
		sfErrors(w, http.StatusForbidden, "REQUEST_LIMIT_EXCEEDED", "TotalRequests Limit exceeded.")
		return
	case connectortest.Outage:
		sfErrors(w, http.StatusServiceUnavailable, "SERVER_UNAVAILABLE", "Server unavailable")
		return
	}
	p := strings.TrimPrefix(r.URL.Path, "/services/data/v60.0")
	switch {
	case r.Method == http.MethodPatch && p == "/composite/sobjects/Contact/Aurum_Email__c":
		var req struct {
			Records []map[string]any `json:"records"`
		}
		if json.NewDecoder(r.Body).Decode(&req) != nil || len(req.Records) == 0 || len(req.Records) > 200 {
			sfErrors(w, http.StatusBadRequest, "INVALID_FIELD", "records: 1 to 200")
			return
		}
		var out []map[string]any
		for _, rec := range req.Records {
			ext, _ := rec["Aurum_Email__c"].(string)
			if ext == "" || rec["LastName"] == nil {
				out = append(out, map[string]any{"success": false, "errors": []map[string]string{{"statusCode": "REQUIRED_FIELD_MISSING", "message": "Required fields are missing: [LastName]"}}})
				continue
			}
			id, ok := f.contacts[ext]
			if !ok {
				f.n++
				id = fmt.Sprintf("003%015d", f.n)
				f.contacts[ext], f.byID[id] = id, ext
			}
			f.fields[id] = rec
			out = append(out, map[string]any{"id": id, "success": true, "created": !ok, "errors": []any{}})
		}
		f.book.Request()
		writeJSON(w, http.StatusOK, out)
	case r.Method == http.MethodPost && p == "/composite/sobjects":
		var req struct {
			Records []map[string]any `json:"records"`
		}
		if json.NewDecoder(r.Body).Decode(&req) != nil || len(req.Records) == 0 || len(req.Records) > 200 {
			sfErrors(w, http.StatusBadRequest, "INVALID_FIELD", "records: 1 to 200")
			return
		}
		var out []map[string]any
		for _, rec := range req.Records {
			cid, _ := rec["ContactId"].(string)
			camp, _ := rec["CampaignId"].(string)
			email, ok := f.byID[cid]
			if !ok || camp != f.campaign {
				out = append(out, map[string]any{"success": false, "errors": []map[string]string{{"statusCode": "INVALID_CROSS_REFERENCE_KEY", "message": "invalid cross reference id"}}})
				continue
			}
			dup := false
			for _, m := range f.members {
				if m["ContactId"] == cid && m["CampaignId"] == camp {
					dup = true
				}
			}
			if dup {
				out = append(out, map[string]any{"success": false, "errors": []map[string]string{{"statusCode": "DUPLICATE_VALUE", "message": "Already a campaign member."}}})
				continue
			}
			f.n++
			id := fmt.Sprintf("00v%015d", f.n)
			f.members[id] = map[string]string{"CampaignId": camp, "ContactId": cid}
			f.book.Add("vip", email)
			out = append(out, map[string]any{"id": id, "success": true, "errors": []any{}})
		}
		f.book.Request()
		writeJSON(w, http.StatusOK, out)
	case r.Method == http.MethodGet && p == "/query":
		q := r.URL.Query().Get("q")
		if !strings.HasPrefix(q, "SELECT Id FROM CampaignMember WHERE CampaignId = '"+f.campaign+"'") {
			sfErrors(w, http.StatusBadRequest, "MALFORMED_QUERY", "unexpected query "+q)
			return
		}
		want := map[string]bool{}
		for _, m := range inList.FindAllStringSubmatch(q, -1) {
			for _, v := range strings.Split(m[2], ",") {
				v = strings.Trim(strings.TrimSpace(v), "'")
				if m[1] == "ContactId" {
					want[v] = true
				} else if id, ok := f.contacts[v]; ok {
					want[id] = true
				}
			}
		}
		var recs []map[string]any
		for id, m := range f.members {
			if want[m["ContactId"]] {
				recs = append(recs, map[string]any{"attributes": map[string]string{"type": "CampaignMember"}, "Id": id})
			}
		}
		writeJSON(w, http.StatusOK, map[string]any{"totalSize": len(recs), "done": true, "records": recs})
	case r.Method == http.MethodDelete && p == "/composite/sobjects":
		var out []map[string]any
		for _, id := range strings.Split(r.URL.Query().Get("ids"), ",") {
			m, ok := f.members[id]
			if !ok {
				out = append(out, map[string]any{"id": id, "success": false, "errors": []map[string]string{{"statusCode": "ENTITY_IS_DELETED", "message": "entity is deleted"}}})
				continue
			}
			delete(f.members, id)
			f.book.Remove("vip", f.byID[m["ContactId"]])
			out = append(out, map[string]any{"id": id, "success": true, "errors": []any{}})
		}
		writeJSON(w, http.StatusOK, out)
	case r.Method == http.MethodDelete && strings.HasPrefix(p, "/sobjects/Contact/"):
		id := strings.TrimPrefix(p, "/sobjects/Contact/")
		email, ok := f.byID[id]
		if !ok {
			sfErrors(w, http.StatusNotFound, "NOT_FOUND", "The requested resource does not exist")
			return
		}
		delete(f.byID, id)
		delete(f.contacts, email)
		for mid, m := range f.members {
			if m["ContactId"] == id {
				delete(f.members, mid)
			}
		}
		f.book.Delete(email)
		w.WriteHeader(http.StatusNoContent)
	default:
		sfErrors(w, http.StatusNotFound, "NOT_FOUND", "no route "+r.Method+" "+p)
	}
}

func config(f *fake) func(string) json.RawMessage {
	return func(u string) json.RawMessage {
		f.mu.Lock()
		f.url = u
		f.mu.Unlock()
		return json.RawMessage(fmt.Sprintf(`{"client_id":"3MVG9-client","client_secret":"sf-secret","refresh_token":"5Aep861-refresh",
			"token_url":%q,"external_id_field":"Aurum_Email__c","fields":{"FirstName":"first_name"},"campaigns":{"vip":%q}}`,
			u+"/services/oauth2/token", f.campaign))
	}
}

// suiteCase is the suite's case of the salesforce kind against f.
func (f *fake) suiteCase() connectortest.Case {
	return connectortest.Case{
		Kind: "salesforce", Config: config(f),
		Handler: f, Book: f.book, Faults: f.faults,
		Key: connectortest.KeyEmail, Deletes: true,
	}
}

func TestSalesforce(t *testing.T) {
	f := newFake()
	connectortest.Run(t, f.suiteCase())
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.refreshes < 2 {
		t.Fatalf("%d token refreshes: expired sessions were not refreshed", f.refreshes)
	}
	if got := f.fields[f.contacts[connectortest.Email(1)]]["FirstName"]; got != "P1" {
		t.Fatalf("contact 1's FirstName = %v, want P1", got)
	}
}

// TestSalesforceFailover: the Contact ids n2 recorded (members, and a
// former member) let n1, which delivers after partition 0 moved, erase
// them (connectortest.Failover).
func TestSalesforceFailover(t *testing.T) { connectortest.Failover(t, newFake().suiteCase()) }

// TestRecordedRequest: docs/connectors.md shows the upsert (after the token
// request).
func TestRecordedRequest(t *testing.T) {
	f := newFake()
	got := connectortest.RecordNth(t, "salesforce", f, config(f), 2)
	connectortest.CheckDoc(t, "salesforce", got)
}
