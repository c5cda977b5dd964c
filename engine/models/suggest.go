package models

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/aurumcdp/aurum/event"
	"github.com/aurumcdp/aurum/predict/segment"
	"github.com/aurumcdp/aurum/projections"
	"github.com/aurumcdp/aurum/projections/features"
	"github.com/aurumcdp/aurum/projections/gcr"
	"github.com/aurumcdp/aurum/store"
)

// SuggestRequest asks for audience suggestions (POST
// /v1/audiences/suggest, aurum audience suggest).
type SuggestRequest struct {
	// KMax bounds the number of segments tried (2..KMax, k chosen by the
	// silhouette). Default 8, at most 20.
	KMax int `json:"k_max"`
	// Seed seeds k-means++ and the silhouette sample. Default 1.
	Seed uint64 `json:"seed"`
	// MaxProfiles bounds the profiles read (in key order: ids are spread
	// over partitions by hash, so this is a sample). Default 100,000.
	MaxProfiles int `json:"max_profiles"`
}

// SuggestInfo is the answer: the segments discovered, each with a rule
// ready for aurum audience add.
type SuggestInfo struct {
	Profiles    int          `json:"profiles"` // profiles with events, clustered
	AsOf        time.Time    `json:"as_of"`    // the log time the columns are computed at
	K           int          `json:"k"`
	Silhouettes []KScoreInfo `json:"silhouettes"`
	Segments    []Suggestion `json:"segments"`
	Note        string       `json:"note,omitempty"` // why there are none
}

// KScoreInfo is the mean silhouette of k segments.
type KScoreInfo struct {
	K          int     `json:"k"`
	Silhouette float64 `json:"silhouette"`
}

// Suggestion is one discovered segment.
type Suggestion struct {
	Name        string             `json:"name"` // a suggested audience name
	Size        int                `json:"size"`
	Share       float64            `json:"share"` // of the profiles clustered
	Description string             `json:"description"`
	Rule        string             `json:"rule"`      // approximates membership (audience language)
	Precision   float64            `json:"precision"` // of the rule, on the profiles clustered
	Recall      float64            `json:"recall"`
	Mean        map[string]float64 `json:"mean"` // the segment's mean per column
}

// Suggest discovers segments of the profiles (segment.Discover on the
// columns of segment.RFM, computed from each profile's record and stored
// events as of the log clock, as the rules compute them) and turns each
// into a rule. It writes nothing. Memory: six numbers per profile read.
func (s *Service) Suggest(ctx context.Context, req SuggestRequest) (SuggestInfo, error) {
	if req.KMax == 0 {
		req.KMax = 8
	}
	if req.KMax < 2 || req.KMax > 20 {
		return SuggestInfo{}, &FieldError{"k_max", fmt.Sprintf("%d: want 2..20", req.KMax)}
	}
	if req.Seed == 0 {
		req.Seed = 1
	}
	if req.MaxProfiles == 0 {
		req.MaxProfiles = 100_000
	}
	if req.MaxProfiles < 10 || req.MaxProfiles > 1_000_000 {
		return SuggestInfo{}, &FieldError{"max_profiles", fmt.Sprintf("%d: want 10..1000000", req.MaxProfiles)}
	}
	var (
		rows [][]float64
		now  int64
	)
	err := s.deps.State.Read(func(r store.Reader, sm *projections.StateMachine) error {
		var err error
		if now, err = projections.LogClock(r); err != nil {
			return err
		}
		g := sm.GCR()
		return g.EachProfile(r, func(p *gcr.Profile) error {
			if len(rows) >= req.MaxProfiles {
				return errEnough
			}
			if len(rows)%1024 == 0 && ctx.Err() != nil {
				return ctx.Err()
			}
			if p.Stats.Events == 0 {
				return nil
			}
			row, err := rfmRow(r, g, p, now)
			if err != nil {
				return err
			}
			rows = append(rows, row)
			return nil
		})
	})
	if err != nil && !errors.Is(err, errEnough) {
		return SuggestInfo{}, fmt.Errorf("models: suggest: %w", err)
	}
	out := SuggestInfo{Profiles: len(rows), AsOf: time.UnixMilli(now).UTC(), Segments: []Suggestion{}}
	if len(rows) < 2*req.KMax {
		out.Note = fmt.Sprintf("%d profiles with events: too few to discover segments (want at least %d, 2 × k_max)", len(rows), 2*req.KMax)
		return out, nil
	}
	feats := segment.RFM()
	res, err := segment.Discover(rows, feats, segment.Options{KMax: req.KMax, Seed: req.Seed})
	if err != nil {
		return SuggestInfo{}, fmt.Errorf("models: suggest: %w", err)
	}
	out.K = res.K
	for _, k := range res.Scores {
		out.Silhouettes = append(out.Silhouettes, KScoreInfo{K: k.K, Silhouette: k.Silhouette})
	}
	for i, c := range res.Clusters {
		mean := map[string]float64{}
		for j, f := range feats {
			mean[f.Name] = c.Mean[j]
		}
		out.Segments = append(out.Segments, Suggestion{Name: fmt.Sprintf("segment-%d", i+1), Size: c.Size,
			Share: float64(c.Size) / float64(len(rows)), Description: c.Description, Rule: c.Rule,
			Precision: c.Precision, Recall: c.Recall, Mean: mean})
	}
	return out, nil
}

var errEnough = errors.New("models: enough profiles")

// rfmRow computes segment.RFM's columns of a profile as of now, as the
// rules compute them: orders and refunds (all time), spend (the record's
// revenue of Order Completed: properties.revenue, else total), whole days
// since last seen, product views and cart adds in (now − 30 d, now] from
// the stored events.
func rfmRow(r store.Reader, g *gcr.Projection, p *gcr.Profile, now int64) ([]float64, error) {
	var views, carts float64
	from := now - 30*features.DayMs
	err := g.EachEvent(r, p, 256, func(rec *event.Record) error {
		if rec.Kind != event.Track || rec.Time <= from || rec.Time > now {
			return nil
		}
		switch rec.Event {
		case "Product Viewed":
			views++
		case "Product Added":
			carts++
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	ec := p.Stats.EventCounts
	spend := float64(p.Revenue[features.PurchaseEvent].Micros) / 1e6
	recency := float64(max(0, now-p.Stats.LastSeen) / features.DayMs)
	return []float64{float64(ec[features.PurchaseEvent]), spend, recency, views, carts, float64(ec["Order Refunded"])}, nil
}
