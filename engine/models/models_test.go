package models_test

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/aurumcdp/aurum/engine"
	"github.com/aurumcdp/aurum/engine/base"
	"github.com/aurumcdp/aurum/engine/models"
	"github.com/aurumcdp/aurum/event"
	"github.com/aurumcdp/aurum/internal/check"
	"github.com/aurumcdp/aurum/internal/purchasegen"
	"github.com/aurumcdp/aurum/internal/testnode"
	"github.com/aurumcdp/aurum/predict"
)

// purchases is a synthetic history of 200 customers from 2024-01-01.
func purchases() []predict.Purchase {
	return purchasegen.Generate(200, time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC), 1)
}

func ingest(t *testing.T, e *engine.Engine, ps []predict.Purchase) {
	t.Helper()
	ingestAs(t, e, ps, "Order Completed")
}

// ingestAs ingests the purchases as events named name.
func ingestAs(t *testing.T, e *engine.Engine, ps []predict.Purchase, name string) {
	t.Helper()
	ctx := context.Background()
	if _, err := e.Gate().CreateSource(ctx, "pos"); err != nil {
		t.Fatal(err)
	}
	var evs []event.Event
	for i, p := range ps {
		ts := time.Unix(int64(p.Day)*86400+3600, 0).UTC().Format(time.RFC3339)
		ev, err := event.Parse([]byte(fmt.Sprintf(`{"type":"track","event":%q,"userId":%q,"messageId":"m%d","timestamp":%q,"properties":{"revenue":%v}}`,
			name, p.Customer, i, ts, p.Amount)), "", e.Edge().ParseOptions())
		if err != nil {
			t.Fatal(err)
		}
		evs = append(evs, ev)
		if len(evs) == 200 || i == len(ps)-1 {
			if err := e.Edge().Ingest(ctx, "pos", evs); err != nil {
				t.Fatal(err)
			}
			evs = evs[:0]
		}
	}
}

func waitStatus(t *testing.T, s *models.Service, name string) models.Info {
	t.Helper()
	var info models.Info
	check.For(t, 60*time.Second, 20*time.Millisecond, func() error {
		var err error
		if info, err = s.Model(name); err != nil {
			return err
		}
		if info.Status == models.StatusRunning {
			return errors.New("running")
		}
		return nil
	})
	return info
}

// TestFitMatchesPredict: the fit job, reading the feature rows the log
// built, gives bit-identical parameters to package predict fitted on the
// same purchases read directly; the record's shape, version, customers and
// position are those of the fit; the back-test equals predict.Evaluate;
// a refit bumps the version; a delete removes the model.
func TestFitMatchesPredict(t *testing.T) {
	e := newEngine(t)
	ps := purchases()
	ingest(t, e, ps)
	calEnd := predict.DayOf(time.Date(2024, 9, 30, 0, 0, 0, 0, time.UTC))
	holdEnd := predict.DayOf(time.Date(2025, 2, 3, 0, 0, 0, 0, time.UTC))

	s := e.Models()
	info, err := s.Fit(models.Request{Name: "clv", CalibrationEnd: "2024-09-30"})
	if err != nil {
		t.Fatal(err)
	}
	if info.Status != models.StatusRunning || info.TimeUnit != "week" || info.Scorer != "pareto_nbd" {
		t.Errorf("fit answer %+v", info)
	}
	info = waitStatus(t, s, "clv")
	if info.Status != models.StatusReady || info.Params == nil || info.Version != 1 || info.FittedAsOf == nil || info.FittedAsOf.Seq == 0 {
		t.Fatalf("model %+v", info)
	}

	cs, err := predict.Summarize(ps, predict.SummaryOptions{CalibrationEnd: calEnd, HoldoutEnd: holdEnd})
	if err != nil {
		t.Fatal(err)
	}
	var g predict.Grouper
	var sg predict.SpendGrouper
	repeaters := 0
	for _, c := range cs {
		if err := g.Add(c.RFM); err != nil {
			t.Fatal(err)
		}
		if c.X > 0 {
			repeaters++
			if err := sg.Add(c.X, c.MeanSpend); err != nil {
				t.Fatal(err)
			}
		}
	}
	bg, bgFit, err := predict.FitBGNBD(g.Groups(), predict.FitOptions{})
	if err != nil {
		t.Fatal(err)
	}
	gg, _, err := predict.FitGammaGamma(sg.Groups(), predict.FitOptions{})
	if err != nil {
		t.Fatal(err)
	}
	want := models.Params{
		BGNBD:      models.BGNBDParams{R: bg.R, Alpha: bg.Alpha, A: bg.A, B: bg.B, LogLikelihood: bgFit.LogLikelihood},
		GammaGamma: models.GammaGammaParams{P: gg.P, Q: gg.Q, Gamma: gg.Gamma},
	}
	// Pareto/NBD is fitted by the same code on the same groups; fitting it
	// here too would double the test's time: its presence is checked.
	got := *info.Params
	if pn := got.ParetoNBD; !(pn.R > 0 && pn.Alpha > 0 && pn.S > 0 && pn.Beta > 0 && pn.LogLikelihood < 0) {
		t.Errorf("pareto_nbd %+v", pn)
	}
	got.ParetoNBD, got.GammaGamma.LogLikelihood = models.ParetoNBDParams{}, 0
	if got != want || info.Customers != int64(len(cs)) || info.Repeaters != int64(repeaters) {
		t.Errorf("fitted %+v (%d customers, %d repeaters)\nwant   %+v (%d, %d)", got, info.Customers, info.Repeaters, want, len(cs), repeaters)
	}

	ev, err := s.Evaluate("clv", models.EvaluationRequest{HoldoutEnd: "2025-02-03"})
	if err != nil {
		t.Fatal(err)
	}
	pev, err := predict.Evaluate(bg, cs, float64(holdEnd-calEnd)/7, 5)
	if err != nil {
		t.Fatal(err)
	}
	// The customers come in another order (by profile key, not by id): the
	// sums may differ in the last bits.
	close := func(a, b float64) bool { return math.Abs(a-b) <= 1e-9*math.Max(1, math.Abs(b)) }
	if ev.Customers != len(cs) || ev.BGNBD.Actual != pev.Actual || ev.BGNBD.Correlation == nil || !close(*ev.BGNBD.Correlation, pev.Correlation) ||
		!close(ev.BGNBD.Expected, pev.Expected) || len(ev.BGNBD.ByFrequency) != 6 {
		t.Errorf("evaluation %+v, want %+v", ev.BGNBD, pev)
	}
	for x, row := range ev.BGNBD.ByFrequency {
		want := pev.ByFrequency[x]
		if row.Customers != want.Customers || row.Customers > 0 && (!close(*row.Expected, want.Expected) || *row.Actual != want.Actual) {
			t.Errorf("x=%d: %d customers, expected %v actual %v; want %+v", x, row.Customers, *row.Expected, *row.Actual, want)
		}
	}

	if _, err := s.Fit(models.Request{Name: "clv", CalibrationEnd: "2024-09-30", Scorer: "bgnbd"}); err != nil {
		t.Fatal(err)
	}
	if info = waitStatus(t, s, "clv"); info.Version != 2 || info.Scorer != "bgnbd" {
		t.Errorf("refit: %+v", info)
	}
	list, err := s.Models()
	if err != nil || len(list) != 1 || list[0].Name != "clv" {
		t.Errorf("models %+v %v", list, err)
	}
	if err := s.Delete(context.Background(), "clv"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Model("clv"); !errors.Is(err, base.ErrNotFound) {
		t.Errorf("after delete: %v, want not found", err)
	}
	if err := s.Delete(context.Background(), "clv"); !errors.Is(err, base.ErrNotFound) {
		t.Errorf("second delete: %v, want not found", err)
	}
}

// TestFitFailsWithoutCustomers: a calibration end before every purchase
// leaves no customer: the model shows failed with the reason, and no
// record is written.
func TestFitFailsWithoutCustomers(t *testing.T) {
	e := newEngine(t)
	ingest(t, e, purchases()[:50])
	s := e.Models()
	if _, err := s.Fit(models.Request{Name: "early", CalibrationEnd: "2020-01-01"}); err != nil {
		t.Fatal(err)
	}
	info := waitStatus(t, s, "early")
	if info.Status != models.StatusFailed || info.Error == "" || info.Params != nil {
		t.Errorf("model %+v, want failed with a reason", info)
	}
	if _, err := s.Evaluate("early", models.EvaluationRequest{HoldoutEnd: "2021-01-01"}); !errors.Is(err, base.ErrNotFound) {
		t.Errorf("evaluate a model without a record: %v", err)
	}
}

// TestRequestValidation: every bad field is refused with a FieldError
// naming it, before anything runs.
func TestRequestValidation(t *testing.T) {
	e := newEngine(t)
	s := e.Models()
	ok := models.Request{Name: "clv", CalibrationEnd: "2024-09-30"}
	for _, tt := range []struct {
		field string
		edit  func(r *models.Request)
	}{
		{"name", func(r *models.Request) { r.Name = "" }},
		{"name", func(r *models.Request) { r.Name = "Bad Name" }},
		{"kind", func(r *models.Request) { r.Kind = "markov" }},
		{"calibration_end", func(r *models.Request) { r.Kind = "propensity" }},
		{"window_days", func(r *models.Request) { r.WindowDays = 30 }},
		{"window_days", func(r *models.Request) { r.Kind, r.CalibrationEnd, r.WindowDays = "propensity", "", 400 }},
		{"event", func(r *models.Request) {
			r.Kind, r.CalibrationEnd, r.Event = "propensity", "", strings.Repeat("e", 200)
		}}, // any event name, but bounded
		{"names", func(r *models.Request) { r.Kind, r.CalibrationEnd, r.Names = "propensity", "", []string{"a", "a"} }},
		{"scorer", func(r *models.Request) { r.Kind, r.CalibrationEnd, r.Scorer = "propensity", "", "bgnbd" }},
		{"event", func(r *models.Request) { r.Event = "Checkout" }},
		{"revenue", func(r *models.Request) { r.Revenue = "amount" }},
		{"calibration_end", func(r *models.Request) { r.CalibrationEnd = "" }},
		{"calibration_end", func(r *models.Request) { r.CalibrationEnd = "30/09/1997" }},
		{"time_unit", func(r *models.Request) { r.TimeUnit = "month" }},
		{"scorer", func(r *models.Request) { r.Scorer = "mbg" }},
	} {
		r := ok
		tt.edit(&r)
		_, err := s.Fit(r)
		var fe *models.FieldError
		if !errors.As(err, &fe) || fe.Field != tt.field || !errors.Is(err, base.ErrInvalid) {
			t.Errorf("%+v: %v, want a FieldError on %s", r, err, tt.field)
		}
	}
	for _, tt := range []struct {
		req   models.EvaluationRequest
		field string
	}{{models.EvaluationRequest{}, "holdout_end"}, {models.EvaluationRequest{HoldoutEnd: "x"}, "holdout_end"},
		{models.EvaluationRequest{HoldoutEnd: "2025-01-01", MaxX: 1000}, "max_x"}} {
		_, err := s.Evaluate("clv", tt.req)
		var fe *models.FieldError
		if !errors.As(err, &fe) || fe.Field != tt.field {
			t.Errorf("evaluate %+v: %v, want a FieldError on %s", tt.req, err, tt.field)
		}
	}
}

func newEngine(t *testing.T) *engine.Engine {
	return testnode.Engine(t, engine.Options{TickPeriod: -1})
}

// TestRequestFields: a field set for a kind that does not take it is a
// FieldError naming it (one table, requestFields), as is a bad value of a
// field the kind takes; a good request of each kind validates (the fit is
// queued: ErrNotLeader here, whose check comes after validation).
func TestRequestFields(t *testing.T) {
	s := models.New(models.Options{Leader: func() bool { return false }}, models.Deps{})
	for _, c := range []struct {
		req   models.Request
		field string // "": valid
	}{
		{models.Request{Name: "x", CalibrationEnd: "2024-01-01"}, ""},
		{models.Request{Name: "x", Kind: "propensity"}, ""},
		{models.Request{Name: "x", Kind: "propensity", Event: "Subscription Started", Names: []string{"Page Viewed"}}, ""},
		{models.Request{Name: "x", Kind: "recommend"}, ""},
		{models.Request{Name: "x", Kind: "nbp"}, "kind"},
		{models.Request{Name: "X"}, "name"},
		// Fields of another kind.
		{models.Request{Name: "x", Kind: "recommend", Event: "Order Completed"}, "event"},
		{models.Request{Name: "x", Kind: "recommend", Revenue: "revenue"}, "revenue"},
		{models.Request{Name: "x", Kind: "propensity", CalibrationEnd: "2024-01-01"}, "calibration_end"},
		{models.Request{Name: "x", Kind: "recommend", CalibrationEnd: "2024-01-01"}, "calibration_end"},
		{models.Request{Name: "x", Kind: "propensity", TimeUnit: "day"}, "time_unit"},
		{models.Request{Name: "x", Kind: "recommend", Scorer: "bgnbd"}, "scorer"},
		{models.Request{Name: "x", CalibrationEnd: "2024-01-01", WindowDays: 30}, "window_days"},
		{models.Request{Name: "x", Kind: "recommend", WindowDays: 30}, "window_days"},
		{models.Request{Name: "x", CalibrationEnd: "2024-01-01", Names: []string{"a"}}, "names"},
		{models.Request{Name: "x", CalibrationEnd: "2024-01-01", MaxItems: 5}, "max_items"},
		{models.Request{Name: "x", Kind: "propensity", MaxItems: 5}, "max_items"},
		{models.Request{Name: "x", CalibrationEnd: "2024-01-01", Algorithm: "gbt"}, "algorithm"},
		{models.Request{Name: "x", Kind: "recommend", Algorithm: "auto"}, "algorithm"},
		// Bad values.
		{models.Request{Name: "x", Event: "Subscription Started", CalibrationEnd: "2024-01-01"}, "event"},
		{models.Request{Name: "x", Kind: "propensity", Event: " "}, "event"},
		{models.Request{Name: "x", Kind: "propensity", Event: strings.Repeat("e", 129)}, "event"},
		{models.Request{Name: "x", Kind: "propensity", Event: "Subscription Started", Revenue: "revenue"}, "revenue"},
		{models.Request{Name: "x", Kind: "propensity", WindowDays: 367}, "window_days"},
		{models.Request{Name: "x", Kind: "propensity", Names: []string{"a", "a"}}, "names"},
		{models.Request{Name: "x", Kind: "propensity", Algorithm: "forest"}, "algorithm"},
		{models.Request{Name: "x", Kind: "propensity", Algorithm: "GBT"}, "algorithm"},
		{models.Request{Name: "x", Kind: "propensity", Algorithm: "gbt"}, ""},
		{models.Request{Name: "x", Kind: "propensity", Algorithm: "logistic", RefitEvery: "7d"}, ""},
		{models.Request{Name: "x", Kind: "propensity", Algorithm: "auto"}, ""},
		{models.Request{Name: "x", Kind: "recommend", MaxItems: -1}, "max_items"},
		{models.Request{Name: "x", CalibrationEnd: "2024-13-01"}, "calibration_end"},
		{models.Request{Name: "x", Kind: "recommend", RefitEvery: "7d"}, ""},
		{models.Request{Name: "x", Kind: "propensity", RefitEvery: "90s"}, ""},
		{models.Request{Name: "x", CalibrationEnd: "2024-01-01", RefitEvery: "7d"}, "refit_every"},
		{models.Request{Name: "x", Kind: "recommend", RefitEvery: "500ms"}, "refit_every"},
		{models.Request{Name: "x", Kind: "recommend", RefitEvery: "367d"}, "refit_every"},
		{models.Request{Name: "x", Kind: "propensity", RefitEvery: "weekly"}, "refit_every"},
	} {
		_, err := s.Fit(c.req)
		var fe *models.FieldError
		switch {
		case c.field == "" && !errors.Is(err, models.ErrNotLeader):
			t.Errorf("%+v: %v, want it valid", c.req, err)
		case c.field != "" && (!errors.As(err, &fe) || fe.Field != c.field):
			t.Errorf("%+v: %v, want a FieldError on %s", c.req, err, c.field)
		}
	}
}
