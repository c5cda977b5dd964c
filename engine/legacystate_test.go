package engine

import (
	"bytes"
	"context"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/aurumcdp/aurum/projections"
	"github.com/aurumcdp/aurum/projections/audience"
	"github.com/aurumcdp/aurum/projections/gcr"
	"github.com/aurumcdp/aurum/projections/identity"
	"github.com/aurumcdp/aurum/store"
)

// legacyStateDir rewrites, in a stopped node's state store, every stored
// event record (p/<i>/e/...) and keychain node (ip/...) in the msgpack form
// the versions before their hand-written codecs (commit ec1d6d4) wrote,
// and returns how many of each.
func legacyStateDir(t *testing.T, dir string) (records, nodes int) {
	t.Helper()
	db, err := store.Open(filepath.Join(dir, "state"), StateStoreOptions(nil))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	type kv struct{ k, v []byte }
	var vals []kv
	for _, p := range [][]byte{[]byte("p/"), []byte("ip/")} {
		if err := db.Scan(p, store.PrefixEnd(p), false, func(k, v []byte) bool {
			vals = append(vals, kv{bytes.Clone(k), bytes.Clone(v)})
			return true
		}); err != nil {
			t.Fatal(err)
		}
	}
	b := db.NewBatch()
	defer b.Close()
	for _, x := range vals {
		var old []byte
		if bytes.HasPrefix(x.k, []byte("ip/")) {
			old, err = identity.LegacyNode(x.v)
			nodes++
		} else if _, kind, profile, ok := projections.SplitPartitionKey(x.k); ok && kind == 'e' && profile != nil {
			old, err = gcr.LegacyRecord(x.v)
			records++
		} else {
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		if err := b.Set(x.k, old); err != nil {
			t.Fatal(err)
		}
	}
	if err := db.Commit(b, true); err != nil {
		t.Fatal(err)
	}
	return records, nodes
}

// TestLegacyRecordsAndNodesDataDir: a data dir whose event records and
// keychain nodes were written in msgpack by an earlier version has the
// digest of the same dir written now; a node started on it keeps
// applying (an audience defined then computes its aggregates from the
// stored legacy records; merges re-write legacy nodes), and its live
// digest equals that of a replay of its log by this version.
func TestLegacyRecordsAndNodesDataDir(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	dir := t.TempDir()
	e := openFormatEngine(t, dir, false)
	if _, err := e.CreateSource(ctx, "web"); err != nil {
		t.Fatal(err)
	}
	ingestAndWait(t, e, entryFormatEvents(t, 0, 60))
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	before, err := DigestState(dir)
	if err != nil {
		t.Fatal(err)
	}
	records, nodes := legacyStateDir(t, dir)
	if records < 30 || nodes < 5 {
		t.Fatalf("only %d records and %d nodes converted: the log exercises too little", records, nodes)
	}
	after, err := DigestState(dir)
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(before) != fmt.Sprint(after) {
		t.Fatalf("legacy records and nodes change the digests:\n%+v\n%+v", before, after)
	}

	e = openFormatEngine(t, dir, false)
	if _, err := e.PutAudience(ctx, audience.Definition{Name: "late", Rule: `count("Order Completed") >= 2 or sum("Order Completed", "revenue") >= 40`}); err != nil {
		t.Fatal(err)
	}
	ingestAndWait(t, e, entryFormatEvents(t, 1, 60))
	live, err := e.Digest()
	if err != nil {
		t.Fatal(err)
	}
	if m, _, err := e.AudienceMembers("late", "", 100); err != nil || len(m) == 0 {
		t.Fatalf("audience late: %d members, %v: want some", len(m), err)
	}
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	res, err := Replay(ctx, ReplayOptions{DataDir: dir, MasterKey: bytes.Repeat([]byte{7}, 32)})
	if err != nil {
		t.Fatal(err)
	}
	if got := fmt.Sprintf("%x", res.Digest); got != live.All || res.Applied != live.Applied {
		t.Fatalf("replay: digest %s at %d, live %s at %d", got, res.Applied, live.All, live.Applied)
	}
}
