package gcr

import (
	"encoding/binary"
	"fmt"
	"slices"

	"github.com/aurumcdp/aurum/event"
	"github.com/aurumcdp/aurum/internal/wire"
)

// The stored form of an event record (key p/<partition>/e/<profile>/<time>/<event>).
//
// Version 1, hand-written (no reflection), deterministic (maps in key
// order, nil and empty alike):
//
//	record  = 0xc1 bytes(ID) str(MessageID) str(Source) str(Kind) str(Event) str(Name)
//	          varint(Time) varint(Received) str(Channel) str(DeviceType) bytes(Key)
//	          uvarint(n) idref*n map(bytes)(Traits) bytes(Properties) bytes(Private)
//	          map(bool)(Consent)
//	idref   = str(Type) bytes(Hash) bytes(Sealed) bool(Weak)
//	map(v)  = uvarint(n) (str(key) v)*n   keys strictly increasing
//	bool    = one byte, 0 or 1
//
// (str, bytes, varint, uvarint: see codec.go.) Properties are the msgpack
// encoding of the map (event.AppendMsgpack: keys sorted, integers compact;
// an empty map is written as length 0), decoded by event.DecodeMsgpack into
// the values the msgpack library gives, so a record reads back as the same
// value whichever form it was stored in.
//
// The leading byte 0xc1 is the one code msgpack never uses; records written
// by earlier versions are msgpack maps (recordWire) and still decode
// (CanonicalRecord re-encodes one for the digest). The format is the
// stored one's own, not the log entry's (event/codec.go), though alike.
//
// Decoding checks every count against the bytes left before it allocates
// (hostile input allocates at most a small multiple of its length) and
// refuses trailing bytes, unordered map keys and a non-canonical
// properties encoding.
const recordV1 byte = 0xc1

// Minimum encoded sizes of the repeated items of a record.
const (
	minIDRefSize     = 4     // 3 lengths, 1 flag
	minRecTraitSize  = 1 + 1 // key, length
	minRecConsentLen = 1 + 1 // key, flag
)

// IsLegacyRecord reports whether a stored event record is in the msgpack
// form of earlier versions.
func IsLegacyRecord(data []byte) bool { return len(data) == 0 || data[0] != recordV1 }

// CanonicalRecord returns a stored event record as the current code would
// write it: a legacy (msgpack) one re-encoded, for the digest, so that an
// old node and a replay of its log digest alike. A current or undecodable
// value is returned as it is.
func CanonicalRecord(data []byte) []byte {
	if !IsLegacyRecord(data) {
		return data
	}
	r, err := decodeRecord(data)
	if err != nil {
		return data
	}
	b, err := encodeRecord(&r)
	if err != nil {
		return data
	}
	return b
}

// encodeRecord returns the stored form of r. It fails when r.Properties
// holds a type event.AppendMsgpack does not know (JSON never yields one).
func encodeRecord(r *event.Record) ([]byte, error) {
	b, _, err := appendRecord(make([]byte, 0, recordSize(r)), nil, r)
	return b, err
}

// appendRecord appends the stored form of r to dst; keys is scratch for
// sorting map keys (returned for reuse). On error dst is returned as it was.
func appendRecord(dst []byte, keys []string, r *event.Record) ([]byte, []string, error) {
	b := append(dst, recordV1)
	b = wire.AppendBytes(b, r.ID)
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
	if len(r.Properties) == 0 {
		b = append(b, 0)
	} else {
		// The length prefix goes before the value, whose length is known
		// only once written: reserve the largest uvarint, then move the
		// value down.
		start := len(b)
		b = append(b, make([]byte, binary.MaxVarintLen64)...)
		var ok bool
		if b, ok = event.AppendMsgpack(b, r.Properties); !ok {
			return dst, keys, fmt.Errorf("encode record: properties hold a type that is not JSON")
		}
		n := len(b) - start - binary.MaxVarintLen64
		hdr := binary.AppendUvarint(b[start:start], uint64(n))
		copy(b[start+len(hdr):], b[start+binary.MaxVarintLen64:])
		b = b[:start+len(hdr)+n]
	}
	b = wire.AppendBytes(b, r.Private)
	keys = sortedKeys(keys, r.Consent)
	b = binary.AppendUvarint(b, uint64(len(keys)))
	for _, k := range keys {
		b = wire.AppendString(b, k)
		b = wire.AppendBool(b, r.Consent[k])
	}
	return b, keys, nil
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

// recordSize is an upper bound of the encoded size of r without its
// properties (a guess of 64 bytes per property), so that encodeRecord
// usually allocates once (Txn.Add reuses one buffer instead).
func recordSize(r *event.Record) int {
	const v = binary.MaxVarintLen64
	n := 1 + 16*v + len(r.ID) + len(r.MessageID) + len(r.Source) + len(r.Kind) + len(r.Event) +
		len(r.Name) + len(r.Channel) + len(r.DeviceType) + len(r.Key) + len(r.Private)
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
	return n + 64*len(r.Properties)
}

// decodeRecord decodes a stored event record in either form. Errors wrap
// ErrCorrupt.
func decodeRecord(b []byte) (event.Record, error) {
	if IsLegacyRecord(b) {
		var r event.Record
		if err := unmarshal(b, &r); err != nil {
			return event.Record{}, fmt.Errorf("decode record: %w: %v", ErrCorrupt, err)
		}
		return r, nil
	}
	d := recordDecoder{wire.NewReader(b[1:], ErrCorrupt)}
	r := d.record()
	if err := d.Finish(); err != nil {
		return event.Record{}, fmt.Errorf("decode record: %w", err)
	}
	return r, nil
}

// recordDecoder reads format version 1 (wire.Reader: the first error
// sticks and every later read returns a zero value).
type recordDecoder struct{ wire.Reader }

func (d *recordDecoder) record() event.Record {
	var r event.Record
	r.ID = d.Bytes("id")
	r.MessageID = d.String("messageId")
	r.Source = d.String("source")
	r.Kind = event.Kind(d.String("kind"))
	r.Event = d.String("event")
	r.Name = d.String("name")
	r.Time = d.Varint("time")
	r.Received = d.Varint("received")
	r.Channel = d.String("channel")
	r.DeviceType = d.String("device type")
	r.Key = d.Bytes("key")
	if n := d.Count("id count", minIDRefSize); n > 0 {
		r.IDs = make([]event.IDRef, n)
		for i := range r.IDs {
			id := &r.IDs[i]
			id.Type = d.String("id type")
			id.Hash = d.Bytes("id hash")
			id.Sealed = d.Bytes("id sealed")
			id.Weak = d.Bool("id weak")
		}
	}
	if n := d.Count("trait count", minRecTraitSize); n > 0 {
		r.Traits = make(map[string][]byte, n)
		var prev string
		for i := range n {
			k := d.Key("trait", i, prev)
			r.Traits[k], prev = d.Bytes("trait value"), k
		}
	}
	if p := d.Raw("properties"); len(p) > 0 && d.Err() == nil {
		v, err := event.DecodeMsgpack(p)
		m, ok := v.(map[string]any)
		switch {
		case err != nil:
			d.Fail("properties: %v", err)
		case !ok || len(m) == 0:
			d.Fail("properties: %T of length %d, want a non-empty map", v, len(m))
		default:
			r.Properties = m
		}
	}
	r.Private = d.Bytes("private")
	if n := d.Count("consent count", minRecConsentLen); n > 0 {
		r.Consent = make(map[string]bool, n)
		var prev string
		for i := range n {
			k := d.Key("consent", i, prev)
			r.Consent[k], prev = d.Bool("consent value"), k
		}
	}
	return r
}
