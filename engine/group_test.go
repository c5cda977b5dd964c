package engine

import (
	"bytes"
	"fmt"
	"path/filepath"
	"reflect"
	"testing"

	"github.com/aurumcdp/aurum/event"
	alog "github.com/aurumcdp/aurum/log"
	"github.com/aurumcdp/aurum/projections"
	"github.com/aurumcdp/aurum/projections/audience"
	"github.com/aurumcdp/aurum/projections/identity"
	"github.com/aurumcdp/aurum/store"
	"github.com/vmihailenco/msgpack/v5"
)

// groupTestLog is a log that exercises what a group must get right: merges,
// conflicting identifiers, audiences put and deleted (in-memory state of the
// state machine), an identity config change, ticks that fire timers, and
// corrupt entries right after control records.
func groupTestLog(t *testing.T) []alog.Entry {
	t.Helper()
	var out []alog.Entry
	t0 := int64(1_780_000_000_000)
	now := t0
	add := func(subject string, data []byte) {
		out = append(out, alog.Entry{Seq: uint64(len(out) + 1), Subject: subject, Data: data})
	}
	ctrl := func(c projections.Control) {
		c.Time = now
		data, err := msgpack.Marshal(&c)
		if err != nil {
			t.Fatal(err)
		}
		add(projections.SubjectControl, data)
	}
	put := func(name, rule string) {
		ctrl(projections.Control{Kind: projections.ControlAudiencePut, Audience: audience.Definition{Name: name, Rule: rule}})
	}
	hash := func(s string) []byte { h := make([]byte, 16); copy(h, s); return h }
	names := []string{"Product Viewed", "Product Viewed", "Product Added", "Order Completed", "Order Refunded"}
	n := 0
	events := func(people int, conflict bool) {
		now += 3_600_000
		b := event.Batch{Received: now}
		for range 12 {
			n++
			p := (n * 7919) % people
			ids := []event.IDRef{{Type: event.AnonymousID, Hash: hash(fmt.Sprintf("a%d", p))}}
			switch {
			case conflict && n%3 == 0: // another person's user id: a merge or a refusal by the limits
				ids = append(ids, event.IDRef{Type: event.UserID, Hash: hash(fmt.Sprintf("u%d", (p+1)%people))})
			case n%2 == 0:
				ids = append(ids, event.IDRef{Type: event.UserID, Hash: hash(fmt.Sprintf("u%d", p))})
			}
			b.Records = append(b.Records, event.Record{ID: hash(fmt.Sprintf("e%d", n)), MessageID: fmt.Sprint(n % 150), Source: "web",
				Kind: event.Track, Event: names[n%len(names)], Time: now - int64(n%7)*60_000, Received: now, Key: ids[0].Hash, IDs: ids,
				Properties: map[string]any{"revenue": float64(n % 300)}})
		}
		for i := range b.Records { // "sealed" by the identity, opened so by the state machine below
			b.Records[i].SealedProperties, _ = event.AppendMsgpack(nil, b.Records[i].Properties)
		}
		add(projections.SubjectEvents, event.EncodeBatch(&b))
	}
	corrupt := func(subject string) { add(subject, []byte{0xdd, 0xff, 0xff, 0xff, 0xff, 0x01}) }
	tick := func(d int64) { now += d; ctrl(projections.Control{Kind: projections.ControlTick}) }

	put("buyers", `count("Order Completed") >= 2`)
	put("recent", `count("Product Viewed", "7d") >= 1`)
	for range 8 {
		events(40, false)
	}
	cfg, err := projections.EncodeIdentityConfig(identity.Config{Priority: []string{event.UserID}})
	if err != nil {
		t.Fatal(err)
	}
	events(40, true)
	ctrl(projections.Control{Kind: projections.ControlIdentityConfig, Config: cfg})
	put("vip", `in_audience("buyers") and count("Product Viewed") >= 3`)
	corrupt(projections.SubjectEvents) // after the group changed the audiences and the identity config
	for range 8 {
		events(60, true)
	}
	tick(10 * 24 * 3_600_000) // "recent" runs out
	corrupt(projections.SubjectControl)
	corrupt(projections.SubjectEvents) // two in a row
	ctrl(projections.Control{Kind: projections.ControlAudienceDelete, Audience: audience.Definition{Name: "buyers"}})
	for range 6 {
		events(60, true)
	}
	put("late", `sum("Order Completed", "revenue") >= 100`)
	corrupt(projections.SubjectEvents)
	for range 6 {
		events(80, false)
	}
	tick(3_600_000)
	return out
}

// applyGrouped applies ents to a fresh store in groups of size entries
// (committing after every size entries), with crashes: at each position in
// crashAt the group's uncommitted entries are dropped without a commit and
// the state machine is replaced by a new one (a process restart), which
// resumes after the store's applied position.
func applyGrouped(t *testing.T, ents []alog.Entry, size, cacheBytes int, crashAt map[int]bool) (*store.DB, map[uint64]entryResult) {
	t.Helper()
	db, err := store.Open(filepath.Join(t.TempDir(), "state"), &store.Options{NoWAL: size > 1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	if _, err := checkPartitions(db, 4); err != nil {
		t.Fatal(err)
	}
	newSM := func() *projections.StateMachine {
		sm := projections.New(projections.Options{Partitions: 4, CacheBytes: cacheBytes, BackfillPerEntry: 7,
			Open: func(_, sealed []byte) ([]byte, error) { return sealed, nil }})
		if err := sm.Load(db); err != nil {
			t.Fatal(err)
		}
		return sm
	}
	results := map[uint64]entryResult{}
	keep := func(rs []entryResult) {
		for _, r := range rs {
			if _, dup := results[r.seq]; dup {
				t.Fatalf("seq %d reported twice", r.seq)
			}
			results[r.seq] = r
		}
	}
	if size == 1 { // the reference: one batch per entry, as before groups
		sm := newSM()
		for _, ent := range ents {
			res, err := applyOne(db, sm, ent.Seq, ent.Subject, ent.Data)
			r := entryResult{seq: ent.Seq, res: res}
			if err != nil {
				r.corrupt = err
			}
			keep([]entryResult{r})
		}
		return db, results
	}
	sm := newSM()
	g := newGroup(db, sm)
	for i := 0; i < len(ents); {
		if crashAt[i] {
			delete(crashAt, i)
			applied, err := projections.Applied(db)
			if err != nil {
				t.Fatal(err)
			}
			for _, r := range g.res { // committed on the way (a failed entry's predecessors) but not reported yet
				if r.seq <= applied {
					keep([]entryResult{r})
				}
			}
			g.close() // uncommitted: gone
			sm = newSM()
			g = newGroup(db, sm)
			i = int(applied) // ents[k].Seq == k+1
			continue
		}
		if err := g.add(ents[i]); err != nil {
			t.Fatalf("add seq %d: %v", ents[i].Seq, err)
		}
		i++
		if g.count() >= size || i == len(ents) {
			rs, err := g.commit()
			if err != nil {
				t.Fatal(err)
			}
			keep(rs)
		}
	}
	return db, results
}

func dumpStore(t *testing.T, r store.Reader) map[string][]byte {
	t.Helper()
	m := map[string][]byte{}
	if err := r.Scan(nil, nil, false, func(k, v []byte) bool {
		m[string(k)] = bytes.Clone(v)
		return true
	}); err != nil {
		t.Fatal(err)
	}
	return m
}

// TestGroupApplyMatchesOneByOne applies the same log one entry per batch
// and in groups of several sizes (with and without the state cache, with
// crashes that lose an uncommitted group): the stores are identical key by
// key, outboxes included, and so are every entry's results and the corrupt
// entries skipped.
func TestGroupApplyMatchesOneByOne(t *testing.T) {
	ents := groupTestLog(t)
	ref, refRes := applyGrouped(t, ents, 1, 0, nil)
	want := dumpStore(t, ref)
	wantDigest, err := projections.Digest(ref)
	if err != nil {
		t.Fatal(err)
	}
	corrupt := 0
	transitions, outbox := 0, 0
	for _, r := range refRes {
		if r.corrupt != nil {
			corrupt++
		}
		transitions += r.res.Transitions
		outbox += r.res.Outbox
	}
	if corrupt != 4 || transitions == 0 || outbox == 0 {
		t.Fatalf("reference: %d corrupt entries (want 4), %d transitions, %d outbox rows: the log does not exercise groups", corrupt, transitions, outbox)
	}
	for _, tc := range []struct {
		size, cache int
		crashAt     []int
	}{
		{size: 2}, {size: 3}, {size: 5}, {size: 7, cache: -1}, {size: 7, cache: 2048}, {size: 256},
		{size: 6, crashAt: []int{4, 13, 30, 45}}, {size: 256, crashAt: []int{12, 40}},
	} {
		t.Run(fmt.Sprintf("size=%d/cache=%d/crashes=%d", tc.size, tc.cache, len(tc.crashAt)), func(t *testing.T) {
			crash := map[int]bool{}
			for _, i := range tc.crashAt {
				crash[i] = true
			}
			db, res := applyGrouped(t, ents, tc.size, tc.cache, crash)
			got := dumpStore(t, db)
			for k, v := range want {
				if w, ok := got[k]; !ok || !bytes.Equal(w, v) {
					t.Fatalf("key %q: got %x (present %v), want %x", k, w, ok, v)
				}
			}
			for k := range got {
				if _, ok := want[k]; !ok {
					t.Fatalf("extra key %q", k)
				}
			}
			d, err := projections.Digest(db)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(d, wantDigest) {
				t.Fatalf("digest %x, want %x", d, wantDigest)
			}
			for seq, w := range refRes {
				r, ok := res[seq]
				if !ok {
					t.Fatalf("seq %d: no result", seq)
				}
				if (r.corrupt == nil) != (w.corrupt == nil) || !reflect.DeepEqual(r.res, w.res) {
					t.Fatalf("seq %d: result %+v (corrupt %v), want %+v (corrupt %v)", seq, r.res, r.corrupt, w.res, w.corrupt)
				}
			}
		})
	}
}
