// Package importer turns batch files (CRM exports, POS files) into a stream
// of Segment-shaped messages: map[string]any of the shape /v1/batch accepts,
// so that event.Parse applies the same validation to imported history as to
// live traffic.
//
// Every format is streamed: a file is never loaded into memory whole. A
// single record is bounded (MaxRecordBytes).
package importer

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
)

// Format is the format of an import file.
type Format string

// The import formats.
const (
	CSV    Format = "csv"    // with a header line; see Mapping
	JSON   Format = "json"   // a top-level array of messages, or {"batch": [...]}
	NDJSON Format = "ndjson" // one message per line
	XML    Format = "xml"    // see the xml.go doc comment
)

// MaxRecordBytes bounds one record (a CSV record, an NDJSON line, a JSON
// array element, an XML <event>). A longer NDJSON or whitespace-separated
// line is a malformed row; in CSV, JSON and XML, whose records cannot be
// skipped without parsing them, it is fatal (ErrRecordTooLarge).
const MaxRecordBytes = 1 << 20

// ErrRecordTooLarge is the fatal error for a record larger than
// MaxRecordBytes in a CSV, JSON or XML file.
var ErrRecordTooLarge = errors.New("importer: record larger than 1 MB")

// Row is one record of an import file.
type Row struct {
	// Line is the 1-based line of the record (CSV: its first line, the
	// header being line 1; NDJSON and whitespace-separated: its line; XML:
	// the line of its <event> tag) or, for JSON, its 1-based position in
	// the array.
	Line int
	// Message is the Segment-shaped message; nil when Err is set.
	Message map[string]any
	// Err reports a malformed record; the import continues with the next.
	Err error
	// Warnings name values of the message that Aurum will not read as
	// meant (a NumericProperties value that is not a number); the row is
	// imported all the same.
	Warnings []string
}

// NumericProperties are the event properties Aurum reads as numbers: an
// order's revenue is properties.revenue, else properties.total (numbers
// or numeric strings; projections/gcr). Another value is kept on the
// event but counts as no revenue, so an import warns about it.
var NumericProperties = []string{"revenue", "total"}

// typeWarnings returns a warning per NumericProperties value of msg that
// is not a number or a numeric string.
func typeWarnings(msg map[string]any) []string {
	props, _ := msg["properties"].(map[string]any)
	var out []string
	for _, name := range NumericProperties {
		v, ok := props[name]
		switch x := v.(type) {
		case nil, json.Number, float64, float32, int, int64, int32, uint, uint64, uint32:
			continue
		case string:
			if len(x) <= 64 && jsonNumberRE.MatchString(x) {
				continue
			}
		}
		if ok {
			shown, _ := json.Marshal(v)
			if len(shown) > 40 {
				shown = append(shown[:37:37], "..."...)
			}
			out = append(out, fmt.Sprintf("properties.%s is %s, not a number: Aurum ignores it as revenue", name, shown))
		}
	}
	return out
}

// Reader reads messages from an import file.
//
// Every message without a "messageId" gets a deterministic one:
// "imp-" + the first 32 hex digits of sha256(source, 0x00, canonical JSON of
// the message) + "-" + n, where n counts the earlier identical messages in
// the same file. Re-importing a file yields the same ids (which Aurum's
// deduplication drops) and an export that only grew adds its new rows.
// Counting needs 12 bytes of memory per distinct message (a map keyed by 8
// bytes of the hash; a collision only bumps n, ids stay unique).
type Reader struct {
	next   func() (Row, error)
	source string
	seen   map[uint64]uint32
}

// NewReader returns a Reader of r in format f. m applies to CSV only and is
// validated against the header; source names the import source and enters
// the generated message ids.
func NewReader(r io.Reader, f Format, m Mapping, source string) (*Reader, error) {
	rd := &Reader{source: source, seen: make(map[uint64]uint32)}
	var err error
	switch f {
	case CSV:
		rd.next, err = newCSV(r, m)
	case JSON:
		rd.next, err = newJSON(r)
	case NDJSON:
		rd.next = newNDJSON(r)
	case XML:
		rd.next, err = newXML(r)
	default:
		return nil, fmt.Errorf("importer: unknown format %q", f)
	}
	if err != nil {
		return nil, err
	}
	return rd, nil
}

// Next returns the next row, or io.EOF at the end. A malformed record is a
// Row with Err set; an error is fatal (the stream cannot be continued).
func (r *Reader) Next() (Row, error) {
	row, err := r.next()
	if err != nil {
		return Row{}, err
	}
	if row.Err != nil {
		row.Message = nil
		return row, nil
	}
	row.Warnings = typeWarnings(row.Message)
	if v, ok := row.Message["messageId"]; ok && v != nil && v != "" {
		return row, nil
	}
	delete(row.Message, "messageId")
	canonical, err := json.Marshal(row.Message) // map keys are sorted
	if err != nil {
		return Row{Line: row.Line, Err: fmt.Errorf("importer: line %d: %w", row.Line, err)}, nil
	}
	h := sha256.New()
	h.Write([]byte(r.source))
	h.Write([]byte{0})
	h.Write(canonical)
	sum := h.Sum(nil)
	key := binary.BigEndian.Uint64(sum)
	n := r.seen[key]
	r.seen[key] = n + 1
	row.Message["messageId"] = "imp-" + hex.EncodeToString(sum)[:32] + "-" + strconv.FormatUint(uint64(n), 10)
	return row, nil
}

// budgetReader fails reads beyond a moving limit, bounding the memory a
// decoder may buffer for one record.
type budgetReader struct {
	r     io.Reader
	n     int64 // bytes read so far
	limit int64
}

// allow lets the decoder read up to MaxRecordBytes (plus its read-ahead)
// beyond offset, the input offset of the record about to be decoded.
func (b *budgetReader) allow(offset int64) { b.limit = offset + 2*MaxRecordBytes }

func (b *budgetReader) Read(p []byte) (int, error) {
	if b.n >= b.limit {
		return 0, ErrRecordTooLarge
	}
	if rem := b.limit - b.n; int64(len(p)) > rem {
		p = p[:rem]
	}
	n, err := b.r.Read(p)
	b.n += int64(n)
	return n, err
}
