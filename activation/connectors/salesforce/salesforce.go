// Package salesforce is the "salesforce" destination kind: people entering
// an audience are upserted as Contacts by an external-id field (with mapped
// traits) and made members of the audience's Campaign; people leaving are
// removed from it; an erased person's Campaign membership and Contact are
// deleted.
//
// It uses the REST API (OAuth 2.0: an access token and the org's
// instance_url from the token endpoint's refresh_token grant, refreshed
// after a 401 INVALID_SESSION_ID):
//   - PATCH /services/data/<v>/composite/sobjects/Contact/<external id field>
//     {"allOrNone": false, "records": [...]}: upsert, at most 200 records;
//   - POST /services/data/<v>/composite/sobjects {"records": [CampaignMember...]}: add
//     (DUPLICATE_VALUE, already a member, counts as done);
//   - GET /services/data/<v>/query?q=SELECT Id FROM CampaignMember WHERE ...: the
//     memberships to remove, then DELETE /services/data/<v>/composite/sobjects?ids=...;
//   - DELETE /services/data/<v>/sobjects/Contact/<id> on erasure.
//
// 403 REQUEST_LIMIT_EXCEEDED (the org's API limit), 429 and 5xx are
// retried; other errors fail with Salesforce's errorCode and message. An
// upsert and a membership already there change nothing when repeated.
package salesforce

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strings"

	"github.com/aurumcdp/aurum/activation/connector"
)

// Defaults.
const (
	DefaultTokenURL   = "https://login.salesforce.com/services/oauth2/token"
	DefaultAPIVersion = "v60.0"
)

// MaxBatch is the sObject collections limit (records per request).
const MaxBatch = 200

// Kind is the salesforce destination kind.
var Kind = connector.Kind{
	Name:           "salesforce",
	Channel:        "email",
	KeepsList:      true,
	Secrets:        []string{"client_secret", "refresh_token"},
	New:            New,
	CheckAudiences: checkAudiences,
}

// Config is a salesforce destination's config.
type Config struct {
	ClientID     string `json:"client_id"`
	ClientSecret string `json:"client_secret"`
	RefreshToken string `json:"refresh_token"`
	TokenURL     string `json:"token_url,omitempty"`
	APIVersion   string `json:"api_version,omitempty"`
	// ExternalIDField is the Contact's external-id field the upsert
	// matches on (e.g. Aurum_Id__c); it holds the person's email.
	ExternalIDField string `json:"external_id_field"`
	// Fields maps Contact fields to traits (e.g. {"FirstName": "first_name"}).
	Fields map[string]string `json:"fields,omitempty"`
	// DefaultLastName fills LastName (required by Salesforce) when no
	// mapped trait gives one (default "(unknown)").
	DefaultLastName string `json:"default_last_name,omitempty"`
	// Campaigns maps each Aurum audience to its Campaign id.
	Campaigns       map[string]string `json:"campaigns"`
	MemberStatus    string            `json:"member_status,omitempty"` // CampaignMember Status (default "Sent")
	DeleteOnErasure *bool             `json:"delete_on_erasure,omitempty"`
}

type client struct {
	cfg   Config
	env   connector.Env
	oauth *connector.OAuth
}

func parse(config json.RawMessage) (Config, error) {
	var c Config
	if err := connector.DecodeConfig(config, &c); err != nil {
		return c, err
	}
	if c.TokenURL == "" {
		c.TokenURL = DefaultTokenURL
	}
	if c.APIVersion == "" {
		c.APIVersion = DefaultAPIVersion
	}
	if c.DefaultLastName == "" {
		c.DefaultLastName = "(unknown)"
	}
	if c.MemberStatus == "" {
		c.MemberStatus = "Sent"
	}
	if c.DeleteOnErasure == nil {
		t := true
		c.DeleteOnErasure = &t
	}
	if err := connector.Required("client_id", c.ClientID, "client_secret", c.ClientSecret, "refresh_token", c.RefreshToken,
		"external_id_field", c.ExternalIDField); err != nil {
		return c, err
	}
	if strings.ContainsAny(c.ExternalIDField, "/?# '") {
		return c, connector.Fieldf("external_id_field", "%q is not a field name", c.ExternalIDField)
	}
	if len(c.Campaigns) == 0 {
		return c, connector.Fieldf("campaigns", "required: the Campaign id of each audience")
	}
	for a, id := range c.Campaigns {
		if len(id) != 15 && len(id) != 18 {
			return c, connector.Fieldf("campaigns", "%s: %q is not a Salesforce id (15 or 18 characters)", a, id)
		}
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
	return connector.CheckMapped("campaigns", "Campaign", c.Campaigns, audiences)
}

func (c *client) MaxBatch() int { return MaxBatch }

// sfError is one Salesforce REST error.
type sfError struct {
	ErrorCode string `json:"errorCode"`
	Message   string `json:"message"`
	// StatusCode is the code in sObject collection results.
	StatusCode string `json:"statusCode"`
}

// call sends one request; a 401 drops the token (the change is retried).
func (c *client) call(ctx context.Context, method, path string, body, into any) connector.Response {
	tok, r := c.oauth.Token(ctx, c.env.Client, c.env.Now())
	if !r.OK() {
		return r
	}
	base := strings.TrimRight(c.oauth.Field("instance_url"), "/")
	if base == "" {
		return connector.Response{Err: fmt.Errorf("token response without instance_url")}
	}
	req, err := connector.JSONRequest(ctx, method, base+"/services/data/"+c.cfg.APIVersion+path, body)
	if err != nil {
		return connector.Response{Err: err}
	}
	req.Header.Set("Authorization", "Bearer "+tok)
	r = connector.Do(c.env.Client, req, c.env.Now())
	if r.Status == http.StatusUnauthorized {
		c.oauth.Invalidate()
		r.Status, r.Err = 0, fmt.Errorf("401 INVALID_SESSION_ID: session refreshed")
	}
	if r.Status == http.StatusForbidden && strings.Contains(string(r.Body), "REQUEST_LIMIT_EXCEEDED") {
		r.Status = http.StatusTooManyRequests // the org's API limit: later
	}
	if r.OK() && into != nil {
		if err := json.Unmarshal(r.Body, into); err != nil {
			r.Status, r.Err = 0, fmt.Errorf("response: %w", err)
		}
	}
	return r
}

func failure(what string, r connector.Response) connector.Result {
	res := r.Result()
	var errs []sfError
	if json.Unmarshal(r.Body, &errs) == nil && len(errs) > 0 {
		res.Reason = fmt.Sprintf("status %d: %s: %s", r.Status, errs[0].ErrorCode, errs[0].Message)
	}
	res.Reason = "salesforce: " + what + ": " + res.Reason
	return res
}

// collectionResult is one record's outcome in an sObject collection call.
type collectionResult struct {
	ID      string    `json:"id"`
	Success bool      `json:"success"`
	Errors  []sfError `json:"errors"`
}

func (r collectionResult) reason() string {
	if len(r.Errors) == 0 {
		return "salesforce: failed without an error"
	}
	return "salesforce: " + r.Errors[0].StatusCode + ": " + r.Errors[0].Message
}

func (c *client) Deliver(ctx context.Context, changes []connector.Change) []connector.Result {
	out := make([]connector.Result, len(changes))
	groups := map[string][]int{}
	var order []string
	for i, ch := range changes {
		if ch.Op != connector.Erase && connector.Last(ch.Emails) == "" && len(ch.Ref) == 0 {
			out[i] = connector.Result{Status: connector.Delivered} // no email: no external id
			continue
		}
		if ch.Op == connector.Erase && len(ch.Ref) == 0 {
			out[i] = connector.Result{Status: connector.Delivered} // never added
			continue
		}
		k := ch.Op.String() + "/" + ch.Audience
		if _, ok := groups[k]; !ok {
			order = append(order, k)
		}
		groups[k] = append(groups[k], i)
	}
	for _, k := range order {
		idx := groups[k]
		campaign, ok := c.cfg.Campaigns[changes[idx[0]].Audience]
		if !ok {
			for _, i := range idx {
				out[i] = connector.Result{Status: connector.Failed, Reason: fmt.Sprintf("salesforce: no Campaign for audience %q", changes[i].Audience)}
			}
			continue
		}
		if changes[idx[0]].Op == connector.Add {
			c.add(ctx, campaign, changes, idx, out)
			continue
		}
		res := c.remove(ctx, campaign, changes, idx)
		for _, i := range idx {
			out[i] = res
		}
	}
	return out
}

// upsert upserts the Contacts of changes[idx]: their ids, by index.
func (c *client) upsert(ctx context.Context, changes []connector.Change, idx []int, out []connector.Result) map[int]string {
	records := make([]map[string]any, len(idx))
	for k, i := range idx {
		rec := map[string]any{"attributes": map[string]string{"type": "Contact"},
			c.cfg.ExternalIDField: connector.Last(changes[i].Emails), "Email": connector.Last(changes[i].Emails)}
		for field, trait := range c.cfg.Fields {
			if v, ok := changes[i].Traits[trait]; ok && v != nil {
				rec[field] = fmt.Sprint(v)
			}
		}
		if _, ok := rec["LastName"]; !ok {
			rec["LastName"] = c.cfg.DefaultLastName
		}
		records[k] = rec
	}
	var res []collectionResult
	r := c.call(ctx, http.MethodPatch, "/composite/sobjects/Contact/"+url.PathEscape(c.cfg.ExternalIDField),
		map[string]any{"allOrNone": false, "records": records}, &res)
	ids := map[int]string{}
	if !r.OK() || len(res) != len(idx) {
		f := failure("upsert contacts", r)
		if r.OK() {
			f = connector.Result{Status: connector.Retry, Reason: "salesforce: upsert contacts: result count differs"}
		}
		for _, i := range idx {
			out[i] = f
		}
		return ids
	}
	for k, i := range idx {
		if res[k].Success {
			ids[i] = res[k].ID
		} else {
			out[i] = connector.Result{Status: connector.Failed, Reason: res[k].reason()}
		}
	}
	return ids
}

// add upserts the Contacts and makes them members of the Campaign.
func (c *client) add(ctx context.Context, campaign string, changes []connector.Change, idx []int, out []connector.Result) {
	ids := c.upsert(ctx, changes, idx, out)
	var members []map[string]any
	var who []int
	for _, i := range idx {
		if id, ok := ids[i]; ok {
			members = append(members, map[string]any{"attributes": map[string]string{"type": "CampaignMember"},
				"CampaignId": campaign, "ContactId": id, "Status": c.cfg.MemberStatus})
			who = append(who, i)
		}
	}
	if len(members) == 0 {
		return
	}
	var res []collectionResult
	r := c.call(ctx, http.MethodPost, "/composite/sobjects", map[string]any{"allOrNone": false, "records": members}, &res)
	if !r.OK() || len(res) != len(who) {
		f := failure("add campaign members", r)
		if r.OK() {
			f = connector.Result{Status: connector.Retry, Reason: "salesforce: add campaign members: result count differs"}
		}
		for _, i := range who {
			out[i] = f
		}
		return
	}
	for k, i := range who {
		dup := len(res[k].Errors) > 0 && res[k].Errors[0].StatusCode == "DUPLICATE_VALUE"
		if res[k].Success || dup {
			out[i] = connector.Result{Status: connector.Delivered, Ref: []byte(ids[i])}
		} else {
			out[i] = connector.Result{Status: connector.Failed, Reason: res[k].reason()}
		}
	}
}

// remove deletes the Campaign memberships of changes[idx] (their Contact
// ids from the Refs, else by external id), and on erasure the Contacts.
func (c *client) remove(ctx context.Context, campaign string, changes []connector.Change, idx []int) connector.Result {
	var contactIDs, extIDs []string
	for _, i := range idx {
		if len(changes[i].Ref) > 0 {
			contactIDs = append(contactIDs, string(changes[i].Ref))
		} else {
			extIDs = append(extIDs, connector.Last(changes[i].Emails))
		}
	}
	where := []string{}
	if len(contactIDs) > 0 {
		where = append(where, "ContactId IN ("+soqlList(contactIDs)+")")
	}
	if len(extIDs) > 0 {
		where = append(where, "Contact."+c.cfg.ExternalIDField+" IN ("+soqlList(extIDs)+")")
	}
	q := "SELECT Id FROM CampaignMember WHERE CampaignId = " + soqlList([]string{campaign}) + " AND (" + strings.Join(where, " OR ") + ")"
	var found struct {
		Records []struct {
			ID string `json:"Id"`
		} `json:"records"`
	}
	if r := c.call(ctx, http.MethodGet, "/query?q="+url.QueryEscape(q), nil, &found); !r.OK() {
		return failure("query campaign members", r)
	}
	if len(found.Records) > 0 {
		ids := make([]string, len(found.Records))
		for k, rec := range found.Records {
			ids[k] = rec.ID
		}
		if r := c.call(ctx, http.MethodDelete, "/composite/sobjects?allOrNone=false&ids="+url.QueryEscape(strings.Join(ids, ",")), nil, nil); !r.OK() {
			return failure("delete campaign members", r)
		}
	}
	if changes[idx[0]].Op != connector.Erase || !*c.cfg.DeleteOnErasure {
		return connector.Result{Status: connector.Delivered}
	}
	for _, id := range contactIDs {
		r := c.call(ctx, http.MethodDelete, "/sobjects/Contact/"+url.PathEscape(id), nil, nil)
		if !r.OK() && r.Status != http.StatusNotFound {
			return failure("delete contact", r)
		}
	}
	return connector.Result{Status: connector.Delivered}
}

// soqlList is a SOQL list of string literals.
func soqlList(vs []string) string {
	q := make([]string, len(vs))
	for i, v := range vs {
		q[i] = "'" + strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace(v) + "'"
	}
	return strings.Join(q, ", ")
}
