// Package privacy is the data subject's rights: erasure (RequestErasure,
// and the worker RunErasures that scrubs plaintext copies, destroys the
// person's data keys and records completion), export of a person's whole
// record (Export) and consent (ConsentAllowed, SetConsent, and the consent
// that output messages carry). It is handed what it needs from the other
// stages as small interfaces, wired by engine.
package privacy

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/aurumcdp/aurum/activation"
	"github.com/aurumcdp/aurum/engine/base"
	"github.com/aurumcdp/aurum/event"
	alog "github.com/aurumcdp/aurum/log"
	"github.com/aurumcdp/aurum/projections"
	"github.com/aurumcdp/aurum/projections/gcr"
	"github.com/aurumcdp/aurum/seal"
	"github.com/aurumcdp/aurum/store"
	"github.com/oklog/ulid/v2"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/vmihailenco/msgpack/v5"
)

// Erasure status values.
const (
	ErasurePending   = "pending"   // on the log, not yet applied
	ErasureApplied   = "applied"   // gone from the projections; keys not yet destroyed
	ErasureCompleted = "completed" // copies scrubbed, keys destroyed
)

// ErasureCounts are what an erasure removed (no personal data).
type ErasureCounts struct {
	Identifiers int `json:"identifiers"`
	Profiles    int `json:"profiles"` // the person's profile and those merged into it
	Events      int `json:"events"`
	Audiences   int `json:"audiences"` // memberships ended with reason "erased"
}

// ErasureInfo is the public view of an erasure.
type ErasureInfo struct {
	ID             string        `json:"id"`
	Status         string        `json:"status"`
	IdentifierType string        `json:"identifier_type,omitempty"`
	Requested      *time.Time    `json:"requested,omitempty"`
	AppliedSeq     uint64        `json:"applied_seq,omitempty"`
	Completed      *time.Time    `json:"completed,omitempty"`
	CompletedSeq   uint64        `json:"completed_seq,omitempty"`
	ProfileFound   bool          `json:"profile_found"`
	Counts         ErasureCounts `json:"counts"`
	// Destinations are the connector destinations that held the person
	// (ever sent them and may still keep them) and how far the erasure got
	// in each: while pending, as of the worker's last round on this node;
	// once completed, as recorded on the log (all done).
	Destinations []activation.DestinationErasure `json:"destinations"`
}

// Control appends a control record to the log and returns its position.
type Control interface {
	AppendControl(ctx context.Context, c projections.Control) (uint64, error)
}

// Applied waits until the state machine has applied log position seq.
type Applied interface {
	WaitApplied(ctx context.Context, seq uint64) error
}

// State runs fn on a consistent snapshot of the projections.
type State interface {
	Read(fn func(r store.Reader, sm *projections.StateMachine) error) error
}

// Outbox is the outbox publisher: Barrier returns once no output read
// from a state before the erasure (one that still carried the person's
// identifiers) can be stored any more: a publish in flight here has
// finished and, in a cluster, every partition's owner has passed the
// position this node has applied. An error: not yet (retried later).
type Outbox interface {
	Barrier(ctx context.Context) error
}

// Profiles reads a person's GCR and its view inside a State.Read (the
// read side).
type Profiles interface {
	ProfileAt(r store.Reader, sm *projections.StateMachine, ref string) (*gcr.Profile, error)
	ViewAt(r store.Reader, sm *projections.StateMachine, ref string) (*gcr.View, error)
}

// Ingester ingests events as the edge does (consent statements).
type Ingester interface {
	Ingest(ctx context.Context, source string, evs []event.Event) error
	ParseOptions() event.ParseOptions
}

// Destinations takes an erased person out of the outside tools that keep
// them (activation's connectors; *activation.Dispatcher).
type Destinations interface {
	// EraseProfiles makes one attempt at every destination holding any of
	// profiles and reports, per such destination, how far it got.
	EraseProfiles(ctx context.Context, erasureID string, profiles []string) []activation.DestinationErasure
}

// Sources creates a source unless it exists.
type Sources interface {
	EnsureSource(ctx context.Context, name string) error
}

// Options configure a Service. Now is required.
type Options struct {
	// Now is the edge clock.
	Now func() time.Time
	// PhoneRegion is the default region of phone numbers in references.
	PhoneRegion string
	// ConsentDefaultDenied makes a channel without a statement denied.
	ConsentDefaultDenied bool
	// Logger receives the worker's logs. Default: discard.
	Logger *slog.Logger
	// Registry receives aurum_erasure* metrics (nil: none).
	Registry prometheus.Registerer
	// Leader reports whether this node runs an erasure's shared steps (the
	// scrub of the output and dead-letter streams, erasure.completed): in
	// a cluster, the leader only. Nil: always (a single node). Every node
	// destroys its own copies of the keys.
	Leader func() bool
	// Interval is how often the worker looks for work besides being
	// kicked: it retries the destinations an erasure has not reached yet
	// (default 5 s).
	Interval time.Duration
}

// DefaultInterval is the default Options.Interval.
const DefaultInterval = 5 * time.Second

// Deps are what a Service is handed by the engine.
type Deps struct {
	Log      *alog.Log
	Keys     *seal.Keyring
	IDs      *base.IDSource
	Control  Control
	Applied  Applied
	State    State
	Outbox   Outbox
	Profiles Profiles
	Ingest   Ingester
	Sources  Sources
	// Destinations (nil: none) are reached before an erasure completes.
	Destinations Destinations
}

// Service is the privacy stage. It is safe for concurrent use; the engine
// runs its worker (RunErasures).
type Service struct {
	opts     Options
	log      *alog.Log
	keys     *seal.Keyring
	ids      *base.IDSource
	control  Control
	applied  Applied
	state    State
	outbox   Outbox
	profiles Profiles
	ingest   Ingester
	sources  Sources
	dests    Destinations
	metrics  *metrics
	kick     chan struct{} // 1-buffered: an erasure was applied
	// destroyed holds the pending erasures whose keys this node destroyed
	// while not running the shared steps (RunErasures' goroutine only).
	destroyed map[string]bool

	localMu sync.Mutex
	local   [][]byte // data keys of completed erasures, to destroy here (DestroyErased)

	// scrubbed holds the pending erasures whose copies and keys this node
	// scrubbed and destroyed (RunErasures' goroutine only): what remains is
	// the destinations.
	scrubbed   map[string]bool
	progressMu sync.Mutex
	progress   map[string][]activation.DestinationErasure // pending erasure id → its last round
}

// New returns the privacy stage.
func New(opts Options, d Deps) *Service {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Interval <= 0 {
		opts.Interval = DefaultInterval
	}
	return &Service{dests: d.Destinations, scrubbed: map[string]bool{}, progress: map[string][]activation.DestinationErasure{}, opts: opts, log: d.Log, keys: d.Keys, ids: d.IDs, control: d.Control, applied: d.Applied,
		state: d.State, outbox: d.Outbox, profiles: d.Profiles, ingest: d.Ingest, sources: d.Sources,
		metrics: newMetrics(opts.Registry), kick: make(chan struct{}, 1), destroyed: map[string]bool{}}
}

type metrics struct {
	erasures prometheus.Counter
	scrubbed prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		erasures: prometheus.NewCounter(prometheus.CounterOpts{Name: "aurum_erasures_completed_total",
			Help: "Erasures completed by this process (copies scrubbed, keys destroyed)."}),
		scrubbed: prometheus.NewCounter(prometheus.CounterOpts{Name: "aurum_erasure_scrubbed_messages_total",
			Help: "Output and dead-letter messages securely deleted by erasures."}),
	}
	if reg != nil {
		reg.MustRegister(m.erasures, m.scrubbed)
	}
	return m
}

func (e *Service) read(fn func(r store.Reader, sm *projections.StateMachine) error) error {
	return e.state.Read(fn)
}

func erasureInfo(st projections.ErasureStatus) ErasureInfo {
	info := ErasureInfo{ID: base.ULIDString(st.ID), Status: ErasureApplied, IdentifierType: st.Type,
		AppliedSeq: st.Seq, ProfileFound: st.Found,
		Counts: ErasureCounts{Identifiers: st.Identifiers, Profiles: st.Profiles, Events: st.Events, Audiences: st.Audiences}}
	rq := time.UnixMilli(st.Requested).UTC()
	info.Requested = &rq
	if st.Completed != 0 {
		c := time.UnixMilli(st.Completed).UTC()
		info.Status, info.Completed, info.CompletedSeq = ErasureCompleted, &c, st.CompletedSeq
	}
	info.Destinations = make([]activation.DestinationErasure, 0, len(st.Destinations))
	for _, d := range st.Destinations {
		info.Destinations = append(info.Destinations, activation.DestinationErasure{Name: d.Name, Status: d.Status})
	}
	return info
}

// withProgress fills in the destinations of a pending erasure from the
// worker's last round.
func (e *Service) withProgress(info ErasureInfo) ErasureInfo {
	if info.Status == ErasureCompleted {
		return info
	}
	e.progressMu.Lock()
	defer e.progressMu.Unlock()
	if p, ok := e.progress[info.ID]; ok {
		info.Destinations = slices.Clone(p)
	}
	return info
}

// ParseErasureIdentifier normalises an erasure's identifier "type:value"
// as ingest does (email lower-cased, phone E.164, ...); profile_id takes a
// profile's ULID. Errors wrap base.ErrBadRef.
func (e *Service) ParseErasureIdentifier(ident string) (typ string, hash []byte, err error) {
	typ, value, err := base.ParseRef(ident)
	if err != nil {
		return "", nil, err
	}
	if typ == event.ProfileID {
		u, perr := ulid.ParseStrict(strings.TrimSpace(value))
		if perr != nil {
			return "", nil, fmt.Errorf("%w: profile_id %q is not a profile id (26 characters, e.g. 01JDZ8Q6X0F7R2M4N8P3S5T7V9)", base.ErrBadRef, value)
		}
		return typ, u[:], nil
	}
	if !validIdentType(typ) {
		return "", nil, fmt.Errorf("%w: identifier type %q: want [a-z][a-z0-9_]{0,63}", base.ErrBadRef, typ)
	}
	norm, ok := event.NormalizeIdentifier(typ, value, e.opts.PhoneRegion)
	if !ok || len(norm) > event.MaxIdentifierBytes {
		return "", nil, fmt.Errorf("%w: %s %q is not a valid identifier", base.ErrBadRef, typ, value)
	}
	return typ, e.keys.Hash(typ, norm), nil
}

func validIdentType(t string) bool {
	if t == "" || len(t) > 64 || t[0] < 'a' || t[0] > 'z' {
		return false
	}
	for i := 0; i < len(t); i++ {
		if c := t[i]; (c < 'a' || c > 'z') && (c < '0' || c > '9') && c != '_' {
			return false
		}
	}
	return true
}

// RequestErasure appends an erasure request for ident ("type:value") to
// the log; only the identifier's type and keyed hash go on the log. It
// waits until the request is applied (the person is gone from every
// projection) or ctx ends; then the status is "pending". The erasure
// worker completes it in the background.
func (e *Service) RequestErasure(ctx context.Context, ident string) (ErasureInfo, error) {
	typ, hash, err := e.ParseErasureIdentifier(ident)
	if err != nil {
		return ErasureInfo{}, err
	}
	id := e.ids.Next(e.opts.Now())
	seq, err := e.control.AppendControl(ctx, projections.Control{Kind: projections.ControlErasureRequest,
		Erasure: projections.ErasureRequest{ID: id, Type: typ, Hash: hash}})
	if err != nil {
		return ErasureInfo{}, fmt.Errorf("engine: erase: %w", err)
	}
	pending := ErasureInfo{ID: base.ULIDString(id), Status: ErasurePending, IdentifierType: typ}
	if err := e.applied.WaitApplied(ctx, seq); err != nil {
		return pending, nil // on the log: it will be applied
	}
	info, err := e.Erasure(base.ULIDString(id))
	if errors.Is(err, base.ErrNotFound) {
		return pending, nil
	}
	return info, err
}

// Erasure returns the status of the erasure with the given id (a ULID).
func (e *Service) Erasure(id string) (ErasureInfo, error) {
	u, err := ulid.ParseStrict(strings.TrimSpace(id))
	if err != nil {
		return ErasureInfo{}, fmt.Errorf("%w: %q is not an erasure id (26 characters, as aurum privacy erase printed it)", base.ErrInvalid, id)
	}
	var info ErasureInfo
	err = e.read(func(r store.Reader, _ *projections.StateMachine) error {
		st, err := projections.Erasure(r, u[:])
		if errors.Is(err, store.ErrNotFound) {
			return fmt.Errorf("%w: erasure %s", base.ErrNotFound, id)
		}
		if err != nil {
			return err
		}
		info = e.withProgress(erasureInfo(st))
		return nil
	})
	return info, err
}

// Erasures lists every erasure, oldest first.
func (e *Service) Erasures() ([]ErasureInfo, error) {
	var out []ErasureInfo
	err := e.read(func(r store.Reader, _ *projections.StateMachine) error {
		all, err := projections.Erasures(r)
		if err != nil {
			return err
		}
		out = make([]ErasureInfo, 0, len(all))
		for _, st := range all {
			out = append(out, e.withProgress(erasureInfo(st)))
		}
		return nil
	})
	return out, err
}

// RedestroySuppressed destroys, at start, the data keys of every
// suppressed identifier that no pending erasure still needs: a keys
// database restored from a backup older than an erasure cannot bring the
// person's keys back. r is the state.
func RedestroySuppressed(r store.Reader, keyring *seal.Keyring, logger *slog.Logger) error {
	keys, err := projections.SuppressedKeys(r)
	if err != nil {
		return err
	}
	pend, err := projections.PendingErasures(r)
	if err != nil {
		return err
	}
	busy := map[string]bool{}
	for _, p := range pend {
		for _, k := range p.Keys {
			busy[string(k)] = true
		}
	}
	var todo [][]byte
	for _, k := range keys {
		if !busy[string(k)] {
			todo = append(todo, k)
		}
	}
	n, err := keyring.DestroyAll(todo)
	if err != nil {
		return fmt.Errorf("engine: re-destroy erased keys: %w", err)
	}
	if n > 0 {
		logger.Warn("engine: destroyed data keys of erased identifiers again (was an old keys backup restored?)", "keys", n)
		if err := keyring.Compact(); err != nil {
			return fmt.Errorf("engine: re-destroy erased keys: %w", err)
		}
	}
	return nil
}

// RunErasures completes applied erasures: it scrubs the plaintext copies
// of the person's data from the output and dead-letter streams, destroys
// their data keys and appends erasure.completed. Each step is idempotent,
// so a crash anywhere redoes the remaining ones at the next start.
//
// It also destroys, in this node's keys database, the keys of erasures
// completed on the log (DestroyErased), on every node: also a node that
// was down while the erasure was pending, or whose worker applied the
// completion before it saw the erasure pending.
func (e *Service) RunErasures(ctx context.Context) error {
	tick := time.NewTicker(e.opts.Interval)
	defer tick.Stop()
	for {
		err := e.destroyErased()
		if err == nil {
			err = e.completeErasures(ctx)
		}
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			e.opts.Logger.Warn("engine: erasure worker: will retry", "err", err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-e.kick:
		case <-tick.C:
		}
	}
}

// DestroyErased queues the data keys of erasures completed on the log
// (projections.Result.ErasedKeys) for the worker to destroy in this node's
// keys database, and wakes it. Keys already destroyed here cost a read
// each. A crash before the worker ran leaves them to the start-time
// re-destroy (RedestroySuppressed): they are all suppressed identifiers'.
func (e *Service) DestroyErased(keys [][]byte) {
	if len(keys) == 0 {
		return
	}
	e.localMu.Lock()
	e.local = append(e.local, keys...)
	e.localMu.Unlock()
	e.KickErasures()
}

// destroyErased destroys the keys queued by DestroyErased; on failure they
// stay queued.
func (e *Service) destroyErased() error {
	e.localMu.Lock()
	keys := e.local
	e.local = nil
	e.localMu.Unlock()
	if len(keys) == 0 {
		return nil
	}
	n, err := e.keys.DestroyAll(keys)
	if err == nil && n > 0 {
		err = e.keys.Compact()
	}
	if err != nil {
		e.localMu.Lock()
		e.local = append(keys, e.local...)
		e.localMu.Unlock()
		return fmt.Errorf("engine: destroy the keys of completed erasures: %w", err)
	}
	if n > 0 {
		e.opts.Logger.Info("engine: destroyed this node's copies of erased keys", "keys", n)
	}
	return nil
}

// KickErasures wakes the worker: an erasure was applied.
func (e *Service) KickErasures() {
	select {
	case e.kick <- struct{}{}:
	default:
	}
}

func (e *Service) completeErasures(ctx context.Context) error {
	var pend []projections.ErasurePending
	if err := e.read(func(r store.Reader, _ *projections.StateMachine) error {
		var err error
		pend, err = projections.PendingErasures(r)
		return err
	}); err != nil {
		return err
	}
	shared := e.opts.Leader == nil || e.opts.Leader()
	pending := make(map[string]bool, len(pend))
	for i := range pend {
		id := base.ULIDString(pend[i].ID)
		pending[id] = true
		var err error
		switch {
		case shared:
			err = e.completeErasure(ctx, &pend[i])
		case !e.destroyed[id]:
			// Not the leader: the leader scrubs the shared streams and
			// appends erasure.completed; this node's keys go now, and
			// only here: the leader may still need the shared copies to
			// unseal the person's values for its scrub.
			if err = e.destroyKeys(&pend[i], e.keys.DestroyLocal); err == nil {
				e.destroyed[id] = true
			}
		}
		if err != nil {
			return fmt.Errorf("engine: erase %s: %w", id, err)
		}
	}
	for id := range e.destroyed {
		if !pending[id] {
			delete(e.destroyed, id)
		}
	}
	for id := range e.scrubbed {
		if !pending[id] {
			delete(e.scrubbed, id)
		}
	}
	e.progressMu.Lock()
	for id := range e.progress {
		if !pending[id] {
			delete(e.progress, id)
		}
	}
	e.progressMu.Unlock()
	return nil
}

// destroyKeys crypto-shreds an erasure's data keys in this node's keys
// database with destroy (Keyring.DestroyAll, or DestroyLocal to leave the
// shared store's copies), then compacts them out of its files.
func (e *Service) destroyKeys(p *projections.ErasurePending, destroy func([][]byte) (int, error)) error {
	if _, err := destroy(p.Keys); err != nil {
		return err
	}
	return e.keys.Compact()
}

func (e *Service) completeErasure(ctx context.Context, p *projections.ErasurePending) error {
	start := time.Now()
	id := base.ULIDString(p.ID)
	if !e.scrubbed[id] {
		n, err := e.scrub(ctx, p)
		if err != nil {
			return err
		}
		e.scrubbed[id] = true
		e.metrics.scrubbed.Add(float64(n))
		e.opts.Logger.Info("engine: erasure: copies scrubbed, keys destroyed", "id", id, "keys", len(p.Keys),
			"scrubbed_messages", n, "seconds", time.Since(start).Seconds())
	}
	// 5. The outside tools that keep the person (connectors), after the
	// keys: a tool that is down holds up the completion, never the
	// crypto-shredding.
	reached, done := e.reachDestinations(ctx, id, p)
	if !done {
		return nil // retried at the next round
	}
	// 6. Done, on the log.
	seq, err := e.control.AppendControl(ctx, projections.Control{Kind: projections.ControlErasureCompleted,
		Erasure: projections.ErasureRequest{ID: p.ID, Destinations: reached}})
	if err != nil {
		return err
	}
	if err := e.applied.WaitApplied(ctx, seq); err != nil {
		return err
	}
	e.metrics.erasures.Inc()
	e.opts.Logger.Info("engine: erasure completed", "id", id, "destinations", len(reached))
	return nil
}

// reachDestinations makes one round of the erasure at the destinations
// (Deps.Destinations) and records the progress shown by Erasure; done
// when every destination that held the person is done. A destination done
// in an earlier round holds nothing of them any more and stays done; so
// does one pending before that holds nothing now (its consumer delivered
// the person's erased exit meanwhile).
func (e *Service) reachDestinations(ctx context.Context, id string, p *projections.ErasurePending) ([]projections.ErasureDestination, bool) {
	if e.dests == nil {
		return nil, true
	}
	profiles := make([]string, len(p.Profiles))
	for i, pid := range p.Profiles {
		profiles[i] = base.ULIDString(pid)
	}
	round := e.dests.EraseProfiles(ctx, id, profiles)
	e.progressMu.Lock()
	byName := map[string]activation.DestinationErasure{}
	for _, d := range e.progress[id] {
		byName[d.Name] = activation.DestinationErasure{Name: d.Name, Status: activation.ErasureDone}
	}
	for _, d := range round {
		byName[d.Name] = d
	}
	all := make([]activation.DestinationErasure, 0, len(byName))
	for _, name := range slices.Sorted(maps.Keys(byName)) {
		all = append(all, byName[name])
	}
	e.progress[id] = all
	e.progressMu.Unlock()
	done := true
	reached := make([]projections.ErasureDestination, 0, len(all))
	for _, d := range all {
		if d.Status != activation.ErasureDone {
			done = false
			e.opts.Logger.Warn("engine: erasure not yet at a destination; retrying", "id", id,
				"destination", d.Name, "status", d.Status, "err", d.Error)
		}
		reached = append(reached, projections.ErasureDestination{Name: d.Name, Status: d.Status})
	}
	return reached, done
}

// scrub deletes the plaintext copies of the person's data from the output
// and dead-letter streams and destroys their data keys; it returns the
// number of messages deleted.
func (e *Service) scrub(ctx context.Context, p *projections.ErasurePending) (int, error) {
	// 1. The person's identifier values, while their keys still exist
	// (after a crash past step 4 they are gone, and so are the copies).
	var values []string
	for _, v := range p.Values {
		pt, err := e.keys.Open(v.Key, v.Sealed)
		if err != nil {
			continue
		}
		var s string
		if msgpack.Unmarshal(pt, &s) == nil && s != "" {
			values = append(values, s)
		}
	}
	// 2. Outputs about them. The barrier waits for publishes in flight
	// (here and, in a cluster, on every partition's owner): later ones
	// read outbox entries the erasure stripped of identifiers.
	if err := e.outbox.Barrier(ctx); err != nil {
		return 0, err
	}
	scrubbed := 0
	if len(p.Profiles) > 0 && p.FirstOutput > 0 {
		ids := map[string]bool{}
		for _, id := range p.Profiles {
			ids[base.ULIDString(id)] = true
		}
		var seqs []uint64
		err := e.log.Scan(ctx, alog.StreamOut, alog.ScanOptions{HeadersOnly: true,
			Since: time.UnixMilli(p.FirstOutput).Add(-time.Minute)}, func(m alog.ScanMsg) error {
			if v := m.Header[alog.HeaderProfile]; len(v) > 0 && ids[v[0]] {
				seqs = append(seqs, m.Seq)
			}
			return nil
		})
		if err != nil {
			return 0, err
		}
		for _, seq := range seqs {
			if err := e.log.SecureDelete(ctx, alog.StreamOut, seq); err != nil {
				return 0, err
			}
		}
		scrubbed += len(seqs)
	}
	// 3. Dead letters holding any of the values in plain text.
	if len(values) > 0 {
		m := newPlainMatcher(values)
		var seqs []uint64
		err := e.log.Scan(ctx, alog.StreamDeadLetter, alog.ScanOptions{}, func(msg alog.ScanMsg) error {
			if m.match(msg.Data) {
				seqs = append(seqs, msg.Seq)
			}
			return nil
		})
		if err != nil {
			return 0, err
		}
		for _, seq := range seqs {
			if err := e.log.SecureDelete(ctx, alog.StreamDeadLetter, seq); err != nil {
				return 0, err
			}
		}
		scrubbed += len(seqs)
	}
	// 4. Crypto-shred: destroy the keys, then compact them out of the
	// keys database's files.
	if err := e.destroyKeys(p, e.keys.DestroyAll); err != nil {
		return 0, err
	}
	return scrubbed, nil
}

// plainMatcher finds plaintext identifier values in raw payloads:
// case-insensitively, and phone numbers also by their digits in any
// common spelling (+45 12 34-56 78).
type plainMatcher struct {
	lower  [][]byte
	digits [][]byte
}

func newPlainMatcher(values []string) *plainMatcher {
	m := &plainMatcher{}
	for _, v := range values {
		m.lower = append(m.lower, []byte(strings.ToLower(v)))
		var d []byte
		for i := 0; i < len(v); i++ {
			if v[i] >= '0' && v[i] <= '9' {
				d = append(d, v[i])
			}
		}
		if len(d) >= 6 && len(d)*2 >= len(v) { // mostly digits: a phone-like value
			m.digits = append(m.digits, d)
		}
	}
	return m
}

func (m *plainMatcher) match(data []byte) bool {
	low := bytes.ToLower(data)
	for _, v := range m.lower {
		if bytes.Contains(low, v) {
			return true
		}
	}
	if len(m.digits) == 0 {
		return false
	}
	// Runs of digits and phone punctuation, reduced to their digits.
	var run []byte
	check := func() bool {
		for _, d := range m.digits {
			if bytes.Contains(run, d) {
				return true
			}
		}
		return false
	}
	for _, c := range data {
		switch {
		case c >= '0' && c <= '9':
			run = append(run, c)
		case c == ' ' || c == '-' || c == '.' || c == '(' || c == ')' || c == '+' || c == '/':
		default:
			if len(run) > 0 && check() {
				return true
			}
			run = run[:0]
		}
	}
	return len(run) > 0 && check()
}

// Export writes the whole record of the person ref identifies as one JSON
// object: the GCR view (identifiers, traits, stats, audiences, and what
// other projections add to it, e.g. consent), the audience history, and
// every event decrypted, oldest first (paged from the store, streamed to
// w). It resolves ref before it calls start, so an unknown person is an
// error (base.ErrNotFound) before anything is written.
func (e *Service) Export(ref string, start func() io.Writer) error {
	return e.read(func(r store.Reader, sm *projections.StateMachine) error {
		view, err := e.profiles.ViewAt(r, sm, ref)
		if err != nil {
			return err
		}
		p, err := e.profiles.ProfileAt(r, sm, ref)
		if err != nil {
			return err
		}
		hist, err := sm.AudienceHistory(r, append([][]byte{p.ID}, p.MergedFrom...))
		if err != nil {
			return err
		}
		type historyView struct {
			Audience    string    `json:"audience"`
			Event       string    `json:"event"` // entered | exited
			Time        time.Time `json:"time"`
			Reason      string    `json:"reason"`
			RuleVersion int64     `json:"rule_version"`
			Seq         uint64    `json:"seq"`
		}
		hv := make([]historyView, 0, len(hist))
		for _, h := range hist {
			kind := "exited"
			if h.Entered {
				kind = "entered"
			}
			hv = append(hv, historyView{Audience: h.Audience, Event: kind, Time: time.UnixMilli(h.Time).UTC(),
				Reason: h.Reason, RuleVersion: h.RuleVersion, Seq: h.Seq})
		}
		w := start()
		enc := func(v any) ([]byte, error) {
			var b bytes.Buffer
			je := json.NewEncoder(&b)
			je.SetEscapeHTML(false)
			if err := je.Encode(v); err != nil {
				return nil, err
			}
			return bytes.TrimRight(b.Bytes(), "\n"), nil
		}
		write := func(parts ...[]byte) error {
			for _, b := range parts {
				if _, err := w.Write(b); err != nil {
					return err
				}
			}
			return nil
		}
		pv, err := enc(view)
		if err != nil {
			return err
		}
		hvj, err := enc(hv)
		if err != nil {
			return err
		}
		at, _ := enc(e.opts.Now().UTC())
		if err := write([]byte(`{"exported_at":`), at, []byte(`,"profile":`), pv,
			[]byte(`,"audience_history":`), hvj, []byte(`,"events":[`)); err != nil {
			return err
		}
		n := 0
		err = sm.GCR().EachEvent(r, p, 256, func(rec *event.Record) error {
			v, err := gcr.RecordView(rec, e.keys.Open)
			if err != nil {
				return err
			}
			b, err := enc(v)
			if err != nil {
				return err
			}
			if n > 0 {
				if err := write([]byte(",")); err != nil {
					return err
				}
			}
			n++
			return write(b)
		})
		if err != nil {
			return err
		}
		return write([]byte("]}\n"))
	})
}
