package main

import (
	"slices"
	"testing"

	"github.com/aurumcdp/aurum/engine/models"
)

// TestModelShowPropensity: model show's table of a propensity model names
// the classifier kept (the trees with their size), what was asked, the
// holdout AUC of the one kept and both classifiers' AUCs; a record from
// before the trees (no algorithm) shows no second AUC.
func TestModelShowPropensity(t *testing.T) {
	f := func(v float64) *float64 { return &v }
	row := func(rows [][]string, field string) string {
		i := slices.IndexFunc(rows, func(r []string) bool { return r[0] == field })
		if i < 0 {
			return "<none>"
		}
		return rows[i][1]
	}
	for _, tc := range []struct {
		name string
		p    models.PropensityInfo
		want map[string]string
	}{
		{"gbt", models.PropensityInfo{Event: "Order Completed", WindowDays: 30, Classifier: "gbt", Algorithm: "auto", Trees: 100, Depth: 3,
			AUC: f(0.91), AUCs: &models.PropensityAUCs{Logistic: f(0.5), GBT: f(0.91)}},
			map[string]string{"classifier": "gbt (100 trees of depth 3); asked: auto", "holdout_auc": "0.9100",
				"holdout_aucs": "logistic 0.5000, gbt 0.9100", "label": "Order Completed within 30 days"}},
		{"logistic asked", models.PropensityInfo{Event: "Order Completed", WindowDays: 30, Classifier: "logistic", Algorithm: "logistic",
			AUC: f(0.8), AUCs: &models.PropensityAUCs{Logistic: f(0.8), GBT: nil}},
			map[string]string{"classifier": "logistic; asked: logistic", "holdout_auc": "0.8000", "holdout_aucs": "logistic 0.8000, gbt "}},
		{"before the trees", models.PropensityInfo{Event: "Order Completed", WindowDays: 30, Classifier: "logistic", AUC: f(0.7)},
			map[string]string{"classifier": "logistic", "holdout_auc": "0.7000", "holdout_aucs": "<none>"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, rows := modelFields(models.Info{Name: "buy30", Kind: "propensity", Status: models.StatusReady, Propensity: &tc.p})
			for field, want := range tc.want {
				if got := row(rows, field); got != want {
					t.Errorf("%s: %q, want %q", field, got, want)
				}
			}
		})
	}
}
