package auth

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha1"
	"crypto/subtle"
	"encoding/base32"
	"encoding/binary"
	"fmt"
	"net/url"
	"strings"
	"time"
)

// TOTP parameters (RFC 6238 with the defaults every authenticator app
// supports): HMAC-SHA1, 30-second steps, 6 digits, one step of skew either
// way.
const (
	TOTPPeriod = 30 * time.Second
	TOTPDigits = 6
	TOTPSkew   = 1
)

// NewTOTPSecret returns a fresh 160-bit TOTP secret (RFC 4226's
// recommended length).
func NewTOTPSecret() ([]byte, error) {
	b := make([]byte, 20)
	if _, err := rand.Read(b); err != nil {
		return nil, err
	}
	return b, nil
}

// TOTPStep is the time step of t.
func TOTPStep(t time.Time) uint64 { return uint64(t.Unix()) / uint64(TOTPPeriod/time.Second) }

// HOTP is RFC 4226's HOTP value of counter with digits digits (HMAC-SHA1).
func HOTP(secret []byte, counter uint64, digits int) string {
	var msg [8]byte
	binary.BigEndian.PutUint64(msg[:], counter)
	m := hmac.New(sha1.New, secret)
	m.Write(msg[:])
	sum := m.Sum(nil)
	off := sum[len(sum)-1] & 0x0f
	bin := binary.BigEndian.Uint32(sum[off:off+4]) & 0x7fffffff
	mod := uint32(1)
	for range digits {
		mod *= 10
	}
	return fmt.Sprintf("%0*d", digits, bin%mod)
}

// TOTP is the 6-digit code of secret at t.
func TOTP(secret []byte, t time.Time) string { return HOTP(secret, TOTPStep(t), TOTPDigits) }

// VerifyTOTP checks code against secret at now, allowing TOTPSkew steps
// either way, and refuses every step at or before last (the step of the
// last accepted code: a code cannot be used twice). It returns the matched
// step, to be remembered as the new last.
func VerifyTOTP(secret []byte, code string, now time.Time, last uint64) (uint64, bool) {
	if len(code) != TOTPDigits {
		return 0, false
	}
	cur := TOTPStep(now)
	var step uint64
	ok := 0
	for d := -TOTPSkew; d <= TOTPSkew; d++ {
		s := cur + uint64(d)
		if d < 0 && cur < uint64(-d) {
			continue
		}
		// Every candidate is computed and compared, matched or not.
		if subtle.ConstantTimeCompare([]byte(HOTP(secret, s, TOTPDigits)), []byte(code)) == 1 && s > last {
			step, ok = s, 1
		}
	}
	return step, ok == 1
}

// TOTPURI is the otpauth:// URI an authenticator app enrols from (Google
// Authenticator's Key Uri Format): issuer, account and the base32 secret.
func TOTPURI(issuer, account string, secret []byte) string {
	q := url.Values{}
	q.Set("secret", base32.StdEncoding.WithPadding(base32.NoPadding).EncodeToString(secret))
	q.Set("issuer", issuer)
	q.Set("algorithm", "SHA1")
	q.Set("digits", fmt.Sprint(TOTPDigits))
	q.Set("period", fmt.Sprint(int(TOTPPeriod/time.Second)))
	label := url.PathEscape(issuer) + ":" + url.PathEscape(account)
	return "otpauth://totp/" + label + "?" + q.Encode()
}

// TOTPSecretFromURI returns the secret of an otpauth:// URI (what an
// authenticator app does when it scans one).
func TOTPSecretFromURI(uri string) ([]byte, error) {
	u, err := url.Parse(uri)
	if err != nil || u.Scheme != "otpauth" || u.Host != "totp" {
		return nil, fmt.Errorf("%w: not an otpauth://totp URI", ErrInvalid)
	}
	s := strings.ToUpper(strings.TrimRight(u.Query().Get("secret"), "="))
	b, err := base32.StdEncoding.WithPadding(base32.NoPadding).DecodeString(s)
	if err != nil || len(b) == 0 {
		return nil, fmt.Errorf("%w: otpauth URI: bad secret", ErrInvalid)
	}
	return b, nil
}
