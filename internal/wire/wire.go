// Package wire holds the primitives of Aurum's hand-written binary
// encodings (the stored GCR, the stored audience state): append functions
// for the writer side and a bounds-checked Reader for the decoder side, and
// CheckMsgpack, the structural check run on msgpack bytes from outside
// before a reflection decoder sees them.
//
// The encodings are built from:
//
//	uvarint = encoding/binary uvarint; varint = encoding/binary zig-zag varint
//	f64     = 8 bytes little endian of math.Float64bits (every bit kept: -0, NaN payloads)
//	str     = uvarint(len) bytes
//	bytes   = uvarint(len) bytes        (length 0 decodes as nil)
//
// A Reader checks every length and count against the bytes left before it
// allocates, so hostile input allocates at most a small multiple of its own
// length; the first error sticks and every later read returns a zero value,
// so a decoder reads its whole structure and checks Err once.
package wire

import (
	"encoding/binary"
	"fmt"
	"math"
)

// AppendString appends s as a str.
func AppendString(dst []byte, s string) []byte {
	dst = binary.AppendUvarint(dst, uint64(len(s)))
	return append(dst, s...)
}

// AppendBytes appends b as a bytes.
func AppendBytes(dst, b []byte) []byte {
	dst = binary.AppendUvarint(dst, uint64(len(b)))
	return append(dst, b...)
}

// AppendFloat64 appends v as an f64.
func AppendFloat64(dst []byte, v float64) []byte {
	return binary.LittleEndian.AppendUint64(dst, math.Float64bits(v))
}

// AppendBool appends v as one byte, 0 or 1.
func AppendBool(dst []byte, v bool) []byte {
	if v {
		return append(dst, 1)
	}
	return append(dst, 0)
}

// Reader reads the primitives from one input. Byte strings are sub-slices
// of one copy of the input and strings substrings of one string copy: two
// allocations for all of them, and no returned value aliases the caller's
// input (which may be a Pebble buffer reused after the read).
type Reader struct {
	// in is the input; the Reader is at in[off:]. It is never re-sliced
	// (reading moves an int): a read writes no pointer, so it takes no GC
	// write barrier, which was a fifth of the feature row's decode.
	in      []byte
	copy    []byte // one copy of the input (nil until the first byte string)
	str0    string // one string copy of the input ("" until the first string)
	off     int    // the offset read to
	soff    int    // value of off when str0 was taken
	err     error
	corrupt error // wrapped by every error
}

// NewReader returns a Reader of b whose errors wrap corrupt (the caller's
// sentinel, e.g. gcr.ErrCorrupt).
func NewReader(b []byte, corrupt error) Reader {
	return Reader{in: b, corrupt: corrupt}
}

// Err is the first error met, nil if none.
func (r *Reader) Err() error { return r.err }

// Len is the number of bytes not read yet.
func (r *Reader) Len() int { return len(r.in) - r.off }

// rest is the input not read yet.
func (r *Reader) rest() []byte { return r.in[r.off:] }

// Fail records an error (unless one is recorded already) and stops the
// Reader.
func (r *Reader) Fail(format string, args ...any) {
	if r.err == nil {
		r.err = fmt.Errorf("%w: "+format, append([]any{r.corrupt}, args...)...)
	}
	r.off = len(r.in)
}

// Finish fails the Reader if bytes are left, and returns Err.
func (r *Reader) Finish() error {
	if r.err == nil && r.Len() != 0 {
		r.Fail("%d trailing bytes", r.Len())
	}
	return r.err
}

func (r *Reader) advance(n int) {
	r.off += n
}

// Uvarint reads a uvarint; what names it in an error.
func (r *Reader) Uvarint(what string) uint64 {
	if r.err != nil {
		return 0
	}
	v, n := binary.Uvarint(r.rest())
	if n <= 0 {
		r.Fail("bad %s", what)
		return 0
	}
	r.advance(n)
	return v
}

// Varint reads a zig-zag varint.
func (r *Reader) Varint(what string) int64 {
	if r.err != nil {
		return 0
	}
	v, n := binary.Varint(r.rest())
	if n <= 0 {
		r.Fail("bad %s", what)
		return 0
	}
	r.advance(n)
	return v
}

// Float64 reads an f64.
func (r *Reader) Float64(what string) float64 {
	if r.err != nil {
		return 0
	}
	if r.Len() < 8 {
		r.Fail("short %s", what)
		return 0
	}
	v := math.Float64frombits(binary.LittleEndian.Uint64(r.rest()))
	r.advance(8)
	return v
}

// Bool reads one byte that must be 0 or 1.
func (r *Reader) Bool(what string) bool {
	if r.err != nil {
		return false
	}
	if r.Len() == 0 || r.rest()[0] > 1 {
		r.Fail("bad %s", what)
		return false
	}
	v := r.rest()[0] == 1
	r.advance(1)
	return v
}

// Length reads a byte length, refusing one past the end of the input.
func (r *Reader) Length(what string) int {
	n := r.Uvarint(what)
	if r.err != nil {
		return 0
	}
	if n > uint64(r.Len()) {
		r.Fail("%s length %d exceeds the input", what, n)
		return 0
	}
	return int(n)
}

// Count reads a number of items that take at least min bytes each (min ≥
// 1), refusing one the remaining input cannot hold: the caller may
// allocate that many items.
func (r *Reader) Count(what string, min int) int {
	n := r.Uvarint(what)
	if r.err != nil {
		return 0
	}
	if n > uint64(r.Len()/min) {
		r.Fail("%s %d exceeds the input", what, n)
		return 0
	}
	return int(n)
}

// Bytes reads a bytes: a slice of the input copy, its capacity clipped
// (appending to it cannot clobber its neighbours); nil when empty.
func (r *Reader) Bytes(what string) []byte {
	n := r.Length(what)
	if n == 0 {
		return nil
	}
	if r.copy == nil {
		r.copy = make([]byte, len(r.in))
		copy(r.copy[r.off:], r.rest())
	}
	b := r.copy[r.off : r.off+n : r.off+n]
	r.advance(n)
	return b
}

// String reads a str.
func (r *Reader) String(what string) string {
	n := r.Length(what)
	if n == 0 {
		return ""
	}
	if r.str0 == "" {
		r.str0 = string(r.rest()) // the rest of the input, once
		r.soff = r.off
	}
	s := r.str0[r.off-r.soff : r.off-r.soff+n]
	r.advance(n)
	return s
}

// Key reads the i-th key of a map written in key order, refusing one not
// after prev (keys strictly increase, so one value has one encoding).
func (r *Reader) Key(what string, i int, prev string) string {
	k := r.String(what)
	if r.err == nil && i > 0 && k <= prev {
		r.Fail("%s keys not in order at %q", what, k)
	}
	return k
}

// Raw reads a str or bytes and returns it as a slice of the input itself
// (no copy): valid only while the caller's input is, for comparing or
// skipping without allocating.
func (r *Reader) Raw(what string) []byte {
	n := r.Length(what)
	if r.err != nil {
		return nil
	}
	b := r.rest()[:n:n]
	r.advance(n)
	return b
}

// Fixed reads n bytes (no length prefix) and returns them as a slice of
// the input itself (no copy), valid only while the caller's input is.
func (r *Reader) Fixed(what string, n int) []byte {
	if r.err != nil {
		return nil
	}
	if n < 0 || r.Len() < n {
		r.Fail("short %s", what)
		return nil
	}
	b := r.rest()[:n:n]
	r.advance(n)
	return b
}

// InternString reads a str; when intern holds it, intern's copy is returned
// and nothing is allocated (decoders of many values with few distinct
// names, such as aggregate keys, pass the names they know).
func (r *Reader) InternString(what string, intern map[string]string) string {
	if intern == nil {
		return r.String(what)
	}
	b := r.Raw(what)
	if s, ok := intern[string(b)]; ok { // no allocation for the look-up
		return s
	}
	return string(b)
}
