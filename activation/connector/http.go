package connector

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// MaxResponse bounds the bytes of a response body a connector reads.
const MaxResponse = 1 << 20

// MaxRetryAfter bounds a parsed Retry-After (keeps the arithmetic far
// from overflow).
const MaxRetryAfter = 24 * time.Hour

// Response is an HTTP exchange's outcome: the status (0 without a
// response), the body (at most MaxResponse bytes) and Retry-After.
type Response struct {
	Status     int
	Body       []byte
	RetryAfter time.Duration
	Err        error // without a response: why
}

// Do sends req and reads the response. now is the clock Retry-After dates
// are read against.
func Do(client *http.Client, req *http.Request, now time.Time) Response {
	resp, err := client.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err // the URL may carry a credential
		}
		return Response{Err: err}
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, MaxResponse))
	r := Response{Status: resp.StatusCode, Body: body, RetryAfter: ParseRetryAfter(resp.Header.Get("Retry-After"), now)}
	if err != nil && r.OK() {
		r.Status, r.Err = 0, fmt.Errorf("read response: %w", err)
	}
	return r
}

// OK reports a 2xx.
func (r Response) OK() bool { return r.Status >= 200 && r.Status < 300 }

// Retryable reports a failure worth repeating: no response, 408, 429 or
// 5xx.
func (r Response) Retryable() bool {
	return r.Status == 0 || r.Status == http.StatusRequestTimeout || r.Status == http.StatusTooManyRequests || r.Status >= 500
}

// Reason is the failure as it goes to stats and dead letters: the status
// and the start of the API's message.
func (r Response) Reason() string {
	if r.Status == 0 {
		if r.Err == nil {
			return "no response"
		}
		return r.Err.Error()
	}
	msg := strings.TrimSpace(string(r.Body))
	if len(msg) > 300 {
		msg = msg[:300] + "…"
	}
	if msg == "" {
		return fmt.Sprintf("status %d", r.Status)
	}
	return fmt.Sprintf("status %d: %s", r.Status, msg)
}

// Result is r as one change's Result (Delivered on a 2xx).
func (r Response) Result() Result {
	switch {
	case r.OK():
		return Result{Status: Delivered}
	case r.Retryable():
		return Result{Status: Retry, RetryAfter: r.RetryAfter, Reason: r.Reason()}
	}
	return Result{Status: Failed, Reason: r.Reason()}
}

// All returns n copies of res.
func All(n int, res Result) []Result {
	out := make([]Result, n)
	for i := range out {
		out[i] = res
	}
	return out
}

// JSONRequest builds a request with a JSON body (nil: none).
func JSONRequest(ctx context.Context, method, u string, body any) (*http.Request, error) {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return nil, err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, u, rd)
	if err != nil {
		return nil, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("User-Agent", "aurum-connector")
	return req, nil
}

// ParseRetryAfter reads a Retry-After header: delay-seconds or an
// HTTP-date (relative to now). It returns 0 when absent, malformed or in
// the past, and at most 24 h.
func ParseRetryAfter(v string, now time.Time) time.Duration {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0
	}
	if secs, err := strconv.ParseInt(v, 10, 64); err == nil {
		if secs <= 0 {
			return 0
		}
		return time.Duration(min(secs, int64(MaxRetryAfter/time.Second))) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil {
		if d := t.Sub(now); d > 0 {
			return min(d, MaxRetryAfter)
		}
	}
	return 0
}

// DecodeConfig decodes a destination's config (a JSON object) into v,
// refusing unknown fields; the error names the field.
func DecodeConfig(config json.RawMessage, v any) error {
	if len(bytes.TrimSpace(config)) == 0 {
		config = []byte("{}")
	}
	dec := json.NewDecoder(bytes.NewReader(config))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) && te.Field != "" {
			return Fieldf(te.Field, "want a %s", te.Type)
		}
		if f, ok := strings.CutPrefix(err.Error(), "json: unknown field "); ok {
			return Fieldf(strings.Trim(f, `"`), "unknown field")
		}
		return &FieldError{Field: "config", Msg: err.Error()}
	}
	return nil
}

// CheckURL checks an API base URL field (absolute http(s)).
func CheckURL(field, v string) error {
	u, err := url.Parse(v)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return Fieldf(field, "must be an absolute http(s) URL")
	}
	return nil
}

// Required returns a FieldError for the first empty field (pairs of name,
// value).
func Required(pairs ...string) error {
	for i := 0; i+1 < len(pairs); i += 2 {
		if strings.TrimSpace(pairs[i+1]) == "" {
			return Fieldf(pairs[i], "required")
		}
	}
	return nil
}

// SHA256Hex is the lower-case hex SHA-256 of s, as the ad platforms want
// normalised identifiers.
func SHA256Hex(s string) string {
	h := sha256.Sum256([]byte(s))
	return hex.EncodeToString(h[:])
}

// NormalizeEmail is Meta's and Google's documented email normalisation:
// trim leading and trailing whitespace, lower-case.
func NormalizeEmail(s string) string { return strings.ToLower(strings.TrimSpace(s)) }

// NormalizePhone is the phone normalisation of Meta (digits only, with
// the country code, no leading zeros or +) given an E.164 number; Google
// wants E.164 with the +: NormalizePhoneE164.
func NormalizePhone(s string) string {
	var b strings.Builder
	for _, r := range s {
		if r >= '0' && r <= '9' {
			b.WriteRune(r)
		}
	}
	return strings.TrimLeft(b.String(), "0")
}

// NormalizePhoneE164 is "+" and the digits of NormalizePhone ("" when
// there are none).
func NormalizePhoneE164(s string) string {
	d := NormalizePhone(s)
	if d == "" {
		return ""
	}
	return "+" + d
}

// CheckMapped checks that config field (audience → the tool's list of
// some kind, what) maps every audience.
func CheckMapped(field, what string, m map[string]string, audiences []string) error {
	for _, a := range audiences {
		if _, ok := m[a]; !ok {
			return Fieldf(field, "no %s for audience %q", what, a)
		}
	}
	return nil
}
