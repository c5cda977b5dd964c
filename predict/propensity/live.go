package propensity

import (
	"errors"
	"math"
	"time"

	"github.com/aurumcdp/aurum/projections/features"
)

// FromFeatures computes, for a live profile, the row Examples computes from
// the log at cutoff asOf (Unix ms), from its feature row and its first and
// last seen times: the same columns (Columns), so a model fitted on
// Examples scores live profiles. The half-lives must be the row's own (7
// and 30 days). The target is the feature row's purchase event
// (features.PurchaseEvent), its values the revenue in units; or any other
// track event with Undated (the row dates only purchases: the target's
// decayed counts stand for its days).
//
// The two agree exactly (to float rounding) while the row is under its caps
// and the names are track events; beyond the caps, an evicted name scores 0
// and folded days count but have no date (docs/predictions.md).
func FromFeatures(f *features.Features, firstSeen, lastSeen, asOf int64, opt ExampleOptions) ([]float64, error) {
	opt.Cutoff = time.UnixMilli(asOf)
	if err := opt.defaults(); err != nil {
		return nil, err
	}
	if opt.Target != features.PurchaseEvent && !opt.Undated {
		return nil, errors.New("propensity: from features: a target other than " + features.PurchaseEvent + ", the feature row's purchase event, needs Undated")
	}
	want := []time.Duration{time.Duration(features.HalfLifeShort) * time.Millisecond, time.Duration(features.HalfLifeLong) * time.Millisecond}
	if len(opt.HalfLives) != 2 || opt.HalfLives[0] != want[0] || opt.HalfLives[1] != want[1] {
		return nil, errors.New("propensity: from features: half-lives must be the feature row's, 7 and 30 days")
	}
	var row []float64
	for _, n := range opt.Names {
		var s, l float64
		if d, ok := f.Events.Get(n); ok {
			s, l = d.At(asOf)
		}
		row = append(row, s, l)
	}
	lastDay := int64(math.MinInt64)
	var micros int64 = f.FoldedMicros
	for _, p := range f.Purchases {
		lastDay = max(lastDay, p.Day)
		micros += p.Micros
	}
	targetDays := len(f.Purchases) + int(f.FoldedPurchaseDays)
	activeDays := len(f.ActiveDays) + int(f.FoldedActiveDays)
	return append(row, tail(opt.Undated, asOf, firstSeen, lastSeen, activeDays, targetDays, lastDay, float64(micros)/1e6)...), nil
}
