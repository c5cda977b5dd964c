package event

import (
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
)

// The binary form of a log entry on aurum.log.events (a Batch).
//
// Version 1, hand-written (no reflection):
//
//	batch   = 0xc1 0x01 bytes(ID) varint(Received) uvarint(n) record*n
//	record  = bytes(ID) str(MessageID) str(Source) str(Kind) str(Event) str(Name)
//	          varint(Time) varint(Received) str(Channel) str(DeviceType) bytes(Key)
//	          uvarint(n) idref*n map(bytes)(Traits) bytes(Properties) bytes(Private)
//	          map(bool)(Consent)
//	idref   = str(Type) bytes(Hash) bytes(Sealed) bool(Weak)
//	map(v)  = uvarint(n) (str(key) v)*n   keys strictly increasing
//	bool    = one byte, 0 or 1
//	str     = uvarint(len) bytes;  bytes = uvarint(len) bytes (length 0 decodes as nil)
//	varint  = encoding/binary zig-zag varint; uvarint = encoding/binary uvarint
//
// Properties are the msgpack encoding of the map (AppendMsgpack: keys sorted,
// integers compact; empty: length 0), decoded by DecodeMsgpack into the
// values the msgpack library would give. A decoded Record is therefore the
// same value whichever form the entry was in, and the projections built
// from it (stored event records, GCRs, digests) are the same.
//
// The leading byte 0xc1 is the one code msgpack never uses; entries written
// by earlier versions are msgpack maps (see IsBinaryBatch). A later version
// keeps 0xc1 and takes another version byte.
//
// Decoding checks every count against the bytes left before it allocates,
// so hostile input allocates at most a small multiple of its length, and it
// refuses trailing bytes and unordered map keys.
const (
	binaryMark    byte = 0xc1
	batchVersion1 byte = 0x01
)

// Minimum encoded sizes, to bound allocations by the input length.
const (
	minRecordSize = 17 // 13 lengths, 2 varints, 2 counts
	minIDRefSize  = 4
)

// ErrCorruptBatch marks a binary batch that does not decode.
var ErrCorruptBatch = errors.New("event: corrupt batch")

// IsBinaryBatch reports whether data is a batch in the binary form (any
// version) rather than the msgpack form of earlier versions.
func IsBinaryBatch(data []byte) bool { return len(data) > 0 && data[0] == binaryMark }

// AppendBatchHeader appends the header of a binary batch of n records; the
// n records' encodings (AppendRecord) follow it.
func AppendBatchHeader(buf, id []byte, received int64, n int) []byte {
	buf = append(buf, binaryMark, batchVersion1)
	buf = appendBytes(buf, id)
	buf = binary.AppendVarint(buf, received)
	return binary.AppendUvarint(buf, uint64(n))
}

// EncodeBatch returns the binary form of b.
func EncodeBatch(b *Batch) ([]byte, error) {
	buf := AppendBatchHeader(nil, b.ID, b.Received, len(b.Records))
	for i := range b.Records {
		var err error
		if buf, err = AppendRecord(buf, &b.Records[i]); err != nil {
			return nil, err
		}
	}
	return buf, nil
}

// AppendRecord appends the binary form of r to buf. It fails when
// r.Properties holds a type AppendMsgpack does not know (JSON never yields
// one).
func AppendRecord(buf []byte, r *Record) ([]byte, error) {
	b := appendBytes(buf, r.ID)
	b = appendStr(b, r.MessageID)
	b = appendStr(b, r.Source)
	b = appendStr(b, string(r.Kind))
	b = appendStr(b, r.Event)
	b = appendStr(b, r.Name)
	b = binary.AppendVarint(b, r.Time)
	b = binary.AppendVarint(b, r.Received)
	b = appendStr(b, r.Channel)
	b = appendStr(b, r.DeviceType)
	b = appendBytes(b, r.Key)
	b = binary.AppendUvarint(b, uint64(len(r.IDs)))
	for i := range r.IDs {
		id := &r.IDs[i]
		b = appendStr(b, id.Type)
		b = appendBytes(b, id.Hash)
		b = appendBytes(b, id.Sealed)
		b = appendBool(b, id.Weak)
	}
	b = binary.AppendUvarint(b, uint64(len(r.Traits)))
	for _, k := range sortedMapKeys(r.Traits) {
		b = appendStr(b, k)
		b = appendBytes(b, r.Traits[k])
	}
	if len(r.Properties) == 0 {
		b = append(b, 0)
	} else {
		// The length prefix is written after the value: reserve the
		// largest uvarint a slice can need, then move the value down.
		start := len(b)
		b = append(b, make([]byte, binary.MaxVarintLen64)...)
		var ok bool
		if b, ok = AppendMsgpack(b, r.Properties); !ok {
			return buf, fmt.Errorf("event: encode record: properties hold a type that is not JSON")
		}
		n := len(b) - start - binary.MaxVarintLen64
		hdr := binary.AppendUvarint(b[start:start], uint64(n))
		copy(b[start+len(hdr):], b[start+binary.MaxVarintLen64:])
		b = b[:start+len(hdr)+n]
	}
	b = appendBytes(b, r.Private)
	b = binary.AppendUvarint(b, uint64(len(r.Consent)))
	for _, k := range sortedMapKeys(r.Consent) {
		b = appendStr(b, k)
		b = appendBool(b, r.Consent[k])
	}
	return b, nil
}

func appendStr(b []byte, s string) []byte {
	return append(binary.AppendUvarint(b, uint64(len(s))), s...)
}

func appendBytes(b, v []byte) []byte {
	return append(binary.AppendUvarint(b, uint64(len(v))), v...)
}

func appendBool(b []byte, v bool) []byte {
	if v {
		return append(b, 1)
	}
	return append(b, 0)
}

func sortedMapKeys[V any](m map[string]V) []string {
	if len(m) == 0 {
		return nil
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// DecodeBatch decodes a batch in the binary form. Errors wrap
// ErrCorruptBatch.
func DecodeBatch(data []byte) (Batch, error) {
	d := batchDecoder{b: data}
	b := d.batch()
	if d.err != nil {
		return Batch{}, d.err
	}
	return b, nil
}

type batchDecoder struct {
	b   []byte
	off int
	err error
}

func (d *batchDecoder) fail(format string, args ...any) {
	if d.err == nil {
		d.err = fmt.Errorf("%w: at byte %d: %s", ErrCorruptBatch, d.off, fmt.Sprintf(format, args...))
	}
	d.off = len(d.b)
}

func (d *batchDecoder) uvarint(what string) uint64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.b[d.off:])
	if n <= 0 {
		d.fail("%s: bad uvarint", what)
		return 0
	}
	d.off += n
	return v
}

func (d *batchDecoder) varint(what string) int64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Varint(d.b[d.off:])
	if n <= 0 {
		d.fail("%s: bad varint", what)
		return 0
	}
	d.off += n
	return v
}

// raw returns the next length-prefixed bytes, aliasing the input.
func (d *batchDecoder) raw(what string) []byte {
	n := d.uvarint(what)
	if d.err != nil {
		return nil
	}
	if n > uint64(len(d.b)-d.off) {
		d.fail("%s: length %d beyond the data", what, n)
		return nil
	}
	s := d.b[d.off : d.off+int(n)]
	d.off += int(n)
	return s
}

// bytes returns a copy (nil for length 0), so that the batch does not pin
// the entry's buffer.
func (d *batchDecoder) bytes(what string) []byte {
	s := d.raw(what)
	if len(s) == 0 {
		return nil
	}
	return slices.Clone(s)
}

func (d *batchDecoder) str(what string) string { return string(d.raw(what)) }

func (d *batchDecoder) bool(what string) bool {
	if d.err != nil {
		return false
	}
	if d.off >= len(d.b) || d.b[d.off] > 1 {
		d.fail("%s: bad bool", what)
		return false
	}
	d.off++
	return d.b[d.off-1] == 1
}

func (d *batchDecoder) count(what string, min int) int {
	n := d.uvarint(what)
	if d.err != nil {
		return 0
	}
	if n > uint64((len(d.b)-d.off)/min) {
		d.fail("%s: %d items beyond the data", what, n)
		return 0
	}
	return int(n)
}

func (d *batchDecoder) key(what string, i int, prev string) string {
	k := d.str(what)
	if i > 0 && k <= prev && d.err == nil {
		d.fail("%s: keys out of order (%q after %q)", what, k, prev)
	}
	return k
}

func (d *batchDecoder) batch() Batch {
	if len(d.b) < 2 || d.b[0] != binaryMark {
		d.fail("not a binary batch")
		return Batch{}
	}
	if d.b[1] != batchVersion1 {
		d.fail("version %d unknown", d.b[1])
		return Batch{}
	}
	d.off = 2
	var b Batch
	b.ID = d.bytes("batch id")
	b.Received = d.varint("batch received")
	n := d.count("records", minRecordSize)
	if d.err != nil {
		return b
	}
	b.Records = make([]Record, n)
	for i := range b.Records {
		d.record(&b.Records[i])
	}
	if d.err == nil && d.off != len(d.b) {
		d.fail("%d trailing bytes", len(d.b)-d.off)
	}
	return b
}

func (d *batchDecoder) record(r *Record) {
	r.ID = d.bytes("id")
	r.MessageID = d.str("messageId")
	r.Source = d.str("source")
	r.Kind = Kind(d.str("kind"))
	r.Event = d.str("event")
	r.Name = d.str("name")
	r.Time = d.varint("time")
	r.Received = d.varint("received")
	r.Channel = d.str("channel")
	r.DeviceType = d.str("device type")
	r.Key = d.bytes("key")
	if n := d.count("ids", minIDRefSize); n > 0 {
		r.IDs = make([]IDRef, n)
		for i := range r.IDs {
			id := &r.IDs[i]
			id.Type = d.str("id type")
			id.Hash = d.bytes("id hash")
			id.Sealed = d.bytes("id sealed")
			id.Weak = d.bool("id weak")
		}
	}
	if n := d.count("traits", 2); n > 0 {
		r.Traits = make(map[string][]byte, n)
		prev := ""
		for i := range n {
			k := d.key("trait", i, prev)
			r.Traits[k] = d.bytes("trait value")
			prev = k
		}
	}
	if p := d.raw("properties"); len(p) > 0 && d.err == nil {
		m, err := decodeMsgpackMap(p)
		if err != nil {
			d.fail("properties: %v", err)
		}
		if len(m) > 0 {
			r.Properties = m
		}
	}
	r.Private = d.bytes("private")
	if n := d.count("consent", 2); n > 0 {
		r.Consent = make(map[string]bool, n)
		prev := ""
		for i := range n {
			k := d.key("consent", i, prev)
			r.Consent[k] = d.bool("consent value")
			prev = k
		}
	}
}
