package propensity

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
)

// Dataset is a dense feature matrix: row i is X[i] with label Y[i].
// Every row has len(Names) values; values must be finite.
type Dataset struct {
	Names []string
	X     [][]float64
	Y     []bool
}

// Validate checks the shape and that every value is finite.
func (d *Dataset) Validate() error {
	if len(d.X) != len(d.Y) {
		return fmt.Errorf("propensity: %d rows but %d labels", len(d.X), len(d.Y))
	}
	if len(d.X) == 0 {
		return errors.New("propensity: no rows")
	}
	for i, row := range d.X {
		if len(row) != len(d.Names) {
			return fmt.Errorf("propensity: row %d has %d values, want %d (names)", i, len(row), len(d.Names))
		}
		for j, v := range row {
			if math.IsNaN(v) || math.IsInf(v, 0) {
				return fmt.Errorf("propensity: row %d, feature %q: value %v is not finite", i, d.Names[j], v)
			}
		}
	}
	return nil
}

// Positives counts the rows labelled true.
func (d *Dataset) Positives() int {
	n := 0
	for _, y := range d.Y {
		if y {
			n++
		}
	}
	return n
}

// Subset returns the rows idx (sharing their slices), in the order given.
func (d *Dataset) Subset(idx []int) *Dataset {
	out := &Dataset{Names: d.Names, X: make([][]float64, len(idx)), Y: make([]bool, len(idx))}
	for k, i := range idx {
		out.X[k], out.Y[k] = d.X[i], d.Y[i]
	}
	return out
}

// StratifiedSplit splits row indices into train and test, keeping the share
// of positives: within each class the rows are shuffled by a PCG generator
// seeded with seed, and the first round(trainFrac · n) of the class go to
// train. Both lists come back sorted. The same labels, fraction and seed give
// the same split.
func StratifiedSplit(y []bool, trainFrac float64, seed uint64) (train, test []int) {
	rng := rand.New(rand.NewPCG(seed, seed^0x5851f42d4c957f2d))
	for _, class := range []bool{false, true} {
		var idx []int
		for i, v := range y {
			if v == class {
				idx = append(idx, i)
			}
		}
		rng.Shuffle(len(idx), func(a, b int) { idx[a], idx[b] = idx[b], idx[a] })
		cut := int(math.Round(trainFrac * float64(len(idx))))
		train = append(train, idx[:cut]...)
		test = append(test, idx[cut:]...)
	}
	slices.Sort(train)
	slices.Sort(test)
	return train, test
}

// AUC is the area under the ROC curve of scores against labels: the
// probability that a random positive scores above a random negative, ties
// counting one half (the Mann-Whitney statistic, with average ranks). It is
// NaN when either class is empty.
func AUC(scores []float64, y []bool) float64 {
	idx := make([]int, len(scores))
	for i := range idx {
		idx[i] = i
	}
	slices.SortStableFunc(idx, func(a, b int) int {
		switch {
		case scores[a] < scores[b]:
			return -1
		case scores[a] > scores[b]:
			return 1
		}
		return 0
	})
	var pos, neg, rankSum float64
	for i := 0; i < len(idx); {
		j := i
		for j < len(idx) && scores[idx[j]] == scores[idx[i]] {
			j++
		}
		avg := float64(i+j+1) / 2 // ranks i+1..j
		for k := i; k < j; k++ {
			if y[idx[k]] {
				pos++
				rankSum += avg
			} else {
				neg++
			}
		}
		i = j
	}
	if pos == 0 || neg == 0 {
		return math.NaN()
	}
	return (rankSum - pos*(pos+1)/2) / (pos * neg)
}

// Standardizer centres each column on its mean and divides it by its
// standard deviation (1 for a constant column).
type Standardizer struct {
	Mean, Scale []float64
}

// FitStandardizer computes the column means and standard deviations of x.
func FitStandardizer(x [][]float64) Standardizer {
	if len(x) == 0 {
		return Standardizer{}
	}
	d := len(x[0])
	s := Standardizer{Mean: make([]float64, d), Scale: make([]float64, d)}
	n := float64(len(x))
	for _, row := range x {
		for j, v := range row {
			s.Mean[j] += v
		}
	}
	for j := range s.Mean {
		s.Mean[j] /= n
	}
	for _, row := range x {
		for j, v := range row {
			dv := v - s.Mean[j]
			s.Scale[j] += dv * dv
		}
	}
	for j := range s.Scale {
		s.Scale[j] = math.Sqrt(s.Scale[j] / n)
		if s.Scale[j] == 0 {
			s.Scale[j] = 1
		}
	}
	return s
}

// Apply returns the standardized copy of row.
func (s Standardizer) Apply(row []float64) []float64 {
	out := make([]float64, len(row))
	for j, v := range row {
		out[j] = (v - s.Mean[j]) / s.Scale[j]
	}
	return out
}

func sigmoid(z float64) float64 {
	if z >= 0 {
		return 1 / (1 + math.Exp(-z))
	}
	e := math.Exp(z)
	return e / (1 + e)
}
