package models

import (
	"context"
	"errors"
	"fmt"

	"github.com/aurumcdp/aurum/event"
	"github.com/aurumcdp/aurum/predict/recommend"
	"github.com/aurumcdp/aurum/projections"
	"github.com/aurumcdp/aurum/projections/gcr"
	"github.com/aurumcdp/aurum/store"
)

// maxUserInteractions bounds the interactions of one profile held while
// the fit reads it (its latest; the co-occurrence pairs the latest
// projections.RecommendHistory of them).
const maxUserInteractions = 10_000

// validateRecommend checks a next-best-product request and fills its
// defaults (fields of other kinds: requestFields): max_items (the items whose neighbours the record keeps, the
// most popular first) 1..projections.MaxRecommendItems, default the most.
func (r *Request) validateRecommend() (job, error) {
	if r.MaxItems == 0 {
		r.MaxItems = projections.MaxRecommendItems
	}
	if r.MaxItems < 1 || r.MaxItems > projections.MaxRecommendItems {
		return job{}, &FieldError{"max_items", fmt.Sprintf("%d: want 1..%d", r.MaxItems, projections.MaxRecommendItems)}
	}
	return job{req: *r}, nil
}

// fitRecommend trains predict/recommend's model on every profile's stored
// events at one applied position (each profile's interactions, its latest
// maxUserInteractions, one profile at a time: memory is the model's,
// Capacity counters per item) and appends its tables, within the record's
// bounds, as a model.put.
func (s *Service) fitRecommend(ctx context.Context, j job) error {
	if s.deps.Open == nil {
		return fmt.Errorf("models: fit %q: no opener for the events' properties", j.req.Name)
	}
	if err := s.deps.Synced.Sync(ctx); err != nil {
		return fmt.Errorf("models: fit %q: sync: %w", j.req.Name, err)
	}
	rm, err := recommend.NewModel(recommend.ModelOptions{})
	if err != nil {
		return fmt.Errorf("models: fit %q: %w", j.req.Name, err)
	}
	var (
		pos                 projections.ModelPosition
		users, interactions int64
	)
	err = s.deps.State.Read(func(r store.Reader, sm *projections.StateMachine) error {
		var err error
		if pos.Seq, err = projections.Applied(r); err != nil {
			return err
		}
		if pos.Time, err = projections.LogClock(r); err != nil {
			return err
		}
		g := sm.GCR()
		n := 0
		var h []recommend.Interaction
		return g.EachProfile(r, func(p *gcr.Profile) error {
			if n++; n%1024 == 0 && ctx.Err() != nil {
				return ctx.Err()
			}
			id := string(p.ID)
			h = h[:0]
			err := g.EachEvent(r, p, 256, func(rec *event.Record) error {
				if rec.Kind != event.Track || len(rec.SealedProperties) == 0 {
					return nil
				}
				if err := rec.OpenProperties(s.deps.Open); err != nil {
					if errors.Is(err, projections.ErrUnreadable) {
						return nil // an erased person's: as if without properties
					}
					return err
				}
				projections.RecommendInteraction(id, rec, func(it recommend.Interaction) {
					if len(h) == maxUserInteractions {
						h = append(h[:0], h[1:]...)
					}
					h = append(h, it)
				})
				return nil
			})
			if err != nil || len(h) == 0 {
				return err
			}
			users++
			interactions += int64(len(h))
			rm.AddUser(h)
			return nil
		})
	})
	if err != nil {
		return fmt.Errorf("models: fit %q: read: %w", j.req.Name, err)
	}
	if users == 0 {
		return fmt.Errorf("models: fit %q: no profile has an event with a properties.product_id", j.req.Name)
	}
	t := rm.Tables(recommend.TableOptions{MaxItems: j.req.MaxItems, MaxCategories: projections.MaxRecommendCategories,
		MaxPopular: projections.MaxRecommendPopular})
	m := projections.Model{Name: j.req.Name, Kind: projections.ModelKindRecommend, FittedAsOf: pos, Customers: users,
		Recommend: projections.NewRecommendParams(t, users, interactions)}
	seq, err := s.put(ctx, j, m)
	if err != nil {
		return err
	}
	s.opts.Logger.Info("models: fitted", "model", j.req.Name, "kind", m.Kind, "users", users, "interactions", interactions,
		"items", t.Items, "cut", t.Cut, "seq", seq)
	return nil
}

// RecommendInfo is a next-best-product model as GET /v1/models/{name}
// shows it.
type RecommendInfo struct {
	Users          int64   `json:"users"`           // profiles with an interaction
	Interactions   int64   `json:"interactions"`    // interactions read
	Items          int64   `json:"items"`           // distinct items
	NeighbourLists int     `json:"neighbour_lists"` // items whose neighbours are kept
	Categories     int     `json:"categories"`      // categories whose popular items are kept
	Popular        int     `json:"popular"`         // popular items kept
	Cut            int64   `json:"cut"`             // lists left out by the record's bounds
	HalfLifeDays   float64 `json:"half_life_days"`  // of a profile's interactions
	MaxItems       int     `json:"max_items,omitempty"`
}

func recommendInfo(p *projections.RecommendParams) *RecommendInfo {
	return &RecommendInfo{Users: p.Users, Interactions: p.Interactions, Items: p.Items, NeighbourLists: len(p.Neighbours),
		Categories: len(p.CategoryTop), Popular: len(p.Popular.Items), Cut: p.Cut, HalfLifeDays: float64(p.HalfLifeMs) / 86_400_000}
}
