package store

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"sort"
	"sync"
	"testing"
)

func TestConformanceOverlay(t *testing.T) {
	runReadWriterSuite(t, func(t *testing.T) ReadWriter { return NewOverlay(NewMem()) })
}

// TestConformanceOverlayOverBase splits the data between the base and the
// overlay as TestConformanceBatchOverDB does between a DB and a batch.
func TestConformanceOverlayOverBase(t *testing.T) {
	runReaderSuite(t, func(t *testing.T, data map[string]string) Reader {
		base := NewMem()
		keys := sortedKeys(data)
		for i, k := range keys {
			switch i % 3 {
			case 0: // only in the base
				mustSet(t, base, k, data[k])
			case 1: // in the base, overwritten by the overlay
				mustSet(t, base, k, "stale")
			}
		}
		mustSet(t, base, "a\x01", "to-delete")
		mustSet(t, base, "zz", "to-delete")
		o := NewOverlay(base)
		for i, k := range keys {
			if i%3 != 0 {
				mustSet(t, o, k, data[k])
			}
		}
		mustDelete(t, o, "a\x01")
		mustDelete(t, o, "zz")
		mustDelete(t, o, "never-there")
		return o
	})
}

func TestConformanceSharedReader(t *testing.T) {
	runReaderSuite(t, func(t *testing.T, data map[string]string) Reader {
		m := NewMem()
		for k, v := range data {
			mustSet(t, m, k, v)
		}
		return NewSharedReader(m)
	})
}

func sortedKeys(data map[string]string) []string {
	keys := make([]string, 0, len(data))
	for k := range data {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// TestOverlayMatchesDirectWrites runs random writes against an Overlay over
// a base and, for reference, against a copy of the base written directly:
// every Get and Scan (both directions, stopped early or not) must agree,
// and after WriteTo the base must equal the reference key by key. The base
// is read through a SharedReader, whose scans span many chunks.
func TestOverlayMatchesDirectWrites(t *testing.T) {
	for seed := range uint64(20) {
		t.Run(fmt.Sprint(seed), func(t *testing.T) {
			rnd := rand.New(rand.NewPCG(seed, 7))
			key := func() []byte { return fmt.Appendf(nil, "k%03d", rnd.IntN(300)) }
			base, ref := NewMem(), NewMem()
			for range 200 {
				k, v := key(), fmt.Appendf(nil, "b%d", rnd.IntN(1000))
				mustSetB(t, base, k, v)
				mustSetB(t, ref, k, v)
			}
			o := NewOverlay(NewSharedReader(base))
			for op := range 400 {
				k := key()
				if rnd.IntN(3) == 0 {
					mustDelete(t, o, string(k))
					mustDelete(t, ref, string(k))
				} else {
					v := fmt.Appendf(nil, "o%d", op)
					mustSetB(t, o, k, v)
					mustSetB(t, ref, k, v)
				}
				if op%40 != 0 {
					continue
				}
				for range 5 {
					k := key()
					got, gerr := o.Get(k)
					want, werr := ref.Get(k)
					if string(got) != string(want) || (gerr == nil) != (werr == nil) || gerr != nil && !errors.Is(gerr, ErrNotFound) {
						t.Fatalf("op %d: Get(%s) = %q, %v; want %q, %v", op, k, got, gerr, want, werr)
					}
				}
				lower, upper := key(), key()
				if string(lower) > string(upper) {
					lower, upper = upper, lower
				}
				if rnd.IntN(4) == 0 {
					lower, upper = nil, nil
				}
				for _, reverse := range []bool{false, true} {
					limit := rnd.IntN(60)
					got := collect(t, o, lower, upper, reverse, limit)
					want := collect(t, ref, lower, upper, reverse, limit)
					if !equalKVs(got, want) {
						t.Fatalf("op %d: Scan(%q, %q, %v, limit %d) = %q\nwant %q", op, lower, upper, reverse, limit, got, want)
					}
				}
			}
			if err := o.WriteTo(base); err != nil {
				t.Fatal(err)
			}
			if got, want := collect(t, base, nil, nil, false, 0), collect(t, ref, nil, nil, false, 0); !equalKVs(got, want) {
				t.Fatalf("after WriteTo the base holds %d keys, the reference %d, or values differ", len(got), len(want))
			}
		})
	}
}

// TestOverlayScanSeesWritesBeforeIt: writes made by the scan's callback are
// not seen by that scan (as with an indexed Pebble batch), but by the next.
func TestOverlayScanSeesWritesBeforeIt(t *testing.T) {
	base := NewMem()
	mustSet(t, base, "a", "1")
	mustSet(t, base, "c", "3")
	o := NewOverlay(base)
	mustSet(t, o, "b", "2")
	got := collect(t, o, nil, nil, false, 0)
	var during []kv
	if err := o.Scan(nil, nil, false, func(k, v []byte) bool {
		during = append(during, kv{string(k), string(v)})
		mustSet(t, o, "bb", "new")
		mustDelete(t, o, "c")
		return true
	}); err != nil {
		t.Fatal(err)
	}
	want := []kv{{"a", "1"}, {"b", "2"}, {"c", "3"}}
	if !equalKVs(got, want) || !equalKVs(during, want) {
		t.Fatalf("scans = %q and %q, want %q", got, during, want)
	}
	if after := collect(t, o, nil, nil, false, 0); !equalKVs(after, []kv{{"a", "1"}, {"b", "2"}, {"bb", "new"}}) {
		t.Fatalf("scan after the writes = %q", after)
	}
}

// TestSharedReaderConcurrent reads one Mem (not safe for concurrent use)
// from several goroutines through a SharedReader, each scan's callback
// reading through it again (a lock held during fn would deadlock): the race
// detector and the results check it.
func TestSharedReaderConcurrent(t *testing.T) {
	m := NewMem()
	want := map[string]string{}
	for i := range 500 {
		k, v := fmt.Sprintf("k%04d", i), fmt.Sprint(i)
		mustSet(t, m, k, v)
		want[k] = v
	}
	s := NewSharedReader(m)
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	for g := range 4 {
		wg.Go(func() {
			n := 0
			err := s.Scan(nil, nil, g%2 == 1, func(k, v []byte) bool {
				got, err := s.Get(k)
				if err != nil || string(got) != want[string(k)] || string(v) != want[string(k)] {
					errs <- fmt.Errorf("goroutine %d: %s = %q / %q, %v", g, k, v, got, err)
					return false
				}
				n++
				return true
			})
			if err == nil && n != len(want) {
				err = fmt.Errorf("goroutine %d scanned %d keys, want %d", g, n, len(want))
			}
			if err != nil {
				errs <- err
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}
