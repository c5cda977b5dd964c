// Package gcr maintains the Golden Customer Record (GCR): one record per
// profile, folded from the events the identity keychain assigned to it.
//
// The GCR is a deterministic function of the event log. The engine calls a Txn
// from its single-threaded apply loop: Add for each event once the keychain has
// named the event's profile and the identifiers that profile owns, Merge when
// the keychain merges two profiles, and Flush at the end of the apply step.
// The package never reads the wall clock and never decrypts: personal values
// (identifier values, trait values, the record's private part) are copied as
// sealed bytes together with the id of the data key that sealed them. Views
// decrypt through a caller-supplied Opener, so the package stays key-agnostic.
//
// # Semantics
//
// A Profile is an element of a join-semilattice (counts are a commutative
// monoid): Add and Merge are commutative and associative, so any order of
// events and any order of merges yields byte-identical encoded profiles,
// but for the decayed scores of the feature row (below). One log order
// always gives the same bytes.
//   - counts and revenue sums add; FirstSeen/LastSeen take min/max;
//   - an identifier keeps the sealed value and key of its earliest sighting
//     by (time, event id) and the min/max of its sighting times;
//   - a trait is last-writer-wins by (time, event id), event ids compared
//     bytewise (ties, possible only when one event id is reused, fall back to
//     comparing key id and sealed bytes so the order stays total);
//   - consent per channel (event.ConsentChannels) is last-writer-wins by
//     (time, event id) like a trait, so after a merge the latest statement
//     made under any of the person's identifiers holds; an exact tie goes to
//     the withdrawal;
//   - MergedFrom is the set union of merged profile ids;
//   - the feature row (package features) is joined by Features.Join:
//     exact and order-independent but for its decayed scores, which are
//     equal within float64 rounding, and for its documented caps.
//
// Revenue: a track event whose properties.revenue (or, when revenue is absent
// or null, properties.total) is a number or a numeric string adds one to the
// count of its event name and its value, in integer micro-units rounded half
// away from zero, to the sum. Non-numeric values, NaN, ±Inf and values with
// |v| > MaxRevenue are ignored. Sums are exact integers (they would wrap
// modulo 2^64 only beyond ±9.2e12 units, which keeps them order-independent).
//
// # Key layout
//
// Profiles are spread over Options.Partitions partitions by PartitionOf (FNV-1a
// 32 of the 16-byte profile id, mod n). part is a big-endian uint16:
//
//	p/<part:2>/g/<profile:16>                       → Profile (codec.go)
//	p/<part:2>/e/<profile:16>/<time:8>/<event:16>   → event.Record (record.go: the body codec of event/codec.go)
//
// time is the event time in Unix milliseconds as a big-endian uint64, clamped
// at 0 (events before 1970 sort as 1970-01-01). Event records stay under the
// profile that received them; a merged-away profile's GCR key is deleted but
// its event keys remain, and the survivor lists it in MergedFrom.
//
// Encodings are deterministic: every map is written with sorted keys, so
// equal profiles encode to equal bytes (codec.go for profiles, record.go
// for event records).
package gcr

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/fnv"

	"github.com/aurumcdp/aurum/event"
	"github.com/aurumcdp/aurum/projections/features"
	"github.com/aurumcdp/aurum/store"
)

// Key layout constants.
//
// Event records (issue #15) are stored once each under
//
//	ev/ <event id> <profile>
//
// the event's ULID (assigned at ingest) first, so that records arrive in
// key order: Pebble moves them down its levels as whole files instead of
// rewriting them with every compaction of the partitions' state (they
// were 80 % of the state store's bytes, and written once, never changed).
// Each is indexed under its profile by
//
//	p/ <part> /e/ <profile> / <time> / <event id>
//
// with an empty value (the index key names the record): a profile's
// events are listed by a scan of its index and a Get per record.
const (
	idLen          = 16
	profileKeyLen  = 2 + 2 + 3 + idLen              // p/ part /g/ profile
	eventPrefixLen = 2 + 2 + 3 + idLen + 1          // p/ part /e/ profile /
	eventKeyLen    = eventPrefixLen + 8 + 1 + idLen // ... time / event
	recordKeyLen   = len(RecordPrefix) + 2*idLen    // ev/ event profile
	maxPartitions  = 1 << 16
)

// RecordPrefix is the key prefix of the event records (see the key layout).
const RecordPrefix = "ev/"

// indexValue is the value of an event index entry.
var indexValue = []byte{}

// DefaultPartitions is the number of partitions used when Options.Partitions is 0.
const DefaultPartitions = 16

// ErrCorrupt marks stored data that does not decode or breaks an invariant.
var ErrCorrupt = errors.New("gcr: corrupt")

// Options configure a Projection. A nil *Options is valid.
type Options struct {
	// Partitions is the number of key partitions (1..65536); 0 means
	// DefaultPartitions. It must not change once data is written.
	Partitions int
	// NoFeatures turns the feature projection off: the baseline of the
	// benchmark of its cost, nothing else. It changes the stored state, so
	// a store must always be applied with one setting.
	NoFeatures bool
	// InteractionKey, when set, has the feature row keep the events'
	// category and product interactions (features.AddInteractions) under
	// the keys it maps their values to: a keyed hash, never the value
	// (the engine's: seal.Keyring.Hash). nil: no interactions are kept.
	InteractionKey features.KeyFunc
	// RowCacheBytes bounds the cache of decoded feature rows that Txns
	// hand to each other (rows.go); 0 means DefaultRowCacheBytes, < 0
	// turns it off. It changes no stored byte.
	RowCacheBytes int
}

// EnsureDefaults fills zero fields with their defaults and returns o (a new
// Options if o is nil). It panics on invalid values: they are programmer errors.
func (o *Options) EnsureDefaults() *Options {
	if o == nil {
		o = &Options{}
	}
	if o.Partitions == 0 {
		o.Partitions = DefaultPartitions
	}
	if o.Partitions < 1 || o.Partitions > maxPartitions {
		panic(fmt.Sprintf("gcr: Options.Partitions %d out of range 1..%d", o.Partitions, maxPartitions))
	}
	if o.RowCacheBytes == 0 {
		o.RowCacheBytes = DefaultRowCacheBytes
	}
	return o
}

// Projection is the GCR projection. It holds configuration and the row
// cache (rows.go: no stored state) and is safe for concurrent use; Txns are
// not, and the Txns of one partition must run one after the other.
type Projection struct {
	parts      int
	noFeatures bool
	interKey   features.KeyFunc
	rows       *rowCache
	// encodeRows has Flush encode every feature row, never writing the
	// loaded encoding of an unchanged one again (tests: the reference).
	encodeRows bool
}

// New returns a Projection. opts may be nil.
func New(opts *Options) *Projection {
	var o Options
	if opts != nil {
		o = *opts
	}
	o.EnsureDefaults()
	return &Projection{parts: o.Partitions, noFeatures: o.NoFeatures, interKey: o.InteractionKey,
		rows: newRowCache(o.RowCacheBytes, o.Partitions)}
}

// RowCacheUse is the bytes the row cache holds, as it counts them against
// Options.RowCacheBytes (both generations: at most the bound). Safe for
// concurrent use.
func (p *Projection) RowCacheUse() int { return p.rows.use() }

// PartitionOf returns the partition of a profile id: FNV-1a 32 of its bytes,
// mod n. n must be positive.
func PartitionOf(profile []byte, n int) int {
	if n <= 0 {
		panic("gcr: PartitionOf: n must be positive")
	}
	h := fnv.New32a()
	h.Write(profile)
	return int(h.Sum32() % uint32(n))
}

func (p *Projection) profileKey(profile []byte) []byte {
	k := make([]byte, 0, profileKeyLen)
	k = append(k, 'p', '/')
	k = binary.BigEndian.AppendUint16(k, uint16(PartitionOf(profile, p.parts)))
	k = append(k, '/', 'g', '/')
	return append(k, profile...)
}

func (p *Projection) eventPrefix(profile []byte) []byte {
	k := make([]byte, 0, eventKeyLen)
	k = append(k, 'p', '/')
	k = binary.BigEndian.AppendUint16(k, uint16(PartitionOf(profile, p.parts)))
	k = append(k, '/', 'e', '/')
	k = append(k, profile...)
	return append(k, '/')
}

func (p *Projection) eventKey(profile []byte, t int64, id []byte) []byte {
	k := p.eventPrefix(profile)
	k = binary.BigEndian.AppendUint64(k, uint64(max(t, 0)))
	k = append(k, '/')
	return append(k, id...)
}

// recordKey is the key of the record of event id stored under profile.
func recordKey(id, profile []byte) []byte {
	k := make([]byte, 0, recordKeyLen)
	k = append(k, RecordPrefix...)
	k = append(k, id...)
	return append(k, profile...)
}

// RecordProfile returns the profile a record key (RecordPrefix…) is stored
// under; ok is false for a key of another length.
func RecordProfile(k []byte) (profile []byte, ok bool) {
	if len(k) != recordKeyLen {
		return nil, false
	}
	return k[len(RecordPrefix)+idLen:], true
}

// recordOf returns the record key an event index key names (k must be
// eventKeyLen long).
func recordOf(k []byte) []byte {
	return recordKey(k[eventKeyLen-idLen:], k[eventPrefixLen-1-idLen:eventPrefixLen-1])
}

// MoveTo returns where the value of an event index entry written before
// records had their own key range (the record was the entry's value) goes:
// its record key. ok is false for a key that is not an index entry's.
func MoveTo(indexKey []byte) (recKey []byte, ok bool) {
	if len(indexKey) != eventKeyLen || !bytes.Equal(indexKey[4:7], []byte("/e/")) {
		return nil, false
	}
	return recordOf(indexKey), true
}

// IndexValue is the value of an event index entry (empty).
func IndexValue() []byte { return indexValue }

// readRecord returns the stored record an event index key names: a copy.
func readRecord(r store.Reader, k []byte) ([]byte, error) {
	v, err := r.Get(recordOf(k))
	if errors.Is(err, store.ErrNotFound) {
		return nil, fmt.Errorf("event index %x without its record: %w", k, ErrCorrupt)
	}
	return v, err
}

// Get returns the stored GCR of profile, or an error wrapping store.ErrNotFound.
func (p *Projection) Get(r store.Reader, profile []byte) (*Profile, error) {
	if len(profile) != idLen {
		return nil, fmt.Errorf("gcr: get: profile id has %d bytes, want %d", len(profile), idLen)
	}
	prof, err := p.load(r, profile)
	if err != nil {
		return nil, fmt.Errorf("gcr: get: %w", err)
	}
	return prof, nil
}

// load reads and decodes the GCR of profile; store.ErrNotFound passes through.
func (p *Projection) load(r store.Reader, profile []byte) (*Profile, error) {
	prof, row, err := p.loadRow(r, profile)
	if err != nil {
		return nil, err
	}
	if row != nil {
		if prof.Features, err = features.Decode(row); err != nil {
			return nil, fmt.Errorf("profile %x: %w: %v", profile, ErrCorrupt, err)
		}
	}
	return prof, nil
}

// loadRow reads and decodes the GCR of profile but for its feature row,
// whose encoding it returns (nil: none; a sub-slice of the value read,
// which store.Reader.Get copies); store.ErrNotFound passes through.
func (p *Projection) loadRow(r store.Reader, profile []byte) (*Profile, []byte, error) {
	v, err := r.Get(p.profileKey(profile))
	if err != nil {
		return nil, nil, err
	}
	prof, row, err := decodeRow(v)
	if err != nil {
		return nil, nil, fmt.Errorf("profile %x: decode: %w", profile, err)
	}
	if !bytes.Equal(prof.ID, profile) {
		return nil, nil, fmt.Errorf("profile %x: stored id %x: %w", profile, prof.ID, ErrCorrupt)
	}
	return prof, row, nil
}

// Events returns up to limit event records of prof, newest first by (event
// time clamped at 0, event id), read from prof.ID and every id in
// prof.MergedFrom: one bounded reverse scan per id (at most limit keys each),
// combined by a k-way merge. Only the returned records are decoded. limit <= 0
// returns nothing.
func (p *Projection) Events(r store.Reader, prof *Profile, limit int) ([]event.Record, error) {
	recs, _, err := p.EventsBefore(r, prof, nil, limit)
	return recs, err
}

// EventOrderLen is the length of an event's order key: its time (Unix ms,
// clamped at 0, u64 big-endian), '/', its id (16 bytes).
const EventOrderLen = 8 + 1 + idLen

// EventOrder returns the order key of an event at time t (Unix ms) with
// id: EventsBefore's cursor form.
func EventOrder(t int64, id []byte) []byte {
	k := binary.BigEndian.AppendUint64(make([]byte, 0, EventOrderLen), uint64(max(t, 0)))
	return append(append(k, '/'), id...)
}

// EventsBefore is Events from before on: up to limit records of prof
// whose order key (EventOrder) is below before (nil: from the newest),
// newest first, and the order keys of the records returned (the last one
// is the cursor of the next page). before must be nil or EventOrderLen
// bytes long.
func (p *Projection) EventsBefore(r store.Reader, prof *Profile, before []byte, limit int) ([]event.Record, [][]byte, error) {
	if prof == nil || limit <= 0 {
		return nil, nil, nil
	}
	if before != nil && len(before) != EventOrderLen {
		return nil, nil, fmt.Errorf("gcr: events: cursor has %d bytes, want %d", len(before), EventOrderLen)
	}
	ids := make([][]byte, 0, 1+len(prof.MergedFrom))
	ids = append(ids, prof.ID)
	ids = append(ids, prof.MergedFrom...)

	type item struct{ order, key []byte } // order: time(8) '/' id(16); key: the index key
	runs := make([][]item, 0, len(ids))
	for _, id := range ids {
		if len(id) != idLen {
			return nil, nil, fmt.Errorf("gcr: events: profile id %x has %d bytes: %w", id, len(id), ErrCorrupt)
		}
		prefix := p.eventPrefix(id)
		var run []item
		var bad []byte
		upper := store.PrefixEnd(prefix)
		if before != nil {
			upper = append(bytes.Clone(prefix), before...)
		}
		err := r.Scan(prefix, upper, true, func(k, _ []byte) bool {
			if len(k) != eventKeyLen {
				bad = append([]byte(nil), k...)
				return false
			}
			key := bytes.Clone(k)
			run = append(run, item{order: key[eventPrefixLen:], key: key})
			return len(run) < limit
		})
		if err != nil {
			return nil, nil, fmt.Errorf("gcr: events: scan %x: %w", id, err)
		}
		if bad != nil {
			return nil, nil, fmt.Errorf("gcr: events: key %x: %w", bad, ErrCorrupt)
		}
		if len(run) > 0 {
			runs = append(runs, run)
		}
	}

	out := make([]event.Record, 0, min(limit, 64))
	var orders [][]byte
	var last []byte
	for len(out) < limit {
		best := -1
		for i, run := range runs {
			if len(run) > 0 && (best < 0 || bytes.Compare(run[0].order, runs[best][0].order) > 0) {
				best = i
			}
		}
		if best < 0 {
			break
		}
		it := runs[best][0]
		runs[best] = runs[best][1:]
		if last != nil && bytes.Equal(it.order, last) {
			continue // the same event stored under two profiles
		}
		last = it.order
		v, err := readRecord(r, it.key)
		if err != nil {
			return nil, nil, fmt.Errorf("gcr: events: %w", err)
		}
		rec, err := decodeRecord(v)
		if err != nil {
			return nil, nil, fmt.Errorf("gcr: events: record %x: %w", it.order[9:], err)
		}
		out = append(out, rec)
		orders = append(orders, it.order)
	}
	return out, orders, nil
}

// Partitions is the number of partitions profiles are spread over.
func (p *Projection) Partitions() int { return p.parts }

// EraseEvents deletes every event record stored under profile (not those
// of the profiles merged into it: erase each) and returns how many.
func (p *Projection) EraseEvents(rw store.ReadWriter, profile []byte) (int, error) {
	if len(profile) != idLen {
		return 0, fmt.Errorf("gcr: erase events: profile id has %d bytes, want %d", len(profile), idLen)
	}
	prefix := p.eventPrefix(profile)
	var keys [][]byte
	var bad []byte
	if err := rw.Scan(prefix, store.PrefixEnd(prefix), false, func(k, _ []byte) bool {
		if len(k) != eventKeyLen {
			bad = bytes.Clone(k)
			return false
		}
		keys = append(keys, bytes.Clone(k))
		return true
	}); err != nil {
		return 0, fmt.Errorf("gcr: erase events %x: %w", profile, err)
	}
	if bad != nil {
		return 0, fmt.Errorf("gcr: erase events %x: key %x: %w", profile, bad, ErrCorrupt)
	}
	for _, k := range keys {
		if err := rw.Delete(recordOf(k)); err != nil {
			return 0, fmt.Errorf("gcr: erase events %x: %w", profile, err)
		}
		if err := rw.Delete(k); err != nil {
			return 0, fmt.Errorf("gcr: erase events %x: %w", profile, err)
		}
	}
	return len(keys), nil
}

// CountEvents returns the number of event records stored under profile.
func (p *Projection) CountEvents(r store.Reader, profile []byte) (int, error) {
	prefix := p.eventPrefix(profile)
	n := 0
	err := r.Scan(prefix, store.PrefixEnd(prefix), false, func(_, _ []byte) bool { n++; return true })
	return n, err
}

// EachEvent calls fn with every event record of prof (prof.ID and every id
// in prof.MergedFrom), oldest first by (event time clamped at 0, event id),
// an event stored under two of them once. It holds at most pageSize
// records per id in memory (pageSize <= 0: 256): a k-way merge of paged
// forward scans. fn's error stops the iteration and is returned.
func (p *Projection) EachEvent(r store.Reader, prof *Profile, pageSize int, fn func(rec *event.Record) error) error {
	if prof == nil {
		return nil
	}
	if pageSize <= 0 {
		pageSize = 256
	}
	type item struct{ order, key []byte } // key: the index key
	type run struct {
		prefix, next []byte // next: lower bound of the next page (nil: exhausted)
		buf          []item
	}
	ids := append([][]byte{prof.ID}, prof.MergedFrom...)
	runs := make([]*run, 0, len(ids))
	for _, id := range ids {
		if len(id) != idLen {
			return fmt.Errorf("gcr: each event: profile id %x has %d bytes: %w", id, len(id), ErrCorrupt)
		}
		pre := p.eventPrefix(id)
		runs = append(runs, &run{prefix: pre, next: pre})
	}
	fill := func(rn *run) error {
		var bad []byte
		n := 0
		var last []byte
		err := r.Scan(rn.next, store.PrefixEnd(rn.prefix), false, func(k, _ []byte) bool {
			if len(k) != eventKeyLen {
				bad = bytes.Clone(k)
				return false
			}
			key := bytes.Clone(k)
			rn.buf = append(rn.buf, item{order: key[eventPrefixLen:], key: key})
			last = k
			n++
			return n < pageSize
		})
		if err != nil {
			return fmt.Errorf("gcr: each event: %w", err)
		}
		if bad != nil {
			return fmt.Errorf("gcr: each event: key %x: %w", bad, ErrCorrupt)
		}
		if n < pageSize {
			rn.next = nil
		} else {
			rn.next = append(bytes.Clone(last), 0)
		}
		return nil
	}
	var prev []byte
	for {
		best := -1
		for i, rn := range runs {
			if len(rn.buf) == 0 && rn.next != nil {
				if err := fill(rn); err != nil {
					return err
				}
			}
			if len(rn.buf) > 0 && (best < 0 || bytes.Compare(rn.buf[0].order, runs[best].buf[0].order) < 0) {
				best = i
			}
		}
		if best < 0 {
			return nil
		}
		it := runs[best].buf[0]
		runs[best].buf = runs[best].buf[1:]
		if prev != nil && bytes.Equal(prev, it.order) {
			continue
		}
		prev = it.order
		v, err := readRecord(r, it.key)
		if err != nil {
			return fmt.Errorf("gcr: each event: %w", err)
		}
		rec, err := decodeRecord(v)
		if err != nil {
			return fmt.Errorf("gcr: each event: record %x: %w", it.order[9:], err)
		}
		if err := fn(&rec); err != nil {
			return err
		}
	}
}

// EachProfile calls fn with every stored GCR, partition by partition in key
// order: one decoded profile in memory at a time (a job's scan, such as a
// model fit). fn's error stops the iteration and is returned.
func (p *Projection) EachProfile(r store.Reader, fn func(prof *Profile) error) error {
	for part := range p.parts {
		prefix := binary.BigEndian.AppendUint16([]byte("p/"), uint16(part))
		prefix = append(prefix, '/', 'g', '/')
		var ferr error
		err := r.Scan(prefix, store.PrefixEnd(prefix), false, func(k, v []byte) bool {
			prof, err := decodeProfile(v)
			if err != nil {
				ferr = fmt.Errorf("gcr: each profile: %x: %w", k[len(prefix):], err)
				return false
			}
			if ferr = fn(prof); ferr != nil {
				return false
			}
			return true
		})
		if ferr != nil {
			return ferr
		}
		if err != nil {
			return fmt.Errorf("gcr: each profile: %w", err)
		}
	}
	return nil
}

// ProfileCursorLen is the length of a cursor of ProfilesAfter: the
// partition (2 bytes, big endian) and the profile id.
const ProfileCursorLen = 2 + 16

// ProfilesAfter calls fn with up to n stored GCRs after cursor (nil: from
// the first), in the order of EachProfile (partition by partition, key
// order), each with its own cursor, and returns the last cursor visited
// (nil when none was). A background pass resumes from a cursor it
// recorded: fewer than n calls mean the pass is complete.
func (p *Projection) ProfilesAfter(r store.Reader, cursor []byte, n int, fn func(cursor []byte, prof *Profile) error) ([]byte, error) {
	startPart, seen := 0, 0
	var last []byte
	if len(cursor) == ProfileCursorLen {
		startPart = int(binary.BigEndian.Uint16(cursor))
	}
	for part := startPart; part < p.parts && seen < n; part++ {
		prefix := binary.BigEndian.AppendUint16([]byte("p/"), uint16(part))
		prefix = append(prefix, '/', 'g', '/')
		lower := prefix
		if len(cursor) == ProfileCursorLen && part == startPart {
			lower = append(append(bytes.Clone(prefix), cursor[2:]...), 0)
		}
		var ferr error
		err := r.Scan(lower, store.PrefixEnd(prefix), false, func(k, v []byte) bool {
			prof, err := decodeProfile(v)
			if err != nil {
				ferr = fmt.Errorf("gcr: profiles after: %x: %w", k[len(prefix):], err)
				return false
			}
			last = binary.BigEndian.AppendUint16(nil, uint16(part))
			last = append(last, k[len(prefix):]...)
			if ferr = fn(last, prof); ferr != nil {
				return false
			}
			seen++
			return seen < n
		})
		if ferr != nil {
			return nil, ferr
		}
		if err != nil {
			return nil, fmt.Errorf("gcr: profiles after: %w", err)
		}
	}
	return last, nil
}
