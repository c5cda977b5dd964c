package gcr

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"hash/fnv"
	"math/rand/v2"
	"testing"

	"github.com/aurumcdp/aurum/event"
	"github.com/aurumcdp/aurum/store"
)

// hexKey is a KeyFunc like engine.InteractionKey: 16 lowercase hex digits.
func hexKey(kind, value string) string {
	h := fnv.New64a()
	h.Write([]byte(kind + "\x00" + value))
	return fmt.Sprintf("%016x", h.Sum64())
}

// rowOp is one operation of an entry of TestRowCacheChangesNoByte.
type rowOp struct {
	kind     byte // 'a' add, 'm' merge, 'd' drop
	from, to []byte
	rec      *event.Record
}

// randomEntries makes n entries of random adds (track events with and
// without interactions, pages, identifies), merges and drops over people
// profiles.
func randomEntries(r *rand.Rand, n, people int) [][]rowOp {
	const t0 = 1_780_000_000_000
	var out [][]rowOp
	seq := 0
	for range n {
		var ops []rowOp
		for range 1 + r.IntN(6) {
			p := pid(byte(1 + r.IntN(people)))
			switch x := r.IntN(20); {
			case x == 0:
				q := pid(byte(1 + r.IntN(people)))
				if !bytes.Equal(p, q) {
					ops = append(ops, rowOp{kind: 'm', from: q, to: p})
				}
			case x == 1:
				ops = append(ops, rowOp{kind: 'd', from: p})
			default:
				seq++
				id := make([]byte, 16)
				id[0] = 0x03
				binary.BigEndian.PutUint32(id[12:], uint32(seq))
				at := int64(t0 + r.Int64N(60*86_400_000))
				var rec *event.Record
				switch r.IntN(5) {
				case 0:
					rec = track(0, at, "", nil)
					rec.Kind, rec.Event = event.Page, ""
					rec.Time = t0 + int64(r.IntN(3))*86_400_000 // mostly days the row has
				case 1:
					rec = identify(0, at)
				default:
					props := map[string]any{"category": fmt.Sprint("c", r.IntN(8)), "product_id": fmt.Sprint("p", r.IntN(90))}
					if r.IntN(3) == 0 {
						props = map[string]any{"revenue": 10, "products": []any{
							map[string]any{"product_id": fmt.Sprint("p", r.IntN(90)), "category": fmt.Sprint("c", r.IntN(8))},
						}}
					}
					rec = track(0, at, []string{"Product Viewed", "Product Added", "Order Completed", "Signed In"}[r.IntN(4)], props)
				}
				rec.ID = id
				ops = append(ops, rowOp{kind: 'a', from: p, rec: rec})
			}
		}
		out = append(out, ops)
	}
	return out
}

// applyEntry runs ops in one Txn over an overlay of rw and writes the
// overlay to rw unless fail is set (a failed entry: its batch discarded).
func applyEntry(t *testing.T, p *Projection, rw store.ReadWriter, ops []rowOp, fail bool) {
	t.Helper()
	ov := store.NewOverlay(rw)
	tx := p.Begin(ov)
	for _, op := range ops {
		var err error
		switch op.kind {
		case 'a':
			err = tx.Add(op.from, op.rec, nil)
		case 'm':
			err = tx.Merge(op.from, op.to)
		case 'd':
			err = tx.Drop(op.from)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	mustFlush(t, tx)
	if !fail {
		if err := ov.WriteTo(rw); err != nil {
			t.Fatal(err)
		}
	}
}

func dump(t *testing.T, r store.Reader) map[string]string {
	t.Helper()
	m := map[string]string{}
	if err := r.Scan(nil, nil, false, func(k, v []byte) bool { m[string(k)] = string(v); return true }); err != nil {
		t.Fatal(err)
	}
	return m
}

// TestRowCacheChangesNoByte: the row cache and the rewrite of unchanged
// rows are memos. Entries of adds, merges and drops, some of them failing
// (their writes discarded after Flush, as a failed apply step's batch is),
// leave byte-identical stores with them and without them (every row
// decoded on load and encoded on Flush); the cache is used (rows are
// taken, not decoded), and a dropped profile's row leaves it.
func TestRowCacheChangesNoByte(t *testing.T) {
	withCache := New(&Options{Partitions: 4, InteractionKey: hexKey})
	without := New(&Options{Partitions: 4, InteractionKey: hexKey, RowCacheBytes: -1})
	without.encodeRows = true
	sc, sn := store.NewMem(), store.NewMem()
	r := rand.New(rand.NewPCG(5, 6))
	for i, ops := range randomEntries(r, 400, 12) {
		fail := r.IntN(6) == 0
		applyEntry(t, withCache, sc, ops, fail)
		applyEntry(t, without, sn, ops, fail)
		if i%20 == 0 || i == 399 {
			dc, dn := dump(t, sc), dump(t, sn)
			if len(dc) != len(dn) {
				t.Fatalf("entry %d: %d keys with the cache, %d without", i, len(dc), len(dn))
			}
			for k, v := range dn {
				if dc[k] != v {
					t.Fatalf("entry %d: key %x differs with the cache:\n got %x\nwant %x", i, k, dc[k], v)
				}
			}
		}
	}
	st := withCache.rows.stats()
	if st.hits < 100 || st.misses == 0 {
		t.Errorf("row cache: %d hits, %d misses; want hits (rows handed on) and misses (failed entries)", st.hits, st.misses)
	}
	if n := without.rows.len(); n != 0 {
		t.Errorf("disabled row cache holds %d rows", n)
	}

	// A dropped (merged-away or erased) profile's row leaves the cache.
	a := pid(77)
	tx := withCache.Begin(sc)
	mustAdd(t, tx, a, track(1, 1_780_000_000_000, "Product Viewed", map[string]any{"category": "c1"}))
	mustFlush(t, tx)
	shard := PartitionOf(a, withCache.parts)
	if !withCache.rows.has(shard, a) {
		t.Fatal("a flushed row is not cached")
	}
	tx = withCache.Begin(sc)
	if err := tx.Drop(a); err != nil {
		t.Fatal(err)
	}
	mustFlush(t, tx)
	if withCache.rows.has(shard, a) {
		t.Error("the row of a dropped profile stays in the cache")
	}
}

// TestRowCacheBound: the cache holds at most about its bound.
func TestRowCacheBound(t *testing.T) {
	p := New(&Options{Partitions: 1, InteractionKey: hexKey, RowCacheBytes: 64 << 10})
	rw := store.NewMem()
	for i := range 200 {
		tx := p.Begin(rw)
		id := pid(byte(i))
		for j := range 10 {
			mustAdd(t, tx, id, track(byte(j), int64(1_780_000_000_000+j*86_400_000), "Product Viewed",
				map[string]any{"category": fmt.Sprint("c", j), "product_id": fmt.Sprint("p", i, "-", j)}))
		}
		mustFlush(t, tx)
	}
	s := &p.rows.shards[0]
	var held int
	for _, m := range []map[string]cachedRow{s.cur, s.old} {
		for k, r := range m {
			held += r.size([]byte(k))
		}
	}
	if held > 64<<10 || p.rows.len() == 0 {
		t.Errorf("the cache holds %d rows of %d bytes, bound %d", p.rows.len(), held, 64<<10)
	}
}
