package event

import (
	"bytes"
	"strings"
)

// batchItem is one element of a batch as the fast path scanned it: its
// bytes as sent and its decoded tree.
type batchItem struct {
	raw     []byte
	v       any
	numbers bool // v holds a json.Number
}

// parseBatchFast is ParseBatch in one pass of the scanner over the body:
// the envelope and every element are decoded together, with no separate
// validation pass and no second decode of each element.
//
// It takes only the plain shape: an object whose keys "batch" (an array),
// "context" (an object or null) and "sentAt" (a valid time or null) each
// appear at most once and spelled exactly so. Anything else (a syntax
// error, trailing data, a duplicate or case-folded envelope key, an
// envelope value of another type, nesting beyond maxScanDepth) gives
// ok == false, and the caller runs parseBatchStd, which produces the same
// result or the error. When ok, the result equals parseBatchStd's.
func parseBatchFast(data []byte, opts ParseOptions) (evs []Event, rej []Rejection, ok bool) {
	s := scanner{data: data, text: string(data)}
	s.skipSpace()
	if s.pos >= len(data) || data[s.pos] != '{' {
		return nil, nil, false
	}
	s.pos++
	s.skipSpace()
	var (
		items                       []batchItem
		shared                      map[string]any
		sentAt                      any
		seenBatch, seenCtx, seenSnt bool
		sharedNumbers               bool // the batch's context holds a number
	)
	if s.pos < len(data) && data[s.pos] == '}' {
		return nil, nil, false // no "batch": the error is parseBatchStd's
	}
	for {
		if s.pos >= len(data) || data[s.pos] != '"' {
			return nil, nil, false
		}
		key, ok := s.str()
		if !ok {
			return nil, nil, false
		}
		s.skipSpace()
		if s.pos >= len(data) || data[s.pos] != ':' {
			return nil, nil, false
		}
		s.pos++
		s.skipSpace()
		switch key {
		case "batch":
			if seenBatch || s.pos >= len(data) || data[s.pos] != '[' {
				return nil, nil, false
			}
			seenBatch = true
			if items, ok = s.batchItems(); !ok {
				return nil, nil, false
			}
		case "context":
			before := s.numbers
			v, ok := s.value()
			sharedNumbers = s.numbers > before
			if seenCtx || !ok {
				return nil, nil, false
			}
			seenCtx = true
			if v != nil {
				if shared, ok = v.(map[string]any); !ok {
					return nil, nil, false
				}
			}
		case "sentAt":
			v, ok := s.value()
			if seenSnt || !ok {
				return nil, nil, false
			}
			seenSnt = true
			if v != nil {
				if _, valid := parseTime(v); !valid {
					return nil, nil, false
				}
				sentAt = v
			}
		default:
			// encoding/json matches struct fields case-insensitively
			// (with Unicode folding): leave such keys to it.
			if strings.EqualFold(key, "batch") || strings.EqualFold(key, "context") || strings.EqualFold(key, "sentAt") {
				return nil, nil, false
			}
			if _, ok := s.value(); !ok {
				return nil, nil, false
			}
		}
		s.skipSpace()
		if s.pos >= len(data) {
			return nil, nil, false
		}
		if data[s.pos] == ',' {
			s.pos++
			s.skipSpace()
			continue
		}
		if data[s.pos] != '}' {
			return nil, nil, false
		}
		s.pos++
		break
	}
	s.skipSpace()
	if s.pos != len(data) || !seenBatch {
		return nil, nil, false
	}

	evs = make([]Event, len(items))
	n := 0
	for i, it := range items {
		var err error
		if evs[n], err = parseFastItem(it, shared, sentAt, sharedNumbers, opts); err != nil {
			fe := asFieldError(err)
			rej = append(rej, Rejection{Index: i, Field: fe.Field, Reason: fe.Reason, Raw: bytes.Clone(it.raw)})
			continue
		}
		n++
	}
	if n == 0 {
		return nil, rej, true // as parseBatchStd returns it
	}
	return evs[:n], rej, true
}

func parseFastItem(it batchItem, shared map[string]any, sentAt any, sharedNumbers bool, opts ParseOptions) (Event, error) {
	if len(it.raw) > opts.MaxEventBytes {
		return Event{}, tooLarge(opts.MaxEventBytes)
	}
	m, ok := it.v.(map[string]any)
	if !ok {
		return Event{}, &FieldError{Field: "", Reason: "event is not a JSON object"}
	}
	return parseBatchObject(m, shared, sentAt, opts, it.numbers || sharedNumbers)
}

// batchItems decodes the array at s.pos, keeping each element's bytes.
func (s *scanner) batchItems() ([]batchItem, bool) {
	s.pos++ // '['
	s.skipSpace()
	var items []batchItem
	if s.pos < len(s.data) && s.data[s.pos] == ']' {
		s.pos++
		return items, true
	}
	for {
		start, numbers := s.pos, s.numbers
		v, ok := s.value()
		if !ok {
			return nil, false
		}
		items = append(items, batchItem{raw: s.data[start:s.pos], v: v, numbers: s.numbers > numbers})
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
			return items, true
		default:
			return nil, false
		}
	}
}
