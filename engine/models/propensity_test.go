package models_test

import (
	"context"
	"errors"
	"math"
	"slices"
	"testing"
	"time"

	"github.com/aurumcdp/aurum/engine/models"
	"github.com/aurumcdp/aurum/predict/propensity"
	"github.com/aurumcdp/aurum/rules"
)

// TestPropensityFit: the fit job, reading the stored events of every
// profile, gives the model propensity.Examples and FitLogistic give on the
// same history read directly (the time-based split anchored at the latest
// event's day, window 60 days): the same holdout AUCs of both classifiers
// (logistic regression and trees) and the classifier auto picks; the
// record shows its label, features and counts; the profile view scores a
// live profile; evaluate refuses it. Both for the purchase target and for
// another one (Subscription Started: the same history under that name,
// whose rows have no dated target columns: projections.PropensityOptions).
// (propensity.FitLogistic is deterministic: equal rows and AUC mean the
// model stored is the one refitted on the holdout rows.)
func TestPropensityFit(t *testing.T) {
	for _, target := range []string{"Order Completed", "Subscription Started"} {
		t.Run(target, func(t *testing.T) { testPropensityFit(t, target) })
	}
}

func testPropensityFit(t *testing.T, target string) {
	e := newEngine(t)
	ps := purchases()
	ingestAs(t, e, ps, target)
	s := e.Models()
	req := models.Request{Name: "buy60", Kind: "propensity", WindowDays: 60}
	if target != "Order Completed" {
		req.Event = target
	}
	if _, err := s.Fit(req); err != nil {
		t.Fatal(err)
	}
	info := waitStatus(t, s, "buy60")
	if info.Status != models.StatusReady || info.Propensity == nil {
		t.Fatalf("model %+v", info)
	}

	// The same, directly: ingest stamps a purchase at 01:00 UTC of its day.
	last := 0
	for _, p := range ps {
		last = max(last, p.Day)
	}
	end := time.Unix(int64(last)*86400, 0).UTC()
	opt := propensity.ExampleOptions{Target: target, Horizon: 60 * 24 * time.Hour, Names: []string{target},
		Undated: target != "Order Completed"}
	examples := func(cut time.Time) *propensity.Dataset {
		opt.Cutoff = cut
		ex, err := propensity.NewExamples(opt)
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range ps {
			v := p.Amount
			if opt.Undated {
				v = 0 // only a purchase has a value
			}
			ex.Add(propensity.Event{Profile: p.Customer, Time: time.Unix(int64(p.Day)*86400+3600, 0), Name: target, Value: v})
		}
		d, _ := ex.Dataset()
		return d
	}
	hold := examples(end.Add(-60*24*time.Hour - time.Millisecond))
	train := examples(end.Add(-120*24*time.Hour - time.Millisecond))
	lr, err := propensity.FitLogistic(train, propensity.LogisticOptions{})
	if err != nil {
		t.Fatal(err)
	}
	auc := propensity.AUC(propensity.PredictAll(lr, hold.X), hold.Y)
	final, err := propensity.FitLogistic(hold, propensity.LogisticOptions{})
	if err != nil {
		t.Fatal(err)
	}
	gb, err := propensity.FitBoosted(train, models.GBTOptions())
	if err != nil {
		t.Fatal(err)
	}
	aucGB := propensity.AUC(propensity.PredictAll(gb, hold.X), hold.Y)
	pi := info.Propensity
	// Both classifiers were trained; auto keeps the trees only when they
	// beat the logistic regression by the margin.
	want := map[bool]string{false: "logistic", true: "gbt"}[aucGB > auc+models.GBTMargin]
	if pi.AUCs == nil || pi.AUCs.Logistic == nil || pi.AUCs.GBT == nil || math.Abs(*pi.AUCs.GBT-aucGB) > 1e-9 ||
		pi.Classifier != want || pi.Algorithm != "auto" {
		t.Fatalf("record %+v: want classifier %s of AUCs logistic %v, gbt %v", pi, want, auc, aucGB)
	}
	t.Logf("holdout AUC of the trees %.4f (%s kept)", aucGB, pi.Classifier)
	if want == "gbt" {
		auc = aucGB // the AUC shown is the classifier's
	}
	if pi.AUC == nil || math.Abs(*pi.AUC-auc) > 1e-9 || math.Abs(*pi.AUCs.Logistic-propensity.AUC(propensity.PredictAll(lr, hold.X), hold.Y)) > 1e-9 || pi.Examples != int64(len(hold.Y)) || pi.WindowDays != 60 ||
		!slices.Equal(pi.Names, []string{target}) || pi.Event != target || len(hold.Names) != map[bool]int{false: 8, true: 5}[opt.Undated] {
		t.Fatalf("record %+v (auc %v), want auc %v over %d rows", pi, *pi.AUC, auc, len(hold.Y))
	}
	if auc < 0.6 {
		t.Errorf("holdout AUC %.3f: the history's recency should predict purchases", auc)
	}
	t.Logf("holdout AUC %.4f over %d profiles", auc, len(hold.Y))
	positives := 0
	for _, y := range hold.Y {
		if y {
			positives++
		}
	}
	if pi.Positives != int64(positives) || final == nil {
		t.Errorf("positives %d, want %d", pi.Positives, positives)
	}
	// A live profile is scored: the buyer of the latest event.
	latest := ps[0]
	for _, p := range ps {
		if p.Day > latest.Day {
			latest = p
		}
	}
	v, err := e.Reader().Profile("user_id:" + latest.Customer)
	if err != nil {
		t.Fatal(err)
	}
	if p, ok := v.Predictions["buy60.propensity"].(float64); !ok || !(p > 0 && p < 1) {
		t.Errorf("the profile view's buy60.propensity of %s: %v", latest.Customer, v.Predictions)
	}
	if _, err := s.Evaluate("buy60", models.EvaluationRequest{HoldoutEnd: "2030-01-01"}); err == nil {
		t.Error("evaluate of a propensity model did not fail")
	}
}

// TestSuggest: the segments of 200 customers cover them all, each with a
// rule the audience language compiles and precision and recall in (0, 1];
// too few profiles give no segment and a note; a bad k_max is a
// FieldError.
func TestSuggest(t *testing.T) {
	e := newEngine(t)
	ctx := context.Background()
	s := e.Models()
	if out, err := s.Suggest(ctx, models.SuggestRequest{}); err != nil || len(out.Segments) != 0 || out.Note == "" {
		t.Fatalf("suggest on an empty store: %+v, %v", out, err)
	}
	ingest(t, e, purchases())
	if err := e.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	out, err := s.Suggest(ctx, models.SuggestRequest{KMax: 4})
	if err != nil {
		t.Fatal(err)
	}
	if out.Profiles != 200 || out.K < 2 || out.K > 4 || len(out.Segments) != out.K || len(out.Silhouettes) != 3 {
		t.Fatalf("suggestions %+v", out)
	}
	total := 0
	for _, sg := range out.Segments {
		total += sg.Size
		if _, err := rules.Compile(sg.Rule); err != nil {
			t.Errorf("segment %s: rule %q: %v", sg.Name, sg.Rule, err)
		}
		if !(sg.Precision > 0 && sg.Precision <= 1 && sg.Recall > 0 && sg.Recall <= 1) || sg.Description == "" {
			t.Errorf("segment %+v", sg)
		}
	}
	if total != 200 {
		t.Errorf("segments hold %d profiles, want 200", total)
	}
	var fe *models.FieldError
	if _, err := s.Suggest(ctx, models.SuggestRequest{KMax: 50}); !errors.As(err, &fe) || fe.Field != "k_max" {
		t.Errorf("k_max 50: %v", err)
	}
}
