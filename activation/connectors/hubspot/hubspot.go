// Package hubspot is the "hubspot" destination kind: people entering an
// audience are upserted as HubSpot contacts (by email, with mapped traits)
// and added to a static list per audience; people leaving are removed from
// it; an erased person is removed and their contact GDPR-deleted.
//
// It uses the public CRM v3 and Lists v3 APIs with a private app's access
// token (Authorization: Bearer):
//   - POST /crm/v3/objects/contacts/batch/upsert  {"inputs": [{"idProperty": "email", "id": <email>, "properties": {...}}]}
//     (at most 100 inputs): the contacts' ids;
//   - POST /crm/v3/objects/contacts/batch/read {"idProperty": "email", "inputs": [{"id": <email>}]}: ids of people to remove;
//   - GET /crm/v3/lists/object-type-id/0-1/name/<list name> (404: none) and
//     POST /crm/v3/lists {"name", "objectTypeId": "0-1", "processingType": "MANUAL"}: the list of an audience,
//     named <list_prefix><audience>;
//   - PUT /crm/v3/lists/<listId>/memberships/add and .../remove with a JSON array of record ids;
//   - POST /crm/v3/objects/contacts/gdpr-delete {"objectId": <contact id>} on erasure.
//
// Every call is idempotent (an upsert, a set membership), so a retried
// batch changes nothing twice. 429 (HubSpot's RATE_LIMIT policies: ten
// secondly, daily) and 5xx are retried; other 4xx fail with HubSpot's
// message. A person without an email is not sent (HubSpot keys contacts
// by email).
package hubspot

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"sync"

	"github.com/aurumcdp/aurum/activation/connector"
)

// DefaultAPIURL is HubSpot's API.
const DefaultAPIURL = "https://api.hubapi.com"

// MaxBatch is the CRM batch limit (inputs per batch call).
const MaxBatch = 100

// Kind is the hubspot destination kind.
var Kind = connector.Kind{
	Name:      "hubspot",
	Channel:   "email",
	KeepsList: true,
	Secrets:   []string{"access_token"},
	New:       New,
}

// Config is a hubspot destination's config.
type Config struct {
	AccessToken string `json:"access_token"`
	// ListPrefix prefixes the name of each audience's list (default
	// "aurum-").
	ListPrefix string `json:"list_prefix,omitempty"`
	// Properties maps HubSpot contact properties to traits, e.g.
	// {"firstname": "first_name"}.
	Properties map[string]string `json:"properties,omitempty"`
	// DeleteOnErasure GDPR-deletes the contact of an erased person
	// (default true).
	DeleteOnErasure *bool  `json:"delete_on_erasure,omitempty"`
	APIURL          string `json:"api_url,omitempty"`
}

type client struct {
	cfg   Config
	env   connector.Env
	base  string
	mu    sync.Mutex
	lists map[string]string // audience → list id
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
	if c.ListPrefix == "" {
		c.ListPrefix = "aurum-"
	}
	if c.DeleteOnErasure == nil {
		t := true
		c.DeleteOnErasure = &t
	}
	if err := connector.Required("access_token", c.AccessToken); err != nil {
		return nil, err
	}
	if err := connector.CheckURL("api_url", c.APIURL); err != nil {
		return nil, err
	}
	for prop, trait := range c.Properties {
		if prop == "" || trait == "" || prop == "email" {
			return nil, connector.Fieldf("properties", "%q → %q: want a HubSpot property (not email) and a trait name", prop, trait)
		}
	}
	return &client{cfg: c, env: env, base: strings.TrimRight(c.APIURL, "/"), lists: map[string]string{}}, nil
}

func (c *client) MaxBatch() int { return MaxBatch }

// Deliver sends the adds, removes and erasures of each audience: one
// upsert (or read) and one membership change per audience and op.
func (c *client) Deliver(ctx context.Context, changes []connector.Change) []connector.Result {
	out := make([]connector.Result, len(changes))
	groups := map[string][]int{} // op/audience → indices
	var order []string
	for i, ch := range changes {
		if ch.Op != connector.Erase && connector.Last(ch.Emails) == "" && len(ch.Ref) == 0 {
			out[i] = connector.Result{Status: connector.Delivered} // no email: HubSpot cannot hold them
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
		var res connector.Result
		switch changes[idx[0]].Op {
		case connector.Add:
			res = c.add(ctx, changes, idx, out)
		case connector.Remove:
			res = c.remove(ctx, changes, idx)
		case connector.Erase:
			res = c.erase(ctx, changes, idx)
		}
		if res.Status != 0 {
			for _, i := range idx {
				out[i] = res
			}
		}
	}
	return out
}

// call sends one JSON request; into (non-nil) receives a 2xx body.
func (c *client) call(ctx context.Context, method, path string, body, into any) connector.Response {
	req, err := connector.JSONRequest(ctx, method, c.base+path, body)
	if err != nil {
		return connector.Response{Err: err}
	}
	req.Header.Set("Authorization", "Bearer "+c.cfg.AccessToken)
	resp := connector.Do(c.env.Client, req, c.env.Now())
	if resp.OK() && into != nil {
		if err := json.Unmarshal(resp.Body, into); err != nil {
			resp.Status, resp.Err = 0, fmt.Errorf("hubspot: %s %s: response: %w", method, path, err)
		}
	}
	return resp
}

func failure(what string, r connector.Response) connector.Result {
	res := r.Result()
	res.Reason = "hubspot: " + what + ": " + res.Reason
	return res
}

// list returns the id of audience's list, created if missing.
func (c *client) list(ctx context.Context, audience string) (string, connector.Response) {
	c.mu.Lock()
	id, ok := c.lists[audience]
	c.mu.Unlock()
	if ok {
		return id, connector.Response{Status: http.StatusOK}
	}
	name := c.cfg.ListPrefix + audience
	var got struct {
		List struct {
			ListID string `json:"listId"`
		} `json:"list"`
	}
	r := c.call(ctx, http.MethodGet, "/crm/v3/lists/object-type-id/0-1/name/"+url.PathEscape(name), nil, &got)
	if r.Status == http.StatusNotFound {
		r = c.call(ctx, http.MethodPost, "/crm/v3/lists", map[string]string{"name": name, "objectTypeId": "0-1", "processingType": "MANUAL"}, &got)
	}
	if !r.OK() {
		return "", r
	}
	if got.List.ListID == "" {
		return "", connector.Response{Err: fmt.Errorf("list %s: no listId in the response", name)}
	}
	c.mu.Lock()
	c.lists[audience] = got.List.ListID
	c.mu.Unlock()
	return got.List.ListID, r
}

type batchResults struct {
	Results []struct {
		ID         string            `json:"id"`
		Properties map[string]string `json:"properties"`
	} `json:"results"`
}

// ids maps the results' emails to contact ids.
func (b batchResults) ids() map[string]string {
	m := make(map[string]string, len(b.Results))
	for _, r := range b.Results {
		m[strings.ToLower(r.Properties["email"])] = r.ID
	}
	return m
}

// add upserts the contacts of changes[idx] and adds them to the list.
func (c *client) add(ctx context.Context, changes []connector.Change, idx []int, out []connector.Result) connector.Result {
	type input struct {
		IDProperty string         `json:"idProperty"`
		ID         string         `json:"id"`
		Properties map[string]any `json:"properties"`
	}
	inputs := make([]input, 0, len(idx))
	seen := map[string]bool{}
	for _, i := range idx {
		email := connector.Last(changes[i].Emails)
		if seen[email] {
			continue
		}
		seen[email] = true
		props := map[string]any{"email": email}
		for prop, trait := range c.cfg.Properties {
			if v, ok := changes[i].Traits[trait]; ok && v != nil {
				props[prop] = fmt.Sprint(v)
			}
		}
		inputs = append(inputs, input{IDProperty: "email", ID: email, Properties: props})
	}
	var up batchResults
	if r := c.call(ctx, http.MethodPost, "/crm/v3/objects/contacts/batch/upsert", map[string]any{"inputs": inputs}, &up); !r.OK() {
		return failure("upsert contacts", r)
	}
	ids := up.ids()
	listID, r := c.list(ctx, changes[idx[0]].Audience)
	if !r.OK() {
		return failure("list", r)
	}
	var records []string
	for _, i := range idx {
		if id := ids[connector.Last(changes[i].Emails)]; id != "" {
			records = append(records, id)
		}
	}
	if r := c.call(ctx, http.MethodPut, "/crm/v3/lists/"+url.PathEscape(listID)+"/memberships/add", records, nil); !r.OK() {
		return failure("add to list", r)
	}
	for _, i := range idx {
		id := ids[connector.Last(changes[i].Emails)]
		if id == "" {
			out[i] = connector.Result{Status: connector.Failed, Reason: "hubspot: upsert returned no contact for the email"}
			continue
		}
		out[i] = connector.Result{Status: connector.Delivered, Ref: []byte(id)}
	}
	return connector.Result{}
}

// remove takes the contacts of changes[idx] off the list (their ids from
// the Refs, else read by email).
func (c *client) remove(ctx context.Context, changes []connector.Change, idx []int) connector.Result {
	var records, unknown []string
	for _, i := range idx {
		if len(changes[i].Ref) > 0 {
			records = append(records, string(changes[i].Ref))
		} else {
			unknown = append(unknown, connector.Last(changes[i].Emails))
		}
	}
	if len(unknown) > 0 {
		inputs := make([]map[string]string, len(unknown))
		for j, e := range unknown {
			inputs[j] = map[string]string{"id": e}
		}
		var rd batchResults
		r := c.call(ctx, http.MethodPost, "/crm/v3/objects/contacts/batch/read", map[string]any{"idProperty": "email", "inputs": inputs, "properties": []string{"email"}}, &rd)
		if !r.OK() && r.Status != http.StatusMultiStatus && r.Status != http.StatusNotFound {
			return failure("read contacts", r)
		}
		for _, id := range rd.ids() {
			records = append(records, id)
		}
	}
	if len(records) == 0 {
		return connector.Result{Status: connector.Delivered} // not in HubSpot
	}
	listID, r := c.list(ctx, changes[idx[0]].Audience)
	if !r.OK() {
		return failure("list", r)
	}
	if r := c.call(ctx, http.MethodPut, "/crm/v3/lists/"+url.PathEscape(listID)+"/memberships/remove", records, nil); !r.OK() {
		return failure("remove from list", r)
	}
	return connector.Result{Status: connector.Delivered}
}

// erase removes erased people from the list and GDPR-deletes their
// contacts (known by their Refs only: an erasure carries no identifier).
func (c *client) erase(ctx context.Context, changes []connector.Change, idx []int) connector.Result {
	var known []int
	for _, i := range idx {
		if len(changes[i].Ref) > 0 {
			known = append(known, i)
		}
	}
	if len(known) == 0 {
		return connector.Result{Status: connector.Delivered}
	}
	if res := c.remove(ctx, changes, known); res.Status != connector.Delivered {
		return res
	}
	if !*c.cfg.DeleteOnErasure {
		return connector.Result{Status: connector.Delivered}
	}
	for _, i := range known {
		r := c.call(ctx, http.MethodPost, "/crm/v3/objects/contacts/gdpr-delete", map[string]string{"objectId": string(changes[i].Ref)}, nil)
		if !r.OK() && r.Status != http.StatusNotFound {
			return failure("gdpr-delete contact", r)
		}
	}
	return connector.Result{Status: connector.Delivered}
}
