package store

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/bloom"
	"github.com/cockroachdb/pebble/v2/sstable"
)

// ErrClosed is returned by operations on a closed DB.
var ErrClosed = errors.New("store: closed")

// Options configures a DB. A nil *Options is valid and means all defaults.
type Options struct {
	// CacheSize is the size in bytes of the block cache. Default 64 MB.
	CacheSize int64
	// MemTableSize is the size in bytes of one memtable. Default 32 MB.
	MemTableSize uint64
	// Logger receives Pebble's log messages. Default slog.Default().
	Logger *slog.Logger
	// NoWAL writes without a write-ahead log: faster, but every write not
	// yet flushed to an sstable is lost when the process dies. What
	// survives is always a prefix of the commits (a memtable holds whole
	// batches and memtables are flushed in order), so it suits a store
	// whose owner can derive the lost commits again (the engine's live
	// state, from the log: engine.Options.StateWAL) or throws it away
	// after a crash (a replay's state-rebuild/). A sync Commit or
	// DeleteRange flushes the memtable instead, Checkpoint flushes before
	// it copies, and the owner must call Flush before it relies on the
	// data (Close does not flush). Default false: every write goes
	// through the WAL.
	NoWAL bool
	// BloomBitsPerKey is the size of the bloom filter written into every
	// sstable, on every level, in bits per key. A Get of a key that a table
	// does not hold then usually skips the table's data blocks: the
	// look-ups of absent keys (a new message id in the dedup table, a new
	// identifier) and of keys that live in a lower level. 10 bits give
	// about 1 % false positives for 1.25 bytes per key on disk and in the
	// block cache. Default 10; negative: no filters (tables written
	// earlier keep whatever they have).
	BloomBitsPerKey int
	// Tuning sets Pebble's LSM shape; the zero value keeps Pebble's
	// defaults. Results never depend on it, only the work of flushes and
	// compactions (bench/RESULTS.md, "Issue #15 (session 10): write
	// amplification").
	Tuning Tuning
	// WALBytesPerSync makes the WAL's writer ask the OS to start writing
	// its data out every so many bytes (sync_file_range on Linux, from
	// Pebble's WAL goroutine), so that a sync, and the sync of a memtable
	// rotation, which closes the WAL on the committing goroutine, find
	// less to write. 0: none (Pebble's default).
	WALBytesPerSync int
	// Events, when set, receives what Pebble reports about the background
	// work that can hold up commits (write stalls, memtable flushes,
	// compactions, slow disk operations). Nil: none.
	Events *Events
	// Compression is how sstable blocks are compressed (CompressionFastest,
	// CompressionSnappy, CompressionNone). Default CompressionFastest: in
	// BenchmarkApplyCPU its compression and decompression took 30 % less
	// CPU than Snappy's and its tables were no larger (bench/RESULTS.md,
	// "Issue #15 (session 10): the apply path"). A store created at an
	// older format major version than MinLZ needs gets Snappy instead.
	Compression Compression
}

// Tuning is the LSM shape of a store. Zero fields keep Pebble's defaults.
type Tuning struct {
	// L0CompactionThreshold is the read amplification of L0 (sublevels)
	// at which an L0 compaction starts (Pebble: 4).
	L0CompactionThreshold int
	// L0StopWritesThreshold stops writes when L0 reaches that many
	// sublevels (Pebble: 12).
	L0StopWritesThreshold int
	// LBaseMaxBytes is the size of the base level (Pebble: 64 MB).
	LBaseMaxBytes int64
	// L0TargetFileSize is the target size of L0's tables; each level
	// below doubles it (Pebble: 2 MB).
	L0TargetFileSize int64
	// ValueSeparationMin, when positive, writes values of at least that
	// many bytes into blob files instead of the sstables, so compactions
	// move references instead of the values (Pebble's value separation).
	ValueSeparationMin int
	// MaxConcurrentCompactions bounds Pebble's compactions running at once
	// (Pebble: 1).
	MaxConcurrentCompactions int
}

// apply sets t's non-zero fields on po.
func (t Tuning) apply(po *pebble.Options) {
	if t.L0CompactionThreshold > 0 {
		po.L0CompactionThreshold = t.L0CompactionThreshold
	}
	if t.L0StopWritesThreshold > 0 {
		po.L0StopWritesThreshold = t.L0StopWritesThreshold
	}
	if t.LBaseMaxBytes > 0 {
		po.LBaseMaxBytes = t.LBaseMaxBytes
	}
	if t.L0TargetFileSize > 0 {
		for i := range po.TargetFileSizes {
			po.TargetFileSizes[i] = t.L0TargetFileSize << i
		}
	}
	if t.ValueSeparationMin > 0 {
		min := t.ValueSeparationMin
		po.Experimental.ValueSeparationPolicy = func() pebble.ValueSeparationPolicy {
			return pebble.ValueSeparationPolicy{Enabled: true, MinimumSize: min, MaxBlobReferenceDepth: 10,
				RewriteMinimumAge: 5 * time.Minute, TargetGarbageRatio: 0.2}
		}
	}
	if t.MaxConcurrentCompactions > 0 {
		n := t.MaxConcurrentCompactions
		po.CompactionConcurrencyRange = func() (int, int) { return 1, n }
	}
}

// Events receives Pebble's reports of the work that can hold up a commit:
// a write stall makes Commit wait until a memtable flush or an L0
// compaction has made room. Each field may be nil. They are called from
// Pebble's goroutines (a stall's from the committing one) and must return
// quickly.
type Events struct {
	// WriteStall is called when commits start waiting (begin, with Pebble's
	// reason: too many memtables queued for flushing, or too many L0
	// sublevels) and when they stop (end: reason "").
	WriteStall func(begin bool, reason string)
	// Flush is called after a memtable flush: the bytes of the memtables
	// flushed and the time it took (writing and syncing the tables, then
	// installing them).
	Flush func(bytes uint64, d time.Duration)
	// Compaction is called after a compaction: its output level, the
	// bytes it wrote and the time it took.
	Compaction func(level int, bytes uint64, d time.Duration)
	// WALRotated is called when a new WAL file replaced the previous one:
	// a full memtable was rotated out, and the commit that rotated it
	// closed (and synced) the previous WAL.
	WALRotated func()
	// DiskSlow is called when a write or sync to a file took longer than
	// Pebble's threshold (5 s by default).
	DiskSlow func(path string, d time.Duration)
}

// listener is the pebble.EventListener of ev.
func (ev *Events) listener() pebble.EventListener {
	var l pebble.EventListener
	if ev.WriteStall != nil {
		l.WriteStallBegin = func(i pebble.WriteStallBeginInfo) { ev.WriteStall(true, i.Reason) }
		l.WriteStallEnd = func() { ev.WriteStall(false, "") }
	}
	if ev.Flush != nil {
		l.FlushEnd = func(i pebble.FlushInfo) {
			if i.Err == nil {
				ev.Flush(i.InputBytes, i.TotalDuration)
			}
		}
	}
	if ev.Compaction != nil {
		l.CompactionEnd = func(i pebble.CompactionInfo) {
			if i.Err == nil {
				var n uint64
				for _, t := range i.Output.Tables {
					n += t.Size
				}
				ev.Compaction(i.Output.Level, n, i.TotalDuration)
			}
		}
	}
	if ev.WALRotated != nil {
		l.WALCreated = func(pebble.WALCreateInfo) { ev.WALRotated() }
	}
	if ev.DiskSlow != nil {
		l.DiskSlow = func(i pebble.DiskSlowInfo) { ev.DiskSlow(i.Path, i.Duration) }
	}
	return l
}

// Compression names a compression of sstable blocks (Options.Compression).
// It changes the files' sizes and the CPU time of flushes, compactions and
// block reads, never a key or value.
type Compression string

const (
	// CompressionSnappy compresses every block with Snappy, Pebble's
	// default and Aurum's before session 10; a block that shrinks by less
	// than 12 % is stored as it is (likewise for CompressionFastest).
	CompressionSnappy Compression = "snappy"
	// CompressionFastest uses Pebble's fastest algorithm (MinLZ; Snappy on
	// arm64, where MinLZ has no assembly).
	CompressionFastest Compression = "fastest"
	// CompressionNone stores blocks uncompressed.
	CompressionNone Compression = "none"
)

func (c Compression) profile() (*sstable.CompressionProfile, error) {
	switch c {
	case CompressionSnappy:
		return sstable.SnappyCompression, nil
	case CompressionFastest:
		return sstable.FastestCompression, nil
	case CompressionNone:
		return sstable.NoCompression, nil
	}
	return nil, fmt.Errorf("store: unknown compression %q", string(c))
}

const (
	defaultCacheSize       = 64 << 20
	defaultMemTableSize    = 32 << 20
	defaultBloomBitsPerKey = 10
	defaultCompression     = CompressionFastest
)

// EnsureDefaults returns a copy of o with zero fields set to their defaults.
func (o *Options) EnsureDefaults() Options {
	var r Options
	if o != nil {
		r = *o
	}
	if r.CacheSize <= 0 {
		r.CacheSize = defaultCacheSize
	}
	if r.MemTableSize == 0 {
		r.MemTableSize = defaultMemTableSize
	}
	if r.Logger == nil {
		r.Logger = slog.Default()
	}
	if r.BloomBitsPerKey == 0 {
		r.BloomBitsPerKey = defaultBloomBitsPerKey
	}
	if r.Compression == "" {
		r.Compression = defaultCompression
	}
	return r
}

// DB is a Pebble database. It is safe for concurrent use. Reads through DB
// see committed data; writes go through a Batch and Commit.
type DB struct {
	db     *pebble.DB
	noWAL  bool // Options.NoWAL
	closed atomic.Bool
}

var _ Reader = (*DB)(nil)

// Open opens (creating if needed) the Pebble database in dir.
func Open(dir string, opts *Options) (*DB, error) {
	o := opts.EnsureDefaults()
	comp, err := o.Compression.profile()
	if err != nil {
		return nil, err
	}
	cache := pebble.NewCache(o.CacheSize)
	defer cache.Unref() // Pebble holds its own reference while open.
	po := &pebble.Options{
		Cache:        cache,
		MemTableSize: o.MemTableSize,
		Logger:       slogAdapter{o.Logger},
		// New stores start at the newest format; existing ones are ratcheted
		// explicitly, never implicitly.
		FormatMajorVersion: pebble.FormatNewest,
		DisableWAL:         o.NoWAL,
		WALBytesPerSync:    o.WALBytesPerSync,
	}
	if o.Events != nil {
		po.AddEventListener(o.Events.listener())
	}
	for i := range po.Levels {
		po.Levels[i].Compression = func() *sstable.CompressionProfile { return comp }
	}
	if o.BloomBitsPerKey > 0 {
		// Levels[i] defaults to Levels[i-1]'s policy only for L1+; set
		// them all so that L0, where fresh keys land, has filters too.
		for i := range po.Levels {
			po.Levels[i].FilterPolicy = bloom.FilterPolicy(o.BloomBitsPerKey)
		}
	}
	o.Tuning.apply(po)
	pdb, err := pebble.Open(dir, po)
	if err != nil {
		return nil, fmt.Errorf("store: open %s: %w", dir, err)
	}
	return &DB{db: pdb, noWAL: o.NoWAL}, nil
}

// Get implements Reader.
func (db *DB) Get(key []byte) ([]byte, error) {
	if db.closed.Load() {
		return nil, ErrClosed
	}
	return get(db.db, key)
}

// Scan implements Reader.
func (db *DB) Scan(lower, upper []byte, reverse bool, fn func(k, v []byte) bool) error {
	if db.closed.Load() {
		return ErrClosed
	}
	return scan(db.db, lower, upper, reverse, fn)
}

// NewBatch returns an indexed batch: its Get and Scan see its own writes
// merged over the DB's committed contents. The caller must Close it, whether
// or not it was committed. A Batch is not safe for concurrent use.
func (db *DB) NewBatch() *Batch {
	return &Batch{b: db.db.NewIndexedBatch()}
}

// NewBatchSize is NewBatch with room for about size bytes of writes
// reserved up front, so that a batch of a known size is not grown (and
// copied) step by step.
func (db *DB) NewBatchSize(size int) *Batch {
	return &Batch{b: db.db.NewIndexedBatchWithSize(max(size, 0))}
}

// Commit applies b atomically. With sync set, the WAL is fsynced before
// Commit returns, so the batch survives a crash. A batch can be committed
// once; it must still be closed afterwards.
func (db *DB) Commit(b *Batch, sync bool) error {
	if db.closed.Load() {
		return ErrClosed
	}
	if b.committed {
		return errors.New("store: commit: batch already committed")
	}
	if err := db.db.Apply(b.b, writeOpts(sync && !db.noWAL)); err != nil {
		return fmt.Errorf("store: commit: %w", err)
	}
	b.committed = true
	if sync && db.noWAL {
		return db.Flush()
	}
	return nil
}

// SyncWAL makes every commit so far durable: it syncs the write-ahead log
// (with NoWAL, it flushes the memtables).
func (db *DB) SyncWAL() error {
	if db.noWAL {
		return db.Flush()
	}
	if err := db.db.LogData(nil, pebble.Sync); err != nil {
		return fmt.Errorf("store: sync: %w", err)
	}
	return nil
}

// Flush writes the memtables to sstables and waits for it: with NoWAL, the
// writes committed so far then survive Close and a crash.
func (db *DB) Flush() error {
	if db.closed.Load() {
		return ErrClosed
	}
	if err := db.db.Flush(); err != nil {
		return fmt.Errorf("store: flush: %w", err)
	}
	return nil
}

// NewSnapshot returns a point-in-time Reader of the DB. The caller must Close
// it before closing the DB.
func (db *DB) NewSnapshot() *Snapshot {
	return &Snapshot{s: db.db.NewSnapshot()}
}

// DeleteRange deletes every key in [lower, upper). upper must not be nil.
func (db *DB) DeleteRange(lower, upper []byte, sync bool) error {
	if db.closed.Load() {
		return ErrClosed
	}
	if upper == nil {
		return errors.New("store: delete range: nil upper bound")
	}
	if err := db.db.DeleteRange(lower, upper, writeOpts(sync && !db.noWAL)); err != nil {
		return fmt.Errorf("store: delete range: %w", err)
	}
	if sync && db.noWAL {
		return db.Flush()
	}
	return nil
}

// Metrics is a snapshot of numbers worth exporting.
type Metrics struct {
	DiskSpaceUsage   uint64 // bytes of live and obsolete files on disk
	MemTableSize     uint64 // bytes allocated by memtables
	MemTableCount    int64
	BlockCacheSize   int64 // bytes in use by the block cache
	BlockCacheHits   int64
	BlockCacheMisses int64
	WALFiles         int64
	WALBytesWritten  uint64
	Flushes          int64
	Compactions      int64
	CompactionDebt   uint64 // estimated bytes still to compact
	ReadAmp          int    // sublevels in L0 plus non-empty levels
	Snapshots        int    // open snapshots
	FilterHits       int64  // table reads a bloom filter avoided (the key was not there)
	FilterMisses     int64  // filter checks that could not avoid the read
	// The LSM's work since Open, in bytes: what came in through the
	// memtables (the WAL's bytes, or the batches' without a WAL), what
	// flushes and compactions wrote to sstables and blob files, and what
	// compactions read.
	BytesIn, BytesFlushed, BytesCompacted, BytesCompactionRead uint64
	// Levels holds each level's tables and bytes, L0 first.
	Levels [7]LevelMetrics
}

// LevelMetrics is one LSM level's share of Metrics.
type LevelMetrics struct {
	Tables                                int64
	Size                                  int64 // bytes of its sstables
	BytesIn, BytesFlushed, BytesCompacted uint64
	BytesRead                             uint64 // read by compactions into the level
}

// WriteAmp is the bytes flushes and compactions wrote per byte that came
// in (Pebble's write amplification, the WAL not counted).
func (m Metrics) WriteAmp() float64 {
	if m.BytesIn == 0 {
		return 0
	}
	return float64(m.BytesFlushed+m.BytesCompacted) / float64(m.BytesIn)
}

// Sub returns m − o for the cumulative byte counts (the work between two
// snapshots); the gauges are m's.
func (m Metrics) Sub(o Metrics) Metrics {
	r := m
	r.WALBytesWritten -= o.WALBytesWritten
	r.Flushes -= o.Flushes
	r.Compactions -= o.Compactions
	r.BytesIn -= o.BytesIn
	r.BytesFlushed -= o.BytesFlushed
	r.BytesCompacted -= o.BytesCompacted
	r.BytesCompactionRead -= o.BytesCompactionRead
	for i := range r.Levels {
		r.Levels[i].BytesIn -= o.Levels[i].BytesIn
		r.Levels[i].BytesFlushed -= o.Levels[i].BytesFlushed
		r.Levels[i].BytesCompacted -= o.Levels[i].BytesCompacted
		r.Levels[i].BytesRead -= o.Levels[i].BytesRead
	}
	return r
}

// Metrics returns current metrics.
func (db *DB) Metrics() Metrics {
	if db.closed.Load() {
		return Metrics{}
	}
	m := db.db.Metrics()
	r := Metrics{
		DiskSpaceUsage:   m.DiskSpaceUsage(),
		MemTableSize:     m.MemTable.Size,
		MemTableCount:    m.MemTable.Count,
		BlockCacheSize:   m.BlockCache.Size,
		BlockCacheHits:   m.BlockCache.Hits,
		BlockCacheMisses: m.BlockCache.Misses,
		WALFiles:         m.WAL.Files,
		WALBytesWritten:  m.WAL.BytesWritten,
		Flushes:          m.Flush.Count,
		Compactions:      m.Compact.Count,
		CompactionDebt:   m.Compact.EstimatedDebt,
		ReadAmp:          m.ReadAmp(),
		Snapshots:        m.Snapshots.Count,
		FilterHits:       m.Filter.Hits,
		FilterMisses:     m.Filter.Misses,
		BytesIn:          m.WAL.BytesWritten,
	}
	for i := range r.Levels {
		l := &m.Levels[i]
		r.BytesIn += l.TableBytesIngested
		r.BytesFlushed += l.TableBytesFlushed + l.BlobBytesFlushed
		r.BytesCompacted += l.TableBytesCompacted + l.BlobBytesCompacted
		r.BytesCompactionRead += l.TableBytesRead
		r.Levels[i] = LevelMetrics{Tables: l.TablesCount, Size: l.TablesSize, BytesIn: l.TableBytesIn,
			BytesFlushed: l.TableBytesFlushed + l.BlobBytesFlushed, BytesCompacted: l.TableBytesCompacted + l.BlobBytesCompacted,
			BytesRead: l.TableBytesRead}
	}
	return r
}

// LSM returns Pebble's own table of the LSM's metrics, for reports.
func (db *DB) LSM() string {
	if db.closed.Load() {
		return ""
	}
	return db.db.Metrics().String()
}

// Close closes the DB. Every Batch and Snapshot must be closed first.
// Closing twice returns ErrClosed.
func (db *DB) Close() error {
	if db.closed.Swap(true) {
		return ErrClosed
	}
	if err := db.db.Close(); err != nil {
		return fmt.Errorf("store: close: %w", err)
	}
	return nil
}

// Batch is an indexed write batch (see DB.NewBatch).
type Batch struct {
	b         *pebble.Batch
	committed bool
}

var _ ReadWriter = (*Batch)(nil)

// Get implements Reader: the batch's own writes over the DB.
func (b *Batch) Get(key []byte) ([]byte, error) { return get(b.b, key) }

// Scan implements Reader: the batch's own writes over the DB.
func (b *Batch) Scan(lower, upper []byte, reverse bool, fn func(k, v []byte) bool) error {
	return scan(b.b, lower, upper, reverse, fn)
}

// Set implements Writer.
func (b *Batch) Set(key, value []byte) error {
	if b.committed {
		return errors.New("store: set: batch already committed")
	}
	return b.b.Set(key, value, nil)
}

// Delete implements Writer.
func (b *Batch) Delete(key []byte) error {
	if b.committed {
		return errors.New("store: delete: batch already committed")
	}
	return b.b.Delete(key, nil)
}

// Len returns the size in bytes of the batch's encoded writes.
func (b *Batch) Len() int { return b.b.Len() }

// Writes calls fn for each write of the batch, in the order they were
// made (del: a Delete, value nil), until fn returns false. The slices are
// valid only during the call. For measurements (bytes written by key
// family); Apply never needs it.
func (b *Batch) Writes(fn func(key, value []byte, del bool) bool) error {
	r := b.b.Reader()
	for {
		kind, k, v, ok, err := r.Next()
		if err != nil {
			return fmt.Errorf("store: batch writes: %w", err)
		}
		if !ok {
			return nil
		}
		del := kind == pebble.InternalKeyKindDelete || kind == pebble.InternalKeyKindSingleDelete
		if del {
			v = nil
		}
		if !fn(k, v, del) {
			return nil
		}
	}
}

// Count returns the number of writes in the batch.
func (b *Batch) Count() uint32 { return b.b.Count() }

// Close releases the batch. An uncommitted batch is discarded.
func (b *Batch) Close() error { return b.b.Close() }

// Snapshot is a point-in-time Reader (see DB.NewSnapshot).
type Snapshot struct {
	s *pebble.Snapshot
}

var _ Reader = (*Snapshot)(nil)

// Get implements Reader.
func (s *Snapshot) Get(key []byte) ([]byte, error) { return get(s.s, key) }

// Scan implements Reader.
func (s *Snapshot) Scan(lower, upper []byte, reverse bool, fn func(k, v []byte) bool) error {
	return scan(s.s, lower, upper, reverse, fn)
}

// Close releases the snapshot.
func (s *Snapshot) Close() error { return s.s.Close() }

func writeOpts(sync bool) *pebble.WriteOptions {
	if sync {
		return pebble.Sync
	}
	return pebble.NoSync
}

// pebbleReader is what DB, indexed Batch and Snapshot have in common.
type pebbleReader interface {
	Get(key []byte) ([]byte, io.Closer, error)
	NewIter(o *pebble.IterOptions) (*pebble.Iterator, error)
}

func get(r pebbleReader, key []byte) ([]byte, error) {
	v, closer, err := r.Get(key)
	if errors.Is(err, pebble.ErrNotFound) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("store: get: %w", err)
	}
	out := append([]byte(nil), v...)
	if err := closer.Close(); err != nil {
		return nil, fmt.Errorf("store: get: %w", err)
	}
	return out, nil
}

func scan(r pebbleReader, lower, upper []byte, reverse bool, fn func(k, v []byte) bool) (err error) {
	if upper != nil && bytes.Compare(lower, upper) >= 0 {
		return nil // empty or inverted range; Pebble requires lower < upper
	}
	if len(lower) == 0 {
		lower = nil // an empty lower bound means "from the start"
	}
	it, err := r.NewIter(&pebble.IterOptions{LowerBound: lower, UpperBound: upper})
	if err != nil {
		return fmt.Errorf("store: scan: %w", err)
	}
	defer func() {
		if cerr := it.Close(); cerr != nil && err == nil {
			err = fmt.Errorf("store: scan: %w", cerr)
		}
	}()
	if reverse {
		for ok := it.Last(); ok; ok = it.Prev() {
			if !fn(it.Key(), it.Value()) {
				return nil
			}
		}
	} else {
		for ok := it.First(); ok; ok = it.Next() {
			if !fn(it.Key(), it.Value()) {
				return nil
			}
		}
	}
	if err := it.Error(); err != nil {
		return fmt.Errorf("store: scan: %w", err)
	}
	return nil
}

// slogAdapter routes Pebble's logger to slog.
type slogAdapter struct{ l *slog.Logger }

// Infof logs at Debug level: Pebble's informational messages (WAL replay,
// compactions) are too chatty for Info.
func (a slogAdapter) Infof(format string, args ...any) {
	a.l.Debug(fmt.Sprintf(format, args...), "component", "pebble")
}

func (a slogAdapter) Errorf(format string, args ...any) {
	a.l.Error(fmt.Sprintf(format, args...), "component", "pebble")
}

// Fatalf is called by Pebble on unrecoverable conditions (corruption). It
// logs and panics so that the owner's stack is visible.
func (a slogAdapter) Fatalf(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	a.l.Error(msg, "component", "pebble", "fatal", true)
	panic("store: pebble fatal: " + msg)
}

// Checkpoint writes a consistent, openable copy of the database to dir
// (which must not exist), with the WAL (with NoWAL, the memtables)
// flushed first: a snapshot that Open
// can use as a data directory. Files are hard-linked where possible.
func (db *DB) Checkpoint(dir string) error {
	if db.closed.Load() {
		return ErrClosed
	}
	if db.noWAL {
		// The memtables are in no file: flush them for the copy.
		if err := db.Flush(); err != nil {
			return err
		}
	}
	if err := db.db.Checkpoint(dir, pebble.WithFlushedWAL()); err != nil {
		return fmt.Errorf("store: checkpoint %s: %w", dir, err)
	}
	return nil
}

// Compact flushes the memtable and compacts every file overlapping [lower,
// upper) to the bottom level, so that deleted keys of that range leave the
// database's sstables (a crypto-shredded key must not survive in an old
// file). Older write-ahead logs are obsolete after the flush; Pebble may
// keep one for recycling until it is overwritten. upper must not be nil.
func (db *DB) Compact(lower, upper []byte) error {
	if db.closed.Load() {
		return ErrClosed
	}
	if upper == nil {
		return errors.New("store: compact: nil upper bound")
	}
	if err := db.db.Flush(); err != nil {
		return fmt.Errorf("store: compact: flush: %w", err)
	}
	if err := db.db.Compact(context.Background(), lower, upper, false); err != nil {
		return fmt.Errorf("store: compact: %w", err)
	}
	return nil
}
