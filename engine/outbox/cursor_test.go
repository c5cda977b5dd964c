package outbox

import (
	"context"
	"encoding/binary"
	"slices"
	"strconv"
	"testing"
	"time"

	alog "github.com/aurumcdp/aurum/log"
	"github.com/aurumcdp/aurum/projections"
	"github.com/aurumcdp/aurum/store"
	"github.com/nats-io/nats.go"
	"github.com/vmihailenco/msgpack/v5"
)

// liveDB is a State whose live store the test swaps.
type liveDB struct{ db *store.DB }

func (s *liveDB) Live(fn func(*store.DB, *projections.StateMachine) error) error {
	return fn(s.db, nil) // merge records: nothing to decorate
}

func openStore(t *testing.T) *store.DB {
	t.Helper()
	db, err := store.Open(t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = db.Close() })
	return db
}

// putRow writes a merge record at the global outbox's key for log position seq.
func putRow(t *testing.T, db *store.DB, seq uint64) {
	t.Helper()
	v, err := msgpack.Marshal(&projections.OutMsg{Subject: "aurum.identity.merged", MsgID: "m" + strconv.FormatUint(seq, 10), Data: []byte(`{}`)})
	if err != nil {
		t.Fatal(err)
	}
	key := binary.BigEndian.AppendUint32(binary.BigEndian.AppendUint64([]byte("ob/"), seq), 0)
	b := db.NewBatch()
	defer b.Close()
	if err := b.Set(key, v); err != nil {
		t.Fatal(err)
	}
	if err := db.Commit(b, false); err != nil {
		t.Fatal(err)
	}
}

// mergedLog opens a log and subscribes to the merge records' subject:
// the message ids published there arrive on the channel.
func mergedLog(t *testing.T, ctx context.Context) (*alog.Log, <-chan string) {
	t.Helper()
	l, err := alog.Open(ctx, alog.Options{Dir: t.TempDir(), Listen: "127.0.0.1:-1"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	nc, err := nats.Connect(l.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	got := make(chan string, 64)
	if _, err := nc.Subscribe("aurum.identity.merged", func(m *nats.Msg) { got <- m.Header.Get(nats.MsgIdHdr) }); err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	return l, got
}

// drainPass runs one pass of e's drainOutbox (at most max a outbox) and
// checks that it published the rows of wantSeqs (putRow's), in order; it
// returns how many outboxes the pass scanned.
func drainPass(t *testing.T, ctx context.Context, e *Publisher, got <-chan string, max int, wantSeqs ...uint64) int {
	t.Helper()
	scans := e.scans
	n, err := e.drainOutbox(ctx, max)
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for range n {
		select {
		case id := <-got:
			ids = append(ids, id)
		case <-ctx.Done():
			t.Fatalf("%d of %d published messages received", len(ids), n)
		}
	}
	var want []string
	for _, s := range wantSeqs {
		want = append(want, "m"+strconv.FormatUint(s, 10))
	}
	if !slices.Equal(ids, want) {
		t.Fatalf("published %v, want %v", ids, want)
	}
	return e.scans - scans
}

// TestDrainCursor: each pass scans an outbox from after the last row it
// deleted, so rows go out in key order across passes; a row written below
// the cursor (no writer does that but a store swap) goes out after the
// periodic rescan, and at once from a swapped-in store.
func TestDrainCursor(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	l, got := mergedLog(t, ctx)
	state := &liveDB{db: openStore(t)}
	e := New(Options{Partitions: 2}, l, nil, state, nil)
	drain := func(wantSeqs ...uint64) {
		t.Helper()
		drainPass(t, ctx, e, got, 4, wantSeqs...)
	}
	for seq := uint64(10); seq < 16; seq++ {
		putRow(t, state.db, seq)
	}
	drain(10, 11, 12, 13)   // at most 4 per outbox and pass
	putRow(t, state.db, 5)  // below the cursor (13)
	putRow(t, state.db, 30) // above it
	drain(14, 15, 30)
	drain()
	if left, err := projections.Outbox(state.db, []byte("ob/"), 0); err != nil || len(left) != 1 {
		t.Fatalf("outbox holds %d rows (%v), want the one below the cursor", len(left), err)
	}
	e.rescan()
	drain(5)

	state.db = openStore(t) // a rebuild swapped the live store
	putRow(t, state.db, 1)
	drain(1)
	if left, err := projections.Outbox(state.db, []byte("ob/"), 0); err != nil || len(left) != 0 {
		t.Fatalf("outbox holds %d rows (%v) after the drain", len(left), err)
	}
}
