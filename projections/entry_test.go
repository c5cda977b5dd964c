package projections

import (
	"github.com/aurumcdp/aurum/event"
	"github.com/vmihailenco/msgpack/v5"
)

// marshalEntry encodes a log entry as the engine writes it: an
// *event.Batch in the binary form (event.EncodeBatch), with each record's
// plaintext Properties "sealed" by the identity function (the tests' opener
// returns the sealed bytes as they are) unless SealedProperties is set;
// anything else (a Control) in msgpack.
func marshalEntry(v any) ([]byte, error) {
	b, ok := v.(*event.Batch)
	if !ok {
		return msgpack.Marshal(v)
	}
	c := *b
	c.Records = make([]event.Record, len(b.Records))
	for i := range b.Records {
		c.Records[i] = b.Records[i]
		r := &c.Records[i]
		if len(r.SealedProperties) == 0 && len(r.Properties) > 0 {
			r.SealedProperties, _ = event.AppendMsgpack(nil, r.Properties)
		}
	}
	return event.EncodeBatch(&c), nil
}

// openIdentity opens what marshalEntry "sealed": the bytes are the
// plaintext.
func openIdentity(_, sealed []byte) ([]byte, error) { return sealed, nil }
