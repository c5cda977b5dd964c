package log

import (
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/aurumcdp/aurum/internal/check"
)

func keyID(n int) []byte {
	b := make([]byte, 16)
	b[0], b[15] = 0xaa, byte(n)
	return b
}

// wrappedCanary is a wrapped key that can be found in the stream's files.
func wrappedCanary(node string, n int) []byte {
	return []byte(fmt.Sprintf("Canary-Wrapped-%s-%02d", node, n))
}

// TestKeysCreateGetDestroy: the first offer of an id wins and later ones get
// it; a destroy leaves a tombstone that no create overrides, also for an id
// nobody created; the destroyed key's bytes leave the stream's files.
func TestKeysCreateGetDestroy(t *testing.T) {
	dir := t.TempDir()
	l := openLog(t, testOptions(dir))
	ctx := testCtx(t)
	offers := []KeyOffer{{keyID(1), wrappedCanary("a", 1)}, {keyID(2), wrappedCanary("a", 2)}}
	got, err := l.CreateKeys(ctx, offers)
	if err != nil {
		t.Fatal(err)
	}
	for i, e := range got {
		if e.State != KeyPresent || !bytes.Equal(e.Wrapped, offers[i].Wrapped) {
			t.Fatalf("first offer %d: %+v", i, e)
		}
	}
	got, err = l.CreateKeys(ctx, []KeyOffer{{keyID(2), wrappedCanary("b", 2)}, {keyID(3), wrappedCanary("b", 3)}})
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got[0].Wrapped, wrappedCanary("a", 2)) || !bytes.Equal(got[1].Wrapped, wrappedCanary("b", 3)) {
		t.Fatalf("second offers: %q, %q; want the first creator's key and the new one", got[0].Wrapped, got[1].Wrapped)
	}
	if e, err := l.GetKey(ctx, keyID(9)); err != nil || e.State != KeyUnknown {
		t.Fatalf("GetKey of an id nobody created: %+v, %v", e, err)
	}
	if e, err := l.GetKey(ctx, keyID(1)); err != nil || e.State != KeyPresent || !bytes.Equal(e.Wrapped, wrappedCanary("a", 1)) {
		t.Fatalf("GetKey: %+v, %v", e, err)
	}
	if err := l.DestroyKeys(ctx, [][]byte{keyID(1), keyID(9)}); err != nil {
		t.Fatal(err)
	}
	if err := l.DestroyKeys(ctx, [][]byte{keyID(1), keyID(9)}); err != nil {
		t.Fatalf("destroying again: %v", err)
	}
	for _, n := range []int{1, 9} {
		if e, err := l.GetKey(ctx, keyID(n)); err != nil || e.State != KeyDestroyed || e.Wrapped != nil {
			t.Fatalf("GetKey %d after destroy: %+v, %v", n, e, err)
		}
	}
	got, err = l.CreateKeys(ctx, []KeyOffer{{keyID(1), wrappedCanary("c", 1)}, {keyID(9), wrappedCanary("c", 9)}})
	if err != nil {
		t.Fatal(err)
	}
	if got[0].State != KeyDestroyed || got[1].State != KeyDestroyed {
		t.Fatalf("creates over tombstones: %+v", got)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	found := canaries(t, dir)
	if found["a-01"] || found["c-01"] || found["c-09"] || !found["a-02"] || !found["b-03"] {
		t.Fatalf("wrapped keys on disk after destroying 1 and 9: %v", found)
	}
}

// canaries returns which wrapped canaries ("a-01", ...) are in dir's files.
func canaries(t *testing.T, dir string) map[string]bool {
	t.Helper()
	found := map[string]bool{}
	err := filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		for rest := data; ; {
			i := bytes.Index(rest, []byte("Canary-Wrapped-"))
			if i < 0 || len(rest) < i+19 {
				break
			}
			found[string(rest[i+15:i+19])] = true
			rest = rest[i+19:]
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return found
}

// createConcurrently has each log offer its own keys for ids 0..n-1, all
// at once, and returns each one's answers.
func createConcurrently(t *testing.T, logs []*Log, n int) [][]KeyEntry {
	t.Helper()
	ctx := testCtx(t)
	answers := make([][]KeyEntry, len(logs))
	errs := make([]error, len(logs))
	var wg sync.WaitGroup
	for j, l := range logs {
		offers := make([]KeyOffer, n)
		for i := range offers {
			offers[i] = KeyOffer{keyID(i), wrappedCanary(fmt.Sprint(j), i)}
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			answers[j], errs[j] = l.CreateKeys(ctx, offers)
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
	for i := range n {
		for j := range logs {
			if a := answers[j][i]; a.State != KeyPresent || !bytes.Equal(a.Wrapped, answers[0][i].Wrapped) {
				t.Fatalf("id %d: log %d answered %q, log 0 %q", i, j, a.Wrapped, answers[0][i].Wrapped)
			}
		}
	}
	return answers
}

// TestKeysConcurrentCreate: two connections offer different keys for the
// same ids at once; both are answered the same key per id.
func TestKeysConcurrentCreate(t *testing.T) {
	a := openLog(t, testOptions(t.TempDir()))
	b := openLog(t, Options{URL: a.ClientURL()})
	createConcurrently(t, []*Log{a, b}, 50)
}

// TestKeysInterruptedDestroy: a tombstone whose key record was not erased
// (a destroy that stopped in between) has it erased by the next destroy.
func TestKeysInterruptedDestroy(t *testing.T) {
	l := openLog(t, testOptions(t.TempDir()))
	ctx := testCtx(t)
	if _, err := l.CreateKeys(ctx, []KeyOffer{{keyID(1), wrappedCanary("a", 1)}}); err != nil {
		t.Fatal(err)
	}
	subject, _ := keySubject(keyID(1))
	_, last, err := l.lastKeyRecord(ctx, subject)
	if err != nil {
		t.Fatal(err)
	}
	paf, err := l.publishKeyRecord(subject, last.seq, keyRecord{kind: keyKindTombstone, erased: last.seq})
	if err != nil {
		t.Fatal(err)
	}
	if ok, err := l.waitAck(ctx, subject, paf); !ok || err != nil {
		t.Fatalf("tombstone: %v, %v", ok, err)
	}
	stream, err := l.js.Stream(ctx, StreamKeys)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := stream.GetMsg(ctx, last.seq); err != nil {
		t.Fatalf("the key record is still there before the destroy: %v", err)
	}
	if err := l.DestroyKeys(ctx, [][]byte{keyID(1)}); err != nil {
		t.Fatal(err)
	}
	if _, err := stream.GetMsg(ctx, last.seq); !errors.Is(err, jetstream.ErrMsgNotFound) {
		t.Fatalf("the key record after the destroy: %v, want it erased", err)
	}
}

// TestKeysMalformed: a message on a key subject that is not a key record
// is refused with ErrMalformedKeyRecord, by reads and by creates that lose
// to it; a bad id or wrapped key is refused before anything is published.
func TestKeysMalformed(t *testing.T) {
	l := openLog(t, testOptions(t.TempDir()))
	ctx := testCtx(t)
	subject := KeysPrefix + hex.EncodeToString(keyID(1))
	if _, err := l.js.Publish(ctx, subject, []byte{keyRecordVersion, 7, 1}); err != nil {
		t.Fatal(err)
	}
	if _, err := l.GetKey(ctx, keyID(1)); !errors.Is(err, ErrMalformedKeyRecord) {
		t.Fatalf("GetKey: %v", err)
	}
	if _, err := l.CreateKeys(ctx, []KeyOffer{{keyID(1), []byte("w")}}); !errors.Is(err, ErrMalformedKeyRecord) {
		t.Fatalf("CreateKeys: %v", err)
	}
	if err := l.DestroyKeys(ctx, [][]byte{keyID(1)}); !errors.Is(err, ErrMalformedKeyRecord) {
		t.Fatalf("DestroyKeys: %v", err)
	}
	for _, o := range []KeyOffer{{nil, []byte("w")}, {make([]byte, MaxKeyID+1), []byte("w")}, {keyID(2), nil}, {keyID(2), make([]byte, MaxWrappedKey+1)}} {
		if _, err := l.CreateKeys(ctx, []KeyOffer{o}); err == nil {
			t.Errorf("CreateKeys(id %d bytes, wrapped %d bytes): no error", len(o.ID), len(o.Wrapped))
		}
	}
	if e, err := l.GetKey(ctx, keyID(2)); err != nil || e.State != KeyUnknown {
		t.Fatalf("refused offers left %+v, %v", e, err)
	}
}

func TestDecodeKeyRecord(t *testing.T) {
	for _, r := range []keyRecord{{kind: keyKindKey, wrapped: []byte{1}}, {kind: keyKindKey, wrapped: make([]byte, MaxWrappedKey)},
		{kind: keyKindTombstone}, {kind: keyKindTombstone, erased: 1<<64 - 1}} {
		got, err := decodeKeyRecord(encodeKeyRecord(r))
		if err != nil || got.kind != r.kind || !bytes.Equal(got.wrapped, r.wrapped) || got.erased != r.erased {
			t.Errorf("round trip of %+v: %+v, %v", r, got, err)
		}
	}
	for _, b := range [][]byte{nil, {1}, {2, 1, 0}, {1, 1}, {1, 3, 0}, {1, 2, 0, 0, 0}, append([]byte{1, 1}, make([]byte, MaxWrappedKey+1)...),
		{1, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0}} {
		if _, err := decodeKeyRecord(b); !errors.Is(err, ErrMalformedKeyRecord) {
			t.Errorf("decode %x: %v, want ErrMalformedKeyRecord", b, err)
		}
	}
}

// FuzzDecodeKeyRecord: any bytes decode to a record that encodes back to
// them, or to ErrMalformedKeyRecord; never a panic.
func FuzzDecodeKeyRecord(f *testing.F) {
	f.Add(encodeKeyRecord(keyRecord{kind: keyKindKey, wrapped: []byte("wrapped")}))
	f.Add(encodeKeyRecord(keyRecord{kind: keyKindTombstone, erased: 42}))
	f.Add([]byte{})
	f.Add([]byte{1, 9})
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := decodeKeyRecord(b)
		if err != nil {
			if !errors.Is(err, ErrMalformedKeyRecord) {
				t.Fatalf("error %v is not ErrMalformedKeyRecord", err)
			}
			return
		}
		if !bytes.Equal(encodeKeyRecord(r), b) {
			t.Fatalf("%x decodes to %+v, which encodes to %x", b, r, encodeKeyRecord(r))
		}
	})
}

// TestFollowKeys: the records are handed over in stream order from the
// given sequence, keys and tombstones, later ones as they are stored; a
// malformed record is skipped; the follower ends with its context.
func TestFollowKeys(t *testing.T) {
	l := openLog(t, testOptions(t.TempDir()))
	ctx := testCtx(t)
	if _, err := l.CreateKeys(ctx, []KeyOffer{{keyID(1), []byte("w1")}, {keyID(2), []byte("w2")}}); err != nil {
		t.Fatal(err)
	}
	if _, err := l.js.Publish(ctx, KeysPrefix+"zz", []byte{keyRecordVersion, keyKindKey, 1}); err != nil {
		t.Fatal(err)
	}
	fctx, stop := context.WithCancel(ctx)
	var mu sync.Mutex
	var got []KeyRecord
	done := make(chan error, 1)
	go func() {
		done <- l.FollowKeys(fctx, 2, func(recs []KeyRecord) error {
			mu.Lock()
			got = append(got, recs...)
			mu.Unlock()
			return nil
		})
	}()
	if err := l.DestroyKeys(ctx, [][]byte{keyID(1)}); err != nil {
		t.Fatal(err)
	}
	check.For(t, 10*time.Second, 10*time.Millisecond, func() error {
		mu.Lock()
		defer mu.Unlock()
		if len(got) < 2 {
			return fmt.Errorf("%d records so far", len(got))
		}
		return nil
	})
	stop()
	if err := <-done; err != nil {
		t.Fatalf("FollowKeys after its context ended: %v", err)
	}
	if len(got) != 2 || !bytes.Equal(got[0].ID, keyID(2)) || got[0].State != KeyPresent || string(got[0].Wrapped) != "w2" ||
		!bytes.Equal(got[1].ID, keyID(1)) || got[1].State != KeyDestroyed || got[1].Seq <= got[0].Seq {
		t.Fatalf("records %+v; want key 2 (from seq 2 on), then the tombstone of key 1", got)
	}
}
