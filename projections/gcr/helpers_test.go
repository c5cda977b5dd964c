package gcr

import (
	"bytes"
	"testing"

	"github.com/aurumcdp/aurum/event"
	"github.com/aurumcdp/aurum/store"
	"github.com/vmihailenco/msgpack/v5"
)

// pid returns a 16-byte profile id ending in n.
func pid(n byte) []byte {
	b := make([]byte, 16)
	b[0], b[15] = 0x01, n
	return b
}

// eid returns a 16-byte event id ending in n.
func eid(n byte) []byte {
	b := make([]byte, 16)
	b[0], b[15] = 0x02, n
	return b
}

// testKey is the data key id used by test records; xorOpen "decrypts" by
// XOR with its first byte.
var testKey = bytes.Repeat([]byte{0x5a}, 16)

func xorSeal(key, plain []byte) []byte {
	out := make([]byte, len(plain))
	for i, c := range plain {
		out[i] = c ^ key[0]
	}
	return out
}

func xorOpen(key, sealed []byte) ([]byte, error) { return xorSeal(key, sealed), nil }

func sealValue(t testing.TB, key []byte, v any) []byte {
	t.Helper()
	b, err := msgpack.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return xorSeal(key, b)
}

func ref(typ string, hash byte, sealed []byte) event.IDRef {
	return event.IDRef{Type: typ, Hash: bytes.Repeat([]byte{hash}, 16), Sealed: sealed}
}

// track returns a track record with props as the state machine has it:
// sealed (xorSeal of their msgpack) and opened.
func track(id byte, t int64, name string, props map[string]any) *event.Record {
	rec := &event.Record{
		ID: eid(id), MessageID: "m", Source: "web", Kind: event.Track, Event: name,
		Time: t, Received: t, Channel: "web", Key: testKey, Properties: props,
	}
	if len(props) > 0 {
		pt, _ := event.AppendMsgpack(nil, props)
		rec.SealedProperties = xorSeal(testKey, pt)
	}
	return rec
}

func mustAdd(t testing.TB, tx *Txn, profile []byte, rec *event.Record, owned ...event.IDRef) {
	t.Helper()
	if err := tx.Add(profile, rec, owned); err != nil {
		t.Fatal(err)
	}
}

func mustFlush(t testing.TB, tx *Txn) {
	t.Helper()
	if err := tx.Flush(); err != nil {
		t.Fatal(err)
	}
}

func mustGet(t testing.TB, p *Projection, r store.Reader, profile []byte) *Profile {
	t.Helper()
	prof, err := p.Get(r, profile)
	if err != nil {
		t.Fatal(err)
	}
	return prof
}

func mustEncode(t testing.TB, p *Profile) []byte {
	t.Helper()
	b, err := encodeProfile(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// counting wraps a ReadWriter and counts operations per key.
type counting struct {
	store.ReadWriter
	gets, sets, dels map[string]int
	scanned          int
}

func newCounting(rw store.ReadWriter) *counting {
	return &counting{ReadWriter: rw, gets: map[string]int{}, sets: map[string]int{}, dels: map[string]int{}}
}

func (c *counting) Get(k []byte) ([]byte, error) { c.gets[string(k)]++; return c.ReadWriter.Get(k) }
func (c *counting) Set(k, v []byte) error        { c.sets[string(k)]++; return c.ReadWriter.Set(k, v) }
func (c *counting) Delete(k []byte) error        { c.dels[string(k)]++; return c.ReadWriter.Delete(k) }
func (c *counting) Scan(lo, hi []byte, rev bool, fn func(k, v []byte) bool) error {
	return c.ReadWriter.Scan(lo, hi, rev, func(k, v []byte) bool { c.scanned++; return fn(k, v) })
}

// mustEncodeSansFeatures encodes p without its features (compared apart:
// their decayed scores are equal only within rounding across orders).
func mustEncodeSansFeatures(t testing.TB, p *Profile) []byte {
	t.Helper()
	c := *p
	c.Features = nil
	return mustEncode(t, &c)
}
