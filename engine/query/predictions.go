package query

import (
	"github.com/aurumcdp/aurum/predict"
	"github.com/aurumcdp/aurum/projections"
	"github.com/aurumcdp/aurum/projections/features"
)

// scores computes, at read time, the per-profile scores of every clv model
// from the profile's feature row as of now (Unix ms): a pure function of
// the row, the model records and now (docs/predictions.md). The model
// named "clv" gives the plain names (p_alive, churn_risk, ...); any other
// model's names are prefixed with "<name>.". A profile without purchases
// on or before now's day gets none (the models describe customers).
func scores(models []projections.Model, f *features.Features, now int64) map[string]float64 {
	out := map[string]float64{}
	if f == nil || len(f.Purchases) == 0 {
		return out
	}
	today := features.DayOf(now)
	ps := make([]predict.Purchase, 0, len(f.Purchases))
	for _, p := range f.Purchases {
		if p.Day > today {
			break
		}
		ps = append(ps, predict.Purchase{Day: int(p.Day), Amount: float64(p.Micros) / 1e6})
	}
	for i := range models {
		m := &models[i]
		if m.Kind != projections.ModelKindCLV || m.Validate() != nil {
			continue
		}
		cs, err := predict.Summarize(ps, predict.SummaryOptions{CalibrationEnd: int(today), DaysPerUnit: int(m.DaysPerUnit)})
		if err != nil || len(cs) != 1 {
			continue
		}
		var rm predict.RepeatModel = predict.ParetoNBD{R: m.ParetoNBD.P[0], Alpha: m.ParetoNBD.P[1], S: m.ParetoNBD.P[2], Beta: m.ParetoNBD.P[3]}
		if m.Scorer == "bgnbd" {
			rm = predict.BGNBD{R: m.BGNBD.P[0], Alpha: m.BGNBD.P[1], A: m.BGNBD.P[2], B: m.BGNBD.P[3]}
		}
		gg := predict.GammaGamma{P: m.GammaGamma.P[0], Q: m.GammaGamma.P[1], Gamma: m.GammaGamma.P[2]}
		s, err := predict.Score(rm, gg, cs[0], int(m.DaysPerUnit))
		if err != nil {
			continue
		}
		prefix := ""
		if m.Name != "clv" {
			prefix = m.Name + "."
		}
		for k, v := range map[string]float64{
			"p_alive": s.PAlive, "churn_risk": s.ChurnRisk, "expected_purchases_30d": s.Expected30,
			"expected_purchases_90d": s.Expected90, "expected_purchases_365d": s.Expected365, "clv_365d": s.CLV365,
		} {
			out[prefix+k] = v
		}
	}
	return out
}
