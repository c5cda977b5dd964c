package auth

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"strings"
)

// TokenPrefix starts every API token and session secret, so that a leaked
// one is recognisable (secret scanners, logs).
const TokenPrefix = "aur_"

// secretBytes is the entropy of a secret: 256 bits.
const secretBytes = 32

// NewSecret returns a fresh secret: TokenPrefix and 32 random bytes in
// unpadded base64url.
func NewSecret() (string, error) {
	b := make([]byte, secretBytes)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	return TokenPrefix + base64.RawURLEncoding.EncodeToString(b), nil
}

// LooksLikeSecret reports whether s has the shape NewSecret gives.
func LooksLikeSecret(s string) bool {
	rest, ok := strings.CutPrefix(s, TokenPrefix)
	if !ok || len(rest) != base64.RawURLEncoding.EncodedLen(secretBytes) {
		return false
	}
	_, err := base64.RawURLEncoding.DecodeString(rest)
	return err == nil
}

// HashSecret is what is stored of a secret. A plain SHA-256 is right for a
// 256-bit random secret: there is nothing to brute-force, so a slow hash
// would only slow down every request.
func HashSecret(secret string) [32]byte { return sha256.Sum256([]byte(secret)) }

// Equal compares two hashes in constant time.
func Equal(a, b []byte) bool { return len(a) == len(b) && subtle.ConstantTimeCompare(a, b) == 1 }
