package event

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// DefaultMaxEventBytes is the default size limit of one event (Segment's
// limit): 32 KB.
const DefaultMaxEventBytes = 32 << 10

// ParseOptions configures Parse and ParseBatch.
type ParseOptions struct {
	// Now is the receive time (required; the caller's clock). It stands in
	// for an absent event time and anchors the clock-skew correction.
	Now time.Time
	// Blocked reports identifier values that must never identify anyone
	// (the identity configuration's blocked values); nil blocks nothing. It
	// is applied to normalised values.
	Blocked func(typ, value string) bool
	// DefaultRegion is the phone region (e.g. "DE") of numbers without a
	// "+" or "00" prefix; "" turns only international numbers into E.164.
	DefaultRegion string
	// MaxEventBytes limits the JSON size of one event; 0 means
	// DefaultMaxEventBytes.
	MaxEventBytes int
}

func (o ParseOptions) withDefaults() ParseOptions {
	if o.MaxEventBytes <= 0 {
		o.MaxEventBytes = DefaultMaxEventBytes
	}
	return o
}

// Accepted is a valid event of a batch with its index in the batch.
type Accepted struct {
	Index int
	Event Event
}

// Rejection is an invalid event of a batch: its index in the batch, the
// offending field and the reason. Raw is the event as it was sent.
type Rejection struct {
	Index  int             `json:"index"`
	Field  string          `json:"field"`
	Reason string          `json:"reason"`
	Raw    json.RawMessage `json:"-"`
}

// Parse parses and validates one Segment Tracking API event. kind is the
// call type implied by the endpoint (/v1/track → Track), or "" to take it
// from the body's "type". Every validation error is a *FieldError.
//
// Accepted SDK habits: userId, anonymousId, previousId, groupId and
// externalIds[].id as JSON numbers (→ their decimal text); RudderStack's
// originalTimestamp and top-level channel; rudderId, receivedAt and
// integrations are ignored. Timestamps are RFC 3339 strings (with or without
// fractional seconds, "Z" or an offset, also "+0000"-style offsets; without
// a zone they are taken as UTC) or Unix epoch numbers: values of magnitude
// >= 1e11 are milliseconds, smaller ones seconds.
//
// Parse never panics, whatever the input.
func Parse(data []byte, kind Kind, opts ParseOptions) (Event, error) {
	opts = opts.withDefaults()
	if len(data) > opts.MaxEventBytes {
		return Event{}, tooLarge(opts.MaxEventBytes)
	}
	m, ok := decodeObject(data)
	if !ok {
		return Event{}, &FieldError{Field: "", Reason: "body is not a JSON object"}
	}
	return parseMessage(m, kind, opts, true)
}

// ParseBatch parses the body of /v1/batch (and /v1/import):
//
//	{"batch": [...], "context": {...}, "sentAt": ..., "integrations": ...}
//
// The top-level context is merged under each event's context (the event's
// values win, objects are merged recursively) and the top-level sentAt
// stands in for an event's absent sentAt. The error is only for a body that
// is not JSON or not of this shape; every invalid event becomes a Rejection
// and the valid ones are still returned, in batch order. Each event is
// limited to MaxEventBytes; the body size is the caller's to bound.
//
// A well-formed body is decoded in one pass of the scanner
// (parseBatchFast); any other goes through encoding/json (parseBatchStd).
// Both give the same events, rejections and errors.
func ParseBatch(data []byte, opts ParseOptions) ([]Accepted, []Rejection, error) {
	evs, rej, err := ParseBatchEvents(data, opts)
	if err != nil {
		return nil, nil, err
	}
	if len(evs) == 0 {
		return nil, rej, nil
	}
	// Every element is either accepted or rejected, both in batch order:
	// the accepted ones take the indices the rejections leave.
	acc := make([]Accepted, len(evs))
	i, r := 0, 0
	for k := range evs {
		for r < len(rej) && rej[r].Index == i {
			i, r = i+1, r+1
		}
		acc[k] = Accepted{Index: i, Event: evs[k]}
		i++
	}
	return acc, rej, nil
}

// ParseBatchEvents is ParseBatch returning the accepted events alone, in
// batch order, without copying them into Accepted (the ingest edge's
// path: it needs no indices).
func ParseBatchEvents(data []byte, opts ParseOptions) ([]Event, []Rejection, error) {
	opts = opts.withDefaults()
	if evs, rej, ok := parseBatchFast(data, opts); ok {
		return evs, rej, nil
	}
	acc, rej, err := parseBatchStd(data, opts)
	if err != nil || len(acc) == 0 {
		return nil, rej, err
	}
	evs := make([]Event, len(acc))
	for i := range acc {
		evs[i] = acc[i].Event
	}
	return evs, rej, nil
}

// parseBatchStd is ParseBatch with encoding/json: the reference the fast
// path is tested against, and the path for every body the fast path does
// not take (so it also produces every batch error).
func parseBatchStd(data []byte, opts ParseOptions) ([]Accepted, []Rejection, error) {
	var body struct {
		Batch   *[]json.RawMessage `json:"batch"`
		Context json.RawMessage    `json:"context"`
		SentAt  json.RawMessage    `json:"sentAt"`
	}
	if err := json.Unmarshal(data, &body); err != nil {
		return nil, nil, fmt.Errorf("event: batch: %w", err)
	}
	if body.Batch == nil {
		return nil, nil, fmt.Errorf("event: batch: missing \"batch\" array")
	}
	var shared map[string]any
	if len(body.Context) > 0 && !isNull(body.Context) {
		c, ok := decodeObjectStd(body.Context)
		if !ok {
			return nil, nil, fmt.Errorf("event: batch: \"context\" is not a JSON object")
		}
		shared = c
	}
	var sentAt any
	if len(body.SentAt) > 0 && !isNull(body.SentAt) {
		v, ok := decodeValueStd(body.SentAt)
		if _, valid := parseTime(v); !ok || !valid {
			return nil, nil, fmt.Errorf("event: batch: bad \"sentAt\"")
		}
		sentAt = v
	}

	var acc []Accepted
	var rej []Rejection
	for i, raw := range *body.Batch {
		ev, err := parseBatchItem(raw, shared, sentAt, opts)
		if err != nil {
			fe := asFieldError(err)
			rej = append(rej, Rejection{Index: i, Field: fe.Field, Reason: fe.Reason, Raw: raw})
			continue
		}
		acc = append(acc, Accepted{Index: i, Event: ev})
	}
	return acc, rej, nil
}

func parseBatchItem(raw json.RawMessage, shared map[string]any, sentAt any, opts ParseOptions) (Event, error) {
	if len(raw) > opts.MaxEventBytes {
		return Event{}, tooLarge(opts.MaxEventBytes)
	}
	m, ok := decodeObjectStd(raw)
	if !ok {
		return Event{}, &FieldError{Field: "", Reason: "event is not a JSON object"}
	}
	return parseBatchObject(m, shared, sentAt, opts, true)
}

// parseBatchObject parses a decoded batch element: the batch's context
// merged under its own, the batch's sentAt standing in for its own.
// numbers is false when neither m nor shared holds a json.Number.
func parseBatchObject(m map[string]any, shared map[string]any, sentAt any, opts ParseOptions, numbers bool) (Event, error) {
	if shared != nil {
		switch c := m["context"].(type) {
		case nil:
			m["context"] = deepCopy(shared)
		case map[string]any:
			m["context"] = mergeUnder(c, shared)
		}
		// Any other type is reported by parseMessage.
	}
	if sentAt != nil {
		if v, ok := m["sentAt"]; !ok || v == nil {
			m["sentAt"] = sentAt
		}
	}
	return parseMessage(m, "", opts, numbers)
}

func asFieldError(err error) *FieldError {
	if fe, ok := err.(*FieldError); ok {
		return fe
	}
	return &FieldError{Field: "", Reason: err.Error()}
}

func tooLarge(limit int) *FieldError {
	size := fmt.Sprintf("%d bytes", limit)
	if limit%1024 == 0 {
		size = fmt.Sprintf("%d KB", limit/1024)
	}
	return &FieldError{Field: "", Reason: "event larger than " + size}
}

func fieldErr(field, format string, args ...any) *FieldError {
	return &FieldError{Field: field, Reason: fmt.Sprintf(format, args...)}
}

var kinds = map[Kind]bool{Track: true, Identify: true, Page: true, Screen: true, Group: true, Alias: true}

// parseMessage validates and normalises a decoded message. m is owned by
// the call (it may be modified). numbers is false when the caller knows m
// holds no json.Number (the scanner counted none): convertNumbers is then
// skipped.
func parseMessage(m map[string]any, kind Kind, opts ParseOptions, numbers bool) (Event, error) {
	var ev Event

	// Type.
	typ, err := optString(m, "type")
	if err != nil {
		return Event{}, err
	}
	switch {
	case kind == "":
		if typ == "" {
			return Event{}, fieldErr("type", "required")
		}
		if !kinds[Kind(typ)] {
			return Event{}, fieldErr("type", "unknown type %q", truncate(typ))
		}
		kind = Kind(typ)
	case !kinds[kind]:
		return Event{}, fieldErr("type", "unknown type %q", truncate(string(kind)))
	case typ != "" && Kind(typ) != kind:
		return Event{}, fieldErr("type", "%q contradicts the %s endpoint", truncate(typ), kind)
	}
	ev.Kind = kind

	// Message id.
	if v, ok := m["messageId"]; ok && v != nil {
		s, ok := v.(string)
		if !ok {
			return Event{}, fieldErr("messageId", "must be a string")
		}
		if len(s) > MaxIdentifierBytes {
			return Event{}, fieldErr("messageId", "longer than %d bytes", MaxIdentifierBytes)
		}
		ev.MessageID = s
	}

	// Names.
	if ev.Event, err = optString(m, "event"); err != nil && kind == Track {
		return Event{}, err
	}
	ev.Event = strings.TrimSpace(ev.Event)
	if kind == Track && ev.Event == "" {
		return Event{}, fieldErr("event", "required for track")
	}
	if kind != Track {
		ev.Event = ""
	}
	if kind == Page || kind == Screen {
		if ev.Name, err = optString(m, "name"); err != nil {
			return Event{}, err
		}
	}

	// Raw ids.
	for _, f := range []struct {
		name string
		dst  *string
	}{{"userId", &ev.UserID}, {"anonymousId", &ev.AnonymousID}, {"previousId", &ev.PreviousID}, {"groupId", &ev.GroupID}} {
		s, err := idString(m[f.name], f.name)
		if err != nil {
			return Event{}, err
		}
		*f.dst = s
	}
	if kind != Alias {
		ev.PreviousID = ""
	}
	if kind != Group {
		ev.GroupID = ""
	}
	switch kind {
	case Alias:
		if ev.PreviousID == "" {
			return Event{}, fieldErr("previousId", "required for alias")
		}
		if ev.UserID == "" {
			return Event{}, fieldErr("userId", "required for alias")
		}
	case Group:
		if ev.GroupID == "" {
			return Event{}, fieldErr("groupId", "required for group")
		}
	}

	// Objects.
	traits, err := optObject(m, "traits", "traits")
	if err != nil {
		return Event{}, err
	}
	if ev.Properties, err = optObject(m, "properties", "properties"); err != nil {
		return Event{}, err
	}
	ctx, err := optObject(m, "context", "context")
	if err != nil {
		return Event{}, err
	}
	var ctxTraits map[string]any
	var extIDs any
	if ctx != nil {
		if ctxTraits, err = optObject(ctx, "traits", "context.traits"); err != nil {
			return Event{}, err
		}
		extIDs = ctx["externalIds"]
		delete(ctx, "traits")
		delete(ctx, "externalIds")
	}
	ev.Traits = mergeTraits(traits, ctxTraits)
	ev.Context = ctx

	// Times.
	ts, err := optTime(m, "timestamp")
	if err != nil {
		return Event{}, err
	}
	sent, err := optTime(m, "sentAt")
	if err != nil {
		return Event{}, err
	}
	orig, err := optTime(m, "originalTimestamp")
	if err != nil {
		return Event{}, err
	}
	ev.SentAt = sent
	switch {
	case !ts.IsZero():
		ev.Timestamp = ts
	case !sent.IsZero() && !orig.IsZero():
		ev.Timestamp = opts.Now.Add(-sent.Sub(orig)).UTC()
	case !orig.IsZero():
		ev.Timestamp = orig
	default:
		ev.Timestamp = opts.Now.UTC()
	}

	// Channel and device.
	ev.Channel = lowerString(ctx["channel"])
	if ev.Channel == "" {
		ev.Channel = lowerString(m["channel"])
	}
	if ev.Channel == "" {
		switch kind {
		case Page:
			ev.Channel = "web"
		case Screen:
			ev.Channel = "mobile"
		default:
			ev.Channel = "server"
		}
	}
	if dev, ok := ctx["device"].(map[string]any); ok {
		ev.DeviceType = lowerString(dev["type"])
	}

	// Identifiers.
	if ev.Identifiers, err = identifiers(&ev, extIDs, opts); err != nil {
		return Event{}, err
	}
	strong := 0
	for _, id := range ev.Identifiers {
		if !id.Weak {
			strong++
		}
	}
	if strong == 0 {
		return Event{}, fieldErr("userId", "neither userId nor anonymousId nor an external id")
	}
	if ev.Consent, err = consentFrom(&ev); err != nil {
		return Event{}, err
	}
	// Numbers are converted last: identifiers read their exact text.
	if numbers {
		convertNumbers(ev.Traits)
		convertNumbers(ev.Properties)
		convertNumbers(ev.Context)
	}
	return ev, nil
}

func identifiers(ev *Event, extIDs any, opts ParseOptions) ([]Identifier, error) {
	ids := make([]Identifier, 0, 4)
	add := func(field, typ, value string, weak bool) error {
		v, ok := NormalizeIdentifier(typ, value, opts.DefaultRegion)
		if !ok {
			return nil
		}
		if len(v) > MaxIdentifierBytes {
			return fieldErr(field, "longer than %d bytes", MaxIdentifierBytes)
		}
		if opts.Blocked != nil && opts.Blocked(typ, v) {
			return nil
		}
		for _, id := range ids { // a few: a scan beats a set
			if id.Type == typ && id.Value == v {
				return nil
			}
		}
		ids = append(ids, Identifier{Type: typ, Value: v, Weak: weak})
		return nil
	}
	if err := add("userId", UserID, ev.UserID, false); err != nil {
		return nil, err
	}
	if err := add("anonymousId", AnonymousID, ev.AnonymousID, false); err != nil {
		return nil, err
	}
	for _, t := range []string{Email, Phone} {
		s, ok := scalarString(ev.Traits[t])
		if !ok {
			continue
		}
		if err := add("traits."+t, t, s, false); err != nil {
			return nil, err
		}
	}
	if extIDs != nil {
		list, ok := extIDs.([]any)
		if !ok {
			return nil, fieldErr("context.externalIds", "must be an array")
		}
		for i, e := range list {
			field := fmt.Sprintf("context.externalIds[%d]", i)
			obj, ok := e.(map[string]any)
			if !ok {
				return nil, fieldErr(field, "must be an object")
			}
			ts, ok := obj["type"].(string)
			if !ok {
				return nil, fieldErr(field+".type", "required string")
			}
			typ := strings.ToLower(strings.TrimSpace(ts))
			if !validIdentifierType(typ) {
				return nil, fieldErr(field+".type", "%q does not match [a-z][a-z0-9_]{0,63} (profile_id is reserved)", truncate(ts))
			}
			id, err := idString(obj["id"], field+".id")
			if err != nil {
				return nil, err
			}
			if id == "" {
				return nil, fieldErr(field+".id", "required")
			}
			if err := add(field+".id", typ, id, false); err != nil {
				return nil, err
			}
		}
	}
	if ev.Kind == Alias {
		if err := add("previousId", UserID, ev.PreviousID, true); err != nil {
			return nil, err
		}
		if err := add("previousId", AnonymousID, ev.PreviousID, true); err != nil {
			return nil, err
		}
	}
	return ids, nil
}

// mergeTraits returns top merged over under (top wins); nil when both are
// empty.
func mergeTraits(top, under map[string]any) map[string]any {
	if len(under) == 0 {
		return top
	}
	if top == nil {
		return under
	}
	for k, v := range under {
		if _, ok := top[k]; !ok {
			top[k] = v
		}
	}
	return top
}

// mergeUnder merges base under m: m's values win; where both hold objects
// they are merged recursively. Values taken from base are copied.
func mergeUnder(m, base map[string]any) map[string]any {
	for k, bv := range base {
		mv, ok := m[k]
		if !ok {
			m[k] = deepCopy(bv)
			continue
		}
		mo, ok1 := mv.(map[string]any)
		bo, ok2 := bv.(map[string]any)
		if ok1 && ok2 {
			m[k] = mergeUnder(mo, bo)
		}
	}
	return m
}

func deepCopy[T any](v T) T {
	switch x := any(v).(type) {
	case map[string]any:
		c := make(map[string]any, len(x))
		for k, e := range x {
			c[k] = deepCopy(e)
		}
		return any(c).(T)
	case []any:
		c := make([]any, len(x))
		for i, e := range x {
			c[i] = deepCopy(e)
		}
		return any(c).(T)
	}
	return v
}

func optString(m map[string]any, key string) (string, error) {
	v, ok := m[key]
	if !ok || v == nil {
		return "", nil
	}
	s, ok := v.(string)
	if !ok {
		return "", fieldErr(key, "must be a string")
	}
	return s, nil
}

func optObject(m map[string]any, key, field string) (map[string]any, error) {
	v, ok := m[key]
	if !ok || v == nil {
		return nil, nil
	}
	o, ok := v.(map[string]any)
	if !ok {
		return nil, fieldErr(field, "must be an object")
	}
	return o, nil
}

// idString returns an id given as a string or a JSON number, trimmed.
func idString(v any, field string) (string, error) {
	if v == nil {
		return "", nil
	}
	s, ok := scalarString(v)
	if !ok {
		return "", fieldErr(field, "must be a string or a number")
	}
	s = strings.TrimSpace(s)
	if len(s) > MaxIdentifierBytes {
		return "", fieldErr(field, "longer than %d bytes", MaxIdentifierBytes)
	}
	return s, nil
}

var intRE = regexp.MustCompile(`^-?[0-9]+$`)

// scalarString converts a string or a number to its text: integers keep
// their digits, other numbers their shortest decimal form.
func scalarString(v any) (string, bool) {
	switch x := v.(type) {
	case string:
		return x, true
	case int64:
		return strconv.FormatInt(x, 10), true
	case float64:
		return strconv.FormatFloat(x, 'f', -1, 64), true
	case json.Number:
		s := string(x)
		if intRE.MatchString(s) {
			return s, true
		}
		f, err := strconv.ParseFloat(s, 64)
		if err != nil || math.IsInf(f, 0) {
			return s, true
		}
		return strconv.FormatFloat(f, 'f', -1, 64), true
	}
	return "", false
}

func lowerString(v any) string {
	s, _ := v.(string)
	return strings.ToLower(strings.TrimSpace(s))
}

func truncate(s string) string {
	if len(s) > 64 {
		return s[:64] + "…"
	}
	return s
}

var timeLayouts = []string{
	time.RFC3339Nano,
	"2006-01-02T15:04:05.999999999Z0700",
	"2006-01-02T15:04:05.999999999",
	"2006-01-02 15:04:05.999999999Z07:00",
	"2006-01-02 15:04:05.999999999",
}

// Epoch numbers are accepted between 1970 and 9999.
const maxEpochMillis = 253402300799999

func optTime(m map[string]any, key string) (time.Time, error) {
	v, ok := m[key]
	if !ok || v == nil {
		return time.Time{}, nil
	}
	t, ok := parseTime(v)
	if !ok {
		return time.Time{}, fieldErr(key, "unparsable time")
	}
	return t, nil
}

func parseTime(v any) (time.Time, bool) {
	switch x := v.(type) {
	case string:
		s := strings.TrimSpace(x)
		if s == "" {
			return time.Time{}, false
		}
		for _, l := range timeLayouts {
			if t, err := time.Parse(l, s); err == nil {
				return t.UTC(), true
			}
		}
		return time.Time{}, false
	case json.Number, int64, float64:
		f, err := strconv.ParseFloat(fmt.Sprint(x), 64)
		if err != nil || math.IsNaN(f) || f < 0 {
			return time.Time{}, false
		}
		ms := f
		if f < 1e11 {
			ms = f * 1000
		}
		if ms > maxEpochMillis {
			return time.Time{}, false
		}
		return time.UnixMilli(int64(ms)).UTC(), true
	}
	return time.Time{}, false
}

func isNull(raw json.RawMessage) bool {
	return string(bytes.TrimSpace(raw)) == "null"
}

// decodeObject decodes a JSON object; numbers stay json.Number (see
// convertNumbers).
func decodeObject(data []byte) (map[string]any, bool) {
	v, ok := decodeValue(data)
	if !ok {
		return nil, false
	}
	m, ok := v.(map[string]any)
	return m, ok
}

func decodeValue(data []byte) (any, bool) {
	if v, ok := scanValue(data); ok {
		return v, true
	}
	return decodeValueStd(data)
}

// decodeObjectStd is decodeObject with encoding/json only.
func decodeObjectStd(data []byte) (map[string]any, bool) {
	v, ok := decodeValueStd(data)
	if !ok {
		return nil, false
	}
	m, ok := v.(map[string]any)
	return m, ok
}

// decodeValueStd decodes with encoding/json (UseNumber): the reference for
// the scanner, and the path for what the scanner does not accept.
func decodeValueStd(data []byte) (any, bool) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, false
	}
	if _, err := dec.Token(); err == nil {
		return nil, false // trailing data
	}
	return v, true
}

// convertNumbers replaces json.Number values in a decoded tree: int64
// when integral and in range, else float64 (else the text).
func convertNumbers(v any) any {
	switch x := v.(type) {
	case map[string]any:
		// Only numbers are stored back: rewriting every entry costs a map
		// assignment each.
		for k, e := range x {
			switch e.(type) {
			case json.Number:
				x[k] = convertNumbers(e)
			case map[string]any, []any:
				convertNumbers(e)
			}
		}
		return x
	case []any:
		for i, e := range x {
			switch e.(type) {
			case json.Number:
				x[i] = convertNumbers(e)
			case map[string]any, []any:
				convertNumbers(e)
			}
		}
		return x
	case json.Number:
		// A fraction or an exponent would fail ParseInt (whose error
		// allocates): go straight to ParseFloat.
		if !strings.ContainsAny(string(x), ".eE") {
			if i, err := strconv.ParseInt(string(x), 10, 64); err == nil {
				return i
			}
		}
		if f, err := strconv.ParseFloat(string(x), 64); err == nil && !math.IsInf(f, 0) {
			return f
		}
		return string(x)
	}
	return v
}
