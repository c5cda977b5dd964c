package sms_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"regexp"
	"strings"
	"testing"

	"github.com/aurumcdp/aurum/activation/connectortest"
)

// twilio is a fake of Twilio's Programmable Messaging API, from its public
// documentation (https://www.twilio.com/docs/messaging/api/message-resource):
// POST /2010-04-01/Accounts/{AccountSid}/Messages.json, HTTP basic auth
// (AccountSid:AuthToken), form-encoded To, From or MessagingServiceSid,
// Body; 201 with the Message resource; errors as JSON {code, message,
// more_info, status}: 401 (20003) for bad credentials, 400 (21211) for an
// invalid To, 429 (20429) when throttled.
type twilio struct {
	sid, token string
	book       *connectortest.Book
	faults     *connectortest.Faults
}

var e164 = regexp.MustCompile(`^\+[1-9][0-9]{6,14}$`)

func twilioError(w http.ResponseWriter, status, code int, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]any{"code": code, "message": msg, "status": status,
		"more_info": fmt.Sprintf("https://www.twilio.com/docs/errors/%d", code)})
}

func (f *twilio) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost || r.URL.Path != "/2010-04-01/Accounts/"+f.sid+"/Messages.json" {
		twilioError(w, http.StatusNotFound, 20404, "The requested resource was not found")
		return
	}
	if u, p, ok := r.BasicAuth(); !ok || u != f.sid || p != f.token {
		twilioError(w, http.StatusUnauthorized, 20003, "Authenticate")
		return
	}
	switch f.faults.Get() {
	case connectortest.Throttle:
		twilioError(w, http.StatusTooManyRequests, 20429, "Too Many Requests")
		return
	case connectortest.Outage:
		twilioError(w, http.StatusServiceUnavailable, 20500, "Service Unavailable")
		return
	}
	if ct := r.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/x-www-form-urlencoded") {
		twilioError(w, http.StatusBadRequest, 20001, "Content-Type must be application/x-www-form-urlencoded")
		return
	}
	if err := r.ParseForm(); err != nil {
		twilioError(w, http.StatusBadRequest, 20001, err.Error())
		return
	}
	to, body := r.PostForm.Get("To"), r.PostForm.Get("Body")
	if !e164.MatchString(to) {
		twilioError(w, http.StatusBadRequest, 21211, fmt.Sprintf("The 'To' number %s is not a valid phone number.", to))
		return
	}
	if r.PostForm.Get("From") == "" && r.PostForm.Get("MessagingServiceSid") == "" {
		twilioError(w, http.StatusBadRequest, 21603, "The 'From' phone number is required.")
		return
	}
	if body == "" || len(body) > 1600 {
		twilioError(w, http.StatusBadRequest, 21617, "The concatenated message body exceeds the 1600 character limit.")
		return
	}
	f.book.Request()
	f.book.Send(to)
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusCreated)
	_ = json.NewEncoder(w).Encode(map[string]any{"sid": "SM" + strings.Repeat("0", 32), "to": to, "body": body, "status": "queued"})
}

// smsCase is the suite's case of the sms kind against a new fake.
func smsCase() connectortest.Case {
	f := &twilio{sid: "AC0123456789abcdef0123456789abcdef", token: "token-0123456789", book: connectortest.NewBook(), faults: &connectortest.Faults{}}
	return connectortest.Case{
		Kind: "sms",
		Config: func(url string) json.RawMessage {
			return json.RawMessage(fmt.Sprintf(`{"account_sid":%q,"auth_token":%q,"from":"+4512345678","body":"Hi {{.Traits.first_name}}, welcome to {{.Audience}}","api_url":%q}`, f.sid, f.token, url))
		},
		Handler: f, Book: f.book, Faults: f.faults,
		Key: connectortest.KeyPhone, Messages: true,
	}
}

func TestSMS(t *testing.T) { connectortest.Run(t, smsCase()) }

// TestSMSFailover: the first sync's marks survive a move of the
// deliveries to another node (connectortest.Failover): nobody gets a
// second text.
func TestSMSFailover(t *testing.T) { connectortest.Failover(t, smsCase()) }

// TestRecordedRequest: docs/connectors.md shows what the connector sends.
func TestRecordedRequest(t *testing.T) {
	f := &twilio{sid: "AC0123456789abcdef0123456789abcdef", token: "token-0123456789", book: connectortest.NewBook(), faults: &connectortest.Faults{}}
	got := connectortest.Record(t, "sms", f, func(url string) json.RawMessage {
		return json.RawMessage(fmt.Sprintf(`{"account_sid":%q,"auth_token":%q,"from":"+4512345678","body":"Hi {{.Traits.first_name}}, welcome to {{.Audience}}","api_url":%q}`, f.sid, f.token, url))
	})
	connectortest.CheckDoc(t, "sms", got)
}
