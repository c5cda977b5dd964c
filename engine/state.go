package engine

import (
	"context"
	"time"

	"github.com/aurumcdp/aurum/engine/access"
	"github.com/aurumcdp/aurum/engine/audit"
	"github.com/aurumcdp/aurum/engine/export"
	"github.com/aurumcdp/aurum/engine/ingest"
	"github.com/aurumcdp/aurum/engine/matching"
	"github.com/aurumcdp/aurum/engine/models"
	"github.com/aurumcdp/aurum/engine/outbox"
	"github.com/aurumcdp/aurum/engine/privacy"
	"github.com/aurumcdp/aurum/engine/query"
	alog "github.com/aurumcdp/aurum/log"
	"github.com/aurumcdp/aurum/projections"
	"github.com/aurumcdp/aurum/store"
)

// The stages, for whoever wires the engine's surfaces (the HTTP API, the
// CLI, tests): the engine keeps only its own methods.

// Edge is the ingest edge: tracking, import, raw JSON documents, dead
// letters.
func (e *Engine) Edge() *ingest.Edge { return e.edge }

// Reader is the read side: profiles, events, audiences, preview.
func (e *Engine) Reader() *query.Reader { return e.reader }

// Gate is access: tokens, sessions, users, sources, the NATS authorizer.
func (e *Engine) Gate() *access.Gate { return e.gate }

// Recorder is the audit log.
func (e *Engine) Recorder() *audit.Recorder { return e.recorder }

// Models is the prediction models: fits, records, evaluations.
func (e *Engine) Models() *models.Service { return e.models }

// Exporter is the warehouse export (Parquet runs).
func (e *Engine) Exporter() *export.Exporter { return e.exporter }

// Matching is probabilistic identity: the matcher, training, the review
// queue and explanations.
func (e *Engine) Matching() *matching.Service { return e.matching }

// Privacy is erasure, export and consent.
func (e *Engine) Privacy() *privacy.Service { return e.privacy }

// read runs fn on a consistent snapshot of the projections and the state
// machine that built them (a rebuild's swap waits until fn returns).
func (e *Engine) read(fn func(r store.Reader, sm *projections.StateMachine) error) error {
	e.stateMu.RLock()
	defer e.stateMu.RUnlock()
	snap := e.state.NewSnapshot()
	defer snap.Close()
	return fn(snap, e.sm)
}

// wiring is the engine as its stages see it: each method is one of the
// small interfaces a stage declares (read the state, append a control
// record, wait until applied). Only Open hands it out.
type wiring struct{ e *Engine }

// Read implements query.State and the other stages' state readers.
func (w wiring) Read(fn func(r store.Reader, sm *projections.StateMachine) error) error {
	return w.e.read(fn)
}

// AppendControl implements the stages' Control: it appends c to the log.
func (w wiring) AppendControl(ctx context.Context, c projections.Control) (uint64, error) {
	return w.e.appendControl(ctx, c)
}

// WaitApplied implements the stages' Applied.
func (w wiring) WaitApplied(ctx context.Context, seq uint64) error { return w.e.WaitApplied(ctx, seq) }

// closeRevokedNATS closes the NATS connections of tokens and sessions that
// no longer exist and of producers whose source or write key no longer
// does. Called after the access or source table changed.
func (e *Engine) closeRevokedNATS() {
	if n := e.log.DisconnectClients(e.gate.NATSClientValid); n > 0 {
		e.opts.Logger.Info("engine: closed NATS connections of revoked tokens, sessions or write keys", "closed", n)
	}
}

// Live implements outbox.State: fn gets the live state store under the
// state lock (shared).
func (w wiring) Live(fn func(db *store.DB, sm *projections.StateMachine) error) error {
	w.e.stateMu.RLock()
	defer w.e.stateMu.RUnlock()
	return fn(w.e.state, w.e.sm)
}

// outboxBarrier is the outbox publisher as privacy.Outbox. The publisher
// is made after the privacy stage (it reads consent through it).
type outboxBarrier struct{ e *Engine }

func (b outboxBarrier) Barrier(ctx context.Context) error {
	b.e.publisher.Barrier()
	ctx, cancel := context.WithTimeout(ctx, erasureBarrierWait)
	defer cancel()
	return b.e.publisher.WaitPassed(ctx, b.e.applied.get())
}

// erasureBarrierWait bounds one wait of an erasure for the partitions'
// owners (a failover in progress); the erasure is tried again after it.
const erasureBarrierWait = 30 * time.Second

// erasing reports whether an erasure is pending in the live state (the
// outbox's Options.Erasing).
func (e *Engine) erasing() bool {
	has := false
	err := e.read(func(r store.Reader, _ *projections.StateMachine) (err error) {
		has, err = projections.HasPendingErasure(r)
		return err
	})
	return err == nil && has
}

// What each stage is handed, checked at compile time.
var (
	_ access.Control   = wiring{}
	_ access.Applied   = wiring{}
	_ access.State     = wiring{}
	_ query.State      = wiring{}
	_ privacy.Control  = wiring{}
	_ privacy.Applied  = wiring{}
	_ privacy.State    = wiring{}
	_ privacy.Outbox   = outboxBarrier{}
	_ privacy.Profiles = (*query.Reader)(nil)
	_ privacy.Ingester = (*ingest.Edge)(nil)
	_ privacy.Sources  = (*access.Gate)(nil)
	_ outbox.State     = wiring{}
	_ outbox.Consent   = (*privacy.Service)(nil)
	_ ingest.Sources   = (*access.Gate)(nil)
	_ alog.Authorizer  = alog.AuthorizerFunc((*access.Gate)(nil).AuthorizeNATS)
)
