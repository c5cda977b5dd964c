package bench

import (
	"bytes"
	"fmt"
	"testing"

	"github.com/aurumcdp/aurum/event"
	"github.com/aurumcdp/aurum/seal"
	"github.com/aurumcdp/aurum/store"
)

// benchKeyring returns a keyring on a throw-away store, as the engine's:
// log entries built by sealedEntry with it carry properties sealed under
// each record's key, and the state machine opens them with its Open.
func benchKeyring(tb testing.TB) *seal.Keyring {
	tb.Helper()
	db, err := store.Open(tb.TempDir(), &store.Options{NoWAL: true})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { db.Close() })
	kr, err := seal.NewKeyring(db, bytes.Repeat([]byte{7}, 32), nil)
	if err != nil {
		tb.Fatal(err)
	}
	return kr
}

// openIdentity is the opener of entries built by sealedEntry with a nil
// keyring: "sealed" properties are their plaintext.
func openIdentity(_, sealed []byte) ([]byte, error) { return sealed, nil }

// sealedEntry encodes b as the engine writes log entries: each record's
// Properties sealed (SealedProperties) with kr under the record's key, or
// with the identity when kr is nil.
func sealedEntry(tb testing.TB, kr *seal.Keyring, b *event.Batch) []byte {
	data, err := encodeEntry(kr, b)
	if err != nil {
		tb.Fatal(err)
	}
	return data
}

func encodeEntry(kr *seal.Keyring, b *event.Batch) ([]byte, error) {
	c := *b
	c.Records = make([]event.Record, len(b.Records))
	var keys [][]byte
	for i := range b.Records {
		c.Records[i] = b.Records[i]
		keys = append(keys, b.Records[i].Key)
	}
	if kr != nil {
		if err := kr.Ensure(keys); err != nil {
			return nil, err
		}
	}
	for i := range c.Records {
		r := &c.Records[i]
		if len(r.Properties) == 0 {
			continue
		}
		pt, ok := event.AppendMsgpack(nil, r.Properties)
		if !ok {
			return nil, fmt.Errorf("properties %v are not JSON", r.Properties)
		}
		r.SealedProperties = pt
		if kr != nil {
			s, err := kr.Seal(r.Key, pt)
			if err != nil {
				return nil, err
			}
			r.SealedProperties = s
		}
		r.Properties = nil
	}
	return event.EncodeBatch(&c), nil
}
