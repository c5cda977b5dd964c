package projections

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/aurumcdp/aurum/event"
	"github.com/aurumcdp/aurum/projections/identity"
	"github.com/aurumcdp/aurum/store"
	"github.com/oklog/ulid/v2"
)

func testHash(typ, v string) []byte {
	h := sha256.Sum256([]byte(typ + ":" + v))
	return h[:16]
}

// entry is one log entry of a synthetic log.
type entry struct {
	seq     uint64
	subject string
	data    []byte
}

// syntheticLog makes a log of event batches: people with two cookies each,
// logins that link them, duplicates (SDK retries) and a source creation.
func syntheticLog(t testing.TB, people, events int, seed uint64) []entry {
	t.Helper()
	r := rand.New(rand.NewPCG(seed, 1))
	ctl, _ := marshalEntry(&Control{Kind: ControlSourceCreate, Time: 1, Source: Source{Name: "web", KeyHash: testHash("k", "web")}})
	log := []entry{{seq: 1, subject: SubjectControl, data: ctl}}
	var recs []event.Record
	for i := range events {
		p := r.IntN(people)
		ids := []event.IDRef{{Type: event.AnonymousID, Hash: testHash(event.AnonymousID, fmt.Sprintf("a%d-%d", p, r.IntN(2)))}}
		if r.IntN(3) == 0 {
			ids = append(ids, event.IDRef{Type: event.UserID, Hash: testHash(event.UserID, fmt.Sprintf("u%d", p))})
		}
		id := ulid.MustNew(uint64(1_700_000_000_000+i), bytes.NewReader(bytes.Repeat([]byte{byte(i)}, 16)))
		rec := event.Record{ID: id[:], MessageID: fmt.Sprintf("m%d", i), Source: "web", Kind: event.Track,
			Event: []string{"Viewed", "Added", "Order Completed"}[r.IntN(3)], Time: int64(1_700_000_000_000 + r.IntN(1e9)),
			Received: int64(1_700_000_000_000 + i), Key: ids[0].Hash, IDs: ids,
			Properties: map[string]any{"revenue": float64(r.IntN(1000)) / 10}}
		recs = append(recs, rec)
		if r.IntN(10) == 0 { // a retry of an earlier message
			recs = append(recs, recs[r.IntN(len(recs))])
		}
	}
	for len(recs) > 0 {
		n := min(1+r.IntN(20), len(recs))
		data, err := marshalEntry(&event.Batch{ID: testHash("b", fmt.Sprint(len(log))), Received: recs[n-1].Received, Records: recs[:n]})
		if err != nil {
			t.Fatal(err)
		}
		log = append(log, entry{seq: uint64(len(log) + 1), subject: SubjectEvents, data: data})
		recs = recs[n:]
	}
	return log
}

func applyAll(t testing.TB, sm *StateMachine, s store.ReadWriter, log []entry) Result {
	t.Helper()
	var total Result
	for _, e := range log {
		res, err := sm.Apply(s, e.seq, e.subject, e.data)
		if err != nil {
			t.Fatalf("apply %d: %v", e.seq, err)
		}
		total.Events += res.Events
		total.Duplicates += res.Duplicates
		total.Merges += res.Merges
	}
	return total
}

func newSM() *StateMachine { return New(Options{Partitions: 4, Open: openIdentity}) }

func digest(t testing.TB, r store.Reader) []byte {
	t.Helper()
	d, err := Digest(r)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func TestReplayIsDeterministic(t *testing.T) {
	log := syntheticLog(t, 30, 600, 1)
	a, b := store.NewMem(), store.NewMem()
	ra := applyAll(t, newSM(), a, log)
	rb := applyAll(t, newSM(), b, log)
	if ra.Events != rb.Events || ra.Duplicates != rb.Duplicates || ra.Merges != rb.Merges {
		t.Fatalf("results differ: %+v vs %+v", ra, rb)
	}
	if !bytes.Equal(digest(t, a), digest(t, b)) {
		t.Fatal("two replays of the same log gave different digests")
	}
	if ra.Duplicates == 0 || ra.Merges == 0 {
		t.Fatalf("workload exercised no duplicates or merges: %+v", ra)
	}
	if ra.Events+ra.Duplicates != countRecords(t, log) {
		t.Fatalf("events %d + duplicates %d != records %d", ra.Events, ra.Duplicates, countRecords(t, log))
	}
	// A different log gives a different digest (the digest sees the state).
	c := store.NewMem()
	applyAll(t, newSM(), c, syntheticLog(t, 30, 600, 2))
	if bytes.Equal(digest(t, a), digest(t, c)) {
		t.Fatal("different logs gave equal digests")
	}
}

func countRecords(t testing.TB, log []entry) int {
	n := 0
	for _, e := range log {
		if e.subject == SubjectEvents {
			b, err := event.DecodeBatch(e.data)
			if err != nil {
				t.Fatal(err)
			}
			n += len(b.Records)
		}
	}
	return n
}

// TestSnapshotRestore: a state machine restored from a snapshot taken midway
// and fed the rest of the log ends where an uninterrupted one does.
func TestSnapshotRestore(t *testing.T) {
	log := syntheticLog(t, 20, 400, 3)
	full := store.NewMem()
	applyAll(t, newSM(), full, log)

	half := store.NewMem()
	mid := len(log) / 2
	applyAll(t, newSM(), half, log[:mid])
	var snap bytes.Buffer
	if err := Snapshot(half, &snap); err != nil {
		t.Fatal(err)
	}
	restored := store.NewMem()
	_ = restored.Set([]byte("p/\x00\x01/g/stale"), []byte("x")) // state the restore must replace
	if err := Restore(restored, bytes.NewReader(snap.Bytes())); err != nil {
		t.Fatal(err)
	}
	applyAll(t, newSM(), restored, log[mid:])
	if !bytes.Equal(digest(t, full), digest(t, restored)) {
		t.Fatal("snapshot + restore + rest of the log differs from a full replay")
	}

	// A partition's snapshot holds only its own keys.
	var part bytes.Buffer
	if err := Snapshot(full, &part, PartitionPrefix(1)); err != nil {
		t.Fatal(err)
	}
	if err := Restore(store.NewMem(), bytes.NewReader(part.Bytes()), PartitionPrefix(2)); err == nil {
		t.Fatal("restoring partition 1's snapshot into partition 2's range was accepted")
	}
	if err := Restore(store.NewMem(), bytes.NewReader(snap.Bytes()[:snap.Len()-3])); err == nil {
		t.Fatal("a truncated snapshot was accepted")
	}
}

func TestApplyRefusesOldPositionsAndSkipsCorruptEntries(t *testing.T) {
	log := syntheticLog(t, 5, 20, 4)
	s := store.NewMem()
	sm := newSM()
	applyAll(t, sm, s, log)
	last := log[len(log)-1]
	if _, err := sm.Apply(s, last.seq, last.subject, last.data); err == nil {
		t.Fatal("re-applying an applied position was accepted")
	}
	before := digest(t, s)
	_, err := sm.Apply(s, last.seq+1, SubjectEvents, []byte{0xc1, 0x00})
	if !errors.Is(err, ErrCorruptEntry) {
		t.Fatalf("corrupt entry: err = %v, want ErrCorruptEntry", err)
	}
	if err := newSM().Skip(s, last.seq+1); err != nil {
		t.Fatal(err)
	}
	if got, _ := Applied(s); got != last.seq+1 {
		t.Fatalf("applied = %d after skipping, want %d", got, last.seq+1)
	}
	if bytes.Equal(before, digest(t, s)) {
		t.Fatal("the skip did not record the position")
	}
	// Unknown subjects are skipped with their position recorded.
	if _, err := sm.Apply(s, last.seq+2, "aurum.log.future", []byte("x")); err != nil {
		t.Fatal(err)
	}
}

// TestDedupWindow: a messageId is remembered for the window (log time) and
// forgotten after it, with its expiry index pruned.
func TestDedupWindow(t *testing.T) {
	sm := New(Options{Partitions: 2, DedupWindow: 1000})
	s := store.NewMem()
	rec := func(i int, msg string, received int64) []byte {
		id := ulid.MustNew(uint64(received), bytes.NewReader(bytes.Repeat([]byte{byte(i)}, 16)))
		ids := []event.IDRef{{Type: event.UserID, Hash: testHash("user_id", "u")}}
		data, _ := marshalEntry(&event.Batch{Received: received, Records: []event.Record{{ID: id[:], MessageID: msg,
			Source: "web", Kind: event.Track, Event: "E", Time: received, Received: received, Key: ids[0].Hash, IDs: ids}}})
		return data
	}
	for i, c := range []struct {
		msg      string
		received int64
		dup      bool
	}{{"m1", 10_000, false}, {"m1", 10_500, true}, {"m2", 10_600, false}, {"m1", 11_001, false}, {"m1", 11_900, true}} {
		res, err := sm.Apply(s, uint64(i+1), SubjectEvents, rec(i, c.msg, c.received))
		if err != nil {
			t.Fatal(err)
		}
		if got := res.Duplicates == 1; got != c.dup {
			t.Fatalf("step %d (%s at %d): duplicate = %v, want %v", i, c.msg, c.received, got, c.dup)
		}
	}
	// m2 expired at 11_600 and was pruned by the entry at 11_900.
	n := 0
	_ = s.Scan(prefixDedup, store.PrefixEnd(prefixDedup), false, func(_, _ []byte) bool { n++; return true })
	if n != 1 {
		t.Fatalf("%d dedup entries remain, want 1 (m1)", n)
	}
}

// TestPartitions: every partition records the applied position in the same
// batch as the state machine; a partition restored from its own snapshot
// restores the whole state's digest; a partition refuses profiles of another
// partition and positions it already applied.
func TestPartitions(t *testing.T) {
	log := syntheticLog(t, 40, 500, 5)
	sm := newSM()
	full := store.NewMem()
	applyAll(t, sm, full, log)
	last := log[len(log)-1].seq
	profilesPer := make([]int, sm.Partitions())
	for i := range sm.Partitions() {
		p := sm.Partition(i)
		if got, err := p.Applied(full); err != nil || got != last {
			t.Fatalf("partition %d applied %d (%v), want %d", i, got, err, last)
		}
		pre := append(PartitionPrefix(i), 'g', '/')
		_ = full.Scan(pre, store.PrefixEnd(pre), false, func(_, _ []byte) bool { profilesPer[i]++; return true })
	}
	for i, n := range profilesPer {
		if n == 0 {
			t.Fatalf("partition %d holds no profile (%v): the workload does not spread", i, profilesPer)
		}
	}
	want := digest(t, full)

	var snap bytes.Buffer
	if err := sm.Partition(2).Snapshot(full, &snap); err != nil {
		t.Fatal(err)
	}
	damaged := store.NewMem()
	_ = full.Scan(nil, nil, false, func(k, v []byte) bool { _ = damaged.Set(k, v); return true })
	pre := PartitionPrefix(2)
	_ = full.Scan(pre, store.PrefixEnd(pre), false, func(k, _ []byte) bool { _ = damaged.Delete(k); return true })
	if bytes.Equal(digest(t, damaged), want) {
		t.Fatal("deleting a partition did not change the digest")
	}
	if err := sm.Partition(2).Restore(damaged, bytes.NewReader(snap.Bytes())); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(digest(t, damaged), want) {
		t.Fatal("restoring the partition's snapshot did not restore the state")
	}

	var other []byte // a profile of partition 0, offered to partition 1
	pre0 := append(PartitionPrefix(0), 'g', '/')
	_ = full.Scan(pre0, store.PrefixEnd(pre0), false, func(k, _ []byte) bool { other = k[len(pre0):]; return false })
	rec := event.Record{ID: testHash("id", "x"), Kind: event.Track}
	err := sm.Partition(1).Apply(full, &PartitionCommand{Seq: last + 1, Add: []Addition{{Profile: other, Record: &rec}}})
	if err == nil {
		t.Fatal("partition 1 accepted a profile of partition 0")
	}
	if err := sm.Partition(1).Apply(full, &PartitionCommand{Seq: last}); err == nil {
		t.Fatal("partition 1 re-applied an applied position")
	}
}

// TestIdentityConfigOnTheLog: identity settings take effect at their log
// position, survive a restart (Load) and are part of the state's digest; an
// invalid config record is ignored.
func TestIdentityConfigOnTheLog(t *testing.T) {
	cfgEntry := func(seq uint64, cfg identity.Config) entry {
		raw, err := EncodeIdentityConfig(cfg)
		if err != nil {
			t.Fatal(err)
		}
		data, _ := marshalEntry(&Control{Kind: ControlIdentityConfig, Config: raw})
		return entry{seq: seq, subject: SubjectControl, data: data}
	}
	ev := func(seq uint64, user string) entry {
		ids := []event.IDRef{{Type: event.UserID, Hash: testHash(event.UserID, user)}, {Type: event.AnonymousID, Hash: testHash(event.AnonymousID, "shared-tablet")}}
		id := testHash("event", user)
		data, _ := marshalEntry(&event.Batch{Received: 1000, Records: []event.Record{{ID: id, MessageID: user, Source: "web",
			Kind: event.Identify, Time: int64(seq), Received: 1000, Key: ids[0].Hash, IDs: ids}}})
		return entry{seq: seq, subject: SubjectEvents, data: data}
	}
	unlimited := identity.DefaultConfig()
	unlimited.Limits = map[string]int{}
	bad, _ := marshalEntry(&Control{Kind: ControlIdentityConfig, Config: []byte(`{"Limits":{"user_id":-3}}`)})

	sameProfile := func(s store.Reader, sm *StateMachine) bool {
		a, err1 := sm.Keychain().Lookup(s, event.UserID, testHash(event.UserID, "mum"))
		b, err2 := sm.Keychain().Lookup(s, event.UserID, testHash(event.UserID, "dad"))
		if err1 != nil || err2 != nil {
			t.Fatal(err1, err2)
		}
		return bytes.Equal(a, b)
	}
	// Default limits (one user_id per profile): a shared tablet does not merge mum and dad.
	s1, sm1 := store.NewMem(), newSM()
	applyAll(t, sm1, s1, []entry{ev(1, "mum"), ev(2, "dad")})
	if sameProfile(s1, sm1) {
		t.Fatal("default config merged two user ids")
	}
	// A config record without limits, then the same events: merged.
	s2, sm2 := store.NewMem(), newSM()
	log2 := []entry{cfgEntry(1, unlimited), {seq: 2, subject: SubjectControl, data: bad}, ev(3, "mum"), ev(4, "dad")}
	applyAll(t, sm2, s2, log2)
	if !sameProfile(s2, sm2) {
		t.Fatal("the config record on the log did not take effect")
	}
	// After a restart the applied config is restored from the state.
	restarted := newSM()
	if err := restarted.Load(s2); err != nil {
		t.Fatal(err)
	}
	if got := restarted.Keychain().Config().Limits; len(got) != 0 {
		t.Fatalf("restarted state machine has limits %v, want the applied (none)", got)
	}
	// The same log replayed gives the same digest; the config is part of it.
	s3 := store.NewMem()
	applyAll(t, newSM(), s3, log2)
	if !bytes.Equal(digest(t, s2), digest(t, s3)) {
		t.Fatal("replay with a config record differs")
	}
	have, _ := IdentityConfig(s3)
	want, _ := EncodeIdentityConfig(unlimited)
	if !bytes.Equal(have, want) {
		t.Fatalf("config in effect %s, want %s", have, want)
	}
}

func applyControlEntry(t *testing.T, sm *StateMachine, s store.ReadWriter, seq *uint64, c *Control) {
	t.Helper()
	data, err := marshalEntry(c)
	if err != nil {
		t.Fatal(err)
	}
	*seq++
	if _, err := sm.Apply(s, *seq, SubjectControl, data); err != nil {
		t.Fatal(err)
	}
}

func bytesEqual(a, b []byte) bool { return bytes.Equal(a, b) }

// TestMalformedRecordsAreSkipped: records that can never resolve (no
// identifier, a malformed hash or event id, no kind) are skipped and
// counted; the good records of the same entry are applied; the node does not
// stop on them.
func TestMalformedRecordsAreSkipped(t *testing.T) {
	sm := newSM()
	s := store.NewMem()
	good := event.Record{ID: testHash("e", "good"), MessageID: "g", Source: "web", Kind: event.Track, Event: "E", Time: 1, Received: 1,
		IDs: []event.IDRef{{Type: event.UserID, Hash: testHash(event.UserID, "u")}}}
	noIDs, badHash, badID, noKind := good, good, good, good
	noIDs.MessageID, noIDs.IDs = "a", nil
	badHash.MessageID, badHash.IDs = "b", []event.IDRef{{Type: event.UserID, Hash: []byte{1, 2, 3}}}
	badID.MessageID, badID.ID = "c", []byte{1}
	noKind.MessageID, noKind.Kind = "d", ""
	data, _ := marshalEntry(&event.Batch{Received: 1, Records: []event.Record{noIDs, badHash, good, badID, noKind}})
	res, err := sm.Apply(s, 1, SubjectEvents, data)
	if err != nil {
		t.Fatal(err)
	}
	if res.Invalid != 4 || res.Events != 1 {
		t.Fatalf("result %+v: want 4 invalid, 1 applied", res)
	}
	if _, err := sm.Keychain().Lookup(s, event.UserID, testHash(event.UserID, "u")); err != nil {
		t.Fatalf("the good record was not applied: %v", err)
	}
}

// TestOpenFailures: a sealed value that will never open (Open's error
// marked ErrUnreadable: a destroyed key) reads as absent, alike in every
// replay; any other failure of Open (an I/O error reading a key) fails
// Apply rather than applying without the value.
func TestOpenFailures(t *testing.T) {
	log := syntheticLog(t, 10, 200, 5)
	unreadable := func(_, _ []byte) ([]byte, error) { return nil, fmt.Errorf("%w: key destroyed", ErrUnreadable) }
	a, b := store.NewMem(), store.NewMem()
	applyAll(t, New(Options{Partitions: 4, Open: unreadable}), a, log)
	applyAll(t, New(Options{Partitions: 4, Open: unreadable}), b, log)
	if !bytes.Equal(digest(t, a), digest(t, b)) {
		t.Fatal("two replays with unreadable values gave different digests")
	}

	disk := errors.New("disk on fire")
	failing := func(_, _ []byte) ([]byte, error) { return nil, disk }
	sm, s := New(Options{Partitions: 4, Open: failing}), store.NewMem()
	for _, e := range log {
		if _, err := sm.Apply(s, e.seq, e.subject, e.data); err != nil {
			if !errors.Is(err, disk) {
				t.Fatalf("apply %d: %v, want the open failure", e.seq, err)
			}
			return
		}
	}
	t.Fatal("no Apply failed although Open failed on every sealed value")
}
