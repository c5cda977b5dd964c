package predict

import (
	"math/rand/v2"
	"sync"
	"testing"
)

var (
	synth100kOnce sync.Once
	synth100k     []Customer
)

// synthCustomers100k simulates 100,000 BG/NBD customers (CDNOW's
// parameters, days, a 39-week calibration) once per process.
func synthCustomers100k(b *testing.B) []Customer {
	synth100kOnce.Do(func() {
		ps := synthPurchases(rand.New(rand.NewPCG(5, 6)), 100_000, cdnowBG)
		cs, err := Summarize(ps, synthOptions)
		if err != nil {
			panic(err)
		}
		synth100k = cs
	})
	return synth100k
}

// BenchmarkFitBGNBDGammaGamma100k fits BG/NBD and Gamma-Gamma to 100,000
// synthetic customers: from the summaries (grouping included), and, as the
// baseline of the same run, with every customer its own group; then
// Pareto/NBD alone from the summaries.
func BenchmarkFitBGNBDGammaGamma100k(b *testing.B) {
	cs := synthCustomers100k(b)
	b.Run("grouped", func(b *testing.B) {
		for b.Loop() {
			var g Grouper
			var sg SpendGrouper
			for _, c := range cs {
				if err := g.Add(c.RFM); err != nil {
					b.Fatal(err)
				}
				if c.X > 0 {
					if err := sg.Add(c.X, c.MeanSpend); err != nil {
						b.Fatal(err)
					}
				}
			}
			groups := g.Groups()
			bg, fit, err := FitBGNBD(groups, FitOptions{})
			if err != nil {
				b.Fatal(err)
			}
			gg, _, err := FitGammaGamma(sg.Groups(), FitOptions{})
			if err != nil {
				b.Fatal(err)
			}
			b.ReportMetric(float64(len(groups)), "groups")
			b.ReportMetric(float64(fit.Evaluations), "bgnbd-evals")
			b.Logf("%d customers, %d groups: %+v %+v", len(cs), len(groups), bg, gg)
		}
	})
	b.Run("per-customer", func(b *testing.B) {
		groups := make([]Group, len(cs))
		var spends []Spend
		for i, c := range cs {
			groups[i] = Group{RFM: c.RFM, N: 1}
			if c.X > 0 {
				spends = append(spends, Spend{X: c.X, Mean: c.MeanSpend, N: 1})
			}
		}
		for b.Loop() {
			if _, _, err := FitBGNBD(groups, FitOptions{}); err != nil {
				b.Fatal(err)
			}
			if _, _, err := FitGammaGamma(spends, FitOptions{}); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("pareto_nbd", func(b *testing.B) {
		for b.Loop() {
			var g Grouper
			for _, c := range cs {
				if err := g.Add(c.RFM); err != nil {
					b.Fatal(err)
				}
			}
			m, fit, err := FitParetoNBD(g.Groups(), FitOptions{})
			if err != nil {
				b.Fatal(err)
			}
			b.ReportMetric(float64(fit.Evaluations), "evals")
			b.Logf("%+v", m)
		}
	})
}
