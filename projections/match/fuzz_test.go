package match

import (
	"math"
	"strings"
	"testing"
	"unicode/utf8"
)

var comparisons = []Comparison{Exact, Name, Text, Date, Phone, Email}

// FuzzNormalize: normalizing is idempotent and bounded, Jaro-Winkler is a
// symmetric similarity in [0, 1], levels are symmetric and in range, and
// block keys are deterministic — for any values.
func FuzzNormalize(f *testing.F) {
	f.Add("Mitchell", "mitchel", "19560409")
	f.Add("Ann.Lee+x@Example.COM", "+61 (2) 9876-5432", "1956-04-09")
	f.Add("O'Brien  ", "\xff\xfe", strings.Repeat("é", 300))
	f.Add("", " ", "0")
	f.Fuzz(func(t *testing.T, a, b, c string) {
		for _, k := range comparisons {
			na, nb := Normalize(k, a), Normalize(k, b)
			if again := Normalize(k, na); again != na {
				t.Fatalf("%s: Normalize(%q) = %q, again %q", k, a, na, again)
			}
			if len(na) > MaxValueLen {
				t.Fatalf("%s: %d bytes", k, len(na))
			}
			if utf8.ValidString(a) && !utf8.ValidString(na) {
				t.Fatalf("%s: invalid UTF-8 from valid %q", k, a)
			}
			kinds := []Comparison{k, Name}
			x, y := make([]int, 2), make([]int, 2)
			levels(kinds, []string{na, Normalize(Name, c)}, []string{nb, Normalize(Name, a)}, x)
			levels(kinds, []string{nb, Normalize(Name, a)}, []string{na, Normalize(Name, c)}, y)
			if x[0] != y[0] || x[1] != y[1] {
				t.Fatalf("%s: levels not symmetric: %v vs %v", k, x, y)
			}
			for f, lv := range x {
				if lv < -1 && lv != countedElsewhere || lv >= len(levelNames[kinds[f]]) {
					t.Fatalf("%s: level %d out of range", kinds[f], lv)
				}
			}
		}
		na, nb := Normalize(Name, a), Normalize(Name, b)
		jw, rev := JaroWinkler(na, nb), JaroWinkler(nb, na)
		if jw != rev || jw < 0 || jw > 1 || math.IsNaN(jw) {
			t.Fatalf("JaroWinkler(%q, %q) = %v, reversed %v", na, nb, jw, rev)
		}
		cfg := Config{Fields: map[string]Comparison{"a": Name, "b": Date, "c": Email}, Blocking: [][]string{{"a"}, {"b", "c"}}}
		r := Record{"a": a, "b": b, "c": c}
		k1, k2 := BlockKeys(cfg, r), BlockKeys(cfg, r)
		if strings.Join(k1, "\n") != strings.Join(k2, "\n") || len(k1) > 2 {
			t.Fatalf("BlockKeys: %q vs %q", k1, k2)
		}
	})
}
