package projections

import (
	"reflect"
	"strings"
	"testing"

	"github.com/aurumcdp/aurum/event"
	"github.com/aurumcdp/aurum/predict/recommend"
	"github.com/vmihailenco/msgpack/v5"
)

// recommendModel is a recommend model trained on planted preferences.
func recommendModel(t *testing.T) (Model, *recommend.Model, [][]recommend.Interaction) {
	t.Helper()
	users := recommend.Planted(recommend.PlantedConfig{Users: 120, Categories: 6, PerCategory: 30, Seed: 5})
	rm, err := recommend.NewModel(recommend.ModelOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, h := range users {
		rm.AddUser(h)
	}
	tb := rm.Tables(recommend.TableOptions{})
	return Model{Name: "nbp", Kind: ModelKindRecommend, Recommend: NewRecommendParams(tb, int64(len(users)), 1)}, rm, users
}

// TestRecommendRecord: a recommend model's record validates, encodes to
// the same bytes twice, decodes to an equal record, and the decoded record
// ranks every user's next best products as the trained model does; damaged
// or oversized records do not validate.
func TestRecommendRecord(t *testing.T) {
	m, rm, users := recommendModel(t)
	if err := m.Validate(); err != nil {
		t.Fatal(err)
	}
	b1, err := msgpack.Marshal(&m)
	if err != nil {
		t.Fatal(err)
	}
	b2, _ := msgpack.Marshal(&m)
	if string(b1) != string(b2) {
		t.Fatal("two encodings of one record differ")
	}
	var back Model
	if err := msgpack.Unmarshal(b1, &back); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(back, m) || back.Validate() != nil {
		t.Fatalf("round trip: %+v", back.Recommend.Popular)
	}
	t.Logf("record of %d items, %d neighbour lists: %d bytes", back.Recommend.Items, len(back.Recommend.Neighbours), len(b1))
	var asOf int64
	for _, h := range users {
		for _, it := range h {
			asOf = max(asOf, it.Time)
		}
	}
	for _, h := range users {
		// Ranked as of the user's latest interaction (rankTime), the same
		// bits at any later time: the list moves with events, not time.
		want := rm.Recommend(h, rankTime(h, asOf), 3)
		got, ok := NextBestProducts(&back, h, asOf, 3)
		if !ok || len(got) != len(want) {
			t.Fatalf("next best %v, want %v", got, want)
		}
		for i := range got {
			if got[i].Item != want[i].Key || got[i].Score != want[i].Score {
				t.Fatalf("next best %v, want %v", got, want)
			}
		}
		later, _ := NextBestProducts(&back, h, asOf+400*86_400_000, 3)
		if !reflect.DeepEqual(later, got) {
			t.Fatalf("next best 400 days later %v, at the last event %v", later, got)
		}
	}

	long := strings.Repeat("x", 129)
	for name, damage := range map[string]func(p *RecommendParams){
		"no tables":    func(p *RecommendParams) { *p = RecommendParams{} },
		"scores short": func(p *RecommendParams) { p.Neighbours[0].Scores = p.Neighbours[0].Scores[1:] },
		"long key":     func(p *RecommendParams) { p.Popular.Items[0] = long },
		"too many popular": func(p *RecommendParams) {
			for range MaxRecommendPopular {
				p.Popular.Items, p.Popular.Scores = append(p.Popular.Items, "z"), append(p.Popular.Scores, 1e-9)
			}
		},
		"too many neighbours": func(p *RecommendParams) {
			for i := range MaxRecommendNeighbours + 1 {
				p.Neighbours[0].Items, p.Neighbours[0].Scores = append(p.Neighbours[0].Items, strings.Repeat("z", i+1)), append(p.Neighbours[0].Scores, 1e-9)
			}
		},
		"unordered lists": func(p *RecommendParams) { p.Neighbours[0], p.Neighbours[1] = p.Neighbours[1], p.Neighbours[0] },
		"bad half-life":   func(p *RecommendParams) { p.HalfLifeMs = 0 },
		"negative score":  func(p *RecommendParams) { p.CategoryTop[0].Scores[0] = -1 },
	} {
		c, _, _ := recommendModel(t)
		damage(c.Recommend)
		if c.Validate() == nil {
			t.Errorf("%s: validates", name)
		}
	}
}

// TestRecommendInteraction: an event's product and its products[] become
// interactions of the event's kind; events without a product give none.
func TestRecommendInteraction(t *testing.T) {
	rec := &event.Record{Kind: event.Track, Event: "Order Completed", Time: 7, Properties: map[string]any{
		"product_id": "p1", "category": "shoes",
		"products": []any{map[string]any{"product_id": "p2"}, map[string]any{"category": "only"}},
	}}
	var got []recommend.Interaction
	add := func(it recommend.Interaction) { got = append(got, it) }
	RecommendInteraction("u", rec, add)
	want := []recommend.Interaction{{User: "u", Item: "p1", Category: "shoes", Kind: recommend.Buy, Time: 7}, {User: "u", Item: "p2", Kind: recommend.Buy, Time: 7}}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("interactions %+v, want %+v", got, want)
	}
	got = nil
	RecommendInteraction("u", &event.Record{Kind: event.Track, Event: "Product Added", Properties: map[string]any{"product_id": 12}}, add)
	RecommendInteraction("u", &event.Record{Kind: event.Track, Event: "Signed Up", Properties: map[string]any{"plan": "x"}}, add)
	if len(got) != 1 || got[0].Item != "12" || got[0].Kind != recommend.Cart {
		t.Fatalf("interactions %+v", got)
	}
}
