package importer

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"regexp"
	"sort"
	"strings"
	"time"
	"unicode/utf8"

	"go.yaml.in/yaml/v3"
)

// Mapping maps the columns of a CSV (or whitespace-separated) file to a
// Segment-shaped message. It is ignored for the other formats, whose
// records are already messages. A Mapping is YAML-loadable:
//
//	identifiers: {customer_id: crm_id, mail: email}
//	traits: {first_name: firstName}
//	properties: {amount: revenue}
//	event: Order Completed
//	timestamp: date
//	time_layout: "20060102"
//	comma: ws
type Mapping struct {
	// Identifiers maps a column to an identifier type: "user_id" →
	// userId, "anonymous_id" → anonymousId, "email"/"phone" →
	// traits.email/phone, anything else (lower-case, [a-z][a-z0-9_]*) →
	// context.externalIds. At least one is required.
	Identifiers map[string]string `yaml:"identifiers"`
	// Traits maps a column to a trait name (→ traits). Without an event the
	// message is an identify call.
	Traits map[string]string `yaml:"traits"`
	// Properties maps a column to a property name; values that are JSON
	// numbers (e.g. "10.5", "-3", "1e3"; not "007") become numbers.
	Properties map[string]string `yaml:"properties"`
	// Event is a constant event name (the messages are track calls) ...
	Event string `yaml:"event"`
	// ... or EventColumn the column holding it.
	EventColumn string `yaml:"event_column"`
	// Timestamp is the column with the event time; an empty or unparsable
	// cell makes the row malformed.
	Timestamp string `yaml:"timestamp"`
	// TimeLayout is the Go layout of Timestamp. By default RFC 3339,
	// "2006-01-02 15:04:05", "2006-01-02" and "20060102" are tried. The
	// special layouts "unix" and "unix_ms" read Unix epoch seconds and
	// milliseconds. Times without a zone are UTC.
	TimeLayout string `yaml:"time_layout"`
	// MessageID is an optional column holding the message id; rows without
	// one get a deterministic id (see Reader).
	MessageID string `yaml:"message_id"`
	// Comma is the field separator: default ","; "\t" (or "tab") for TSV;
	// "ws" for files separated by runs of white space (no quoting).
	Comma string `yaml:"comma"`
}

// maxMappingBytes bounds a mapping file.
const maxMappingBytes = 1 << 20

// LoadMapping reads a YAML mapping file. Unknown keys are an error.
func LoadMapping(path string) (Mapping, error) {
	f, err := os.Open(path)
	if err != nil {
		return Mapping{}, fmt.Errorf("importer: mapping: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxMappingBytes+1))
	if err != nil {
		return Mapping{}, fmt.Errorf("importer: mapping %s: %w", path, err)
	}
	if len(data) > maxMappingBytes {
		return Mapping{}, fmt.Errorf("importer: mapping %s: larger than 1 MB", path)
	}
	var m Mapping
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&m); err != nil && err != io.EOF {
		return Mapping{}, fmt.Errorf("importer: mapping %s: %w", path, err)
	}
	return m, nil
}

// ParsePairs parses a flag value "column=name,column2=name2" into a map, for
// setting Mapping.Identifiers, Traits or Properties from flags.
func ParsePairs(s string) (map[string]string, error) {
	out := make(map[string]string)
	for _, p := range strings.Split(s, ",") {
		if strings.TrimSpace(p) == "" {
			continue
		}
		col, name, ok := strings.Cut(p, "=")
		col, name = strings.TrimSpace(col), strings.TrimSpace(name)
		if !ok || col == "" || name == "" {
			return nil, fmt.Errorf("importer: %q: want column=name", p)
		}
		out[col] = name
	}
	return out, nil
}

var idTypeRE = regexp.MustCompile(`^[a-z][a-z0-9_]{0,63}$`)

// separator returns the field separator; ws reports whitespace mode.
func (m Mapping) separator() (comma rune, ws bool, err error) {
	switch m.Comma {
	case "", ",":
		return ',', false, nil
	case "\t", `\t`, "tab":
		return '\t', false, nil
	case "ws":
		return 0, true, nil
	}
	r, size := utf8.DecodeRuneInString(m.Comma)
	if size != len(m.Comma) || r == utf8.RuneError || r == '"' || r == '\r' || r == '\n' {
		return 0, false, fmt.Errorf("importer: mapping: invalid comma %q", m.Comma)
	}
	return r, false, nil
}

// Validate checks the mapping against a file's header: every named column
// must exist (the error names the first that does not, in sorted order),
// identifier types must be valid, Event and EventColumn are exclusive.
func (m Mapping) Validate(header []string) error {
	if _, _, err := m.separator(); err != nil {
		return err
	}
	if m.Event != "" && m.EventColumn != "" {
		return fmt.Errorf("importer: mapping: event and event_column are exclusive")
	}
	if len(m.Identifiers) == 0 {
		return fmt.Errorf("importer: mapping: no identifier columns")
	}
	cols := make(map[string]bool, len(header))
	for _, h := range header {
		cols[h] = true
	}
	check := func(what, col string) error {
		if col != "" && !cols[col] {
			return fmt.Errorf("importer: mapping: %s column %q not in header", what, col)
		}
		return nil
	}
	for _, group := range []struct {
		what string
		m    map[string]string
	}{{"identifier", m.Identifiers}, {"trait", m.Traits}, {"property", m.Properties}} {
		for _, col := range sortedKeys(group.m) {
			if err := check(group.what, col); err != nil {
				return err
			}
			name := group.m[col]
			if group.what == "identifier" {
				t := strings.ToLower(strings.TrimSpace(name))
				if !idTypeRE.MatchString(t) || t == "profile_id" {
					return fmt.Errorf("importer: mapping: column %q: invalid identifier type %q", col, name)
				}
			} else if strings.TrimSpace(name) == "" {
				return fmt.Errorf("importer: mapping: column %q: empty %s name", col, group.what)
			}
		}
	}
	for _, c := range []struct{ what, col string }{{"event", m.EventColumn}, {"timestamp", m.Timestamp}, {"message_id", m.MessageID}} {
		if err := check(c.what, c.col); err != nil {
			return err
		}
	}
	return nil
}

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

var defaultTimeLayouts = []string{time.RFC3339Nano, "2006-01-02 15:04:05", "2006-01-02", "20060102"}

func parseTime(s, layout string) (time.Time, error) {
	switch layout {
	case "unix", "unix_ms":
		var n int64
		if _, err := fmt.Sscan(s, &n); err != nil || fmt.Sprint(n) != s {
			return time.Time{}, fmt.Errorf("not an integer")
		}
		if layout == "unix" {
			return time.Unix(n, 0).UTC(), nil
		}
		return time.UnixMilli(n).UTC(), nil
	case "":
		for _, l := range defaultTimeLayouts {
			if t, err := time.Parse(l, s); err == nil {
				return t.UTC(), nil
			}
		}
		return time.Time{}, fmt.Errorf("no default layout matches")
	}
	t, err := time.Parse(layout, s)
	return t.UTC(), err
}
