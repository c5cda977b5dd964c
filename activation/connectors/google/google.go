// Package google is the "google_customer_match" destination kind: each
// audience is kept in step with a Google Ads Customer Match user list
// through the REST interface of OfflineUserDataJobService:
//
//	POST <api>/customers/<id>/offlineUserDataJobs:create   {"job": {"type": "CUSTOMER_MATCH_USER_LIST",
//	     "customerMatchUserListMetadata": {"userList": "customers/<id>/userLists/<list>"}}}
//	POST <api>/<job resource name>:addOperations   {"operations": [{"create"|"remove": {"userIdentifiers": [...]}}], "enablePartialFailure": true}
//	POST <api>/<job resource name>:run
//
// one job per audience and direction (adds; removals) per batch, with
// headers Authorization (an OAuth 2.0 access token, refreshed from the
// refresh token at the token endpoint), developer-token and, for a
// manager account, login-customer-id. Identifiers are normalised and
// hashed as Google documents: email trimmed and lower-cased (periods
// before the domain removed for gmail.com and googlemail.com), phone in
// E.164; SHA-256, hex. An erased person is removed with the hashes kept
// when they were added.
//
// 429 (RESOURCE_EXHAUSTED), 5xx and CONCURRENT_MODIFICATION (another job
// on the list) are retried; a 401 refreshes the token and retries; other
// errors fail with Google's message. Adding or removing a member twice
// changes nothing; a job left unrun by a failure is never run.
package google

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"

	"github.com/aurumcdp/aurum/activation/connector"
)

// Defaults.
const (
	DefaultAPIURL   = "https://googleads.googleapis.com/v17"
	DefaultTokenURL = "https://oauth2.googleapis.com/token"
)

// MaxBatch is the people of one batch (Google takes up to 100,000
// identifiers per addOperations request and recommends 10,000
// operations).
const MaxBatch = 10000

// Kind is the google_customer_match destination kind.
var Kind = connector.Kind{
	Name:           "google_customer_match",
	Channel:        "ads",
	KeepsList:      true,
	Secrets:        []string{"developer_token", "client_secret", "refresh_token"},
	New:            New,
	CheckAudiences: checkAudiences,
}

// Config is a google_customer_match destination's config.
type Config struct {
	CustomerID      string `json:"customer_id"`
	LoginCustomerID string `json:"login_customer_id,omitempty"`
	DeveloperToken  string `json:"developer_token"`
	ClientID        string `json:"client_id"`
	ClientSecret    string `json:"client_secret"`
	RefreshToken    string `json:"refresh_token"`
	// UserLists maps each Aurum audience to its Customer Match user list
	// id.
	UserLists map[string]string `json:"user_lists"`
	APIURL    string            `json:"api_url,omitempty"`
	TokenURL  string            `json:"token_url,omitempty"`
}

type client struct {
	cfg   Config
	env   connector.Env
	oauth *connector.OAuth
}

func digits(s string) bool { return s != "" && strings.Trim(s, "0123456789") == "" }

func parse(config json.RawMessage) (Config, error) {
	var c Config
	if err := connector.DecodeConfig(config, &c); err != nil {
		return c, err
	}
	if c.APIURL == "" {
		c.APIURL = DefaultAPIURL
	}
	if c.TokenURL == "" {
		c.TokenURL = DefaultTokenURL
	}
	if err := connector.Required("customer_id", c.CustomerID, "developer_token", c.DeveloperToken, "client_id", c.ClientID,
		"client_secret", c.ClientSecret, "refresh_token", c.RefreshToken); err != nil {
		return c, err
	}
	if !digits(c.CustomerID) {
		return c, connector.Fieldf("customer_id", "digits only, without dashes")
	}
	if c.LoginCustomerID != "" && !digits(c.LoginCustomerID) {
		return c, connector.Fieldf("login_customer_id", "digits only, without dashes")
	}
	if len(c.UserLists) == 0 {
		return c, connector.Fieldf("user_lists", "required: the Customer Match user list id of each audience")
	}
	for a, id := range c.UserLists {
		if !digits(id) {
			return c, connector.Fieldf("user_lists", "%s: %q is not a user list id (digits)", a, id)
		}
	}
	if err := connector.CheckURL("api_url", c.APIURL); err != nil {
		return c, err
	}
	return c, connector.CheckURL("token_url", c.TokenURL)
}

// New checks config and returns the connector.
func New(config json.RawMessage, env connector.Env) (connector.Connector, error) {
	c, err := parse(config)
	if err != nil {
		return nil, err
	}
	return &client{cfg: c, env: env, oauth: connector.RefreshTokenOAuth(c.TokenURL, c.ClientID, c.ClientSecret, c.RefreshToken)}, nil
}

func checkAudiences(config json.RawMessage, audiences []string) error {
	c, err := parse(config)
	if err != nil {
		return err
	}
	return connector.CheckMapped("user_lists", "user list", c.UserLists, audiences)
}

func (c *client) MaxBatch() int { return MaxBatch }

// NormalizeEmail is Google's email normalisation.
func NormalizeEmail(s string) string {
	s = connector.NormalizeEmail(s)
	local, domain, ok := strings.Cut(s, "@")
	if ok && (domain == "gmail.com" || domain == "googlemail.com") {
		s = strings.ReplaceAll(local, ".", "") + "@" + domain
	}
	return s
}

// Identifiers are a person's hashed identifiers, as Google's UserData.
func Identifiers(emails, phones []string) []map[string]string {
	var out []map[string]string
	if e := NormalizeEmail(connector.Last(emails)); e != "" {
		out = append(out, map[string]string{"hashedEmail": connector.SHA256Hex(e)})
	}
	if p := connector.NormalizePhoneE164(connector.Last(phones)); p != "" {
		out = append(out, map[string]string{"hashedPhoneNumber": connector.SHA256Hex(p)})
	}
	return out
}

func (c *client) Deliver(ctx context.Context, changes []connector.Change) []connector.Result {
	out := make([]connector.Result, len(changes))
	type group struct {
		audience string
		add      bool
		idx      []int
		ids      [][]map[string]string
	}
	var groups []*group
	for i, ch := range changes {
		var ids []map[string]string
		if ch.Op == connector.Erase || (ch.Op == connector.Remove && len(ch.Emails) == 0 && len(ch.Phones) == 0) {
			// An erasure, or a consent sweep's removal: the hashes sent.
			_ = json.Unmarshal(ch.Ref, &ids)
		} else {
			ids = Identifiers(ch.Emails, ch.Phones)
		}
		if len(ids) == 0 {
			out[i] = connector.Result{Status: connector.Delivered} // nothing Google can match
			continue
		}
		add := ch.Op == connector.Add
		var g *group
		for _, x := range groups {
			if x.audience == ch.Audience && x.add == add {
				g = x
			}
		}
		if g == nil {
			g = &group{audience: ch.Audience, add: add}
			groups = append(groups, g)
		}
		g.idx, g.ids = append(g.idx, i), append(g.ids, ids)
	}
	for _, g := range groups {
		res := c.job(ctx, g.audience, g.add, g.ids)
		for k, i := range g.idx {
			out[i] = res
			if res.Status == connector.Delivered && g.add {
				out[i].Ref, _ = json.Marshal(g.ids[k])
			}
		}
	}
	return out
}

// call sends one request with the OAuth token and the developer token.
func (c *client) call(ctx context.Context, path string, body, into any) connector.Response {
	tok, r := c.oauth.Token(ctx, c.env.Client, c.env.Now())
	if !r.OK() {
		return r
	}
	req, err := connector.JSONRequest(ctx, http.MethodPost, strings.TrimRight(c.cfg.APIURL, "/")+"/"+path, body)
	if err != nil {
		return connector.Response{Err: err}
	}
	req.Header.Set("Authorization", "Bearer "+tok)
	req.Header.Set("developer-token", c.cfg.DeveloperToken)
	if c.cfg.LoginCustomerID != "" {
		req.Header.Set("login-customer-id", c.cfg.LoginCustomerID)
	}
	r = connector.Do(c.env.Client, req, c.env.Now())
	if r.Status == http.StatusUnauthorized {
		c.oauth.Invalidate() // expired or revoked: refresh, then retry
		r.Status, r.Err = 0, fmt.Errorf("401 UNAUTHENTICATED: token refreshed")
	}
	if r.OK() && into != nil {
		if err := json.Unmarshal(r.Body, into); err != nil {
			r.Status, r.Err = 0, fmt.Errorf("response: %w", err)
		}
	}
	return r
}

func (c *client) failure(what string, r connector.Response) connector.Result {
	res := r.Result()
	if res.Status == connector.Failed && strings.Contains(string(r.Body), "CONCURRENT_MODIFICATION") {
		res.Status = connector.Retry // another job on the list: later
	}
	res.Reason = "google_customer_match: " + what + ": " + res.Reason
	return res
}

// job creates a job for the list of audience, adds the operations and runs
// it.
func (c *client) job(ctx context.Context, audience string, add bool, people [][]map[string]string) connector.Result {
	list, ok := c.cfg.UserLists[audience]
	if !ok {
		return connector.Result{Status: connector.Failed, Reason: fmt.Sprintf("google_customer_match: no user list for audience %q", audience)}
	}
	cust := "customers/" + c.cfg.CustomerID
	var created struct {
		ResourceName string `json:"resourceName"`
	}
	r := c.call(ctx, cust+"/offlineUserDataJobs:create", map[string]any{"job": map[string]any{
		"type": "CUSTOMER_MATCH_USER_LIST", "customerMatchUserListMetadata": map[string]string{"userList": cust + "/userLists/" + list}}}, &created)
	if !r.OK() {
		return c.failure("create job", r)
	}
	if !strings.HasPrefix(created.ResourceName, cust+"/offlineUserDataJobs/") {
		return connector.Result{Status: connector.Retry, Reason: "google_customer_match: create job: no resourceName"}
	}
	op := "create"
	if !add {
		op = "remove"
	}
	ops := make([]map[string]any, len(people))
	for i, ids := range people {
		ops[i] = map[string]any{op: map[string]any{"userIdentifiers": ids}}
	}
	if r := c.call(ctx, created.ResourceName+":addOperations", map[string]any{"operations": ops, "enablePartialFailure": true}, nil); !r.OK() {
		return c.failure("add operations", r)
	}
	if r := c.call(ctx, created.ResourceName+":run", map[string]any{}, nil); !r.OK() {
		return c.failure("run job", r)
	}
	return connector.Result{Status: connector.Delivered}
}
