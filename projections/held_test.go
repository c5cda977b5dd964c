package projections

import (
	"bytes"
	"math/rand/v2"
	"reflect"
	"testing"

	"github.com/aurumcdp/aurum/store"
)

// TestApplyHeld: a log applied with ApplyHeld in groups, released at each
// group's end as the engine's apply groups do (engine/apply.go), leaves
// the store that Apply leaves, key for key and byte for byte, with equal
// Results entry by entry; so does a group whose batch is discarded (a
// failed entry) once the state machine is loaded again and the entries are
// applied again, as the engine's group.redo does. The log (dedupScript)
// has aliases that merge profiles a group holds, control entries (audience
// changes, ticks) between event entries, duplicates and fresh profiles;
// audience changes start backfills that scan the GCRs a few per entry
// (they must see the held ones); the feature rows are kept under
// interaction keys.
func TestApplyHeld(t *testing.T) {
	newSM := func() *StateMachine {
		return New(Options{Partitions: 4, Open: openIdentity, BackfillPerEntry: 3, InteractionKey: func(kind, v string) string { return kind + ":" + v }})
	}
	log := dedupScript(rand.New(rand.NewPCG(16, 2)), 400)
	want, plain := store.NewMem(), newSM()
	var wantRes []Result
	for _, e := range log {
		res, err := plain.Apply(want, e.seq, e.subject, e.data)
		if err != nil {
			t.Fatalf("apply %d: %v", e.seq, err)
		}
		wantRes = append(wantRes, res)
	}
	dump := func(s *store.Mem) map[string][]byte {
		m := map[string][]byte{}
		if err := s.Scan(nil, nil, false, func(k, v []byte) bool {
			m[string(k)] = bytes.Clone(v)
			return true
		}); err != nil {
			t.Fatal(err)
		}
		return m
	}
	wantDump := dump(want)
	for _, tc := range []struct{ size, maxHeld int }{
		{1, DefaultMaxHeldProfiles}, {2, DefaultMaxHeldProfiles}, {7, DefaultMaxHeldProfiles},
		{64, DefaultMaxHeldProfiles}, {len(log), DefaultMaxHeldProfiles},
		{len(log), 3}, // the bound: partitions write what they hold past 3 profiles
	} {
		size := tc.size
		got, sm := store.NewMem(), newSM()
		sm.maxHeld = tc.maxHeld
		held := 0
		for i, e := range log {
			res, err := sm.ApplyHeld(got, e.seq, e.subject, e.data)
			if err != nil {
				t.Fatalf("group size %d: apply held %d: %v", size, e.seq, err)
			}
			if !reflect.DeepEqual(res, wantRes[i]) {
				t.Fatalf("group size %d, entry %d: Result %+v, Apply's %+v", size, e.seq, res, wantRes[i])
			}
			if sm.holding() {
				held++
			}
			for _, p := range sm.partitions {
				if p.held != nil && p.held.Len() > sm.maxHeld {
					t.Fatalf("entry %d: partition %d holds %d profiles, bound %d", e.seq, p.id, p.held.Len(), sm.maxHeld)
				}
			}
			if (i+1)%size == 0 {
				if err := sm.Release(got); err != nil {
					t.Fatal(err)
				}
			}
		}
		if err := sm.Release(got); err != nil {
			t.Fatal(err)
		}
		if sm.holding() {
			t.Fatal("still holding after Release")
		}
		if held == 0 || (size == len(log) && sm.ownerReleases == 0) {
			t.Fatalf("group size %d: %d entries left GCRs held, %d held merges released: the log does not test holding", size, held, sm.ownerReleases)
		}
		if gotDump := dump(got); !reflect.DeepEqual(gotDump, wantDump) {
			diffKeys(t, wantDump, gotDump)
			t.Fatalf("group size %d: the store differs from Apply's", size)
		}
		over := 0
		for _, p := range sm.partitions {
			over += p.overHeld
		}
		if tc.maxHeld == 3 && over == 0 {
			t.Fatal("bound 3: no partition wrote its GCRs for the bound: the bound is not tested")
		}
		t.Logf("group size %d, bound %d: %d of %d entries left GCRs held, %d merges of held profiles, %d writes for the bound",
			size, tc.maxHeld, held, len(log), sm.ownerReleases, over)
	}

	// A group whose batch is discarded: its entries applied into an
	// overlay that is dropped, then Load and the entries again.
	got, sm := store.NewMem(), newSM()
	const at = 150
	for _, e := range log[:at] {
		if _, err := sm.ApplyHeld(got, e.seq, e.subject, e.data); err != nil {
			t.Fatal(err)
		}
	}
	if err := sm.Release(got); err != nil {
		t.Fatal(err)
	}
	batch := store.NewOverlay(got)
	for _, e := range log[at:] { // until some GCRs are held
		if _, err := sm.ApplyHeld(batch, e.seq, e.subject, e.data); err != nil {
			t.Fatal(err)
		}
		if sm.holding() && e.seq >= log[at].seq+10 {
			break
		}
	}
	if !sm.holding() {
		t.Fatal("nothing held before the discard: the case is not tested")
	}
	if err := sm.Load(got); err != nil { // batch dropped
		t.Fatal(err)
	}
	if sm.holding() {
		t.Fatal("Load kept GCRs of a discarded batch")
	}
	for _, e := range log[at:] {
		if _, err := sm.ApplyHeld(got, e.seq, e.subject, e.data); err != nil {
			t.Fatal(err)
		}
	}
	if err := sm.Release(got); err != nil {
		t.Fatal(err)
	}
	if gotDump := dump(got); !reflect.DeepEqual(gotDump, wantDump) {
		diffKeys(t, wantDump, gotDump)
		t.Fatal("after a discarded group: the store differs from Apply's")
	}
}

func diffKeys(t *testing.T, want, got map[string][]byte) {
	t.Helper()
	n := 0
	for k, v := range want {
		if g, ok := got[k]; !ok || !bytes.Equal(g, v) {
			if n++; n <= 5 {
				t.Errorf("key %q: want %d bytes, got %d (present %v)", k, len(v), len(g), ok)
			}
		}
	}
	for k := range got {
		if _, ok := want[k]; !ok {
			if n++; n <= 10 {
				t.Errorf("key %q: not in Apply's store", k)
			}
		}
	}
}
