package query

import (
	"fmt"

	"github.com/aurumcdp/aurum/predict/recommend"
	"github.com/aurumcdp/aurum/projections"
	"github.com/aurumcdp/aurum/projections/features"
	"github.com/aurumcdp/aurum/projections/gcr"
	"github.com/aurumcdp/aurum/store"
)

// nextBest adds to out, for every recommend model, the profile's
// projections.NextBestCount next best products as of now: "next_best_products" for the
// model named nbp, "<name>.next_best_products" for any other. They are
// computed at read time, a pure function of the model record, the
// profile's latest projections.RecommendHistory stored events (properties
// that cannot be opened, an erased person's, count as none) and now
// (projections.ProfileInteractions, projections.NextBestProducts): the
// lists the rules read (predictions.next_best_products), and a replay
// shows the same lists.
func (e *Reader) nextBest(snap store.Reader, sm *projections.StateMachine, p *gcr.Profile, models []projections.Model, now int64, out map[string]any) error {
	var (
		history []recommend.Interaction
		loaded  bool
	)
	for i := range models {
		m := &models[i]
		if m.Kind != projections.ModelKindRecommend {
			continue
		}
		if !loaded {
			var err error
			// A value that does not open counts as none here, as it always
			// did in the view (the rules fail the apply on a failure that
			// may pass, so that a replay cannot differ).
			lenient := func(keyID, sealed []byte) ([]byte, error) {
				pt, err := e.open(keyID, sealed)
				if err != nil {
					err = fmt.Errorf("%w: %w", projections.ErrUnreadable, err)
				}
				return pt, err
			}
			if history, err = projections.ProfileInteractions(snap, sm.GCR(), p, lenient); err != nil {
				return fmt.Errorf("query: next best products: %w", err)
			}
			loaded = true
		}
		recs, ok := projections.NextBestProducts(m, history, now, projections.NextBestCount)
		if !ok {
			continue
		}
		key := "next_best_products"
		if m.Name != "nbp" {
			key = m.Name + "." + key
		}
		out[key] = recs
	}
	return nil
}

// scores computes, at read time, the per-profile scores of every clv model
// from the profile's feature row as of now (Unix ms): a pure function of
// the row, the model records and now (docs/predictions.md;
// projections.ModelScores, which the rules read too). The model named
// "clv" gives the plain names (p_alive, churn_risk, ...); any other model's
// names are prefixed with "<name>.". A profile without purchases on or
// before now's day gets none (the models describe customers).
func scores(models []projections.Model, f *features.Features, now int64) map[string]float64 {
	out := map[string]float64{}
	for i := range models {
		m := &models[i]
		s, ok := projections.ModelScores(m, f, now)
		if !ok {
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

// propensities adds to out, as "<model>.propensity", the score of every
// propensity model (projections.PropensityScore, which the rules read too)
// of a profile with events, as of now.
func propensities(out map[string]float64, models []projections.Model, f *features.Features, firstSeen, lastSeen, now int64) {
	for i := range models {
		if v, ok := projections.PropensityScore(&models[i], f, firstSeen, lastSeen, now); ok {
			out[models[i].Name+".propensity"] = v
		}
	}
}
