// Package connector is the contract between Aurum's activation stage and a
// connector: a destination kind that keeps an outside tool (a CRM, an ad
// platform, an email or SMS gateway) in step with audiences.
//
// The activation stage (package activation) owns everything that is the
// same for every tool: the durable consumer of AURUM_OUT and its position,
// the first sync, consent, the look-up of the person's identifiers and
// traits, retries with backoff, dead letters and statistics. A connector
// only turns a batch of Changes into requests to its tool and reports, per
// change, what happened (Result). It keeps no position and never retries by
// itself: it says Retry (with the tool's Retry-After when it sent one) and
// the stage decides.
package connector

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"time"
)

// Op is what a Change asks of the tool.
type Op uint8

// Ops.
const (
	// Add: the person entered the audience (or is a member at the first
	// sync) and may be contacted: upsert them, add them to the list, send
	// the message.
	Add Op = iota + 1
	// Remove: the person left the audience, or may no longer be contacted
	// on the destination's channel: take them off the list.
	Remove
	// Erase: the person was erased: remove them from everything the tool
	// keeps (list, custom audience; the contact itself where the API
	// allows). The Change has no identifiers or traits, only the Ref the
	// connector returned when it added them.
	Erase
)

func (o Op) String() string {
	switch o {
	case Add:
		return "add"
	case Remove:
		return "remove"
	case Erase:
		return "erase"
	}
	return fmt.Sprintf("op(%d)", uint8(o))
}

// Change is one thing to tell the tool about one person and one audience.
type Change struct {
	// ID is the change's idempotency key: the same for every attempt of
	// the same change (the AURUM_OUT message id, or for the first sync
	// "sync:<destination>:<log position>:<audience>:<profile>"). Connectors
	// whose API takes an idempotency key send it.
	ID        string
	Op        Op
	Audience  string
	ProfileID string
	// Sync is set for the members sent by the first sync.
	Sync bool
	// Emails and Phones are the person's identifier values (normalised as
	// at ingest: emails lower-case, phones E.164), newest last.
	Emails, Phones []string
	// Traits are the person's current traits (nil when unknown).
	Traits map[string]any
	// Ref is what the connector returned (Result.Ref) when it last added
	// this person to this audience; nil if it returned none.
	Ref []byte
}

// Status is the outcome of one Change.
type Status uint8

// Statuses.
const (
	// Delivered: the tool has it (or it had nothing to do).
	Delivered Status = iota + 1
	// Retry: a temporary failure (throttled, 5xx, a timeout): try again
	// after RetryAfter (0: the stage's backoff).
	Retry
	// Failed: the tool refused it for good (a 4xx with the API's reason):
	// it is dead-lettered with Reason.
	Failed
)

// Result is the outcome of one Change.
type Result struct {
	Status     Status
	RetryAfter time.Duration
	// Reason is the tool's own reason for a failure (its status and
	// message), kept in stats and dead letters.
	Reason string
	// Ref, on a delivered Add, is what the connector needs to erase the
	// person later (a contact id, the hashes it sent); the stage keeps it
	// per destination, audience and person until the exit.
	Ref []byte
}

// Connector delivers changes to one configured destination. Deliver may be
// called again after it returned (for the changes it said Retry to) but
// never concurrently.
type Connector interface {
	// MaxBatch is the most changes Deliver takes at once (the API's
	// batch limit).
	MaxBatch() int
	// Deliver sends changes (1..MaxBatch) and returns one Result per
	// change, in order. It returns early when ctx ends (Retry for the
	// rest).
	Deliver(ctx context.Context, changes []Change) []Result
}

// Env is what a connector gets from the stage.
type Env struct {
	Destination string
	// Client sends the connector's HTTP requests (timeouts included).
	Client *http.Client
	// Now is the clock (tokens' expiry, Date headers).
	Now func() time.Time
}

// Kind is one destination kind.
type Kind struct {
	Name string
	// Channel is the consent channel of every destination of the kind.
	Channel string
	// KeepsList: the tool keeps a list of people (a CRM list, a custom
	// audience): a person without consent is removed from it. Otherwise
	// (email, SMS) the person is only not sent.
	KeepsList bool
	// Secrets names the config fields that are credentials: they are
	// sealed on the log and never shown.
	Secrets []string
	// New validates config (a JSON object) and returns the connector. An
	// invalid config is a *FieldError.
	New func(config json.RawMessage, env Env) (Connector, error)
	// CheckAudiences, when set, checks config against the destination's
	// audiences (e.g. each mapped to a list of the tool): a *FieldError.
	CheckAudiences func(config json.RawMessage, audiences []string) error
}

// FieldError is an invalid config field.
type FieldError struct {
	Field string // the JSON field, e.g. "config.list_prefix"
	Msg   string
}

func (e *FieldError) Error() string { return e.Field + ": " + e.Msg }

// Fieldf returns a *FieldError for config field name.
func Fieldf(name, format string, args ...any) error {
	return &FieldError{Field: "config." + name, Msg: fmt.Sprintf(format, args...)}
}
