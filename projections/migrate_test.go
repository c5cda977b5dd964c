package projections

import (
	"bytes"
	"testing"

	"github.com/aurumcdp/aurum/event"
	"github.com/aurumcdp/aurum/projections/gcr"
	"github.com/aurumcdp/aurum/store"
)

// TestMigrateEventRecords: a state store in the layout before issue #15's
// (each event record the value of its index entry, no ev/ keys) is
// migrated to the state a store applying the same log today has, key for
// key; a marked store is left alone, an unmarked one without legacy
// entries only gets the mark, and the migrated store keeps applying.
func TestMigrateEventRecords(t *testing.T) {
	log := syntheticLog(t, 40, 900, 3)
	const parts = 4

	want, err := store.Open(t.TempDir(), &store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer want.Close()
	applyDB(t, newSM(), want, log[:len(log)/2])

	// The legacy store: the same keys, each record moved back into its
	// index entry.
	legacy, err := store.Open(t.TempDir(), &store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer legacy.Close()
	b := legacy.NewBatch()
	records := map[string][]byte{}
	if err := want.Scan(nil, nil, false, func(k, v []byte) bool {
		if bytes.HasPrefix(k, []byte(gcr.RecordPrefix)) {
			records[string(k)] = bytes.Clone(v)
			return true
		}
		if err := b.Set(k, v); err != nil {
			t.Fatal(err)
		}
		return true
	}); err != nil {
		t.Fatal(err)
	}
	if len(records) == 0 {
		t.Fatal("the log stored no event records")
	}
	moved := 0
	for p := range parts {
		prefix := append(PartitionPrefix(p), 'e', '/')
		if err := want.Scan(prefix, store.PrefixEnd(prefix), false, func(k, _ []byte) bool {
			rec, ok := gcr.MoveTo(k)
			if !ok {
				t.Fatalf("index key %x not recognised", k)
			}
			if err := b.Set(k, records[string(rec)]); err != nil {
				t.Fatal(err)
			}
			moved++
			return true
		}); err != nil {
			t.Fatal(err)
		}
	}
	if moved != len(records) {
		t.Fatalf("%d index entries for %d records", moved, len(records))
	}
	if err := legacy.Commit(b, false); err != nil {
		t.Fatal(err)
	}
	b.Close()
	if bytes.Equal(digest(t, legacy), digest(t, want)) {
		t.Fatal("the legacy layout has the same digest: the test compares nothing")
	}

	n, err := MigrateEventRecords(legacy, parts)
	if err != nil || n != len(records) {
		t.Fatalf("migrate: %d moved, %v; want %d", n, err, len(records))
	}
	if !bytes.Equal(digest(t, legacy), digest(t, want)) {
		t.Fatal("the migrated store differs from the store applied in the new layout")
	}
	// Marked: nothing more to do, and the mark reads as such.
	if n, err := MigrateEventRecords(legacy, parts); err != nil || n != 0 {
		t.Fatalf("second migration: %d moved, %v", n, err)
	}
	if n, err := MigrateEventRecords(want, parts); err != nil || n != 0 {
		t.Fatalf("a store in the new layout: %d moved, %v", n, err)
	}
	if _, err := want.Get(keyRecordsLayout); err != nil {
		t.Fatalf("the new-layout store was not marked: %v", err)
	}
	// Both go on applying the rest of the log alike.
	applyDB(t, newSM(), legacy, log[len(log)/2:])
	applyDB(t, newSM(), want, log[len(log)/2:])
	if !bytes.Equal(digest(t, legacy), digest(t, want)) {
		t.Fatal("the migrated store applied the rest of the log differently")
	}
	// Each profile's events read through the index.
	sm := newSM()
	var profiles, events int
	if err := sm.GCR().EachProfile(legacy, func(prof *gcr.Profile) error {
		profiles++
		return sm.GCR().EachEvent(legacy, prof, 7, func(*event.Record) error { events++; return nil })
	}); err != nil {
		t.Fatal(err)
	}
	if profiles == 0 || events < len(records) {
		t.Fatalf("read %d events of %d profiles, want at least the %d migrated", events, profiles, len(records))
	}
}

// applyDB applies log to db, an entry per committed batch.
func applyDB(t *testing.T, sm *StateMachine, db *store.DB, log []entry) {
	t.Helper()
	for _, e := range log {
		b := db.NewBatch()
		if _, err := sm.Apply(b, e.seq, e.subject, e.data); err != nil {
			t.Fatalf("apply %d: %v", e.seq, err)
		}
		if err := db.Commit(b, false); err != nil {
			t.Fatal(err)
		}
		b.Close()
	}
}
