package connector

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"
)

// OAuth is an OAuth 2.0 access token obtained and refreshed at a token
// endpoint (RFC 6749 §6: grant_type=refresh_token, or another grant given
// in Form). It is safe for concurrent use.
type OAuth struct {
	TokenURL string
	Form     url.Values // grant_type, client_id, client_secret, refresh_token...

	mu      sync.Mutex
	token   string
	expires time.Time
	extra   map[string]any // other fields of the token response (e.g. instance_url)
}

// tokenSlack renews a token this long before it expires.
const tokenSlack = 30 * time.Second

// Token returns a valid access token, fetched when there is none or it is
// about to expire. A failure is a Response (retryable or not).
func (o *OAuth) Token(ctx context.Context, client *http.Client, now time.Time) (string, Response) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.token != "" && now.Before(o.expires) {
		return o.token, Response{Status: http.StatusOK}
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, o.TokenURL, strings.NewReader(o.Form.Encode()))
	if err != nil {
		return "", Response{Err: err}
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Accept", "application/json")
	r := Do(client, req, now)
	if !r.OK() {
		if r.Status == http.StatusBadRequest || r.Status == http.StatusUnauthorized {
			// invalid_grant, invalid_client: a credential problem, not
			// worth retrying.
			r.Err = fmt.Errorf("token refresh refused")
		}
		return "", r
	}
	var tok map[string]any
	if err := json.Unmarshal(r.Body, &tok); err != nil {
		return "", Response{Err: fmt.Errorf("token response: %w", err)}
	}
	access, _ := tok["access_token"].(string)
	if access == "" {
		return "", Response{Err: fmt.Errorf("token response without access_token")}
	}
	ttl := time.Hour
	if s, ok := tok["expires_in"].(float64); ok && s > 0 {
		ttl = time.Duration(s) * time.Second
	}
	o.token, o.expires, o.extra = access, now.Add(ttl-min(tokenSlack, ttl/2)), tok
	return access, r
}

// Field is a string field of the last token response (e.g. Salesforce's
// instance_url).
func (o *OAuth) Field(name string) string {
	o.mu.Lock()
	defer o.mu.Unlock()
	s, _ := o.extra[name].(string)
	return s
}

// Invalidate drops the token (after a 401): the next Token fetches one.
func (o *OAuth) Invalidate() {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.token = ""
}

// RefreshTokenOAuth is an OAuth of the refresh-token grant (RFC 6749 §6).
func RefreshTokenOAuth(tokenURL, clientID, clientSecret, refreshToken string) *OAuth {
	return &OAuth{TokenURL: tokenURL, Form: url.Values{"grant_type": {"refresh_token"}, "client_id": {clientID},
		"client_secret": {clientSecret}, "refresh_token": {refreshToken}}}
}
