// Package purchasegen is test support: a deterministic synthetic purchase
// history drawn from the Pareto/NBD process, on which the model fits
// converge quickly (a history that does not follow the model can keep the
// optimizer busy for minutes).
package purchasegen

import (
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/aurumcdp/aurum/predict"
)

// Generate returns the purchases of n customers named c000, c001, ...:
// purchase rates λ ~ Gamma(1, 5 weeks), lifetimes with rate μ ~ Gamma(1,
// 20 weeks), first purchases in the 8 weeks from start, none after 400
// days; whole amounts 5..54 (exact in micros). The same seed gives the same
// history.
func Generate(n int, start time.Time, seed uint64) []predict.Purchase {
	rng := rand.New(rand.NewPCG(seed, 2))
	day0 := predict.DayOf(start)
	var ps []predict.Purchase
	for c := range n {
		id := fmt.Sprintf("c%03d", c)
		lambda, mu := rng.ExpFloat64()/5, rng.ExpFloat64()/20 // a week
		t := float64(rng.IntN(56))
		end := t + rng.ExpFloat64()/mu*7
		for ; t <= 400 && t <= end; t += rng.ExpFloat64() / lambda * 7 {
			ps = append(ps, predict.Purchase{Customer: id, Day: day0 + int(t), Amount: float64(5 + rng.IntN(50))})
		}
	}
	return ps
}
