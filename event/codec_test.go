package event

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"reflect"
	"runtime"
	"strings"
	"testing"
	"unsafe"

	"github.com/vmihailenco/msgpack/v5"
)

// libEncode is how the edge encoded values before the hand-written
// encoder: the msgpack library, map keys sorted, integers compact.
func libEncode(t testing.TB, v any) []byte {
	t.Helper()
	var buf bytes.Buffer
	enc := msgpack.NewEncoder(&buf)
	enc.SetSortMapKeys(true)
	enc.UseCompactInts(true)
	if err := enc.Encode(v); err != nil {
		t.Fatalf("library encode %#v: %v", v, err)
	}
	return buf.Bytes()
}

// randValue returns a JSON-like value (what event.Parse yields, plus every
// integer and float type) with edge sizes of strings and containers.
func randValue(r *rand.Rand, depth int) any {
	n := r.IntN(16)
	if depth > 3 {
		n = r.IntN(9)
	}
	switch n {
	case 0:
		return nil
	case 1:
		return r.IntN(2) == 0
	case 2:
		lens := []int{0, 1, 31, 32, 255, 256, 65535, 65536}
		if depth > 1 {
			lens = lens[:6]
		}
		return strings.Repeat("x", lens[r.IntN(len(lens))])
	case 3:
		ints := []int64{0, 1, 127, 128, 255, 256, 65535, 65536, math.MaxUint32, math.MaxUint32 + 1, math.MaxInt64,
			-1, -32, -33, -128, -129, -32768, -32769, math.MinInt32, math.MinInt32 - 1, math.MinInt64}
		return ints[r.IntN(len(ints))]
	case 4:
		return []float64{0, 1.5, -2.25, 19.99, math.MaxFloat64, math.SmallestNonzeroFloat64, math.Inf(1)}[r.IntN(7)]
	case 5:
		return []any{int8(-5), int16(300), int32(-70000), uint8(200), uint16(60000), uint32(1 << 31), uint64(1 << 63),
			int(42), uint(7), float32(1.25)}[r.IntN(10)]
	case 6:
		return json.Number("12.5e3")
	case 7:
		return fmt.Sprintf("s-%d", r.IntN(1000))
	case 8:
		return []string{"a", "", strings.Repeat("b", 40)}
	case 9, 10, 11:
		l := []int{0, 1, 15, 16, 17}[r.IntN(5)]
		if depth > 0 {
			l = []int{0, 1, 3}[r.IntN(3)]
		}
		m := make(map[string]any, l)
		for i := range l {
			m[fmt.Sprintf("k%d-%d", i, r.IntN(100))] = randValue(r, depth+1)
		}
		return m
	default:
		l := []int{0, 1, 15, 16}[r.IntN(4)]
		if depth > 0 {
			l = []int{0, 1, 3}[r.IntN(3)]
		}
		s := make([]any, l)
		for i := range s {
			s[i] = randValue(r, depth+1)
		}
		return s
	}
}

func TestAppendMsgpackMatchesLibrary(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for i := range 3000 {
		v := randValue(r, 0)
		got, ok := AppendMsgpack(nil, v)
		if !ok {
			t.Fatalf("value %d (%T): not encodable", i, v)
		}
		if want := libEncode(t, v); !bytes.Equal(got, want) {
			t.Fatalf("value %d %#v:\n got %x\nwant %x", i, v, got, want)
		}
	}
	// A big map and array (16-bit and 32-bit headers).
	big := make(map[string]any, 70000)
	arr := make([]any, 70000)
	for i := range 70000 {
		big[fmt.Sprint(i)] = i
		arr[i] = int64(-i)
	}
	for _, v := range []any{big, arr} {
		got, _ := AppendMsgpack(nil, v)
		if !bytes.Equal(got, libEncode(t, v)) {
			t.Fatalf("big %T differs", v)
		}
	}
	// Types it does not know are refused, and buf is left as it was.
	for _, v := range []any{struct{}{}, []byte("x"), map[string]int{"a": 1}, map[string]any{"a": []any{complex(1, 2)}}} {
		buf := []byte{1, 2}
		if out, ok := AppendMsgpack(buf, v); ok || !bytes.Equal(out, []byte{1, 2}) {
			t.Fatalf("%T: ok %v, out %x", v, ok, out)
		}
	}
}

func TestAppendPrivateMsgpackMatchesLibrary(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	pick := func(s string) string {
		if r.IntN(2) == 0 {
			return ""
		}
		return s
	}
	for i := range 500 {
		p := Private{UserID: pick("u-1"), AnonymousID: pick("anon"), PreviousID: pick("prev"), GroupID: pick("g")}
		switch r.IntN(3) {
		case 0:
			p.Context = map[string]any{}
		case 1:
			p.Context, _ = randValue(r, 3).(map[string]any)
		}
		if r.IntN(2) == 0 {
			p.SentAt = r.Int64N(2e12) - 1e12
		}
		got, ok := AppendPrivateMsgpack(nil, &p)
		if !ok {
			t.Fatalf("private %d: not encodable", i)
		}
		if want := libEncode(t, &p); !bytes.Equal(got, want) {
			t.Fatalf("private %d %#v:\n got %x\nwant %x", i, p, got, want)
		}
	}
}

func TestDecodeMsgpackMatchesLibrary(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	for i := range 3000 {
		data, _ := AppendMsgpack(nil, randValue(r, 0))
		got, err := DecodeMsgpack(data)
		if err != nil {
			t.Fatalf("value %d: %v", i, err)
		}
		var want any
		if err := msgpack.Unmarshal(data, &want); err != nil {
			t.Fatal(err)
		}
		if g, w := fmt.Sprintf("%#v", got), fmt.Sprintf("%#v", want); g != w {
			t.Fatalf("value %d:\n got %s\nwant %s", i, g, w)
		}
	}
}

// randRecord returns a record as the edge makes them, with random fields.
func randRecord(r *rand.Rand, i int) Record {
	b := func(n int) []byte {
		out := make([]byte, n)
		for j := range out {
			out[j] = byte(r.Uint32())
		}
		return out
	}
	rec := Record{ID: b(16), MessageID: fmt.Sprintf("m-%d", i), Source: "web", Kind: []Kind{Track, Identify, Page, Alias}[r.IntN(4)],
		Time: r.Int64N(4e12) - 1e12, Received: r.Int64N(4e12), Key: b(16)}
	if r.IntN(2) == 0 {
		rec.Event, rec.Name, rec.Channel, rec.DeviceType = "Order Completed", "Home", "web", "mobile"
	}
	for j := range 1 + r.IntN(3) {
		id := IDRef{Type: []string{UserID, AnonymousID, Email}[j%3], Hash: b(16), Weak: r.IntN(3) == 0}
		if r.IntN(5) > 0 {
			id.Sealed = b(20 + r.IntN(40))
		}
		rec.IDs = append(rec.IDs, id)
	}
	if n := r.IntN(4); n > 0 {
		rec.Traits = map[string][]byte{}
		for j := range n {
			rec.Traits[fmt.Sprintf("t%d", j)] = b(30)
		}
	}
	if r.IntN(3) > 0 {
		rec.SealedProperties = b(40 + r.IntN(200))
	}
	if r.IntN(3) > 0 {
		rec.Private = b(50)
	}
	if r.IntN(3) == 0 {
		rec.Consent = map[string]bool{"email": true, "sms": false}
	}
	return rec
}

// TestBatchRoundTrip: a batch decodes to the value encoded, and the form
// is canonical: decoding and encoding again gives the same bytes.
func TestBatchRoundTrip(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 8))
	for i := range 300 {
		in := Batch{ID: []byte(fmt.Sprintf("batch-%09d", i)), Received: r.Int64N(4e12)}
		for j := range r.IntN(5) {
			in.Records = append(in.Records, randRecord(r, j))
		}
		data := EncodeBatch(&in)
		got, err := DecodeBatch(data)
		if err != nil {
			t.Fatalf("batch %d: %v", i, err)
		}
		if !reflect.DeepEqual(got, in) {
			t.Fatalf("batch %d:\n got %#v\nwant %#v", i, got, in)
		}
		if again := EncodeBatch(&got); !bytes.Equal(again, data) {
			t.Fatalf("batch %d: re-encoding differs", i)
		}
		checkSkim(t, data, got)
	}
}

// checkSkim checks SkimBatch against DecodeBatch's result want for data:
// the same byte fields, each a view of data.
func checkSkim(t *testing.T, data []byte, want Batch) {
	t.Helper()
	got, err := SkimBatch(data)
	if err != nil {
		t.Fatalf("SkimBatch: %v (DecodeBatch decoded it)", err)
	}
	view := func(b []byte) bool { // a sub-slice of data
		if len(b) == 0 {
			return true
		}
		p, lo := uintptr(unsafe.Pointer(&b[0])), uintptr(unsafe.Pointer(&data[0]))
		return p >= lo && p < lo+uintptr(len(data))
	}
	if !bytes.Equal(got.ID, want.ID) || got.Received != want.Received || len(got.Records) != len(want.Records) {
		t.Fatalf("SkimBatch: id %x received %d records %d, want %x %d %d", got.ID, got.Received, len(got.Records), want.ID, want.Received, len(want.Records))
	}
	for i := range got.Records {
		g, w := &got.Records[i], &want.Records[i]
		if !bytes.Equal(g.ID, w.ID) || !bytes.Equal(g.Key, w.Key) || !bytes.Equal(g.SealedProperties, w.SealedProperties) ||
			!bytes.Equal(g.Private, w.Private) || g.Time != w.Time || len(g.IDs) != len(w.IDs) {
			t.Fatalf("SkimBatch record %d differs from DecodeBatch's:\n got %#v\nwant %#v", i, g, w)
		}
		for j := range g.IDs {
			if !bytes.Equal(g.IDs[j].Hash, w.IDs[j].Hash) || !bytes.Equal(g.IDs[j].Sealed, w.IDs[j].Sealed) {
				t.Fatalf("SkimBatch record %d id %d differs", i, j)
			}
		}
		if !view(g.SealedProperties) || !view(g.Key) || !view(g.ID) {
			t.Fatalf("SkimBatch record %d: a byte field is a copy, want a view of the input", i)
		}
		if g.Event != "" || g.Traits != nil || g.Consent != nil {
			t.Fatalf("SkimBatch record %d: strings or maps read: %#v", i, g)
		}
	}
}

// TestPlaintextPropertiesNeverEncoded: only the sealed properties reach
// the encoding; OpenProperties restores the plaintext through the opener
// and leaves none when the opener fails (a destroyed key) or the
// plaintext is not a map.
func TestPlaintextPropertiesNeverEncoded(t *testing.T) {
	props := map[string]any{"note": "for Zelda Quimby", "total": 12.5, "items": []any{map[string]any{"gift": "to Zelda"}}}
	pt, _ := AppendMsgpack(nil, props)
	xor := func(b []byte) []byte { // a toy cipher: the plaintext must not show
		out := bytes.Clone(b)
		for i := range out {
			out[i] ^= 0x5a
		}
		return out
	}
	rec := Record{ID: make([]byte, 16), Kind: Track, Key: []byte("k"), Properties: props, SealedProperties: xor(pt)}
	data := EncodeBatch(&Batch{ID: []byte("b"), Records: []Record{rec}})
	if bytes.Contains(data, []byte("Zelda")) {
		t.Fatal("plaintext properties in the encoding")
	}
	b, err := DecodeBatch(data)
	if err != nil {
		t.Fatal(err)
	}
	got := &b.Records[0]
	if got.Properties != nil {
		t.Fatal("a decoded record has plaintext properties before opening")
	}
	got.OpenProperties(func(key, sealed []byte) ([]byte, error) {
		if string(key) != "k" {
			return nil, fmt.Errorf("key %q", key)
		}
		return xor(sealed), nil
	})
	if !reflect.DeepEqual(got.Properties, map[string]any{"note": "for Zelda Quimby", "total": 12.5,
		"items": []any{map[string]any{"gift": "to Zelda"}}}) {
		t.Fatalf("opened %#v", got.Properties)
	}
	got.OpenProperties(func(_, _ []byte) ([]byte, error) { return nil, fmt.Errorf("key destroyed") })
	if got.Properties != nil {
		t.Fatalf("unopenable properties read as %#v", got.Properties)
	}
	got.OpenProperties(func(_, _ []byte) ([]byte, error) { return []byte{0x93, 1, 2, 3}, nil })
	if got.Properties != nil {
		t.Fatalf("an array read as properties: %#v", got.Properties)
	}
}

func TestDecodeBatchCorrupt(t *testing.T) {
	r := rand.New(rand.NewPCG(9, 10))
	in := Batch{ID: make([]byte, 16), Received: 5}
	for j := range 3 {
		in.Records = append(in.Records, randRecord(r, j))
	}
	in.Records[0].Traits = map[string][]byte{"a": {1}, "b": {2}}
	good := EncodeBatch(&in)
	// Every truncation fails.
	for n := range len(good) {
		if _, err := DecodeBatch(good[:n]); err == nil {
			t.Fatalf("truncated to %d bytes: decoded", n)
		}
	}
	cases := map[string][]byte{
		"trailing byte":   append(append([]byte{}, good...), 0),
		"version 1":       append([]byte{0xc1, 0x01}, good[2:]...),
		"unknown version": append([]byte{0xc1, 0x03}, good[2:]...),
		"msgpack":         {0x80},
		"huge count":      {0xc1, 0x02, 0x00, 0x00, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f},
	}
	// Trait keys out of order: swap "a" and "b" in place.
	swapped := append([]byte{}, good...)
	if i := bytes.Index(swapped, []byte{1, 'a', 1, 1, 1, 'b', 1, 2}); i >= 0 {
		swapped[i+1], swapped[i+5] = 'b', 'a'
		cases["trait keys out of order"] = swapped
	} else {
		t.Fatal("trait encoding not found")
	}
	for name, data := range cases {
		if _, err := DecodeBatch(data); err == nil {
			t.Errorf("%s: decoded", name)
		}
	}
}

// decodeAllocs returns the bytes DecodeBatch allocates for data: the least
// of three runs (the process's other goroutines allocate too).
func decodeAllocs(data []byte) uint64 {
	least := uint64(math.MaxUint64)
	for range 3 {
		var m0, m1 runtime.MemStats
		runtime.ReadMemStats(&m0)
		_, _ = DecodeBatch(data)
		runtime.ReadMemStats(&m1)
		least = min(least, m1.TotalAlloc-m0.TotalAlloc)
	}
	return least
}

func FuzzDecodeBatch(f *testing.F) {
	r := rand.New(rand.NewPCG(11, 12))
	for range 4 {
		in := Batch{ID: make([]byte, 16), Received: 1}
		in.Records = append(in.Records, randRecord(r, 0))
		f.Add(EncodeBatch(&in))
	}
	f.Add([]byte{0xc1, 0x02, 0x00, 0x00, 0x7f})
	f.Fuzz(func(t *testing.T, data []byte) {
		b, err := DecodeBatch(data)
		if alloc := decodeAllocs(data); alloc > uint64(64*len(data)+4096) {
			t.Fatalf("%d bytes of input allocated %d bytes", len(data), alloc)
		}
		if err != nil {
			return
		}
		checkSkim(t, data, b) // what decodes skims to the same byte fields
		// What decodes encodes, and that encoding is a fixed point
		// (varints need not be minimal on input).
		again := EncodeBatch(&b)
		b2, err := DecodeBatch(again)
		if err != nil {
			t.Fatalf("re-encoded batch does not decode: %v", err)
		}
		if third := EncodeBatch(&b2); !bytes.Equal(again, third) {
			t.Fatalf("not a fixed point:\n%x\n%x", again, third)
		}
	})
}

// FuzzDecodeMsgpack: whatever the hand-written decoder accepts, the msgpack
// library decodes to the same value.
func FuzzDecodeMsgpack(f *testing.F) {
	r := rand.New(rand.NewPCG(13, 14))
	for range 8 {
		data, _ := AppendMsgpack(nil, randValue(r, 0))
		if len(data) < 4096 {
			f.Add(data)
		}
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		got, err := DecodeMsgpack(data)
		if err != nil {
			return
		}
		var want any
		if err := msgpack.Unmarshal(data, &want); err != nil {
			t.Fatalf("accepted %x, which the library refuses: %v", data, err)
		}
		if g, w := fmt.Sprintf("%#v", got), fmt.Sprintf("%#v", want); g != w {
			t.Fatalf("%x:\n got %s\nwant %s", data, g, w)
		}
	})
}
