package importer

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
)

// decodeMessage decodes one JSON object with numbers kept as json.Number.
func decodeMessage(data []byte) (map[string]any, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, fmt.Errorf("invalid JSON: %w", err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, errors.New("invalid JSON: data after the object")
	}
	m, ok := v.(map[string]any)
	if !ok {
		return nil, errors.New("not a JSON object")
	}
	return m, nil
}

// newNDJSON reads one message per line; blank lines are skipped.
func newNDJSON(r io.Reader) func() (Row, error) {
	lines := newLineReader(r)
	return func() (Row, error) {
		for {
			b, n, tooLong, err := lines.next()
			if err != nil {
				return Row{}, err
			}
			if tooLong {
				return Row{Line: n, Err: fmt.Errorf("importer: line %d: longer than 1 MB", n)}, nil
			}
			if len(bytes.TrimSpace(b)) == 0 {
				continue
			}
			m, err := decodeMessage(b)
			if err != nil {
				return Row{Line: n, Err: fmt.Errorf("importer: line %d: %w", n, err)}, nil
			}
			return Row{Line: n, Message: m}, nil
		}
	}
}

// jsonSource streams the elements of a top-level array or of the "batch"
// array of a top-level object (its other keys are ignored). An element that
// is not an object is a malformed row; a syntax error is fatal, since the
// stream cannot be resynchronised.
type jsonSource struct {
	dec    *json.Decoder
	budget *budgetReader
	n      int
	done   bool
}

func newJSON(r io.Reader) (func() (Row, error), error) {
	s := &jsonSource{budget: &budgetReader{r: r}}
	s.budget.allow(0)
	s.dec = json.NewDecoder(s.budget)
	s.dec.UseNumber()
	tok, err := s.dec.Token()
	if err != nil {
		return nil, fmt.Errorf("importer: json: %w", err)
	}
	switch tok {
	case json.Delim('['):
	case json.Delim('{'):
		if err := s.findBatch(); err != nil {
			return nil, err
		}
	default:
		return nil, fmt.Errorf("importer: json: want an array or {\"batch\": [...]}")
	}
	return s.next, nil
}

func (s *jsonSource) findBatch() error {
	for s.dec.More() {
		s.budget.allow(s.dec.InputOffset())
		key, err := s.dec.Token()
		if err != nil {
			return fmt.Errorf("importer: json: %w", err)
		}
		if key == "batch" {
			tok, err := s.dec.Token()
			if err != nil {
				return fmt.Errorf("importer: json: %w", err)
			}
			if tok != json.Delim('[') {
				return fmt.Errorf("importer: json: \"batch\" is not an array")
			}
			return nil
		}
		var skip json.RawMessage
		if err := s.dec.Decode(&skip); err != nil {
			return fmt.Errorf("importer: json: %w", err)
		}
	}
	return fmt.Errorf("importer: json: no \"batch\" array")
}

func (s *jsonSource) next() (Row, error) {
	if s.done {
		return Row{}, io.EOF
	}
	if !s.dec.More() {
		if _, err := s.dec.Token(); err != nil { // the closing ']'
			return Row{}, fmt.Errorf("importer: json: %w", err)
		}
		s.done = true
		return Row{}, io.EOF
	}
	s.n++
	s.budget.allow(s.dec.InputOffset())
	var raw json.RawMessage
	if err := s.dec.Decode(&raw); err != nil {
		return Row{}, fmt.Errorf("importer: json: record %d: %w", s.n, err)
	}
	m, err := decodeMessage(raw)
	if err != nil {
		return Row{Line: s.n, Err: fmt.Errorf("importer: record %d: %w", s.n, err)}, nil
	}
	return Row{Line: s.n, Message: m}, nil
}
