package store

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/aurumcdp/aurum/internal/check"
)

func openTestDB(t testing.TB, dir string) *DB {
	t.Helper()
	db, err := Open(dir, &Options{CacheSize: 8 << 20, MemTableSize: 4 << 20, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	return db
}

func newTestDB(t testing.TB) *DB {
	t.Helper()
	db := openTestDB(t, t.TempDir())
	t.Cleanup(func() {
		if err := db.Close(); err != nil && !errors.Is(err, ErrClosed) {
			t.Errorf("close: %v", err)
		}
	})
	return db
}

// dbRW adapts a DB to ReadWriter by committing each write in its own batch,
// so that the suite exercises reads of committed data.
type dbRW struct {
	t  *testing.T
	db *DB
}

func (d dbRW) Get(k []byte) ([]byte, error) { return d.db.Get(k) }
func (d dbRW) Scan(l, u []byte, r bool, fn func(k, v []byte) bool) error {
	return d.db.Scan(l, u, r, fn)
}
func (d dbRW) Set(k, v []byte) error { return d.apply(func(b *Batch) error { return b.Set(k, v) }) }
func (d dbRW) Delete(k []byte) error { return d.apply(func(b *Batch) error { return b.Delete(k) }) }
func (d dbRW) apply(f func(*Batch) error) error {
	b := d.db.NewBatch()
	defer b.Close()
	if err := f(b); err != nil {
		return err
	}
	return d.db.Commit(b, false)
}

func TestConformanceMem(t *testing.T) {
	runReadWriterSuite(t, func(t *testing.T) ReadWriter { return NewMem() })
}

func TestConformanceDB(t *testing.T) {
	runReadWriterSuite(t, func(t *testing.T) ReadWriter { return dbRW{t, newTestDB(t)} })
}

func TestConformanceBatch(t *testing.T) {
	runReadWriterSuite(t, func(t *testing.T) ReadWriter {
		b := newTestDB(t).NewBatch()
		t.Cleanup(func() { b.Close() })
		return b
	})
}

// TestConformanceBatchSize runs the suite on batches with room reserved
// (NewBatchSize), smaller and larger than what the suite writes.
func TestConformanceBatchSize(t *testing.T) {
	for _, size := range []int{0, 64, 1 << 20} {
		t.Run(fmt.Sprint(size), func(t *testing.T) {
			runReadWriterSuite(t, func(t *testing.T) ReadWriter {
				b := newTestDB(t).NewBatchSize(size)
				t.Cleanup(func() { b.Close() })
				return b
			})
		})
	}
}

// TestConformanceBatchOverDB splits the data between committed DB contents
// and an uncommitted batch: some keys only in the DB, some only in the
// batch, some in the DB overwritten by the batch, and DB keys deleted by the
// batch. The batch must read as exactly the data.
func TestConformanceBatchOverDB(t *testing.T) {
	runReaderSuite(t, func(t *testing.T, data map[string]string) Reader {
		db := newTestDB(t)
		keys := make([]string, 0, len(data))
		for k := range data {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		base := db.NewBatch()
		for i, k := range keys {
			v := data[k]
			switch i % 3 {
			case 0: // only in DB
				mustSet(t, base, k, v)
			case 1: // in DB, overwritten by the batch
				mustSet(t, base, k, "stale")
			}
		}
		mustSet(t, base, "a\x01", "to-delete")
		mustSet(t, base, "zz", "to-delete")
		if err := db.Commit(base, true); err != nil {
			t.Fatal(err)
		}
		base.Close()
		b := db.NewBatch()
		t.Cleanup(func() { b.Close() })
		for i, k := range keys {
			if i%3 != 0 {
				mustSet(t, b, k, data[k])
			}
		}
		mustDelete(t, b, "a\x01")
		mustDelete(t, b, "zz")
		return b
	})
}

// TestConformanceSnapshot reads a snapshot after the DB has been changed
// underneath it.
func TestConformanceSnapshot(t *testing.T) {
	runReaderSuite(t, func(t *testing.T, data map[string]string) Reader {
		db := newTestDB(t)
		rw := dbRW{t, db}
		for k, v := range data {
			mustSet(t, rw, k, v)
		}
		s := db.NewSnapshot()
		t.Cleanup(func() { s.Close() })
		for k := range data {
			mustDelete(t, rw, k)
		}
		mustSet(t, rw, "a\x01", "after-snapshot")
		mustSet(t, rw, "zz", "after-snapshot")
		if err := db.DeleteRange([]byte("a"), []byte("c"), false); err != nil {
			t.Fatal(err)
		}
		return s
	})
}

func TestPrefixEnd(t *testing.T) {
	cases := []struct{ in, want []byte }{
		{nil, nil},
		{[]byte{}, nil},
		{[]byte("a"), []byte("b")},
		{[]byte("abc"), []byte("abd")},
		{[]byte("a\xff"), []byte("b")},
		{[]byte("a\xff\xff"), []byte("b")},
		{[]byte("a\x00"), []byte("a\x01")},
		{[]byte("\xfe\xff"), []byte("\xff")},
		{[]byte("\xff"), nil},
		{[]byte("\xff\xff\xff"), nil},
	}
	for _, tc := range cases {
		in := append([]byte(nil), tc.in...)
		got := PrefixEnd(in)
		if !bytes.Equal(got, tc.want) || (got == nil) != (tc.want == nil) {
			t.Errorf("PrefixEnd(%q) = %q, want %q", tc.in, got, tc.want)
		}
		if !bytes.Equal(in, tc.in) {
			t.Errorf("PrefixEnd(%q) mutated its argument to %q", tc.in, in)
		}
		// Every key with the prefix sorts below the end.
		if got != nil {
			for _, suffix := range []string{"", "\x00", "\xff\xff\xff"} {
				k := append(append([]byte(nil), tc.in...), suffix...)
				if bytes.Compare(k, got) >= 0 {
					t.Errorf("PrefixEnd(%q) = %q is not above %q", tc.in, got, k)
				}
			}
		}
	}
}

func TestBatchSeesOwnWritesNotOthers(t *testing.T) {
	db := newTestDB(t)
	rw := dbRW{t, db}
	mustSet(t, rw, "k1", "db")
	mustSet(t, rw, "k2", "db")

	b := db.NewBatch()
	defer b.Close()
	mustSet(t, b, "k1", "batch")
	mustDelete(t, b, "k2")
	mustSet(t, b, "k3", "batch")
	if b.Count() != 3 || b.Len() == 0 {
		t.Fatalf("Count = %d, Len = %d; want 3, > 0", b.Count(), b.Len())
	}
	if got := collect(t, b, nil, nil, false, 0); !equalKVs(got, []kv{{"k1", "batch"}, {"k3", "batch"}}) {
		t.Fatalf("batch view = %q", got)
	}
	// The DB does not see uncommitted writes.
	if got := collect(t, db, nil, nil, false, 0); !equalKVs(got, []kv{{"k1", "db"}, {"k2", "db"}}) {
		t.Fatalf("db view before commit = %q", got)
	}
	// A second batch does not see the first.
	b2 := db.NewBatch()
	defer b2.Close()
	if _, err := b2.Get([]byte("k3")); !errors.Is(err, ErrNotFound) {
		t.Fatalf("other batch sees uncommitted write: %v", err)
	}
	if err := db.Commit(b, false); err != nil {
		t.Fatal(err)
	}
	if got := collect(t, db, nil, nil, false, 0); !equalKVs(got, []kv{{"k1", "batch"}, {"k3", "batch"}}) {
		t.Fatalf("db view after commit = %q", got)
	}
	if err := db.Commit(b, false); err == nil {
		t.Fatal("second commit of the same batch succeeded")
	}
	if err := b.Set([]byte("x"), nil); err == nil {
		t.Fatal("Set on a committed batch succeeded")
	}
}

func TestPersistenceAcrossReopen(t *testing.T) {
	dir := t.TempDir()
	db := openTestDB(t, dir)
	b := db.NewBatch()
	for i := 0; i < 1000; i++ {
		mustSet(t, b, fmt.Sprintf("k%04d", i), fmt.Sprintf("v%d", i))
	}
	if err := db.Commit(b, false); err != nil {
		t.Fatal(err)
	}
	b.Close()
	if err := db.DeleteRange([]byte("k0100"), []byte("k0200"), false); err != nil {
		t.Fatal(err)
	}
	// An uncommitted batch is discarded.
	b = db.NewBatch()
	mustSet(t, b, "uncommitted", "x")
	b.Close()
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); !errors.Is(err, ErrClosed) {
		t.Fatalf("second Close = %v, want ErrClosed", err)
	}
	if _, err := db.Get([]byte("k0000")); !errors.Is(err, ErrClosed) {
		t.Fatalf("Get after Close = %v, want ErrClosed", err)
	}

	db = openTestDB(t, dir)
	defer db.Close()
	n := 0
	if err := db.Scan(nil, nil, false, func(k, v []byte) bool { n++; return true }); err != nil {
		t.Fatal(err)
	}
	if n != 900 {
		t.Fatalf("after reopen %d keys, want 900", n)
	}
	if v, err := db.Get([]byte("k0999")); err != nil || string(v) != "v999" {
		t.Fatalf("Get k0999 = %q, %v", v, err)
	}
	if _, err := db.Get([]byte("k0150")); !errors.Is(err, ErrNotFound) {
		t.Fatalf("range-deleted key: %v", err)
	}
	if _, err := db.Get([]byte("uncommitted")); !errors.Is(err, ErrNotFound) {
		t.Fatalf("uncommitted key: %v", err)
	}
}

func TestDeleteRangeNilUpper(t *testing.T) {
	db := newTestDB(t)
	if err := db.DeleteRange([]byte("a"), nil, false); err == nil {
		t.Fatal("DeleteRange with nil upper succeeded")
	}
}

// TestCommitAtomic checks that readers never observe part of a batch: a
// writer commits batches that set every key to the same generation; readers
// scanning concurrently must always see a single generation.
func TestCommitAtomic(t *testing.T) {
	db := newTestDB(t)
	const keys, gens = 50, 200
	var wg sync.WaitGroup
	done := make(chan struct{})
	errc := make(chan error, 4)
	for r := 0; r < 3; r++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-done:
					return
				default:
				}
				seen := map[string]bool{}
				n := 0
				if err := db.Scan(nil, nil, false, func(k, v []byte) bool {
					seen[string(v)] = true
					n++
					return true
				}); err != nil {
					errc <- err
					return
				}
				if len(seen) > 1 || (n != 0 && n != keys) {
					errc <- fmt.Errorf("torn read: %d keys, generations %v", n, seen)
					return
				}
			}
		}()
	}
	for g := 0; g < gens; g++ {
		b := db.NewBatch()
		for k := 0; k < keys; k++ {
			mustSet(t, b, fmt.Sprintf("k%02d", k), fmt.Sprintf("g%d", g))
		}
		if err := db.Commit(b, false); err != nil {
			t.Fatal(err)
		}
		b.Close()
	}
	close(done)
	wg.Wait()
	select {
	case err := <-errc:
		t.Fatal(err)
	default:
	}
}

func TestMetrics(t *testing.T) {
	db := newTestDB(t)
	b := db.NewBatch()
	for i := 0; i < 100; i++ {
		mustSet(t, b, fmt.Sprintf("k%d", i), strings.Repeat("v", 100))
	}
	if err := db.Commit(b, true); err != nil {
		t.Fatal(err)
	}
	b.Close()
	s := db.NewSnapshot()
	m := db.Metrics()
	s.Close()
	if m.WALBytesWritten < 100*100 {
		t.Errorf("WALBytesWritten = %d, want >= %d", m.WALBytesWritten, 100*100)
	}
	if m.MemTableSize == 0 || m.MemTableCount == 0 {
		t.Errorf("memtable metrics zero: %+v", m)
	}
	if m.DiskSpaceUsage == 0 {
		t.Errorf("DiskSpaceUsage = 0")
	}
	if m.Snapshots != 1 {
		t.Errorf("Snapshots = %d, want 1", m.Snapshots)
	}
}

const crashEnv = "AURUM_STORE_CRASH_DIR"

// TestCrashDurability runs a child process that commits batches with
// sync=true, prints "committed" and waits to be killed with SIGKILL. The
// reopened DB must hold every synced batch.
func TestCrashDurability(t *testing.T) {
	if dir := os.Getenv(crashEnv); dir != "" {
		crashChild(dir)
		return
	}
	dir := t.TempDir()
	cmd := exec.Command(os.Args[0], "-test.run=^TestCrashDurability$", "-test.count=1")
	cmd.Env = append(os.Environ(), crashEnv+"="+dir)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	lines := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if sc.Text() == "committed" {
				lines <- sc.Text()
				break
			}
		}
		close(lines)
	}()
	select {
	case l, ok := <-lines:
		if !ok {
			cmd.Process.Kill()
			cmd.Wait()
			t.Fatalf("child exited without committing (%q)", l)
		}
	case <-time.After(30 * time.Second):
		cmd.Process.Kill()
		cmd.Wait()
		t.Fatal("child did not commit within 30s")
	}
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	err = cmd.Wait()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
		t.Fatalf("child was not killed by SIGKILL: %v", err)
	}

	db := openTestDB(t, dir)
	defer db.Close()
	for i := 0; i < crashBatches; i++ {
		for j := 0; j < 10; j++ {
			k := fmt.Sprintf("b%03d-%d", i, j)
			if v, err := db.Get([]byte(k)); err != nil || string(v) != k {
				t.Fatalf("after crash Get(%s) = %q, %v", k, v, err)
			}
		}
	}
}

const crashBatches = 50

func crashChild(dir string) {
	db, err := Open(dir, nil)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	for i := 0; i < crashBatches; i++ {
		b := db.NewBatch()
		for j := 0; j < 10; j++ {
			k := []byte(fmt.Sprintf("b%03d-%d", i, j))
			b.Set(k, k)
		}
		if err := db.Commit(b, true); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(2)
		}
		b.Close()
	}
	fmt.Println("committed")
	// Keep writing unsynced data until killed; it may or may not survive.
	for i := 0; ; i++ {
		b := db.NewBatch()
		b.Set([]byte(fmt.Sprintf("z%09d", i)), bytes.Repeat([]byte("x"), 100))
		db.Commit(b, false)
		b.Close()
		if i%1000 == 999 {
			time.Sleep(time.Millisecond) // pace the child, not the test
		}
	}
}

func BenchmarkBatchCommit(b *testing.B) {
	for _, n := range []int{10, 100, 1000} {
		b.Run(fmt.Sprintf("sets=%d", n), func(b *testing.B) {
			db := newTestDB(b)
			val := bytes.Repeat([]byte("v"), 100)
			key := make([]byte, 0, 32)
			b.SetBytes(int64(n * (len(val) + 16)))
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				batch := db.NewBatch()
				for j := 0; j < n; j++ {
					key = fmt.Appendf(key[:0], "key-%08d-%04d", i, j)
					if err := batch.Set(key, val); err != nil {
						b.Fatal(err)
					}
				}
				if err := db.Commit(batch, false); err != nil {
					b.Fatal(err)
				}
				batch.Close()
			}
			b.ReportMetric(float64(b.N*n)/b.Elapsed().Seconds(), "sets/s")
		})
	}
}

func TestCheckpoint(t *testing.T) {
	db, err := Open(t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	b := db.NewBatch()
	_ = b.Set([]byte("k"), []byte("v1"))
	if err := db.Commit(b, false); err != nil {
		t.Fatal(err)
	}
	b.Close()
	dir := filepath.Join(t.TempDir(), "cp")
	if err := db.Checkpoint(dir); err != nil {
		t.Fatal(err)
	}
	b = db.NewBatch()
	_ = b.Set([]byte("k"), []byte("v2")) // after the checkpoint: not in it
	if err := db.Commit(b, false); err != nil {
		t.Fatal(err)
	}
	b.Close()
	db.Close()
	cp, err := Open(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer cp.Close()
	if v, err := cp.Get([]byte("k")); err != nil || string(v) != "v1" {
		t.Fatalf("checkpoint holds %q (%v), want v1", v, err)
	}
	if err := cp.Checkpoint(dir); err == nil {
		t.Fatal("a checkpoint into an existing directory was accepted")
	}
}

// TestNoWAL checks a store without a write-ahead log: sync commits and
// range deletes work (they flush instead of syncing the WAL), and what was
// committed before Flush survives Close and a reopen, with or without NoWAL.
func TestNoWAL(t *testing.T) {
	for _, reopenNoWAL := range []bool{true, false} {
		t.Run(fmt.Sprintf("reopen-nowal=%v", reopenNoWAL), func(t *testing.T) {
			dir := t.TempDir()
			db, err := Open(dir, &Options{NoWAL: true, Logger: slog.New(slog.DiscardHandler)})
			if err != nil {
				t.Fatal(err)
			}
			b := db.NewBatch()
			mustSet(t, b, "synced", "1")
			if err := db.Commit(b, true); err != nil {
				t.Fatalf("sync commit without a WAL: %v", err)
			}
			b.Close()
			b = db.NewBatch()
			for i := 0; i < 100; i++ {
				mustSet(t, b, fmt.Sprintf("k%03d", i), "v")
			}
			if err := db.Commit(b, false); err != nil {
				t.Fatal(err)
			}
			b.Close()
			if err := db.DeleteRange([]byte("k050"), []byte("k100"), true); err != nil {
				t.Fatalf("sync delete range without a WAL: %v", err)
			}
			b = db.NewBatch()
			mustSet(t, b, "last", "x")
			if err := db.Commit(b, false); err != nil {
				t.Fatal(err)
			}
			b.Close()
			if err := db.Flush(); err != nil {
				t.Fatal(err)
			}
			if err := db.Close(); err != nil {
				t.Fatal(err)
			}
			if err := db.Flush(); !errors.Is(err, ErrClosed) {
				t.Fatalf("Flush after Close = %v, want ErrClosed", err)
			}
			db, err = Open(dir, &Options{NoWAL: reopenNoWAL, Logger: slog.New(slog.DiscardHandler)})
			if err != nil {
				t.Fatal(err)
			}
			defer db.Close()
			n := 0
			if err := db.Scan(nil, nil, false, func(k, v []byte) bool { n++; return true }); err != nil {
				t.Fatal(err)
			}
			if n != 52 { // synced, k000..k049, last
				t.Fatalf("after reopen %d keys, want 52", n)
			}
			if v, err := db.Get([]byte("last")); err != nil || string(v) != "x" {
				t.Fatalf("Get last = %q, %v", v, err)
			}
		})
	}
}

// TestBloomFilters: with BloomBitsPerKey (the default) a Get of an absent
// key is answered by the tables' filters, and every key present is still
// found; with a negative BloomBitsPerKey no filter is written or consulted.
// The keys are flushed into L0 (Pebble consults no filter in L6 for Get).
func TestBloomFilters(t *testing.T) {
	for _, tc := range []struct {
		name        string
		bits        int
		wantFilters bool
	}{
		{"default", 0, true},
		{"4 bits", 4, true},
		{"none", -1, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			db, err := Open(t.TempDir(), &Options{BloomBitsPerKey: tc.bits, MemTableSize: 1 << 20, Logger: slog.New(slog.DiscardHandler)})
			if err != nil {
				t.Fatal(err)
			}
			defer db.Close()
			const n = 3000 // 3 MB of values: more than the memtable holds
			val := bytes.Repeat([]byte("v"), 1000)
			for i := 0; i < n; i += 100 {
				b := db.NewBatch()
				for j := i; j < i+100; j++ {
					if err := b.Set(fmt.Appendf(nil, "k/%06d", j), val); err != nil {
						t.Fatal(err)
					}
				}
				if err := db.Commit(b, false); err != nil {
					t.Fatal(err)
				}
				b.Close()
			}
			check.For(t, 10*time.Second, 5*time.Millisecond, func() error {
				if db.Metrics().Flushes == 0 {
					return errors.New("no memtable was flushed")
				}
				return nil
			})
			for i := range n {
				if v, err := db.Get(fmt.Appendf(nil, "k/%06d", i)); err != nil || !bytes.Equal(v, val) {
					t.Fatalf("get k/%06d: %d bytes, %v", i, len(v), err)
				}
			}
			before := db.Metrics()
			for i := range n { // absent keys inside the tables' key ranges
				if _, err := db.Get(fmt.Appendf(nil, "k/%06dx", i)); !errors.Is(err, ErrNotFound) {
					t.Fatalf("get absent key %d: %v", i, err)
				}
			}
			after := db.Metrics()
			hits := after.FilterHits - before.FilterHits
			if tc.wantFilters && hits < n/4 { // about half the keys were flushed, the rest are in the memtable
				t.Errorf("filters avoided %d table reads for %d absent keys, want at least %d", hits, n, n/4)
			}
			if !tc.wantFilters && hits+after.FilterMisses != 0 {
				t.Errorf("no filters configured, but %d filter hits and %d misses", hits, after.FilterMisses)
			}
		})
	}
}

// TestEventsReportFlushesAndCompactions: Options.Events hears each flush of
// a memtable (with its bytes) and the compaction that the L0 tables of
// several flushes start.
func TestEventsReportFlushesAndCompactions(t *testing.T) {
	var (
		mu                  sync.Mutex
		flushes, compacted  int
		flushBytes, written uint64
	)
	ev := &Events{
		Flush: func(n uint64, d time.Duration) {
			mu.Lock()
			flushes, flushBytes = flushes+1, flushBytes+n
			mu.Unlock()
		},
		Compaction: func(level int, n uint64, d time.Duration) {
			mu.Lock()
			compacted++
			written += n
			mu.Unlock()
		},
	}
	db, err := Open(t.TempDir(), &Options{CacheSize: 8 << 20, MemTableSize: 4 << 20, Logger: slog.New(slog.DiscardHandler), Events: ev})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	const tables = 6 // more than Pebble's L0 compaction threshold (4)
	for i := range tables {
		b := db.NewBatch()
		for k := range 1000 {
			if err := b.Set([]byte(fmt.Sprintf("k%05d", k)), []byte(fmt.Sprintf("v%d-%d", i, k))); err != nil {
				t.Fatal(err)
			}
		}
		if err := db.Commit(b, false); err != nil {
			t.Fatal(err)
		}
		b.Close()
		if err := db.Flush(); err != nil {
			t.Fatal(err)
		}
	}
	check.For(t, 30*time.Second, 10*time.Millisecond, func() error {
		mu.Lock()
		defer mu.Unlock()
		if flushes < tables || flushBytes == 0 {
			return fmt.Errorf("%d flushes (%d bytes) of %d", flushes, flushBytes, tables)
		}
		if compacted == 0 || written == 0 {
			return fmt.Errorf("no compaction reported (%d)", compacted)
		}
		return nil
	})
}

// TestCommitLatency measures how long a commit takes when the committing
// goroutine syncs the WAL itself every 200 ms (the apply loop before
// session 10) against a sync in another goroutine, at several memtable
// sizes and WAL write-out settings: batches of AURUM_COMMIT_KIB KiB
// (default 75: a group of 50 new people) every 10 ms for 3 s. The figures
// are the commit latencies' quantiles (issue #15, bench/RESULTS.md "Issue
// #15 (session 10): the latency tail"). Run on purpose:
//
//	AURUM_BENCH=commitlatency go test -run TestCommitLatency -v ./store/
func TestCommitLatency(t *testing.T) {
	if os.Getenv("AURUM_BENCH") != "commitlatency" {
		t.Skip("set AURUM_BENCH=commitlatency")
	}
	kib := 75
	if v, err := strconv.Atoi(os.Getenv("AURUM_COMMIT_KIB")); err == nil && v > 0 {
		kib = v
	}
	type variant struct {
		name       string
		background bool
		mem        uint64
		perSync    int
	}
	variants := []variant{
		{"inline sync, 32 MiB memtable", false, 32 << 20, 0},
		{"background sync, 32 MiB memtable", true, 32 << 20, 0},
		{"inline sync, 10 MiB memtable", false, 10 << 20, 0},
		{"background sync, 10 MiB memtable", true, 10 << 20, 0},
		{"background sync, 10 MiB memtable, WAL write-out 512 KiB", true, 10 << 20, 512 << 10},
	}
	rounds := 3
	for r := range rounds {
		for _, v := range variants {
			db, err := Open(t.TempDir(), &Options{MemTableSize: v.mem, WALBytesPerSync: v.perSync, Logger: slog.New(slog.DiscardHandler)})
			if err != nil {
				t.Fatal(err)
			}
			syncReq := make(chan struct{}, 1)
			done := make(chan struct{})
			var syncer sync.WaitGroup
			syncer.Go(func() {
				for {
					select {
					case <-done:
						return
					case <-syncReq:
					}
					if err := db.SyncWAL(); err != nil {
						t.Error(err)
						return
					}
				}
			})
			val := bytes.Repeat([]byte("v"), 1400)
			var lat []time.Duration
			start := time.Now()
			lastSync := start
			for i := 0; time.Since(start) < 3*time.Second; i++ {
				time.Sleep(time.Until(start.Add(time.Duration(i) * 10 * time.Millisecond)))
				b := db.NewBatch()
				for j := 0; j < kib*1024/(len(val)+40); j++ {
					_ = b.Set([]byte(fmt.Sprintf("p/%08d/%04d/%020d", i, j, i*1000+j)), val)
				}
				now := time.Now()
				syncNow := now.Sub(lastSync) >= 200*time.Millisecond
				if err := db.Commit(b, syncNow && !v.background); err != nil {
					t.Fatal(err)
				}
				lat = append(lat, time.Since(now))
				b.Close()
				if syncNow {
					lastSync = now
					if v.background {
						select {
						case syncReq <- struct{}{}:
						default:
						}
					}
				}
			}
			close(done)
			syncer.Wait()
			m := db.Metrics()
			db.Close()
			sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
			q := func(f float64) string {
				return fmt.Sprintf("%.2f", float64(lat[min(len(lat)-1, int(f*float64(len(lat))))].Microseconds())/1000)
			}
			load, _ := os.ReadFile("/proc/loadavg")
			t.Logf("round %d, %-58s commit ms p50 %s p99 %s p99.9 %s max %s (%d commits, %d flushes; load %s)", r+1, v.name, q(0.5), q(0.99), q(0.999),
				q(1), len(lat), m.Flushes, strings.Fields(string(load))[0])
		}
	}
}

// TestCompression: a store written with each compression (flushed to
// tables, compressible and incompressible values) reads back the same
// keys and values after a reopen with another one; an unknown
// compression is refused at Open.
func TestCompression(t *testing.T) {
	for _, tc := range []struct{ write, read Compression }{
		{CompressionSnappy, CompressionNone},
		{CompressionFastest, CompressionSnappy},
		{CompressionNone, CompressionFastest},
	} {
		t.Run(string(tc.write), func(t *testing.T) {
			dir := t.TempDir()
			open := func(c Compression) *DB {
				db, err := Open(dir, &Options{CacheSize: 1 << 20, MemTableSize: 1 << 20, Logger: slog.New(slog.DiscardHandler), Compression: c})
				if err != nil {
					t.Fatal(err)
				}
				return db
			}
			value := func(i int) string {
				if i%2 == 0 {
					return strings.Repeat(fmt.Sprint("v", i), 40) // compressible
				}
				return fmt.Sprintf("%x", sha256Sum(i)) // not much
			}
			db := open(tc.write)
			b := db.NewBatch()
			for i := range 2000 {
				mustSet(t, b, fmt.Sprintf("k%05d", i), value(i))
			}
			if err := db.Commit(b, false); err != nil {
				t.Fatal(err)
			}
			b.Close()
			if err := db.Flush(); err != nil {
				t.Fatal(err)
			}
			if err := db.Close(); err != nil {
				t.Fatal(err)
			}
			db = open(tc.read)
			defer db.Close()
			n := 0
			if err := db.Scan(nil, nil, false, func(k, v []byte) bool {
				if want := value(n); string(k) != fmt.Sprintf("k%05d", n) || string(v) != want {
					t.Fatalf("key %d: %q = %q", n, k, v)
				}
				n++
				return true
			}); err != nil {
				t.Fatal(err)
			}
			if n != 2000 {
				t.Fatalf("%d keys after reopen, want 2000", n)
			}
		})
	}
	if _, err := Open(t.TempDir(), &Options{Compression: "zip"}); err == nil || !strings.Contains(err.Error(), "zip") {
		t.Fatalf("unknown compression: %v", err)
	}
}

func sha256Sum(i int) [32]byte { return sha256.Sum256([]byte(fmt.Sprint(i))) }
