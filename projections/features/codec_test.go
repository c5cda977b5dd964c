package features

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"hash/fnv"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

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

// TestCodecVersions: rows with plain and keyed-hash interaction keys round
// trip in version 2; the same rows in version 1 decode to equal Features
// and re-encode as version 2; the 8-byte keys make the row smaller.
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
				b2 := f.Append(nil)
				if b2[0] != v2 || len(b2) > f.SizeBound() {
					t.Fatalf("version %d, %d bytes (bound %d)", b2[0], len(b2), f.SizeBound())
				}
				b1 := appendV1(f)
				for _, b := range [][]byte{b1, b2} {
					g, err := Decode(b)
					if err != nil {
						t.Fatalf("version %d: %v", b[0], err)
					}
					if !Equal(f, g, 0) || !bytes.Equal(g.Append(nil), b2) {
						t.Fatalf("version %d: round trip differs", b[0])
					}
				}
				if n := len(f.Categories) + len(f.Products); tc.key != nil && n > 0 && len(b2) >= len(b1) {
					t.Errorf("%d interaction keys: version 2 %d bytes, version 1 %d", n, len(b2), len(b1))
				}
			}
		})
	}
}

// TestDecodeRefusesV2: the version 2 forms that would not re-encode to
// themselves are refused.
func TestDecodeRefusesV2(t *testing.T) {
	k := hexKey("product", "1")
	f := &Features{Products: Scores{{k, Decayed{Short: 1, Long: 1, AsOf: t0}}}}
	ok := f.Append(nil)
	if _, err := Decode(ok); err != nil {
		t.Fatal(err)
	}
	scoresAt := len(ok) - (1 + len(binary.AppendVarint(nil, t0)) + 1 + 8 + 8 + 8 + 1) // n, latest, tag, key, 2 scores, delta
	longForm := append(bytes.Clone(ok[:scoresAt]), 1)
	longForm = binary.AppendVarint(longForm, t0)
	longForm = wire.AppendString(longForm, k)
	longForm = append(longForm, ok[len(ok)-17:]...)
	noLatest := bytes.Clone(ok)
	noLatest[len(noLatest)-1] = 5 // delta 5: no key as of latest
	for _, tc := range []struct {
		name, in, want string
	}{
		{"hex key, long form", string(longForm), "not in the 8-byte form"},
		{"no delta 0", string(noLatest), "no key as of the latest time"},
	} {
		if _, err := Decode([]byte(tc.in)); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want an error with %q", tc.name, err, tc.want)
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
