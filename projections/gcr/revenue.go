package gcr

import (
	"encoding/json"
	"math"
	"strconv"
	"strings"
)

// MaxRevenue bounds the absolute value of one event's revenue, in units.
// Larger values are ignored as implausible. Sums stay exact while their total
// is within ±9.2e12 units (int64 micro-units); beyond that they wrap, which
// keeps them order-independent.
const MaxRevenue = 1e10

const maxMicros = MaxRevenue * 1e6 // 1e16, < 2^63

// revenueOf returns the revenue of an event's properties in micro-units:
// properties.revenue, or properties.total when revenue is absent or null.
func revenueOf(props map[string]any) (int64, bool) {
	v, ok := props["revenue"]
	if !ok || v == nil {
		v = props["total"]
	}
	return toMicros(v)
}

// toMicros converts a number or numeric string to micro-units, rounding half
// away from zero at the sixth decimal. Floats are converted through their
// shortest decimal representation, so 0.1 is exactly 100000 micros.
func toMicros(v any) (int64, bool) {
	switch n := v.(type) {
	case int:
		return intMicros(int64(n))
	case int8:
		return intMicros(int64(n))
	case int16:
		return intMicros(int64(n))
	case int32:
		return intMicros(int64(n))
	case int64:
		return intMicros(n)
	case uint:
		return uintMicros(uint64(n))
	case uint8:
		return uintMicros(uint64(n))
	case uint16:
		return uintMicros(uint64(n))
	case uint32:
		return uintMicros(uint64(n))
	case uint64:
		return uintMicros(n)
	case float32:
		if math.IsNaN(float64(n)) || math.IsInf(float64(n), 0) {
			return 0, false
		}
		return decimalMicros(strconv.FormatFloat(float64(n), 'g', -1, 32))
	case float64:
		if math.IsNaN(n) || math.IsInf(n, 0) {
			return 0, false
		}
		return decimalMicros(strconv.FormatFloat(n, 'g', -1, 64))
	case string:
		return decimalMicros(strings.TrimSpace(n))
	case json.Number:
		return decimalMicros(string(n))
	}
	return 0, false
}

func intMicros(n int64) (int64, bool) {
	if n > MaxRevenue || n < -MaxRevenue {
		return 0, false
	}
	return n * 1e6, true
}

func uintMicros(n uint64) (int64, bool) {
	if n > MaxRevenue {
		return 0, false
	}
	return int64(n) * 1e6, true
}

// decimalMicros parses [+-]digits[.digits][(e|E)[+-]digits] (at least one
// mantissa digit) into micro-units, rounding half away from zero.
func decimalMicros(s string) (int64, bool) {
	i := 0
	neg := false
	if i < len(s) && (s[i] == '+' || s[i] == '-') {
		neg = s[i] == '-'
		i++
	}
	var digits []byte // mantissa digits without the point
	frac := 0         // digits after the point
	seenPoint, seenDigit := false, false
	for ; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= '0' && c <= '9':
			digits = append(digits, c)
			seenDigit = true
			if seenPoint {
				frac++
			}
		case c == '.' && !seenPoint:
			seenPoint = true
		default:
			goto exponent
		}
	}
exponent:
	if !seenDigit {
		return 0, false
	}
	exp := 0
	if i < len(s) {
		if s[i] != 'e' && s[i] != 'E' {
			return 0, false
		}
		i++
		expNeg := false
		if i < len(s) && (s[i] == '+' || s[i] == '-') {
			expNeg = s[i] == '-'
			i++
		}
		if i == len(s) {
			return 0, false
		}
		for ; i < len(s); i++ {
			c := s[i]
			if c < '0' || c > '9' {
				return 0, false
			}
			if exp < 10000 { // saturate: the value is 0 or out of range long before
				exp = exp*10 + int(c-'0')
			}
		}
		if expNeg {
			exp = -exp
		}
	}
	// Strip leading zeros; an all-zero mantissa is 0 whatever the exponent.
	for len(digits) > 0 && digits[0] == '0' {
		digits = digits[1:]
	}
	if len(digits) == 0 {
		return 0, true
	}
	// value = digits × 10^(exp-frac); micros = digits × 10^shift.
	shift := exp - frac + 6
	var intPart []byte
	roundUp := false
	switch {
	case shift >= 0:
		if len(digits)+shift > 17 { // ≥ 1e17 micros > maxMicros
			return 0, false
		}
		intPart = append(digits, strings.Repeat("0", shift)...)
	case -shift >= len(digits):
		// Below one micro: rounds up only when ≥ 0.5 micro, i.e. exactly one
		// digit position below the unit and that digit is ≥ 5.
		roundUp = -shift == len(digits) && digits[0] >= '5'
	default:
		cut := len(digits) + shift
		intPart = digits[:cut]
		roundUp = digits[cut] >= '5'
		if len(intPart) > 17 {
			return 0, false
		}
	}
	var m int64
	if len(intPart) > 0 {
		u, err := strconv.ParseUint(string(intPart), 10, 64)
		if err != nil {
			return 0, false
		}
		if u > maxMicros {
			return 0, false
		}
		m = int64(u)
	}
	if roundUp {
		m++
	}
	if m > maxMicros {
		return 0, false
	}
	if neg {
		m = -m
	}
	return m, true
}
