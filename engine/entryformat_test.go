package engine

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/aurumcdp/aurum/event"
	"github.com/aurumcdp/aurum/projections"
	"github.com/aurumcdp/aurum/store"
	"github.com/vmihailenco/msgpack/v5"
)

// entryFormatEvents returns Segment events that exercise every record field:
// traits, properties of every JSON shape (small, negative and big integers,
// floats, nulls, nested objects and arrays), context, sentAt, consent,
// aliases that merge profiles, and repeated messageIds.
func entryFormatEvents(t *testing.T, round, n int) []event.Event {
	t.Helper()
	now := time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC)
	var evs []event.Event
	for i := range n {
		p := i % 7
		var js string
		switch i % 5 {
		case 0:
			js = fmt.Sprintf(`{"type":"track","event":"Order Completed","userId":"u-%d","messageId":"m-%d-%d",
				"properties":{"revenue":%d.5,"qty":%d,"neg":-%d,"big":12345678901,"f":1e300,"none":null,"ok":true,
				"items":[{"sku":"S-%d","n":1},[],{}],"text":"%s"},"sentAt":"2026-11-01T11:59:00Z"}`,
				p, round, i, i, i*37, i*1000, i, string(bytes.Repeat([]byte("y"), i*3)))
		case 1:
			js = fmt.Sprintf(`{"type":"identify","userId":"u-%d","messageId":"m-%d-%d","traits":{"email":"P%d@Example.com",
				"name":"Person %d","plan":"gold","consent":{"email":true,"sms":false},"age":%d},"context":{"ip":"10.0.0.%d","page":{"url":"https://x/%d"}}}`,
				p, round, i, p, p, 20+i, i%250, i)
		case 2:
			js = fmt.Sprintf(`{"type":"page","name":"Home","anonymousId":"a-%d-%d","messageId":"m-%d-%d","context":{"device":{"type":"Mobile"}}}`,
				round, i, round, i)
		case 3:
			js = fmt.Sprintf(`{"type":"alias","userId":"u-%d","previousId":"a-%d-%d","messageId":"m-%d-%d"}`, p, round, i-1, round, i)
		case 4:
			js = fmt.Sprintf(`{"type":"track","event":"Viewed","anonymousId":"a-%d-%d","messageId":"m-0-%d","properties":{}}`, round, i, i-4) // repeats a messageId of round 0
		}
		ev, err := event.Parse([]byte(js), "", event.ParseOptions{Now: now})
		if err != nil {
			t.Fatalf("event %d: %v\n%s", i, err, js)
		}
		evs = append(evs, ev)
	}
	return evs
}

func openFormatEngine(t *testing.T, dir string, legacy bool) *Engine {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	e, err := Open(ctx, Options{DataDir: dir, NATSListen: "127.0.0.1:-1", MasterKey: bytes.Repeat([]byte{7}, 32),
		Partitions: 4, legacyEncoding: legacy})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	return e
}

func ingestAndWait(t *testing.T, e *Engine, evs []event.Event) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for lo := 0; lo < len(evs); lo += 10 {
		if err := e.Ingest(ctx, "web", evs[lo:min(lo+10, len(evs))]); err != nil {
			t.Fatalf("Ingest: %v", err)
		}
	}
	last, err := e.log.LastSeq(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := e.WaitApplied(ctx, last); err != nil {
		t.Fatal(err)
	}
}

type logEntry struct {
	seq           uint64
	subject       string
	data          []byte
	binary        bool
	legacy, newer []byte // the events entry in either form
}

// readLog reads the log up to last, with every events entry also in both
// forms.
func readLog(t *testing.T, e *Engine, last uint64) []logEntry {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	r, err := e.log.NewReader(1)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	var out []logEntry
	for {
		en, err := r.Next(ctx)
		if err != nil {
			t.Fatal(err)
		}
		le := logEntry{seq: en.Seq, subject: en.Subject, data: en.Data, legacy: en.Data, newer: en.Data}
		if en.Subject == projections.SubjectEvents {
			le.binary = event.IsBinaryBatch(en.Data)
			var b event.Batch
			if le.binary {
				b, err = event.DecodeBatch(en.Data)
			} else {
				err = msgpack.Unmarshal(en.Data, &b)
			}
			if err != nil {
				t.Fatalf("entry %d: %v", en.Seq, err)
			}
			if le.newer, err = event.EncodeBatch(&b); err != nil {
				t.Fatal(err)
			}
			recs := make([]msgpack.RawMessage, len(b.Records))
			for i := range b.Records {
				if recs[i], err = encodeSorted(&b.Records[i]); err != nil {
					t.Fatal(err)
				}
			}
			if le.legacy, err = msgpack.Marshal(&struct {
				ID       []byte               `msgpack:"id"`
				Received int64                `msgpack:"rt"`
				Records  []msgpack.RawMessage `msgpack:"r"`
			}{b.ID, b.Received, recs}); err != nil {
				t.Fatal(err)
			}
		}
		out = append(out, le)
		if en.Seq >= last {
			return out
		}
	}
}

// TestEntryFormatsGiveEqualProjections: a data directory whose log holds
// msgpack entries (written as earlier versions did) followed by binary
// ones replays to the digest of the live state, and the same log applied
// with every events entry in msgpack or every one in the binary form builds
// identical stores, key by key (stored event records, GCRs, outboxes).
func TestEntryFormatsGiveEqualProjections(t *testing.T) {
	dir := t.TempDir()
	e := openFormatEngine(t, dir, true)
	if _, err := e.CreateSource(context.Background(), "web"); err != nil {
		t.Fatal(err)
	}
	ingestAndWait(t, e, entryFormatEvents(t, 0, 60))
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}

	e = openFormatEngine(t, dir, false)
	ingestAndWait(t, e, entryFormatEvents(t, 1, 60))
	live, err := e.Digest()
	if err != nil {
		t.Fatal(err)
	}
	log := readLog(t, e, live.Applied)
	var sealOpen = e.keys.Open
	var nLegacy, nBinary int
	for _, le := range log {
		if le.subject == projections.SubjectEvents {
			if le.binary {
				nBinary++
			} else {
				nLegacy++
			}
		}
	}
	if nLegacy == 0 || nBinary == 0 {
		t.Fatalf("log has %d msgpack and %d binary events entries; want both", nLegacy, nBinary)
	}

	apply := func(form func(logEntry) []byte) *store.Mem {
		s := store.NewMem()
		if _, err := projections.CheckPartitions(s, 4); err != nil { // as Open does
			t.Fatal(err)
		}
		sm := projections.New(projections.Options{Partitions: 4, DedupWindow: e.opts.DedupWindow.Milliseconds(), Open: sealOpen})
		for _, le := range log {
			if _, err := sm.Apply(s, le.seq, le.subject, form(le)); err != nil {
				t.Fatalf("apply %d: %v", le.seq, err)
			}
		}
		return s
	}
	asLogged := apply(func(le logEntry) []byte { return le.data })
	allLegacy := apply(func(le logEntry) []byte { return le.legacy })
	allBinary := apply(func(le logEntry) []byte { return le.newer })
	dl, db := digestOfMem(t, allLegacy), digestOfMem(t, allBinary)
	if dl != db || dl != digestOfMem(t, asLogged) {
		t.Fatalf("digests differ: msgpack %s, binary %s, as logged %s", dl, db, digestOfMem(t, asLogged))
	}
	if dl != live.All {
		t.Fatalf("replayed digest %s, live %s (at %d)", dl, live.All, live.Applied)
	}
	if diff := diffStores(allLegacy, allBinary); diff != "" {
		t.Fatalf("stores differ: %s", diff)
	}
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
}

func digestOfMem(t *testing.T, s *store.Mem) string {
	t.Helper()
	d, err := digestOf(s)
	if err != nil {
		t.Fatal(err)
	}
	return d.All
}

// diffStores compares two stores key by key ("" when equal).
func diffStores(a, b *store.Mem) string {
	ka, kb := memKeys(a), memKeys(b)
	if len(ka) != len(kb) {
		return fmt.Sprintf("%d keys vs %d", len(ka), len(kb))
	}
	for i := range ka {
		if !bytes.Equal(ka[i], kb[i]) {
			return fmt.Sprintf("key %q vs %q", ka[i], kb[i])
		}
		va, _ := a.Get(ka[i])
		vb, err := b.Get(kb[i])
		if err != nil && !errors.Is(err, store.ErrNotFound) {
			return err.Error()
		}
		if !bytes.Equal(va, vb) {
			return fmt.Sprintf("value of %q differs", ka[i])
		}
	}
	return ""
}

func memKeys(s *store.Mem) [][]byte {
	var keys [][]byte
	_ = s.Scan(nil, nil, false, func(k, _ []byte) bool {
		keys = append(keys, bytes.Clone(k))
		return true
	})
	return keys
}

// encodeSorted encodes v as the legacy entries did: msgpack, map keys
// sorted, compact integers.
func encodeSorted(v any) ([]byte, error) {
	var buf bytes.Buffer
	enc := msgpack.NewEncoder(&buf)
	enc.SetSortMapKeys(true)
	enc.UseCompactInts(true)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}
