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
	// No state cache, so that the reads of returning people's GCRs reach
	// the store (those of new people's are not made: Addition.Fresh).
	sm := New(Options{Partitions: 4, Open: openIdentity, CacheBytes: -1})
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
