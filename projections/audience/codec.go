package audience

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"

	"github.com/vmihailenco/msgpack/v5"
)

// The stored form of a State (key p/<partition>/u/<profile>).
//
// Version 1, hand-written (no reflection), deterministic: equal states give
// equal bytes, which the digest relies on.
//
//	state    = 0xc1 uvarint(len Aggs) agg* uvarint(len Members) member* varint(Timer)
//	agg      = str(Key) uvarint(len Entries) entry* varint(N) f64(Sum) f64(Min) f64(Max) varint(First) varint(Last)
//	entry    = varint(T) f64(V) bytes(ID)
//	member   = str(Audience) varint(Since) varint(Version)
//	str      = uvarint(len) bytes
//	bytes    = uvarint(len) bytes        (length 0 decodes as nil)
//	f64      = 8 bytes little endian of math.Float64bits (every bit kept: -0, NaN payloads)
//	varint   = encoding/binary zig-zag varint; uvarint = encoding/binary uvarint
//
// The leading byte 0xc1 is the one code the msgpack format never uses, and a
// msgpack State starts with a map, an array or nil code, so the two forms
// cannot be confused: DecodeState still reads states written in msgpack by
// earlier versions (they are re-written in this form when next changed). A
// later version takes another leading byte that no msgpack State starts
// with (e.g. an ext code 0xc7..0xc9 or 0xd4..0xd8).
//
// Decoding checks every length against the bytes left before it allocates,
// so hostile input allocates at most a small multiple of its own length, and
// it refuses trailing bytes.
const stateV1 byte = 0xc1

// Minimum encoded sizes, used to bound allocations by the input length.
const (
	minAggSize    = 1 + 1 + 1 + 3*8 + 1 + 1 // key len, entries len, N, Sum/Min/Max, First, Last
	minEntrySize  = 1 + 8 + 1               // T, V, ID len
	minMemberSize = 1 + 1 + 1               // name len, Since, Version
)

// ErrCorruptState is wrapped by DecodeState for bytes that are not a valid
// stored state.
var ErrCorruptState = errors.New("audience: corrupt state")

// EncodeState encodes s deterministically (format version 1, above).
func EncodeState(s *State) ([]byte, error) {
	return AppendState(make([]byte, 0, stateSize(s)), s), nil
}

// AppendState appends the encoding of s to dst.
func AppendState(dst []byte, s *State) []byte {
	dst = append(dst, stateV1)
	dst = binary.AppendUvarint(dst, uint64(len(s.Aggs)))
	for i := range s.Aggs {
		a := &s.Aggs[i]
		dst = appendString(dst, a.Key)
		dst = binary.AppendUvarint(dst, uint64(len(a.Entries)))
		for j := range a.Entries {
			e := &a.Entries[j]
			dst = binary.AppendVarint(dst, e.T)
			dst = binary.LittleEndian.AppendUint64(dst, math.Float64bits(e.V))
			dst = binary.AppendUvarint(dst, uint64(len(e.ID)))
			dst = append(dst, e.ID...)
		}
		dst = binary.AppendVarint(dst, a.N)
		dst = binary.LittleEndian.AppendUint64(dst, math.Float64bits(a.Sum))
		dst = binary.LittleEndian.AppendUint64(dst, math.Float64bits(a.Min))
		dst = binary.LittleEndian.AppendUint64(dst, math.Float64bits(a.Max))
		dst = binary.AppendVarint(dst, a.First)
		dst = binary.AppendVarint(dst, a.Last)
	}
	dst = binary.AppendUvarint(dst, uint64(len(s.Members)))
	for i := range s.Members {
		m := &s.Members[i]
		dst = appendString(dst, m.Audience)
		dst = binary.AppendVarint(dst, m.Since)
		dst = binary.AppendVarint(dst, m.Version)
	}
	return binary.AppendVarint(dst, s.Timer)
}

func appendString(dst []byte, s string) []byte {
	dst = binary.AppendUvarint(dst, uint64(len(s)))
	return append(dst, s...)
}

// stateSize is an upper bound of the encoded size of s (varints counted at
// their maximum), so that EncodeState allocates once.
func stateSize(s *State) int {
	n := 1 + binary.MaxVarintLen64*3
	for i := range s.Aggs {
		a := &s.Aggs[i]
		n += binary.MaxVarintLen64*5 + 3*8 + len(a.Key)
		for j := range a.Entries {
			n += binary.MaxVarintLen64*2 + 8 + len(a.Entries[j].ID)
		}
	}
	for i := range s.Members {
		n += binary.MaxVarintLen64*3 + len(s.Members[i].Audience)
	}
	return n
}

// DecodeState decodes a stored state: format version 1 or, for states
// written by earlier versions, msgpack.
func DecodeState(data []byte) (*State, error) { return decodeState(data, nil) }

// DecodeState is DecodeState for states of this set's profiles: aggregate
// keys and audience names the set knows are not allocated again (the
// decoded strings share the set's). s may be nil.
func (s *Set) DecodeState(data []byte) (*State, error) {
	if s == nil {
		return decodeState(data, nil)
	}
	return decodeState(data, s.intern)
}

func decodeState(data []byte, intern map[string]string) (*State, error) {
	if len(data) == 0 || data[0] != stateV1 {
		// The msgpack decoder sizes a slice by its declared length before
		// reading its elements: check the structure first, so that no
		// declared length exceeds the bytes that follow it.
		if err := checkMsgpack(data); err != nil {
			return nil, fmt.Errorf("audience: decode state: %w", err)
		}
		var s State
		if err := msgpack.Unmarshal(data, &s); err != nil {
			return nil, fmt.Errorf("audience: decode state: %w", err)
		}
		return &s, nil
	}
	d := stateDecoder{buf: data[1:], intern: intern}
	s := d.state()
	if d.err == nil && len(d.buf) != 0 {
		d.fail("%d trailing bytes", len(d.buf))
	}
	if d.err != nil {
		return nil, fmt.Errorf("audience: decode state: %w", d.err)
	}
	return s, nil
}

// IsLegacyState reports whether data is a state in the earlier msgpack form
// (one that EncodeState would now write differently).
func IsLegacyState(data []byte) bool { return len(data) == 0 || data[0] != stateV1 }

// stateDecoder reads format version 1; the first error sticks and every
// later read returns zero values.
type stateDecoder struct {
	buf []byte
	ids []byte // one copy of the input: entry IDs are sub-slices of it
	off int    // offset of buf within the input copy
	err error
	// intern holds strings to reuse instead of allocating (nil: none).
	intern map[string]string
}

func (d *stateDecoder) fail(format string, args ...any) {
	if d.err == nil {
		d.err = fmt.Errorf("%w: "+format, append([]any{ErrCorruptState}, args...)...)
	}
	d.buf = nil
}

func (d *stateDecoder) uvarint(what string) uint64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.buf)
	if n <= 0 {
		d.fail("bad %s", what)
		return 0
	}
	d.advance(n)
	return v
}

func (d *stateDecoder) varint(what string) int64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Varint(d.buf)
	if n <= 0 {
		d.fail("bad %s", what)
		return 0
	}
	d.advance(n)
	return v
}

func (d *stateDecoder) f64(what string) float64 {
	if d.err != nil {
		return 0
	}
	if len(d.buf) < 8 {
		d.fail("short %s", what)
		return 0
	}
	v := math.Float64frombits(binary.LittleEndian.Uint64(d.buf))
	d.advance(8)
	return v
}

func (d *stateDecoder) advance(n int) {
	d.buf = d.buf[n:]
	d.off += n
}

// count reads a length of items at least min bytes each, refusing one the
// remaining input cannot hold.
func (d *stateDecoder) count(what string, min int) int {
	n := d.uvarint(what)
	if d.err != nil {
		return 0
	}
	if n > uint64(len(d.buf)/min) {
		d.fail("%s %d exceeds the input", what, n)
		return 0
	}
	return int(n)
}

// bytes reads a length-prefixed byte string, returned as a slice of the
// input copy (capacity clipped: appending to it cannot clobber its
// neighbours).
func (d *stateDecoder) bytes(what string) []byte {
	n := d.uvarint(what)
	if d.err != nil {
		return nil
	}
	if n > uint64(len(d.buf)) {
		d.fail("%s length %d exceeds the input", what, n)
		return nil
	}
	if n == 0 {
		return nil
	}
	if d.ids == nil {
		d.ids = append([]byte(nil), d.buf...) // one copy of the rest of the input
		d.off = 0
	}
	b := d.ids[d.off : d.off+int(n) : d.off+int(n)]
	d.advance(int(n))
	return b
}

func (d *stateDecoder) str(what string) string {
	n := d.uvarint(what)
	if d.err != nil {
		return ""
	}
	if n > uint64(len(d.buf)) {
		d.fail("%s length %d exceeds the input", what, n)
		return ""
	}
	s, ok := d.intern[string(d.buf[:n])] // no allocation for the look-up
	if !ok {
		s = string(d.buf[:n])
	}
	d.advance(int(n))
	return s
}

func (d *stateDecoder) state() *State {
	s := &State{}
	if n := d.count("aggregate count", minAggSize); n > 0 {
		s.Aggs = make([]AggState, n)
		for i := range s.Aggs {
			a := &s.Aggs[i]
			a.Key = d.str("aggregate key")
			if m := d.count("entry count", minEntrySize); m > 0 {
				a.Entries = make([]AggEntry, m)
				for j := range a.Entries {
					e := &a.Entries[j]
					e.T = d.varint("entry time")
					e.V = d.f64("entry value")
					e.ID = d.bytes("entry id")
				}
			}
			a.N = d.varint("count")
			a.Sum = d.f64("sum")
			a.Min = d.f64("min")
			a.Max = d.f64("max")
			a.First = d.varint("first")
			a.Last = d.varint("last")
		}
	}
	if n := d.count("member count", minMemberSize); n > 0 {
		s.Members = make([]Member, n)
		for i := range s.Members {
			m := &s.Members[i]
			m.Audience = d.str("audience")
			m.Since = d.varint("since")
			m.Version = d.varint("version")
		}
	}
	s.Timer = d.varint("timer")
	return s
}

// checkMsgpack checks that data is exactly one well-formed msgpack value
// whose every declared length fits in the bytes that follow it (each array
// element or map entry takes at least one byte). It walks the value without
// recursion and allocates nothing.
func checkMsgpack(data []byte) error {
	pending := 1 // values still to read
	i := 0
	need := func(n uint64) bool { return n <= uint64(len(data)-i) }
	for pending > 0 {
		if i >= len(data) {
			return fmt.Errorf("%w: truncated msgpack", ErrCorruptState)
		}
		c := data[i]
		i++
		pending--
		var skip, items uint64 // bytes to skip; values to add
		switch {
		case c <= 0x7f || c >= 0xe0, c == 0xc0, c == 0xc2, c == 0xc3:
		case c <= 0x8f:
			items = 2 * uint64(c&0x0f)
		case c <= 0x9f:
			items = uint64(c & 0x0f)
		case c <= 0xbf:
			skip = uint64(c & 0x1f)
		default:
			var lenBytes int // bytes of a big-endian length that follows
			var fixed uint64 // bytes of payload not counted by that length
			var mul uint64   // the length counts values (1, 2) or bytes (0)
			switch c {
			case 0xc4, 0xd9:
				lenBytes = 1
			case 0xc5, 0xda:
				lenBytes = 2
			case 0xc6, 0xdb:
				lenBytes = 4
			case 0xc7:
				lenBytes, fixed = 1, 1
			case 0xc8:
				lenBytes, fixed = 2, 1
			case 0xc9:
				lenBytes, fixed = 4, 1
			case 0xca, 0xd2, 0xce:
				fixed = 4
			case 0xcb, 0xd3, 0xcf:
				fixed = 8
			case 0xcc, 0xd0:
				fixed = 1
			case 0xcd, 0xd1:
				fixed = 2
			case 0xd4, 0xd5, 0xd6, 0xd7, 0xd8:
				fixed = 1 + 1<<(c-0xd4)
			case 0xdc:
				lenBytes, mul = 2, 1
			case 0xdd:
				lenBytes, mul = 4, 1
			case 0xde:
				lenBytes, mul = 2, 2
			case 0xdf:
				lenBytes, mul = 4, 2
			default: // 0xc1: never used
				return fmt.Errorf("%w: bad msgpack code %#x", ErrCorruptState, c)
			}
			if !need(uint64(lenBytes)) {
				return fmt.Errorf("%w: truncated msgpack", ErrCorruptState)
			}
			var n uint64
			for _, b := range data[i : i+lenBytes] {
				n = n<<8 | uint64(b)
			}
			i += lenBytes
			if mul == 0 {
				skip = fixed + n
			} else {
				items = mul * n
			}
		}
		if !need(skip) {
			return fmt.Errorf("%w: msgpack length exceeds the input", ErrCorruptState)
		}
		i += int(skip)
		if !need(items + uint64(pending)) {
			return fmt.Errorf("%w: msgpack length exceeds the input", ErrCorruptState)
		}
		pending += int(items)
	}
	if i != len(data) {
		return fmt.Errorf("%w: %d trailing bytes", ErrCorruptState, len(data)-i)
	}
	return nil
}

// StateUnchanged reports whether data, a stored state of a settled profile
// (Step.Settled), would be written back unchanged by an evaluation at now
// that feeds no aggregate and evaluates no audience (Set.Quiet): it is in
// the current format and well formed (DecodeState would accept it), it
// holds exactly the set's aggregates, no windowed aggregate has an entry
// to evict at now, every membership is of an audience of the set, and its
// timer is not due (0 or after now). It allocates nothing.
//
// The timer is then also the one the evaluation would compute: on a
// settled profile it was computed under this set, no input of any rule
// changed since, and now has not reached it, so every candidate
// (rules.Rule.NextChange, entries dated in the future) is what it was.
func (s *Set) StateUnchanged(data []byte, now int64) bool {
	if len(data) == 0 || data[0] != stateV1 {
		return false
	}
	d := stateDecoder{buf: data[1:]}
	skip := func(what string) []byte { // a length-prefixed string, not copied
		n := d.uvarint(what)
		if d.err != nil || n > uint64(len(d.buf)) {
			d.fail("%s", what)
			return nil
		}
		b := d.buf[:n]
		d.advance(int(n))
		return b
	}
	n := d.count("aggregate count", minAggSize)
	if d.err != nil || n != len(s.sorted) {
		return false
	}
	for i := 0; i < n; i++ {
		ka := &s.sorted[i]
		if string(skip("aggregate key")) != ka.key {
			return false
		}
		m := d.count("entry count", minEntrySize)
		for j := 0; j < m; j++ {
			t := d.varint("entry time")
			d.f64("entry value")
			skip("entry id")
			if j == 0 && ka.agg.Window > 0 && t <= now-ka.agg.Window {
				return false // evict would drop it
			}
		}
		d.varint("count")
		d.f64("sum")
		d.f64("min")
		d.f64("max")
		d.varint("first")
		d.varint("last")
	}
	members := d.count("member count", minMemberSize)
	for i := 0; i < members; i++ {
		if _, ok := s.byName[string(skip("audience"))]; !ok {
			return false
		}
		d.varint("since")
		d.varint("version")
	}
	timer := d.varint("timer")
	if d.err != nil || len(d.buf) != 0 {
		return false
	}
	if n == 0 && members == 0 && timer == 0 {
		return false // would be deleted
	}
	return timer == 0 || timer > now
}
