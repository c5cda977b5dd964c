package event

import (
	"fmt"
	"regexp"
	"strings"

	"github.com/nyaruka/phonenumbers"
)

// MaxIdentifierBytes bounds the length of an identifier value (and of
// messageId and groupId) after normalisation.
const MaxIdentifierBytes = 256

var (
	sourceNameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,63}$`)
	idTypeRE     = regexp.MustCompile(`^[a-z][a-z0-9_]{0,63}$`)
)

// ValidSourceName reports whether name is a valid source name:
// `[a-z0-9][a-z0-9_-]{0,63}`.
func ValidSourceName(name string) error {
	if !sourceNameRE.MatchString(name) {
		return fmt.Errorf("event: invalid source name %q: want [a-z0-9][a-z0-9_-]{0,63}", name)
	}
	return nil
}

// validIdentifierType reports whether typ (already lower-cased) may be the
// type of an event identifier. profile_id is reserved for look-ups.
func validIdentifierType(typ string) bool {
	return idTypeRE.MatchString(typ) && typ != ProfileID
}

// NormalizeIdentifier returns the normalised form of an identifier value and
// whether it is usable. All values are trimmed; an empty value is unusable.
//
//   - email: lower-cased; it must contain exactly one "@" with non-empty sides.
//   - phone: E.164 when the number is valid (international with a "+" or "00"
//     prefix, or national in defaultRegion); otherwise its digits, with a
//     leading "+" if it had one. A phone without digits is unusable.
//   - any other type: trimmed only.
//
// Normalisation is idempotent: NormalizeIdentifier of a normalised value
// returns it unchanged. The length limit (MaxIdentifierBytes) is checked by
// Parse, not here.
func NormalizeIdentifier(typ, value, defaultRegion string) (string, bool) {
	v := strings.TrimSpace(value)
	if v == "" {
		return "", false
	}
	switch typ {
	case Email:
		v = strings.ToLower(v)
		at := strings.IndexByte(v, '@')
		if at <= 0 || at == len(v)-1 || strings.Count(v, "@") != 1 {
			return "", false
		}
		// Lower-casing may expose new surrounding space in exotic input;
		// trim again so the result is a fixed point.
		if t := strings.TrimSpace(v); t != v {
			return NormalizeIdentifier(typ, t, defaultRegion)
		}
		return v, true
	case Phone:
		return normalizePhone(v, defaultRegion)
	default:
		return v, true
	}
}

// maxPhoneInput bounds the input handed to the phone number library.
const maxPhoneInput = 64

func normalizePhone(v, defaultRegion string) (string, bool) {
	plus := strings.HasPrefix(v, "+")
	var digits strings.Builder
	for _, r := range v {
		if r >= '0' && r <= '9' {
			digits.WriteRune(r)
		}
	}
	d := digits.String()
	if d == "" {
		return "", false
	}
	fallback := d
	if plus {
		fallback = "+" + d
	}
	if len(d) > maxPhoneInput {
		return fallback, true
	}
	var candidate, region string
	switch {
	case plus:
		candidate, region = "+"+d, ""
	case strings.HasPrefix(d, "00"):
		candidate, region = "+"+d[2:], ""
	case defaultRegion != "":
		candidate, region = d, strings.ToUpper(defaultRegion)
	default:
		return fallback, true
	}
	if e164, ok := toE164(candidate, region); ok {
		return e164, true
	}
	return fallback, true
}

func toE164(candidate, region string) (s string, ok bool) {
	defer func() {
		// The phone library is third-party code fed with untrusted input;
		// never let it take the ingest path down.
		if recover() != nil {
			s, ok = "", false
		}
	}()
	num, err := phonenumbers.Parse(candidate, region)
	if err != nil || !phonenumbers.IsValidNumber(num) {
		return "", false
	}
	return phonenumbers.Format(num, phonenumbers.E164), true
}
