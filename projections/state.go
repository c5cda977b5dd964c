package projections

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"

	"github.com/aurumcdp/aurum/projections/gcr"
	"github.com/aurumcdp/aurum/store"
	"github.com/oklog/ulid/v2"
	"github.com/vmihailenco/msgpack/v5"
)

// CheckPartitions records n as the partition count of a new state store
// (and marks its event records' layout: MigrateEventRecords), or returns the
// recorded count of an existing one. Changing the count of an existing
// store needs a rebuild from the log.
func CheckPartitions(rw store.ReadWriter, n int) (int, error) {
	v, err := rw.Get(keyPartitions)
	if errors.Is(err, store.ErrNotFound) {
		if err := rw.Set(keyRecordsLayout, []byte{1}); err != nil {
			return 0, err
		}
		return n, rw.Set(keyPartitions, binary.BigEndian.AppendUint32(nil, uint32(n)))
	}
	if err != nil {
		return 0, fmt.Errorf("projections: read partitions: %w", err)
	}
	if len(v) != 4 {
		return 0, fmt.Errorf("projections: partition count has %d bytes", len(v))
	}
	return int(binary.BigEndian.Uint32(v)), nil
}

// keyRecordsLayout marks a state store whose event records are stored under
// gcr.RecordPrefix (all stores since issue #15; not in the digest).
var keyRecordsLayout = []byte("meta/event-records")

// migrateBatch bounds the records one batch of MigrateEventRecords moves.
const migrateBatch = 4096

// MigrateEventRecords moves the event records of a state store written
// before they had their own key range (the record was the value of its
// index entry, p/<part>/e/…) to gcr.RecordPrefix, leaving the index entries
// with the empty value, and marks the store; a marked store costs one Get.
// It returns how many records it moved. The state is the same (Digest
// differs only by the layout: stores compare after both are migrated);
// an interrupted migration is resumed by the next call. Call it before a
// StateMachine opens db.
func MigrateEventRecords(db *store.DB, parts int) (int, error) {
	if _, err := db.Get(keyRecordsLayout); err == nil {
		return 0, nil
	} else if !errors.Is(err, store.ErrNotFound) {
		return 0, fmt.Errorf("projections: migrate event records: %w", err)
	}
	type move struct{ index, rec, value []byte }
	moved := 0
	for i := range parts {
		prefix := append(PartitionPrefix(i), 'e', '/')
		from, end := prefix, store.PrefixEnd(prefix)
		for from != nil {
			var page []move
			var bad []byte
			next := []byte(nil)
			err := db.Scan(from, end, false, func(k, v []byte) bool {
				if len(page) == migrateBatch {
					next = bytes.Clone(k)
					return false
				}
				if len(v) == 0 {
					return true // moved already
				}
				rec, ok := gcr.MoveTo(k)
				if !ok {
					bad = bytes.Clone(k)
					return false
				}
				page = append(page, move{bytes.Clone(k), rec, bytes.Clone(v)})
				return true
			})
			if err == nil && bad != nil {
				err = fmt.Errorf("key %x: %w", bad, gcr.ErrCorrupt)
			}
			if err != nil {
				return moved, fmt.Errorf("projections: migrate event records: %w", err)
			}
			if err := commitMoves(db, func(b *store.Batch) error {
				for _, m := range page {
					if err := b.Set(m.rec, m.value); err != nil {
						return err
					}
					if err := b.Set(m.index, gcr.IndexValue()); err != nil {
						return err
					}
				}
				return nil
			}); err != nil {
				return moved, err
			}
			moved += len(page)
			from = next
		}
	}
	if err := commitMoves(db, func(b *store.Batch) error { return b.Set(keyRecordsLayout, []byte{1}) }); err != nil {
		return moved, err
	}
	if moved > 0 {
		// A store without a WAL keeps commits in memory until a flush.
		if err := db.Flush(); err != nil {
			return moved, fmt.Errorf("projections: migrate event records: flush: %w", err)
		}
	}
	return moved, nil
}

func commitMoves(db *store.DB, fill func(b *store.Batch) error) error {
	b := db.NewBatch()
	defer b.Close()
	if err := fill(b); err != nil {
		return fmt.Errorf("projections: migrate event records: %w", err)
	}
	if err := db.Commit(b, false); err != nil {
		return fmt.Errorf("projections: migrate event records: commit: %w", err)
	}
	return nil
}

// Sources lists the sources in the state store.
func Sources(r store.Reader) ([]Source, error) {
	out, err := scanValues[Source](r, prefixSource, 0)
	if err != nil {
		return nil, fmt.Errorf("projections: list sources: %w", err)
	}
	return out, nil
}

// scanValues decodes the msgpack values of the keys under prefix, in key
// order, up to max of them (0: all). keyOf, when set, receives each key.
func scanValues[T any](r store.Reader, prefix []byte, max int, keyOf ...func(k []byte)) ([]T, error) {
	var out []T
	var derr error
	err := r.Scan(prefix, store.PrefixEnd(prefix), false, func(k, v []byte) bool {
		var x T
		if derr = msgpack.Unmarshal(v, &x); derr != nil {
			derr = fmt.Errorf("decode %q: %w", k, derr)
			return false
		}
		out = append(out, x)
		for _, f := range keyOf {
			f(k)
		}
		return max == 0 || len(out) < max
	})
	if err == nil {
		err = derr
	}
	return out, err
}

// OutboxEntry is an outbox message with its key.
type OutboxEntry struct {
	Key []byte
	Msg OutMsg
}

func isPartitionOutbox(k []byte) bool {
	return len(k) > 6 && k[0] == 'p' && k[1] == '/' && k[4] == '/' && k[5] == 'o' && k[6] == '/'
}

// OutboxPrefixes are the key ranges of the outboxes: the global one (merge
// records) and one per partition (audience transitions, in order per
// profile).
func OutboxPrefixes(partitions int) [][]byte {
	out := [][]byte{prefixOutbox}
	for i := range partitions {
		out = append(out, append(PartitionPrefix(i), 'o', '/'))
	}
	return out
}

// Outbox returns up to max pending entries of the outbox at prefix, in log order.
func Outbox(r store.Reader, prefix []byte, max int) ([]OutboxEntry, error) {
	var keys [][]byte
	msgs, err := scanValues[OutMsg](r, prefix, max, func(k []byte) { keys = append(keys, append([]byte(nil), k...)) })
	if err != nil {
		return nil, fmt.Errorf("projections: read outbox: %w", err)
	}
	out := make([]OutboxEntry, len(msgs))
	for i := range msgs {
		out[i] = OutboxEntry{Key: keys[i], Msg: msgs[i]}
	}
	return out, nil
}

// Merges returns the merge records of the profiles into which others were
// merged, for the given (root) profile, in log order.
func Merges(r store.Reader, into []byte) ([]MergeRecord, error) {
	return scanValues[MergeRecord](r, append(append([]byte(nil), prefixMerge...), into...), 0)
}

func ulidString(b []byte) string {
	var u ulid.ULID
	if len(b) != len(u) {
		return fmt.Sprintf("%x", b)
	}
	copy(u[:], b)
	return u.String()
}

func mergeJSON(m *MergeRecord) ([]byte, error) {
	return json.Marshal(map[string]any{
		"type":            "profile.merged",
		"from":            ulidString(m.From),
		"into":            ulidString(m.Into),
		"event_id":        ulidString(m.EventID),
		"identifier_type": m.Type,
		"event_time":      m.Time,
		"seq":             m.Seq,
	})
}

// digestPrefixes are the key ranges that make up the projection state. The
// outbox is excluded: it drains asynchronously and is not part of the state.
var digestPrefixes = [][]byte{
	keyApplied, keyPartitions, keyIdentity, keyNow, keyAudienceGen, prefixAudience, prefixDestination, prefixDedup, prefixDedupX, prefixSource, prefixMerge,
	prefixToken, prefixUser, prefixModel, []byte("ik/"), []byte("ip/"), []byte("p/"), []byte(gcr.RecordPrefix),
	keySuppressed, prefixSuppress, prefixErasure, prefixErasurePending,
	keyMatchModel, prefixMatch, prefixReviewQ, prefixRejection, prefixPendingPair, prefixBlock, prefixBlockProfile,
	prefixSplit, prefixProfileSplit, prefixMatchQueue, prefixMatchInfo,
}

// snapshotPrefixes are what a whole-state snapshot holds: the digest's
// ranges, the global outbox and the erasures' output counts (state, but
// not in the digest: see erasure.go).
func snapshotPrefixes() [][]byte {
	return append(append([][]byte(nil), digestPrefixes...), prefixOutbox, prefixErasureOut)
}

// Digest returns a SHA-256 over every key and value of the projection state,
// in key order. Two stores fed the same log have equal digests.
func Digest(r store.Reader) ([]byte, error) {
	h := sha256.New()
	var lenBuf [8]byte
	for _, p := range digestPrefixes {
		err := r.Scan(p, store.PrefixEnd(p), false, func(k, v []byte) bool {
			if isPartitionOutbox(k) {
				return true // drains asynchronously: not part of the state
			}
			binary.BigEndian.PutUint32(lenBuf[:4], uint32(len(k)))
			binary.BigEndian.PutUint32(lenBuf[4:], uint32(len(v)))
			h.Write(lenBuf[:])
			h.Write(k)
			h.Write(v)
			return true
		})
		if err != nil {
			return nil, fmt.Errorf("projections: digest: %w", err)
		}
	}
	return h.Sum(nil), nil
}

// PartitionPrefix returns the key prefix of partition i: "p/<i u16 BE>/".
func PartitionPrefix(i int) []byte {
	return append(binary.BigEndian.AppendUint16([]byte("p/"), uint16(i)), '/')
}

// Snapshot writes every key of the given ranges (length-prefixed key/value
// pairs) to w: the snapshot of one partition is Snapshot(r, w,
// PartitionPrefix(i)); of the whole state machine, Snapshot(r, w) with no
// prefix given.
func Snapshot(r store.Reader, w io.Writer, prefixes ...[]byte) error {
	if len(prefixes) == 0 {
		prefixes = snapshotPrefixes()
	}
	bw := bufio.NewWriter(w)
	var werr error
	for _, p := range prefixes {
		err := r.Scan(p, store.PrefixEnd(p), false, func(k, v []byte) bool {
			var hdr [8]byte
			binary.BigEndian.PutUint32(hdr[:4], uint32(len(k)))
			binary.BigEndian.PutUint32(hdr[4:], uint32(len(v)))
			if _, werr = bw.Write(hdr[:]); werr == nil {
				if _, werr = bw.Write(k); werr == nil {
					_, werr = bw.Write(v)
				}
			}
			return werr == nil
		})
		if err == nil {
			err = werr
		}
		if err != nil {
			return fmt.Errorf("projections: snapshot: %w", err)
		}
	}
	return bw.Flush()
}

// Restore replaces the given key ranges of rw with a snapshot from r. Keys in
// the snapshot outside the ranges are refused.
func Restore(rw store.ReadWriter, r io.Reader, prefixes ...[]byte) error {
	if len(prefixes) == 0 {
		prefixes = snapshotPrefixes()
	}
	for _, p := range prefixes {
		var keys [][]byte
		if err := rw.Scan(p, store.PrefixEnd(p), false, func(k, _ []byte) bool {
			keys = append(keys, append([]byte(nil), k...))
			return true
		}); err != nil {
			return fmt.Errorf("projections: restore: %w", err)
		}
		for _, k := range keys {
			if err := rw.Delete(k); err != nil {
				return err
			}
		}
	}
	br := bufio.NewReader(r)
	for {
		var hdr [8]byte
		if _, err := io.ReadFull(br, hdr[:]); err == io.EOF {
			return nil
		} else if err != nil {
			return fmt.Errorf("projections: restore: truncated snapshot: %w", err)
		}
		kl, vl := binary.BigEndian.Uint32(hdr[:4]), binary.BigEndian.Uint32(hdr[4:])
		if kl > 1<<20 || vl > 64<<20 {
			return fmt.Errorf("projections: restore: entry too large (%d, %d)", kl, vl)
		}
		buf := make([]byte, kl+vl)
		if _, err := io.ReadFull(br, buf); err != nil {
			return fmt.Errorf("projections: restore: truncated snapshot: %w", err)
		}
		k, v := buf[:kl], buf[kl:]
		inRange := false
		for _, p := range prefixes {
			if bytes.HasPrefix(k, p) {
				inRange = true
				break
			}
		}
		if !inRange {
			return fmt.Errorf("projections: restore: key %q outside the snapshot's ranges", k)
		}
		if err := rw.Set(k, v); err != nil {
			return err
		}
	}
}

// IsOutboxKey reports whether k is an outbox entry (global or a partition's).
func IsOutboxKey(k []byte) bool { return isPartitionOutbox(k) || bytes.HasPrefix(k, prefixOutbox) }

// SplitPartitionKey splits a partition key p/<i>/<kind>/<rest> into the
// partition, the kind byte ('g' GCR, 'e' event, 'u' audience state, 'm'
// membership, ...) and the profile id where the kind has one.
func SplitPartitionKey(k []byte) (part int, kind byte, profile []byte, ok bool) {
	if len(k) < 6 || k[0] != 'p' || k[1] != '/' || k[4] != '/' {
		return 0, 0, nil, false
	}
	part, kind = int(binary.BigEndian.Uint16(k[2:4])), k[5]
	if (kind == 'g' || kind == 'u' || kind == 'e') && len(k) >= 7+16 && k[6] == '/' {
		profile = k[7 : 7+16]
	}
	return part, kind, profile, true
}

// Digests are the digest of the whole state and of its parts: the global
// (keychain, dedup, definitions) key ranges and each partition's.
type Digests struct {
	All        []byte
	Global     []byte
	Partitions [][]byte
}

// DigestParts computes Digests in one pass over the state.
func DigestParts(r store.Reader, partitions int) (Digests, error) {
	all, err := Digest(r)
	if err != nil {
		return Digests{}, err
	}
	d := Digests{All: all}
	hashRange := func(prefixes ...[]byte) ([]byte, error) {
		h := sha256.New()
		var lenBuf [8]byte
		for _, p := range prefixes {
			err := r.Scan(p, store.PrefixEnd(p), false, func(k, v []byte) bool {
				if isPartitionOutbox(k) {
					return true
				}
				binary.BigEndian.PutUint32(lenBuf[:4], uint32(len(k)))
				binary.BigEndian.PutUint32(lenBuf[4:], uint32(len(v)))
				h.Write(lenBuf[:])
				h.Write(k)
				h.Write(v)
				return true
			})
			if err != nil {
				return nil, fmt.Errorf("projections: digest: %w", err)
			}
		}
		return h.Sum(nil), nil
	}
	var global [][]byte
	for _, p := range digestPrefixes {
		if string(p) != "p/" {
			global = append(global, p)
		}
	}
	if d.Global, err = hashRange(global...); err != nil {
		return Digests{}, err
	}
	for i := range partitions {
		pd, err := hashRange(PartitionPrefix(i))
		if err != nil {
			return Digests{}, err
		}
		d.Partitions = append(d.Partitions, pd)
	}
	return d, nil
}

// ProjectionNames are the projections a replay can rebuild on their own.
func ProjectionNames() []string { return []string{"gcr", "audiences"} }

// ProjectionPrefixes returns the key ranges of a projection: "gcr" is the
// identity keychain, merge records, GCRs and stored events; "audiences" the
// definitions, aggregates, memberships, timers and backfill cursors.
func ProjectionPrefixes(name string, partitions int) [][]byte {
	var out [][]byte
	switch name {
	case "gcr":
		out = append(out, []byte("ik/"), []byte("ip/"), prefixMerge, prefixSplit, prefixProfileSplit, []byte(gcr.RecordPrefix))
		for i := range partitions {
			out = append(out, append(PartitionPrefix(i), 'g', '/'), append(PartitionPrefix(i), 'e', '/'))
		}
	case "audiences":
		out = append(out, prefixAudience, keyAudienceGen)
		for i := range partitions {
			pp := PartitionPrefix(i)
			for _, sub := range []string{"u/", "w/", "wl", "m/", "n/", "b", "h/"} {
				out = append(out, append(append([]byte(nil), pp...), sub...))
			}
		}
	}
	return out
}
