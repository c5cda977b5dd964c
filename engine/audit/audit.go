// Package audit is the audit log of management actions: Recorder appends
// an entry per request to the AURUM_AUDIT stream (Audit), reads pages of
// it back (AuditLog) and gives the form of a profile reference that may be
// kept forever (RefHash).
package audit

import (
	"context"
	"encoding/hex"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/aurumcdp/aurum/engine/base"
	"github.com/aurumcdp/aurum/event"
	alog "github.com/aurumcdp/aurum/log"
	"github.com/aurumcdp/aurum/seal"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/vmihailenco/msgpack/v5"
)

// Audit results.
const (
	AuditOK              = "ok"
	AuditDenied          = "denied"          // authenticated, not allowed (403)
	AuditError           = "error"           // refused or failed (4xx other than auth, 5xx)
	AuditUnauthenticated = "unauthenticated" // no or bad credentials (401)
	// AuditInvalid marks a record of the audit stream that could not be
	// decoded (only AuditLog returns it; Audit refuses it).
	AuditInvalid = "invalid"
)

// MaxAuditPage bounds the entries one AuditLog call returns.
const MaxAuditPage = 1000

// AuditEntry is one management action on the audit stream (AURUM_AUDIT,
// msgpack). It holds no personal data in plaintext: a profile reference is
// recorded as "type:" + keyed hash (RefHash), because the audit log can never
// be erased.
type AuditEntry struct {
	// Seq is the audit stream sequence, set by AuditLog (not stored).
	Seq    uint64    `msgpack:"-" json:"seq"`
	ID     string    `msgpack:"id" json:"id"` // ULID; Audit sets it when empty
	Time   time.Time `msgpack:"t" json:"time"`
	Actor  string    `msgpack:"a" json:"actor"`
	Role   string    `msgpack:"r" json:"role"`
	Action string    `msgpack:"x" json:"action"` // e.g. "DELETE /v1/audiences/{name}"
	// Object names what the action was on: the request's path values
	// ({name}, {source}, {ref} hashed, ...).
	Object map[string]string `msgpack:"o,omitempty" json:"object,omitempty"`
	Remote string            `msgpack:"ip,omitempty" json:"remote,omitempty"` // client IP
	Status int               `msgpack:"s" json:"status"`
	Result string            `msgpack:"res" json:"result"`
	Detail string            `msgpack:"d,omitempty" json:"detail,omitempty"`
}

// AuditQuery selects a page of the audit log: from Cursor (a sequence, as
// returned in next) when it is not 0, else from the first entry stored at or
// after Since, else, with Newest, the newest Limit entries, else from the
// beginning. Limit is in [1, MaxAuditPage] (0: 100).
type AuditQuery struct {
	Since  time.Time
	Cursor uint64
	Newest bool
	Limit  int
}

// Options configure a Recorder. Now is required.
type Options struct {
	// Now is the edge clock that stamps entries.
	Now func() time.Time
	// PhoneRegion is the default region of phone numbers in references.
	PhoneRegion string
	// Logger receives failed appends. Default: discard.
	Logger *slog.Logger
	// Registry receives aurum_audit_* metrics (nil: none).
	Registry prometheus.Registerer
}

// Recorder writes and reads the audit log. It is safe for concurrent use.
type Recorder struct {
	opts  Options
	log   *alog.Log
	keys  *seal.Keyring
	ids   *base.IDSource
	audit *auditMetrics
}

// New returns a Recorder on l; keys hashes references (RefHash).
func New(opts Options, l *alog.Log, keys *seal.Keyring, ids *base.IDSource) *Recorder {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	return &Recorder{opts: opts, log: l, keys: keys, ids: ids, audit: newAuditMetrics(opts.Registry)}
}

type auditMetrics struct {
	entries  *prometheus.CounterVec
	failures prometheus.Counter
}

func newAuditMetrics(reg prometheus.Registerer) *auditMetrics {
	m := &auditMetrics{
		entries: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "aurum_audit_entries_total",
			Help: "Management actions recorded on the audit log, by result."}, []string{"result"}),
		failures: prometheus.NewCounter(prometheus.CounterOpts{Name: "aurum_audit_failures_total",
			Help: "Audit entries that could not be recorded."}),
	}
	if reg != nil {
		reg.MustRegister(m.entries, m.failures)
	}
	return m
}

func validAuditResult(r string) bool {
	switch r {
	case AuditOK, AuditDenied, AuditError, AuditUnauthenticated:
		return true
	}
	return false
}

// Audit appends a to the audit log and waits until it is durable. A zero ID
// or Time is filled in from the edge clock. A failure is logged (the
// entry's action and result, nothing else) and counted in
// aurum_audit_failures_total before it is returned.
func (e *Recorder) Audit(ctx context.Context, a AuditEntry) error {
	if a.Action == "" || !validAuditResult(a.Result) {
		e.audit.failures.Inc()
		return fmt.Errorf("%w: audit entry needs an action and a result in {ok, denied, error, unauthenticated} (action %q, result %q)",
			base.ErrInvalid, a.Action, a.Result)
	}
	if a.Time.IsZero() {
		a.Time = e.opts.Now()
	}
	a.Time = a.Time.UTC()
	if a.ID == "" {
		a.ID = base.ULIDString(e.ids.Next(a.Time))
	}
	data, err := msgpack.Marshal(&a)
	if err == nil {
		_, err = e.log.AppendAudit(ctx, a.ID, data)
	}
	if err != nil {
		e.audit.failures.Inc()
		e.opts.Logger.Error("audit: entry not recorded", "action", a.Action, "result", a.Result, "status", a.Status, "err", err)
		return fmt.Errorf("audit: append: %w", err)
	}
	e.audit.entries.WithLabelValues(a.Result).Inc()
	return nil
}

// AuditLog returns a page of the audit log in the order it was written, and
// the cursor of the next page. A record that cannot be decoded is returned
// with Result AuditInvalid, so one bad record hides nothing after it.
func (e *Recorder) AuditLog(ctx context.Context, q AuditQuery) ([]AuditEntry, uint64, error) {
	if q.Limit == 0 {
		q.Limit = 100
	}
	if q.Limit < 1 || q.Limit > MaxAuditPage {
		return nil, 0, fmt.Errorf("%w: limit must be in [1, %d], got %d", base.ErrInvalid, MaxAuditPage, q.Limit)
	}
	if q.Newest && q.Cursor == 0 && q.Since.IsZero() {
		last, err := e.log.AuditLastSeq(ctx)
		if err != nil {
			return nil, 0, fmt.Errorf("audit: read: %w", err)
		}
		q.Cursor = max(1, last+1-min(last, uint64(q.Limit)))
	}
	recs, next, err := e.log.ReadAudit(ctx, q.Cursor, q.Since, q.Limit)
	if err != nil {
		return nil, 0, fmt.Errorf("audit: read: %w", err)
	}
	out := make([]AuditEntry, 0, len(recs))
	for _, r := range recs {
		var a AuditEntry
		if err := msgpack.Unmarshal(r.Data, &a); err != nil {
			a = AuditEntry{Time: r.Time.UTC(), Result: AuditInvalid,
				Detail: fmt.Sprintf("record of %d bytes could not be decoded", len(r.Data))}
		}
		a.Seq = r.Seq
		out = append(out, a)
	}
	return out, next, nil
}

// RefHash returns the form of a profile reference that may be kept
// forever: "type:" + hex of the keyed hash of the normalised value (the
// hash look-ups use). A reference that does not parse or normalise is hashed
// as given, under "invalid:".
func (e *Recorder) RefHash(ref string) string {
	typ, value, err := base.ParseRef(ref)
	if err != nil {
		return "invalid:" + hex.EncodeToString(e.keys.Hash("invalid", ref))
	}
	norm := strings.TrimSpace(value)
	if typ != event.ProfileID {
		n, ok := event.NormalizeIdentifier(typ, value, e.opts.PhoneRegion)
		if !ok {
			return "invalid:" + hex.EncodeToString(e.keys.Hash("invalid", ref))
		}
		norm = n
	}
	return typ + ":" + hex.EncodeToString(e.keys.Hash(typ, norm))
}
