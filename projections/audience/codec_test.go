package audience

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"math"
	"math/rand/v2"
	"reflect"
	"strings"
	"testing"

	"github.com/aurumcdp/aurum/internal/wire"
	"github.com/vmihailenco/msgpack/v5"
)

// fill sets every field of v (a pointer's target) to random values, slices
// to 0–3 random elements (a zero length as nil, as the codec decodes it). A
// field of a kind it does not know fails the test: teach fill, and the codec.
func fill(t *testing.T, r *rand.Rand, v reflect.Value) {
	t.Helper()
	switch v.Kind() {
	case reflect.String:
		b := make([]byte, r.IntN(12))
		for i := range b {
			b[i] = byte(r.IntN(256))
		}
		v.SetString(string(b))
	case reflect.Int64:
		switch r.IntN(4) {
		case 0:
			v.SetInt(int64(r.Uint64())) // any, negatives included
		case 1:
			v.SetInt(r.Int64N(1 << 20))
		default:
			v.SetInt(1_780_000_000_000 + r.Int64N(1<<40))
		}
	case reflect.Float64:
		switch r.IntN(4) {
		case 0:
			v.SetFloat(math.Copysign(0, -1))
		case 1:
			v.SetFloat(math.Inf(1 - 2*r.IntN(2)))
		default:
			v.SetFloat(r.NormFloat64() * 1e6)
		}
	case reflect.Slice:
		n := r.IntN(4)
		if n == 0 {
			v.SetZero()
			return
		}
		v.Set(reflect.MakeSlice(v.Type(), n, n))
		for i := range n {
			fill(t, r, v.Index(i))
		}
	case reflect.Uint8:
		v.SetUint(uint64(r.IntN(256)))
	case reflect.Struct:
		for i := range v.NumField() {
			fill(t, r, v.Field(i))
		}
	default:
		t.Fatalf("fill: field of kind %s (%s): add it to fill and to the state codec", v.Kind(), v.Type())
	}
}

func randomState(t *testing.T, r *rand.Rand) *State {
	var s State
	fill(t, r, reflect.ValueOf(&s).Elem())
	return &s
}

// TestStateCodecCoversEveryField fails when a field is added to State,
// AggState, AggEntry or Member without being encoded: the field counts are
// pinned (update them with the codec), and random values in every field
// must survive the round trip.
func TestStateCodecCoversEveryField(t *testing.T) {
	for _, c := range []struct {
		v      any
		fields int
	}{{State{}, 3}, {AggState{}, 8}, {AggEntry{}, 3}, {Member{}, 3}} {
		if n := reflect.TypeOf(c.v).NumField(); n != c.fields {
			t.Errorf("%T has %d fields, the codec encodes %d: update codec.go (a new format version) and this count", c.v, n, c.fields)
		}
	}
	r := rand.New(rand.NewPCG(1, 2))
	for i := range 2000 {
		s := randomState(t, r)
		b, err := EncodeState(s)
		if err != nil {
			t.Fatal(err)
		}
		got, err := DecodeState(b)
		if err != nil {
			t.Fatalf("case %d: decode: %v", i, err)
		}
		if !reflect.DeepEqual(got, s) {
			t.Fatalf("case %d: round trip\n got %#v\nwant %#v", i, got, s)
		}
		if b2, _ := EncodeState(got); !bytes.Equal(b, b2) {
			t.Fatalf("case %d: re-encoding differs", i)
		}
	}
}

// TestStateCodecDeterministic: equal states give equal bytes (the digest
// hashes them), nil and empty slices alike; different states differ.
func TestStateCodecDeterministic(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	seen := map[string]bool{}
	for range 500 {
		s := randomState(t, r)
		// A deep copy, with empty (not nil) slices.
		c := State{Timer: s.Timer, Aggs: []AggState{}, Members: append([]Member{}, s.Members...)}
		for _, a := range s.Aggs {
			a.Entries = append([]AggEntry{}, a.Entries...)
			for j := range a.Entries {
				a.Entries[j].ID = append([]byte{}, a.Entries[j].ID...)
			}
			c.Aggs = append(c.Aggs, a)
		}
		b1, _ := EncodeState(s)
		b2, _ := EncodeState(&c)
		if !bytes.Equal(b1, b2) {
			t.Fatalf("equal states, different bytes:\n%x\n%x", b1, b2)
		}
		seen[string(b1)] = true
	}
	if len(seen) < 490 {
		t.Errorf("only %d distinct encodings of 500 random states", len(seen))
	}
}

// sampleState has two aggregates (windowed and all-time), a member, a timer.
func sampleState() *State {
	t0 := int64(1_780_000_003_080)
	return &State{
		Aggs: []AggState{
			{Key: "count:Order 1d", Entries: []AggEntry{{T: t0, ID: append(make([]byte, 15), 1)}, {T: t0 + 1000, ID: append(make([]byte, 15), 2)}}},
			{Key: "sum:Order:rev", N: 2, Sum: 128, Min: 50, Max: 100, First: t0, Last: t0 + 1000},
		},
		Members: []Member{{Audience: "vip", Since: t0 + 1000, Version: 2}},
		Timer:   t0 + 86400000 + 1000,
	}
}

// TestDecodeStateCorrupt: every truncation and a table of hostile inputs
// give an error, never a panic or a large allocation.
func TestDecodeStateCorrupt(t *testing.T) {
	good, _ := EncodeState(sampleState())
	for n := range len(good) {
		if _, err := DecodeState(good[:n]); err == nil {
			t.Errorf("truncated to %d of %d bytes: no error", n, len(good))
		}
	}
	for _, c := range []struct {
		name string
		in   string // hex
	}{
		{"trailing byte", hex.EncodeToString(append(good[:len(good):len(good)], 0))},
		{"aggregate count 2^63", "c180808080808080808001"},
		{"aggregate count too large for input", "c1ff01" + "00"},
		{"member count too large", "c100ffffffff0f00"},
		{"key length past end", "c101ff01" + zeros32},
		{"entry count past end", "c10100ffff03" + zeros32},
		{"overlong varint", "c1ffffffffffffffffffff01"},
		{"empty", ""},
		{"v2: unknown aggregate flag", "c20101" + "6b" + "00" + "80" + "01" + "00" + "00"},
		{"v2: entry count past end", "c201016b" + "ff03" + "00"},
		{"v2: entry value flagged but cut", "c201016b" + "01" + "01" + "02" + "0102"},
		{"msgpack (earlier builds): a map", "81a161c0"},
		{"msgpack (earlier builds): map32 claims 2^32-1 entries", "dfffffffff"},
	} {
		in, err := hex.DecodeString(c.in)
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		if _, err := DecodeState(in); err == nil {
			t.Errorf("%s: no error", c.name)
		} else if !errors.Is(err, ErrCorruptState) {
			t.Errorf("%s: error %v does not wrap ErrCorruptState", c.name, err)
		}
	}
}

// appendStateV1 is the encoder of format version 1 (the current one
// before session 13), kept to test that its states are still read.
func appendStateV1(dst []byte, s *State) []byte {
	dst = append(dst, stateV1)
	dst = binary.AppendUvarint(dst, uint64(len(s.Aggs)))
	for i := range s.Aggs {
		a := &s.Aggs[i]
		dst = wire.AppendString(dst, a.Key)
		dst = binary.AppendUvarint(dst, uint64(len(a.Entries)))
		for j := range a.Entries {
			e := &a.Entries[j]
			dst = binary.AppendVarint(dst, e.T)
			dst = wire.AppendFloat64(dst, e.V)
			dst = wire.AppendBytes(dst, e.ID)
		}
		dst = binary.AppendVarint(dst, a.N)
		dst = wire.AppendFloat64(dst, a.Sum)
		dst = wire.AppendFloat64(dst, a.Min)
		dst = wire.AppendFloat64(dst, a.Max)
		dst = binary.AppendVarint(dst, a.First)
		dst = binary.AppendVarint(dst, a.Last)
	}
	return appendMembers(dst, s)
}

// TestStateV1StillRead: states stored by earlier builds (version 1) decode
// to the same State, which encodes in version 2; -0 and NaN payloads in
// values and sums survive both; and version 2 is smaller on a state like the
// example audiences'.
func TestStateV1StillRead(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	odd := sampleState()
	odd.Aggs[0].Entries[1].V = math.Copysign(0, -1)
	odd.Aggs[1].Min = math.Float64frombits(0x7ff8000000000123)
	states := []*State{sampleState(), benchState, odd, {}}
	for range 500 {
		states = append(states, randomState(t, r))
	}
	for i, st := range states {
		v1 := appendStateV1(nil, st)
		got, err := DecodeState(v1)
		if err != nil {
			t.Fatalf("case %d: decode v1: %v", i, err)
		}
		// Compared by their version-1 bytes: bit for bit (NaN != NaN).
		if !bytes.Equal(appendStateV1(nil, got), v1) {
			t.Fatalf("case %d: v1 decoded\n got %#v\nwant %#v", i, got, st)
		}
		v2, _ := EncodeState(got)
		if v2[0] != stateV2 {
			t.Fatalf("case %d: encoded as version %#x", i, v2[0])
		}
		back, err := DecodeState(v2)
		if err != nil || !bytes.Equal(appendStateV1(nil, back), v1) {
			t.Fatalf("case %d: v2 round trip: %v\n got %#v\nwant %#v", i, err, back, st)
		}
	}
	// benchState with the values counts have (none: addEvent folds 0).
	real, _ := DecodeState(AppendState(nil, benchState))
	for i := range real.Aggs {
		if strings.HasPrefix(real.Aggs[i].Key, "count:") {
			for j := range real.Aggs[i].Entries {
				real.Aggs[i].Entries[j].V = 0
			}
		}
	}
	v1, v2 := appendStateV1(nil, real), AppendState(nil, real)
	t.Logf("benchState, counts without values: version 1 %d bytes, version 2 %d bytes (%.2f×)", len(v1), len(v2), float64(len(v2))/float64(len(v1)))
	if len(v2) >= len(v1)*3/4 {
		t.Errorf("version 2 is %d bytes against version 1's %d: want at least a quarter less", len(v2), len(v1))
	}
}

const zeros32 = "0000000000000000000000000000000000000000000000000000000000000000"

// decodedSize is the memory a decoded state holds, in bytes.
func decodedSize(s *State) int {
	n := int(reflect.TypeOf(State{}).Size())
	for _, a := range s.Aggs {
		n += int(reflect.TypeOf(a).Size()) + len(a.Key)
		for _, e := range a.Entries {
			n += int(reflect.TypeOf(e).Size()) + len(e.ID)
		}
	}
	for _, m := range s.Members {
		n += int(reflect.TypeOf(m).Size()) + len(m.Audience)
	}
	return n
}

// FuzzDecodeState: decoding never panics, whatever decodes holds memory
// bounded by the input's length, and re-encodes to a fixed point.
func FuzzDecodeState(f *testing.F) {
	good, _ := EncodeState(sampleState())
	f.Add(good)
	f.Add([]byte{stateV1, 0, 0, 0})
	f.Add([]byte{stateV2, 0, 0, 0})
	f.Add(appendStateV1(nil, sampleState()))
	f.Add([]byte{0x80})
	f.Add([]byte{stateV1, 0xff, 0xff, 0xff, 0xff, 0x0f})
	f.Fuzz(func(t *testing.T, in []byte) {
		s, err := DecodeState(in)
		if err != nil {
			return
		}
		if got, limit := decodedSize(s), 64+40*len(in); got > limit {
			t.Fatalf("%d input bytes decoded into %d bytes of state (limit %d)", len(in), got, limit)
		}
		b1, err := EncodeState(s)
		if err != nil {
			t.Fatal(err)
		}
		s2, err := DecodeState(b1)
		if err != nil {
			t.Fatalf("re-decode: %v", err)
		}
		if b2, _ := EncodeState(s2); !bytes.Equal(b1, b2) {
			t.Fatal("encoding is not a fixed point")
		}
	})
}

var benchState = func() *State {
	s := &State{Timer: 1_780_090_000_000}
	t0 := int64(1_780_000_000_000)
	for _, k := range []string{"count:Order Completed:1d", "count:Order Completed:30d", "count:Order Completed:90d", "sum:Order Completed:revenue:365d", "count:Product Viewed:7d", "count:Order Refunded:90d"} {
		a := AggState{Key: k}
		for i := range 12 {
			a.Entries = append(a.Entries, AggEntry{T: t0 + int64(i)*1000, V: 120, ID: append(make([]byte, 12), byte(i), 1, 2, 3)})
		}
		s.Aggs = append(s.Aggs, a)
	}
	s.Aggs = append(s.Aggs, AggState{Key: "count:Order Completed", N: 40, Sum: 4800, Min: 120, Max: 120, First: t0, Last: t0 + 40000})
	for _, m := range []string{"bought-no-return", "high-spenders", "vip"} {
		s.Members = append(s.Members, Member{Audience: m, Since: t0, Version: 1})
	}
	return s
}()

// BenchmarkStateCodec compares the hand-written codec with the msgpack
// (reflection) form it replaces, on a state like the example audiences'.
func BenchmarkStateCodec(b *testing.B) {
	old, _ := msgpack.Marshal(benchState)
	cur, _ := EncodeState(benchState)
	b.Run("encode/msgpack", func(b *testing.B) {
		b.SetBytes(int64(len(old)))
		for b.Loop() {
			if _, err := msgpack.Marshal(benchState); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("encode/v1", func(b *testing.B) {
		b.SetBytes(int64(len(cur)))
		for b.Loop() {
			if _, err := EncodeState(benchState); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("decode/msgpack", func(b *testing.B) {
		b.SetBytes(int64(len(old)))
		for b.Loop() {
			var s State
			if err := msgpack.Unmarshal(old, &s); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("decode/v1", func(b *testing.B) {
		b.SetBytes(int64(len(cur)))
		for b.Loop() {
			if _, err := DecodeState(cur); err != nil {
				b.Fatal(err)
			}
		}
	})
}
