// Package matching is the node side of probabilistic identity (issue #13,
// docs/identity.md, ARCHITECTURE.md "Probabilistic identity"): the matcher
// that proposes identity.match records for the profiles whose matching
// traits changed, training (identity.model), the review queue
// (identity.review) and the explanation of a profile's links.
//
// The matcher proposes; the log decides. It reads the state (the block index
// the state machine keeps, the GCRs, the model in effect), scores the
// candidates of the blocks a profile is in, and appends one identity.match
// record per pair at or above the review threshold. The state machine
// applies the record by the config and hard constraints in effect (a replay
// applies the same records: it never scores).
package matching

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/aurumcdp/aurum/engine/base"
	"github.com/aurumcdp/aurum/projections"
	"github.com/aurumcdp/aurum/projections/gcr"
	"github.com/aurumcdp/aurum/projections/match"
	"github.com/aurumcdp/aurum/store"
	"github.com/oklog/ulid/v2"
)

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

// Profiles resolves a profile reference ({type}:{value}) to the person's
// profile view inside a State.Read (engine/query).
type Profiles interface {
	ViewAt(r store.Reader, sm *projections.StateMachine, ref string) (*gcr.View, error)
}

// Options configure a Service. Zero fields take their defaults.
type Options struct {
	Logger *slog.Logger
	// Leader reports whether this node proposes and trains (nil: always).
	Leader func() bool
	// Batch is the most queued profiles matched per read of the queue
	// (default 256).
	Batch int
	// ReportEvery is the most time the matcher's progress goes unreported on
	// the log while it has matched something (default 1 s): what a crash
	// makes it match again. It is also how often a follower looks whether it
	// became the leader.
	ReportEvery time.Duration
	// PassStep is the profiles a step of a pass re-indexes and queues
	// (default and at most projections.MaxPassStep).
	PassStep int
	// TrainSample bounds the profiles a training reads (default 200,000).
	TrainSample int
	// Seed seeds training (match.TrainOptions.Seed).
	Seed int64
	// NewID returns a new match id (16 bytes; default: base.ULIDString
	// source of the caller). Required.
	NewID func() []byte
}

// Deps are what the service is handed by the engine.
type Deps struct {
	State    State
	Control  Control
	Applied  Applied
	Profiles Profiles
	// Identifiers hashes the identifiers of a split (split.go); nil: no
	// splits.
	Identifiers Identifiers
}

// Service is the matcher, training, reviews and explanations.
//
// The matcher's work is in the state, not in memory (projections
// matchqueue.go): the state machine queues a profile (mq/) in the batch
// that changes its matching values, and a pass over every profile (mi/pass)
// when a model comes into effect or the config's fields or blocking change.
// The matcher reads the queue in order, proposes, and reports what it
// matched on the log (identity.progress), which removes it from the queue;
// it advances a pass the same way. So a crash, a restart or a new leader
// loses no work: at worst the last unreported second is matched again (a
// proposal for a pair already merged or under review is refused by Apply).
type Service struct {
	opts Options
	deps Deps

	mu      sync.Mutex
	done    []byte // the last queue key matched (since this node leads)
	busy    bool   // Run is working
	kick    chan struct{}
	stats   Stats
	noModel bool // logged once
}

// Stats count the matcher's work.
type Stats struct {
	Matched  int64 `json:"matched"`  // profiles matched
	Proposed int64 `json:"proposed"` // identity.match records appended
	Reports  int64 `json:"reports"`  // identity.progress records appended
	Steps    int64 `json:"steps"`    // pass steps taken
	// Candidates counts the candidates scored (the profiles sharing a block
	// with a matched profile, at most projections.MaxBlockCandidates per
	// blocking key); MaxCandidates is the most of one profile.
	Candidates    int64 `json:"candidates"`
	MaxCandidates int64 `json:"max_candidates"`
}

// New returns a Service.
func New(opts Options, deps Deps) *Service {
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Batch <= 0 {
		opts.Batch = 256
	}
	if opts.ReportEvery <= 0 {
		opts.ReportEvery = time.Second
	}
	if opts.PassStep <= 0 || opts.PassStep > projections.MaxPassStep {
		opts.PassStep = projections.MaxPassStep
	}
	if opts.TrainSample <= 0 {
		opts.TrainSample = 200_000
	}
	return &Service{opts: opts, deps: deps, kick: make(chan struct{}, 1)}
}

func (s *Service) leader() bool { return s.opts.Leader == nil || s.opts.Leader() }

// Enqueue wakes the matcher for profiles whose matching traits changed
// (projections.Result.MatchProfiles): the state machine queued them in the
// state already. It never blocks.
func (s *Service) Enqueue(profiles [][]byte) {
	if len(profiles) > 0 {
		s.wake()
	}
}

func (s *Service) wake() {
	select {
	case s.kick <- struct{}{}:
	default:
	}
}

// Stats returns the counters.
func (s *Service) Stats() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.stats
}

// Idle reports whether this node has no matching work: nothing queued
// after what it matched, no pass in progress, nothing running (tests wait
// on it). A follower is idle. Its proposals may still be on their way
// through the log.
func (s *Service) Idle() bool {
	if !s.leader() {
		return true
	}
	s.mu.Lock()
	busy, done := s.busy, s.done
	s.mu.Unlock()
	if busy {
		return false
	}
	idle := false
	err := s.deps.State.Read(func(r store.Reader, _ *projections.StateMachine) error {
		q, err := projections.QueuedMatches(r, done, 1)
		if err != nil {
			return err
		}
		_, pass, err := projections.PassInProgress(r)
		idle = len(q) == 0 && !pass
		return err
	})
	return err == nil && idle
}

// Run matches the queued profiles and takes the steps of a pass until ctx
// ends.
func (s *Service) Run(ctx context.Context) error {
	tick := time.NewTicker(s.opts.ReportEvery)
	defer tick.Stop()
	var reported []byte // the last Done appended
	lastReport := time.Now()
	unreported := 0
	report := func(force bool) {
		s.mu.Lock()
		done := s.done
		s.mu.Unlock()
		if unreported == 0 || bytes.Equal(done, reported) || (!force && unreported < 4*s.opts.Batch && time.Since(lastReport) < s.opts.ReportEvery) {
			return
		}
		if err := s.appendProgress(ctx, &projections.MatchProgress{Done: done}); err != nil {
			if ctx.Err() == nil {
				s.opts.Logger.Warn("matching: report progress", "err", err)
			}
			return
		}
		reported, lastReport, unreported = done, time.Now(), 0
	}
	for {
		n, worked, err := s.round(ctx)
		switch {
		case ctx.Err() != nil:
			return ctx.Err()
		case err != nil:
			s.opts.Logger.Warn("matching: round failed; retrying", "err", err)
		case worked:
			unreported += n
			report(false)
			continue
		}
		report(true)
		s.setBusy(false)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-s.kick:
		case <-tick.C:
		}
	}
}

func (s *Service) setBusy(b bool) {
	s.mu.Lock()
	s.busy = b
	s.mu.Unlock()
}

// round matches the next batch of the queue, or takes the next step of a
// pass when the queue is empty; it returns the profiles matched and whether
// it did anything.
func (s *Service) round(ctx context.Context) (int, bool, error) {
	if !s.leader() {
		s.mu.Lock()
		s.done = nil // a leader after us reports its own progress
		s.mu.Unlock()
		return 0, false, nil
	}
	s.mu.Lock()
	done := s.done
	s.mu.Unlock()
	var q []projections.QueuedMatch
	var pass projections.MatchPass
	var inPass bool
	err := s.deps.State.Read(func(r store.Reader, _ *projections.StateMachine) error {
		var err error
		if q, err = projections.QueuedMatches(r, done, s.opts.Batch); err != nil {
			return err
		}
		pass, inPass, err = projections.PassInProgress(r)
		return err
	})
	if err != nil {
		return 0, false, err
	}
	if len(q) > 0 {
		s.setBusy(true)
		ps := make([][]byte, len(q))
		for i := range q {
			ps[i] = q[i].Profile
		}
		if err := s.matchProfiles(ctx, ps); err != nil {
			if ctx.Err() != nil {
				return 0, false, ctx.Err()
			}
			// Not retried: a profile that cannot be matched now (its GCR
			// unreadable) must not stop the queue; its next change queues it.
			s.opts.Logger.Warn("matching: match failed; the profiles are matched again when their traits change", "err", err)
		}
		s.mu.Lock()
		s.done = q[len(q)-1].Key
		s.mu.Unlock()
		return len(q), true, nil
	}
	if !inPass {
		return 0, false, nil
	}
	// The queue is empty: the next step of the pass (re-index and queue the
	// next profiles).
	s.setBusy(true)
	if err := s.appendProgress(ctx, &projections.MatchProgress{Step: s.opts.PassStep, After: pass.After}); err != nil {
		return 0, false, err
	}
	s.mu.Lock()
	s.stats.Steps++
	s.mu.Unlock()
	return 0, true, nil
}

// appendProgress appends an identity.progress record and waits until it
// is applied.
func (s *Service) appendProgress(ctx context.Context, p *projections.MatchProgress) error {
	seq, err := s.deps.Control.AppendControl(ctx, projections.Control{Kind: projections.ControlIdentityProgress, Progress: p})
	if err != nil {
		return fmt.Errorf("matching: append identity.progress: %w", err)
	}
	s.mu.Lock()
	s.stats.Reports++
	s.mu.Unlock()
	return s.deps.Applied.WaitApplied(ctx, seq)
}

// proposal is a scored pair to append.
type proposal struct {
	a, b []byte
	d    match.Decision
	cls  string
	ver  string
}

// MatchProfiles scores every profile of ps against the candidates of its
// blocks now and appends the proposals (the matcher's step; benchmarks
// call it directly).
func (s *Service) MatchProfiles(ctx context.Context, ps [][]byte) error {
	return s.matchProfiles(ctx, ps)
}

// matchProfiles scores every profile of ps against the candidates of its
// blocks and appends the proposals.
func (s *Service) matchProfiles(ctx context.Context, ps [][]byte) error {
	if !s.leader() {
		return nil
	}
	var props []proposal
	err := s.deps.State.Read(func(r store.Reader, sm *projections.StateMachine) error {
		cfg := sm.Keychain().Config().Probabilistic
		if cfg == nil {
			return nil
		}
		model, err := projections.MatchModel(r)
		if errors.Is(err, store.ErrNotFound) {
			s.mu.Lock()
			first := !s.noModel
			s.noModel = true
			s.mu.Unlock()
			if first {
				s.opts.Logger.Warn("matching: no identity model yet: run `aurum identity train` (POST /v1/identity/model)")
			}
			return nil
		}
		if err != nil {
			return err
		}
		seen := map[string]bool{} // each pair once per batch, in either order
		for _, p := range ps {
			pp, nc, err := s.score(r, sm, cfg, model, p)
			if err != nil {
				return err
			}
			s.mu.Lock()
			s.stats.Candidates += int64(nc)
			s.stats.MaxCandidates = max(s.stats.MaxCandidates, int64(nc))
			s.mu.Unlock()
			for _, x := range pp {
				k := string(x.a) + string(x.b)
				if bytes.Compare(x.a, x.b) > 0 {
					k = string(x.b) + string(x.a)
				}
				if !seen[k] {
					seen[k] = true
					props = append(props, x)
				}
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	s.mu.Lock()
	s.stats.Matched += int64(len(ps))
	s.mu.Unlock()
	return s.propose(ctx, props)
}

// score returns the proposals for profile p and how many candidates it
// scored.
func (s *Service) score(r store.Reader, sm *projections.StateMachine, cfg *match.Config, model *match.Model, p []byte) ([]proposal, int, error) {
	root, err := sm.Keychain().Root(r, p)
	if errors.Is(err, store.ErrNotFound) {
		return nil, 0, nil
	}
	if err != nil {
		return nil, 0, err
	}
	rec, err := s.record(r, sm, cfg, root)
	if err != nil || len(rec) == 0 {
		return nil, 0, err
	}
	cands, err := sm.BlockCandidates(r, cfg, rec, root)
	if err != nil {
		return nil, 0, err
	}
	var out []proposal
	for _, c := range cands {
		cr, err := sm.Keychain().Root(r, c)
		if errors.Is(err, store.ErrNotFound) || (err == nil && bytes.Equal(cr, root)) {
			continue
		}
		if err != nil {
			return nil, 0, err
		}
		other, err := s.record(r, sm, cfg, cr)
		if err != nil {
			return nil, 0, err
		}
		d := model.Score(*cfg, rec, other)
		if cls := cfg.Classify(d.Probability); cls != "none" {
			out = append(out, proposal{a: root, b: cr, d: d, cls: cls, ver: model.Version})
		}
	}
	return out, len(cands), nil
}

// record is the matching traits of profile, blocked values dropped (a
// placeholder such as "test" or "unknown" is no evidence).
func (s *Service) record(r store.Reader, sm *projections.StateMachine, cfg *match.Config, profile []byte) (match.Record, error) {
	g, err := sm.GCR().Get(r, profile)
	if errors.Is(err, store.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	rec, err := sm.MatchRecordOf(g, cfg)
	if err != nil {
		return nil, err
	}
	kc := sm.Keychain().Config()
	for f, v := range rec {
		if kc.IsBlocked(f, v) {
			delete(rec, f)
		}
	}
	return rec, nil
}

func (s *Service) propose(ctx context.Context, props []proposal) error {
	for _, p := range props {
		m := &projections.MatchRecord{ID: s.opts.NewID(), A: p.a, B: p.b, Probability: p.d.Probability, Weight: p.d.Weight,
			ModelVersion: p.ver, Contributions: p.d.Contributions, Decision: p.cls}
		if _, err := s.deps.Control.AppendControl(ctx, projections.Control{Kind: projections.ControlIdentityMatch, Match: m}); err != nil {
			return fmt.Errorf("matching: append identity.match: %w", err)
		}
		s.mu.Lock()
		s.stats.Proposed++
		s.mu.Unlock()
	}
	return nil
}

// Propose appends one scored pair (the matcher's own proposals, or those
// of an outside matcher), waits until it is applied and returns what the
// log decided. a and b are profile ids.
func (s *Service) Propose(ctx context.Context, a, b []byte, d match.Decision, modelVersion string) (Review, error) {
	var cfg *match.Config
	if err := s.deps.State.Read(func(_ store.Reader, sm *projections.StateMachine) error {
		cfg = sm.Keychain().Config().Probabilistic
		return nil
	}); err != nil {
		return Review{}, err
	}
	if cfg == nil {
		return Review{}, ErrOff
	}
	cls := cfg.Classify(d.Probability)
	if cls == "none" {
		cls = projections.DecisionReview
	}
	m := &projections.MatchRecord{ID: s.opts.NewID(), A: a, B: b, Probability: d.Probability, Weight: d.Weight,
		ModelVersion: modelVersion, Contributions: d.Contributions, Decision: cls}
	seq, err := s.deps.Control.AppendControl(ctx, projections.Control{Kind: projections.ControlIdentityMatch, Match: m})
	if err != nil {
		return Review{}, fmt.Errorf("matching: append identity.match: %w", err)
	}
	if err := s.deps.Applied.WaitApplied(ctx, seq); err != nil {
		return Review{}, err
	}
	var out Review
	err = s.deps.State.Read(func(r store.Reader, _ *projections.StateMachine) error {
		got, err := projections.GetMatch(r, m.ID)
		out = ReviewOf(&got)
		return err
	})
	return out, err
}

// ErrNotLeader is returned by Train and Decide on a node that is not the
// cluster's leader.
var ErrNotLeader = errors.New("matching: this node is not the cluster leader")

// ErrOff is returned when the identity config has no probabilistic section.
var ErrOff = fmt.Errorf("%w: probabilistic matching is off: add a probabilistic section to the identity config (--identity-config)", base.ErrInvalid)

// TrainRequest bounds a training.
type TrainRequest struct {
	// Sample is the most profiles read (0: Options.TrainSample).
	Sample int `json:"sample"`
}

// ModelInfo describes the identity model in effect.
type ModelInfo struct {
	Version      string             `json:"version"`
	Records      int                `json:"records"`
	Prior        float64            `json:"prior"`
	BlockedPairs float64            `json:"blocked_pairs"`
	RandomPairs  int                `json:"random_pairs"`
	Iterations   int                `json:"iterations"`
	Converged    bool               `json:"converged"`
	Fields       []match.FieldModel `json:"fields"`
}

func modelInfo(m *match.Model) ModelInfo {
	return ModelInfo{Version: m.Version, Records: m.Records, Prior: m.Prior, BlockedPairs: m.BlockedPairs, RandomPairs: m.RandomPairs,
		Iterations: m.Iterations, Converged: m.Converged, Fields: m.Fields}
}

// Train fits the weights from the current profiles (at most the sample,
// in key order), records them on the log (identity.model), waits until
// they are in effect, and matches every indexed profile again.
func (s *Service) Train(ctx context.Context, req TrainRequest) (ModelInfo, error) {
	if !s.leader() {
		return ModelInfo{}, ErrNotLeader
	}
	if req.Sample < 0 {
		return ModelInfo{}, fmt.Errorf("%w: sample: %d is negative", base.ErrInvalid, req.Sample)
	}
	n := req.Sample
	if n == 0 {
		n = s.opts.TrainSample
	}
	var cfg *match.Config
	var recs []match.Record
	errEnough := errors.New("enough")
	err := s.deps.State.Read(func(r store.Reader, sm *projections.StateMachine) error {
		cfg = sm.Keychain().Config().Probabilistic
		if cfg == nil {
			return ErrOff
		}
		kc := sm.Keychain().Config()
		err := sm.GCR().EachProfile(r, func(g *gcr.Profile) error {
			rec, err := sm.MatchRecordOf(g, cfg)
			if err != nil {
				return err
			}
			for f, v := range rec {
				if kc.IsBlocked(f, v) {
					delete(rec, f)
				}
			}
			if len(rec) > 0 {
				recs = append(recs, rec)
			}
			if len(recs) >= n {
				return errEnough
			}
			return nil
		})
		if errors.Is(err, errEnough) {
			return nil
		}
		return err
	})
	if err != nil {
		return ModelInfo{}, err
	}
	m, err := match.Train(*cfg, recs, match.TrainOptions{Seed: s.opts.Seed})
	if err != nil {
		return ModelInfo{}, fmt.Errorf("%w: train: %w", base.ErrInvalid, err)
	}
	seq, err := s.deps.Control.AppendControl(ctx, projections.Control{Kind: projections.ControlIdentityModel, IdentityModel: m})
	if err != nil {
		return ModelInfo{}, fmt.Errorf("matching: append identity.model: %w", err)
	}
	if err := s.deps.Applied.WaitApplied(ctx, seq); err != nil {
		return ModelInfo{}, err
	}
	s.mu.Lock()
	s.noModel = false // applying the model started a pass over every profile
	s.mu.Unlock()
	s.wake()
	return modelInfo(m), nil
}

// Model returns the identity model in effect (base.ErrNotFound: none).
func (s *Service) Model() (ModelInfo, error) {
	var info ModelInfo
	err := s.deps.State.Read(func(r store.Reader, _ *projections.StateMachine) error {
		m, err := projections.MatchModel(r)
		if errors.Is(err, store.ErrNotFound) {
			return fmt.Errorf("%w: no identity model yet: train one (aurum identity train)", base.ErrNotFound)
		}
		if err != nil {
			return err
		}
		info = modelInfo(m)
		return nil
	})
	return info, err
}

// Review is a match as the API shows it.
type Review struct {
	ID            string               `json:"id"`
	ProfileA      string               `json:"profile_a"`
	ProfileB      string               `json:"profile_b"`
	Probability   float64              `json:"probability"`
	Weight        float64              `json:"weight"`
	ModelVersion  string               `json:"model_version"`
	Contributions []match.Contribution `json:"contributions"`
	Status        string               `json:"status"`
	Reason        string               `json:"reason,omitempty"`
	Decision      string               `json:"decision,omitempty"`
	Reviewer      string               `json:"reviewer,omitempty"`
	Proposed      time.Time            `json:"proposed"`
	Decided       *time.Time           `json:"decided,omitempty"`
	Into          string               `json:"into,omitempty"`
}

// ReviewOf converts a match record.
func ReviewOf(m *projections.MatchRecord) Review {
	v := Review{ID: base.ULIDString(m.ID), ProfileA: base.ULIDString(m.A), ProfileB: base.ULIDString(m.B), Probability: m.Probability,
		Weight: m.Weight, ModelVersion: m.ModelVersion, Contributions: m.Contributions, Status: m.Status, Reason: m.Reason,
		Decision: m.Review, Reviewer: m.Reviewer, Proposed: time.UnixMilli(m.Time).UTC()}
	if v.Contributions == nil {
		v.Contributions = []match.Contribution{}
	}
	if m.Decided != 0 {
		t := time.UnixMilli(m.Decided).UTC()
		v.Decided = &t
	}
	if len(m.Into) > 0 {
		v.Into = base.ULIDString(m.Into)
	}
	return v
}

// Reviews returns the pending reviews, oldest first, at most limit (0: 1000).
func (s *Service) Reviews(limit int) ([]Review, error) {
	if limit <= 0 {
		limit = 1000
	}
	out := []Review{}
	err := s.deps.State.Read(func(r store.Reader, _ *projections.StateMachine) error {
		ms, err := projections.Reviews(r, limit)
		for i := range ms {
			out = append(out, ReviewOf(&ms[i]))
		}
		return err
	})
	return out, err
}

// Decide records a reviewer's decision (merge or reject) on a pending match
// and returns the match as it stands after it was applied.
func (s *Service) Decide(ctx context.Context, id, decision, reviewer string) (Review, error) {
	if decision != projections.DecisionMerge && decision != projections.DecisionReject {
		return Review{}, fmt.Errorf("%w: decision: %q (want merge or reject)", base.ErrInvalid, decision)
	}
	u, err := ulid.ParseStrict(id)
	mid := u[:]
	if err != nil {
		return Review{}, fmt.Errorf("%w: review id %q: %v", base.ErrNotFound, id, err)
	}
	var cur projections.MatchRecord
	if err := s.deps.State.Read(func(r store.Reader, _ *projections.StateMachine) error {
		cur, err = projections.GetMatch(r, mid)
		if errors.Is(err, store.ErrNotFound) {
			return fmt.Errorf("%w: review %s", base.ErrNotFound, id)
		}
		return err
	}); err != nil {
		return Review{}, err
	}
	if cur.Status != projections.MatchPending {
		return Review{}, fmt.Errorf("%w: review %s was decided already (%s)", base.ErrInvalid, id, cur.Status)
	}
	seq, err := s.deps.Control.AppendControl(ctx, projections.Control{Kind: projections.ControlIdentityReview,
		Review: &projections.ReviewDecision{Match: mid, Decision: decision, Reviewer: reviewer}})
	if err != nil {
		return Review{}, fmt.Errorf("matching: append identity.review: %w", err)
	}
	if err := s.deps.Applied.WaitApplied(ctx, seq); err != nil {
		return Review{}, err
	}
	var out Review
	err = s.deps.State.Read(func(r store.Reader, _ *projections.StateMachine) error {
		m, err := projections.GetMatch(r, mid)
		out = ReviewOf(&m)
		return err
	})
	return out, err
}

// Link is one merge in a profile's history and what made it.
type Link struct {
	From string    `json:"from"`
	Into string    `json:"into"`
	Time time.Time `json:"time"`
	Seq  uint64    `json:"seq"`
	// Cause is "event": an event carried identifiers of both profiles
	// (EventID, and IdentifierType, the type of the shared identifier);
	// or "probabilistic": a match (Match: probability, contributions, the
	// reviewer's decision if any).
	Cause          string  `json:"cause"`
	EventID        string  `json:"event_id,omitempty"`
	IdentifierType string  `json:"identifier_type,omitempty"`
	Match          *Review `json:"match,omitempty"`
}

// Explanation is a profile's identity: its identifiers and every link.
type Explanation struct {
	ProfileID   string                     `json:"profile_id"`
	Identifiers map[string][]gcr.IdentView `json:"identifiers"`
	MergedFrom  []string                   `json:"merged_from"`
	Links       []Link                     `json:"links"`
	// Splits are the splits (unmerges) the profile, or a profile merged
	// into it, took part in, in log order (split.go).
	Splits []SplitInfo `json:"splits"`
}

// Explain returns the identity of the person ref names: identifiers, and
// for each merge that built the profile, what caused it, in log order.
func (s *Service) Explain(ref string) (Explanation, error) {
	var out Explanation
	err := s.deps.State.Read(func(r store.Reader, sm *projections.StateMachine) error {
		v, err := s.deps.Profiles.ViewAt(r, sm, ref)
		if err != nil {
			return err
		}
		u, err := ulid.ParseStrict(v.ProfileID)
		if err != nil {
			return fmt.Errorf("matching: explain: profile id %q: %w", v.ProfileID, err)
		}
		out = Explanation{ProfileID: v.ProfileID, Identifiers: v.Identifiers, MergedFrom: v.MergedFrom, Links: []Link{}}
		if out.MergedFrom == nil {
			out.MergedFrom = []string{}
		}
		from, err := sm.Keychain().MergedFrom(r, u[:])
		if err != nil {
			return err
		}
		var recs []projections.MergeRecord
		for _, p := range append([][]byte{u[:]}, from...) {
			ms, err := projections.Merges(r, p)
			if err != nil {
				return err
			}
			recs = append(recs, ms...)
		}
		slices.SortStableFunc(recs, func(a, b projections.MergeRecord) int { return cmp.Compare(a.Seq, b.Seq) })
		for i := range recs {
			m := &recs[i]
			l := Link{From: base.ULIDString(m.From), Into: base.ULIDString(m.Into), Time: time.UnixMilli(m.Time).UTC(), Seq: m.Seq}
			if len(m.Match) > 0 {
				l.Cause = "probabilistic"
				mr, err := projections.GetMatch(r, m.Match)
				if err != nil {
					return err
				}
				rv := ReviewOf(&mr)
				l.Match = &rv
			} else {
				l.Cause, l.EventID, l.IdentifierType = "event", base.ULIDString(m.EventID), m.Type
			}
			out.Links = append(out.Links, l)
		}
		out.Splits, err = splitsOf(r, append([][]byte{u[:]}, from...))
		return err
	})
	return out, err
}
