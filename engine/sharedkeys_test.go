package engine

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"path/filepath"
	"reflect"
	"testing"
	"time"

	"github.com/aurumcdp/aurum/engine/privacy"
	"github.com/aurumcdp/aurum/event"
	"github.com/aurumcdp/aurum/internal/check"
	alog "github.com/aurumcdp/aurum/log"
	"github.com/aurumcdp/aurum/seal"
	"github.com/aurumcdp/aurum/store"
)

// openEngine opens an engine closed when the test ends.
func openEngine(t *testing.T, ctx context.Context, opts Options) *Engine {
	t.Helper()
	if opts.DataDir == "" {
		opts.DataDir = t.TempDir()
	}
	if opts.NATSListen == "" {
		opts.NATSListen = "127.0.0.1:-1"
	}
	opts.TickPeriod = -1
	e, err := Open(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := e.Close(); err != nil {
			t.Errorf("close: %v", err)
		}
	})
	return e
}

// TestSharedKeysTwoEngines: two engines on one NATS server (own data
// directories, the same master key, SharedKeys) apply the same log. What A
// sealed, B opens: the same GCR traits and revenue. A third engine without
// SharedKeys cannot (the control). An erasure on A makes B destroy its own
// copy of the person's keys, and D, down during the erasure, destroys its
// copy when it catches up.
func TestSharedKeysTwoEngines(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	master := bytes.Repeat([]byte{9}, seal.MasterKeySize)
	a := openEngine(t, ctx, Options{MasterKey: master, SharedKeys: true, NATSNoAuth: true})
	b := openEngine(t, ctx, Options{MasterKey: master, SharedKeys: true, NATSURL: a.NATSURL()})
	c := openEngine(t, ctx, Options{MasterKey: master, NATSURL: a.NATSURL()})
	dOpts := Options{MasterKey: master, SharedKeys: true, NATSURL: a.NATSURL(), DataDir: t.TempDir()}
	d := openEngine(t, ctx, dOpts)

	if _, err := a.Gate().CreateSource(ctx, "web"); err != nil {
		t.Fatal(err)
	}
	for _, js := range []string{
		`{"type":"identify","userId":"u1","traits":{"email":"alice@example.com","name":"Alice","plan":{"tier":"gold"}},"timestamp":"2026-01-01T00:00:00Z"}`,
		`{"type":"track","event":"Order Completed","userId":"u1","properties":{"revenue":42.5,"currency":"EUR"},"timestamp":"2026-01-01T00:01:00Z"}`,
	} {
		ev, err := event.Parse([]byte(js), "", a.Edge().ParseOptions())
		if err != nil {
			t.Fatal(err)
		}
		if err := a.Edge().Ingest(ctx, "web", []event.Event{ev}); err != nil {
			t.Fatal(err)
		}
	}
	for _, e := range []*Engine{a, b, c, d} {
		if err := e.Sync(ctx); err != nil {
			t.Fatal(err)
		}
	}
	va, err := a.Reader().Profile("user_id:u1")
	if err != nil {
		t.Fatal(err)
	}
	vb, err := b.Reader().Profile("user_id:u1")
	if err != nil {
		t.Fatal(err)
	}
	if va.Traits["name"] != "Alice" || va.Redacted {
		t.Fatalf("A's own view: traits %v, redacted %v", va.Traits, va.Redacted)
	}
	if !reflect.DeepEqual(va.Traits, vb.Traits) || vb.Redacted {
		t.Fatalf("B's traits %v (redacted %v), want A's %v", vb.Traits, vb.Redacted, va.Traits)
	}
	if !reflect.DeepEqual(va.Revenue, vb.Revenue) || len(va.Revenue) == 0 {
		t.Fatalf("B's revenue %v, want A's %v", vb.Revenue, va.Revenue)
	}
	if !reflect.DeepEqual(va.Identifiers, vb.Identifiers) {
		t.Fatalf("B's identifiers %v, want A's %v", vb.Identifiers, va.Identifiers)
	}
	// B's key follower has written A's keys to B's keys database.
	check.For(t, 30*time.Second, 10*time.Millisecond, func() error {
		if pos, err := b.keys.AdoptedPosition(); err != nil || pos == 0 {
			return fmt.Errorf("B adopted up to %d (%v)", pos, err)
		}
		return nil
	})
	// The control: without the shared keys, C reads nothing A sealed.
	vc, err := c.Reader().Profile("user_id:u1")
	if err != nil {
		t.Fatal(err)
	}
	if !vc.Redacted || vc.Traits["name"] != nil || len(vc.Revenue) != 0 {
		t.Fatalf("C without shared keys: traits %v, revenue %v, redacted %v", vc.Traits, vc.Revenue, vc.Redacted)
	}

	// B and D now hold the person's keys in their own keys databases.
	kid := b.keys.Hash("user_id", "u1")
	for _, e := range []*Engine{b, d} {
		if _, err := e.keys.Seal(kid, []byte("x")); err != nil {
			t.Fatalf("before the erasure: %v", err)
		}
	}
	// D is down during the erasure.
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	info, err := a.Privacy().RequestErasure(ctx, "user_id:u1")
	if err != nil {
		t.Fatal(err)
	}
	check.For(t, 30*time.Second, 10*time.Millisecond, func() error {
		st, err := b.Privacy().Erasure(info.ID)
		if err != nil {
			return err
		}
		if st.Status != privacy.ErasureCompleted {
			return errors.New("erasure not completed on B")
		}
		if _, err := b.keys.Seal(kid, []byte("x")); !errors.Is(err, seal.ErrKeyDestroyed) {
			return errors.New("B still holds the person's key")
		}
		return nil
	})
	// D catches up at its next start (the request and the completion in
	// one group, usually: its worker never sees the erasure pending, and
	// the start-time re-destroy ran before the catch-up) and destroys its
	// copy on applying the completion.
	d = openEngine(t, ctx, dOpts)
	check.For(t, 30*time.Second, 10*time.Millisecond, func() error {
		if _, err := d.keys.Seal(kid, []byte("x")); !errors.Is(err, seal.ErrKeyDestroyed) {
			return errors.New("D still holds the person's key after its restart")
		}
		return nil
	})
	if _, err := a.keys.Seal(kid, []byte("x")); !errors.Is(err, seal.ErrKeyDestroyed) {
		t.Fatalf("A after the erasure: %v", err)
	}
	if g, err := a.log.GetKey(ctx, kid); err != nil || g.State != alog.KeyDestroyed {
		t.Fatalf("AURUM_KEYS after the erasure: %+v, %v", g, err)
	}
}

// BenchmarkEnsureSharedKeys: Ensure of 256 new key ids (one ingest batch of
// new people) on a keyring alone and on one whose keys are shared through
// AURUM_KEYS on an embedded server (the same fsync setting: default). The
// ratio is the cost of shared keys per batch of new people; keys already
// known cost nothing more (the cache answers).
func BenchmarkEnsureSharedKeys(b *testing.B) {
	for _, shared := range []bool{false, true} {
		b.Run(fmt.Sprintf("shared=%v", shared), func(b *testing.B) {
			ctx := context.Background()
			l, err := alog.Open(ctx, alog.Options{Dir: filepath.Join(b.TempDir(), "js"), Listen: "127.0.0.1:-1"})
			if err != nil {
				b.Fatal(err)
			}
			defer l.Close()
			db, err := store.Open(filepath.Join(b.TempDir(), "keys"), keysStoreOptions(nil))
			if err != nil {
				b.Fatal(err)
			}
			defer db.Close()
			var o seal.Options
			if shared {
				o.Shared = sharedKeys{func() *alog.Log { return l }}
			}
			k, err := seal.NewKeyring(db, bytes.Repeat([]byte{3}, seal.MasterKeySize), &o)
			if err != nil {
				b.Fatal(err)
			}
			const batch = 256
			ids := make([][]byte, batch)
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				for j := range ids {
					ids[j] = make([]byte, 16)
					binary.BigEndian.PutUint64(ids[j][8:], uint64(i*batch+j))
				}
				if err := k.Ensure(ids); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.N*batch)/b.Elapsed().Seconds(), "keys/s")
		})
	}
}

// BenchmarkOpenSharedMiss: a node opens values under keys another node
// created (its first open of each key reads AURUM_KEYS, on an embedded
// server, and keeps it) against opens under keys in its own keys database
// (the key caches hold one key: every open reads keys/). It is what a node
// pays in its apply loop for each person another node created.
func BenchmarkOpenSharedMiss(b *testing.B) {
	ctx := context.Background()
	l, err := alog.Open(ctx, alog.Options{Dir: filepath.Join(b.TempDir(), "js"), Listen: "127.0.0.1:-1"})
	if err != nil {
		b.Fatal(err)
	}
	defer l.Close()
	master := bytes.Repeat([]byte{3}, seal.MasterKeySize)
	keyring := func(shared bool) *seal.Keyring {
		db, err := store.Open(filepath.Join(b.TempDir(), "keys"), keysStoreOptions(nil))
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { db.Close() })
		o := seal.Options{CacheKeys: 1, CacheRawKeys: -1}
		if shared {
			o.Shared = sharedKeys{func() *alog.Log { return l }}
		}
		k, err := seal.NewKeyring(db, master, &o)
		if err != nil {
			b.Fatal(err)
		}
		return k
	}
	creator := keyring(true)
	const n = 20000
	ids := make([][]byte, n)
	sealed := make([][]byte, n)
	for i := range ids {
		ids[i] = make([]byte, 16)
		binary.BigEndian.PutUint64(ids[i][8:], uint64(i))
	}
	for i := 0; i < n; i += 1000 {
		if err := creator.Ensure(ids[i : i+1000]); err != nil {
			b.Fatal(err)
		}
	}
	for i := range ids {
		if sealed[i], err = creator.Seal(ids[i], []byte("v")); err != nil {
			b.Fatal(err)
		}
	}
	for _, shared := range []bool{false, true} {
		b.Run(fmt.Sprintf("shared=%v", shared), func(b *testing.B) {
			k := creator // every key is in its keys database, not cached
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if shared && i%n == 0 {
					b.StopTimer()
					k = keyring(true) // every key is a local miss
					b.StartTimer()
				}
				if _, err := k.Open(ids[i%n], sealed[i%n]); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// TestSharedKeysAfterRunningAlone: a node that ran without SharedKeys and
// restarts with them puts its keys into AURUM_KEYS at start (Share), so a
// second node opens what it sealed before.
func TestSharedKeysAfterRunningAlone(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	master := bytes.Repeat([]byte{5}, seal.MasterKeySize)
	dir := t.TempDir()
	alone, err := Open(ctx, Options{DataDir: dir, NATSListen: "127.0.0.1:-1", MasterKey: master, NATSNoAuth: true, TickPeriod: -1})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := alone.Gate().CreateSource(ctx, "web"); err != nil {
		t.Fatal(err)
	}
	ev, err := event.Parse([]byte(`{"type":"identify","userId":"u1","traits":{"name":"Alice"},"timestamp":"2026-01-01T00:00:00Z"}`), "", alone.Edge().ParseOptions())
	if err != nil {
		t.Fatal(err)
	}
	if err := alone.Edge().Ingest(ctx, "web", []event.Event{ev}); err != nil {
		t.Fatal(err)
	}
	if err := alone.Close(); err != nil {
		t.Fatal(err)
	}
	a := openEngine(t, ctx, Options{DataDir: dir, MasterKey: master, NATSNoAuth: true, SharedKeys: true})
	b := openEngine(t, ctx, Options{MasterKey: master, SharedKeys: true, NATSURL: a.NATSURL()})
	if err := b.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	v, err := b.Reader().Profile("user_id:u1")
	if err != nil {
		t.Fatal(err)
	}
	if v.Traits["name"] != "Alice" || v.Redacted {
		t.Fatalf("B reads traits %v (redacted %v), want what A sealed alone", v.Traits, v.Redacted)
	}
}
