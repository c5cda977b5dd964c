package api

import (
	"encoding/csv"
	"encoding/json"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/aurumcdp/aurum/activation"
	"github.com/aurumcdp/aurum/engine/base"
	"github.com/aurumcdp/aurum/engine/query"
)

// exportPageSize bounds the members held in memory by one export: the
// handler pages through the audience this many at a time.
const exportPageSize = 500

// exportFormat is one output format of GET /v1/audiences/{name}/export.
type exportFormat struct {
	ext, contentType string
	newWriter        func(w io.Writer, audience string, exported time.Time) memberWriter
}

// exportFormats are the formats by query value. The default is csv.
var exportFormats = map[string]exportFormat{
	"csv":    {"csv", "text/csv; charset=utf-8", newCSVMembers},
	"json":   {"json", "application/json", newJSONMembers},
	"ndjson": {"ndjson", "application/x-ndjson", newNDJSONMembers},
	"xml":    {"xml", "application/xml; charset=utf-8", newXMLMembers},
}

// exportMember is one exported member: its membership and its person's
// identifiers (type → values, oldest first; null for a value that could not
// be unsealed) and traits.
type exportMember struct {
	ProfileID   string               `json:"profile_id"`
	Since       string               `json:"since"` // RFC 3339, UTC, ms precision
	RuleVersion int64                `json:"rule_version"`
	Identifiers map[string][]*string `json:"identifiers"`
	Traits      map[string]any       `json:"traits"`
}

// memberWriter writes one format. begin once, member per member, end once
// after the last; the first error ends the export.
type memberWriter interface {
	begin() error
	member(m *exportMember) error
	end() error
}

// The HTTP trailers of an export: the members written, and those left out
// because they have no consent for the export's channel or no address on it.
const (
	TrailerExported          = "Aurum-Exported"
	TrailerConsentExcluded   = "Aurum-Consent-Excluded"
	TrailerNoAddressExcluded = "Aurum-No-Address-Excluded"
)

// channelAddress is the identifier type a person needs to be reachable on
// a channel. Channels not listed (push, ads, web: device tokens, ad ids and
// cookies that Aurum cannot tell apart) and "none" need no address.
var channelAddress = map[string]string{"email": "email", "sms": "phone"}

// exportCounts counts one export.
type exportCounts struct{ exported, noConsent, noAddress int }

// handleAudienceExport streams every member of an audience with the
// person's identifiers and traits:
//
//	GET /v1/audiences/{name}/export?channel=email|sms|push|ads|web|none&format=csv|json|ndjson|xml   (default csv)
//
// channel is required: it is what the export will be used for. Only the
// members reachable on it are exported: members without consent for it
// (their latest statement, else the node's default) are left out and
// counted in the trailer Aurum-Consent-Excluded, members with consent but
// no address for it (an email address for email, a phone number for sms)
// in Aurum-No-Address-Excluded; Aurum-Exported counts the members written.
// "none" is for uses that contact nobody (analysis, a warehouse) and
// leaves nobody out.
//
// It pages through the members exportPageSize at a time, so memory stays flat
// whatever the audience's size. Each page reads the current state: a member
// whose profile was merged into another one between the page and its
// look-up is skipped (the surviving profile is exported under its own id if
// it is a member). Once the first byte is out the status cannot change: an
// error after that point closes the connection without finishing the
// response, so the client sees a failed download, not a short file.
func (s *Server) handleAudienceExport(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query().Get("format")
	if q == "" {
		q = "csv"
	}
	f, ok := exportFormats[strings.ToLower(q)]
	if !ok {
		writeError(w, http.StatusBadRequest, "format", fmt.Sprintf("%q is not an export format (want csv, json, ndjson or xml)", q))
		return
	}
	channel := strings.ToLower(strings.TrimSpace(r.URL.Query().Get("channel")))
	if !slices.Contains(activation.Channels, channel) {
		why := "required: what the export is used for, one of " + strings.Join(activation.Channels, ", ") + " (none: a use that contacts nobody)"
		if channel != "" {
			why = fmt.Sprintf("%q is not a channel (want one of %s)", channel, strings.Join(activation.Channels, ", "))
		}
		writeError(w, http.StatusBadRequest, "channel", why)
		return
	}
	name := r.PathValue("name")
	info, err := s.svc.Reads.Audience(name)
	if err != nil {
		s.lookupError(w, err)
		return
	}
	// The first page is read before the headers go out, so that its errors
	// still get a proper status.
	page, next, err := s.svc.Reads.AudienceMembers(info.Name, "", exportPageSize)
	if err != nil {
		s.lookupError(w, err)
		return
	}
	h := w.Header()
	h.Set("Content-Type", f.contentType)
	h.Set("Content-Disposition", mime.FormatMediaType("attachment", map[string]string{"filename": info.Name + "." + f.ext}))
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Trailer", TrailerExported+", "+TrailerConsentExcluded+", "+TrailerNoAddressExcluded)
	w.WriteHeader(http.StatusOK)

	mw := f.newWriter(w, info.Name, time.Now())
	c, err := s.exportMembers(r, mw, info.Name, channel, page, next)
	if err != nil {
		s.opts.Logger.Warn("api: audience export aborted", "audience", info.Name, "exported", c.exported, "err", err)
		abortResponse(w)
		return
	}
	h.Set(TrailerExported, strconv.Itoa(c.exported))
	h.Set(TrailerConsentExcluded, strconv.Itoa(c.noConsent))
	h.Set(TrailerNoAddressExcluded, strconv.Itoa(c.noAddress))
	s.opts.Logger.Info("api: audience exported", "audience", info.Name, "format", f.ext, "channel", channel,
		"members", c.exported, "excluded_no_consent", c.noConsent, "excluded_no_address", c.noAddress)
}

// exportMembers writes page and the pages after it (from cursor next) to mw
// and counts the members written and left out.
func (s *Server) exportMembers(r *http.Request, mw memberWriter, name, channel string, page []query.Member, next string) (exportCounts, error) {
	var c exportCounts
	if err := mw.begin(); err != nil {
		return c, err
	}
	for {
		for _, m := range page {
			if err := r.Context().Err(); err != nil {
				return c, err
			}
			em, consented, err := s.exportMember(m, channel)
			switch {
			case err != nil:
				return c, err
			case em == nil:
				continue
			case !consented:
				c.noConsent++
				continue
			case !em.reachable(channel):
				c.noAddress++
				continue
			}
			if err := mw.member(em); err != nil {
				return c, err
			}
			c.exported++
		}
		if next == "" {
			break
		}
		var err error
		if page, next, err = s.svc.Reads.AudienceMembers(name, next, exportPageSize); err != nil {
			return c, fmt.Errorf("members after %s: %w", next, err)
		}
	}
	return c, mw.end()
}

// exportMember looks up m's profile; it returns nil when the profile is
// gone or was merged into another one. consented reports whether the
// person may be contacted on channel (always true for "none").
func (s *Server) exportMember(m query.Member, channel string) (em *exportMember, consented bool, err error) {
	v, err := s.svc.Reads.Profile("profile_id:" + m.ProfileID)
	if errors.Is(err, base.ErrNotFound) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("profile %s: %w", m.ProfileID, err)
	}
	if v.ProfileID != m.ProfileID {
		return nil, false, nil // merged into v.ProfileID since the page was read
	}
	consented = channel == activation.ChannelNone || v.Consent[channel].Granted
	return newExportMember(m, v), consented, nil
}

// reachable reports whether the member has an address for channel (a
// readable value of its identifier type), or the channel needs none.
func (em *exportMember) reachable(channel string) bool {
	typ, ok := channelAddress[channel]
	if !ok {
		return true
	}
	for _, v := range em.Identifiers[typ] {
		if v != nil && *v != "" {
			return true
		}
	}
	return false
}

func newExportMember(m query.Member, v *query.View) *exportMember {
	em := &exportMember{
		ProfileID:   m.ProfileID,
		Since:       m.Since.UTC().Format(time.RFC3339Nano),
		RuleVersion: m.Version,
		Identifiers: identifiersOf(v),
		Traits:      v.Traits,
	}
	if em.Traits == nil {
		em.Traits = map[string]any{}
	}
	return em
}

// identifiersOf is a profile's identifiers: type → values, oldest first
// (nil for a value that could not be unsealed).
func identifiersOf(v *query.View) map[string][]*string {
	out := make(map[string][]*string, len(v.Identifiers))
	for typ, ids := range v.Identifiers {
		vals := make([]*string, 0, len(ids))
		for _, id := range ids {
			vals = append(vals, identString(id.Value))
		}
		out[typ] = vals
	}
	return out
}

// identString is an identifier value as a string; nil when it is redacted.
func identString(v any) *string {
	switch x := v.(type) {
	case nil:
		return nil
	case string:
		return &x
	default:
		s := fmt.Sprint(x)
		return &s
	}
}

// abortResponse closes the connection under a response that is already
// under way, so that the client cannot mistake it for a complete one (a
// handler that merely returns would end the chunked body cleanly).
func abortResponse(w http.ResponseWriter) {
	if sw, ok := w.(*statusWriter); ok {
		w = sw.ResponseWriter
	}
	conn, _, err := http.NewResponseController(w).Hijack()
	if err != nil {
		// Not hijackable (HTTP/2): the body ends here, and only the
		// unfinished framing (JSON array, XML root) shows the failure.
		return
	}
	_ = conn.Close()
}

// CSV: a header row and one row per member with the fixed columns
//
//	profile_id,since,rule_version,email,phone,user_id,identifiers,traits
//
// A streaming export cannot know every identifier type up front, so the
// fixed columns hold the common types and `identifiers` holds every other
// one as type:value pairs separated by ";" (types in name order, values
// oldest first). Several values of one type (email, phone, user_id) are
// also separated by ";". A ";" or "\" inside a value is escaped with "\".
// A redacted value is empty. `traits` is the traits as a JSON object.
var csvHeader = []string{"profile_id", "since", "rule_version", "email", "phone", "user_id", "identifiers", "traits"}

// csvFixed are the identifier types with columns of their own.
var csvFixed = []string{"email", "phone", "user_id"}

type csvMembers struct{ w *csv.Writer }

func newCSVMembers(w io.Writer, _ string, _ time.Time) memberWriter {
	return &csvMembers{w: csv.NewWriter(w)}
}

func (c *csvMembers) begin() error { return c.write(csvHeader) }

func (c *csvMembers) member(m *exportMember) error {
	traits, err := marshalJSON(m.Traits)
	if err != nil {
		return err
	}
	row := []string{m.ProfileID, m.Since, strconv.FormatInt(m.RuleVersion, 10)}
	for _, typ := range csvFixed {
		row = append(row, joinCSVValues(m.Identifiers[typ]))
	}
	var rest []string
	for _, typ := range sortedKeys(m.Identifiers) {
		if slices.Contains(csvFixed, typ) {
			continue
		}
		for _, v := range m.Identifiers[typ] {
			rest = append(rest, typ+":"+escapeCSVValue(v))
		}
	}
	row = append(row, strings.Join(rest, ";"), string(traits))
	return c.write(row)
}

func (c *csvMembers) end() error { c.w.Flush(); return c.w.Error() }

func (c *csvMembers) write(row []string) error {
	if err := c.w.Write(row); err != nil {
		return err
	}
	return c.w.Error()
}

func joinCSVValues(vals []*string) string {
	out := make([]string, len(vals))
	for i, v := range vals {
		out[i] = escapeCSVValue(v)
	}
	return strings.Join(out, ";")
}

var csvValueEscaper = strings.NewReplacer(`\`, `\\`, `;`, `\;`)

func escapeCSVValue(v *string) string {
	if v == nil {
		return ""
	}
	return csvValueEscaper.Replace(*v)
}

// JSON: an array of members, written element by element.
type jsonMembers struct {
	w     io.Writer
	first bool
}

func newJSONMembers(w io.Writer, _ string, _ time.Time) memberWriter {
	return &jsonMembers{w: w, first: true}
}

func (j *jsonMembers) begin() error { _, err := io.WriteString(j.w, "["); return err }

func (j *jsonMembers) member(m *exportMember) error {
	b, err := marshalJSON(m)
	if err != nil {
		return err
	}
	sep := ",\n"
	if j.first {
		sep, j.first = "\n", false
	}
	if _, err := io.WriteString(j.w, sep); err != nil {
		return err
	}
	_, err = j.w.Write(b)
	return err
}

func (j *jsonMembers) end() error { _, err := io.WriteString(j.w, "\n]\n"); return err }

// NDJSON: one member object per line.
type ndjsonMembers struct{ w io.Writer }

func newNDJSONMembers(w io.Writer, _ string, _ time.Time) memberWriter {
	return ndjsonMembers{w: w}
}

func (n ndjsonMembers) begin() error { return nil }

func (n ndjsonMembers) member(m *exportMember) error {
	b, err := marshalJSON(m)
	if err != nil {
		return err
	}
	_, err = n.w.Write(append(b, '\n'))
	return err
}

func (n ndjsonMembers) end() error { return nil }

// XML:
//
//	<audience name="buyers" exported="2024-05-01T10:00:00Z">
//	  <member profile_id="01J..." since="..." rule_version="1">
//	    <identifier type="email">ann@example.com</identifier>
//	    <trait name="first_name">Ann</trait>
//	  </member>
//	</audience>
//
// Identifiers come in type order, values oldest first; a redacted one has
// redacted="true" and no text. Traits come in name order; a value that is
// not a string is written as JSON.
type xmlMembers struct {
	enc      *xml.Encoder
	name     string
	exported time.Time
}

type xmlMember struct {
	XMLName     xml.Name        `xml:"member"`
	ProfileID   string          `xml:"profile_id,attr"`
	Since       string          `xml:"since,attr"`
	RuleVersion int64           `xml:"rule_version,attr"`
	Identifiers []xmlIdentifier `xml:"identifier"`
	Traits      []xmlTrait      `xml:"trait"`
}

type xmlIdentifier struct {
	Type     string `xml:"type,attr"`
	Redacted bool   `xml:"redacted,attr,omitempty"`
	Value    string `xml:",chardata"`
}

type xmlTrait struct {
	Name  string `xml:"name,attr"`
	Value string `xml:",chardata"`
}

func newXMLMembers(w io.Writer, name string, exported time.Time) memberWriter {
	enc := xml.NewEncoder(w)
	enc.Indent("", "  ")
	return &xmlMembers{enc: enc, name: name, exported: exported}
}

func (x *xmlMembers) root() xml.StartElement {
	return xml.StartElement{Name: xml.Name{Local: "audience"}, Attr: []xml.Attr{
		{Name: xml.Name{Local: "name"}, Value: x.name},
		{Name: xml.Name{Local: "exported"}, Value: x.exported.UTC().Format(time.RFC3339)},
	}}
}

func (x *xmlMembers) begin() error {
	if err := x.enc.EncodeToken(xml.ProcInst{Target: "xml", Inst: []byte(`version="1.0" encoding="UTF-8"`)}); err != nil {
		return err
	}
	if err := x.enc.EncodeToken(xml.CharData("\n")); err != nil {
		return err
	}
	return x.enc.EncodeToken(x.root())
}

func (x *xmlMembers) member(m *exportMember) error {
	xm := xmlMember{ProfileID: m.ProfileID, Since: m.Since, RuleVersion: m.RuleVersion}
	for _, typ := range sortedKeys(m.Identifiers) {
		for _, v := range m.Identifiers[typ] {
			id := xmlIdentifier{Type: typ, Redacted: v == nil}
			if v != nil {
				id.Value = *v
			}
			xm.Identifiers = append(xm.Identifiers, id)
		}
	}
	for _, k := range sortedKeys(m.Traits) {
		val, ok := m.Traits[k].(string)
		if !ok {
			b, err := marshalJSON(m.Traits[k])
			if err != nil {
				return err
			}
			val = string(b)
		}
		xm.Traits = append(xm.Traits, xmlTrait{Name: k, Value: val})
	}
	if err := x.enc.Encode(xm); err != nil {
		return err
	}
	return x.enc.Flush()
}

func (x *xmlMembers) end() error {
	if err := x.enc.EncodeToken(x.root().End()); err != nil {
		return err
	}
	if err := x.enc.EncodeToken(xml.CharData("\n")); err != nil {
		return err
	}
	if err := x.enc.Flush(); err != nil {
		return err
	}
	return x.enc.Close()
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// marshalJSON is json.Marshal without HTML escaping and without the
// trailing newline.
func marshalJSON(v any) ([]byte, error) {
	var b strings.Builder
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return []byte(strings.TrimSuffix(b.String(), "\n")), nil
}
