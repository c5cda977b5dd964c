package workload

import (
	"encoding/json"
	"testing"
)

func all(t *testing.T, g *Generator) []Event {
	t.Helper()
	var out []Event
	for {
		ev, ok := g.Next()
		if !ok {
			return out
		}
		out = append(out, ev)
	}
}

// TestPreference: with Config.Preference the people's product views follow
// their planted favourite category (about Preference + (1 − Preference)/8
// of them), while every other draw is unchanged: the same events by
// source, person and time as without.
func TestPreference(t *testing.T) {
	cfg := Config{People: 200, Days: 10, Seed: 3}
	plain := all(t, New(cfg))
	cfg.Preference = 0.8
	g := New(cfg)
	tasted := all(t, g)
	if len(plain) != len(tasted) {
		t.Fatalf("%d events with preferences, %d without", len(tasted), len(plain))
	}
	var views, liked int
	for i, ev := range tasted {
		if p := plain[i]; p.Source != ev.Source || p.Person != ev.Person || !p.Time.Equal(ev.Time) {
			t.Fatalf("event %d differs beyond the product: %+v vs %+v", i, p, ev)
		}
		var msg struct {
			Event      string `json:"event"`
			Properties struct {
				Category string `json:"category"`
			} `json:"properties"`
		}
		if err := json.Unmarshal(ev.JSON, &msg); err != nil {
			t.Fatal(err)
		}
		if msg.Event == "Product Viewed" {
			views++
			if msg.Properties.Category == categories[g.people[ev.Person].likes] {
				liked++
			}
		}
	}
	share := float64(liked) / float64(views)
	if views < 1000 || share < 0.78 || share > 0.88 {
		t.Errorf("%d of %d views (%.3f) in the favourite category, want about 0.825", liked, views, share)
	}
	cfg.Preference = 1.5
	if cfg.Validate() == nil {
		t.Error("preference 1.5 validated")
	}
}
