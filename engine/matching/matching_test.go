package matching

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/aurumcdp/aurum/event"
	"github.com/aurumcdp/aurum/internal/check"
	"github.com/aurumcdp/aurum/projections"
	"github.com/aurumcdp/aurum/projections/identity"
	"github.com/aurumcdp/aurum/projections/match"
	"github.com/aurumcdp/aurum/store"
	"github.com/oklog/ulid/v2"
	"github.com/vmihailenco/msgpack/v5"
)

// node is a log and a state machine on an in-memory store, applied
// synchronously: the State, Control and Applied of a Service. Its log is
// kept for a replay.
type node struct {
	t   *testing.T
	mu  sync.Mutex
	s   *store.Mem
	sm  *projections.StateMachine
	log []entry
	ids int
}

type entry struct {
	subject string
	data    []byte
}

// openIdentity: trait values are stored as their plaintext (msgpack).
func openIdentity(_, sealed []byte) ([]byte, error) { return sealed, nil }

func newNode(t *testing.T) *node {
	return &node{t: t, s: store.NewMem(), sm: projections.New(projections.Options{Partitions: 4, Open: openIdentity})}
}

func (n *node) Read(fn func(r store.Reader, sm *projections.StateMachine) error) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	return fn(n.s, n.sm)
}

func (n *node) apply(subject string, data []byte) (uint64, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.log = append(n.log, entry{subject, data})
	seq := uint64(len(n.log))
	if _, err := n.sm.Apply(n.s, seq, subject, data); err != nil {
		return 0, fmt.Errorf("apply %d: %w", seq, err)
	}
	return seq, nil
}

func (n *node) AppendControl(_ context.Context, c projections.Control) (uint64, error) {
	c.Time = 1_700_000_000_000 + int64(len(n.log))
	data, err := msgpack.Marshal(&c)
	if err != nil {
		return 0, err
	}
	return n.apply(projections.SubjectControl, data)
}

func (n *node) WaitApplied(context.Context, uint64) error { return nil } // applied on append

func (n *node) newID() []byte {
	n.mu.Lock()
	n.ids++
	i := n.ids
	n.mu.Unlock()
	u := ulid.MustNew(uint64(1_700_000_000_000+i), bytes.NewReader(bytes.Repeat([]byte{byte(i), byte(i >> 8)}, 8)))
	return u[:]
}

func hashOf(typ, v string) []byte {
	h := sha256.Sum256([]byte(typ + ":" + v))
	return h[:16]
}

// identify applies one identify event of crm_id id with traits.
func (n *node) identify(id string, traits map[string]string) {
	n.t.Helper()
	at := int64(1_700_000_000_000 + n.ids)
	h := hashOf("crm_id", id)
	rec := event.Record{ID: n.newID(), Source: "crm", Kind: event.Identify, Time: at, Received: at, Key: h,
		IDs: []event.IDRef{{Type: "crm_id", Hash: h}}, Traits: map[string][]byte{}}
	for k, v := range traits {
		b, _ := msgpack.Marshal(v)
		rec.Traits[k] = b
	}
	if _, err := n.apply(projections.SubjectEvents, event.EncodeBatch(&event.Batch{ID: n.newID(), Received: at, Records: []event.Record{rec}})); err != nil {
		n.t.Fatal(err)
	}
}

func (n *node) setConfig(probabilistic bool) {
	n.t.Helper()
	cfg := identity.DefaultConfig()
	cfg.Limits["crm_id"] = 100
	if probabilistic {
		cfg.Probabilistic = &match.Config{
			Fields: map[string]match.Comparison{"given_name": match.Name, "surname": match.Name,
				"postcode": match.Exact, "date_of_birth": match.Date},
			Blocking: [][]string{{"surname"}, {"given_name", "date_of_birth"}, {"postcode"}},
		}
	}
	data, err := projections.EncodeIdentityConfig(cfg)
	if err != nil {
		n.t.Fatal(err)
	}
	if _, err := n.AppendControl(context.Background(), projections.Control{Kind: projections.ControlIdentityConfig, Config: data}); err != nil {
		n.t.Fatal(err)
	}
}

func (n *node) root(id string) []byte {
	n.t.Helper()
	var root []byte
	if err := n.Read(func(r store.Reader, sm *projections.StateMachine) error {
		p, err := sm.Keychain().Lookup(r, "crm_id", hashOf("crm_id", id))
		if err != nil {
			return err
		}
		root, err = sm.Keychain().Root(r, p)
		return err
	}); err != nil {
		n.t.Fatalf("root of %s: %v", id, err)
	}
	return root
}

// queued is the matcher's work in the state: queue entries and whether a
// pass is in progress.
func (n *node) queued() (int, bool) {
	n.t.Helper()
	var q []projections.QueuedMatch
	var pass bool
	if err := n.Read(func(r store.Reader, _ *projections.StateMachine) error {
		var err error
		if q, err = projections.QueuedMatches(r, nil, 1_000_000); err != nil {
			return err
		}
		_, pass, err = projections.PassInProgress(r)
		return err
	}); err != nil {
		n.t.Fatal(err)
	}
	return len(q), pass
}

func (n *node) indexed() int {
	n.t.Helper()
	var ps [][]byte
	if err := n.Read(func(r store.Reader, _ *projections.StateMachine) error {
		var err error
		ps, err = projections.BlockProfiles(r, nil, 1_000_000)
		return err
	}); err != nil {
		n.t.Fatal(err)
	}
	return len(ps)
}

func (n *node) digest() []byte {
	n.t.Helper()
	var d []byte
	if err := n.Read(func(r store.Reader, _ *projections.StateMachine) error {
		var err error
		d, err = projections.Digest(r)
		return err
	}); err != nil {
		n.t.Fatal(err)
	}
	return d
}

// replayDigest applies the node's log to a fresh store.
func (n *node) replayDigest() []byte {
	n.t.Helper()
	s, sm := store.NewMem(), projections.New(projections.Options{Partitions: 4, Open: openIdentity})
	n.mu.Lock()
	log := append([]entry(nil), n.log...)
	n.mu.Unlock()
	for i, e := range log {
		if _, err := sm.Apply(s, uint64(i+1), e.subject, e.data); err != nil {
			n.t.Fatal(err)
		}
	}
	d, err := projections.Digest(s)
	if err != nil {
		n.t.Fatal(err)
	}
	return d
}

// service is a running matcher on n; stop ends it (a crash, as far as the
// matcher's work is concerned: nothing of it is kept but the state).
func (n *node) service(step int) (*Service, func()) {
	svc := New(Options{NewID: n.newID, PassStep: step, ReportEvery: 50 * time.Millisecond, Seed: 1},
		Deps{State: n, Control: n, Applied: n})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- svc.Run(ctx) }()
	return svc, func() {
		cancel()
		if err := <-done; !errors.Is(err, context.Canceled) {
			n.t.Errorf("Run: %v", err)
		}
	}
}

// people are distinct persons and dups of the first few of them, each
// under a crm_id of its own with one typo in the surname.
type person struct{ given, surname, postcode, dob string }

func people(n int) []person {
	rng := rand.New(rand.NewPCG(7, 7))
	syl := []string{"ka", "ro", "mi", "ten", "vol", "sar", "bel", "dor", "fin", "gul", "har", "lin", "mos", "nor", "pet", "quin"}
	given := []string{"james", "mary", "john", "patricia", "robert", "jennifer", "michael", "linda", "william", "elizabeth",
		"david", "barbara", "richard", "susan", "joseph", "jessica", "thomas", "sarah", "charles", "karen"}
	seen := map[string]bool{}
	var out []person
	for len(out) < n {
		p := person{given[rng.IntN(len(given))], syl[rng.IntN(len(syl))] + syl[rng.IntN(len(syl))] + syl[rng.IntN(len(syl))],
			fmt.Sprintf("%04d", 2000+rng.IntN(3000)), fmt.Sprintf("19%02d%02d%02d", 40+rng.IntN(60), 1+rng.IntN(12), 1+rng.IntN(28))}
		if !seen[p.given+p.surname] {
			seen[p.given+p.surname] = true
			out = append(out, p)
		}
	}
	return out
}

func (p person) traits(typo bool) map[string]string {
	s := p.surname
	if typo { // one letter changed, not the first
		b := []byte(s)
		b[2] = 'z' - (b[2] - 'a')
		s = string(b)
	}
	return map[string]string{"given_name": p.given, "surname": s, "postcode": p.postcode, "date_of_birth": p.dob}
}

const (
	nPeople = 160
	nDups   = 16
)

func (n *node) loadPeople(ps []person) {
	for i, p := range ps {
		n.identify(fmt.Sprint("p", i), p.traits(false))
	}
	for i := range nDups {
		n.identify(fmt.Sprint("d", i), ps[i].traits(true))
	}
}

func (n *node) waitIdle(svc *Service) {
	n.t.Helper()
	check.For(n.t, 60*time.Second, 5*time.Millisecond, func() error {
		if q, pass := n.queued(); !svc.Idle() || q > 0 || pass {
			return fmt.Errorf("matcher busy: queued %d, pass %v, %+v", q, pass, svc.Stats())
		}
		return nil
	})
}

func (n *node) merged(ps []person) int {
	found := 0
	for i := range nDups {
		if bytes.Equal(n.root(fmt.Sprint("d", i)), n.root(fmt.Sprint("p", i))) {
			found++
		}
	}
	owner := map[string]int{}
	for i := range ps {
		r := string(n.root(fmt.Sprint("p", i)))
		if j, ok := owner[r]; ok {
			n.t.Errorf("people %d and %d merged", j, i)
		}
		owner[r] = i
	}
	return found
}

// TestMatcherWorkSurvivesRestart: the work the matcher has not done when it
// stops (a crash: nothing of it survives but the state) is done by the
// next matcher: the pass a new model started, then a duplicate that
// arrived while no matcher ran. The queue ends empty and a replay of the
// log gives the same state.
func TestMatcherWorkSurvivesRestart(t *testing.T) {
	n := newNode(t)
	n.setConfig(true)
	ps := people(nPeople)
	n.loadPeople(ps)
	if q, _ := n.queued(); q != 0 || n.indexed() != nPeople+nDups {
		t.Fatalf("before a model: queued %d, indexed %d; want 0, %d", q, n.indexed(), nPeople+nDups)
	}

	// Trained, then the matcher "crashes" before it does anything: the
	// model's pass is in the state.
	trainer := New(Options{NewID: n.newID, Seed: 1}, Deps{State: n, Control: n, Applied: n})
	if _, err := trainer.Train(context.Background(), TrainRequest{}); err != nil {
		t.Fatal(err)
	}
	if _, pass := n.queued(); !pass {
		t.Fatal("no pass after the model came into effect")
	}
	svc, stop := n.service(50) // several steps
	n.waitIdle(svc)
	stop()
	st := svc.Stats()
	if st.Steps < 4 || st.Matched < nPeople {
		t.Fatalf("pass: %+v; want ≥ 4 steps of 50 and every profile matched", st)
	}
	found := n.merged(ps)
	t.Logf("after the pass: %d of %d duplicates merged; %+v", found, nDups, st)
	if found < nDups*8/10 {
		t.Fatalf("only %d of %d duplicates merged", found, nDups)
	}

	// A duplicate arrives while no matcher runs: queued in the state.
	p := ps[nPeople-1]
	n.identify("late", p.traits(true))
	if q, pass := n.queued(); q != 1 || pass {
		t.Fatalf("late duplicate: queued %d, pass %v; want 1, false", q, pass)
	}
	if bytes.Equal(n.root("late"), n.root(fmt.Sprint("p", nPeople-1))) {
		t.Fatal("late duplicate merged without a matcher")
	}
	svc2, stop2 := n.service(0)
	n.waitIdle(svc2)
	stop2()
	if !bytes.Equal(n.root("late"), n.root(fmt.Sprint("p", nPeople-1))) {
		t.Fatalf("late duplicate not merged after the restart: %+v", svc2.Stats())
	}
	// The queued duplicate, proposed and merged, and then the merged root
	// (its matching values changed), with nothing left to propose.
	if st := svc2.Stats(); st.Matched != 2 || st.Proposed != 1 || st.Reports < 1 {
		t.Fatalf("second matcher: %+v; want the queued profile matched, one proposal, the merged root matched again, reported", st)
	}
	if d, r := n.digest(), n.replayDigest(); !bytes.Equal(d, r) {
		t.Fatalf("replay digest %x != %x", r, d)
	}
}

// TestBackfillWhenMatchingIsEnabled: profiles that existed before the
// probabilistic section was enabled are indexed by the pass the config
// change starts (without a model: indexed, not queued), a config that does
// not change the fields or blocking starts no pass, and after training
// they are matched.
func TestBackfillWhenMatchingIsEnabled(t *testing.T) {
	n := newNode(t)
	n.setConfig(false)
	ps := people(nPeople)
	n.loadPeople(ps)
	if got := n.indexed(); got != 0 {
		t.Fatalf("indexed %d before matching was enabled", got)
	}
	n.setConfig(true)
	if q, pass := n.queued(); q != 0 || !pass {
		t.Fatalf("after enabling: queued %d, pass %v; want 0, true", q, pass)
	}
	svc, stop := n.service(64)
	defer stop()
	n.waitIdle(svc)
	if got := n.indexed(); got != nPeople+nDups {
		t.Fatalf("indexed %d after the backfill, want %d", got, nPeople+nDups)
	}
	if st := svc.Stats(); st.Steps != (nPeople+nDups)/64+1 || st.Matched != 0 {
		t.Fatalf("backfill: %+v; want %d steps, nothing matched without a model", st, (nPeople+nDups)/64+1)
	}
	n.setConfig(true) // the same fields and blocking again (a restart publishes it)
	if _, pass := n.queued(); pass {
		t.Fatal("an unchanged config started a pass")
	}
	if _, err := svc.Train(context.Background(), TrainRequest{}); err != nil {
		t.Fatal(err)
	}
	n.waitIdle(svc)
	found := n.merged(ps)
	t.Logf("after training: %d of %d duplicates merged; %+v", found, nDups, svc.Stats())
	if found < nDups*8/10 {
		t.Fatalf("only %d of %d duplicates merged", found, nDups)
	}
}
