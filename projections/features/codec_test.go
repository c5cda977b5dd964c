package features

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"hash/fnv"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/aurumcdp/aurum/event"
	"github.com/aurumcdp/aurum/internal/wire"
)

// hexKey is a KeyFunc like engine.InteractionKey: 16 lowercase hex digits.
func hexKey(kind, value string) string {
	h := fnv.New64a()
	h.Write([]byte(kind + "\x00" + value))
	return fmt.Sprintf("%016x", h.Sum64())
}

// appendV1 is the version 1 encoder of sessions 5–8, kept here to show
// that rows stored by it still load.
func appendV1(f *Features) []byte {
	// Everything before the scores is the same in both versions: re-encode
	// the prefix, then the scores in the version 1 form.
	prefix := (&Features{Purchases: f.Purchases, FoldedPurchaseDays: f.FoldedPurchaseDays,
		FoldedOrders: f.FoldedOrders, FoldedMicros: f.FoldedMicros, ActiveDays: f.ActiveDays,
		FoldedActiveDays: f.FoldedActiveDays}).Append(nil)
	dst := append([]byte{v1}, prefix[1:len(prefix)-3]...) // three empty scores: 3 zero bytes
	for _, sc := range [...]Scores{f.Events, f.Categories, f.Products} {
		dst = binary.AppendUvarint(dst, uint64(len(sc)))
		for _, e := range sc {
			dst = wire.AppendString(dst, e.Key)
			dst = wire.AppendFloat64(dst, e.Short)
			dst = wire.AppendFloat64(dst, e.Long)
			dst = binary.AppendVarint(dst, e.AsOf)
		}
	}
	return dst
}

// appendV2 is the version 2 encoder of session 9, kept here to show that
// rows stored by it still load: version 3 but for the scores' values,
// always two f64 after the time delta.
func appendV2(f *Features) []byte {
	prefix := (&Features{Purchases: f.Purchases, FoldedPurchaseDays: f.FoldedPurchaseDays,
		FoldedOrders: f.FoldedOrders, FoldedMicros: f.FoldedMicros, ActiveDays: f.ActiveDays,
		FoldedActiveDays: f.FoldedActiveDays}).Append(nil)
	dst := append([]byte{v2}, prefix[1:len(prefix)-3]...) // three empty scores: 3 zero bytes
	for _, sc := range [...]Scores{f.Events, f.Categories, f.Products} {
		dst = binary.AppendUvarint(dst, uint64(len(sc)))
		if len(sc) == 0 {
			continue
		}
		latest := sc.latest()
		dst = binary.AppendVarint(dst, latest)
		for _, e := range sc {
			if k, ok := hexKey8(e.Key); ok {
				dst = append(append(dst, 0), k[:]...)
			} else {
				dst = wire.AppendString(dst, e.Key)
			}
			dst = wire.AppendFloat64(dst, e.Short)
			dst = wire.AppendFloat64(dst, e.Long)
			dst = binary.AppendUvarint(dst, uint64(latest-e.AsOf))
		}
	}
	return dst
}

// TestCodecVersions: rows with plain and keyed-hash interaction keys round
// trip in version 3; the same rows in versions 1 and 2 decode to equal
// Features and re-encode as version 3; each version makes the row smaller.
func TestCodecVersions(t *testing.T) {
	for _, tc := range []struct {
		name string
		key  KeyFunc
	}{{"plain keys", nil}, {"keyed hashes", hexKey}} {
		t.Run(tc.name, func(t *testing.T) {
			r := rand.New(rand.NewPCG(4, 4))
			for range 50 {
				steps := randSteps(r, r.IntN(300), 1+r.IntN(100))
				f := &Features{}
				for _, s := range steps {
					f.Add(s.rec, s.micros, s.hasRevenue)
					f.AddInteractions(s.rec, tc.key)
				}
				b3 := f.Append(nil)
				if b3[0] != v3 || len(b3) > f.SizeBound() {
					t.Fatalf("version %d, %d bytes (bound %d)", b3[0], len(b3), f.SizeBound())
				}
				b1, b2 := appendV1(f), appendV2(f)
				for _, b := range [][]byte{b1, b2, b3} {
					g, err := Decode(b)
					if err != nil {
						t.Fatalf("version %d: %v", b[0], err)
					}
					if !Equal(f, g, 0) || !bytes.Equal(g.Append(nil), b3) {
						t.Fatalf("version %d: round trip differs", b[0])
					}
				}
				// Version 3 is version 2 but for a bit more per time delta
				// (the value's form) and one byte instead of 16 per pair
				// of equal small scores.
				if n := len(f.Categories) + len(f.Products); tc.key != nil && n > 0 && len(b2) >= len(b1) {
					t.Errorf("%d interaction keys: version 2 %d bytes, version 1 %d", n, len(b2), len(b1))
				}
				if keys := len(f.Events) + len(f.Categories) + len(f.Products); len(b3) > len(b2)+keys {
					t.Errorf("%d keys: version 3 %d bytes, version 2 %d", keys, len(b3), len(b2))
				}
			}
		})
	}
}

// TestDecodeRefusesLongForms: the forms that would not re-encode to
// themselves are refused.
func TestDecodeRefusesLongForms(t *testing.T) {
	k := hexKey("product", "1")
	f := &Features{Products: Scores{{k, Decayed{Short: 1, Long: 1, AsOf: t0}}}}
	ok := f.Append(nil)
	if _, err := Decode(ok); err != nil {
		t.Fatal(err)
	}
	const entry = 1 + 8 + 1 + 1                                                            // tag, key, delta·2+1, value
	scoresAt := len(ok) - (1 + len(binary.AppendVarint(nil, t0)) + entry)                  // n, latest, the entry
	head := append(append(bytes.Clone(ok[:scoresAt]), 1), binary.AppendVarint(nil, t0)...) // one key as of t0
	longKey := append(wire.AppendString(bytes.Clone(head), k), ok[len(ok)-2:]...)
	longPair := append(bytes.Clone(head), ok[len(ok)-entry:len(ok)-2]...)
	longPair = wire.AppendFloat64(wire.AppendFloat64(append(longPair, 0), 1), 1)
	noLatest := bytes.Clone(ok)
	noLatest[len(noLatest)-2] = 5<<1 | 1 // delta 5: no key as of latest
	for _, tc := range []struct {
		name, in, want string
	}{
		{"hex key, long form", string(longKey), "not in the 8-byte form"},
		{"equal small scores, long form", string(longPair), "not in the one-byte form"},
		{"no delta 0", string(noLatest), "no key as of the latest time"},
	} {
		if _, err := Decode([]byte(tc.in)); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want an error with %q", tc.name, err, tc.want)
		}
	}
}

// TestPairForms: equal integer scores 0..255 take one byte, everything
// else (−0 included) two f64, and both round trip bit for bit; a row of
// keys seen once is 15 bytes a key smaller than in version 2.
func TestPairForms(t *testing.T) {
	once := &Features{}
	for i := range 20 {
		once.AddInteractions(track("Product Viewed", t0+int64(i)*DayMs, map[string]any{"product_id": fmt.Sprint("sku-", i)}), hexKey)
	}
	if v3, v2 := len(once.Append(nil)), len(appendV2(once)); v3 > v2-20*14 {
		t.Errorf("20 products viewed once: version 3 %d bytes, version 2 %d", v3, v2)
	}
	for _, tc := range []struct {
		short, long float64
		small       bool
	}{
		{0, 0, true}, {1, 1, true}, {5, 5, true}, {255, 255, true},
		{256, 256, false}, {1, 2, false}, {1.5, 1.5, false}, {math.Copysign(0, -1), math.Copysign(0, -1), false},
		{0, math.Copysign(0, -1), false}, {3, 3.0000000000000004, false},
	} {
		f := &Features{Events: Scores{{"e", Decayed{Short: tc.short, Long: tc.long, AsOf: t0}}}}
		b := f.Append(nil)
		if _, small := smallPair(f.Events[0].Decayed); small != tc.small {
			t.Errorf("%v/%v: one-byte form %v, want %v", tc.short, tc.long, small, tc.small)
		}
		g, err := Decode(b) // −0 is a finite, non-negative score: it round trips too
		if err != nil {
			t.Fatalf("%v/%v: %v", tc.short, tc.long, err)
		}
		d := g.Events[0].Decayed
		if math.Float64bits(d.Short) != math.Float64bits(tc.short) || math.Float64bits(d.Long) != math.Float64bits(tc.long) {
			t.Errorf("%v/%v: decoded %v/%v", tc.short, tc.long, d.Short, d.Long)
		}
	}
}

// TestTrim: trim evicts what sorting by ranked would (lowest long score as
// of the latest time, ties the greater key), with many ties.
func TestTrim(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 7))
	for range 200 {
		var s Scores
		for i := range MaxKeys + 1 + r.IntN(2*MaxKeys) {
			v := float64(1 + r.IntN(3))
			s = append(s, Keyed{fmt.Sprintf("k%03d", i), Decayed{Short: v, Long: v, AsOf: t0 + int64(r.IntN(3))*DayMs}})
		}
		want := make(map[string]bool)
		for _, e := range ranked(s, s.latest())[:MaxKeys] {
			want[e.ID] = true
		}
		got := slices.Clone(s)
		got.trim()
		if len(got) != MaxKeys {
			t.Fatalf("%d keys kept", len(got))
		}
		for _, e := range got {
			if !want[e.Key] {
				t.Fatalf("kept %s, which ranked evicts", e.Key)
			}
		}
	}
}

// TestChangedReports: when Add and AddInteractions report no change, the
// row's encoding is unchanged (the GCR writes an unchanged row's loaded
// encoding again on that word). A change they report may round away (a
// long-past event's decayed weight below a score's last bit).
func TestChangedReports(t *testing.T) {
	r := rand.New(rand.NewPCG(9, 9))
	for _, key := range []KeyFunc{nil, hexKey} {
		f := &Features{}
		var unchanged int
		for i, s := range randSteps(r, 600, 20) {
			if r.IntN(2) == 0 { // pages and identifies on days the row has
				s.rec = &event.Record{ID: []byte{1}, Kind: event.Identify, Time: s.rec.Time}
				if n := len(f.ActiveDays); n > 0 {
					s.rec.Time = f.ActiveDays[r.IntN(n)]*DayMs + r.Int64N(DayMs)
				}
			}
			before := f.Append(nil)
			changed := f.Add(s.rec, s.micros, s.hasRevenue)
			if f.AddInteractions(s.rec, key) {
				changed = true
			}
			if after := f.Append(nil); !changed && !bytes.Equal(before, after) {
				t.Fatalf("step %d (%s %q): no change reported, the encoding changed", i, s.rec.Kind, s.rec.Event)
			}
			if !changed {
				unchanged++
			}
		}
		if unchanged < 100 {
			t.Errorf("only %d of 600 events left the row unchanged", unchanged)
		}
	}
}

// TestHexKeyForm: exactly the keys of 16 lowercase hex digits take the
// 8-byte form, with the digits' value.
func TestHexKeyForm(t *testing.T) {
	for k, want := range map[string]bool{
		"0123456789abcdef":  true,
		"ffffffffffffffff":  true,
		"0000000000000000":  true,
		"0123456789abcdeF":  false,
		"0123456789abcdeg":  false,
		"0123456789abcde/":  false,
		"0123456789abcde:":  false,
		"0123456789abcde`":  false,
		"0123456789abcde":   false,
		"0123456789abcdef0": false,
		"":                  false,
	} {
		b, ok := hexKey8(k)
		if ok != want {
			t.Errorf("%q: short form %v, want %v", k, ok, want)
		}
		if ok && fmt.Sprintf("%x", b[:]) != k {
			t.Errorf("%q: bytes %x", k, b)
		}
	}
}
