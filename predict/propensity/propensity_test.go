package propensity

import (
	"math"
	"math/rand/v2"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestAUC(t *testing.T) {
	for _, tc := range []struct {
		name   string
		scores []float64
		y      []bool
		want   float64
	}{
		{"perfect", []float64{0.1, 0.2, 0.8, 0.9}, []bool{false, false, true, true}, 1},
		{"reversed", []float64{0.9, 0.8, 0.2, 0.1}, []bool{false, false, true, true}, 0},
		{"all tied", []float64{0.5, 0.5, 0.5, 0.5}, []bool{false, true, false, true}, 0.5},
		// Pairs (pos, neg): (0.8 > 0.3), (0.8 > 0.5), (0.4 > 0.3), (0.4 < 0.5): 3/4.
		{"mixed", []float64{0.3, 0.8, 0.5, 0.4}, []bool{false, true, false, true}, 0.75},
		// One tied pair (0.5, 0.5) counts a half: (1 + 0.5) / 2.
		{"tie across classes", []float64{0.2, 0.5, 0.5}, []bool{false, false, true}, 0.75},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := AUC(tc.scores, tc.y); math.Abs(got-tc.want) > 1e-12 {
				t.Fatalf("AUC = %v, want %v", got, tc.want)
			}
		})
	}
	if got := AUC([]float64{1, 2}, []bool{true, true}); !math.IsNaN(got) {
		t.Fatalf("AUC of one class = %v, want NaN", got)
	}
}

func TestStratifiedSplit(t *testing.T) {
	y := make([]bool, 1000)
	for i := range y {
		y[i] = i%5 == 0 // 200 positives
	}
	train, test := StratifiedSplit(y, 0.7, 1)
	if len(train) != 700 || len(test) != 300 {
		t.Fatalf("split %d/%d, want 700/300", len(train), len(test))
	}
	seen := map[int]bool{}
	pos := 0
	for _, i := range append(append([]int{}, train...), test...) {
		if seen[i] {
			t.Fatalf("row %d in both parts", i)
		}
		seen[i] = true
	}
	for _, i := range train {
		if y[i] {
			pos++
		}
	}
	if pos != 140 {
		t.Fatalf("train has %d positives, want 140 (70%% of 200)", pos)
	}
	train2, _ := StratifiedSplit(y, 0.7, 1)
	if !reflect.DeepEqual(train, train2) {
		t.Fatal("same seed, different split")
	}
	train3, _ := StratifiedSplit(y, 0.7, 2)
	if reflect.DeepEqual(train, train3) {
		t.Fatal("another seed gave the same split")
	}
}

// synthetic draws n rows of p standard normal features with
// P(y) = σ(b + w·x) (or, with xor, y = sign(x0) != sign(x1) with 5 % noise).
func synthetic(n int, w []float64, b float64, xor bool, seed uint64) *Dataset {
	rng := rand.New(rand.NewPCG(seed, 7))
	d := &Dataset{}
	for j := range w {
		d.Names = append(d.Names, "x"+string(rune('a'+j)))
	}
	for range n {
		x := make([]float64, len(w))
		eta := b
		for j := range x {
			x[j] = rng.NormFloat64()
			eta += w[j] * x[j]
		}
		var y bool
		if xor {
			y = (x[0] > 0) != (x[1] > 0)
			if rng.Float64() < 0.05 {
				y = !y
			}
		} else {
			y = rng.Float64() < sigmoid(eta)
		}
		d.X, d.Y = append(d.X, x), append(d.Y, y)
	}
	return d
}

func TestLogisticRecoversWeights(t *testing.T) {
	w := []float64{1.5, -2, 0.5, 0}
	d := synthetic(10000, w, -1, false, 1)
	m, err := FitLogistic(d, LogisticOptions{L2: 1e-6})
	if err != nil {
		t.Fatal(err)
	}
	// Weights are on standardized features: divide by the scale to compare.
	for j, want := range w {
		got := m.W[j] / m.Std.Scale[j]
		if math.Abs(got-want) > 0.1 {
			t.Errorf("w[%d] = %.3f, want %.3f ± 0.1", j, got, want)
		}
	}
	// At the optimum the penalized gradient is 0.
	grad := make([]float64, len(w)+1)
	for i, x := range d.X {
		r := m.Predict(x)
		if d.Y[i] {
			r--
		}
		z := m.Std.Apply(x)
		for j, v := range z {
			grad[j] += r * v
		}
		grad[len(w)] += r
	}
	for j := range w {
		grad[j] += 2 * 1e-6 * m.W[j]
	}
	for j, g := range grad {
		if math.Abs(g) > 1e-6 {
			t.Errorf("gradient[%d] = %g at the fit", j, g)
		}
	}
	m2, _ := FitLogistic(d, LogisticOptions{L2: 1e-6})
	if !reflect.DeepEqual(m, m2) {
		t.Fatal("two fits of the same data differ")
	}
	// A stronger penalty shrinks the weights.
	m3, _ := FitLogistic(d, LogisticOptions{L2: 1000})
	if math.Abs(m3.W[1]) >= math.Abs(m.W[1]) {
		t.Errorf("L2 1000 gave |w1| %.3f, not below L2 1e-6's %.3f", math.Abs(m3.W[1]), math.Abs(m.W[1]))
	}
}

func TestBoostedLearnsInteraction(t *testing.T) {
	d := synthetic(3000, []float64{0, 0, 0}, 0, true, 2)
	test := synthetic(2000, []float64{0, 0, 0}, 0, true, 3)
	lin, err := FitLogistic(d, LogisticOptions{})
	if err != nil {
		t.Fatal(err)
	}
	gb, err := FitBoosted(d, BoostedOptions{Trees: 40})
	if err != nil {
		t.Fatal(err)
	}
	aucLin := AUC(PredictAll(lin, test.X), test.Y)
	aucGB := AUC(PredictAll(gb, test.X), test.Y)
	t.Logf("xor: logistic AUC %.3f, boosted AUC %.3f", aucLin, aucGB)
	if aucLin > 0.6 {
		t.Errorf("logistic AUC %.3f on xor: a linear model cannot separate it", aucLin)
	}
	if aucGB < 0.9 {
		t.Errorf("boosted AUC %.3f on xor, want >= 0.9", aucGB)
	}
	gb2, _ := FitBoosted(d, BoostedOptions{Trees: 40})
	if !reflect.DeepEqual(gb, gb2) {
		t.Fatal("two fits of the same data differ")
	}
}

func TestBoostedOnLinearData(t *testing.T) {
	w := []float64{1, -1, 0.5}
	d := synthetic(3000, w, 0, false, 4)
	test := synthetic(2000, w, 0, false, 5)
	gb, err := FitBoosted(d, BoostedOptions{Trees: 50})
	if err != nil {
		t.Fatal(err)
	}
	// The Bayes-optimal ranking is by w·x.
	opt := make([]float64, len(test.X))
	for i, x := range test.X {
		for j := range w {
			opt[i] += w[j] * x[j]
		}
	}
	best, got := AUC(opt, test.Y), AUC(PredictAll(gb, test.X), test.Y)
	if got < best-0.02 {
		t.Errorf("boosted AUC %.4f, optimal %.4f: more than 0.02 below", got, best)
	}
}

func TestOptionErrors(t *testing.T) {
	d := synthetic(100, []float64{1}, 0, false, 6)
	for _, tc := range []struct {
		name string
		fit  func() error
		want string
	}{
		{"trees", func() error { _, err := FitBoosted(d, BoostedOptions{Trees: -1}); return err }, "trees"},
		{"bins", func() error { _, err := FitBoosted(d, BoostedOptions{Bins: 300}); return err }, "bins"},
		{"ragged", func() error {
			_, err := FitLogistic(&Dataset{Names: []string{"a"}, X: [][]float64{{1, 2}}, Y: []bool{true}}, LogisticOptions{})
			return err
		}, "row 0 has 2 values"},
		{"nan", func() error {
			_, err := FitLogistic(&Dataset{Names: []string{"a"}, X: [][]float64{{math.NaN()}}, Y: []bool{true}}, LogisticOptions{})
			return err
		}, `feature "a"`},
		{"one class", func() error {
			_, err := FitBoosted(&Dataset{Names: []string{"a"}, X: [][]float64{{1}, {2}}, Y: []bool{true, true}}, BoostedOptions{})
			return err
		}, "labels are all"},
		{"no cutoff", func() error { _, err := NewExamples(ExampleOptions{Names: []string{"a"}}); return err }, "cutoff"},
		{"dup name", func() error {
			_, err := NewExamples(ExampleOptions{Cutoff: time.Unix(1, 0), Names: []string{"a", "a"}})
			return err
		}, `"a" given twice`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.fit()
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want one containing %q", err, tc.want)
			}
		})
	}
}
