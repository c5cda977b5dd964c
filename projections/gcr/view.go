package gcr

import (
	"fmt"
	"slices"
	"sort"
	"time"

	"github.com/aurumcdp/aurum/event"
	"github.com/aurumcdp/aurum/internal/wire"
	"github.com/aurumcdp/aurum/projections/features"
	"github.com/oklog/ulid/v2"
	"github.com/vmihailenco/msgpack/v5"
)

// Opener decrypts a sealed value: it returns the plaintext (a msgpack
// encoding) of sealed, which was sealed with the data key keyID. It returns
// an error when the key is gone (crypto-shredded) or the value is damaged.
type Opener func(keyID, sealed []byte) ([]byte, error)

// View is the public JSON form of a Profile.
type View struct {
	ProfileID   string                 `json:"profile_id"`
	Identifiers map[string][]IdentView `json:"identifiers"` // type → values, oldest first
	Traits      map[string]any         `json:"traits"`      // null when redacted
	Stats       StatsView              `json:"stats"`
	Revenue     map[string]MoneyView   `json:"revenue"`
	Audiences   map[string]time.Time   `json:"audiences"`
	Predictions map[string]any         `json:"predictions"` // scores (float64), and lists of next best products filled by the engine
	MergedFrom  []string               `json:"merged_from"`
	// Consent is the consent per channel: the latest statement, or (after
	// FillConsentDefaults) the node's default, marked "default": true.
	Consent map[string]ConsentView `json:"consent"`
	// Features is the feature projection as of a time: the profile's last
	// event in View, the log clock after FeaturesAt (docs/predictions.md).
	Features features.View `json:"features"`
	// Redacted is set when any value could not be opened;
	// RedactedTraits names the traits shown as null for that reason.
	Redacted       bool     `json:"redacted,omitempty"`
	RedactedTraits []string `json:"redacted_traits,omitempty"`
}

// IdentView is one identifier value.
type IdentView struct {
	Value     any       `json:"value"` // null when redacted
	FirstSeen time.Time `json:"first_seen"`
	LastSeen  time.Time `json:"last_seen"`
	Redacted  bool      `json:"redacted,omitempty"`
}

// StatsView is the JSON form of Stats. The times are null for a profile
// without events.
type StatsView struct {
	FirstSeen   *time.Time       `json:"first_seen"`
	LastSeen    *time.Time       `json:"last_seen"`
	TotalEvents int64            `json:"total_events"`
	EventCounts map[string]int64 `json:"event_counts"`
	KindCounts  map[string]int64 `json:"kind_counts"`
	Sources     map[string]int64 `json:"sources"`
	Channels    map[string]int64 `json:"channels"`
	Devices     map[string]int64 `json:"devices"`
}

// ConsentView is one channel's consent: granted or not, and the statement
// that decided it (time, event id, source), or Default when no statement
// was made and the node's default applies.
type ConsentView struct {
	Granted bool       `json:"granted"`
	Default bool       `json:"default,omitempty"`
	Time    *time.Time `json:"time,omitempty"`
	EventID string     `json:"event_id,omitempty"`
	Source  string     `json:"source,omitempty"`
}

// FillConsentDefaults adds a default entry (Granted: def) for every channel
// without a statement.
func (v *View) FillConsentDefaults(channels []string, def bool) {
	if v.Consent == nil {
		v.Consent = make(map[string]ConsentView, len(channels))
	}
	for _, ch := range channels {
		if _, ok := v.Consent[ch]; !ok {
			v.Consent[ch] = ConsentView{Granted: def, Default: true}
		}
	}
}

// MoneyView is the JSON form of Money: Total is in units.
type MoneyView struct {
	Count int64   `json:"count"`
	Total float64 `json:"total"`
}

func msTime(ms int64) time.Time { return time.UnixMilli(ms).UTC() }

func ulidText(id []byte) (string, error) {
	var u ulid.ULID
	if len(id) != len(u) {
		return "", fmt.Errorf("id %x has %d bytes, want %d", id, len(id), len(u))
	}
	copy(u[:], id)
	return u.String(), nil
}

// View decrypts p through open into its public JSON form. A value that open
// cannot decrypt (any error from open, e.g. its data key was destroyed) does
// not fail the view: an identifier shows as {"value": null, "redacted": true},
// a trait as null and is listed in RedactedTraits, and View.Redacted is set.
// A plaintext that is not valid msgpack is an error.
func (p *Profile) View(open Opener) (View, error) {
	id, err := ulidText(p.ID)
	if err != nil {
		return View{}, fmt.Errorf("gcr: view: %w", err)
	}
	v := View{
		ProfileID:   id,
		Identifiers: make(map[string][]IdentView),
		Traits:      make(map[string]any, len(p.Traits)),
		Revenue:     make(map[string]MoneyView, len(p.Revenue)),
		Audiences:   make(map[string]time.Time, len(p.Audiences)),
		Predictions: make(map[string]any, len(p.Predictions)),
		MergedFrom:  make([]string, 0, len(p.MergedFrom)),
		Consent:     make(map[string]ConsentView, len(p.Consent)),
	}
	for ch, c := range p.Consent {
		t := msTime(c.Time)
		cv := ConsentView{Granted: c.Granted, Time: &t, Source: c.Source}
		if ev, err := ulidText(c.Event); err == nil {
			cv.EventID = ev
		}
		v.Consent[ch] = cv
	}

	idents := slices.Clone(p.Identifiers)
	sort.SliceStable(idents, func(i, j int) bool {
		if idents[i].Type != idents[j].Type {
			return idents[i].Type < idents[j].Type
		}
		return sightingBefore(&idents[i], &idents[j])
	})
	for _, id := range idents {
		iv := IdentView{FirstSeen: msTime(id.FirstSeen), LastSeen: msTime(id.LastSeen)}
		val, ok, err := openValue(open, id.Key, id.Sealed)
		if err != nil {
			return View{}, fmt.Errorf("gcr: view: identifier %s/%x: %w", id.Type, id.Hash, err)
		}
		if ok {
			iv.Value = val
		} else {
			iv.Redacted, v.Redacted = true, true
		}
		v.Identifiers[id.Type] = append(v.Identifiers[id.Type], iv)
	}

	for name, t := range p.Traits {
		val, ok, err := openValue(open, t.Key, t.Sealed)
		if err != nil {
			return View{}, fmt.Errorf("gcr: view: trait %q: %w", name, err)
		}
		v.Traits[name] = val
		if !ok {
			v.Redacted = true
			v.RedactedTraits = append(v.RedactedTraits, name)
		}
	}
	sort.Strings(v.RedactedTraits)

	s := &p.Stats
	v.Stats = StatsView{
		TotalEvents: s.Events,
		EventCounts: nonNil(s.EventCounts), KindCounts: nonNil(s.KindCounts),
		Sources: nonNil(s.Sources), Channels: nonNil(s.Channels), Devices: nonNil(s.Devices),
	}
	if s.Events > 0 {
		f, l := msTime(s.FirstSeen), msTime(s.LastSeen)
		v.Stats.FirstSeen, v.Stats.LastSeen = &f, &l
	}
	for name, m := range p.Revenue {
		v.Revenue[name] = MoneyView{Count: m.Count, Total: float64(m.Micros) / 1e6}
	}
	for name, since := range p.Audiences {
		v.Audiences[name] = msTime(since)
	}
	for name, x := range p.Predictions {
		v.Predictions[name] = x
	}
	v.FeaturesAt(p, s.LastSeen)
	for _, m := range p.MergedFrom {
		t, err := ulidText(m)
		if err != nil {
			return View{}, fmt.Errorf("gcr: view: merged from: %w", err)
		}
		v.MergedFrom = append(v.MergedFrom, t)
	}
	return v, nil
}

// FeaturesAt sets v.Features to p's features as of now (Unix ms; never
// before p's last event).
func (v *View) FeaturesAt(p *Profile, now int64) {
	s := &p.Stats
	v.Features = p.Features.View(max(now, s.LastSeen), s.LastSeen, s.Events > 0, s.Channels, s.Devices)
}

func nonNil(m map[string]int64) map[string]int64 {
	if m == nil {
		return map[string]int64{}
	}
	return m
}

// openValue opens and msgpack-decodes one sealed value. ok is false when open
// failed (the value is redacted); err reports a plaintext that does not decode.
func openValue(open Opener, key, sealed []byte) (v any, ok bool, err error) {
	plain, oerr := open(key, sealed)
	if oerr != nil {
		return nil, false, nil
	}
	if err := unmarshalPlain(plain, &v); err != nil {
		return nil, false, fmt.Errorf("decode plaintext: %w", err)
	}
	return v, true, nil
}

// unmarshalPlain decodes an opened value after wire.CheckMsgpack: msgpack
// v5.4.1 sizes slices by their declared length, so a corrupt value must not
// reach it (the check bounds every length by the bytes that remain).
func unmarshalPlain(plain []byte, v any) error {
	if _, err := wire.CheckMsgpack(plain, wire.MsgpackLimits{MaxDepth: 10000}); err != nil {
		return err
	}
	return msgpack.Unmarshal(plain, v)
}

// well-known identifier types that RecordView does not repeat under
// context.externalIds (they appear as userId/anonymousId or in traits).
var notExternal = map[string]bool{
	event.UserID: true, event.AnonymousID: true, event.Email: true, event.Phone: true,
}

// RecordView returns rec in the Segment Tracking API shape for the events
// endpoint: id (ULID text), type, event/name, messageId, timestamp,
// receivedAt, sentAt, source, userId, anonymousId, previousId, groupId (from
// the sealed private part), traits, properties and context (with externalIds
// rebuilt from the record's non-standard identifiers). Properties are
// opened from rec.SealedProperties unless rec.Properties holds them
// already. Values open cannot
// decrypt are left out (traits: null) and "redacted": true is set; a
// plaintext that does not decode is an error.
func RecordView(rec *event.Record, open Opener) (map[string]any, error) {
	id, err := ulidText(rec.ID)
	if err != nil {
		return nil, fmt.Errorf("gcr: record view: %w", err)
	}
	m := map[string]any{
		"id":         id,
		"type":       string(rec.Kind),
		"messageId":  rec.MessageID,
		"timestamp":  msTime(rec.Time),
		"receivedAt": msTime(rec.Received),
		"source":     rec.Source,
	}
	if rec.Event != "" {
		m["event"] = rec.Event
	}
	if rec.Name != "" {
		m["name"] = rec.Name
	}
	redacted := false
	ctx := map[string]any{}
	if len(rec.Private) > 0 {
		plain, oerr := open(rec.Key, rec.Private)
		if oerr != nil {
			redacted = true
		} else {
			var pv event.Private
			if err := unmarshalPlain(plain, &pv); err != nil {
				return nil, fmt.Errorf("gcr: record view %s: private: %w", id, err)
			}
			for k, s := range map[string]string{
				"userId": pv.UserID, "anonymousId": pv.AnonymousID,
				"previousId": pv.PreviousID, "groupId": pv.GroupID,
			} {
				if s != "" {
					m[k] = s
				}
			}
			if pv.SentAt != 0 {
				m["sentAt"] = msTime(pv.SentAt)
			}
			for k, v := range pv.Context {
				ctx[k] = v
			}
		}
	}
	var ext []any
	for _, ref := range rec.IDs {
		if notExternal[ref.Type] || ref.Weak {
			continue
		}
		val, ok, err := openValue(open, rec.Key, ref.Sealed)
		if err != nil {
			return nil, fmt.Errorf("gcr: record view %s: identifier %s: %w", id, ref.Type, err)
		}
		if !ok {
			redacted = true
			continue
		}
		ext = append(ext, map[string]any{"id": val, "type": ref.Type, "collection": "users", "encoding": "none"})
	}
	if len(ext) > 0 {
		ctx["externalIds"] = ext
	}
	m["context"] = ctx
	if len(rec.Traits) > 0 {
		traits := make(map[string]any, len(rec.Traits))
		for name, sealed := range rec.Traits {
			val, ok, err := openValue(open, rec.Key, sealed)
			if err != nil {
				return nil, fmt.Errorf("gcr: record view %s: trait %q: %w", id, name, err)
			}
			traits[name] = val
			redacted = redacted || !ok
		}
		m["traits"] = traits
	}
	props := rec.Properties // opened already (the state machine's records)
	if props == nil && len(rec.SealedProperties) > 0 {
		val, ok, err := openValue(open, rec.Key, rec.SealedProperties)
		if err != nil {
			return nil, fmt.Errorf("gcr: record view %s: properties: %w", id, err)
		}
		p, isMap := val.(map[string]any)
		if ok && !isMap {
			return nil, fmt.Errorf("gcr: record view %s: properties: %T, want a map", id, val)
		}
		props, redacted = p, redacted || !ok
	}
	if props == nil {
		props = map[string]any{}
	}
	m["properties"] = props
	if redacted {
		m["redacted"] = true
	}
	return m, nil
}

// EachIdentifier calls fn with the type and opened value of each of p's
// identifiers, in stored order, until fn returns false; a value that
// cannot be opened (erased or unknown key) is skipped.
func (p *Profile) EachIdentifier(open Opener, fn func(typ string, value any) bool) error {
	for i := range p.Identifiers {
		id := &p.Identifiers[i]
		val, ok, err := openValue(open, id.Key, id.Sealed)
		if err != nil {
			return fmt.Errorf("gcr: identifier %s/%x: %w", id.Type, id.Hash, err)
		}
		if ok && !fn(id.Type, val) {
			return nil
		}
	}
	return nil
}
