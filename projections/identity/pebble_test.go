package identity

import (
	"math/rand/v2"
	"reflect"
	"testing"

	"github.com/aurumcdp/aurum/store"
)

// TestPebbleBatch resolves events on Pebble batches (one per few events, as
// the engine does) and requires the same results and contents as on Mem.
func TestPebbleBatch(t *testing.T) {
	db, err := store.Open(t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	k := New(DefaultConfig())
	evs := genEvents(rand.New(rand.NewPCG(1, 2)), 40, 0, true)
	want := resolveAll(t, k, store.NewMem(), evs, false)
	mem := store.NewMem()
	resolveAll(t, k, mem, evs, false)
	for i := 0; i < len(evs); i += 7 {
		b := db.NewBatch()
		got := resolveAll(t, k, b, evs[i:min(i+7, len(evs))], false)
		if !reflect.DeepEqual(got, want[i:min(i+7, len(evs))]) {
			t.Fatalf("events %d..: results differ from Mem", i)
		}
		if err := db.Commit(b, false); err != nil {
			t.Fatal(err)
		}
		b.Close()
	}
	if err := k.Check(db); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(dump(t, db), dump(t, mem)) {
		t.Fatal("Pebble contents differ from Mem")
	}
}
