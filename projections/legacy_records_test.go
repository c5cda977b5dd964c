package projections

import (
	"bytes"
	"testing"

	"github.com/aurumcdp/aurum/projections/audience"
	"github.com/aurumcdp/aurum/projections/gcr"
	"github.com/aurumcdp/aurum/projections/identity"
	"github.com/aurumcdp/aurum/store"
	"github.com/vmihailenco/msgpack/v5"
)

// toLegacyRecordsAndNodes rewrites every stored event record (p/<i>/e/...)
// and keychain node (ip/...) of s in the msgpack form that versions before
// their hand-written codecs stored, and returns how many of each.
func toLegacyRecordsAndNodes(t *testing.T, s *store.Mem) (records, nodes int) {
	t.Helper()
	type kv struct{ k, v []byte }
	var vals []kv
	for _, p := range [][]byte{[]byte("p/"), prefixKeychainNode} {
		if err := s.Scan(p, store.PrefixEnd(p), false, func(k, v []byte) bool {
			vals = append(vals, kv{bytes.Clone(k), bytes.Clone(v)})
			return true
		}); err != nil {
			t.Fatal(err)
		}
	}
	for _, x := range vals {
		var old []byte
		var err error
		if bytes.HasPrefix(x.k, prefixKeychainNode) {
			if identity.IsLegacyNode(x.v) {
				t.Fatalf("node %x already in the legacy form", x.k)
			}
			old, err = identity.LegacyNode(x.v)
			nodes++
		} else if _, kind, profile, ok := SplitPartitionKey(x.k); ok && kind == 'e' && profile != nil {
			if gcr.IsLegacyRecord(x.v) {
				t.Fatalf("record %x already in the legacy form", x.k)
			}
			old, err = gcr.LegacyRecord(x.v)
			records++
		} else {
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Set(x.k, old); err != nil {
			t.Fatal(err)
		}
	}
	return records, nodes
}

// TestLegacyRecordsAndNodesKeepWorking: a data dir whose event records and
// keychain nodes were written in msgpack by an earlier version (commit
// ec1d6d4) digests like one written now, per part too; applying more of
// the log to it, with an audience defined then whose new aggregates are
// computed from the stored (legacy) records, gives the same state and
// transitions as applying it to a store written entirely by this version.
func TestLegacyRecordsAndNodesKeepWorking(t *testing.T) {
	log := audienceLog(t)
	half := len(log) / 2
	def, err := msgpack.Marshal(&Control{Kind: ControlAudiencePut, Time: 1, Audience: audience.Definition{
		Name: "late", Rule: `count("Viewed") >= 3 or sum("Order Completed", "revenue", "365d") >= 80`,
	}})
	if err != nil {
		t.Fatal(err)
	}
	rest := append([]entry{{subject: SubjectControl, data: def}}, log[half:]...)
	for i := range rest {
		rest[i].seq = uint64(half + i + 1)
	}
	cur, old := store.NewMem(), store.NewMem()
	smCur, smOld := newSM(), newSM()
	applyAll(t, smCur, cur, log[:half])
	applyAll(t, smOld, old, log[:half])
	records, nodes := toLegacyRecordsAndNodes(t, old)
	if records < 100 || nodes < 10 {
		t.Fatalf("only %d records and %d nodes to convert: the log exercises too little", records, nodes)
	}
	smOld.ResetCache() // the store was written behind the state machine's back
	if !bytes.Equal(digest(t, cur), digest(t, old)) {
		t.Fatal("legacy (msgpack) event records and nodes change the digest")
	}
	pc, err := DigestParts(cur, smCur.Partitions())
	if err != nil {
		t.Fatal(err)
	}
	po, err := DigestParts(old, smOld.Partitions())
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(pc.Global, po.Global) {
		t.Fatal("legacy nodes change the global digest")
	}
	for i := range pc.Partitions {
		if !bytes.Equal(pc.Partitions[i], po.Partitions[i]) {
			t.Fatalf("legacy records change partition %d's digest", i)
		}
	}
	applyAll(t, smCur, cur, rest)
	applyAll(t, smOld, old, rest)
	if !bytes.Equal(digest(t, cur), digest(t, old)) {
		t.Fatal("applying the rest of the log to legacy records and nodes gave another state")
	}
	oc, oo := outbox(t, cur, smCur.Partitions()), outbox(t, old, smOld.Partitions())
	late := 0
	for k, v := range oc {
		if oo[k] != v {
			t.Fatalf("outbox row %x differs", k)
		}
		if bytes.Contains([]byte(v), []byte("late")) {
			late++
		}
	}
	if len(oc) != len(oo) || late == 0 {
		t.Fatalf("outboxes: %d vs %d rows, %d for the late audience", len(oc), len(oo), late)
	}

	// The digest sees a legacy value's content, not only its form.
	for _, p := range [][]byte{[]byte("p/"), prefixKeychainNode} {
		var key, val []byte
		_ = old.Scan(p, store.PrefixEnd(p), false, func(k, v []byte) bool {
			_, kind, profile, ok := SplitPartitionKey(k)
			if (ok && kind == 'e' && profile != nil && gcr.IsLegacyRecord(v)) || (!ok && identity.IsLegacyNode(v)) {
				key, val = bytes.Clone(k), bytes.Clone(v)
				return false
			}
			return true
		})
		if key == nil {
			t.Fatalf("no legacy value left under %q", p)
		}
		before := digest(t, old)
		changed := bytes.Clone(val)
		changed[len(changed)-1] ^= 1 // last byte of a msgpack value: still decodes
		if err := old.Set(key, changed); err != nil {
			t.Fatal(err)
		}
		if bytes.Equal(before, digest(t, old)) {
			t.Fatalf("a changed legacy value under %q did not change the digest", p)
		}
		if err := old.Set(key, val); err != nil {
			t.Fatal(err)
		}
	}
}
