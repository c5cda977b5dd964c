package predict

import (
	"fmt"
	"math"
)

// RepeatModel is a fitted model of repeat purchases (BGNBD, ParetoNBD).
type RepeatModel interface {
	// PAlive is the probability that a customer with summary c is alive.
	PAlive(c RFM) float64
	// ConditionalExpected is the expected purchases of that customer in
	// the next t time units.
	ConditionalExpected(t float64, c RFM) float64
}

var (
	_ RepeatModel = BGNBD{}
	_ RepeatModel = ParetoNBD{}
)

// CLVOptions says over what horizon, and with what discount, lifetime value
// is summed.
type CLVOptions struct {
	// Horizon is the length of the future counted, in the fit's time unit
	// (52.14 weeks for a year).
	Horizon float64
	// DiscountRate is the discount per time unit (e.g. 0.0018 a week for
	// about 10 % a year); 0 means none.
	DiscountRate float64
	// Steps is the number of equal slices of the horizon over which the
	// discount is applied (purchases in a slice are discounted to its end);
	// 0 means 12. Without a discount the result does not depend on it.
	Steps int
}

// Validate checks the options.
func (o CLVOptions) Validate() error {
	switch {
	case !(o.Horizon > 0) || math.IsInf(o.Horizon, 0):
		return fmt.Errorf("predict: clv: horizon %v is not a finite time > 0", o.Horizon)
	case !(o.DiscountRate >= 0) || math.IsInf(o.DiscountRate, 0):
		return fmt.Errorf("predict: clv: discount rate %v is not a finite rate >= 0", o.DiscountRate)
	case o.Steps < 0:
		return fmt.Errorf("predict: clv: steps %d < 0", o.Steps)
	}
	return nil
}

// CLV is the expected value of a customer's purchases over the horizon:
// the expected purchases of each slice of the horizon (m), times the
// expected spend per purchase (spend: GammaGamma.ConditionalSpend),
// discounted to the slice's end. Margins are the caller's: multiply spend
// by one.
func CLV(m RepeatModel, spend float64, c RFM, o CLVOptions) (float64, error) {
	if err := o.Validate(); err != nil {
		return 0, err
	}
	if math.IsNaN(spend) || math.IsInf(spend, 0) {
		return 0, fmt.Errorf("predict: clv: spend %v is not finite", spend)
	}
	if o.DiscountRate == 0 {
		return spend * m.ConditionalExpected(o.Horizon, c), nil
	}
	steps := o.Steps
	if steps == 0 {
		steps = 12
	}
	var sum, prev float64
	for i := 1; i <= steps; i++ {
		t := o.Horizon * float64(i) / float64(steps)
		e := m.ConditionalExpected(t, c)
		sum += (e - prev) / math.Pow(1+o.DiscountRate, t)
		prev = e
	}
	return spend * sum, nil
}

// Scores are the per-profile predictions of issue #12.
type Scores struct {
	PAlive      float64
	ChurnRisk   float64 // 1 − PAlive
	Expected30  float64 // purchases expected in the next 30 days
	Expected90  float64
	Expected365 float64
	CLV365      float64 // undiscounted value of the next 365 days
}

// Score computes the scores of customer c (its summary as of now) under a
// repeat-purchase model m and spend model g fitted in units of daysPerUnit
// days (0: 7).
func Score(m RepeatModel, g GammaGamma, c Customer, daysPerUnit int) (Scores, error) {
	if err := c.RFM.Validate(); err != nil {
		return Scores{}, err
	}
	if err := g.Validate(); err != nil {
		return Scores{}, err
	}
	if daysPerUnit < 0 {
		return Scores{}, fmt.Errorf("predict: score: days per unit %d < 0", daysPerUnit)
	}
	if daysPerUnit == 0 {
		daysPerUnit = 7
	}
	unit := float64(daysPerUnit)
	p := m.PAlive(c.RFM)
	s := Scores{
		PAlive:      p,
		ChurnRisk:   1 - p,
		Expected30:  m.ConditionalExpected(30/unit, c.RFM),
		Expected90:  m.ConditionalExpected(90/unit, c.RFM),
		Expected365: m.ConditionalExpected(365/unit, c.RFM),
	}
	s.CLV365 = g.ConditionalSpend(c.X, c.MeanSpend) * s.Expected365
	return s, nil
}
