package gcr

import (
	"bytes"
	"errors"
	"slices"
	"testing"

	"github.com/aurumcdp/aurum/store"
)

// TestEachProfile: every stored GCR once, decoded, over every partition and
// nothing else (event records are not profiles); fn's error stops it.
func TestEachProfile(t *testing.T) {
	p, mem := New(&Options{Partitions: 5}), store.NewMem()
	tx := p.Begin(mem)
	for i := range byte(20) {
		mustAdd(t, tx, pid(i+1), track(i+1, int64(i)*1000, "Order Completed", map[string]any{"revenue": 10}))
	}
	mustFlush(t, tx)
	var seen [][]byte
	if err := p.EachProfile(mem, func(prof *Profile) error {
		if prof.Stats.Events != 1 {
			t.Errorf("profile %x: %d events", prof.ID, prof.Stats.Events)
		}
		seen = append(seen, prof.ID)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	slices.SortFunc(seen, bytes.Compare)
	if len(seen) != 20 {
		t.Fatalf("%d profiles, want 20", len(seen))
	}
	for i, id := range seen {
		if !bytes.Equal(id, pid(byte(i+1))) {
			t.Errorf("profile %d: %x, want %x", i, id, pid(byte(i+1)))
		}
	}
	stop := errors.New("stop")
	n := 0
	if err := p.EachProfile(mem, func(*Profile) error { n++; return stop }); !errors.Is(err, stop) || n != 1 {
		t.Errorf("stopped after %d with %v", n, err)
	}
}
