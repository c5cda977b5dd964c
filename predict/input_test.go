package predict

import (
	"math"
	"math/rand/v2"
	"slices"
	"testing"
	"time"
)

func TestSummarize(t *testing.T) {
	d := func(s string) int { return day(s) }
	ps := []Purchase{
		{"b", d("19970105"), 10},
		{"a", d("19970101"), 5},
		{"a", d("19970101"), 7},  // same day: one purchase of 12
		{"a", d("19970115"), 20}, // repeat 1
		{"a", d("19970115"), 2},  // same day: 22
		{"a", d("19970129"), 30}, // repeat 2, last in calibration
		{"a", d("19971001"), 1},  // holdout
		{"a", d("19971001"), 1},  // same holdout day
		{"a", d("19971105"), 1},  // holdout
		{"a", d("19990101"), 1},  // after the holdout: ignored
		{"c", d("19971002"), 10}, // first purchase after calibration: not a customer of the fit
	}
	orig := slices.Clone(ps)
	cs, err := Summarize(ps, SummaryOptions{CalibrationEnd: d("19970930"), HoldoutEnd: d("19980630")})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(ps, orig) {
		t.Error("input modified")
	}
	want := []Customer{
		{ID: "a", RFM: RFM{X: 2, TX: 4, T: 272.0 / 7}, MeanSpend: 26, Holdout: 2},
		{ID: "b", RFM: RFM{T: 268.0 / 7}},
	}
	if !slices.Equal(cs, want) {
		t.Errorf("got  %+v\nwant %+v", cs, want)
	}
	// In days, without a holdout: the holdout purchases are not counted.
	cs, err = Summarize(ps, SummaryOptions{CalibrationEnd: d("19970930"), DaysPerUnit: 1})
	if err != nil {
		t.Fatal(err)
	}
	if cs[0].TX != 28 || cs[0].T != 272 || cs[0].Holdout != 0 {
		t.Errorf("days: %+v", cs[0])
	}
	if _, err := Summarize([]Purchase{{"a", 1, math.NaN()}}, SummaryOptions{CalibrationEnd: 5}); err == nil {
		t.Error("NaN amount: no error")
	}
	if _, err := Summarize([]Purchase{{"a", math.MinInt, 1}}, SummaryOptions{CalibrationEnd: 5}); err == nil {
		t.Error("day out of range: no error")
	}
	if _, err := Summarize(nil, SummaryOptions{CalibrationEnd: 5, HoldoutEnd: 5}); err == nil {
		t.Error("holdout end = calibration end: no error")
	}
	if got := DayOf(time.Date(1970, 1, 2, 23, 59, 0, 0, time.FixedZone("x", -5*3600))); got != 1 {
		t.Errorf("DayOf = %d, want the civil day 1", got)
	}
}

// TestFitDeterministic: the same customers in another order give the same
// groups and bit-identical parameters.
func TestFitDeterministic(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	ps := synthPurchases(rng, 1500, cdnowBG)
	cs, err := Summarize(ps, synthOptions)
	if err != nil {
		t.Fatal(err)
	}
	fit := func(cs []Customer) (BGNBD, ParetoNBD, GammaGamma) {
		var g Grouper
		var sg SpendGrouper
		for _, c := range cs {
			if err := g.Add(c.RFM); err != nil {
				t.Fatal(err)
			}
			if c.X > 0 {
				if err := sg.Add(c.X, c.MeanSpend); err != nil {
					t.Fatal(err)
				}
			}
		}
		bg, _, err := FitBGNBD(g.Groups(), FitOptions{})
		if err != nil {
			t.Fatal(err)
		}
		pn, _, err := FitParetoNBD(g.Groups(), FitOptions{})
		if err != nil {
			t.Fatal(err)
		}
		gg, _, err := FitGammaGamma(sg.Groups(), FitOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return bg, pn, gg
	}
	bg1, pn1, gg1 := fit(cs)
	rng.Shuffle(len(cs), func(i, j int) { cs[i], cs[j] = cs[j], cs[i] })
	bg2, pn2, gg2 := fit(cs)
	if bg1 != bg2 || pn1 != pn2 || gg1 != gg2 {
		t.Errorf("fits differ:\n%+v %+v %+v\n%+v %+v %+v", bg1, pn1, gg1, bg2, pn2, gg2)
	}
	// The generating parameters are recovered (1,500 customers: loosely).
	for _, c := range []struct {
		name      string
		got, want float64
	}{{"r", bg1.R, cdnowBG.R}, {"alpha", bg1.Alpha, cdnowBG.Alpha}, {"a", bg1.A, cdnowBG.A}, {"b", bg1.B, cdnowBG.B}} {
		if math.Abs(math.Log(c.got/c.want)) > math.Log(1.5) {
			t.Errorf("%s = %v, generated with %v", c.name, c.got, c.want)
		}
	}
	t.Logf("recovered %+v from %+v; gamma-gamma %+v", bg1, cdnowBG, gg1)
}

var synthOptions = SummaryOptions{CalibrationEnd: 272}

// synthPurchases simulates n customers of the BG/NBD process m (rates per
// week) acquired over the first 12 weeks, observed to day 272 (39 weeks),
// spending Gamma-Gamma amounts (p = 6, q = 4, γ = 15).
func synthPurchases(rng *rand.Rand, n int, m BGNBD) []Purchase {
	var ps []Purchase
	for i := range n {
		id := string(rune('A'+i%26)) + itoa(i)
		first := rng.IntN(84)
		lambda := gammaRand(rng, m.R) / m.Alpha
		p := betaRand(rng, m.A, m.B)
		nu := gammaRand(rng, 4) / 15
		spend := func() float64 { return gammaRand(rng, 6) / nu }
		ps = append(ps, Purchase{id, first, spend()})
		tw := float64(first) / 7
		for { // alive until a repeat purchase is followed by a dropout
			tw += rng.ExpFloat64() / lambda // +Inf when λ underflows to 0
			if tw*7 >= float64(synthOptions.CalibrationEnd+1) {
				break
			}
			ps = append(ps, Purchase{id, int(tw * 7), spend()})
			if rng.Float64() < p {
				break
			}
		}
	}
	return ps
}

func itoa(i int) string {
	b := []byte{}
	for {
		b = append([]byte{byte('0' + i%10)}, b...)
		if i /= 10; i == 0 {
			return string(b)
		}
	}
}

// gammaRand draws Gamma(shape, 1) (Marsaglia and Tsang; boosted below 1).
func gammaRand(rng *rand.Rand, shape float64) float64 {
	if shape < 1 {
		return gammaRand(rng, shape+1) * math.Pow(rng.Float64(), 1/shape)
	}
	d := shape - 1.0/3
	c := 1 / math.Sqrt(9*d)
	for {
		x := rng.NormFloat64()
		v := 1 + c*x
		if v <= 0 {
			continue
		}
		v = v * v * v
		u := rng.Float64()
		if math.Log(u) < 0.5*x*x+d-d*v+d*math.Log(v) {
			return d * v
		}
	}
}

func betaRand(rng *rand.Rand, a, b float64) float64 {
	x := gammaRand(rng, a)
	return x / (x + gammaRand(rng, b))
}
