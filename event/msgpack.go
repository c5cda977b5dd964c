package event

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math"
	"slices"
	"strings"
)

// A hand-written msgpack encoder and decoder for the dynamic values of an
// event (properties, traits, context: what JSON decoding yields), so that
// the edge and the apply loop need no reflection for them.
//
// The encoder writes exactly the bytes of github.com/vmihailenco/msgpack/v5
// with SetSortMapKeys(true) and UseCompactInts(true) (map keys sorted,
// integers in their smallest form, floats as they are), for the types it
// knows; those bytes are sealed and hashed, so they must not change
// (TestAppendMsgpackMatchesLibrary). The decoder returns the Go types that
// library's Unmarshal into an `any` returns for the same bytes (int8 for a
// fixint, uint8 for a uint 8, []any, map[string]any, ...), so that a record
// decoded either way is the same value (TestDecodeMsgpackMatchesLibrary,
// FuzzDecodeMsgpack).

// maxMsgpackDepth bounds the nesting of containers the encoder writes and
// the decoder reads (the log's msgpack check allows as much).
const maxMsgpackDepth = 10_000

// AppendMsgpack appends the msgpack encoding of v (map keys sorted,
// integers compact) to buf. ok is false when v holds a type the encoder
// does not know (anything beyond nil, bool, string, json.Number, the
// integer and float types, []any, []string, map[string]any) or nests deeper
// than 10,000; buf is then returned unchanged.
func AppendMsgpack(buf []byte, v any) (_ []byte, ok bool) {
	out, ok := appendMsgpack(buf, v, 0)
	if !ok {
		return buf, false
	}
	return out, true
}

func appendMsgpack(b []byte, v any, depth int) ([]byte, bool) {
	if depth > maxMsgpackDepth {
		return b, false
	}
	switch x := v.(type) {
	case nil:
		return append(b, 0xc0), true
	case bool:
		if x {
			return append(b, 0xc3), true
		}
		return append(b, 0xc2), true
	case string:
		return appendMsgpackString(b, x), true
	case json.Number:
		return appendMsgpackString(b, string(x)), true
	case int64:
		return appendMsgpackInt(b, x), true
	case int:
		return appendMsgpackInt(b, int64(x)), true
	case int32:
		return appendMsgpackInt(b, int64(x)), true
	case int16:
		return appendMsgpackInt(b, int64(x)), true
	case int8:
		return appendMsgpackInt(b, int64(x)), true
	case uint64:
		return appendMsgpackUint(b, x), true
	case uint:
		return appendMsgpackUint(b, uint64(x)), true
	case uint32:
		return appendMsgpackUint(b, uint64(x)), true
	case uint16:
		return appendMsgpackUint(b, uint64(x)), true
	case uint8:
		return appendMsgpackUint(b, uint64(x)), true
	case float64:
		b = append(b, 0xcb)
		return binary.BigEndian.AppendUint64(b, math.Float64bits(x)), true
	case float32:
		b = append(b, 0xca)
		return binary.BigEndian.AppendUint32(b, math.Float32bits(x)), true
	case []any:
		if x == nil {
			return append(b, 0xc0), true
		}
		b = appendMsgpackArrayLen(b, len(x))
		for _, e := range x {
			var ok bool
			if b, ok = appendMsgpack(b, e, depth+1); !ok {
				return b, false
			}
		}
		return b, true
	case []string:
		if x == nil {
			return append(b, 0xc0), true
		}
		b = appendMsgpackArrayLen(b, len(x))
		for _, e := range x {
			b = appendMsgpackString(b, e)
		}
		return b, true
	case map[string]any:
		if x == nil {
			return append(b, 0xc0), true
		}
		b = appendMsgpackMapLen(b, len(x))
		// The entries in key order; a small map's on the stack, and each
		// value read with its key rather than looked up again.
		var small [smallMapEntries]mapEntry
		var es []mapEntry
		if len(x) <= len(small) {
			es = small[:0]
		} else {
			es = make([]mapEntry, 0, len(x))
		}
		for k, v := range x {
			es = append(es, mapEntry{k, v})
		}
		slices.SortFunc(es, func(a, b mapEntry) int { return strings.Compare(a.k, b.k) })
		for i := range es {
			b = appendMsgpackString(b, es[i].k)
			var ok bool
			if b, ok = appendMsgpack(b, es[i].v, depth+1); !ok {
				return b, false
			}
		}
		clear(es) // no references into the value left behind on a reused stack
		return b, true
	}
	return b, false
}

// smallMapEntries is how many entries of a map appendMsgpack sorts on the
// stack.
const smallMapEntries = 16

type mapEntry struct {
	k string
	v any
}

func appendMsgpackString(b []byte, s string) []byte {
	switch l := len(s); {
	case l < 32:
		b = append(b, 0xa0|byte(l))
	case l < 256:
		b = append(b, 0xd9, byte(l))
	case l <= math.MaxUint16:
		b = append(b, 0xda)
		b = binary.BigEndian.AppendUint16(b, uint16(l))
	default:
		b = append(b, 0xdb)
		b = binary.BigEndian.AppendUint32(b, uint32(l))
	}
	return append(b, s...)
}

func appendMsgpackArrayLen(b []byte, l int) []byte {
	switch {
	case l < 16:
		return append(b, 0x90|byte(l))
	case l <= math.MaxUint16:
		return binary.BigEndian.AppendUint16(append(b, 0xdc), uint16(l))
	}
	return binary.BigEndian.AppendUint32(append(b, 0xdd), uint32(l))
}

func appendMsgpackMapLen(b []byte, l int) []byte {
	switch {
	case l < 16:
		return append(b, 0x80|byte(l))
	case l <= math.MaxUint16:
		return binary.BigEndian.AppendUint16(append(b, 0xde), uint16(l))
	}
	return binary.BigEndian.AppendUint32(append(b, 0xdf), uint32(l))
}

func appendMsgpackUint(b []byte, n uint64) []byte {
	switch {
	case n <= math.MaxInt8:
		return append(b, byte(n))
	case n <= math.MaxUint8:
		return append(b, 0xcc, byte(n))
	case n <= math.MaxUint16:
		return binary.BigEndian.AppendUint16(append(b, 0xcd), uint16(n))
	case n <= math.MaxUint32:
		return binary.BigEndian.AppendUint32(append(b, 0xce), uint32(n))
	}
	return binary.BigEndian.AppendUint64(append(b, 0xcf), n)
}

func appendMsgpackInt(b []byte, n int64) []byte {
	switch {
	case n >= 0:
		return appendMsgpackUint(b, uint64(n))
	case n >= -32:
		return append(b, byte(n))
	case n >= math.MinInt8:
		return append(b, 0xd0, byte(n))
	case n >= math.MinInt16:
		return binary.BigEndian.AppendUint16(append(b, 0xd1), uint16(n))
	case n >= math.MinInt32:
		return binary.BigEndian.AppendUint32(append(b, 0xd2), uint32(n))
	}
	return binary.BigEndian.AppendUint64(append(b, 0xd3), uint64(n))
}

// AppendPrivateMsgpack appends the msgpack encoding of p, as the library
// encodes the struct (a map of its non-empty fields in declaration order).
// ok is false when p.Context holds a type AppendMsgpack does not know.
func AppendPrivateMsgpack(buf []byte, p *Private) (_ []byte, ok bool) {
	n := 0
	for _, s := range [...]string{p.UserID, p.AnonymousID, p.PreviousID, p.GroupID} {
		if s != "" {
			n++
		}
	}
	if len(p.Context) > 0 {
		n++
	}
	if p.SentAt != 0 {
		n++
	}
	b := appendMsgpackMapLen(buf, n)
	for _, f := range [...]struct{ k, v string }{{"u", p.UserID}, {"a", p.AnonymousID}, {"pr", p.PreviousID}, {"g", p.GroupID}} {
		if f.v != "" {
			b = appendMsgpackString(appendMsgpackString(b, f.k), f.v)
		}
	}
	if len(p.Context) > 0 {
		b = appendMsgpackString(b, "c")
		if b, ok = appendMsgpack(b, p.Context, 0); !ok {
			return buf, false
		}
	}
	if p.SentAt != 0 {
		b = appendMsgpackInt(appendMsgpackString(b, "s"), p.SentAt)
	}
	return b, true
}

// msgpackDecoder reads the subset of msgpack AppendMsgpack writes. Every
// length is checked against the bytes left before anything is allocated,
// so hostile input allocates at most a small multiple of its length.
type msgpackDecoder struct {
	b   []byte
	off int
	err error
}

func (d *msgpackDecoder) fail(format string, args ...any) {
	if d.err == nil {
		d.err = fmt.Errorf("msgpack at %d: %s", d.off, fmt.Sprintf(format, args...))
	}
	d.off = len(d.b) // stop reading
}

func (d *msgpackDecoder) take(n int) []byte {
	if n < 0 || n > len(d.b)-d.off {
		d.fail("length %d beyond the data", n)
		return nil
	}
	s := d.b[d.off : d.off+n]
	d.off += n
	return s
}

func (d *msgpackDecoder) uint(n int) uint64 {
	s := d.take(n)
	switch len(s) {
	case 1:
		return uint64(s[0])
	case 2:
		return uint64(binary.BigEndian.Uint16(s))
	case 4:
		return uint64(binary.BigEndian.Uint32(s))
	case 8:
		return binary.BigEndian.Uint64(s)
	}
	return 0
}

// count reads a container length of the given header width and checks
// that at least min bytes per element are left.
func (d *msgpackDecoder) count(width, min int) int {
	n := d.uint(width)
	if d.err != nil {
		return 0
	}
	if n > uint64(len(d.b)-d.off)/uint64(min) {
		d.fail("%d elements beyond the data", n)
		return 0
	}
	return int(n)
}

func (d *msgpackDecoder) str(c byte) (string, bool) {
	var n int
	switch {
	case c >= 0xa0 && c <= 0xbf:
		n = int(c & 0x1f)
	case c == 0xd9:
		n = int(d.uint(1))
	case c == 0xda:
		n = int(d.uint(2))
	case c == 0xdb:
		n = int(d.uint(4))
	default:
		return "", false
	}
	return string(d.take(n)), true
}

func (d *msgpackDecoder) value(depth int) any {
	if d.err != nil {
		return nil
	}
	if depth > maxMsgpackDepth {
		d.fail("nesting deeper than %d", maxMsgpackDepth)
		return nil
	}
	if d.off >= len(d.b) {
		d.fail("value missing")
		return nil
	}
	c := d.b[d.off]
	d.off++
	switch {
	case c <= 0x7f || c >= 0xe0:
		return int8(c)
	case c >= 0x80 && c <= 0x8f:
		return d.mapBody(int(c&0x0f), depth)
	case c >= 0x90 && c <= 0x9f:
		return d.arrayBody(int(c&0x0f), depth)
	case c >= 0xa0 && c <= 0xbf:
		s, _ := d.str(c)
		return s
	}
	switch c {
	case 0xc0:
		return nil
	case 0xc2:
		return false
	case 0xc3:
		return true
	case 0xca:
		return math.Float32frombits(uint32(d.uint(4)))
	case 0xcb:
		return math.Float64frombits(d.uint(8))
	case 0xcc:
		return uint8(d.uint(1))
	case 0xcd:
		return uint16(d.uint(2))
	case 0xce:
		return uint32(d.uint(4))
	case 0xcf:
		return d.uint(8)
	case 0xd0:
		return int8(d.uint(1))
	case 0xd1:
		return int16(d.uint(2))
	case 0xd2:
		return int32(d.uint(4))
	case 0xd3:
		return int64(d.uint(8))
	case 0xd9, 0xda, 0xdb:
		s, _ := d.str(c)
		return s
	case 0xdc:
		return d.arrayBody(d.count(2, 1), depth)
	case 0xdd:
		return d.arrayBody(d.count(4, 1), depth)
	case 0xde:
		return d.mapBody(d.count(2, 2), depth)
	case 0xdf:
		return d.mapBody(d.count(4, 2), depth)
	}
	d.off--
	d.fail("code 0x%02x not allowed", c)
	return nil
}

func (d *msgpackDecoder) arrayBody(n, depth int) any {
	if n > len(d.b)-d.off {
		d.fail("%d elements beyond the data", n)
		return nil
	}
	s := make([]any, 0, n)
	for i := 0; i < n && d.err == nil; i++ {
		s = append(s, d.value(depth+1))
	}
	if d.err != nil {
		return nil
	}
	return s
}

func (d *msgpackDecoder) mapBody(n, depth int) any {
	m := d.mapEntries(n, depth)
	if m == nil {
		return nil
	}
	return m
}

func (d *msgpackDecoder) mapEntries(n, depth int) map[string]any {
	if n > (len(d.b)-d.off)/2 {
		d.fail("%d entries beyond the data", n)
		return nil
	}
	m := make(map[string]any, n)
	for i := 0; i < n && d.err == nil; i++ {
		if d.off >= len(d.b) {
			d.fail("key missing")
			break
		}
		c := d.b[d.off]
		d.off++
		k, ok := d.str(c)
		if !ok {
			d.off--
			d.fail("map key code 0x%02x: want a string", c)
			break
		}
		m[k] = d.value(depth + 1)
	}
	if d.err != nil {
		return nil
	}
	return m
}

// decodeMsgpackMap decodes one msgpack map of string keys (or nil) that
// fills all of b.
func decodeMsgpackMap(b []byte) (map[string]any, error) {
	d := msgpackDecoder{b: b}
	v := d.value(0)
	if d.err != nil {
		return nil, d.err
	}
	if d.off != len(b) {
		return nil, fmt.Errorf("msgpack: %d trailing bytes", len(b)-d.off)
	}
	switch m := v.(type) {
	case nil:
		return nil, nil
	case map[string]any:
		return m, nil
	}
	return nil, fmt.Errorf("msgpack: %T, want a map", v)
}

// DecodeMsgpack decodes one msgpack value that fills all of data, as the
// msgpack library's Unmarshal into an `any` would, for the subset
// AppendMsgpack writes (no binary, extension or non-string map keys).
func DecodeMsgpack(data []byte) (any, error) {
	d := msgpackDecoder{b: data}
	v := d.value(0)
	if d.err != nil {
		return nil, fmt.Errorf("event: %w", d.err)
	}
	if d.off != len(data) {
		return nil, fmt.Errorf("event: msgpack: %d trailing bytes", len(data)-d.off)
	}
	return v, nil
}
