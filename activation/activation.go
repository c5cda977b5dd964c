// Package activation delivers audience transitions to webhook destinations.
//
// Aurum publishes a person entering or leaving an audience as a JSON
// message on aurum.audience.<audience>.entered / .exited (stream AURUM_OUT,
// deterministic Nats-Msg-Id). A Destination (URL, secret, audiences) gets
// each such message as an HTTP POST.
//
// Each destination is its own persistent queue: a durable JetStream
// consumer named "webhook-<name>" on AURUM_OUT with one filter
// aurum.audience.<audience>.> per audience (log.ConsumeDurable), run by
// one worker goroutine. JetStream keeps the destination's position, so a
// slow or dead endpoint delays neither the other destinations nor
// ingestion, and after a restart the destination continues where it
// stopped. Messages reach a destination in stream order, one at a time: a
// failing message holds back the ones after it until it is delivered or
// dead-lettered.
//
// # Request
//
//	POST <url>
//	Content-Type:    application/json
//	Aurum-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>
//	Aurum-Delivery:  <message id>   (idempotency key)
//	Aurum-Attempt:   <n>            (1 on the first attempt)
//	Aurum-Epoch:     <e>            (in a cluster: the delivering node's epoch, see Fence)
//
//	<the transition JSON, byte for byte as on the stream>
//
// Receivers check the signature with Verify and de-duplicate on
// Aurum-Delivery: delivery is at least once per destination (an attempt
// whose response is lost is retried), so exactly once per transition with
// receiver de-duplication. The delivery id is the message's Nats-Msg-Id
// ("AURUM_OUT-<seq>" for a message published without one).
//
// # Consent
//
// Every destination has a channel: a consent channel (email, sms, push,
// ads, web) or "none" (an internal system that does not contact the
// person; it bypasses consent). Before each attempt for a consent channel
// the worker asks Options.Consent whether the transition's person
// (profile_id) may be contacted on it now; if not, the message is acked
// without a request (skipped: counted in DestStats.Skipped and reported to
// Options.OnSkip, never retried). A message without a profile_id is
// dead-lettered unchecked; a failing check is retried like a failed attempt.
//
// # Outcomes
//
//   - 2xx: delivered.
//   - 408, 429, 5xx, a timeout (Options.Timeout) or a connection error:
//     retried after BackoffMin*2^(attempt-1), at most BackoffMax, or after
//     the response's Retry-After when longer (also capped at BackoffMax);
//     after MaxAttempts attempts the message is dead-lettered.
//   - any other status (other 4xx; 3xx, as redirects are not followed by
//     the default client): dead-lettered at once.
//
// A dead-lettered message goes to Options.DeadLetter (by default the log's
// dead-letter stream, source "webhook:<name>"), then the destination moves
// on to the next message.
package activation

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/aurumcdp/aurum/activation/connector"
	"github.com/aurumcdp/aurum/event"
	"github.com/aurumcdp/aurum/store"
)

// Defaults of Options (applied to zero fields).
const (
	DefaultTimeout     = 10 * time.Second
	DefaultMaxAttempts = 12
	DefaultBackoffMin  = 500 * time.Millisecond
	DefaultBackoffMax  = 5 * time.Minute
)

// Limits of a Destination.
const (
	MinSecretLen    = 16
	MaxAudiences    = 64
	MaxAudienceLen  = 128
	maxResponseRead = 64 << 10 // response bytes read (and discarded) to reuse the connection
)

// ChannelNone is the channel of a destination that is not a way of
// contacting the person (an internal system: a data warehouse, a fraud
// check). It bypasses consent: use it only for such non-contact uses.
const ChannelNone = "none"

// Channels a Destination may name: the consent channels
// (event.ConsentChannels) and ChannelNone.
var Channels = append(slices.Clone(event.ConsentChannels), ChannelNone)

// ConsentChecker decides whether a person may be contacted on a channel.
// The engine implements it: it resolves a merged-away profile id to the
// person's current profile, reads its consent for the channel and applies
// the node's default when there is no statement.
type ConsentChecker interface {
	// Allowed reports whether the person of profileID (a ULID) may be
	// contacted on channel (one of event.ConsentChannels) now. An error
	// means it could not tell (the message is retried).
	Allowed(profileID, channel string) (bool, error)
}

// SkipConsent is the reason of a transition skipped because the person's
// consent for the destination's channel is not granted.
const SkipConsent = "consent"

var nameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,63}$`)

// Destination is a webhook or a connector (Kind) attached to one or more
// audiences.
type Destination struct {
	Name string // [a-z0-9][a-z0-9_-]{0,63}; names the durable consumer
	// Kind is KindWebhook ("" too) or a connector kind (Kinds).
	Kind string
	// Config is a connector's configuration, credentials included (a JSON
	// object, checked by the kind). Webhooks have none.
	Config    json.RawMessage
	URL       string   // a webhook's absolute http(s) URL
	Secret    string   // a webhook's HMAC-SHA256 key, at least MinSecretLen bytes
	Audiences []string // at least one; each a subject token
	// Channel is how the destination contacts the person: one of
	// event.ConsentChannels, whose consent every delivery checks, or
	// ChannelNone. Required.
	Channel string
	// Since is when the destination was created: it receives transitions
	// published from then on, not the stream's retained history. Zero:
	// from the start of the retained stream. Webhooks only: a connector
	// starts with its first sync.
	Since time.Time
	// Version is the destination's version on the log (MarkSynced names
	// it).
	Version int64
	// SyncedAt, for a connector, is the log position its first sync sent
	// the members as of (0: not synced yet); OutStart is the AURUM_OUT
	// sequence its consumer starts at. See "First sync" in the package
	// documentation.
	SyncedAt, OutStart uint64
}

// KindWebhook is the kind of a webhook destination.
const KindWebhook = "webhook"

// IsWebhook reports whether d is a webhook.
func (d Destination) IsWebhook() bool { return d.Kind == "" || d.Kind == KindWebhook }

// Validate checks d.
func (d Destination) Validate() error {
	if !nameRE.MatchString(d.Name) {
		return fmt.Errorf("activation: destination %q: name must match %s", d.Name, nameRE)
	}
	if err := checkAudiences(d.Name, d.Audiences); err != nil {
		return err
	}
	if !d.IsWebhook() {
		_, err := d.connector(connector.Env{Destination: d.Name, Client: http.DefaultClient, Now: time.Now})
		return err
	}
	u, err := url.Parse(d.URL)
	if err != nil {
		return fmt.Errorf("activation: destination %s: url: %w", d.Name, err)
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("activation: destination %s: url must be an absolute http(s) URL", d.Name)
	}
	if len(d.Secret) < MinSecretLen {
		return fmt.Errorf("activation: destination %s: secret shorter than %d bytes", d.Name, MinSecretLen)
	}
	if !slices.Contains(Channels, d.Channel) {
		return fmt.Errorf("activation: destination %s: channel %q: want one of %s", d.Name, d.Channel, strings.Join(Channels, ", "))
	}
	return nil
}

func checkAudiences(name string, audiences []string) error {
	if len(audiences) == 0 || len(audiences) > MaxAudiences {
		return fmt.Errorf("activation: destination %s: %d audiences, want 1..%d", name, len(audiences), MaxAudiences)
	}
	for _, a := range audiences {
		if a == "" || len(a) > MaxAudienceLen || strings.ContainsFunc(a, func(r rune) bool {
			return r <= ' ' || r == 0x7f || r == '.' || r == '*' || r == '>'
		}) {
			return fmt.Errorf("activation: destination %s: invalid audience %q", name, a)
		}
	}
	return nil
}

// connector returns d's connector (d is not a webhook). An unknown kind or
// an invalid config is a *ConfigError.
func (d Destination) connector(env connector.Env) (connector.Connector, error) {
	k, ok := Kinds()[d.Kind]
	if !ok {
		return nil, &ConfigError{Destination: d.Name, Err: &connector.FieldError{Field: "kind",
			Msg: fmt.Sprintf("%q is not a kind (want one of %s)", d.Kind, strings.Join(KindNames(), ", "))}}
	}
	if d.Channel != "" && d.Channel != k.Channel {
		return nil, &ConfigError{Destination: d.Name, Err: &connector.FieldError{Field: "channel",
			Msg: fmt.Sprintf("a %s destination contacts people on %s", k.Name, k.Channel)}}
	}
	c, err := k.New(d.Config, env)
	if err == nil && k.CheckAudiences != nil {
		err = k.CheckAudiences(d.Config, d.Audiences)
	}
	if err != nil {
		return nil, &ConfigError{Destination: d.Name, Err: err}
	}
	return c, nil
}

// ConfigError is an invalid kind or config of a destination; Field names
// the JSON field (e.g. "config.portal_id").
type ConfigError struct {
	Destination string
	Err         error
}

func (e *ConfigError) Error() string {
	return fmt.Sprintf("activation: destination %s: %v", e.Destination, e.Err)
}

func (e *ConfigError) Unwrap() error { return e.Err }

// Field is the JSON field at fault ("config" when unknown).
func (e *ConfigError) Field() string {
	var fe *connector.FieldError
	if errors.As(e.Err, &fe) {
		return fe.Field
	}
	return "config"
}

// DeadLetter is a transition a destination gave up on.
type DeadLetter struct {
	Destination string
	Kind        string // KindWebhook or a connector kind
	Subject     string // e.g. aurum.audience.vip.entered
	Seq         uint64 // AURUM_OUT sequence
	DeliveryID  string // the Aurum-Delivery header
	Body        []byte // the transition JSON
	Attempts    uint64
	Status      int    // the last HTTP status; 0 without a response
	Reason      string // the last error
	Time        time.Time
}

// Options configures a Dispatcher. The zero value is valid.
type Options struct {
	// Client sends the requests (nil: a client of its own, with its own
	// connection pool, that does not follow redirects; Close closes its
	// idle connections).
	Client *http.Client
	// Timeout bounds each attempt (default 10 s).
	Timeout time.Duration
	// MaxAttempts is the number of attempts before a retried message is
	// dead-lettered (default 12).
	MaxAttempts int
	// BackoffMin and BackoffMax bound the delay before a retry (default
	// 500 ms, 5 min).
	BackoffMin, BackoffMax time.Duration
	// Logger (nil = discard).
	Logger *slog.Logger
	// Now is the clock of signatures and dead letters (nil = time.Now).
	Now func() time.Time
	// DeadLetter stores a message given up on. It must be durable on
	// return: the message is then acked. On error the message is retried
	// later. nil writes it to the log's dead-letter stream (Log.DeadLetter)
	// with source "webhook:<name>".
	DeadLetter func(context.Context, DeadLetter) error
	// Consent is asked before every delivery to a destination whose
	// channel is not ChannelNone; a transition of a person without consent
	// is acked without a request (skipped). nil delivers everything (for
	// tests; the engine always sets it).
	Consent ConsentChecker
	// OnSkip is called for every skipped transition with the destination
	// and the reason (SkipConsent). nil: ignored.
	OnSkip func(destination, reason string)
	// People is how connectors read audience members (first sync) and
	// people's identifiers and traits, and record a finished first sync.
	// nil: connector destinations do not start (webhooks do).
	People People
	// Refs keeps what connectors need to erase a person later (a contact
	// id, the hashes sent), per destination, audience and person, until
	// the exit. nil: an in-memory store (lost at restart).
	Refs store.ReadWriter
	// SyncBatchPause is waited between two batches of a first sync (the
	// tools' own pacing; default 0).
	SyncBatchPause time.Duration
	// ConsentSweep is how often a connector whose tool keeps a list looks
	// for people on it whose consent was withdrawn since (a withdrawal is
	// no transition) and removes them (default 1 min; negative: never).
	ConsentSweep time.Duration
	// Fence, in a cluster, is the authority under which this node's
	// workers deliver (see Fence). nil: a single node, never fenced.
	Fence Fence
}

// Fence is how a cluster keeps the delivery workers of a destination on one
// node at a time. A worker learns its epoch when it starts and checks it
// again before each delivery step (a webhook attempt, a connector batch,
// the end of a first sync); when this node may no longer deliver, or only
// under another epoch, the worker stops at once, hands the message it holds
// back to the consumer (redelivered to the node that delivers now) and
// stays stopped: the caller starts workers again (Suspend, then Set) under
// the new epoch. What a check cannot cover is the one step in flight when
// the node lost the role (a pause between the check and the request):
// deliveries stay at least once, keyed by their delivery id, and webhooks
// carry the epoch (HeaderEpoch) for receivers that want to drop a stale
// one.
type Fence interface {
	// Epoch returns the epoch under which this node may deliver now. An
	// error wrapping log.ErrFenced means it may not (another node delivers,
	// or this one lost the role); another error means the check could not
	// be made now (it is retried).
	Epoch(ctx context.Context) (uint64, error)
}

// DefaultConsentSweep is the default Options.ConsentSweep.
const DefaultConsentSweep = time.Minute

// Member is one member of an audience in a first sync.
type Member struct {
	Audience  string
	ProfileID string
}

// Person is what a connector is told about a person.
type Person struct {
	Emails, Phones []string
	Traits         map[string]any
}

// People is the engine as connectors see it.
type People interface {
	// Members returns the members of the audiences and the log position
	// (applied) they are the members as of, read in one consistent view.
	Members(audiences []string) (applied uint64, members []Member, err error)
	// Person returns the person's current identifiers and traits; found
	// is false for an unknown (or erased) profile.
	Person(profileID string) (p Person, found bool, err error)
	// MarkSynced records on the log that version of destination name has
	// sent its members as of applied, and that its consumer starts at
	// outStart; it returns once applied (the destination then reloads).
	MarkSynced(ctx context.Context, name string, version int64, applied, outStart uint64) error
}

// EnsureDefaults fills in zero fields with their defaults.
func (o *Options) EnsureDefaults() {
	if o.Timeout == 0 {
		o.Timeout = DefaultTimeout
	}
	if o.MaxAttempts == 0 {
		o.MaxAttempts = DefaultMaxAttempts
	}
	if o.BackoffMin == 0 {
		o.BackoffMin = DefaultBackoffMin
	}
	if o.BackoffMax == 0 {
		o.BackoffMax = DefaultBackoffMax
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.ConsentSweep == 0 {
		o.ConsentSweep = DefaultConsentSweep
	}
}

// Validate checks the options after EnsureDefaults.
func (o *Options) Validate() error {
	if o.Timeout < 0 || o.BackoffMin < 0 || o.BackoffMax < 0 {
		return fmt.Errorf("activation: options: negative duration")
	}
	if o.MaxAttempts < 1 {
		return fmt.Errorf("activation: options: MaxAttempts %d < 1", o.MaxAttempts)
	}
	if o.BackoffMin > o.BackoffMax {
		return fmt.Errorf("activation: options: BackoffMin %v exceeds BackoffMax %v", o.BackoffMin, o.BackoffMax)
	}
	return nil
}

// DestStats are a destination's counters since its worker first started
// in this Dispatcher.
type DestStats struct {
	Delivered      uint64    `json:"delivered"`       // messages delivered (2xx)
	FailedAttempts uint64    `json:"failed_attempts"` // attempts that did not get a 2xx
	DeadLettered   uint64    `json:"dead_lettered"`
	Skipped        uint64    `json:"skipped"`                  // acked without a request: no consent for the channel
	LastError      string    `json:"last_error,omitempty"`     // of the last failed attempt ("" if none)
	LastErrorTime  time.Time `json:"last_error_time,omitzero"` // RFC 3339; absent without a failed attempt
	// LastSeq is the AURUM_OUT sequence of the last message delivered or
	// dead-lettered.
	LastSeq uint64 `json:"last_seq"`
	// Lag is the number of the destination's messages after the one
	// delivered last (as of its delivery).
	Lag uint64 `json:"lag"`
	// Running is false once the worker has stopped (Close, log closed,
	// fenced).
	Running bool `json:"running"`
	// Fenced counts the times a worker stopped because this node lost the
	// right to deliver (Options.Fence), a cluster's failover.
	Fenced uint64 `json:"fenced,omitempty"`
	// Synced counts the members a connector's first sync delivered;
	// FirstSync is "pending", "running" or "done" (connectors only).
	Synced    uint64 `json:"synced,omitempty"`
	FirstSync string `json:"first_sync,omitempty"`
	// Removed counts deliveries that took a person off the tool (exits,
	// withdrawn consent, erasures), within Delivered.
	Removed uint64 `json:"removed,omitempty"`
}
