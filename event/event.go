// Package event defines Aurum's base event types: the plaintext Event accepted at
// the edge (Segment Tracking API shape, validated and normalised) and the Record,
// the form an event takes on the log (identifiers hashed, personal data sealed).
//
// The package is pure: no I/O, no clocks (callers pass the time in).
package event

import (
	"fmt"
	"time"
)

// Kind is the Segment call type of an event.
type Kind string

// The Segment call types.
const (
	Track    Kind = "track"
	Identify Kind = "identify"
	Page     Kind = "page"
	Screen   Kind = "screen"
	Group    Kind = "group"
	Alias    Kind = "alias"
)

// Well-known identifier types. Any other lower-case type (from
// context.externalIds: device_id, loyalty_id, token_id, pos_card, crm_id, ...)
// is an external identifier.
const (
	UserID      = "user_id"
	AnonymousID = "anonymous_id"
	Email       = "email"
	Phone       = "phone"
	// ProfileID is accepted in look-ups only; it is never an event identifier.
	ProfileID = "profile_id"
)

// Identifier is one typed, normalised identifier value.
type Identifier struct {
	Type  string `msgpack:"t" json:"type"`
	Value string `msgpack:"v" json:"value"`
	// Weak marks an identifier that only links to a profile already holding it
	// (an alias's previousId, which may be a user id or an anonymous id; see
	// projections/identity).
	Weak bool `msgpack:"w,omitempty" json:"weak,omitempty"`
}

func (id Identifier) String() string { return id.Type + ":" + id.Value }

// Event is a validated, normalised touchpoint in plaintext, as accepted at the
// edge. It never reaches the log in this form: see Record.
type Event struct {
	MessageID   string
	Kind        Kind
	Event       string // track: the event name
	Name        string // page/screen: the page or screen name
	UserID      string
	AnonymousID string
	PreviousID  string
	GroupID     string
	Traits      map[string]any // identify traits, with context.traits merged under them
	Properties  map[string]any
	Context     map[string]any // context without traits and externalIds
	// Identifiers are derived from userId, anonymousId, traits.email,
	// traits.phone, context.externalIds and (alias) previousId; normalised,
	// blocked values removed, duplicates removed.
	Identifiers []Identifier
	Timestamp   time.Time // event time (timestamp, else derived from sentAt/receivedAt)
	SentAt      time.Time // zero when absent
	Channel     string    // context.channel, else derived ("web" for page, "mobile" for screen, "server")
	DeviceType  string    // context.device.type, lower-cased; "" when absent
	// Consent holds the consent statements the event makes, channel →
	// granted (see ConsentChannels): from traits.consent,
	// context.consent.categoryPreferences and "Consent Updated" events.
	// nil when it states none.
	Consent map[string]bool
}

// FieldError is a validation error naming the offending field, e.g.
// {Field: "event", Reason: "required for track"}.
type FieldError struct {
	Field  string `json:"field"`
	Reason string `json:"reason"`
}

func (e *FieldError) Error() string { return fmt.Sprintf("event: %s: %s", e.Field, e.Reason) }

// IDRef is an identifier as it appears on the log and in projections: its
// keyed hash (the look-up key) and its value sealed under the record's key.
type IDRef struct {
	Type   string `msgpack:"t"`
	Hash   []byte `msgpack:"h"` // 16-byte keyed hash of Type+":"+Value
	Sealed []byte `msgpack:"s,omitempty"`
	Weak   bool   `msgpack:"w,omitempty"`
}

// Record is the form of an event on the log and in the event projection.
// The whole payload is sealed with the data key named by Key (the data key
// of the event's anchor identifier): identifier values, each trait value,
// the properties and the private part (raw ids, context, sentAt). So an
// erasure, which destroys the key, leaves nothing of it readable
// (crypto-shredding). In clear stays only what routing, dedup, statistics
// and rules need without a key: keyed hashes, ids, times, source, kind,
// event and page names, channel, device type, trait names (the GCR joins
// traits per name without opening them) and consent statements.
//
// The state machine opens the properties (OpenProperties) for the GCR and
// the audience rules; they are never re-sealed there, so a replay stores
// the sealed bytes of the log as they are.
type Record struct {
	ID         []byte            `msgpack:"id"` // 16-byte ULID assigned at ingest
	MessageID  string            `msgpack:"mid"`
	Source     string            `msgpack:"src"`
	Kind       Kind              `msgpack:"k"`
	Event      string            `msgpack:"e,omitempty"`
	Name       string            `msgpack:"n,omitempty"`
	Time       int64             `msgpack:"t"`  // event time, Unix milliseconds
	Received   int64             `msgpack:"rt"` // receive time, Unix milliseconds
	Channel    string            `msgpack:"ch,omitempty"`
	DeviceType string            `msgpack:"dt,omitempty"`
	Key        []byte            `msgpack:"key"` // 16-byte id of the data key that sealed the fields below
	IDs        []IDRef           `msgpack:"ids"`
	Traits     map[string][]byte `msgpack:"tr,omitempty"` // each value: sealed msgpack encoding
	// SealedProperties is the sealed msgpack encoding of the event's
	// properties (AppendMsgpack); nil when it has none.
	SealedProperties []byte `msgpack:"sp,omitempty"`
	// Properties is the plaintext of SealedProperties once opened
	// (OpenProperties); never encoded, nil in a decoded record.
	Properties map[string]any `msgpack:"-"`
	Private    []byte         `msgpack:"pv,omitempty"` // sealed msgpack of Private
	// Consent is the event's consent statements, channel → granted, in
	// plaintext (a consent state is not personal data of its own, and the
	// state machine must read it: see Event.Consent).
	Consent map[string]bool `msgpack:"cs,omitempty"`
}

// Private is the sealed part of a Record that is not broken out elsewhere.
type Private struct {
	UserID      string         `msgpack:"u,omitempty"`
	AnonymousID string         `msgpack:"a,omitempty"`
	PreviousID  string         `msgpack:"pr,omitempty"`
	GroupID     string         `msgpack:"g,omitempty"`
	Context     map[string]any `msgpack:"c,omitempty"`
	SentAt      int64          `msgpack:"s,omitempty"`
}

// Batch is one log message: records from one or more ingest requests that
// share one append (and, with --fsync always, one fsync).
type Batch struct {
	ID       []byte   `msgpack:"id"` // 16-byte ULID, also the JetStream message id
	Received int64    `msgpack:"rt"` // Unix milliseconds
	Records  []Record `msgpack:"r"`
}
