package meta_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"

	"github.com/aurumcdp/aurum/activation/connector"
	"github.com/aurumcdp/aurum/activation/connectors/meta"
	"github.com/aurumcdp/aurum/activation/connectortest"
)

// fake is a fake of the Marketing API's Custom Audience users edge, from
// Meta's public documentation (developers.facebook.com/docs/marketing-api/audiences/guides/custom-audiences,
// "Add users" / "Remove users"): POST (add) or DELETE (remove)
// /<version>/<audience id>/users with access_token and payload
// {"schema": [...], "data": [[...], ...]}, at most 10,000 rows; answers
// {"audience_id", "num_received", "num_invalid_entries"}; Graph errors
// {"error": {"message", "type", "code", "fbtrace_id"}}: code 190 for a bad
// token, 100 for an invalid parameter, 80003 when the ad account's custom
// audience calls are throttled, code 2 with is_transient on a server
// error.
type fake struct {
	token    string
	audience string // the Custom Audience id of "vip"
	book     *connectortest.Book
	faults   *connectortest.Faults
}

var sha256Hex = regexp.MustCompile(`^[0-9a-f]{64}$`)

func graphError(w http.ResponseWriter, status, code int, msg string, transient bool) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]any{"error": map[string]any{"message": msg, "type": "OAuthException",
		"code": code, "is_transient": transient, "fbtrace_id": "AbCdEf"}})
}

func (f *fake) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	form, err := url.ParseQuery(string(body))
	if err != nil || form.Get("access_token") != f.token {
		graphError(w, http.StatusBadRequest, 190, "Invalid OAuth access token.", false)
		return
	}
	if r.URL.Path != "/v19.0/"+f.audience+"/users" || (r.Method != http.MethodPost && r.Method != http.MethodDelete) {
		graphError(w, http.StatusBadRequest, 100, "Unsupported request", false)
		return
	}
	switch f.faults.Get() {
	case connectortest.Throttle:
		graphError(w, http.StatusBadRequest, 80003, "There have been too many calls to this ad-account. Wait a bit and try again.", true)
		return
	case connectortest.Outage:
		graphError(w, http.StatusInternalServerError, 2, "An unexpected error has occurred. Please retry your request later.", true)
		return
	}
	var p struct {
		Schema []string    `json:"schema"`
		Data   [][2]string `json:"data"`
	}
	if json.Unmarshal([]byte(form.Get("payload")), &p) != nil || strings.Join(p.Schema, ",") != "EMAIL,PHONE" {
		graphError(w, http.StatusBadRequest, 100, "(#100) Invalid parameter: payload", false)
		return
	}
	if len(p.Data) == 0 || len(p.Data) > 10000 {
		graphError(w, http.StatusBadRequest, 100, "(#100) The number of users must be between 1 and 10000", false)
		return
	}
	invalid := 0
	for _, row := range p.Data {
		for _, h := range row {
			if h != "" && !sha256Hex.MatchString(h) {
				invalid++
			}
		}
		if r.Method == http.MethodPost {
			f.book.Add("vip", row[0])
		} else {
			f.book.Remove("vip", row[0])
		}
	}
	f.book.Request()
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(map[string]any{"audience_id": f.audience, "num_received": len(p.Data), "num_invalid_entries": invalid})
}

func TestMetaAudience(t *testing.T) {
	f := &fake{token: "EAAB-0123456789", audience: "23850000000000001", book: connectortest.NewBook(), faults: &connectortest.Faults{}}
	connectortest.Run(t, connectortest.Case{
		Kind: "meta_audience",
		Config: func(u string) json.RawMessage {
			return json.RawMessage(fmt.Sprintf(`{"access_token":%q,"custom_audiences":{"vip":%q},"api_url":%q}`, f.token, f.audience, u+"/v19.0"))
		},
		Handler: f, Book: f.book, Faults: f.faults,
		Key: func(email, _ string) string { return connector.SHA256Hex(email) },
	})
}

// TestNormalization checks the hashes against Meta's documented
// normalisation (trim, lower-case; phone digits with the country code, no
// + or leading zeros).
func TestNormalization(t *testing.T) {
	for _, tc := range []struct {
		email, phone string
		want         [2]string
	}{
		{" Jane.Doe@Example.COM ", "+1 (650) 555-1212", [2]string{connector.SHA256Hex("jane.doe@example.com"), connector.SHA256Hex("16505551212")}},
		{"", "0045 20 00 00 01", [2]string{"", connector.SHA256Hex("4520000001")}},
		{"a@b.c", "", [2]string{connector.SHA256Hex("a@b.c"), ""}},
	} {
		var emails, phones []string
		if tc.email != "" {
			emails = []string{tc.email}
		}
		if tc.phone != "" {
			phones = []string{tc.phone}
		}
		if got := meta.Row(emails, phones); got != tc.want {
			t.Errorf("Row(%q, %q) = %v, want %v", tc.email, tc.phone, got, tc.want)
		}
	}
	// The documented example: SHA-256 of "test@example.com".
	if got := connector.SHA256Hex(connector.NormalizeEmail(" Test@Example.com")); got != "973dfe463ec85785f5f95af5ba3906eedb2d931c24e69824a89ea65dba4e813b" {
		t.Errorf("hash of test@example.com = %s", got)
	}
}

// TestRecordedRequest: docs/connectors.md shows what the connector sends.
func TestRecordedRequest(t *testing.T) {
	f := &fake{token: "EAAB-0123456789", audience: "23850000000000001", book: connectortest.NewBook(), faults: &connectortest.Faults{}}
	got := connectortest.Record(t, "meta_audience", f, func(u string) json.RawMessage {
		return json.RawMessage(fmt.Sprintf(`{"access_token":%q,"custom_audiences":{"vip":%q},"api_url":%q}`, f.token, f.audience, u+"/v19.0"))
	})
	connectortest.CheckDoc(t, "meta_audience", got)
}
