package match

import (
	"strings"
	"unicode"
	"unicode/utf8"
)

// MaxValueLen bounds a normalized value (bytes): longer values are cut at a
// rune boundary, so a hostile trait cannot make a comparison expensive
// (Jaro-Winkler is quadratic in the length).
const MaxValueLen = 256

// Missing is the level of a pair where either value is missing.
const Missing = "missing"

// levelNames are the levels of each comparison, most similar first, missing
// excluded.
var levelNames = map[Comparison][]string{
	Exact: {"exact", "else"},
	Name:  {"exact", "jw_0.92", "jw_0.88", "jw_0.70", "swapped", "else"},
	Text:  {"exact", "jw_0.92", "jw_0.88", "jw_0.70", "else"},
	Date:  {"exact", "typo", "day_month_transposed", "else"},
	Phone: {"exact", "else"},
	Email: {"exact", "else"},
}

// Levels returns the level names of a comparison, most similar first (the
// level "missing" not included).
func (k Comparison) Levels() []string {
	return append([]string(nil), levelNames[k]...)
}

// Normalize returns the normalized form of a raw value under comparison k;
// "" means missing. Blocking keys and comparisons both use it.
//
//	name, text: lower case, letters and digits only (apostrophes dropped), runs of
//	            anything else one space
//	exact:      lower case, surrounding space trimmed, inner runs of space one space
//	date:       the digits, when they are 8 (YYYYMMDD, separators dropped); otherwise as exact
//	phone:      the last 9 digits (so a country code or trunk prefix does not
//	            matter), leading zeros dropped
//	email:      lower case, trimmed, a +tag of the local part dropped
func Normalize(k Comparison, raw string) string {
	var s string
	switch k {
	case Name, Text:
		s = words(raw)
	case Date:
		d := digits(raw)
		if len(d) == 8 {
			s = d
		} else {
			s = spaces(raw)
		}
	case Phone:
		d := digits(raw)
		if len(d) > 9 {
			d = d[len(d)-9:]
		}
		s = strings.TrimLeft(d, "0")
	case Email:
		s = strings.ToLower(strings.TrimSpace(raw))
		if at := strings.LastIndexByte(s, '@'); at > 0 {
			local, domain := s[:at], s[at:]
			if p := strings.IndexByte(local, '+'); p > 0 {
				local = local[:p]
			}
			s = local + domain
		}
	default:
		s = spaces(raw)
	}
	return clip(s)
}

func clip(s string) string {
	if len(s) <= MaxValueLen {
		return s
	}
	n := MaxValueLen
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return strings.TrimRight(s[:n], " ")
}

// words keeps letters and digits, lower case, one space between words;
// apostrophes are dropped (O'Brien is obrien), anything else separates.
func words(s string) string {
	var b strings.Builder
	space := false
	for _, r := range s {
		if r == '\'' || r == '’' || r == 'ʼ' {
			continue
		}
		if unicode.IsLetter(r) || unicode.IsDigit(r) {
			if space && b.Len() > 0 {
				b.WriteByte(' ')
			}
			space = false
			b.WriteRune(unicode.ToLower(r))
			continue
		}
		space = true
	}
	return b.String()
}

// spaces lower-cases, trims and collapses runs of white space.
func spaces(s string) string {
	return strings.Join(strings.Fields(strings.ToLower(s)), " ")
}

func digits(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] >= '0' && s[i] <= '9' {
			b.WriteByte(s[i])
		}
	}
	return b.String()
}

// level returns the index into levelNames[k] of the comparison of two
// normalized values, or -1 when either is missing.
func level(k Comparison, a, b string) int {
	if a == "" || b == "" {
		return -1
	}
	if a == b {
		return 0
	}
	switch k {
	case Name, Text:
		jw := JaroWinkler(a, b)
		switch {
		case jw >= 0.92:
			return 1
		case jw >= 0.88:
			return 2
		case jw >= 0.70:
			return 3
		}
		return len(levelNames[k]) - 1
	case Date:
		switch {
		case dateTypo(a, b):
			return 1
		case dayMonthTransposed(a, b):
			return 2
		}
		return 3
	}
	return 1
}

// swappedLevel is the index of the name level "swapped".
const swappedLevel = 4

// countedElsewhere is the level of the second field of a swapped pair: the
// swap is one piece of evidence, counted once, under the first field.
const countedElsewhere = -2

// levels sets out[f] to the level of field f (comparison kinds[f]) of the
// normalized values a[f] and b[f], -1 when either is missing. A name field
// whose values differ (Jaro-Winkler below 0.92) is "swapped" when a later
// name field holds the values crosswise: a's value of the one is like b's
// value of the other and the other way round (Jaro-Winkler ≥ 0.92 both);
// given name and surname entered the wrong way round, say. The later field
// is then countedElsewhere: the two fields disagree because of one swap, and
// counting it twice would overstate it.
func levels(kinds []Comparison, a, b []string, out []int) {
	for f, k := range kinds {
		out[f] = level(k, a[f], b[f])
	}
	for f, k := range kinds {
		if k != Name || out[f] < 2 {
			continue
		}
		for g := f + 1; g < len(kinds); g++ {
			if kinds[g] == Name && out[g] >= 2 &&
				JaroWinkler(a[f], b[g]) >= 0.92 && JaroWinkler(a[g], b[f]) >= 0.92 {
				out[f], out[g] = swappedLevel, countedElsewhere
				break
			}
		}
	}
}

// dateTypo reports whether two dates of the same length differ in one
// character, or by a swap of two adjacent characters.
func dateTypo(a, b string) bool {
	if len(a) != len(b) {
		return false
	}
	first, diffs := -1, 0
	for i := 0; i < len(a); i++ {
		if a[i] != b[i] {
			if diffs == 0 {
				first = i
			}
			diffs++
		}
	}
	switch diffs {
	case 1:
		return true
	case 2:
		i := first
		return i+1 < len(a) && a[i] == b[i+1] && a[i+1] == b[i] && a[i+2:] == b[i+2:]
	}
	return false
}

// dayMonthTransposed reports whether two YYYYMMDD dates have the same year
// and day and month swapped.
func dayMonthTransposed(a, b string) bool {
	if len(a) != 8 || len(b) != 8 || a[:4] != b[:4] {
		return false
	}
	return a[4:6] == b[6:8] && a[6:8] == b[4:6]
}

// JaroWinkler returns the Jaro-Winkler similarity of a and b in [0, 1]
// (prefix scale 0.1, common prefix up to 4, applied when the Jaro similarity
// is above 0.7), over runes.
func JaroWinkler(a, b string) float64 {
	if a == b {
		return 1
	}
	if ascii(a) && ascii(b) {
		return jaroWinkler([]byte(a), []byte(b))
	}
	return jaroWinkler([]rune(a), []rune(b))
}

func ascii(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= utf8.RuneSelf {
			return false
		}
	}
	return true
}

func jaroWinkler[E byte | rune](a, b []E) float64 {
	j := jaro(a, b)
	if j <= 0.7 {
		return j
	}
	l := 0
	for l < 4 && l < len(a) && l < len(b) && a[l] == b[l] {
		l++
	}
	return j + float64(l)*0.1*(1-j)
}

func jaro[E byte | rune](a, b []E) float64 {
	if len(a) == 0 || len(b) == 0 {
		return 0
	}
	if len(a) > len(b) {
		a, b = b, a
	}
	window := max(len(b)/2-1, 0)
	var bufA, bufB [64]bool
	var ma, mb []bool
	if len(a) > len(bufA) || len(b) > len(bufB) {
		ma, mb = make([]bool, len(a)), make([]bool, len(b))
	} else {
		ma, mb = bufA[:len(a)], bufB[:len(b)]
	}
	m := 0
	for i := range a {
		lo, hi := max(0, i-window), min(len(b), i+window+1)
		for k := lo; k < hi; k++ {
			if !mb[k] && a[i] == b[k] {
				ma[i], mb[k] = true, true
				m++
				break
			}
		}
	}
	if m == 0 {
		return 0
	}
	t, k := 0, 0
	for i := range a {
		if !ma[i] {
			continue
		}
		for !mb[k] {
			k++
		}
		if a[i] != b[k] {
			t++
		}
		k++
	}
	fm := float64(m)
	return (fm/float64(len(a)) + fm/float64(len(b)) + (fm-float64(t)/2)/fm) / 3
}
