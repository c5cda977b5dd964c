package event

import (
	"encoding/binary"
	"errors"
	"fmt"
	"slices"

	"github.com/aurumcdp/aurum/internal/wire"
)

// The binary form of a Record (the body codec) and of a log entry on
// aurum.log.events (a Batch). The stored event record of the projections
// (projections/gcr, record.go) is the same body behind its own header: one
// codec for both forms.
//
// Version 2, hand-written (no reflection):
//
//	batch   = 0xc1 0x02 bytes(ID) varint(Received) uvarint(n) record*n
//	record  = bytes(ID) str(MessageID) str(Source) str(Kind) str(Event) str(Name)
//	          varint(Time) varint(Received) str(Channel) str(DeviceType) bytes(Key)
//	          uvarint(n) idref*n map(bytes)(Traits) bytes(SealedProperties)
//	          bytes(Private) map(bool)(Consent)
//	idref   = str(Type) bytes(Hash) bytes(Sealed) bool(Weak)
//	map(v)  = uvarint(n) (str(key) v)*n   keys strictly increasing
//	bool    = one byte, 0 or 1
//	str     = uvarint(len) bytes;  bytes = uvarint(len) bytes (length 0 decodes as nil)
//	varint  = encoding/binary zig-zag varint; uvarint = encoding/binary uvarint
//
// Record.Properties (plaintext) is never encoded: the body holds only the
// sealed properties, which the state machine opens (see Record).
//
// A later version keeps the leading byte 0xc1 and takes another version
// byte; versions before 2 (and the msgpack entries of earlier builds) are
// not read: no data of them was ever released.
//
// Decoding checks every count against the bytes left before it allocates,
// so hostile input allocates at most a small multiple of its length, and it
// refuses trailing bytes and unordered map keys.
const (
	binaryMark    byte = 0xc1
	batchVersion2 byte = 0x02
)

// Minimum encoded sizes, to bound allocations by the input length.
const (
	minRecordSize = 17 // 13 lengths, 2 varints, 2 counts
	minIDRefSize  = 4  // 3 lengths, 1 flag
	minEntrySize  = 2  // a map entry: key length, value (length or flag)
)

// ErrCorruptBatch marks a binary batch that does not decode.
var ErrCorruptBatch = errors.New("event: corrupt batch")

// AppendBatchHeader appends the header of a binary batch of n records; the
// n records' encodings (AppendRecord) follow it.
func AppendBatchHeader(buf, id []byte, received int64, n int) []byte {
	buf = append(buf, binaryMark, batchVersion2)
	buf = wire.AppendBytes(buf, id)
	buf = binary.AppendVarint(buf, received)
	return binary.AppendUvarint(buf, uint64(n))
}

// EncodeBatch returns the binary form of b.
func EncodeBatch(b *Batch) []byte {
	buf := AppendBatchHeader(nil, b.ID, b.Received, len(b.Records))
	var keys []string
	for i := range b.Records {
		buf, keys = AppendRecord(buf, keys, &b.Records[i])
	}
	return buf
}

// AppendRecord appends the binary form of r (the record body) to buf; keys
// is scratch for sorting map keys, returned for reuse (nil is fine).
func AppendRecord(buf []byte, keys []string, r *Record) ([]byte, []string) {
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
	keys = sortedKeys(keys, r.Traits)
	b = binary.AppendUvarint(b, uint64(len(keys)))
	for _, k := range keys {
		b = wire.AppendString(b, k)
		b = wire.AppendBytes(b, r.Traits[k])
	}
	b = wire.AppendBytes(b, r.SealedProperties)
	b = wire.AppendBytes(b, r.Private)
	keys = sortedKeys(keys, r.Consent)
	b = binary.AppendUvarint(b, uint64(len(keys)))
	for _, k := range keys {
		b = wire.AppendString(b, k)
		b = wire.AppendBool(b, r.Consent[k])
	}
	return b, keys
}

// RecordSize is an upper bound of the length of r's binary form.
func RecordSize(r *Record) int {
	const v = binary.MaxVarintLen64
	n := 16*v + len(r.ID) + len(r.MessageID) + len(r.Source) + len(r.Kind) + len(r.Event) +
		len(r.Name) + len(r.Channel) + len(r.DeviceType) + len(r.Key) + len(r.SealedProperties) + len(r.Private)
	for i := range r.IDs {
		id := &r.IDs[i]
		n += 3*v + 1 + len(id.Type) + len(id.Hash) + len(id.Sealed)
	}
	for k, t := range r.Traits {
		n += 2*v + len(k) + len(t)
	}
	for k := range r.Consent {
		n += v + 1 + len(k)
	}
	return n
}

// sortedKeys returns the keys of m in order, in keys[:0].
func sortedKeys[V any](keys []string, m map[string]V) []string {
	keys = keys[:0]
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// DecodeBatch decodes a batch in the binary form. Errors wrap
// ErrCorruptBatch.
func DecodeBatch(data []byte) (Batch, error) { return decodeBatch(data, false) }

// SkimBatch reads a batch in the binary form for its byte fields only:
// ids, keys, identifier hashes and sealed values, sealed properties and
// private fields, as views of data (no copies: valid while data is). Its
// strings are left empty and its traits and consent unread, and it checks
// less than DecodeBatch (the order of map keys): a reader that needs only
// those fields (the replay's fetch stage, which opens the properties ahead)
// spares the copies and maps. Errors wrap ErrCorruptBatch.
func SkimBatch(data []byte) (Batch, error) { return decodeBatch(data, true) }

func decodeBatch(data []byte, skim bool) (Batch, error) {
	if len(data) < 2 || data[0] != binaryMark {
		return Batch{}, fmt.Errorf("%w: not a binary batch", ErrCorruptBatch)
	}
	if data[1] != batchVersion2 {
		return Batch{}, fmt.Errorf("%w: version %d unknown", ErrCorruptBatch, data[1])
	}
	d := RecordReader{Reader: wire.NewReader(data[2:], ErrCorruptBatch), CopyEach: !skim, skim: skim}
	var b Batch
	b.ID = d.bytes("batch id")
	b.Received = d.Varint("batch received")
	n := d.Count("records", minRecordSize)
	if n > 0 {
		b.Records = make([]Record, n)
		for i := range b.Records {
			d.Record(&b.Records[i])
		}
	}
	if err := d.Finish(); err != nil {
		return Batch{}, err
	}
	return b, nil
}

// RecordReader reads record bodies (wire.Reader: the first error sticks
// and every later read returns a zero value).
type RecordReader struct {
	wire.Reader
	// CopyEach copies every string and byte string on its own rather than
	// cutting them from one copy of the input: a record of a log entry may
	// outlive the entry (its event name or source in maps of the
	// projections) and must not pin a multi-megabyte entry. A stored
	// record, small, is better read with one copy.
	CopyEach bool
	// skim (SkimBatch) cuts byte strings from the input without a copy,
	// skips strings and does not build the traits and consent maps.
	skim bool
}

// bytes returns a copy (nil for length 0).
func (d *RecordReader) bytes(what string) []byte {
	if d.skim {
		if s := d.Raw(what); len(s) > 0 {
			return s
		}
		return nil
	}
	if !d.CopyEach {
		return d.Bytes(what)
	}
	s := d.Raw(what)
	if len(s) == 0 {
		return nil
	}
	return slices.Clone(s)
}

func (d *RecordReader) str(what string) string {
	if d.skim {
		d.Raw(what)
		return ""
	}
	if !d.CopyEach {
		return d.String(what)
	}
	return string(d.Raw(what))
}

func (d *RecordReader) key(what string, i int, prev string) string {
	k := d.str(what)
	if i > 0 && k <= prev && d.Err() == nil {
		d.Fail("%s: keys out of order (%q after %q)", what, k, prev)
	}
	return k
}

// Record reads one record body into r.
func (d *RecordReader) Record(r *Record) {
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
	if n := d.Count("traits", minEntrySize); n > 0 && d.skim {
		for range n {
			d.Raw("trait")
			d.Raw("trait value")
		}
	} else if n > 0 {
		r.Traits = make(map[string][]byte, n)
		prev := ""
		for i := range n {
			k := d.key("trait", i, prev)
			r.Traits[k] = d.bytes("trait value")
			prev = k
		}
	}
	r.SealedProperties = d.bytes("properties")
	r.Private = d.bytes("private")
	if n := d.Count("consent", minEntrySize); n > 0 && d.skim {
		for range n {
			d.Raw("consent")
			d.Bool("consent value")
		}
	} else if n > 0 {
		r.Consent = make(map[string]bool, n)
		prev := ""
		for i := range n {
			k := d.key("consent", i, prev)
			r.Consent[k] = d.Bool("consent value")
			prev = k
		}
	}
}

// OpenProperties sets r.Properties from r.SealedProperties, opened with
// open (the msgpack encoding of a map, see AppendMsgpack). Sealed
// properties that cannot be opened (a destroyed key: an erased person) or
// decoded leave r.Properties nil, as if the event had none. It returns
// open's error, so that a caller that must be deterministic can tell a
// value that will never open (alike in every replay) from a passing
// failure (an I/O error reading the key), which it must not take as absent.
func (r *Record) OpenProperties(open func(keyID, sealed []byte) ([]byte, error)) error {
	r.Properties = nil
	if len(r.SealedProperties) == 0 || open == nil {
		return nil
	}
	pt, err := open(r.Key, r.SealedProperties)
	if err != nil {
		return err
	}
	if m, err := decodeMsgpackMap(pt); err == nil && len(m) > 0 {
		r.Properties = m
	}
	return nil
}
