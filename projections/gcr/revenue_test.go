package gcr

import (
	"encoding/json"
	"math"
	"math/big"
	"strings"
	"testing"
)

func TestToMicros(t *testing.T) {
	for _, tc := range []struct {
		in   any
		want int64
		ok   bool
	}{
		{10, 10_000_000, true},
		{int64(-5), -5_000_000, true},
		{uint8(3), 3_000_000, true},
		{"10.50", 10_500_000, true},
		{" 2.5 ", 2_500_000, true},
		{"+3", 3_000_000, true},
		{"-0.25", -250_000, true},
		{".5", 500_000, true},
		{"5.", 5_000_000, true},
		{1e-7, 0, true},
		{"1e-7", 0, true},
		{"1E2", 100_000_000, true},
		{"1.5e-3", 1_500, true},
		{0.1, 100_000, true},
		{150.5, 150_500_000, true},
		{float32(10.1), 10_100_000, true},
		{json.Number("7.25"), 7_250_000, true},
		{"0.0000005", 1, true},         // half rounds away from zero
		{"-0.0000005", -1, true},       // ... on both sides
		{"0.00000049999", 0, true},     // below half
		{"1.2345675", 1_234_568, true}, // decimal, not binary, rounding
		{"1.2345674999", 1_234_567, true},
		{"0.9999995", 1_000_000, true},
		{"1e-10000", 0, true},
		{"0e99999", 0, true},
		{"000012.000", 12_000_000, true},
		{"10000000000", 10_000_000_000_000_000, true}, // MaxRevenue itself
		{"10000000000.000001", 0, false},
		{"abc", 0, false},
		{"", 0, false},
		{".", 0, false},
		{"-", 0, false},
		{"1e", 0, false},
		{"1e+", 0, false},
		{"1.2.3", 0, false},
		{"1_000", 0, false},
		{"0x10", 0, false},
		{"NaN", 0, false},
		{"Inf", 0, false},
		{math.NaN(), 0, false},
		{math.Inf(1), 0, false},
		{math.Inf(-1), 0, false},
		{1e20, 0, false},
		{"1e20", 0, false},
		{"99999999999999999999999", 0, false},
		{uint64(math.MaxUint64), 0, false},
		{int64(math.MinInt64), 0, false},
		{true, 0, false},
		{nil, 0, false},
		{map[string]any{"x": 1}, 0, false},
	} {
		got, ok := toMicros(tc.in)
		if got != tc.want || ok != tc.ok {
			t.Errorf("toMicros(%#v) = %d, %v; want %d, %v", tc.in, got, ok, tc.want, tc.ok)
		}
	}
}

func TestRevenueOf(t *testing.T) {
	for _, tc := range []struct {
		name  string
		props map[string]any
		want  int64
		ok    bool
	}{
		{"revenue", map[string]any{"revenue": 10, "total": 99}, 10_000_000, true},
		{"total when no revenue", map[string]any{"total": "99.5"}, 99_500_000, true},
		{"total when revenue null", map[string]any{"revenue": nil, "total": 1}, 1_000_000, true},
		{"bad revenue does not fall back", map[string]any{"revenue": "abc", "total": 1}, 0, false},
		{"neither", map[string]any{"price": 3}, 0, false},
		{"nil properties", nil, 0, false},
	} {
		got, ok := revenueOf(tc.props)
		if got != tc.want || ok != tc.ok {
			t.Errorf("%s: got %d, %v; want %d, %v", tc.name, got, ok, tc.want, tc.ok)
		}
	}
}

func FuzzDecimalMicros(f *testing.F) {
	for _, s := range []string{"10", "10.50", "1e-7", "abc", "-0.0000005", "1e20", "9999999999.9999995"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		m, ok := decimalMicros(s)
		if !ok {
			return
		}
		if m > maxMicros || m < -maxMicros {
			t.Fatalf("decimalMicros(%q) = %d out of range", s, m)
		}
		// Oracle: exact rational arithmetic, rounded half away from zero.
		if e := strings.IndexAny(s, "eE"); e >= 0 && len(s)-e > 5 {
			return // keep the oracle's big exponents cheap
		}
		r, okr := new(big.Rat).SetString(strings.TrimSpace(s))
		if !okr || len(s) > 200 {
			return
		}
		r.Mul(r, big.NewRat(1_000_000, 1))
		neg := r.Sign() < 0
		r.Abs(r)
		r.Add(r, big.NewRat(1, 2))
		q := new(big.Int).Quo(r.Num(), r.Denom())
		if neg {
			q.Neg(q)
		}
		if !q.IsInt64() || q.Int64() != m {
			t.Fatalf("decimalMicros(%q) = %d, exact rounding gives %s", s, m, q)
		}
	})
}
