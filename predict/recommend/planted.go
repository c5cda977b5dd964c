package recommend

import (
	"fmt"
	"math/rand/v2"
)

// PlantedConfig configures Planted. Zero fields take their defaults.
type PlantedConfig struct {
	// Users, Categories and PerCategory (items per category). Defaults
	// 1000, 20 and 100.
	Users, Categories, PerCategory int
	// Favourite is the share of a user's views in their favourite
	// category; the rest fall in uniformly drawn categories. Default 0.8.
	Favourite float64
	// Seed seeds every draw.
	Seed uint64
}

// Planted returns synthetic users with a planted preference, for
// evaluating recommenders where the answer is known: each user has a
// favourite category (uniform), 6–25 views spaced 1 minute to 3 hours
// apart, a share Favourite of them in the favourite category, items drawn
// within a category by a Zipf law (s = 1.05); 15 % of views are followed by a
// cart, 6 % by a purchase instead. The same config gives the same users.
func Planted(cfg PlantedConfig) [][]Interaction {
	if cfg.Users == 0 {
		cfg.Users = 1000
	}
	if cfg.Categories == 0 {
		cfg.Categories = 20
	}
	if cfg.PerCategory < 2 {
		cfg.PerCategory = 100
	}
	if cfg.Favourite == 0 {
		cfg.Favourite = 0.8
	}
	rng := rand.New(rand.NewPCG(cfg.Seed, 3))
	zipf := rand.NewZipf(rng, 1.05, 1, uint64(cfg.PerCategory-1))
	out := make([][]Interaction, cfg.Users)
	const hour = int64(3_600_000)
	for u := range out {
		user := fmt.Sprint(u)
		fav := rng.IntN(cfg.Categories)
		n := 6 + rng.IntN(20)
		tm := int64(u) * hour
		for range n {
			c := fav
			if rng.Float64() >= cfg.Favourite {
				c = rng.IntN(cfg.Categories)
			}
			item := fmt.Sprintf("c%d-i%d", c, zipf.Uint64())
			cat := fmt.Sprintf("c%d", c)
			tm += 60_000 + rng.Int64N(3*hour)
			out[u] = append(out[u], Interaction{User: user, Item: item, Category: cat, Kind: View, Time: tm})
			if r := rng.Float64(); r < 0.15 {
				k := Cart
				if r < 0.06 {
					k = Buy
				}
				out[u] = append(out[u], Interaction{User: user, Item: item, Category: cat, Kind: k, Time: tm + 1000})
			}
		}
	}
	return out
}
