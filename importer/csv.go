package importer

import (
	"bufio"
	"bytes"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"regexp"
	"strings"
	"time"
)

type column struct {
	idx  int
	name string // identifier type, trait or property name
}

// csvSource reads CSV (or whitespace-separated) records and maps them.
type csvSource struct {
	m      Mapping
	cr     *csv.Reader
	budget *budgetReader
	lines  *lineReader // whitespace mode
	width  int         // header width

	ids, traits, props []column
	event, ts, msgID   int // column indexes, -1 when unmapped
}

func newCSV(r io.Reader, m Mapping) (func() (Row, error), error) {
	comma, ws, err := m.separator()
	if err != nil {
		return nil, err
	}
	s := &csvSource{m: m}
	var header []string
	if ws {
		s.lines = newLineReader(r)
		for {
			line, _, tooLong, err := s.lines.next()
			if err != nil {
				return nil, fmt.Errorf("importer: csv header: %w", err)
			}
			if tooLong {
				return nil, fmt.Errorf("importer: csv header: %w", ErrRecordTooLarge)
			}
			if header = strings.Fields(string(line)); len(header) > 0 {
				break
			}
		}
	} else {
		s.budget = &budgetReader{r: r}
		s.budget.allow(0)
		s.cr = csv.NewReader(s.budget)
		s.cr.Comma = comma
		s.cr.FieldsPerRecord = -1
		if header, err = s.cr.Read(); err != nil {
			return nil, fmt.Errorf("importer: csv header: %w", err)
		}
	}
	for i, h := range header {
		if i == 0 {
			h = strings.TrimPrefix(h, "\uFEFF")
		}
		header[i] = strings.TrimSpace(h)
	}
	if err := m.Validate(header); err != nil {
		return nil, err
	}
	s.width = len(header)
	index := make(map[string]int, len(header))
	for i := len(header) - 1; i >= 0; i-- {
		index[header[i]] = i // the first of duplicate names wins
	}
	cols := func(mm map[string]string, lower bool) []column {
		var out []column
		for _, c := range sortedKeys(mm) {
			name := strings.TrimSpace(mm[c])
			if lower {
				name = strings.ToLower(name)
			}
			out = append(out, column{idx: index[c], name: name})
		}
		return out
	}
	s.ids, s.traits, s.props = cols(m.Identifiers, true), cols(m.Traits, false), cols(m.Properties, false)
	opt := func(c string) int {
		if c == "" {
			return -1
		}
		return index[c]
	}
	s.event, s.ts, s.msgID = opt(m.EventColumn), opt(m.Timestamp), opt(m.MessageID)
	return s.next, nil
}

func (s *csvSource) next() (Row, error) {
	for {
		var rec []string
		var line int
		if s.lines != nil {
			b, n, tooLong, err := s.lines.next()
			if err != nil {
				return Row{}, err
			}
			if tooLong {
				return Row{Line: n, Err: fmt.Errorf("importer: line %d: longer than 1 MB", n)}, nil
			}
			rec, line = strings.Fields(string(b)), n
			if len(rec) == 0 {
				continue
			}
		} else {
			s.budget.allow(s.cr.InputOffset())
			var err error
			rec, err = s.cr.Read()
			var pe *csv.ParseError
			if errors.As(err, &pe) && (errors.Is(pe.Err, csv.ErrBareQuote) || errors.Is(pe.Err, csv.ErrQuote) || errors.Is(pe.Err, csv.ErrFieldCount)) {
				return Row{Line: pe.StartLine, Err: fmt.Errorf("importer: %w", err)}, nil
			}
			if err == io.EOF {
				return Row{}, io.EOF
			}
			if err != nil {
				return Row{}, fmt.Errorf("importer: csv: %w", err)
			}
			line, _ = s.cr.FieldPos(0)
		}
		if len(rec) != s.width {
			return Row{Line: line, Err: fmt.Errorf("importer: line %d: %d fields, header has %d", line, len(rec), s.width)}, nil
		}
		msg, err := s.message(rec)
		if err != nil {
			return Row{Line: line, Err: fmt.Errorf("importer: line %d: %w", line, err)}, nil
		}
		return Row{Line: line, Message: msg}, nil
	}
}

var jsonNumberRE = regexp.MustCompile(`^-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?$`)

// number returns v as a json.Number when it is a JSON number, else v.
func number(v string) any {
	if len(v) <= 64 && jsonNumberRE.MatchString(v) {
		return json.Number(v)
	}
	return v
}

func (s *csvSource) message(rec []string) (map[string]any, error) {
	msg := map[string]any{}
	traits := map[string]any{}
	props := map[string]any{}
	var ext []any
	for _, c := range s.traits {
		if v := strings.TrimSpace(rec[c.idx]); v != "" {
			traits[c.name] = v
		}
	}
	for _, c := range s.props {
		if v := strings.TrimSpace(rec[c.idx]); v != "" {
			props[c.name] = number(v)
		}
	}
	for _, c := range s.ids {
		v := strings.TrimSpace(rec[c.idx])
		if v == "" {
			continue
		}
		switch c.name {
		case "user_id":
			msg["userId"] = v
		case "anonymous_id":
			msg["anonymousId"] = v
		case "email", "phone":
			traits[c.name] = v
		default:
			ext = append(ext, map[string]any{"id": v, "type": c.name, "collection": "users", "encoding": "none"})
		}
	}
	switch {
	case s.m.Event != "":
		msg["type"], msg["event"] = "track", s.m.Event
	case s.event >= 0:
		msg["type"], msg["event"] = "track", strings.TrimSpace(rec[s.event])
	default:
		msg["type"] = "identify"
	}
	if s.ts >= 0 {
		v := strings.TrimSpace(rec[s.ts])
		if v == "" {
			return nil, fmt.Errorf("column %q: empty timestamp", s.m.Timestamp)
		}
		t, err := parseTime(v, s.m.TimeLayout)
		if err != nil {
			return nil, fmt.Errorf("column %q: bad timestamp %q: %v", s.m.Timestamp, v, err)
		}
		msg["timestamp"] = t.Format(time.RFC3339Nano)
	}
	if s.msgID >= 0 {
		if v := strings.TrimSpace(rec[s.msgID]); v != "" {
			msg["messageId"] = v
		}
	}
	if len(traits) > 0 {
		msg["traits"] = traits
	}
	if len(props) > 0 {
		msg["properties"] = props
	}
	if len(ext) > 0 {
		msg["context"] = map[string]any{"externalIds": ext}
	}
	return msg, nil
}

// lineReader reads lines of at most MaxRecordBytes; the rest of a longer
// line is discarded and the line reported as too long.
type lineReader struct {
	br   *bufio.Reader
	line int
}

func newLineReader(r io.Reader) *lineReader {
	return &lineReader{br: bufio.NewReaderSize(r, MaxRecordBytes)}
}

// next returns the next line without its terminator and its 1-based
// number. The returned slice is valid until the next call.
func (l *lineReader) next() (line []byte, n int, tooLong bool, err error) {
	b, err := l.br.ReadSlice('\n')
	for err == bufio.ErrBufferFull {
		tooLong = true
		_, err = l.br.ReadSlice('\n')
	}
	if err == io.EOF && (len(b) > 0 || tooLong) {
		err = nil
	}
	if err != nil {
		if err != io.EOF {
			err = fmt.Errorf("importer: read: %w", err)
		}
		return nil, 0, false, err
	}
	l.line++
	if tooLong {
		return nil, l.line, true, nil
	}
	return bytes.TrimRight(b, "\r\n"), l.line, false, nil
}
