package gcr

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"reflect"
	"testing"

	"github.com/aurumcdp/aurum/event"
	"github.com/aurumcdp/aurum/projections/features"
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
	case reflect.Pointer:
		if v.Type() != reflect.TypeOf((*features.Features)(nil)) {
			t.Fatalf("fill: pointer %s: add it to fill and to the profile codec", v.Type())
		}
		if r.IntN(4) == 0 {
			v.SetZero()
			return
		}
		v.Set(reflect.ValueOf(randomFeatures(r)))
	case reflect.Struct:
		for i := range v.NumField() {
			fill(t, r, v.Field(i))
		}
	default:
		t.Fatalf("fill: field of kind %s (%s): add it to fill and to the profile codec", v.Kind(), v.Type())
	}
}

// randomFeatures folds a few random events into a Features (whose codec
// refuses what Add cannot make: unsorted days, negative scores).
func randomFeatures(r *rand.Rand) *features.Features {
	f := &features.Features{}
	for i := range 1 + r.IntN(8) {
		rec := &event.Record{ID: []byte{byte(i)}, Kind: event.Track, Event: []string{"Order Completed", "Product Viewed", "x"}[r.IntN(3)],
			Time:       1_700_000_000_000 + r.Int64N(1<<36) - 1<<35,
			Properties: map[string]any{"category": fmt.Sprint("c", r.IntN(3)), "product_id": fmt.Sprint("p", r.IntN(3))}}
		f.Add(rec, r.Int64N(1e9)-1e8, r.IntN(2) == 0)
	}
	return f
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
	}{{Profile{}, 10}, {Ident{}, 7}, {Trait{}, 4}, {Stats{}, 8}, {Money{}, 2}, {Consent{}, 4}} {
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
		got, err := decodeAll(b)
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
		c, err := decodeAll(b1) // a deep copy: maps built in key order
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

// decodeAll decodes b, feature row included, without checking the
// Profile's invariants.
func decodeAll(b []byte) (*Profile, error) {
	p, row, err := decodeUnchecked(b)
	if err == nil && row != nil {
		p.Features, err = features.Decode(row)
	}
	return p, err
}

// asVersion2 rewrites a version 3 encoding as version 2 (the feature row
// last), the form sessions 5–9 stored.
func asVersion2(t testing.TB, b []byte) []byte {
	t.Helper()
	if b[0] != profileV3 {
		t.Fatalf("version %#x, want %#x", b[0], profileV3)
	}
	n, k := binary.Uvarint(b[1:])
	row, rest := b[1:1+k+int(n)], b[1+k+int(n):]
	return append(append([]byte{profileV2}, rest...), row...)
}

// asVersion1 rewrites a version 3 encoding as version 1 (no feature row).
func asVersion1(t testing.TB, b []byte) []byte {
	t.Helper()
	n, k := binary.Uvarint(b[1:])
	return append([]byte{profileV1}, b[1+k+int(n):]...)
}

// TestProfileCodecVersions: profiles stored in versions 1 and 2 still load
// (version 2 with its feature row, version 1 without one), and re-encode
// as version 3 to the bytes of the same profile written now.
func TestProfileCodecVersions(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 8))
	for i := range 300 {
		p := validRandomProfile(r)
		if r.IntN(2) == 0 {
			p.Features = randomFeatures(r)
		}
		b3 := mustEncode(t, p)
		if b3[0] != profileV3 {
			t.Fatalf("case %d: version %#x, want %#x", i, b3[0], profileV3)
		}
		for _, c := range []struct {
			name string
			in   []byte
			want *Profile
		}{
			{"version 3", b3, p},
			{"version 2", asVersion2(t, b3), p},
			{"version 1", asVersion1(t, b3), func() *Profile { c := *p; c.Features = nil; return &c }()},
		} {
			got, err := decodeProfile(c.in)
			if err != nil {
				t.Fatalf("case %d, %s: %v", i, c.name, err)
			}
			if want := mustEncode(t, c.want); !bytes.Equal(mustEncode(t, got), want) {
				t.Fatalf("case %d, %s: re-encoded differs\n got %x\nwant %x", i, c.name, mustEncode(t, got), want)
			}
		}
	}
}

// sampleProfile has merged ids, two identifiers, a trait, stats, revenue,
// audiences, predictions and consent for two channels.
func sampleProfile() *Profile {
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

// TestDecodeProfileRefusesOtherForms: a GCR in the msgpack form of
// earlier builds, or of an unknown version, is corrupt (data dirs of
// earlier builds are not read).
func TestDecodeProfileRefusesOtherForms(t *testing.T) {
	cur := mustEncode(t, sampleProfile())
	if _, err := decodeProfile(cur); err != nil {
		t.Fatal(err)
	}
	for name, in := range map[string][]byte{
		"msgpack map": {0x81, 0xa2, 'i', 'd', 0xc4, 0x00},
		"version 2":   append([]byte{0x02}, cur[1:]...),
		"empty":       nil,
	} {
		if _, err := decodeProfile(in); !errors.Is(err, ErrCorrupt) {
			t.Errorf("%s: err = %v, want ErrCorrupt", name, err)
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
	good := mustEncode(t, sampleProfile())
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

// BenchmarkProfileCodec measures the codec on a profile of 40 events with
// traits and consent.
func BenchmarkProfileCodec(b *testing.B) {
	cur := mustEncode(b, benchProfile)
	b.Run("encode/v1", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := encodeProfile(benchProfile); err != nil {
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
