package predict

import (
	"fmt"
	"math"
)

// Evaluation compares a model's conditional expectations over a holdout
// period with the purchases customers made in it (the back-test of the
// published fits).
type Evaluation struct {
	Customers int
	Expected  float64 // sum of the conditional expectations
	Actual    int     // sum of the holdout purchases
	// Correlation (Pearson) of expected with actual purchases per customer;
	// NaN when either has no variance.
	Correlation float64
	// MAPE is Σ|actual − expected| / Σ actual (BTYDplus's definition).
	MAPE float64
	// TotalError is Σ expected / Σ actual − 1.
	TotalError float64
	// ByFrequency holds, for calibration frequencies x = 0 .. len−1, the
	// customers and their mean expected and actual holdout purchases.
	ByFrequency []FrequencyRow
}

// FrequencyRow is one row of the mean-by-frequency table.
type FrequencyRow struct {
	X         int
	Customers int
	Expected  float64 // mean conditional expectation
	Actual    float64 // mean actual holdout purchases
}

// Evaluate back-tests m on customers with holdout counts, over a holdout of
// length holdout time units, with a table for x = 0 .. maxX.
func Evaluate(m RepeatModel, customers []Customer, holdout float64, maxX int) (Evaluation, error) {
	if !(holdout > 0) || math.IsInf(holdout, 0) {
		return Evaluation{}, fmt.Errorf("predict: evaluate: holdout %v is not a finite time > 0", holdout)
	}
	if maxX < 0 {
		return Evaluation{}, fmt.Errorf("predict: evaluate: max x %d < 0", maxX)
	}
	if len(customers) == 0 {
		return Evaluation{}, ErrNoData
	}
	ev := Evaluation{Customers: len(customers), ByFrequency: make([]FrequencyRow, maxX+1)}
	var sa, sf, saa, sff, saf, sabs float64
	for i, c := range customers {
		if err := c.RFM.Validate(); err != nil {
			return Evaluation{}, fmt.Errorf("predict: evaluate: customer %d: %w", i, err)
		}
		f := m.ConditionalExpected(holdout, c.RFM)
		a := float64(c.Holdout)
		sa += a
		sf += f
		saa += a * a
		sff += f * f
		saf += a * f
		sabs += math.Abs(a - f)
		ev.Actual += c.Holdout
		if c.X <= maxX {
			row := &ev.ByFrequency[c.X]
			row.Customers++
			row.Expected += f
			row.Actual += a
		}
	}
	n := float64(len(customers))
	ev.Expected = sf
	cov := saf - sa*sf/n
	va, vf := saa-sa*sa/n, sff-sf*sf/n
	ev.Correlation = cov / math.Sqrt(va*vf)
	if sa > 0 {
		ev.MAPE = sabs / sa
		ev.TotalError = sf/sa - 1
	} else {
		ev.MAPE, ev.TotalError = math.NaN(), math.NaN()
	}
	for x := range ev.ByFrequency {
		row := &ev.ByFrequency[x]
		row.X = x
		if row.Customers > 0 {
			row.Expected /= float64(row.Customers)
			row.Actual /= float64(row.Customers)
		}
	}
	return ev, nil
}
