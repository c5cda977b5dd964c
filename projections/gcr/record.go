package gcr

import (
	"fmt"

	"github.com/aurumcdp/aurum/event"
	"github.com/aurumcdp/aurum/internal/wire"
)

// The stored form of an event record (key ev/<event><profile>, indexed by
// p/<partition>/e/<profile>/<time>/<event>: gcr.go):
//
//	record = 0xc1 0x02 body
//
// where body is the record body of the log entry (event.AppendRecord,
// event/codec.go): one codec for both forms, deterministic (maps in key
// order, nil and empty alike). The properties stay sealed as they came on
// the log (Record.SealedProperties); readers open them (event.Record.OpenProperties, RecordView).
//
// The version byte follows the mark 0xc1; records of other versions (and
// the msgpack records of earlier builds) are not read. Decoding checks every
// count against the bytes left before it allocates (hostile input
// allocates at most a small multiple of its length) and refuses trailing
// bytes and unordered map keys.
const (
	recordMark     byte = 0xc1
	recordVersion2 byte = 0x02
)

// encodeRecord returns the stored form of r.
func encodeRecord(r *event.Record) []byte {
	b, _ := appendRecord(make([]byte, 0, 2+event.RecordSize(r)), nil, r)
	return b
}

// appendRecord appends the stored form of r to dst; keys is scratch for
// sorting map keys (returned for reuse).
func appendRecord(dst []byte, keys []string, r *event.Record) ([]byte, []string) {
	return event.AppendRecord(append(dst, recordMark, recordVersion2), keys, r)
}

// decodeRecord decodes a stored event record. Errors wrap ErrCorrupt.
func decodeRecord(b []byte) (event.Record, error) {
	if len(b) < 2 || b[0] != recordMark || b[1] != recordVersion2 {
		return event.Record{}, fmt.Errorf("decode record: %w: not a record of version %d", ErrCorrupt, recordVersion2)
	}
	d := event.RecordReader{Reader: wire.NewReader(b[2:], ErrCorrupt)}
	var r event.Record
	d.Record(&r)
	if err := d.Finish(); err != nil {
		return event.Record{}, fmt.Errorf("decode record: %w", err)
	}
	return r, nil
}
