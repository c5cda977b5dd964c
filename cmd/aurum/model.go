package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/aurumcdp/aurum/engine/models"
	"github.com/spf13/cobra"
)

func newModelCmd() *cobra.Command {
	var server, token string
	cmd := &cobra.Command{
		Use:   "model",
		Short: "Fit, inspect, back-test and delete prediction models (lifetime value, churn)",
		Long: `Prediction models (docs/predictions.md). "model fit NAME --calibration-end DAY" fits the
clv models (BG/NBD and Pareto/NBD for repeat purchases, counted per customer-day, Gamma-Gamma for
spend) on the purchases ("Order Completed" events and their revenue) of every profile whose first
purchase is on or before DAY, in the background on the node, and appends the fitted model to the
log: scores (p_alive, churn_risk, expected purchases, clv_365d) then appear on profiles and in
audience rules (predictions.churn_risk > 0.7), alike in every replay. A model named clv gives the
plain score names; another name prefixes them with "<name>.". "model evaluate" back-tests a
fitted model over the holdout period after its calibration end.

"model fit NAME --kind propensity" fits P(--event within --window-days days; default a purchase,
"Order Completed", within 30) on the log's own history (the feature row's decayed event counts, days
since first, last and last purchase, active and purchase days, spend), split by time: trained as of
two windows before the latest event, its AUC measured as of one window before, then refitted on the
newest labels. It trains both an L2 logistic regression and gradient-boosted trees on the same rows
and keeps the trees only when their holdout AUC beats the logistic regression's by 0.01
(--algorithm auto, the default); --algorithm logistic or gbt keeps the one named. "model show"
prints both AUCs. Rules read it as propensity("NAME") > 0.5 (or predictions.NAME.propensity),
whichever the classifier. The event may be any track event ("Subscription Started"); for one
other than the purchase its decayed counts stand for its days, which the feature row keeps for
purchases only.

"model fit NAME --kind recommend" fits the next best product on every profile's events with a
properties.product_id (views, "Product Added", "Order Completed"): item-to-item co-occurrence and
popularity, kept for the --max-items most popular items. Profiles then show
predictions.next_best_products (the model named nbp; "<name>.next_best_products" else): the 3
best-scoring items each has not bought, from its own recent events; rules read them as
"sku-1" in predictions.next_best_products or predictions.next_best_product == "sku-1".

--refit-every (propensity, recommend) keeps the model current: the node leading the cluster
fits it again this long after each fit, with the same request, and appends the result to the
log like any fit (replays read it, they never refit). A fit of the name without it ends it.`,
		Example: `  aurum model fit clv --calibration-end 1997-09-30 --wait
  aurum model fit buy30 --kind propensity --window-days 30
  aurum model fit buy30-trees --kind propensity --algorithm gbt
  aurum model fit sub60 --kind propensity --event "Subscription Started" --window-days 60
  aurum model fit nbp --kind recommend --refit-every 7d
  aurum model list
  aurum model show clv --output json
  aurum model evaluate clv --holdout-end 1998-06-30 --json
  aurum model rm clv`,
	}
	addClientFlags(cmd, &server, &token)

	var fit struct {
		req    models.Request
		wait   bool
		within time.Duration
		output string
	}
	fitCmd := &cobra.Command{
		Use:   "fit NAME (--calibration-end YYYY-MM-DD [--time-unit week|day] [--scorer pareto_nbd|bgnbd] | --kind propensity [--window-days N] [--names a,b] [--algorithm auto|logistic|gbt] | --kind recommend [--max-items N]) [--refit-every 7d] [--wait]",
		Short: "Fit a model in the background on the node (--wait: until it is ready or failed)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkOutput(fit.output); err != nil {
				return err
			}
			c, err := newClient(server, token)
			if err != nil {
				return err
			}
			fit.req.Name = args[0]
			if fit.req.Kind == "propensity" || fit.req.Kind == "recommend" {
				// clv's defaults do not apply; a flag given is sent (and refused).
				for flag, v := range map[string]*string{"time-unit": &fit.req.TimeUnit, "scorer": &fit.req.Scorer, "revenue": &fit.req.Revenue, "event": &fit.req.Event} {
					if !cmd.Flags().Changed(flag) && (flag != "event" || fit.req.Kind == "recommend") {
						*v = ""
					}
				}
			} else if fit.req.CalibrationEnd == "" {
				return fmt.Errorf("--calibration-end is required for kind %s", fit.req.Kind)
			}
			body, err := json.Marshal(fit.req)
			if err != nil {
				return err
			}
			var info models.Info
			if err := c.do(cmd.Context(), http.MethodPost, "/v1/models", body, &info); err != nil {
				return err
			}
			if fit.wait {
				deadline := time.Now().Add(fit.within)
				for info.Status == models.StatusRunning {
					if time.Now().After(deadline) {
						return fmt.Errorf("model %s still running after %s", info.Name, fit.within)
					}
					select {
					case <-cmd.Context().Done():
						return cmd.Context().Err()
					case <-time.After(200 * time.Millisecond):
					}
					if err := c.do(cmd.Context(), http.MethodGet, "/v1/models/"+url.PathEscape(args[0]), nil, &info); err != nil {
						return err
					}
				}
				if info.Status == models.StatusFailed {
					return fmt.Errorf("model %s: fit failed: %s", info.Name, info.Error)
				}
			}
			return printModel(cmd, fit.output, info)
		},
	}
	fl := fitCmd.Flags()
	fl.StringVar(&fit.req.CalibrationEnd, "calibration-end", "", "last day of the calibration period, YYYY-MM-DD (required)")
	fl.StringVar(&fit.req.Kind, "kind", "clv", "kind of model: clv, propensity or recommend")
	fl.StringVar(&fit.req.RefitEvery, "refit-every", "", "propensity, recommend: fit again, by itself, this long after each fit (7d, 12h, 30m)")
	fl.IntVar(&fit.req.MaxItems, "max-items", 0, "recommend: the items whose neighbours are kept, the most popular first (default and at most 1000)")
	fl.IntVar(&fit.req.WindowDays, "window-days", 0, "propensity: the label is the event within this many days (default 30)")
	fl.StringSliceVar(&fit.req.Names, "names", nil, "propensity: event names whose decayed counts are features (default: the 16 most frequent)")
	fl.StringVar(&fit.req.Algorithm, "algorithm", "", "propensity: the classifier kept: auto (the trees if their holdout AUC beats the logistic regression's by 0.01; the default), logistic or gbt")
	fl.StringVar(&fit.req.Event, "event", "Order Completed", "clv: the purchase event (the feature projection's); propensity: the target, any track event")
	fl.StringVar(&fit.req.Revenue, "revenue", "revenue", "the revenue property (the feature projection's)")
	fl.StringVar(&fit.req.TimeUnit, "time-unit", "week", "time unit of the fit: week or day")
	fl.StringVar(&fit.req.Scorer, "scorer", "pareto_nbd", "model that scores p_alive and the expectations: pareto_nbd or bgnbd")
	fl.BoolVar(&fit.wait, "wait", false, "wait until the fit is ready (or failed)")
	fl.DurationVar(&fit.within, "timeout", 10*time.Minute, "with --wait: give up after this long")
	addOutputFlag(fitCmd, &fit.output)

	list := newListCmd("list", "List models with their status", cobra.NoArgs, &server, &token,
		func([]string) string { return "/v1/models" },
		func(raw []byte) ([]string, [][]string, error) {
			var page struct {
				Models []models.Info `json:"models"`
			}
			if err := json.Unmarshal(raw, &page); err != nil {
				return nil, nil, err
			}
			rows := make([][]string, len(page.Models))
			for i, m := range page.Models {
				rows[i] = []string{m.Name, m.Kind, m.Status, m.CalibrationEnd, m.TimeUnit, m.Scorer, fmt.Sprint(m.Version), fmt.Sprint(m.Customers)}
			}
			return []string{"NAME", "KIND", "STATUS", "CALIBRATION_END", "TIME_UNIT", "SCORER", "VERSION", "CUSTOMERS"}, rows, nil
		})

	show := newListCmd("show NAME", "Show a model: status, fitted parameters, customers", cobra.ExactArgs(1), &server, &token,
		func(args []string) string { return "/v1/models/" + url.PathEscape(args[0]) },
		typedRows(modelFields))

	var ev struct {
		holdoutEnd string
		maxX       int
		output     string
		json       bool
	}
	evaluate := &cobra.Command{
		Use:   "evaluate NAME --holdout-end YYYY-MM-DD [--json]",
		Short: "Back-test a model: expected vs actual purchases over the holdout after its calibration end",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if ev.json {
				ev.output = outputJSON
			}
			if err := checkOutput(ev.output); err != nil {
				return err
			}
			c, err := newClient(server, token)
			if err != nil {
				return err
			}
			q := url.Values{"holdout_end": {ev.holdoutEnd}}
			if ev.maxX > 0 {
				q.Set("max_x", fmt.Sprint(ev.maxX))
			}
			var out models.EvaluationInfo
			if err := c.do(cmd.Context(), http.MethodGet, "/v1/models/"+url.PathEscape(args[0])+"/evaluation?"+q.Encode(), nil, &out); err != nil {
				return err
			}
			if ev.output == outputJSON {
				return printJSON(cmd.OutOrStdout(), out)
			}
			return printEvaluation(cmd, out)
		},
	}
	evaluate.Flags().StringVar(&ev.holdoutEnd, "holdout-end", "", "last day of the holdout period, YYYY-MM-DD (required)")
	evaluate.Flags().IntVar(&ev.maxX, "max-x", 5, "rows of the table by calibration frequency: x = 0..max-x")
	evaluate.Flags().BoolVar(&ev.json, "json", false, "same as --output json")
	addOutputFlag(evaluate, &ev.output)
	_ = evaluate.MarkFlagRequired("holdout-end")

	rm := newDeleteCmd("rm NAME", "Delete a model (its scores leave profiles and rules)", &server, &token, "models", "deleted model")
	cmd.AddCommand(fitCmd, list, show, evaluate, rm)
	return cmd
}

func printModel(cmd *cobra.Command, output string, m models.Info) error {
	if output == outputJSON {
		return printJSON(cmd.OutOrStdout(), m)
	}
	header, rows := modelFields(m)
	return printTable(cmd.OutOrStdout(), header, rows)
}

// modelFields is the table of model show.
func modelFields(m models.Info) ([]string, [][]string) {
	rows := [][]string{{"name", m.Name}, {"kind", m.Kind}, {"status", m.Status}}
	if m.Error != "" {
		rows = append(rows, []string{"error", m.Error})
	}
	if m.Kind == "clv" {
		rows = append(rows, []string{"calibration_end", m.CalibrationEnd}, []string{"time_unit", m.TimeUnit}, []string{"scorer", m.Scorer})
	}
	if p := m.Params; p != nil {
		rows = append(rows,
			[]string{"version", fmt.Sprint(m.Version)},
			[]string{"customers", fmt.Sprintf("%d (%d with repeat purchases)", m.Customers, m.Repeaters)},
			[]string{"bgnbd", fmt.Sprintf("r=%.4g alpha=%.4g a=%.4g b=%.4g LL=%.2f", p.BGNBD.R, p.BGNBD.Alpha, p.BGNBD.A, p.BGNBD.B, p.BGNBD.LogLikelihood)},
			[]string{"pareto_nbd", fmt.Sprintf("r=%.4g alpha=%.4g s=%.4g beta=%.4g LL=%.2f", p.ParetoNBD.R, p.ParetoNBD.Alpha, p.ParetoNBD.S, p.ParetoNBD.Beta, p.ParetoNBD.LogLikelihood)},
			[]string{"gamma_gamma", fmt.Sprintf("p=%.4g q=%.4g gamma=%.4g LL=%.2f", p.GammaGamma.P, p.GammaGamma.Q, p.GammaGamma.Gamma, p.GammaGamma.LogLikelihood)})
	}
	if p := m.Propensity; p != nil {
		classifier := p.Classifier
		if p.Trees > 0 {
			classifier += fmt.Sprintf(" (%d trees of depth %d)", p.Trees, p.Depth)
		}
		if p.Algorithm != "" {
			classifier += "; asked: " + p.Algorithm
		}
		rows = append(rows, []string{"label", fmt.Sprintf("%s within %d days", p.Event, p.WindowDays)},
			[]string{"features", strings.Join(p.Names, ", ")}, []string{"classifier", classifier},
			[]string{"holdout_auc", fmtPtr(p.AUC)})
		if a := p.AUCs; a != nil {
			rows = append(rows, []string{"holdout_aucs", fmt.Sprintf("logistic %s, gbt %s", fmtPtr(a.Logistic), fmtPtr(a.GBT))})
		}
		rows = append(rows, []string{"examples", fmt.Sprintf("%d (%d positive)", p.Examples, p.Positives)})
	}
	if r := m.Recommend; r != nil && m.Status == models.StatusReady {
		rows = append(rows, []string{"version", fmt.Sprint(m.Version)},
			[]string{"history", fmt.Sprintf("%d profiles, %d interactions, %d items", r.Users, r.Interactions, r.Items)},
			[]string{"tables", fmt.Sprintf("neighbours of %d items, %d categories, %d popular items (%d lists cut)", r.NeighbourLists, r.Categories, r.Popular, r.Cut)},
			[]string{"half_life_days", fmt.Sprintf("%g", r.HalfLifeDays)})
	}
	if m.FittedAsOf != nil {
		rows = append(rows, []string{"fitted_as_of", fmt.Sprintf("seq %d, %s", m.FittedAsOf.Seq, rfc3339(m.FittedAsOf.Time))})
	}
	if m.RefitEvery != "" && m.NextRefit != nil {
		rows = append(rows, []string{"refit", fmt.Sprintf("every %s, next %s", m.RefitEvery, rfc3339(*m.NextRefit))})
	}
	return []string{"FIELD", "VALUE"}, rows
}

func fmtPtr(v *float64) string {
	if v == nil {
		return ""
	}
	return fmt.Sprintf("%.4f", *v)
}

func printEvaluation(cmd *cobra.Command, ev models.EvaluationInfo) error {
	w := cmd.OutOrStdout()
	fmt.Fprintf(w, "model %s: calibration to %s, holdout to %s (%.2f %ss), %d customers\n\n",
		ev.Model, ev.CalibrationEnd, ev.HoldoutEnd, ev.Holdout, ev.TimeUnit, ev.Customers)
	rows := [][]string{}
	for _, m := range []struct {
		name string
		e    models.ModelEvaluation
	}{{"bgnbd", ev.BGNBD}, {"pareto_nbd", ev.ParetoNBD}} {
		rows = append(rows, []string{m.name, fmtPtr(m.e.Correlation), fmtPtr(m.e.MAPE), fmtPtr(m.e.TotalError),
			fmt.Sprintf("%.1f", m.e.Expected), fmt.Sprint(m.e.Actual)})
	}
	if err := printTable(w, []string{"MODEL", "CORRELATION", "MAPE", "TOTAL_ERROR", "EXPECTED", "ACTUAL"}, rows); err != nil {
		return err
	}
	fmt.Fprintln(w)
	rows = rows[:0]
	for i, r := range ev.BGNBD.ByFrequency {
		p := ev.ParetoNBD.ByFrequency[i]
		rows = append(rows, []string{fmt.Sprint(r.X), fmt.Sprint(r.Customers), fmtPtr(r.Expected), fmtPtr(p.Expected), fmtPtr(r.Actual)})
	}
	return printTable(w, []string{"X", "CUSTOMERS", "BGNBD_EXPECTED", "PARETO_NBD_EXPECTED", "ACTUAL"}, rows)
}
