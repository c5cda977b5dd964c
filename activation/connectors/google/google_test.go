package google_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"regexp"
	"strings"
	"sync"
	"testing"

	"github.com/aurumcdp/aurum/activation/connector"
	"github.com/aurumcdp/aurum/activation/connectors/google"
	"github.com/aurumcdp/aurum/activation/connectortest"
)

// fake is a fake of Google's OAuth 2.0 token endpoint and of the Google Ads
// API's OfflineUserDataJobService (REST), from the public documentation
// (developers.google.com/google-ads/api/docs/remarketing/audience-segments/customer-match/get-started,
// .../reference/rest/v17/customers.offlineUserDataJobs): tokens from a
// refresh token (they expire after a second here, so the connector must
// refresh); every call needs Authorization: Bearer and developer-token
// (401 UNAUTHENTICATED otherwise); create → {"resourceName"}; addOperations
// with create/remove of userIdentifiers (hashedEmail, hashedPhoneNumber:
// SHA-256 hex; at most 100,000 identifiers a request); run → a long-running
// operation; the members change when the job runs. Throttled: 429
// RESOURCE_EXHAUSTED; outage: 503 UNAVAILABLE.
type fake struct {
	customer, list string
	book           *connectortest.Book
	faults         *connectortest.Faults

	mu       sync.Mutex
	tokens   map[string]bool
	jobs     map[string][]map[string]any // job resource → operations
	ran      map[string]bool
	n        int
	refreshs int
}

func newFake() *fake {
	return &fake{customer: "1234567890", list: "555", book: connectortest.NewBook(), faults: &connectortest.Faults{},
		tokens: map[string]bool{}, jobs: map[string][]map[string]any{}, ran: map[string]bool{}}
}

var hex64 = regexp.MustCompile(`^[0-9a-f]{64}$`)

func gError(w http.ResponseWriter, code int, status, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(map[string]any{"error": map[string]any{"code": code, "message": msg, "status": status}})
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(v)
}

func (f *fake) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if r.URL.Path == "/token" {
		_ = r.ParseForm()
		if r.PostForm.Get("grant_type") != "refresh_token" || r.PostForm.Get("refresh_token") != "1//refresh" ||
			r.PostForm.Get("client_id") != "cid.apps.googleusercontent.com" || r.PostForm.Get("client_secret") != "csecret" {
			w.WriteHeader(http.StatusBadRequest)
			writeJSON(w, map[string]string{"error": "invalid_grant"})
			return
		}
		f.n++
		f.refreshs++
		tok := fmt.Sprintf("ya29.token-%d", f.n)
		f.tokens[tok] = true
		writeJSON(w, map[string]any{"access_token": tok, "expires_in": 1, "token_type": "Bearer"})
		return
	}
	if !f.tokens[strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer ")] || r.Header.Get("developer-token") != "devtoken" {
		gError(w, http.StatusUnauthorized, "UNAUTHENTICATED", "Request is missing required authentication credential.")
		return
	}
	switch f.faults.Get() {
	case connectortest.Throttle:
		gError(w, http.StatusTooManyRequests, "RESOURCE_EXHAUSTED", "Resource has been exhausted (e.g. check quota).")
		return
	case connectortest.Outage:
		gError(w, http.StatusServiceUnavailable, "UNAVAILABLE", "The service is currently unavailable.")
		return
	}
	cust := "/v17/customers/" + f.customer
	p := r.URL.Path
	switch {
	case r.Method == http.MethodPost && p == cust+"/offlineUserDataJobs:create":
		var req struct {
			Job struct {
				Type     string `json:"type"`
				Metadata struct {
					UserList string `json:"userList"`
				} `json:"customerMatchUserListMetadata"`
			} `json:"job"`
		}
		if json.NewDecoder(r.Body).Decode(&req) != nil || req.Job.Type != "CUSTOMER_MATCH_USER_LIST" ||
			req.Job.Metadata.UserList != "customers/"+f.customer+"/userLists/"+f.list {
			gError(w, http.StatusBadRequest, "INVALID_ARGUMENT", "Request contains an invalid argument.")
			return
		}
		f.n++
		res := fmt.Sprintf("customers/%s/offlineUserDataJobs/%d", f.customer, f.n)
		f.jobs[res] = nil
		writeJSON(w, map[string]string{"resourceName": res})
	case r.Method == http.MethodPost && strings.HasSuffix(p, ":addOperations"):
		job := strings.TrimSuffix(strings.TrimPrefix(p, "/v17/"), ":addOperations")
		if _, ok := f.jobs[job]; !ok || f.ran[job] {
			gError(w, http.StatusBadRequest, "INVALID_ARGUMENT", "offline user data job not found or already running")
			return
		}
		var req struct {
			Operations []map[string]struct {
				UserIdentifiers []map[string]string `json:"userIdentifiers"`
			} `json:"operations"`
		}
		if json.NewDecoder(r.Body).Decode(&req) != nil || len(req.Operations) == 0 {
			gError(w, http.StatusBadRequest, "INVALID_ARGUMENT", "operations required")
			return
		}
		n := 0
		for _, op := range req.Operations {
			for kind, ud := range op {
				if kind != "create" && kind != "remove" {
					gError(w, http.StatusBadRequest, "INVALID_ARGUMENT", "unknown operation "+kind)
					return
				}
				for _, id := range ud.UserIdentifiers {
					n++
					for k, v := range id {
						if (k != "hashedEmail" && k != "hashedPhoneNumber") || !hex64.MatchString(v) {
							gError(w, http.StatusBadRequest, "INVALID_ARGUMENT", "bad user identifier "+k)
							return
						}
					}
				}
				f.jobs[job] = append(f.jobs[job], map[string]any{"kind": kind, "ids": ud.UserIdentifiers})
			}
		}
		if n > 100000 {
			gError(w, http.StatusBadRequest, "INVALID_ARGUMENT", "too many user identifiers (100,000 at most)")
			return
		}
		writeJSON(w, map[string]any{})
	case r.Method == http.MethodPost && strings.HasSuffix(p, ":run"):
		job := strings.TrimSuffix(strings.TrimPrefix(p, "/v17/"), ":run")
		if _, ok := f.jobs[job]; !ok || f.ran[job] {
			gError(w, http.StatusBadRequest, "INVALID_ARGUMENT", "offline user data job not found or already running")
			return
		}
		f.ran[job] = true
		for _, op := range f.jobs[job] {
			for _, id := range op["ids"].([]map[string]string) {
				key := id["hashedEmail"]
				if key == "" {
					continue
				}
				if op["kind"] == "create" {
					f.book.Add("vip", key)
				} else {
					f.book.Remove("vip", key)
				}
			}
		}
		f.book.Request()
		writeJSON(w, map[string]string{"name": "customers/" + f.customer + "/operations/" + strings.TrimPrefix(job, "customers/"+f.customer+"/offlineUserDataJobs/")})
	default:
		gError(w, http.StatusNotFound, "NOT_FOUND", "no route "+p)
	}
}

func config(f *fake) func(string) json.RawMessage {
	return func(u string) json.RawMessage {
		return json.RawMessage(fmt.Sprintf(`{"customer_id":%q,"developer_token":"devtoken","client_id":"cid.apps.googleusercontent.com",
			"client_secret":"csecret","refresh_token":"1//refresh","user_lists":{"vip":%q},"api_url":%q,"token_url":%q}`,
			f.customer, f.list, u+"/v17", u+"/token"))
	}
}

func TestCustomerMatch(t *testing.T) {
	f := newFake()
	connectortest.Run(t, connectortest.Case{
		Kind: "google_customer_match", Config: config(f),
		Handler: f, Book: f.book, Faults: f.faults,
		Key: func(email, _ string) string { return connector.SHA256Hex(email) },
	})
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.refreshs < 2 {
		t.Fatalf("%d token refreshes: the 1-second tokens were not refreshed", f.refreshs)
	}
}

func TestNormalization(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{" John.Doe@GMAIL.com ", "johndoe@gmail.com"},
		{"j.d@googlemail.com", "jd@googlemail.com"},
		{"J.D@Example.com", "j.d@example.com"},
	} {
		if got := google.NormalizeEmail(tc.in); got != tc.want {
			t.Errorf("NormalizeEmail(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
	ids := google.Identifiers([]string{"a@b.c"}, []string{"+1 650 555 1212"})
	if len(ids) != 2 || ids[1]["hashedPhoneNumber"] != connector.SHA256Hex("+16505551212") {
		t.Fatalf("identifiers %v", ids)
	}
}

// TestRecordedRequest: docs/connectors.md shows what the connector sends
// (its third: the operations, after the token and the job creation).
func TestRecordedRequest(t *testing.T) {
	f := newFake()
	skipToken := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { f.ServeHTTP(w, r) })
	got := connectortest.RecordNth(t, "google_customer_match", skipToken, config(f), 3)
	connectortest.CheckDoc(t, "google_customer_match", got)
}
