// Package meta is the "meta_audience" destination kind: each audience is
// kept in step with a Meta (Facebook) Custom Audience of the customer-list
// kind, through the Marketing API's users edge:
//
//	POST   https://graph.facebook.com/<version>/<custom audience id>/users   add
//	DELETE https://graph.facebook.com/<version>/<custom audience id>/users   remove
//
// form-encoded access_token and payload = {"schema": ["EMAIL", "PHONE"],
// "data": [[<sha256 email>, <sha256 phone>], ...]}, at most 10,000 rows a
// request. Identifiers are normalised as Meta documents before hashing:
// email trimmed and lower-cased; phone digits only, with the country code,
// no leading zeros. An erased person is removed with the hashes kept when
// they were added (the erasure carries no identifier).
//
// Throttling: Meta answers with a Graph error whose code says so (4, 17,
// 32, 613: rate limits; 80003: custom audience calls) or is_transient:
// those, 429 and 5xx are retried; other errors fail with Meta's message.
// Adding or removing a user twice changes nothing, so a retried batch is
// harmless.
package meta

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"

	"github.com/aurumcdp/aurum/activation/connector"
)

// DefaultAPIURL is the Graph API with its version.
const DefaultAPIURL = "https://graph.facebook.com/v19.0"

// MaxBatch is the users edge's limit of rows per request.
const MaxBatch = 10000

// throttleCodes are Graph error codes of throttling.
var throttleCodes = []int{4, 17, 32, 613, 80003}

// Kind is the meta_audience destination kind.
var Kind = connector.Kind{
	Name:           "meta_audience",
	Channel:        "ads",
	KeepsList:      true,
	Secrets:        []string{"access_token"},
	New:            New,
	CheckAudiences: checkAudiences,
}

// Config is a meta_audience destination's config.
type Config struct {
	AccessToken string `json:"access_token"`
	// CustomAudiences maps each Aurum audience to the id of its Custom
	// Audience (customer list).
	CustomAudiences map[string]string `json:"custom_audiences"`
	APIURL          string            `json:"api_url,omitempty"`
}

type client struct {
	cfg Config
	env connector.Env
}

func parse(config json.RawMessage) (Config, error) {
	var c Config
	if err := connector.DecodeConfig(config, &c); err != nil {
		return c, err
	}
	if c.APIURL == "" {
		c.APIURL = DefaultAPIURL
	}
	if err := connector.Required("access_token", c.AccessToken); err != nil {
		return c, err
	}
	if len(c.CustomAudiences) == 0 {
		return c, connector.Fieldf("custom_audiences", "required: the Custom Audience id of each audience")
	}
	for a, id := range c.CustomAudiences {
		if id == "" || strings.Trim(id, "0123456789") != "" {
			return c, connector.Fieldf("custom_audiences", "%s: %q is not a Custom Audience id (digits)", a, id)
		}
	}
	return c, connector.CheckURL("api_url", c.APIURL)
}

// New checks config and returns the connector.
func New(config json.RawMessage, env connector.Env) (connector.Connector, error) {
	c, err := parse(config)
	if err != nil {
		return nil, err
	}
	return &client{cfg: c, env: env}, nil
}

func checkAudiences(config json.RawMessage, audiences []string) error {
	c, err := parse(config)
	if err != nil {
		return err
	}
	return connector.CheckMapped("custom_audiences", "Custom Audience", c.CustomAudiences, audiences)
}

func (c *client) MaxBatch() int { return MaxBatch }

// Row is a person's hashed identifiers in the schema ["EMAIL", "PHONE"]
// ("" where unknown).
func Row(emails, phones []string) [2]string {
	var r [2]string
	if e := connector.NormalizeEmail(connector.Last(emails)); e != "" {
		r[0] = connector.SHA256Hex(e)
	}
	if p := connector.NormalizePhone(connector.Last(phones)); p != "" {
		r[1] = connector.SHA256Hex(p)
	}
	return r
}

// Deliver sends one request per audience and direction.
func (c *client) Deliver(ctx context.Context, changes []connector.Change) []connector.Result {
	out := make([]connector.Result, len(changes))
	type group struct {
		audience string
		add      bool
		idx      []int
		rows     [][2]string
	}
	var groups []*group
	for i, ch := range changes {
		var row [2]string
		if ch.Op == connector.Erase || (ch.Op == connector.Remove && len(ch.Emails) == 0 && len(ch.Phones) == 0) {
			// An erasure, or a consent sweep's removal: the hashes sent.
			if json.Unmarshal(ch.Ref, &row) != nil {
				out[i] = connector.Result{Status: connector.Delivered} // never added: nothing to remove
				continue
			}
		} else {
			row = Row(ch.Emails, ch.Phones)
		}
		if row == ([2]string{}) {
			out[i] = connector.Result{Status: connector.Delivered} // no email or phone: Meta cannot match them
			continue
		}
		add := ch.Op == connector.Add
		j := slices.IndexFunc(groups, func(g *group) bool { return g.audience == ch.Audience && g.add == add })
		if j < 0 {
			groups = append(groups, &group{audience: ch.Audience, add: add})
			j = len(groups) - 1
		}
		groups[j].idx = append(groups[j].idx, i)
		groups[j].rows = append(groups[j].rows, row)
	}
	for _, g := range groups {
		res := c.send(ctx, g.audience, g.add, g.rows)
		for k, i := range g.idx {
			out[i] = res
			if res.Status == connector.Delivered && g.add {
				ref, _ := json.Marshal(g.rows[k])
				out[i].Ref = ref
			}
		}
	}
	return out
}

func (c *client) send(ctx context.Context, audience string, add bool, rows [][2]string) connector.Result {
	id, ok := c.cfg.CustomAudiences[audience]
	if !ok {
		return connector.Result{Status: connector.Failed, Reason: fmt.Sprintf("meta: no Custom Audience for audience %q", audience)}
	}
	payload, err := json.Marshal(map[string]any{"schema": []string{"EMAIL", "PHONE"}, "data": rows})
	if err != nil {
		return connector.Result{Status: connector.Failed, Reason: err.Error()}
	}
	form := url.Values{"access_token": {c.cfg.AccessToken}, "payload": {string(payload)}}
	method := http.MethodPost
	if !add {
		method = http.MethodDelete
	}
	req, err := http.NewRequestWithContext(ctx, method, strings.TrimRight(c.cfg.APIURL, "/")+"/"+url.PathEscape(id)+"/users", strings.NewReader(form.Encode()))
	if err != nil {
		return connector.Result{Status: connector.Failed, Reason: err.Error()}
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("User-Agent", "aurum-connector")
	resp := connector.Do(c.env.Client, req, c.env.Now())
	res := resp.Result()
	if resp.OK() {
		return res
	}
	var ge struct {
		Error struct {
			Message     string `json:"message"`
			Type        string `json:"type"`
			Code        int    `json:"code"`
			Subcode     int    `json:"error_subcode"`
			IsTransient bool   `json:"is_transient"`
		} `json:"error"`
	}
	if json.Unmarshal(resp.Body, &ge) == nil && ge.Error.Code != 0 {
		res.Reason = fmt.Sprintf("status %d: (#%d) %s", resp.Status, ge.Error.Code, ge.Error.Message)
		if ge.Error.IsTransient || slices.Contains(throttleCodes, ge.Error.Code) {
			res.Status = connector.Retry
		}
	}
	res.Reason = "meta: " + res.Reason
	return res
}
