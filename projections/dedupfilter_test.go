package projections

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/aurumcdp/aurum/event"
	"github.com/aurumcdp/aurum/projections/audience"
	"github.com/aurumcdp/aurum/store"
)

// dedupScript generates a log of event batches of 1-6 records with
// duplicate message ids (within a batch, across batches, across sources,
// after the window expired), records without a message id, new people
// with several events in one batch (fresh profiles), record ids shared by
// two records of a batch, times at and before 0, float revenues (sums
// depend on the order of the events), aliases (merges), audience changes
// and ticks.
func dedupScript(rng *rand.Rand, n int) []entry {
	const hour = int64(3600 * 1000)
	now := int64(1767225600000) // 2026-01-01
	var out []entry
	var seq uint64
	add := func(subject string, v any) {
		data, err := marshalEntry(v)
		if err != nil {
			panic(err)
		}
		seq++
		out = append(out, entry{seq: seq, subject: subject, data: data})
	}
	var msgIDs []string
	people, rid := 0, 0
	for i := range 5 {
		add(SubjectControl, &Control{Kind: ControlAudiencePut, Audience: audience.Definition{
			Name: fmt.Sprint("a", i), Rule: indexRules[rng.IntN(len(indexRules))]}})
	}
	add(SubjectControl, &Control{Kind: ControlAudiencePut, Audience: audience.Definition{
		Name: "sum", Rule: `sum("Order Completed", "revenue") > 0.6 and sum("Order Completed", "revenue", "2d") < 0.7`}})
	for len(out) < n {
		now += rng.Int64N(4 * hour)
		switch r := rng.IntN(100); {
		case r < 5:
			add(SubjectControl, &Control{Kind: ControlTick, Time: now})
			continue
		case r < 8:
			add(SubjectControl, &Control{Kind: ControlAudiencePut, Audience: audience.Definition{
				Name: fmt.Sprint("a", rng.IntN(6)), Rule: indexRules[rng.IntN(len(indexRules))]}})
			continue
		}
		b := event.Batch{Received: now}
		for range 1 + rng.IntN(6) {
			rid++
			var user string
			if rng.IntN(3) == 0 || people == 0 {
				people++
				user = fmt.Sprint("u", people) // a new person
			} else {
				user = fmt.Sprint("u", 1+rng.IntN(people))
			}
			if len(b.Records) > 0 && rng.IntN(4) == 0 { // the same person again in the batch
				user = ""
			}
			ids := []event.IDRef{{Type: event.UserID, Hash: testHash(event.UserID, user)}}
			if user == "" {
				ids = b.Records[len(b.Records)-1].IDs
			}
			same := user == ""
			if !same && rng.IntN(10) == 0 { // alias: may merge two people
				ids = append(ids, event.IDRef{Type: event.AnonymousID, Hash: testHash(event.AnonymousID, fmt.Sprint("d", rng.IntN(6)))})
			}
			at := now - rng.Int64N(3*hour)
			if rng.IntN(20) == 0 {
				at = -rng.Int64N(hour) // before 1970: clamped in the event keys
			}
			mid := fmt.Sprint("m", rid)
			switch r := rng.IntN(100); {
			case r < 10 && len(msgIDs) > 0:
				mid = msgIDs[rng.IntN(len(msgIDs))] // seen before (maybe expired)
			case r < 15 && len(b.Records) > 0:
				mid = b.Records[rng.IntN(len(b.Records))].MessageID // within the batch
			case r < 20:
				mid = ""
			}
			if mid != "" {
				msgIDs = append(msgIDs, mid)
			}
			id := testHash("event", fmt.Sprint(rid))
			if same && rng.IntN(4) == 0 { // the keychain accepts it: no profile created
				prev := b.Records[len(b.Records)-1]
				id, at = prev.ID, prev.Time // one stored record for two
			}
			name := []string{"Order Completed", "Order Completed", "Product Viewed", "Page Opened", "Order Refunded"}[rng.IntN(5)]
			props := map[string]any{"revenue": []float64{0.1, 0.2, 0.3, 0.7, 1e16, 1}[rng.IntN(6)], "reason": "damaged", "coupon": "yes"}
			b.Records = append(b.Records, event.Record{ID: id, MessageID: mid, Source: []string{"web", "app"}[rng.IntN(2)],
				Kind: event.Track, Event: name, Time: at, Received: now, Key: ids[0].Hash, IDs: ids, Properties: props})
		}
		b.ID = b.Records[0].ID
		add(SubjectEvents, &b)
	}
	return out
}

func cloneMem(t *testing.T, s *store.Mem) *store.Mem {
	t.Helper()
	c := store.NewMem()
	if err := s.Scan(nil, []byte{0xff, 0xff, 0xff, 0xff}, false, func(k, v []byte) bool {
		_ = c.Set(bytes.Clone(k), bytes.Clone(v))
		return true
	}); err != nil {
		t.Fatal(err)
	}
	return c
}

// TestDedupFilterEquivalence applies varied logs with the dedup and
// keychain filters (of several sizes, down to a filter so small that it is
// rebuilt often and answers "maybe" for most keys), the fresh-history and
// fresh-profile shortcuts, and without any of them, and requires equal
// results and byte-identical stores after every entry. The state machine starts unloaded (as in engine.Replay: it builds
// its filter at its first Apply); on the way it is restarted (a new one,
// loaded) and made to apply entries to a copy of the store that is then
// thrown away (the filter keeps keys the store does not have), once with
// a reload after it (as engine's group.redo does) and once without.
func TestDedupFilterEquivalence(t *testing.T) {
	var spared, builds, fresh, dups, freshProfiles, kcSpared, kcBuilds, timerSkips int
	count := func(sm *StateMachine, spared, builds, fresh int) (int, int, int) {
		if sm.ddf != nil {
			spared, builds = spared+sm.ddf.spared, builds+sm.ddf.builds
		}
		if sm.kcf != nil {
			kcSpared, kcBuilds = kcSpared+sm.kcf.spared, kcBuilds+sm.kcf.builds
		}
		for _, p := range sm.partitions {
			fresh += p.fresh
			freshProfiles += p.freshProfiles
			timerSkips += p.timerSkips
		}
		return spared, builds, fresh
	}
	for seed := uint64(1); seed <= 3; seed++ {
		rng := rand.New(rand.NewPCG(seed, 7))
		base := Options{Partitions: 4, DedupWindow: 12 * 3600 * 1000, MaxPrunePerEntry: 1 + rng.IntN(3),
			Open: func(_, sealed []byte) ([]byte, error) { return sealed, nil }}
		ref := base
		ref.DedupFilterBytes, ref.KeychainFilterBytes, ref.noFreshHistory, ref.noFreshProfiles, ref.noTimerFloor = -1, -1, true, true, true
		fast := base
		fast.DedupFilterBytes = []int{0, 4096, 64}[seed%3]
		fast.KeychainFilterBytes = []int{64, 0, 4096}[seed%3]
		refSM, refS := New(ref), store.NewMem()
		sm, s := New(fast), store.NewMem()
		for i, e := range dedupScript(rng, 200) {
			switch i % 97 {
			case 30: // applied to a store thrown away, then reloaded (engine: group.redo)
				if _, err := sm.Apply(cloneMem(t, s), e.seq, e.subject, e.data); err != nil {
					t.Fatal(err)
				}
				if err := sm.Load(s); err != nil {
					t.Fatal(err)
				}
				sm.ResetCache()
			case 60:
				spared, builds, fresh = count(sm, spared, builds, fresh)
				sm = New(fast) // a restart
				if err := sm.Load(s); err != nil {
					t.Fatal(err)
				}
			case 90:
				if e.subject == SubjectEvents { // applied to a store thrown away, not reloaded
					if _, err := sm.Apply(cloneMem(t, s), e.seq, e.subject, e.data); err != nil {
						t.Fatal(err)
					}
					sm.ResetCache()
				}
			}
			want, err := refSM.Apply(refS, e.seq, e.subject, e.data)
			if err != nil {
				t.Fatalf("seed %d seq %d: reference: %v", seed, e.seq, err)
			}
			got, err := sm.Apply(s, e.seq, e.subject, e.data)
			if err != nil {
				t.Fatalf("seed %d seq %d: %v", seed, e.seq, err)
			}
			if fmt.Sprint(got) != fmt.Sprint(want) {
				t.Fatalf("seed %d seq %d: result %+v, reference %+v", seed, e.seq, got, want)
			}
			dups += want.Duplicates
			if i%6 != 5 && i%97 < 89 {
				continue // the whole stores are compared every 6th entry and around the thrown-away ones
			}
			if k, ok := firstDifference(s, refS); !ok {
				t.Fatalf("seed %d seq %d: stores differ at key %q", seed, e.seq, k)
			}
		}
		if d1, d2 := digestOf(t, sm, s), digestOf(t, refSM, refS); d1 != d2 {
			t.Fatalf("seed %d: digests differ", seed)
		}
		spared, builds, fresh = count(sm, spared, builds, fresh)
	}
	// The test must exercise what it compares.
	if spared == 0 || builds < 8 || fresh == 0 || dups == 0 || freshProfiles == 0 || kcSpared == 0 || kcBuilds < 8 || timerSkips == 0 {
		t.Fatalf("spared %d look-ups, %d filter builds, %d fresh histories, %d duplicates, %d additions to fresh profiles, keychain filter: %d look-ups spared, %d builds, %d timer scans skipped: the test does not exercise the paths",
			spared, builds, fresh, dups, freshProfiles, kcSpared, kcBuilds, timerSkips)
	}
	t.Logf("%d look-ups spared, %d filter builds, %d fresh histories, %d duplicates, %d additions to fresh profiles; keychain filter: %d look-ups spared, %d builds; %d timer scans skipped",
		spared, builds, fresh, dups, freshProfiles, kcSpared, kcBuilds, timerSkips)
}

// TestDedupFilter checks the filter alone: no false negatives, a false
// positive rate near the target at capacity, rebuilds past capacity that
// drop the keys gone from the store.
func TestDedupFilter(t *testing.T) {
	s := store.NewMem()
	key := func(i int) []byte {
		return append([]byte("dd/web\x00"), testHash("m", fmt.Sprint(i))...)
	}
	f := newDedupFilter(8 << 10) // 64k bits: capacity 6553 keys
	if !f.mayContain(key(0)) {
		t.Fatal("a filter never built must answer maybe")
	}
	if err := f.ensure(s); err != nil {
		t.Fatal(err)
	}
	if f.mayContain(key(0)) {
		t.Fatal("an empty, built filter must answer no")
	}
	n := f.capacity()
	for i := range n {
		if err := s.Set(key(i), []byte{0}); err != nil {
			t.Fatal(err)
		}
		f.add(key(i))
	}
	for i := range n {
		if !f.mayContain(key(i)) {
			t.Fatalf("false negative for key %d", i)
		}
	}
	fp := 0
	for i := n; i < 3*n; i++ {
		if f.mayContain(key(i)) {
			fp++
		}
	}
	if rate := float64(fp) / float64(2*n); rate > 0.03 {
		t.Fatalf("false positive rate %.4f at capacity, want about 0.01", rate)
	}
	// Past capacity: the store now holds only the last 1000 keys.
	for i := range n - 1000 {
		_ = s.Delete(key(i))
	}
	f.add(key(n))
	_ = s.Set(key(n), []byte{0})
	builds := f.builds
	if err := f.ensure(s); err != nil {
		t.Fatal(err)
	}
	if f.builds != builds+1 || f.n != 1001 {
		t.Fatalf("after ensure past capacity: %d builds (was %d), %d keys; want a rebuild with 1001", f.builds, builds, f.n)
	}
	for i := n - 1000; i <= n; i++ {
		if !f.mayContain(key(i)) {
			t.Fatalf("false negative for key %d after the rebuild", i)
		}
	}
	if f.mayContain(key(0)) && f.mayContain(key(1)) && f.mayContain(key(2)) {
		t.Fatal("the rebuild kept keys gone from the store")
	}
	// A store with more keys than the capacity turns the filter off.
	for i := range 2 * n {
		_ = s.Set(key(i), []byte{0})
	}
	if err := f.build(s); err != nil {
		t.Fatal(err)
	}
	if !f.off || f.ready || f.blocks != nil {
		t.Fatalf("after a build over %d keys (capacity %d): off %v ready %v", 2*n, n, f.off, f.ready)
	}
	for i := range 3 * n {
		if !f.mayContain(key(i)) {
			t.Fatalf("a filter turned off answered no for key %d", i)
		}
	}
	builds = f.builds
	if err := f.ensure(s); err != nil || f.builds != builds {
		t.Fatalf("ensure rebuilt a filter turned off (err %v)", err)
	}
}

// BenchmarkDedupFilterBuild measures the scan that fills the filter when
// the state machine loads, over a Pebble store of 1M dedup keys.
func BenchmarkDedupFilterBuild(b *testing.B) {
	db, err := store.Open(b.TempDir(), &store.Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	const n = 1 << 20
	for i := 0; i < n; i += 1 << 14 {
		batch := db.NewBatch()
		for j := i; j < i+1<<14; j++ {
			_ = batch.Set(append([]byte("dd/web\x00"), testHash("m", fmt.Sprint(j))...), []byte{0, 0, 0, 0, 0, 0, 0, 1})
		}
		if err := db.Commit(batch, false); err != nil {
			b.Fatal(err)
		}
		batch.Close()
	}
	f := newDedupFilter(DefaultDedupFilterBytes)
	b.ResetTimer()
	for range b.N {
		if err := f.build(db); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/n, "ns/key")
}
