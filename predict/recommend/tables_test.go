package recommend

import (
	"reflect"
	"testing"
)

// TestTablesRecommendAlike: the exported tables of a model trained on
// planted preferences rank every user's next best products exactly as the
// model does (same keys, same bits) when nothing was cut, and validate;
// tight bounds cut lists (and say how many) and still validate.
func TestTablesRecommendAlike(t *testing.T) {
	users := Planted(PlantedConfig{Users: 200, Categories: 8, PerCategory: 40, Seed: 3})
	m, err := NewModel(ModelOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var asOf int64
	for _, h := range users {
		m.AddUser(h)
		for _, it := range h {
			asOf = max(asOf, it.Time)
		}
	}
	tb := m.Tables(TableOptions{})
	if err := tb.Validate(); err != nil {
		t.Fatal(err)
	}
	if tb.Cut != 0 || len(tb.Neighbours) == 0 || len(tb.Categories) != 8 || tb.Items != len(m.popularity) {
		t.Fatalf("tables: cut %d, %d neighbour lists, %d categories, %d items", tb.Cut, len(tb.Neighbours), len(tb.Categories), tb.Items)
	}
	differ := 0
	for _, h := range users {
		want := m.Recommend(h, asOf, 10)
		if got := tb.Recommend(h, asOf, 10); !reflect.DeepEqual(got, want) {
			differ++
			if differ < 3 {
				t.Errorf("tables rank %v, the model %v", got, want)
			}
		}
	}
	if differ > 0 {
		t.Fatalf("%d of %d users ranked differently", differ, len(users))
	}

	small := m.Tables(TableOptions{MaxItems: 10, MaxCategories: 2, MaxPopular: 5})
	if err := small.Validate(); err != nil {
		t.Fatal(err)
	}
	if len(small.Neighbours) != 10 || len(small.Categories) != 2 || len(small.Popular) != 5 || small.Cut != len(tb.Neighbours)-10+6 {
		t.Fatalf("bounded tables: %d/%d/%d lists, cut %d", len(small.Neighbours), len(small.Categories), len(small.Popular), small.Cut)
	}

	bad := []func(*Tables){
		func(t *Tables) { t.Options.HalfLife = 0 },
		func(t *Tables) { t.Neighbours[0], t.Neighbours[1] = t.Neighbours[1], t.Neighbours[0] },
		func(t *Tables) { t.Popular[0].Score = -1 },
		func(t *Tables) { t.Categories[0].Items[0].Key = "" },
		func(t *Tables) { t.PopularTotal = 0 },
	}
	for i, f := range bad {
		c := m.Tables(TableOptions{MaxItems: 10, MaxCategories: 2, MaxPopular: 5})
		f(&c)
		if c.Validate() == nil {
			t.Errorf("damage %d validates", i)
		}
	}
}
