package activation

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Header names of a webhook delivery.
const (
	HeaderSignature = "Aurum-Signature"
	HeaderDelivery  = "Aurum-Delivery"
	HeaderAttempt   = "Aurum-Attempt"
	// HeaderEpoch is sent in a cluster: the epoch under which the node
	// delivered (Fence); it grows with each failover of the deliveries.
	HeaderEpoch = "Aurum-Epoch"
)

// DefaultTolerance is the signature age Verify accepts when passed a
// tolerance <= 0.
const DefaultTolerance = 5 * time.Minute

// Errors returned by Verify (match with errors.Is).
var (
	ErrInvalidSignature = errors.New("activation: invalid signature")
	ErrSignatureExpired = errors.New("activation: signature timestamp outside tolerance")
)

// Sign returns the Aurum-Signature header value of body sent at t:
//
//	t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<unix seconds>.<body>")>
//
// The scheme is Stripe's: the timestamp is signed with the body, so a
// receiver that checks it (Verify) refuses replays older than its
// tolerance.
func Sign(secret string, t time.Time, body []byte) string {
	ts := strconv.FormatInt(t.Unix(), 10)
	return "t=" + ts + ",v1=" + hex.EncodeToString(mac(secret, ts, body))
}

func mac(secret, ts string, body []byte) []byte {
	h := hmac.New(sha256.New, []byte(secret))
	h.Write([]byte(ts))
	h.Write([]byte{'.'})
	h.Write(body)
	return h.Sum(nil)
}

// Verify checks an Aurum-Signature header for body, for receivers of
// webhooks: the header must hold one t=<unix seconds> and at least one
// v1=<hex> (several v1 are accepted, e.g. during a secret rotation;
// unknown keys are ignored), one v1 must equal HMAC-SHA256(secret,
// "<t>.<body>") (compared in constant time), and t must be within
// tolerance of now (tolerance <= 0: DefaultTolerance). body must be the
// raw request body, not a re-encoding of it. Receivers should then
// de-duplicate on the Aurum-Delivery header: delivery is at least once.
func Verify(secret string, header string, body []byte, now time.Time, tolerance time.Duration) error {
	if tolerance <= 0 {
		tolerance = DefaultTolerance
	}
	var (
		ts   string
		sigs [][]byte
	)
	for _, part := range strings.Split(header, ",") {
		k, v, ok := strings.Cut(strings.TrimSpace(part), "=")
		if !ok {
			return fmt.Errorf("%w: malformed element %q", ErrInvalidSignature, part)
		}
		switch k {
		case "t":
			if ts != "" {
				return fmt.Errorf("%w: more than one timestamp", ErrInvalidSignature)
			}
			ts = v
		case "v1":
			sig, err := hex.DecodeString(v)
			if err != nil || len(sig) != sha256.Size {
				return fmt.Errorf("%w: malformed v1", ErrInvalidSignature)
			}
			sigs = append(sigs, sig)
		}
	}
	if ts == "" {
		return fmt.Errorf("%w: no timestamp", ErrInvalidSignature)
	}
	if len(sigs) == 0 {
		return fmt.Errorf("%w: no v1 signature", ErrInvalidSignature)
	}
	sec, err := strconv.ParseInt(ts, 10, 64)
	if err != nil {
		return fmt.Errorf("%w: malformed timestamp %q", ErrInvalidSignature, ts)
	}
	want := mac(secret, ts, body)
	match := false
	for _, sig := range sigs {
		if hmac.Equal(sig, want) {
			match = true
		}
	}
	if !match {
		return fmt.Errorf("%w: no v1 matches", ErrInvalidSignature)
	}
	if age := now.Sub(time.Unix(sec, 0)); age > tolerance || age < -tolerance {
		return fmt.Errorf("%w: signed at %d, %v from now (tolerance %v)", ErrSignatureExpired, sec, age, tolerance)
	}
	return nil
}
