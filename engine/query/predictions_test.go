package query

import (
	"math"
	"testing"

	"github.com/aurumcdp/aurum/event"
	"github.com/aurumcdp/aurum/predict"
	"github.com/aurumcdp/aurum/projections"
	"github.com/aurumcdp/aurum/projections/features"
)

func clvModel(name, scorer string) projections.Model {
	return projections.Model{Name: name, Kind: projections.ModelKindCLV, DaysPerUnit: 7, Scorer: scorer,
		BGNBD:      projections.ModelParams{P: []float64{0.243, 4.414, 0.793, 2.426}},
		ParetoNBD:  projections.ModelParams{P: []float64{0.553, 10.578, 0.606, 11.669}},
		GammaGamma: projections.ModelParams{P: []float64{6.25, 3.74, 15.44}}}
}

// TestScores: the view's scores are predict.Score of the row's purchase
// days as of now; P(alive) falls with silence; no purchases, no scores.
func TestScores(t *testing.T) {
	const day = features.DayMs
	t0 := int64(20_000) * day
	f := &features.Features{}
	for _, d := range []int64{0, 0, 21, 70} { // three customer-days: x = 2
		f.Add(&event.Record{Kind: event.Track, Event: features.PurchaseEvent, Time: t0 + d*day}, 25e6, true)
	}
	now := t0 + 100*day
	got := scores([]projections.Model{clvModel("clv", "pareto_nbd"), clvModel("bg", "bgnbd")}, f, now)

	cs, err := predict.Summarize([]predict.Purchase{{Day: 20000, Amount: 50}, {Day: 20021, Amount: 25}, {Day: 20070, Amount: 25}},
		predict.SummaryOptions{CalibrationEnd: 20100, DaysPerUnit: 7})
	if err != nil {
		t.Fatal(err)
	}
	want, err := predict.Score(predict.ParetoNBD{R: 0.553, Alpha: 10.578, S: 0.606, Beta: 11.669}, predict.GammaGamma{P: 6.25, Q: 3.74, Gamma: 15.44}, cs[0], 7)
	if err != nil {
		t.Fatal(err)
	}
	if got["p_alive"] != want.PAlive || got["churn_risk"] != want.ChurnRisk || got["clv_365d"] != want.CLV365 ||
		got["expected_purchases_90d"] != want.Expected90 {
		t.Errorf("scores %v, want %+v", got, want)
	}
	if _, ok := got["bg.p_alive"]; !ok || len(got) != 12 {
		t.Errorf("scores of a second model: %v", got)
	}
	later := scores([]projections.Model{clvModel("clv", "pareto_nbd")}, f, now+200*day)
	if !(later["p_alive"] < got["p_alive"]) || math.Abs(later["churn_risk"]-(1-later["p_alive"])) > 1e-15 {
		t.Errorf("P(alive) %v after 200 more silent days, %v before", later["p_alive"], got["p_alive"])
	}
	if s := scores([]projections.Model{clvModel("clv", "pareto_nbd")}, &features.Features{}, now); len(s) != 0 {
		t.Errorf("scores without purchases: %v", s)
	}
	// A purchase after now is not seen yet.
	if s := scores([]projections.Model{clvModel("clv", "pareto_nbd")}, f, t0-day); len(s) != 0 {
		t.Errorf("scores before the first purchase: %v", s)
	}
}
