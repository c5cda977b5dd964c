package gcr

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/aurumcdp/aurum/event"
	"github.com/aurumcdp/aurum/projections/features"
	"github.com/aurumcdp/aurum/store"
)

// randEvents returns n events with distinct ids, colliding times, shared
// identifiers and traits, and revenue in every accepted and rejected form.
func randEvents(r *rand.Rand, n int) []addStep {
	names := []string{"Order Completed", "Viewed", "Refund"}
	kinds := []event.Kind{event.Track, event.Track, event.Identify, event.Page}
	revs := []any{10, "10.50", 1e-7, "abc", 0.1, "-3.333333", nil, int8(-2), "1e20"}
	keys := [][]byte{testKey, bytes.Repeat([]byte{0x33}, 16)}
	steps := make([]addStep, n)
	ids := r.Perm(250)
	for i := range steps {
		id := make([]byte, 16)
		id[0], id[15] = byte(ids[i]%7), byte(ids[i]) // event ids not in time order
		rec := &event.Record{
			ID: id, Kind: kinds[r.IntN(len(kinds))], Time: int64(r.IntN(20)) - 5,
			Source: []string{"web", "ios", ""}[r.IntN(3)], Channel: []string{"web", "mobile"}[r.IntN(2)],
			DeviceType: []string{"", "ios", "android"}[r.IntN(3)], Key: keys[r.IntN(2)],
		}
		if rec.Kind == event.Track {
			rec.Event = names[r.IntN(len(names))]
			rec.Properties = map[string]any{}
			if v := revs[r.IntN(len(revs))]; v != nil {
				rec.Properties[[]string{"revenue", "total"}[r.IntN(2)]] = v
			}
			if r.IntN(2) == 0 {
				rec.Properties["category"] = []string{"shoes", "hats"}[r.IntN(2)]
				rec.Properties["product_id"] = fmt.Sprint("p", r.IntN(5))
			}
		}
		for range r.IntN(3) {
			if rec.Traits == nil {
				rec.Traits = map[string][]byte{}
			}
			rec.Traits[[]string{"name", "plan", "city"}[r.IntN(3)]] = []byte{byte(r.IntN(256)), byte(i)}
		}
		for range r.IntN(3) {
			if rec.Consent == nil {
				rec.Consent = map[string]bool{}
			}
			rec.Consent[event.ConsentChannels[r.IntN(len(event.ConsentChannels))]] = r.IntN(2) == 0
		}
		var owned []event.IDRef
		for range r.IntN(3) {
			owned = append(owned, ref([]string{"email", "user_id"}[r.IntN(2)], byte(r.IntN(4)), []byte{byte(r.IntN(256)), byte(i)}))
		}
		owned = slices.CompactFunc(owned, func(a, b event.IDRef) bool { return a.Type == b.Type && bytes.Equal(a.Hash, b.Hash) })
		steps[i] = addStep{rec: rec, owned: owned}
	}
	return steps
}

// runScenario spreads steps over profiles pid(0..k), every profile getting at
// least one event, and interleaves adds, flushes (with fresh Txns) and merges
// in random order until only pid(0) is left. A profile is merged away only
// after its last event. It returns the store.
func runScenario(t *testing.T, p *Projection, r *rand.Rand, steps []addStep, k int) *store.Mem {
	t.Helper()
	mem := store.NewMem()
	queues := make([][]addStep, k+1)
	for i, j := range r.Perm(len(steps)) {
		q := i % (k + 1) // round-robin first, so no profile is empty
		if i > k {
			q = r.IntN(k + 1)
		}
		queues[q] = append(queues[q], steps[j])
	}
	live := make([]int, k+1)
	for i := range live {
		live[i] = i
	}
	tx := p.Begin(mem)
	for len(live) > 1 || len(queues[0]) > 0 {
		if r.IntN(5) == 0 {
			mustFlush(t, tx)
			if r.IntN(2) == 0 {
				tx = p.Begin(mem)
			}
		}
		var done []int // live, not pid(0), no events left
		for _, q := range live {
			if q != 0 && len(queues[q]) == 0 {
				done = append(done, q)
			}
		}
		if len(done) > 0 && (r.IntN(3) == 0 || len(done) == len(live)-1 && len(queues[0]) == 0) {
			from := done[r.IntN(len(done))]
			others := slices.DeleteFunc(slices.Clone(live), func(q int) bool { return q == from })
			into := others[r.IntN(len(others))]
			if err := tx.Merge(pid(byte(from)), pid(byte(into))); err != nil {
				t.Fatal(err)
			}
			live = others
			continue
		}
		var busy []int
		for _, q := range live {
			if len(queues[q]) > 0 {
				busy = append(busy, q)
			}
		}
		if len(busy) == 0 {
			continue
		}
		q := busy[r.IntN(len(busy))]
		s := queues[q][0]
		queues[q] = queues[q][1:]
		mustAdd(t, tx, pid(byte(q)), s.rec, s.owned...)
	}
	mustFlush(t, tx)
	return mem
}

// TestLattice checks that the GCR does not depend on event order, on how
// events were spread over profiles, on merge order or on Txn boundaries: the
// survivor's stored bytes are identical across scenarios, equal to a single
// profile that received every event (apart from MergedFrom), and Events
// returns the same history.
func TestLattice(t *testing.T) {
	for seed := range uint64(30) {
		t.Run(fmt.Sprint(seed), func(t *testing.T) {
			r := rand.New(rand.NewPCG(seed, 0xa11ce))
			p := New(&Options{Partitions: 4})
			steps := randEvents(r, 40+r.IntN(40))
			k := 1 + r.IntN(6)

			// Reference: every event into pid(0), in a random order.
			ref := store.NewMem()
			tx := p.Begin(ref)
			for _, i := range r.Perm(len(steps)) {
				mustAdd(t, tx, pid(0), steps[i].rec, steps[i].owned...)
			}
			mustFlush(t, tx)
			refProf := mustGet(t, p, ref, pid(0))
			refEvents, err := p.Events(ref, refProf, 1000)
			if err != nil {
				t.Fatal(err)
			}
			if len(refEvents) != len(steps) {
				t.Fatalf("reference has %d events, want %d", len(refEvents), len(steps))
			}

			var want []byte
			for run := range 3 {
				mem := runScenario(t, p, r, steps, k)
				prof := mustGet(t, p, mem, pid(0))
				stored := mustEncodeSansFeatures(t, prof)
				if want == nil {
					want = stored
				} else if !bytes.Equal(stored, want) {
					t.Fatalf("run %d: survivor bytes differ", run)
				}
				if len(prof.MergedFrom) != k {
					t.Fatalf("run %d: merged from %d profiles, want %d", run, len(prof.MergedFrom), k)
				}
				for q := 1; q <= k; q++ {
					if _, err := p.Get(mem, pid(byte(q))); err == nil {
						t.Fatalf("run %d: merged profile %d still stored", run, q)
					}
				}
				events, err := p.Events(mem, prof, 1000)
				if err != nil {
					t.Fatal(err)
				}
				if len(events) != len(refEvents) {
					t.Fatalf("run %d: %d events, want %d", run, len(events), len(refEvents))
				}
				for i := range events {
					if !bytes.Equal(events[i].ID, refEvents[i].ID) {
						t.Fatalf("run %d: event %d is %x, want %x", run, i, events[i].ID, refEvents[i].ID)
					}
				}
				prof.MergedFrom = nil
				if !features.Equal(prof.Features, refProf.Features, 1e-12) {
					t.Fatalf("run %d: features differ from the single-profile reference:\n%+v\n%+v", run, prof.Features, refProf.Features)
				}
				if !bytes.Equal(mustEncodeSansFeatures(t, prof), mustEncodeSansFeatures(t, refProf)) {
					t.Fatalf("run %d: survivor differs from the single-profile reference:\n%+v\n%+v", run, prof, refProf)
				}
			}
		})
	}
}

// TestJoinLaws checks commutativity, associativity and idempotence of
// MergedFrom handling directly on Profiles with one shared id.
func TestJoinLaws(t *testing.T) {
	for seed := range uint64(50) {
		r := rand.New(rand.NewPCG(seed, 7))
		steps := randEvents(r, 30)
		mk := func(part []addStep, merged ...byte) *Profile {
			p := &Profile{ID: pid(0)}
			for _, s := range part {
				p.add(s.rec, s.owned)
			}
			for _, m := range merged {
				p.join(&Profile{ID: pid(m)})
			}
			return p
		}
		clone := func(p *Profile) *Profile {
			c, err := decodeProfile(mustEncode(t, p))
			if err != nil {
				t.Fatal(err)
			}
			return c
		}
		join := func(a, b *Profile) *Profile { c := clone(a); c.join(b); return c }
		a, b, c := mk(steps[:10], 1, 2), mk(steps[10:20], 2, 3), mk(steps[20:], 4)
		same := func(x, y *Profile) bool {
			return bytes.Equal(mustEncodeSansFeatures(t, x), mustEncodeSansFeatures(t, y)) &&
				features.Equal(x.Features, y.Features, 1e-12)
		}
		if !same(join(a, b), join(b, a)) {
			t.Fatalf("seed %d: join not commutative", seed)
		}
		l := join(join(a, b), c)
		if !same(l, join(a, join(b, c))) {
			t.Fatalf("seed %d: join not associative", seed)
		}
		whole := mk(steps, 1, 2, 3, 4)
		if !same(l, whole) {
			t.Fatalf("seed %d: join of parts differs from adding everything", seed)
		}
		if l.Features.Empty() {
			t.Fatalf("seed %d: no features", seed)
		}
		if err := join(join(a, b), c).Check(); err != nil {
			t.Fatal(err)
		}
	}
}
