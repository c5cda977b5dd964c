// Package sms is the "sms" destination kind: on entry into an audience, a
// text message from a template, sent through a Twilio-compatible REST API
// (Programmable Messaging: POST /2010-04-01/Accounts/{AccountSid}/Messages.json,
// form-encoded To, From or MessagingServiceSid, Body; HTTP basic auth with
// the account SID and auth token).
//
// The API takes one message per request: a batch is sent one message after
// the other, and the first throttled or failed request leaves the rest to
// a retry. A 429 (Twilio error 20429) or 5xx is retried after Retry-After;
// another 4xx (e.g. 21211, an invalid To number) is a permanent failure
// with Twilio's code and message. The API has no idempotency key: a message
// whose response is lost (a timeout after Twilio accepted it) is sent again
// by the retry.
package sms

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strings"

	"github.com/aurumcdp/aurum/activation/connector"
)

// DefaultAPIURL is Twilio's API.
const DefaultAPIURL = "https://api.twilio.com"

// MaxBatch is how many messages one Deliver sends (one request each). One: a text or an
// email cannot be taken back, so each is its own delivery step, with the
// delivery fence checked before it (a node that lost the deliveries sends
// nothing more) and, in a first sync, its own in-doubt mark (after a crash
// at most the one message in flight is of unknown outcome).
const MaxBatch = 1

// Kind is the sms destination kind.
var Kind = connector.Kind{
	Name:    "sms",
	Channel: "sms",
	Secrets: []string{"auth_token"},
	New:     New,
}

// Config is an sms destination's config.
type Config struct {
	AccountSID          string `json:"account_sid"`
	AuthToken           string `json:"auth_token"`
	From                string `json:"from,omitempty"`
	MessagingServiceSID string `json:"messaging_service_sid,omitempty"`
	// Body is the message template (connector.Template).
	Body string `json:"body"`
	// APIURL is the API's base URL (default DefaultAPIURL).
	APIURL string `json:"api_url,omitempty"`
}

type sender struct {
	cfg  Config
	body *connector.Template
	env  connector.Env
}

// New checks config and returns the connector.
func New(config json.RawMessage, env connector.Env) (connector.Connector, error) {
	var c Config
	if err := connector.DecodeConfig(config, &c); err != nil {
		return nil, err
	}
	if c.APIURL == "" {
		c.APIURL = DefaultAPIURL
	}
	if err := connector.Required("account_sid", c.AccountSID, "auth_token", c.AuthToken); err != nil {
		return nil, err
	}
	if (c.From == "") == (c.MessagingServiceSID == "") {
		return nil, connector.Fieldf("from", "give exactly one of from and messaging_service_sid")
	}
	if err := connector.CheckURL("api_url", c.APIURL); err != nil {
		return nil, err
	}
	t, err := connector.ParseTemplate("body", c.Body)
	if err != nil {
		return nil, err
	}
	return &sender{cfg: c, body: t, env: env}, nil
}

func (s *sender) MaxBatch() int { return MaxBatch }

func (s *sender) Deliver(ctx context.Context, changes []connector.Change) []connector.Result {
	out := make([]connector.Result, len(changes))
	for i, c := range changes {
		if ctx.Err() != nil {
			out[i] = connector.Result{Status: connector.Retry, Reason: ctx.Err().Error()}
			continue
		}
		if i > 0 && out[i-1].Status == connector.Retry {
			out[i] = out[i-1] // throttled: leave the rest to the retry
			continue
		}
		out[i] = s.send(ctx, c)
	}
	return out
}

func (s *sender) send(ctx context.Context, c connector.Change) connector.Result {
	to := connector.Last(c.Phones)
	if c.Op != connector.Add || to == "" {
		return connector.Result{Status: connector.Delivered} // nothing to send
	}
	body, err := s.body.Render(c)
	if err != nil {
		return connector.Result{Status: connector.Failed, Reason: err.Error()}
	}
	form := url.Values{"To": {to}, "Body": {body}}
	if s.cfg.From != "" {
		form.Set("From", s.cfg.From)
	} else {
		form.Set("MessagingServiceSid", s.cfg.MessagingServiceSID)
	}
	u := strings.TrimRight(s.cfg.APIURL, "/") + "/2010-04-01/Accounts/" + url.PathEscape(s.cfg.AccountSID) + "/Messages.json"
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, strings.NewReader(form.Encode()))
	if err != nil {
		return connector.Result{Status: connector.Failed, Reason: err.Error()}
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("User-Agent", "aurum-connector")
	req.SetBasicAuth(s.cfg.AccountSID, s.cfg.AuthToken)
	resp := connector.Do(s.env.Client, req, s.env.Now())
	res := resp.Result()
	if !resp.OK() {
		var e struct {
			Code    int    `json:"code"`
			Message string `json:"message"`
		}
		if json.Unmarshal(resp.Body, &e) == nil && e.Message != "" {
			res.Reason = fmt.Sprintf("status %d: twilio error %d: %s", resp.Status, e.Code, e.Message)
		}
	}
	return res
}
