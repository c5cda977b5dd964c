package projections

import (
	"bytes"
	"errors"
	"strings"
	"testing"

	"github.com/aurumcdp/aurum/event"
	"github.com/aurumcdp/aurum/projections/gcr"
	"github.com/aurumcdp/aurum/projections/identity"
	"github.com/aurumcdp/aurum/projections/match"
	"github.com/aurumcdp/aurum/store"
	"github.com/oklog/ulid/v2"
	"github.com/vmihailenco/msgpack/v5"
)

// matchRun is a log applied entry by entry, kept for a replay.
type matchRun struct {
	t   *testing.T
	sm  *StateMachine
	s   *store.Mem
	log []entry
	n   int // ids issued
}

func newMatchRun(t *testing.T) *matchRun {
	r := &matchRun{t: t, sm: New(Options{Partitions: 4, Open: openIdentity, ApplyWorkers: 4}), s: store.NewMem()}
	t.Cleanup(func() {
		if !t.Failed() {
			replaySequential(t, Options{Partitions: 4, Open: openIdentity}, r.log, r.s)
		}
	})
	cfg := identity.DefaultConfig()
	cfg.Probabilistic = &match.Config{
		Fields:   map[string]match.Comparison{"surname": match.Name, "postcode": match.Exact},
		Blocking: [][]string{{"surname"}},
	}
	data, err := EncodeIdentityConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	r.apply(&Control{Kind: ControlIdentityConfig, Config: data, Time: 1})
	return r
}

func (r *matchRun) id() []byte {
	r.n++
	u := ulid.MustNew(uint64(1_700_000_000_000+r.n), bytes.NewReader(bytes.Repeat([]byte{byte(r.n)}, 16)))
	return u[:]
}

func (r *matchRun) apply(v any) Result {
	r.t.Helper()
	data, err := marshalEntry(v)
	if err != nil {
		r.t.Fatal(err)
	}
	subject := SubjectControl
	if _, ok := v.(*event.Batch); ok {
		subject = SubjectEvents
	}
	e := entry{seq: uint64(len(r.log) + 1), subject: subject, data: data}
	r.log = append(r.log, e)
	res, err := r.sm.Apply(r.s, e.seq, e.subject, e.data)
	if err != nil {
		r.t.Fatalf("apply %d: %v", e.seq, err)
	}
	return res
}

// personWith ingests one identify event with traits.
func (r *matchRun) personWith(traits map[string]any, ids ...string) ([]byte, Result) {
	r.t.Helper()
	var refs []event.IDRef
	for _, s := range ids {
		typ, v, _ := strings.Cut(s, ":")
		refs = append(refs, event.IDRef{Type: typ, Hash: testHash(typ, v)})
	}
	at := int64(1_700_000_000_000 + r.n)
	rec := event.Record{ID: r.id(), Source: "web", Kind: event.Identify, Time: at, Received: at, Key: refs[0].Hash, IDs: refs,
		Traits: map[string][]byte{}}
	for k, v := range traits {
		b, _ := msgpack.Marshal(v)
		rec.Traits[k] = b
	}
	res := r.apply(&event.Batch{ID: r.id(), Received: at, Records: []event.Record{rec}})
	return r.root(refs[0].Type, refs[0].Hash), res
}

// person ingests one event with the identifiers (type:value) and returns
// the profile it went to.
func (r *matchRun) person(ids ...string) []byte {
	r.t.Helper()
	var refs []event.IDRef
	for _, s := range ids {
		typ, v, _ := strings.Cut(s, ":")
		refs = append(refs, event.IDRef{Type: typ, Hash: testHash(typ, v)})
	}
	at := int64(1_700_000_000_000 + r.n)
	rec := event.Record{ID: r.id(), Source: "web", Kind: event.Track, Event: "Viewed", Time: at, Received: at, Key: refs[0].Hash, IDs: refs}
	r.apply(&event.Batch{ID: r.id(), Received: at, Records: []event.Record{rec}})
	return r.root(refs[0].Type, refs[0].Hash)
}

func (r *matchRun) root(typ string, hash []byte) []byte {
	r.t.Helper()
	p, err := r.sm.Keychain().Lookup(r.s, typ, hash)
	if err != nil {
		r.t.Fatalf("lookup %s: %v", typ, err)
	}
	return p
}

func (r *matchRun) rootOf(p []byte) []byte {
	r.t.Helper()
	root, err := r.sm.Keychain().Root(r.s, p)
	if err != nil {
		r.t.Fatalf("root of %x: %v", p, err)
	}
	return root
}

// propose appends an identity.match record for (a, b) at probability p and
// returns what Apply made of it.
func (r *matchRun) propose(a, b []byte, p float64) MatchRecord {
	r.t.Helper()
	id := r.id()
	r.apply(&Control{Kind: ControlIdentityMatch, Time: int64(1_700_000_100_000 + r.n), Match: &MatchRecord{
		ID: id, A: a, B: b, Probability: p, Weight: 12.5, ModelVersion: "v1", Decision: DecisionMerge,
		Contributions: []match.Contribution{{Field: "postcode", Level: "exact", Weight: 8}, {Field: "surname", Level: "jw_0.92", Weight: 4.5}},
	}})
	m, err := GetMatch(r.s, id)
	if err != nil {
		r.t.Fatalf("match record: %v", err)
	}
	return m
}

func (r *matchRun) review(id []byte, decision string) MatchRecord {
	r.t.Helper()
	r.apply(&Control{Kind: ControlIdentityReview, Time: int64(1_700_000_200_000 + r.n), Review: &ReviewDecision{Match: id, Decision: decision, Reviewer: "ann"}})
	m, err := GetMatch(r.s, id)
	if err != nil {
		r.t.Fatal(err)
	}
	return m
}

func (r *matchRun) pending() []string {
	r.t.Helper()
	rs, err := Reviews(r.s, 0)
	if err != nil {
		r.t.Fatal(err)
	}
	var out []string
	for _, m := range rs {
		out = append(out, ulidString(m.ID))
	}
	return out
}

// TestMatchHardConstraintsBeatProbability: two different user_ids never
// merge, an erased profile is never merged into, whatever the probability.
func TestMatchHardConstraintsBeatProbability(t *testing.T) {
	r := newMatchRun(t)
	a := r.person("user_id:u1", "email:a@x.org")
	b := r.person("user_id:u2", "email:b@x.org")
	m := r.propose(a, b, 0.999999)
	if m.Status != MatchRefused || !strings.Contains(m.Reason, "user_id") {
		t.Fatalf("two user_ids: status %q reason %q, want refused by the user_id limit", m.Status, m.Reason)
	}
	if bytes.Equal(r.rootOf(a), r.rootOf(b)) {
		t.Fatal("two user_ids merged")
	}
	// A reviewer cannot override a limit either.
	r2 := newMatchRun(t)
	a2 := r2.person("user_id:u1")
	b2 := r2.person("user_id:u2")
	q := r2.propose(a2, b2, 0.9)
	if q.Status != MatchRefused {
		t.Fatalf("queued despite the limit: %+v", q)
	}

	// An erased profile: the match is refused, nothing is recreated.
	c := r.person("crm_id:c1")
	d := r.person("crm_id:c2")
	r.apply(&Control{Kind: ControlErasureRequest, Time: 1_700_000_050_000, Erasure: ErasureRequest{ID: r.id(), Type: event.ProfileID, Hash: d}})
	m = r.propose(c, d, 0.9999)
	if m.Status != MatchRefused || !strings.Contains(m.Reason, "erased") {
		t.Fatalf("erased profile: status %q reason %q", m.Status, m.Reason)
	}
	if _, err := r.sm.Keychain().Root(r.s, d); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("erased profile back in the keychain: %v", err)
	}
	// The thresholds in effect decide, not the proposer: 0.5 is below review.
	e := r.person("crm_id:c3")
	m = r.propose(c, e, 0.5)
	if m.Status != MatchRefused || !strings.Contains(m.Reason, "below the review threshold") {
		t.Fatalf("low probability: %+v", m)
	}
}

func TestMatchMergeReviewReject(t *testing.T) {
	r := newMatchRun(t)
	p1 := r.person("crm_id:1")
	p2 := r.person("crm_id:2")
	p3 := r.person("crm_id:3")
	p4 := r.person("crm_id:4")
	p5 := r.person("crm_id:5")

	// Above auto_merge: merged at once, the older profile survives.
	m := r.propose(p2, p1, 0.995)
	if m.Status != MatchMerged || !bytes.Equal(m.Into, p1) || !bytes.Equal(r.rootOf(p2), p1) {
		t.Fatalf("auto merge: %+v", m)
	}
	ids, err := r.sm.Keychain().Identifiers(r.s, p1)
	if err != nil || len(ids) != 2 {
		t.Fatalf("identifiers after the merge: %v %v", ids, err)
	}
	if _, err := r.sm.GCR().Get(r.s, p2); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("merged-away GCR still there: %v", err)
	}
	mg, err := Merges(r.s, p1)
	if err != nil || len(mg) != 1 || !bytes.Equal(mg[0].Match, m.ID) || mg[0].Type != "probabilistic" {
		t.Fatalf("merge records: %+v %v", mg, err)
	}
	// The same match id again is no change.
	r.apply(&Control{Kind: ControlIdentityMatch, Time: 5, Match: &MatchRecord{ID: m.ID, A: p2, B: p1, Probability: 0.1, Decision: DecisionReview}})
	if again, err := GetMatch(r.s, m.ID); err != nil || again.Seq != m.Seq || again.Status != MatchMerged {
		t.Fatalf("match id applied twice: %+v %v", again, err)
	}

	// Between review and auto_merge: queued, nothing merged.
	q := r.propose(p3, p4, 0.9)
	if q.Status != MatchPending || bytes.Equal(r.rootOf(p3), r.rootOf(p4)) {
		t.Fatalf("review: %+v", q)
	}
	if dup := r.propose(p4, p3, 0.95); dup.Status != MatchRefused || !strings.Contains(dup.Reason, "awaits review") {
		t.Fatalf("second review of one pair: %+v", dup)
	}
	if got := r.pending(); len(got) != 1 || got[0] != ulidString(q.ID) {
		t.Fatalf("queue = %v", got)
	}
	// Rejected: out of the queue, and never merged automatically again,
	// even at a probability of 1 and after one side merged with another.
	q = r.review(q.ID, DecisionReject)
	if q.Status != MatchRejected || q.Reviewer != "ann" || len(r.pending()) != 0 {
		t.Fatalf("reject: %+v, queue %v", q, r.pending())
	}
	if m := r.propose(p4, p3, 1); m.Status != MatchRefused || !strings.Contains(m.Reason, "rejected") {
		t.Fatalf("re-proposed rejected pair: %+v", m)
	}
	if m := r.propose(p5, p4, 0.999); m.Status != MatchMerged {
		t.Fatalf("p5+p4: %+v", m)
	}
	if m := r.propose(p5, p3, 1); m.Status != MatchRefused || bytes.Equal(r.rootOf(p3), r.rootOf(p4)) {
		t.Fatalf("rejected pair merged through a third profile: %+v", m)
	}
	// A second decision on a decided match is no change.
	if q2 := r.review(q.ID, DecisionMerge); q2.Status != MatchRejected {
		t.Fatalf("decided twice: %+v", q2)
	}

	// Accepted: merged by the reviewer.
	p6 := r.person("crm_id:6")
	q = r.propose(p6, p1, 0.85)
	if q.Status != MatchPending {
		t.Fatalf("review: %+v", q)
	}
	q = r.review(q.ID, DecisionMerge)
	if q.Status != MatchMerged || q.Review != DecisionMerge || !bytes.Equal(r.rootOf(p6), r.rootOf(p1)) {
		t.Fatalf("accept: %+v", q)
	}
	if err := r.sm.Keychain().Check(r.s); err != nil {
		t.Fatal(err)
	}

	// A replay of the log gives the same state.
	s2 := store.NewMem()
	applyAll(t, newSM(), s2, r.log)
	if a, b := digest(t, r.s), digest(t, s2); !bytes.Equal(a, b) {
		t.Fatalf("replay digest %x != %x", b, a)
	}
}

// TestBlockIndex: the state machine keeps the block index of the matching
// traits; candidates come from shared blocks only; a merged-away profile
// leaves the index; unchanged traits are no new work.
func TestBlockIndex(t *testing.T) {
	r := newMatchRun(t)
	cfg := r.sm.Keychain().Config().Probabilistic
	a, res := r.personWith(map[string]any{"surname": "Smith", "postcode": "2600"}, "crm_id:1")
	if len(res.MatchProfiles) != 1 || !bytes.Equal(res.MatchProfiles[0], a) {
		t.Fatalf("work after a new profile = %x", res.MatchProfiles)
	}
	b, _ := r.personWith(map[string]any{"surname": "smith ", "postcode": "2601"}, "crm_id:2")
	c, _ := r.personWith(map[string]any{"surname": "Jones", "postcode": "2600"}, "crm_id:3")
	// The same traits again: no work.
	if _, res := r.personWith(map[string]any{"surname": "Smith"}, "crm_id:1"); len(res.MatchProfiles) != 0 {
		t.Fatalf("unchanged traits gave work %x", res.MatchProfiles)
	}
	recB, err := r.sm.MatchRecordOf(mustGCR(t, r, b), cfg)
	if err != nil || recB["surname"] != "smith " || recB["postcode"] != "2601" {
		t.Fatalf("match record of b = %v, %v", recB, err)
	}
	got, err := r.sm.BlockCandidates(r.s, cfg, recB, b)
	if err != nil || len(got) != 1 || !bytes.Equal(got[0], a) {
		t.Fatalf("candidates of b = %x, %v (want a only; c has another surname)", got, err)
	}
	// b merged into a: b leaves the index, a stays.
	if m := r.propose(b, a, 0.999); m.Status != MatchMerged {
		t.Fatalf("merge: %+v", m)
	}
	got, err = r.sm.BlockCandidates(r.s, cfg, recB, nil)
	if err != nil || len(got) != 1 || !bytes.Equal(got[0], a) {
		t.Fatalf("candidates after the merge = %x, %v", got, err)
	}
	_ = c
	s2 := store.NewMem()
	applyAll(t, newSM(), s2, r.log)
	if x, y := digest(t, r.s), digest(t, s2); !bytes.Equal(x, y) {
		t.Fatal("replay digest differs")
	}
}

func mustGCR(t *testing.T, r *matchRun, p []byte) *gcr.Profile {
	t.Helper()
	g, err := r.sm.GCR().Get(r.s, p)
	if err != nil {
		t.Fatal(err)
	}
	return g
}
