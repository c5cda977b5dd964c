package projections

import (
	"bytes"
	"errors"
	"fmt"
	"testing"

	"github.com/aurumcdp/aurum/store"
)

// firstDifference compares two stores key by key, values and outboxes
// included; it returns the first key that differs.
func firstDifference(a, b store.Reader) (string, bool) {
	dump := func(r store.Reader) map[string]string {
		m := map[string]string{}
		_ = r.Scan(nil, []byte{0xff, 0xff, 0xff, 0xff}, false, func(k, v []byte) bool { m[string(k)] = string(v); return true })
		return m
	}
	da, db := dump(a), dump(b)
	for k, v := range da {
		if w, ok := db[k]; !ok || w != v {
			return k, false
		}
	}
	for k := range db {
		if _, ok := da[k]; !ok {
			return k, false
		}
	}
	return "", true
}

// TestCacheNeverServesStaleValues applies logs with merges, duplicates,
// audiences, timers and backfills with the default cache, a tiny one that
// rotates all the time, and none, and compares the whole stores (outboxes
// included) and the results after every entry. The data-driven audience
// scenarios (erasures, merges, deletes) do the same through their shadows
// (shadowCaches).
func TestCacheNeverServesStaleValues(t *testing.T) {
	for name, log := range map[string][]entry{
		"identity":  syntheticLog(t, 30, 800, 7),
		"audiences": audienceLog(t),
	} {
		t.Run(name, func(t *testing.T) {
			var sms []*StateMachine
			var names []string
			for _, cache := range []int{0, 4096, -1} {
				sms = append(sms, New(Options{Partitions: 4, CacheBytes: cache, BackfillPerEntry: 7}))
				names = append(names, fmt.Sprintf("cache %d", cache))
			}
			applyAndCompare(t, log, sms, names, 1)
			if st := sms[0].CacheStats(); st.Hits == 0 || st.Misses == 0 {
				t.Fatalf("cache stats %+v: the cache was not used", st)
			}
			if st := sms[2].CacheStats(); st.Hits != 0 || st.Misses != 0 {
				t.Fatalf("cache stats %+v with the cache off", st)
			}
		})
	}
}

// overlay is a batch over a store.Mem: reads see its own writes, Commit
// applies them, dropping it discards them. It fails the Nth write when
// failAt is set, as a full disk or a bug in the middle of an entry would.
type overlay struct {
	base   *store.Mem
	writes map[string][]byte // nil value: deleted
	order  []string
	n      int
	failAt int
}

var errInjected = errors.New("injected write failure")

func newOverlay(base *store.Mem, failAt int) *overlay {
	return &overlay{base: base, writes: map[string][]byte{}, failAt: failAt}
}

func (o *overlay) Get(k []byte) ([]byte, error) {
	if v, ok := o.writes[string(k)]; ok {
		if v == nil {
			return nil, store.ErrNotFound
		}
		return bytes.Clone(v), nil
	}
	return o.base.Get(k)
}

func (o *overlay) Scan(lower, upper []byte, reverse bool, fn func(k, v []byte) bool) error {
	m := store.NewMem()
	_ = o.base.Scan(lower, upper, false, func(k, v []byte) bool { _ = m.Set(k, v); return true })
	for _, k := range o.order {
		kb := []byte(k)
		if bytes.Compare(kb, lower) < 0 || (upper != nil && bytes.Compare(kb, upper) >= 0) {
			continue
		}
		if v := o.writes[k]; v == nil {
			_ = m.Delete(kb)
		} else {
			_ = m.Set(kb, v)
		}
	}
	return m.Scan(lower, upper, reverse, fn)
}

func (o *overlay) write(k, v []byte) error {
	o.n++
	if o.failAt > 0 && o.n == o.failAt {
		return errInjected
	}
	if _, ok := o.writes[string(k)]; !ok {
		o.order = append(o.order, string(k))
	}
	o.writes[string(k)] = v
	return nil
}

func (o *overlay) Set(k, v []byte) error {
	if v == nil {
		v = []byte{}
	}
	return o.write(k, bytes.Clone(v))
}

func (o *overlay) Delete(k []byte) error { return o.write(k, nil) }

func (o *overlay) commit() {
	for _, k := range o.order {
		if v := o.writes[k]; v == nil {
			_ = o.base.Delete([]byte(k))
		} else {
			_ = o.base.Set([]byte(k), v)
		}
	}
}

// TestCacheSurvivesFailedAndUncommittedEntries: an entry whose apply fails
// midway (its batch discarded), and an entry applied but never committed
// (the commit failed), are retried; the cached state machine then matches
// one without a cache, entry by entry. A cache that kept the failed entry's
// writes, or the uncommitted one's, would serve values the store does not
// hold.
func TestCacheSurvivesFailedAndUncommittedEntries(t *testing.T) {
	log := audienceLog(t)
	cached, plain := New(Options{Partitions: 4}), New(Options{Partitions: 4, CacheBytes: -1})
	cs, ps := store.NewMem(), store.NewMem()
	failures := 0
	for i, e := range log {
		switch i % 3 {
		case 1: // fails midway, after about half of its writes
			probe := newOverlay(cs, 0)
			if _, err := New(Options{Partitions: 4, CacheBytes: -1}).Apply(probe, e.seq, e.subject, e.data); err != nil {
				t.Fatal(err)
			}
			o := newOverlay(cs, probe.n/2+1)
			if _, err := cached.Apply(o, e.seq, e.subject, e.data); !errors.Is(err, errInjected) {
				t.Fatalf("seq %d: err = %v, want the injected failure", e.seq, err)
			}
			failures++
		case 2: // applied, never committed
			if _, err := cached.Apply(newOverlay(cs, 0), e.seq, e.subject, e.data); err != nil {
				t.Fatal(err)
			}
		}
		o := newOverlay(cs, 0)
		if _, err := cached.Apply(o, e.seq, e.subject, e.data); err != nil {
			t.Fatalf("seq %d: retry: %v", e.seq, err)
		}
		o.commit()
		if _, err := plain.Apply(ps, e.seq, e.subject, e.data); err != nil {
			t.Fatal(err)
		}
		if k, ok := firstDifference(cs, ps); !ok {
			t.Fatalf("seq %d: cached and plain stores differ at %q", e.seq, k)
		}
	}
	if failures < 10 {
		t.Fatalf("only %d injected failures", failures)
	}
}

// TestResetCache: a write behind the state machine's back at the same
// applied position (what a restore or the replay's carried-over ranges
// do) is served stale until ResetCache, and not after it.
func TestResetCache(t *testing.T) {
	log := syntheticLog(t, 10, 200, 9)
	sm, s := newSM(), store.NewMem()
	applyAll(t, sm, s, log)
	// A profile the cache holds: the root of the first record's identifier.
	var key []byte
	_ = s.Scan([]byte("ik/"), store.PrefixEnd([]byte("ik/")), false, func(k, _ []byte) bool { key = bytes.Clone(k); return false })
	if key == nil {
		t.Fatal("no keychain entry")
	}
	seq := log[len(log)-1].seq
	read := func() []byte {
		var got []byte
		err := sm.withCache(s, seq, func(rw store.ReadWriter) error {
			v, err := rw.Get(key)
			got = v
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		return got
	}
	before := read()
	other := bytes.Repeat([]byte{0xee}, len(before))
	if err := s.Set(key, other); err != nil {
		t.Fatal(err)
	}
	if got := read(); !bytes.Equal(got, before) {
		t.Fatal("the cache did not serve the value it held: this test no longer tests ResetCache")
	}
	sm.ResetCache()
	if got := read(); !bytes.Equal(got, other) {
		t.Fatalf("after ResetCache: %x, want the store's %x", got, other)
	}
}
