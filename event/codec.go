package event

import (
	"encoding/binary"
	"errors"
	"fmt"
	"slices"

	"github.com/aurumcdp/aurum/internal/wire"
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
	buf = wire.AppendBytes(buf, id)
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
	b := wire.AppendBytes(buf, r.ID)
	b = wire.AppendString(b, r.MessageID)
	b = wire.AppendString(b, r.Source)
	b = wire.AppendString(b, string(r.Kind))
	b = wire.AppendString(b, r.Event)
	b = wire.AppendString(b, r.Name)
	b = binary.AppendVarint(b, r.Time)
	b = binary.AppendVarint(b, r.Received)
	b = wire.AppendString(b, r.Channel)
	b = wire.AppendString(b, r.DeviceType)
	b = wire.AppendBytes(b, r.Key)
	b = binary.AppendUvarint(b, uint64(len(r.IDs)))
	for i := range r.IDs {
		id := &r.IDs[i]
		b = wire.AppendString(b, id.Type)
		b = wire.AppendBytes(b, id.Hash)
		b = wire.AppendBytes(b, id.Sealed)
		b = wire.AppendBool(b, id.Weak)
	}
	b = binary.AppendUvarint(b, uint64(len(r.Traits)))
	for _, k := range sortedMapKeys(r.Traits) {
		b = wire.AppendString(b, k)
		b = wire.AppendBytes(b, r.Traits[k])
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
	b = wire.AppendBytes(b, r.Private)
	b = binary.AppendUvarint(b, uint64(len(r.Consent)))
	for _, k := range sortedMapKeys(r.Consent) {
		b = wire.AppendString(b, k)
		b = wire.AppendBool(b, r.Consent[k])
	}
	return b, nil
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
	if len(data) < 2 || data[0] != binaryMark {
		return Batch{}, fmt.Errorf("%w: not a binary batch", ErrCorruptBatch)
	}
	if data[1] != batchVersion1 {
		return Batch{}, fmt.Errorf("%w: version %d unknown", ErrCorruptBatch, data[1])
	}
	d := batchDecoder{wire.NewReader(data[2:], ErrCorruptBatch)}
	b := d.batch()
	if err := d.Finish(); err != nil {
		return Batch{}, err
	}
	return b, nil
}

// batchDecoder reads the binary form (wire.Reader: the first error sticks).
// Strings and byte strings are copied one by one rather than cut from one
// copy of the input: a record's event name or source may outlive the batch
// (in maps of the projections) and must not pin a multi-megabyte entry.
type batchDecoder struct{ wire.Reader }

// bytes returns a copy (nil for length 0).
func (d *batchDecoder) bytes(what string) []byte {
	s := d.Raw(what)
	if len(s) == 0 {
		return nil
	}
	return slices.Clone(s)
}

func (d *batchDecoder) str(what string) string { return string(d.Raw(what)) }

func (d *batchDecoder) key(what string, i int, prev string) string {
	k := d.str(what)
	if i > 0 && k <= prev && d.Err() == nil {
		d.Fail("%s: keys out of order (%q after %q)", what, k, prev)
	}
	return k
}

func (d *batchDecoder) batch() Batch {
	var b Batch
	b.ID = d.bytes("batch id")
	b.Received = d.Varint("batch received")
	n := d.Count("records", minRecordSize)
	if d.Err() != nil {
		return b
	}
	b.Records = make([]Record, n)
	for i := range b.Records {
		d.record(&b.Records[i])
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
	r.Time = d.Varint("time")
	r.Received = d.Varint("received")
	r.Channel = d.str("channel")
	r.DeviceType = d.str("device type")
	r.Key = d.bytes("key")
	if n := d.Count("ids", minIDRefSize); n > 0 {
		r.IDs = make([]IDRef, n)
		for i := range r.IDs {
			id := &r.IDs[i]
			id.Type = d.str("id type")
			id.Hash = d.bytes("id hash")
			id.Sealed = d.bytes("id sealed")
			id.Weak = d.Bool("id weak")
		}
	}
	if n := d.Count("traits", 2); n > 0 {
		r.Traits = make(map[string][]byte, n)
		prev := ""
		for i := range n {
			k := d.key("trait", i, prev)
			r.Traits[k] = d.bytes("trait value")
			prev = k
		}
	}
	if p := d.Raw("properties"); len(p) > 0 && d.Err() == nil {
		m, err := decodeMsgpackMap(p)
		if err != nil {
			d.Fail("properties: %v", err)
		}
		if len(m) > 0 {
			r.Properties = m
		}
	}
	r.Private = d.bytes("private")
	if n := d.Count("consent", 2); n > 0 {
		r.Consent = make(map[string]bool, n)
		prev := ""
		for i := range n {
			k := d.key("consent", i, prev)
			r.Consent[k] = d.Bool("consent value")
			prev = k
		}
	}
}
