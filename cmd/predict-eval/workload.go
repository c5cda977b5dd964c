package main

import (
	"encoding/json"
	"fmt"
	"strconv"
	"time"

	"github.com/aurumcdp/aurum/internal/workload"
	"github.com/aurumcdp/aurum/predict/propensity"
	"github.com/aurumcdp/aurum/predict/recommend"
)

// workloadConfig is the store the evaluation runs: 1,000 people over 30
// days, seed 12.
var workloadConfig = workload.Config{People: 1000, Days: 30, Seed: 12, Start: time.Date(2026, 1, 5, 0, 0, 0, 0, time.UTC), Preference: workloadPreference}

// workloadPreference is the chance a view follows the person's planted
// taste (workload.Config.Preference).
const workloadPreference = 0.7

// wlEvent is one generated event of a person, reduced to what the models
// read.
type wlEvent struct {
	Name    string // track event name, or the message type (identify, page, screen)
	Time    int64  // Unix ms
	Revenue float64
	Items   []wlItem // the product of a view or cart, the lines of an order
}

type wlItem struct{ SKU, Category string }

// workloadData is the synthetic store's events per person (the
// generator's ground truth: identity resolution plays no part) and the
// end of its simulated time.
type workloadData struct {
	People [][]wlEvent
	End    int64
}

func runWorkload(cfg workload.Config) (*workloadData, error) {
	g := workload.New(cfg)
	c := g.Config()
	d := &workloadData{People: make([][]wlEvent, c.People), End: c.Start.Add(time.Duration(c.Days) * 24 * time.Hour).UnixMilli()}
	for {
		ev, ok := g.Next()
		if !ok {
			return d, nil
		}
		var msg struct {
			Type       string `json:"type"`
			Event      string `json:"event"`
			Properties struct {
				SKU      string  `json:"sku"`
				Category string  `json:"category"`
				Revenue  float64 `json:"revenue"`
				Products []struct {
					SKU      string `json:"sku"`
					Category string `json:"category"`
				} `json:"products"`
			} `json:"properties"`
		}
		if err := json.Unmarshal(ev.JSON, &msg); err != nil {
			return nil, fmt.Errorf("workload: event of person %d: %w", ev.Person, err)
		}
		e := wlEvent{Name: msg.Event, Time: ev.Time.UnixMilli(), Revenue: msg.Properties.Revenue}
		if msg.Type != "track" {
			e.Name = msg.Type
		}
		if msg.Properties.SKU != "" {
			e.Items = []wlItem{{msg.Properties.SKU, msg.Properties.Category}}
		}
		for _, p := range msg.Properties.Products {
			e.Items = append(e.Items, wlItem{p.SKU, p.Category})
		}
		d.People[ev.Person] = append(d.People[ev.Person], e)
	}
}

// interactions returns each person's product interactions: "Product
// Viewed" and "Product Added" by sku and category, and every line of
// "Order Completed".
func (d *workloadData) interactions() [][]recommend.Interaction {
	kinds := map[string]recommend.Kind{"Product Viewed": recommend.View, "Product Added": recommend.Cart, "Order Completed": recommend.Buy}
	users := make([][]recommend.Interaction, len(d.People))
	for p, evs := range d.People {
		for _, e := range evs {
			k, ok := kinds[e.Name]
			if !ok {
				continue
			}
			for _, it := range e.Items {
				users[p] = append(users[p], recommend.Interaction{User: strconv.Itoa(p), Item: it.SKU, Category: it.Category, Kind: k, Time: e.Time})
			}
		}
	}
	return users
}

// propensityNames are the event names the workload propensity rows count.
var propensityNames = []string{"Product Viewed", "Product Added", "Order Completed", "Order Refunded", "Signed In", "page", "screen"}

// examples builds propensity rows ("Order Completed" within horizon of the
// cutoff) from the workload.
func (d *workloadData) examples(cutoff time.Time, horizon time.Duration) (*propensity.Dataset, error) {
	ex, err := propensity.NewExamples(propensity.ExampleOptions{Cutoff: cutoff, Horizon: horizon, Names: propensityNames})
	if err != nil {
		return nil, err
	}
	for p, evs := range d.People {
		id := strconv.Itoa(p)
		for _, e := range evs {
			ex.Add(propensity.Event{Profile: id, Time: time.UnixMilli(e.Time), Name: e.Name, Value: e.Revenue})
		}
	}
	ds, _ := ex.Dataset()
	return ds, nil
}

// segmentRows computes segment.RFM's columns for every person with an event, at
// time now, as the rules package computes them (windows (now − w, now],
// whole days since the last event); it returns the persons' indices too.
func (d *workloadData) segmentRows(now int64) ([][]float64, []int) {
	var rows [][]float64
	var who []int
	for p, evs := range d.People {
		var orders, spend, views, carts, refunds float64
		last := int64(-1)
		for _, e := range evs {
			if e.Time > now {
				continue
			}
			last = max(last, e.Time)
			in30 := e.Time > now-30*86_400_000
			switch e.Name {
			case "Order Completed":
				orders++
				spend += e.Revenue
			case "Product Viewed":
				if in30 {
					views++
				}
			case "Product Added":
				if in30 {
					carts++
				}
			case "Order Refunded":
				refunds++
			}
		}
		if last < 0 {
			continue
		}
		rows = append(rows, []float64{orders, spend, float64((now - last) / 86_400_000), views, carts, refunds})
		who = append(who, p)
	}
	return rows, who
}
