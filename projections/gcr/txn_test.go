package gcr

import (
	"bytes"
	"errors"
	"testing"

	"github.com/aurumcdp/aurum/event"
	"github.com/aurumcdp/aurum/store"
)

// TestTxnDecodeEncodeOnce checks that within one Txn each profile is read
// once and written once, however many events and merges touch it.
func TestTxnDecodeEncodeOnce(t *testing.T) {
	p := New(nil)
	rw := newCounting(store.NewMem())
	a, b, c := pid(1), pid(2), pid(3)
	ka, kb, kc := string(p.profileKey(a)), string(p.profileKey(b)), string(p.profileKey(c))

	// Step 1: store A and B.
	tx := p.Begin(rw)
	mustAdd(t, tx, a, track(1, 10, "A", nil))
	mustAdd(t, tx, b, track(2, 20, "A", nil))
	mustFlush(t, tx)

	// Step 2: many events on both, a merge, more events on the survivor and
	// a merge from a profile that does not exist.
	rw.gets, rw.sets, rw.dels = map[string]int{}, map[string]int{}, map[string]int{}
	for i := range 5 {
		mustAdd(t, tx, a, track(byte(10+i), int64(30+i), "A", nil))
		mustAdd(t, tx, b, track(byte(20+i), int64(40+i), "B", nil))
	}
	if err := tx.Merge(b, a); err != nil {
		t.Fatal(err)
	}
	mustAdd(t, tx, a, track(30, 50, "A", nil))
	if err := tx.Merge(c, a); err != nil {
		t.Fatal(err)
	}
	if rw.sets[ka]+rw.sets[kb]+rw.dels[kb] != 0 {
		t.Fatalf("profiles written before Flush: sets %v dels %v", rw.sets, rw.dels)
	}
	mustFlush(t, tx)
	for _, c := range []struct {
		what      string
		got, want int
	}{
		{"gets A", rw.gets[ka], 1},
		{"gets B", rw.gets[kb], 1},
		{"gets C", rw.gets[kc], 1},
		{"sets A", rw.sets[ka], 1},
		{"sets B", rw.sets[kb], 0},
		{"deletes B", rw.dels[kb], 1},
		{"sets C", rw.sets[kc], 0},
		{"deletes C", rw.dels[kc], 0},
	} {
		if c.got != c.want {
			t.Errorf("%s = %d, want %d", c.what, c.got, c.want)
		}
	}
	var eventSets int
	for k, n := range rw.sets {
		if k != ka {
			eventSets += n
		}
	}
	if eventSets != 2*11 {
		t.Errorf("%d event records and index entries written, want 2×11", eventSets)
	}

	// Step 3: the Txn is reusable and reads the flushed state again.
	mustAdd(t, tx, a, track(40, 60, "A", nil))
	mustFlush(t, tx)
	if rw.gets[ka] != 2 {
		t.Errorf("gets A after reuse = %d, want 2", rw.gets[ka])
	}
	prof := mustGet(t, p, rw, a)
	if prof.Stats.Events != 14 || prof.Stats.EventCounts["A"] != 9 || prof.Stats.EventCounts["B"] != 5 {
		t.Errorf("stats = %+v", prof.Stats)
	}
	if len(prof.MergedFrom) != 1 || !bytes.Equal(prof.MergedFrom[0], b) {
		t.Errorf("merged from = %x, want [%x]", prof.MergedFrom, b)
	}
	if _, err := p.Get(rw, b); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("merged-away profile: err = %v, want ErrNotFound", err)
	}
}

func TestMergeTransitiveAndErrors(t *testing.T) {
	p, mem := New(nil), store.NewMem()
	tx := p.Begin(mem)
	mustAdd(t, tx, pid(3), track(3, 3, "A", nil))
	mustAdd(t, tx, pid(2), track(2, 2, "A", nil))
	if err := tx.Merge(pid(3), pid(2)); err != nil {
		t.Fatal(err)
	}
	mustFlush(t, tx)
	// Merge into a profile that does not exist yet creates it.
	if err := tx.Merge(pid(2), pid(1)); err != nil {
		t.Fatal(err)
	}
	mustFlush(t, tx)
	prof := mustGet(t, p, mem, pid(1))
	if want := [][]byte{pid(2), pid(3)}; len(prof.MergedFrom) != 2 || !bytes.Equal(prof.MergedFrom[0], want[0]) || !bytes.Equal(prof.MergedFrom[1], want[1]) {
		t.Errorf("merged from = %x, want %x", prof.MergedFrom, want)
	}
	if prof.Stats.Events != 2 {
		t.Errorf("events = %d, want 2", prof.Stats.Events)
	}
	if err := tx.Merge(pid(1), pid(1)); err == nil {
		t.Error("merge into itself succeeded")
	}
	if err := tx.Merge([]byte{1}, pid(1)); err == nil {
		t.Error("merge of a short id succeeded")
	}
}

// TestTxnCopiesInput checks that the Txn does not keep references to the
// caller's buffers, which the engine may reuse before Flush.
func TestTxnCopiesInput(t *testing.T) {
	p, mem := New(nil), store.NewMem()
	tx := p.Begin(mem)
	rec := withTraits(identify(1, 5), "name", "rob")
	rec.Key = bytes.Clone(testKey)
	owned := []event.IDRef{ref("email", 1, []byte("sealed"))}
	mustAdd(t, tx, pid(1), rec, owned...)
	rec.ID[15], rec.Key[0], rec.Traits["name"][0], owned[0].Hash[0], owned[0].Sealed[0] = 0xff, 0xff, 'X', 0xff, 'X'
	mustFlush(t, tx)
	prof := mustGet(t, p, mem, pid(1))
	if string(prof.Traits["name"].Sealed) != "rob" || prof.Identifiers[0].Hash[0] != 1 ||
		string(prof.Identifiers[0].Sealed) != "sealed" || prof.Identifiers[0].FirstEvent[15] != 1 || prof.Traits["name"].Key[0] != 0x5a {
		t.Errorf("profile changed with the caller's buffers: %+v", prof)
	}
}

// TestTxnFlushed: after Flush, Flushed gives each profile the Txn loaded
// exactly as the store now holds it (absent for one merged away), and
// nothing for a profile it did not touch.
func TestTxnFlushed(t *testing.T) {
	p := New(nil)
	s := store.NewMem()
	a, b, c, d := pid(1), pid(2), pid(3), pid(4)
	tx := p.Begin(s)
	mustAdd(t, tx, a, withTraits(identify(1, 5), "name", "x"))
	mustAdd(t, tx, b, track(2, 9, "Order Completed", map[string]any{"revenue": 3}), ref("email", 1, []byte("s")))
	mustAdd(t, tx, d, track(3, 7, "Viewed", nil))
	mustFlush(t, tx)
	if _, ok := tx.Flushed(c); ok {
		t.Fatal("Flushed reports a profile the Txn never loaded")
	}
	tx = p.Begin(s)
	mustAdd(t, tx, a, track(4, 11, "Viewed", nil))
	if err := tx.Merge(b, a); err != nil {
		t.Fatal(err)
	}
	if _, ok := tx.Flushed(a); ok {
		t.Fatal("Flushed reports a profile before Flush")
	}
	mustFlush(t, tx)
	got, ok := tx.Flushed(a)
	if !ok || got == nil {
		t.Fatalf("Flushed(a) = %v, %v", got, ok)
	}
	if !bytes.Equal(mustEncode(t, got), mustEncode(t, mustGet(t, p, s, a))) {
		t.Fatal("Flushed(a) differs from the stored GCR")
	}
	if len(got.MergedFrom) != 1 || got.Stats.Events != 3 {
		t.Fatalf("Flushed(a): merged from %d, %d events; want 1, 3", len(got.MergedFrom), got.Stats.Events)
	}
	if got, ok := tx.Flushed(b); !ok || got != nil {
		t.Fatalf("Flushed(b) of a profile merged away = %v, %v; want nil, true", got, ok)
	}
	if _, ok := tx.Flushed(d); ok {
		t.Fatal("Flushed reports a profile only an earlier Txn touched")
	}
}
