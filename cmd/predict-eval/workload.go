package main

import (
	"encoding/json"
	"fmt"
	"strconv"
	"time"

	"github.com/aurumcdp/aurum/internal/workload"
	"github.com/aurumcdp/aurum/predict/recommend"
)

// workloadInteractions runs the synthetic store (internal/workload) and
// returns each person's product interactions: "Product Viewed" and "Product
// Added" by sku and category, and every line of "Order Completed". The
// person is the generator's ground truth, so identity resolution plays no
// part.
func workloadInteractions(cfg workload.Config) ([][]recommend.Interaction, error) {
	g := workload.New(cfg)
	users := make([][]recommend.Interaction, g.Config().People)
	kinds := map[string]recommend.Kind{"Product Viewed": recommend.View, "Product Added": recommend.Cart, "Order Completed": recommend.Buy}
	for {
		ev, ok := g.Next()
		if !ok {
			return users, nil
		}
		var msg struct {
			Event      string `json:"event"`
			Properties struct {
				SKU      string `json:"sku"`
				Category string `json:"category"`
				Products []struct {
					SKU      string `json:"sku"`
					Category string `json:"category"`
				} `json:"products"`
			} `json:"properties"`
		}
		if err := json.Unmarshal(ev.JSON, &msg); err != nil {
			return nil, fmt.Errorf("workload: event of person %d: %w", ev.Person, err)
		}
		k, ok := kinds[msg.Event]
		if !ok {
			continue
		}
		add := func(sku, cat string) {
			users[ev.Person] = append(users[ev.Person], recommend.Interaction{User: strconv.Itoa(ev.Person),
				Item: sku, Category: cat, Kind: k, Time: ev.Time.UnixMilli()})
		}
		if k == recommend.Buy {
			for _, p := range msg.Properties.Products {
				add(p.SKU, p.Category)
			}
			continue
		}
		add(msg.Properties.SKU, msg.Properties.Category)
	}
}

// workloadConfig is the store the evaluation runs: 1,000 people over 30
// days, seed 12.
var workloadConfig = workload.Config{People: 1000, Days: 30, Seed: 12, Start: time.Date(2026, 1, 5, 0, 0, 0, 0, time.UTC)}
