package event

import (
	"encoding/json"
	"unicode"
	"unicode/utf16"
	"unicode/utf8"
)

// scanner is a hand-written JSON decoder for the parse path. It produces
// exactly the tree encoding/json produces when decoding into an `any` with
// UseNumber: map[string]any (duplicate keys: the last wins), []any (an empty
// array is a non-nil empty slice), string (invalid UTF-8 and lone
// surrogates become U+FFFD, as encoding/json's unquote does), json.Number
// holding the literal's text, bool and nil.
//
// It only accepts what encoding/json accepts; on anything it does not
// accept (including nesting deeper than maxScanDepth) it fails, and the
// caller falls back to encoding/json, which then produces the result or
// the error. So the scanner never needs to reproduce an error: failing is
// always safe, succeeding must give encoding/json's tree.
type scanner struct {
	data  []byte
	pos   int
	depth int
	// text, when set, is string(data): keys, strings and numbers without
	// escapes are taken from it, with no allocation each (it replaced a
	// per-batch interning of keys). They keep the whole text alive while
	// any of them lives, so it is set only where the tree lives no longer
	// than the request (the edge's parse).
	text string
	// numbers counts the numbers scanned.
	numbers int
}

// substr returns data[i:j] as a string, from text when set.
func (s *scanner) substr(i, j int) string {
	if s.text != "" {
		return s.text[i:j]
	}
	return string(s.data[i:j])
}

// maxScanDepth bounds the nesting the scanner handles itself (encoding/json
// allows 10000; deeper trees fall back to it).
const maxScanDepth = 1000

func isSpace(c byte) bool {
	return c == ' ' || c == '\t' || c == '\n' || c == '\r'
}

func (s *scanner) skipSpace() {
	for s.pos < len(s.data) && isSpace(s.data[s.pos]) {
		s.pos++
	}
}

// value decodes the value at s.pos (no leading space) and leaves s.pos just
// after it.
func (s *scanner) value() (any, bool) {
	if s.pos >= len(s.data) {
		return nil, false
	}
	switch c := s.data[s.pos]; {
	case c == '{':
		return s.object()
	case c == '[':
		return s.array()
	case c == '"':
		str, ok := s.str()
		return str, ok
	case c == '-' || (c >= '0' && c <= '9'):
		return s.number()
	case c == 't':
		return true, s.literal("true")
	case c == 'f':
		return false, s.literal("false")
	case c == 'n':
		return nil, s.literal("null")
	}
	return nil, false
}

func (s *scanner) literal(lit string) bool {
	if len(s.data)-s.pos < len(lit) || string(s.data[s.pos:s.pos+len(lit)]) != lit {
		return false
	}
	s.pos += len(lit)
	return true
}

func (s *scanner) object() (any, bool) {
	s.depth++
	if s.depth > maxScanDepth {
		return nil, false
	}
	s.pos++ // '{'
	m := make(map[string]any)
	s.skipSpace()
	if s.pos < len(s.data) && s.data[s.pos] == '}' {
		s.pos++
		s.depth--
		return m, true
	}
	for {
		if s.pos >= len(s.data) || s.data[s.pos] != '"' {
			return nil, false
		}
		key, ok := s.str()
		if !ok {
			return nil, false
		}
		s.skipSpace()
		if s.pos >= len(s.data) || s.data[s.pos] != ':' {
			return nil, false
		}
		s.pos++
		s.skipSpace()
		v, ok := s.value()
		if !ok {
			return nil, false
		}
		m[key] = v
		s.skipSpace()
		if s.pos >= len(s.data) {
			return nil, false
		}
		switch s.data[s.pos] {
		case ',':
			s.pos++
			s.skipSpace()
		case '}':
			s.pos++
			s.depth--
			return m, true
		default:
			return nil, false
		}
	}
}

func (s *scanner) array() (any, bool) {
	s.depth++
	if s.depth > maxScanDepth {
		return nil, false
	}
	s.pos++ // '['
	a := make([]any, 0)
	s.skipSpace()
	if s.pos < len(s.data) && s.data[s.pos] == ']' {
		s.pos++
		s.depth--
		return a, true
	}
	for {
		v, ok := s.value()
		if !ok {
			return nil, false
		}
		a = append(a, v)
		s.skipSpace()
		if s.pos >= len(s.data) {
			return nil, false
		}
		switch s.data[s.pos] {
		case ',':
			s.pos++
			s.skipSpace()
		case ']':
			s.pos++
			s.depth--
			return a, true
		default:
			return nil, false
		}
	}
}

// number scans -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)? and returns
// its text as a json.Number.
func (s *scanner) number() (any, bool) {
	d, start := s.data, s.pos
	i := s.pos
	if d[i] == '-' {
		i++
	}
	switch {
	case i < len(d) && d[i] == '0':
		i++
	case i < len(d) && d[i] >= '1' && d[i] <= '9':
		for i < len(d) && d[i] >= '0' && d[i] <= '9' {
			i++
		}
	default:
		return nil, false
	}
	if i < len(d) && d[i] == '.' {
		i++
		j := i
		for i < len(d) && d[i] >= '0' && d[i] <= '9' {
			i++
		}
		if i == j {
			return nil, false
		}
	}
	if i < len(d) && (d[i] == 'e' || d[i] == 'E') {
		i++
		if i < len(d) && (d[i] == '+' || d[i] == '-') {
			i++
		}
		j := i
		for i < len(d) && d[i] >= '0' && d[i] <= '9' {
			i++
		}
		if i == j {
			return nil, false
		}
	}
	s.pos = i
	s.numbers++
	return json.Number(s.substr(start, i)), true
}

// str decodes the string literal at s.pos.
func (s *scanner) str() (string, bool) {
	d := s.data
	start := s.pos + 1
	esc, wide := false, false // escapes, non-ASCII bytes
	i := start
	for {
		if i >= len(d) {
			return "", false
		}
		c := d[i]
		if c == '"' {
			break
		}
		switch {
		case c < 0x20:
			return "", false
		case c == '\\':
			esc = true
			i++
			if i >= len(d) {
				return "", false
			}
			switch d[i] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				i++
			case 'u':
				if len(d)-i < 5 || getu4(d[i-1:]) < 0 {
					return "", false
				}
				i += 5
			default:
				return "", false
			}
			continue
		case c >= utf8.RuneSelf:
			wide = true
		}
		i++
	}
	s.pos = i + 1
	raw := d[start:i]
	if !esc && (!wide || utf8.Valid(raw)) {
		return s.substr(start, i), true
	}
	return unquote(raw), true
}

// getu4 decodes \uXXXX from the beginning of s, returning the hex value,
// or -1 (as encoding/json does).
func getu4(s []byte) rune {
	if len(s) < 6 || s[0] != '\\' || s[1] != 'u' {
		return -1
	}
	var r rune
	for _, c := range s[2:6] {
		switch {
		case '0' <= c && c <= '9':
			c = c - '0'
		case 'a' <= c && c <= 'f':
			c = c - 'a' + 10
		case 'A' <= c && c <= 'F':
			c = c - 'A' + 10
		default:
			return -1
		}
		r = r*16 + rune(c)
	}
	return r
}

// unquote decodes the body of a string literal the scanner has validated,
// with encoding/json's rules: escapes, surrogate pairs (a lone surrogate
// becomes U+FFFD), and each byte of invalid UTF-8 becomes U+FFFD.
func unquote(s []byte) string {
	b := make([]byte, 0, len(s)+2*utf8.UTFMax)
	for r := 0; r < len(s); {
		c := s[r]
		switch {
		case c == '\\':
			switch s[r+1] {
			case 'b':
				b = append(b, '\b')
			case 'f':
				b = append(b, '\f')
			case 'n':
				b = append(b, '\n')
			case 'r':
				b = append(b, '\r')
			case 't':
				b = append(b, '\t')
			case 'u':
				rr := getu4(s[r:])
				r += 6
				if utf16.IsSurrogate(rr) {
					rr1 := getu4(s[r:])
					if dec := utf16.DecodeRune(rr, rr1); dec != unicode.ReplacementChar {
						r += 6
						b = utf8.AppendRune(b, dec)
						continue
					}
					rr = unicode.ReplacementChar
				}
				b = utf8.AppendRune(b, rr)
				continue
			default: // '"', '\\', '/'
				b = append(b, s[r+1])
			}
			r += 2
		case c < utf8.RuneSelf:
			b = append(b, c)
			r++
		default:
			rr, size := utf8.DecodeRune(s[r:])
			r += size
			b = utf8.AppendRune(b, rr)
		}
	}
	return string(b)
}

// scanValue decodes data as one JSON value with nothing but white space
// around it; ok is false when the scanner does not accept it (the caller
// then asks encoding/json).
func scanValue(data []byte) (any, bool) {
	s := scanner{data: data, text: string(data)}
	s.skipSpace()
	v, ok := s.value()
	if !ok {
		return nil, false
	}
	s.skipSpace()
	return v, s.pos == len(data)
}
