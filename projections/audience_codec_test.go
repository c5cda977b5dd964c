package projections

import (
	"bytes"
	"testing"

	"github.com/aurumcdp/aurum/projections/audience"
	"github.com/aurumcdp/aurum/store"
	"github.com/vmihailenco/msgpack/v5"
)

// audienceLog is syntheticLog with three audiences defined after the source:
// windowed and all-time aggregates, timers, memberships.
func audienceLog(t testing.TB) []entry {
	t.Helper()
	base := syntheticLog(t, 30, 600, 1)
	log := []entry{base[0]}
	for _, d := range []audience.Definition{
		{Name: "buyers", Rule: `count("Order Completed", "7d") >= 2`},
		{Name: "spenders", Rule: `sum("Order Completed", "revenue") >= 50`},
		{Name: "browsers", Rule: `count("Viewed", "1d") >= 1 and count("Added") >= 1`},
		{Name: "pro", Rule: `traits.plan == "pro" or count("Added", "1d") >= 3`},
	} {
		data, err := msgpack.Marshal(&Control{Kind: ControlAudiencePut, Time: 1, Audience: d})
		if err != nil {
			t.Fatal(err)
		}
		log = append(log, entry{subject: SubjectControl, data: data})
	}
	log = append(log, base[1:]...)
	for i := range log {
		log[i].seq = uint64(i + 1)
	}
	return log
}

// toLegacy rewrites every value of the given kind in s ('u' audience
// states) in the msgpack form that versions before the
// hand-written codecs stored, and returns how many.
func toLegacy(t *testing.T, s *store.Mem, kind byte) int {
	t.Helper()
	type kv struct{ k, v []byte }
	var vals []kv
	err := s.Scan([]byte("p/"), store.PrefixEnd([]byte("p/")), false, func(k, v []byte) bool {
		if _, kd, profile, ok := SplitPartitionKey(k); ok && kd == kind && profile != nil {
			vals = append(vals, kv{bytes.Clone(k), bytes.Clone(v)})
		}
		return true
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, x := range vals {
		var old []byte
		switch kind {
		case 'u':
			if audience.IsLegacyState(x.v) {
				t.Fatalf("state %x already in the legacy form", x.k)
			}
			st, err := audience.DecodeState(x.v)
			if err != nil {
				t.Fatal(err)
			}
			if old, err = msgpack.Marshal(st); err != nil {
				t.Fatal(err)
			}
		}
		if err := s.Set(x.k, old); err != nil {
			t.Fatal(err)
		}
	}
	return len(vals)
}

func outbox(t *testing.T, s store.Reader, partitions int) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, p := range OutboxPrefixes(partitions) {
		if err := s.Scan(p, store.PrefixEnd(p), false, func(k, v []byte) bool { out[string(k)] = string(v); return true }); err != nil {
			t.Fatal(err)
		}
	}
	return out
}

// TestLegacyAudienceStatesKeepWorking: a data dir whose audience states were
// written in msgpack by an earlier version digests like one written now,
// and applying more of the log to it gives the same state and transitions
// as applying it to a store written entirely by this version.
func TestLegacyAudienceStatesKeepWorking(t *testing.T) {
	log := audienceLog(t)
	half := len(log) / 2
	cur, old := store.NewMem(), store.NewMem()
	smCur, smOld := newSM(), newSM()
	applyAll(t, smCur, cur, log[:half])
	applyAll(t, smOld, old, log[:half])
	if n := toLegacy(t, old, 'u'); n < 10 {
		t.Fatalf("only %d audience states to convert: the log exercises too little", n)
	}
	smOld.ResetCache() // the store was written behind the state machine's back
	if !bytes.Equal(digest(t, cur), digest(t, old)) {
		t.Fatal("legacy (msgpack) audience states change the digest")
	}
	applyAll(t, smCur, cur, log[half:])
	applyAll(t, smOld, old, log[half:])
	if !bytes.Equal(digest(t, cur), digest(t, old)) {
		t.Fatal("applying the rest of the log to legacy states gave another state")
	}
	oc, oo := outbox(t, cur, smCur.Partitions()), outbox(t, old, smOld.Partitions())
	if len(oc) == 0 {
		t.Fatal("no transitions in the outbox: the log exercises too little")
	}
	if len(oc) != len(oo) {
		t.Fatalf("outboxes differ: %d vs %d rows", len(oc), len(oo))
	}
	for k, v := range oc {
		if oo[k] != v {
			t.Fatalf("outbox row %x differs", k)
		}
	}
	// The digest sees a legacy state's content, not only its form.
	var key, val []byte
	_ = old.Scan([]byte("p/"), store.PrefixEnd([]byte("p/")), false, func(k, v []byte) bool {
		if _, kind, profile, ok := SplitPartitionKey(k); ok && kind == 'u' && profile != nil {
			key, val = bytes.Clone(k), bytes.Clone(v)
			return false
		}
		return true
	})
	st, err := audience.DecodeState(val)
	if err != nil {
		t.Fatal(err)
	}
	st.Timer++
	b, _ := msgpack.Marshal(st)
	if err := old.Set(key, b); err != nil {
		t.Fatal(err)
	}
	if bytes.Equal(digest(t, cur), digest(t, old)) {
		t.Fatal("a changed legacy state did not change the digest")
	}
}

// getCounter counts the reads of GCR keys (p/<i>/g/...).
type getCounter struct {
	*store.Mem
	gets map[string]int
}

func (c *getCounter) Get(k []byte) ([]byte, error) {
	if _, kind, _, ok := SplitPartitionKey(k); ok && kind == 'g' {
		c.gets[string(k)]++
	}
	return c.Mem.Get(k)
}

// TestAudienceStageReusesTheGCRTxn: within one apply, the audience stage
// takes the GCRs the GCR stage just wrote from its Txn: every GCR is read
// from the store at most once per log entry (a rule reading traits used to
// read and decode it a second time). A profile merged away is read twice
// (for the absorption, then to drop it) and is not counted here.
func TestAudienceStageReusesTheGCRTxn(t *testing.T) {
	log := audienceLog(t)
	s := &getCounter{Mem: store.NewMem()}
	sm := newSM()
	reads := 0
	for _, e := range log {
		s.gets = map[string]int{}
		if _, err := sm.Apply(s, e.seq, e.subject, e.data); err != nil {
			t.Fatal(err)
		}
		for k, n := range s.gets {
			reads += n
			if _, err := s.Mem.Get([]byte(k)); err != nil {
				continue // merged away: read for the absorption, then dropped
			}
			if n > 1 {
				t.Fatalf("entry %d: GCR %x read %d times", e.seq, k, n)
			}
		}
	}
	if reads == 0 {
		t.Fatal("no GCR reads counted: the test does not see the store")
	}
	// The same log on a plain store gives the same state.
	plain := store.NewMem()
	applyAll(t, newSM(), plain, log)
	if !bytes.Equal(digest(t, s.Mem), digest(t, plain)) {
		t.Fatal("digests differ")
	}
}
