package predict

import (
	"cmp"
	"errors"
	"fmt"
	"math"
	"slices"
	"time"
)

// Purchase is one purchase: who, which civil day, how much.
type Purchase struct {
	Customer string
	Day      int // days since 1970-01-01 (DayOf)
	Amount   float64
}

// DayOf returns the day number of the civil date of t (in t's location).
func DayOf(t time.Time) int {
	y, m, d := t.Date()
	return int(time.Date(y, m, d, 0, 0, 0, 0, time.UTC).Unix() / 86400)
}

// RFM is what the repeat-purchase models know of one customer: X repeat
// purchases (customer-days after the first), TX the time from the first
// purchase to the last, T the time from the first purchase to the end of
// calibration, both in the time unit of the fit. 0 <= TX <= T; TX = 0 when X = 0.
type RFM struct {
	X  int
	TX float64
	T  float64
}

// Validate reports whether r is a possible summary.
func (r RFM) Validate() error {
	switch {
	case r.X < 0:
		return fmt.Errorf("predict: x %d < 0", r.X)
	case !(r.T >= 0) || math.IsInf(r.T, 0):
		return fmt.Errorf("predict: T %v is not a finite time >= 0", r.T)
	case !(r.TX >= 0) || r.TX > r.T:
		return fmt.Errorf("predict: t_x %v is not in [0, T=%v]", r.TX, r.T)
	case r.X == 0 && r.TX != 0:
		return fmt.Errorf("predict: t_x %v with x = 0", r.TX)
	}
	return nil
}

// Customer is one customer's calibration summary, the mean spend of the
// repeat purchases and, when a holdout period was asked for, the number of
// purchases (customer-days) in it.
type Customer struct {
	ID string
	RFM
	MeanSpend float64 // mean of the repeat customer-days' amounts; 0 when X = 0
	Holdout   int     // customer-days in (CalibrationEnd, HoldoutEnd]
}

// SummaryOptions says how purchases become summaries.
type SummaryOptions struct {
	// CalibrationEnd is the last day (inclusive) of the calibration period.
	CalibrationEnd int
	// HoldoutEnd, when > CalibrationEnd, is the last day (inclusive) of the
	// holdout period whose purchases Customer.Holdout counts.
	HoldoutEnd int
	// DaysPerUnit is the time unit of t_x and T in days; 0 means 7 (weeks,
	// as in the published fits).
	DaysPerUnit int
}

func (o SummaryOptions) withDefaults() SummaryOptions {
	if o.DaysPerUnit == 0 {
		o.DaysPerUnit = 7
	}
	return o
}

// maxDay bounds day numbers (about ±27,000 years), so differences of days
// cannot overflow.
const maxDay = 10_000_000

// Validate checks the options (a zero field stands for its default).
func (o SummaryOptions) Validate() error {
	if o.CalibrationEnd < -maxDay || o.CalibrationEnd > maxDay || o.HoldoutEnd < -maxDay || o.HoldoutEnd > maxDay {
		return fmt.Errorf("predict: calibration end %d or holdout end %d is not within ±%d", o.CalibrationEnd, o.HoldoutEnd, maxDay)
	}
	if o.DaysPerUnit < 0 {
		return fmt.Errorf("predict: days per unit %d < 0", o.DaysPerUnit)
	}
	if o.HoldoutEnd != 0 && o.HoldoutEnd <= o.CalibrationEnd {
		return fmt.Errorf("predict: holdout end %d is not after calibration end %d", o.HoldoutEnd, o.CalibrationEnd)
	}
	return nil
}

// Summarize reduces purchases to one Customer per customer whose first
// purchase is in the calibration period, sorted by ID. Purchases of one
// customer on one day are one purchase (their amounts summed), as the
// published fits count them; the first customer-day is the trial, not a
// repeat. Purchases after HoldoutEnd (or after CalibrationEnd without a
// holdout) are ignored. The input is not modified; Summarize sorts a copy.
func Summarize(purchases []Purchase, o SummaryOptions) ([]Customer, error) {
	if err := o.Validate(); err != nil {
		return nil, err
	}
	o = o.withDefaults()
	for i, p := range purchases {
		if math.IsNaN(p.Amount) || math.IsInf(p.Amount, 0) {
			return nil, fmt.Errorf("predict: purchase %d: amount %v is not finite", i, p.Amount)
		}
		if p.Day < -maxDay || p.Day > maxDay {
			return nil, fmt.Errorf("predict: purchase %d: day %d is not within ±%d", i, p.Day, maxDay)
		}
	}
	ps := slices.Clone(purchases)
	slices.SortFunc(ps, func(a, b Purchase) int {
		if c := cmp.Compare(a.Customer, b.Customer); c != 0 {
			return c
		}
		return cmp.Compare(a.Day, b.Day)
	})
	unit := float64(o.DaysPerUnit)
	var out []Customer
	for i := 0; i < len(ps); {
		j := i
		for j < len(ps) && ps[j].Customer == ps[i].Customer {
			j++
		}
		if c, ok := summarizeOne(ps[i:j], o, unit); ok {
			out = append(out, c)
		}
		i = j
	}
	return out, nil
}

// summarizeOne summarizes one customer's purchases, sorted by day.
func summarizeOne(ps []Purchase, o SummaryOptions, unit float64) (Customer, bool) {
	first := ps[0].Day
	if first > o.CalibrationEnd {
		return Customer{}, false
	}
	c := Customer{ID: ps[0].Customer}
	last := first
	var repeatSpend float64
	for k := 0; k < len(ps); {
		day, amount := ps[k].Day, 0.0
		for ; k < len(ps) && ps[k].Day == day; k++ {
			amount += ps[k].Amount
		}
		switch {
		case day == first:
		case day <= o.CalibrationEnd:
			c.X++
			last = day
			repeatSpend += amount
		case o.HoldoutEnd != 0 && day <= o.HoldoutEnd:
			c.Holdout++
		}
	}
	c.TX = float64(last-first) / unit
	c.T = float64(o.CalibrationEnd-first) / unit
	if c.X > 0 {
		c.MeanSpend = repeatSpend / float64(c.X)
	}
	return c, true
}

// Group is a number of customers with one summary.
type Group struct {
	RFM
	N int
}

// Grouper collects summaries into groups: the sufficient statistics of the
// repeat-purchase models. Its memory grows with the distinct summaries.
type Grouper struct {
	n map[RFM]int
}

// Add counts one customer with summary r.
func (g *Grouper) Add(r RFM) error {
	if err := r.Validate(); err != nil {
		return err
	}
	if g.n == nil {
		g.n = map[RFM]int{}
	}
	g.n[r]++
	return nil
}

// Groups returns the groups sorted by (X, TX, T): the same for the same
// multiset of summaries, whatever the order they were added in.
func (g *Grouper) Groups() []Group {
	out := make([]Group, 0, len(g.n))
	for r, n := range g.n {
		out = append(out, Group{RFM: r, N: n})
	}
	slices.SortFunc(out, func(a, b Group) int {
		if c := cmp.Compare(a.X, b.X); c != 0 {
			return c
		}
		if c := cmp.Compare(a.TX, b.TX); c != 0 {
			return c
		}
		return cmp.Compare(a.T, b.T)
	})
	return out
}

// Spend is a number of customers with X repeat purchases of mean amount
// Mean: the sufficient statistics of the Gamma-Gamma model.
type Spend struct {
	X    int
	Mean float64
	N    int
}

// SpendGrouper collects (x, mean spend) pairs of customers with x > 0.
type SpendGrouper struct {
	n map[[2]float64]int
}

// errNoRepeat is returned for a spend without a repeat purchase.
var errNoRepeat = errors.New("predict: spend needs x > 0")

// Add counts one customer with x > 0 repeat purchases of mean amount mean > 0.
func (g *SpendGrouper) Add(x int, mean float64) error {
	if x <= 0 {
		return errNoRepeat
	}
	if !(mean > 0) || math.IsInf(mean, 0) {
		return fmt.Errorf("predict: mean spend %v is not a finite amount > 0", mean)
	}
	if g.n == nil {
		g.n = map[[2]float64]int{}
	}
	g.n[[2]float64{float64(x), mean}]++
	return nil
}

// Groups returns the groups sorted by (X, Mean).
func (g *SpendGrouper) Groups() []Spend {
	out := make([]Spend, 0, len(g.n))
	for k, n := range g.n {
		out = append(out, Spend{X: int(k[0]), Mean: k[1], N: n})
	}
	slices.SortFunc(out, func(a, b Spend) int {
		if c := cmp.Compare(a.X, b.X); c != 0 {
			return c
		}
		return cmp.Compare(a.Mean, b.Mean)
	})
	return out
}
