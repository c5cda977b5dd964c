package wire

import (
	"bytes"
	"encoding/binary"
	"errors"
	"math"
	"strings"
	"testing"
)

var errTest = errors.New("test: corrupt")

// TestRoundTrip writes every primitive and reads it back.
func TestRoundTrip(t *testing.T) {
	var b []byte
	b = binary.AppendUvarint(b, 300)
	b = binary.AppendVarint(b, -5)
	b = AppendFloat64(b, math.Copysign(0, -1))
	b = AppendFloat64(b, 2.5)
	b = AppendBool(b, true)
	b = AppendBool(b, false)
	b = AppendString(b, "héllo")
	b = AppendString(b, "")
	b = AppendBytes(b, []byte{1, 2, 3})
	b = AppendBytes(b, nil)
	b = AppendString(b, "a")
	b = AppendString(b, "b")

	r := NewReader(b, errTest)
	if got := r.Uvarint("u"); got != 300 {
		t.Fatalf("Uvarint = %d", got)
	}
	if got := r.Varint("v"); got != -5 {
		t.Fatalf("Varint = %d", got)
	}
	if got := r.Float64("f"); got != 0 || !math.Signbit(got) {
		t.Fatalf("Float64 = %v, want -0", got)
	}
	if got := r.Float64("f"); got != 2.5 {
		t.Fatalf("Float64 = %v", got)
	}
	if !r.Bool("t") || r.Bool("f") {
		t.Fatal("Bool")
	}
	if got := r.String("s"); got != "héllo" {
		t.Fatalf("String = %q", got)
	}
	if got := r.String("s"); got != "" {
		t.Fatalf("String = %q", got)
	}
	got := r.Bytes("b")
	if !bytes.Equal(got, []byte{1, 2, 3}) || cap(got) != 3 {
		t.Fatalf("Bytes = %v cap %d, want [1 2 3] cap 3", got, cap(got))
	}
	if got := r.Bytes("b"); got != nil {
		t.Fatalf("empty Bytes = %v, want nil", got)
	}
	if k := r.Key("k", 0, ""); k != "a" {
		t.Fatalf("Key = %q", k)
	}
	if k := r.Key("k", 1, "a"); k != "b" {
		t.Fatalf("Key = %q", k)
	}
	if err := r.Finish(); err != nil {
		t.Fatal(err)
	}
}

// TestNoAliasing: values read do not share memory with the input, which
// may be a buffer the caller reuses.
func TestNoAliasing(t *testing.T) {
	in := AppendBytes(AppendString(nil, "abc"), []byte("xyz"))
	r := NewReader(in, errTest)
	s, b := r.String("s"), r.Bytes("b")
	for i := range in {
		in[i] = 0
	}
	if s != "abc" || string(b) != "xyz" {
		t.Fatalf("after clobbering the input: %q %q", s, b)
	}
}

// TestErrors: each way an input can be wrong gives an error wrapping the
// caller's sentinel and naming the field; the error sticks.
func TestErrors(t *testing.T) {
	tests := []struct {
		name string
		in   []byte
		read func(r *Reader)
		want string
	}{
		{"empty uvarint", nil, func(r *Reader) { r.Uvarint("size") }, "bad size"},
		{"overlong uvarint", bytes.Repeat([]byte{0xff}, 11), func(r *Reader) { r.Uvarint("size") }, "bad size"},
		{"empty varint", nil, func(r *Reader) { r.Varint("time") }, "bad time"},
		{"short float", []byte{1, 2, 3}, func(r *Reader) { r.Float64("sum") }, "short sum"},
		{"bad bool", []byte{2}, func(r *Reader) { r.Bool("flag") }, "bad flag"},
		{"empty bool", nil, func(r *Reader) { r.Bool("flag") }, "bad flag"},
		{"string past end", []byte{5, 'a'}, func(r *Reader) { r.String("name") }, "name length 5 exceeds the input"},
		{"bytes past end", []byte{2}, func(r *Reader) { r.Bytes("id") }, "id length 2 exceeds the input"},
		{"count past end", []byte{3, 0, 0, 0, 0, 0}, func(r *Reader) { r.Count("items", 3) }, "items 3 exceeds the input"},
		{"huge count", binary.AppendUvarint(nil, math.MaxUint64), func(r *Reader) { r.Count("items", 1) }, "exceeds the input"},
		{"keys out of order", AppendString(AppendString(nil, "b"), "a"), func(r *Reader) { p := r.Key("trait", 0, ""); r.Key("trait", 1, p) }, `trait keys not in order at "a"`},
		{"duplicate key", AppendString(AppendString(nil, "a"), "a"), func(r *Reader) { p := r.Key("trait", 0, ""); r.Key("trait", 1, p) }, "not in order"},
		{"trailing", []byte{1, 2}, func(r *Reader) { r.Uvarint("x") }, "1 trailing bytes"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := NewReader(tc.in, errTest)
			tc.read(&r)
			err := r.Finish()
			if !errors.Is(err, errTest) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want %q wrapping the sentinel", err, tc.want)
			}
			// Sticky: later reads return zero values and keep the first error.
			if r.Uvarint("later") != 0 || r.String("later") != "" || r.Bytes("later") != nil || r.Len() != 0 {
				t.Fatal("reads after an error returned data")
			}
			if r.Err() != err {
				t.Fatalf("error changed to %v", r.Err())
			}
		})
	}
}

// TestCount accepts exactly what the remaining bytes can hold.
func TestCount(t *testing.T) {
	in := append([]byte{2}, make([]byte, 6)...)
	r := NewReader(in, errTest)
	if n := r.Count("items", 3); n != 2 || r.Err() != nil {
		t.Fatalf("Count = %d, %v; want 2", n, r.Err())
	}
	r = NewReader(in, errTest)
	if n := r.Count("items", 4); n != 0 || r.Err() == nil {
		t.Fatalf("Count(min 4) = %d, %v; want an error", n, r.Err())
	}
}

func TestCheckMsgpack(t *testing.T) {
	tests := []struct {
		name string
		in   []byte
		lim  MsgpackLimits
		n    int    // length of the first value, if accepted
		err  string // else part of the error
	}{
		{"nil", []byte{0xc0}, MsgpackLimits{}, 1, ""},
		{"fixarray", []byte{0x92, 0x01, 0xa1, 'x'}, MsgpackLimits{}, 4, ""},
		{"map with trailing value", []byte{0x81, 0x01, 0x02, 0xc0}, MsgpackLimits{}, 3, ""},
		{"bin8", []byte{0xc4, 2, 9, 9}, MsgpackLimits{}, 4, ""},
		{"ext8", []byte{0xc7, 1, 5, 9}, MsgpackLimits{}, 4, ""},
		{"fixext4", []byte{0xd6, 1, 0, 0, 0, 0}, MsgpackLimits{}, 6, ""},
		{"float64", append([]byte{0xcb}, make([]byte, 8)...), MsgpackLimits{}, 9, ""},
		{"empty", nil, MsgpackLimits{}, 0, "truncated"},
		{"0xc1", []byte{0xc1}, MsgpackLimits{}, 0, "code 0xc1"},
		{"array32 of 4 billion", []byte{0xdd, 0xff, 0xff, 0xff, 0xff, 0xc0}, MsgpackLimits{}, 0, "length beyond the data"},
		{"array16 past end", []byte{0xdc, 0x00, 0x05, 0xc0, 0xc0}, MsgpackLimits{}, 0, "container of 5 values"},
		{"str8 past end", []byte{0xd9, 3, 'a', 'b'}, MsgpackLimits{}, 0, "value beyond the data"},
		{"length beyond the data", []byte{0xd9, 9, 'a'}, MsgpackLimits{}, 0, "length beyond the data"},
		{"truncated header", []byte{0xdb, 0x00}, MsgpackLimits{}, 0, "truncated header"},
		{"array missing element", []byte{0x92, 0x01}, MsgpackLimits{}, 0, "container of 2 values"},
		{"nested array missing element", []byte{0x92, 0x91, 0x01}, MsgpackLimits{}, 0, "truncated"},
		{"over MaxElems", []byte{0xdc, 0x00, 0x03, 1, 2, 3}, MsgpackLimits{MaxElems: 2}, 0, "container of 3 elements"},
		{"at MaxElems", []byte{0xdc, 0x00, 0x02, 1, 2}, MsgpackLimits{MaxElems: 2}, 5, ""},
		{"over MaxDepth", []byte{0x91, 0x91, 0x91, 0xc0}, MsgpackLimits{MaxDepth: 3}, 0, "nested too deep"},
		{"at MaxDepth", []byte{0x91, 0x91, 0xc0}, MsgpackLimits{MaxDepth: 3}, 3, ""},
		{"deep without limit", append(bytes.Repeat([]byte{0x91}, 100000), 0xc0), MsgpackLimits{}, 100001, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			n, err := CheckMsgpack(tc.in, tc.lim)
			if tc.err == "" {
				if err != nil || n != tc.n {
					t.Fatalf("= %d, %v; want %d, nil", n, err, tc.n)
				}
				return
			}
			if !errors.Is(err, ErrMsgpack) || !strings.Contains(err.Error(), tc.err) {
				t.Fatalf("err = %v, want %q", err, tc.err)
			}
		})
	}
}

// FuzzReader runs a script of reads (the first bytes of the input) over the
// rest: nothing panics, no allocation is larger than the input, and an
// error sticks.
func FuzzReader(f *testing.F) {
	f.Add([]byte{0, 1, 2, 3}, []byte{1, 2, 3, 4, 5, 6, 7, 8, 9})
	f.Add([]byte{4, 5, 6, 7, 8}, AppendString(AppendBytes(nil, []byte("id")), "name"))
	f.Fuzz(func(t *testing.T, script, in []byte) {
		r := NewReader(in, errTest)
		for i, op := range script {
			switch op % 9 {
			case 0:
				r.Uvarint("u")
			case 1:
				r.Varint("v")
			case 2:
				r.Float64("f")
			case 3:
				r.Bool("b")
			case 4:
				if b := r.Bytes("bytes"); len(b) > len(in) {
					t.Fatalf("Bytes of %d from %d bytes", len(b), len(in))
				}
			case 5:
				if s := r.String("s"); len(s) > len(in) {
					t.Fatalf("String of %d from %d bytes", len(s), len(in))
				}
			case 6:
				if n := r.Count("c", 1+int(op)/9); n > len(in) {
					t.Fatalf("Count %d from %d bytes", n, len(in))
				}
			case 7:
				r.Key("k", i, "m")
			case 8:
				r.Length("l")
			}
			if r.Len() > len(in) {
				t.Fatal("Len grew")
			}
		}
		if err := r.Err(); err != nil && !errors.Is(err, errTest) {
			t.Fatalf("error %v does not wrap the sentinel", err)
		}
	})
}

// FuzzCheckMsgpack: the length returned is within the input, and the
// check never panics.
func FuzzCheckMsgpack(f *testing.F) {
	f.Add([]byte{0x92, 0x01, 0xa1, 'x'})
	f.Add([]byte{0xdd, 0xff, 0xff, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, in []byte) {
		n, err := CheckMsgpack(in, MsgpackLimits{MaxElems: 1 << 16, MaxDepth: 1000})
		if err == nil && (n <= 0 || n > len(in)) {
			t.Fatalf("length %d of %d bytes", n, len(in))
		}
	})
}
