package gcr

import (
	"bytes"
	"encoding/hex"
	"errors"
	"math"
	"math/rand/v2"
	"reflect"
	"testing"

	"github.com/aurumcdp/aurum/event"
)

// fill sets every field of v (a pointer's target) to random values: slices
// and maps to 0–3 random elements (none as nil, as the codec decodes them).
// A field of a kind it does not know fails the test: teach fill, and the
// codec.
func fill(t *testing.T, r *rand.Rand, v reflect.Value) {
	t.Helper()
	switch v.Kind() {
	case reflect.String:
		b := make([]byte, r.IntN(12))
		for i := range b {
			b[i] = byte(r.IntN(256))
		}
		v.SetString(string(b))
	case reflect.Bool:
		v.SetBool(r.IntN(2) == 1)
	case reflect.Int64:
		switch r.IntN(3) {
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
			v.SetFloat(r.NormFloat64())
		}
	case reflect.Uint8:
		v.SetUint(uint64(r.IntN(256)))
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
	case reflect.Map:
		n := r.IntN(4)
		if n == 0 {
			v.SetZero()
			return
		}
		v.Set(reflect.MakeMapWithSize(v.Type(), n))
		for range n {
			k, e := reflect.New(v.Type().Key()).Elem(), reflect.New(v.Type().Elem()).Elem()
			fill(t, r, k)
			fill(t, r, e)
			v.SetMapIndex(k, e)
		}
	case reflect.Struct:
		for i := range v.NumField() {
			fill(t, r, v.Field(i))
		}
	default:
		t.Fatalf("fill: field of kind %s (%s): add it to fill and to the profile codec", v.Kind(), v.Type())
	}
}

func randomProfile(t *testing.T, r *rand.Rand) *Profile {
	var p Profile
	fill(t, r, reflect.ValueOf(&p).Elem())
	return &p
}

// TestProfileCodecCoversEveryField fails when a field is added to Profile
// or to a struct it holds without being encoded: the field counts are
// pinned (update them with the codec: a new format version), and random
// values in every field must survive the round trip.
func TestProfileCodecCoversEveryField(t *testing.T) {
	for _, c := range []struct {
		v      any
		fields int
	}{{Profile{}, 9}, {Ident{}, 7}, {Trait{}, 4}, {Stats{}, 8}, {Money{}, 2}, {Consent{}, 4}} {
		if n := reflect.TypeOf(c.v).NumField(); n != c.fields {
			t.Errorf("%T has %d fields, the codec encodes %d: update codec.go (a new format version) and this count", c.v, n, c.fields)
		}
	}
	r := rand.New(rand.NewPCG(1, 2))
	for i := range 2000 {
		p := randomProfile(t, r)
		b, err := encodeProfile(p)
		if err != nil {
			t.Fatal(err)
		}
		if IsLegacy(b) {
			t.Fatal("encodeProfile wrote the legacy form")
		}
		got, err := decodeV1(b)
		if err != nil {
			t.Fatalf("case %d: decode: %v", i, err)
		}
		if !reflect.DeepEqual(got, p) {
			t.Fatalf("case %d: round trip\n got %#v\nwant %#v", i, got, p)
		}
		if b2, _ := encodeProfile(got); !bytes.Equal(b, b2) {
			t.Fatalf("case %d: re-encoding differs", i)
		}
	}
}

// TestProfileCodecDeterministic: equal profiles give equal bytes whatever
// their maps' insertion order and nil or empty containers; different
// profiles differ.
func TestProfileCodecDeterministic(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	seen := map[string]bool{}
	for range 500 {
		p := randomProfile(t, r)
		b1, _ := encodeProfile(p)
		c, err := decodeV1(b1) // a deep copy: maps built in key order
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range []*map[string]int64{&c.Stats.EventCounts, &c.Stats.Sources, &c.Audiences} {
			if *m == nil {
				*m = map[string]int64{}
			}
		}
		if c.MergedFrom == nil {
			c.MergedFrom = [][]byte{}
		}
		b2, _ := encodeProfile(c)
		if !bytes.Equal(b1, b2) {
			t.Fatalf("equal profiles, different bytes:\n%x\n%x", b1, b2)
		}
		seen[string(b1)] = true
	}
	if len(seen) < 490 {
		t.Errorf("only %d distinct encodings of 500 random profiles", len(seen))
	}
}

// legacyProfile is a GCR as msgpack wrote it before the hand-written codec
// (commit f93f7cc): merged ids, two identifiers, a trait, stats, revenue,
// audiences, predictions and consent for two channels (legacyWant).
const legacyProfile = "89a26964c41001000000000000000000000000000001a26d6692c41001000000000000000000000000000002c41001000000000000000000000000000003a36964739287a174a5656d61696ca168c41001010101010101010101010101010101a16bc4105a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5aa173c40173a16609a16c09a26665c4100200000000000000000000000000000287a174a7757365725f6964a168c41007070707070707070707070707070707a16bc4105a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5aa173c4027375a16605a16c05a26665c41002000000000000000000000000000001a2747281a46e616d6584a16bc4105a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5aa173c40178a17405a165c41002000000000000000000000000000001a2737488a16605a16c0ba16e03a2656382af436f6e73656e74205570646174656401af4f7264657220436f6d706c6574656401a26b6382a86964656e7469667901a5747261636b02a2736f82a3696f7301a377656202a2636882a66d6f62696c6501a377656202a2647681a3696f7301a2727681af4f7264657220436f6d706c6574656482a16e01a16dce002dc6c0a2617581a37669702aa2706481a5636875726ecb3fd0000000000000a2636e82a5656d61696c84a167c2a1740ba165c41002000000000000000000000000000003a173a3776562a3736d7384a167c3a1740ba165c41002000000000000000000000000000003a173a3776562"

func legacyWant() *Profile {
	p := &Profile{ID: pid(1), MergedFrom: [][]byte{pid(2), pid(3)}}
	p.add(withTraits(identify(1, 5), "name", "x"), []event.IDRef{ref("user_id", 7, []byte("su"))})
	p.add(track(2, 9, "Order Completed", map[string]any{"revenue": 3}), []event.IDRef{ref("email", 1, []byte("s"))})
	c := track(3, 11, "Consent Updated", nil)
	c.Consent = map[string]bool{"email": false, "sms": true}
	p.add(c, nil)
	p.Audiences = map[string]int64{"vip": 42}
	p.Predictions = map[string]float64{"churn": 0.25}
	return p
}

// legacyEncode is the msgpack form earlier versions stored.
func legacyEncode(t testing.TB, p *Profile) []byte {
	t.Helper()
	b, err := marshal(p.wire())
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestDecodeProfileLegacyMsgpack: GCRs written by earlier versions
// (msgpack) still decode, the recorded bytes and random valid profiles, and
// Canonical re-encodes them as the current code writes them.
func TestDecodeProfileLegacyMsgpack(t *testing.T) {
	raw, err := hex.DecodeString(legacyProfile)
	if err != nil {
		t.Fatal(err)
	}
	if !IsLegacy(raw) {
		t.Fatal("recorded msgpack profile not recognised as legacy")
	}
	got, err := decodeProfile(raw)
	if err != nil {
		t.Fatal(err)
	}
	want := legacyWant()
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("legacy decode\n got %#v\nwant %#v", got, want)
	}
	if !bytes.Equal(legacyEncode(t, want), raw) {
		t.Fatal("the msgpack form of legacyWant changed: the recorded bytes no longer test what they claim")
	}
	cur := mustEncode(t, want)
	if c := Canonical(raw); !bytes.Equal(c, cur) {
		t.Fatalf("Canonical(legacy) = %x, want %x", c, cur)
	}
	if c := Canonical(cur); !bytes.Equal(c, cur) {
		t.Fatal("Canonical changed a current encoding")
	}
	if bad := []byte{0x81, 0xa1}; !bytes.Equal(Canonical(bad), bad) {
		t.Fatal("Canonical changed an undecodable value")
	}

	// Random profiles built by the lattice operations (valid ones: decode
	// checks the invariants), in both forms.
	r := rand.New(rand.NewPCG(5, 6))
	for i := range 300 {
		p := validRandomProfile(r)
		old := legacyEncode(t, p)
		a, err := decodeProfile(old)
		if err != nil {
			t.Fatalf("case %d: legacy: %v", i, err)
		}
		b, err := decodeProfile(mustEncode(t, p))
		if err != nil {
			t.Fatalf("case %d: v1: %v", i, err)
		}
		if !bytes.Equal(mustEncode(t, a), mustEncode(t, b)) || !bytes.Equal(Canonical(old), mustEncode(t, p)) {
			t.Fatalf("case %d: legacy and v1 decode differently", i)
		}
	}
}

// validRandomProfile folds random events and a merge into a profile.
func validRandomProfile(r *rand.Rand) *Profile {
	p := &Profile{ID: pid(byte(1 + r.IntN(200)))}
	names := []string{"Order Completed", "Product Viewed", "Consent Updated"}
	for i := range 1 + r.IntN(6) {
		rec := track(byte(i), int64(r.IntN(100)), names[r.IntN(len(names))], map[string]any{"revenue": r.IntN(50)})
		if r.IntN(2) == 0 {
			rec = withTraits(identify(byte(100+i), int64(r.IntN(100))), "tier", []string{"gold", "dk"}[r.IntN(2)])
		}
		if r.IntN(3) == 0 {
			rec.Consent = map[string]bool{"email": r.IntN(2) == 0, "sms": r.IntN(2) == 0}
		}
		p.add(rec, []event.IDRef{ref("email", byte(r.IntN(3)), []byte{byte(i)})})
	}
	if r.IntN(2) == 0 {
		q := &Profile{ID: pid(250)}
		q.add(track(99, 7, "Product Viewed", nil), []event.IDRef{ref("user_id", 9, []byte("u"))})
		p.join(q)
	}
	return p
}

// TestDecodeProfileCorrupt: every truncation and a table of hostile inputs
// give an error wrapping ErrCorrupt, never a panic or a large allocation.
func TestDecodeProfileCorrupt(t *testing.T) {
	good := mustEncode(t, legacyWant())
	for n := range len(good) {
		if _, err := decodeProfile(good[:n]); err == nil {
			t.Errorf("truncated to %d of %d bytes: no error", n, len(good))
		}
	}
	id := "10" + hex.EncodeToString(pid(1))
	empty := "00" + "00" + "00" + "000000" + "0000000000" + "00" + "00" + "00" + "00" // no containers, zero stats
	if _, err := decodeProfile(mustHex(t, "c1"+id+empty)); err != nil {
		t.Fatalf("the minimal profile does not decode: %v", err)
	}
	for _, c := range []struct {
		name string
		in   string // hex
	}{
		{"trailing byte", "c1" + id + empty + "00"},
		{"id length past the end", "c1ff01"},
		{"merged count 2^63", "c1" + id + "80808080808080808001"},
		{"identifier count too large for the input", "c1" + id + "00" + "ff01" + "00"},
		{"overlong varint", "c1" + id + "00" + "00" + "00" + "ffffffffffffffffffff01"},
		{"trait keys out of order", "c1" + id + "00" + "00" + "02" + "0162" + "00000000" + "0161" + "00000000" + empty[6:]},
		{"duplicate event count key", "c1" + id + "00" + "00" + "00" + "000000" + "02" + "016102" + "016102" + "00000000" + "00000000"},
		{"consent flag 2", "c1" + id + "00" + "00" + "00" + "000000" + "0000000000" + "00" + "00" + "00" + "01" + "05656d61696c" + "02" + "00" + "00" + "00"},
		{"consent for an unknown channel", "c1" + id + "00" + "00" + "00" + "000000" + "0000000000" + "00" + "00" + "00" + "01" + "0178" + "01" + "00" + "00" + "00"},
		{"id of 3 bytes (invariant)", "c1" + "03010203" + empty},
		{"first seen after last seen (invariant)", "c1" + id + "00" + "00" + "00" + "0a0202" + "0000000000" + "00" + "00" + "00" + "00"},
		{"empty", ""},
		{"legacy: map32 claims 2^32-1 entries", "dfffffffff"},
		{"legacy: never-used code inside", "81a26964c1"},
	} {
		in := mustHex(t, c.in)
		if _, err := decodeProfile(in); err == nil {
			t.Errorf("%s: no error", c.name)
		} else if !errors.Is(err, ErrCorrupt) {
			t.Errorf("%s: error %v does not wrap ErrCorrupt", c.name, err)
		}
	}
}

func mustHex(t *testing.T, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

var benchProfile = func() *Profile {
	p := &Profile{ID: pid(1)}
	for i := range 40 {
		rec := track(byte(i), int64(1_780_000_000_000+i*1000), []string{"Order Completed", "Product Viewed", "Product Added"}[i%3], map[string]any{"revenue": 120})
		if i%10 == 0 {
			rec = withTraits(identify(byte(i), int64(1_780_000_000_000+i*1000)), "tier", "gold", "country", "dk", "name", "x")
			rec.Consent = map[string]bool{"email": true}
		}
		p.add(rec, []event.IDRef{ref("user_id", 1, []byte("sealed-user")), ref("email", 2, []byte("sealed-email"))})
	}
	return p
}()

// BenchmarkProfileCodec compares the hand-written codec with the msgpack
// form it replaces, on a profile of 40 events with traits and consent.
func BenchmarkProfileCodec(b *testing.B) {
	old := legacyEncode(b, benchProfile)
	cur := mustEncode(b, benchProfile)
	b.Run("encode/msgpack", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			legacyEncode(b, benchProfile)
		}
	})
	b.Run("encode/v1", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := encodeProfile(benchProfile); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("decode/msgpack", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := decodeProfile(old); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("decode/v1", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := decodeProfile(cur); err != nil {
				b.Fatal(err)
			}
		}
	})
}
