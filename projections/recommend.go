package projections

import (
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/aurumcdp/aurum/event"
	"github.com/aurumcdp/aurum/predict/recommend"
	"github.com/aurumcdp/aurum/projections/features"
	"github.com/aurumcdp/aurum/projections/gcr"
	"github.com/aurumcdp/aurum/store"
)

// Bounds of a recommend model's record (RecommendParams.validate). With
// keys of at most features.MaxKeyLen (128) bytes, a record holds at most
// 1,000·20 + 64·100 + 256 scored items and 1,064 list keys: about 3.8 MB
// (each entry a key of ≤ 130 bytes and a float64 of 9), under the log's
// 8 MiB message. With 16-byte product ids it is about 0.7 MB.
const (
	MaxRecommendItems       = 1000 // items whose neighbours are kept (the most popular)
	MaxRecommendNeighbours  = 20   // neighbours per item (recommend's K)
	MaxRecommendCategories  = 64   // categories whose popular items are kept
	MaxRecommendPerCategory = 100  // popular items per category
	MaxRecommendPopular     = 256  // popular items
	// RecommendHistory is the number of a profile's latest events read to
	// score it (the fit pairs the same number: recommend's MaxHistory).
	RecommendHistory = 200
	// NextBestCount is the length of a profile's list of next best
	// products: the profile view shows it and the rules read it
	// (predictions.next_best_products).
	NextBestCount = 3
)

// RecommendParams are a fitted next-best-product model (kind recommend):
// predict/recommend's Tables in a compact, deterministic encoding (each
// list is its key, then its items and their scores as two arrays, lists in
// key order), its options, and what the fit read.
type RecommendParams struct {
	HalfLifeMs  int64     `msgpack:"h"`
	Weights     []float64 `msgpack:"w"` // view, cart, buy
	Blend       []float64 `msgpack:"b"` // self, neighbours, category, popularity
	Recent      int64     `msgpack:"r"`
	Categories  int64     `msgpack:"c"`
	PerCategory int64     `msgpack:"pc"`

	Neighbours   []RecommendList `msgpack:"nb"` // by item, ascending
	CategoryTop  []RecommendList `msgpack:"ct"` // by category, ascending
	Popular      RecommendList   `msgpack:"pp"` // key ""
	PopularTotal float64         `msgpack:"pt"`

	Users        int64 `msgpack:"u"`  // profiles with an interaction
	Interactions int64 `msgpack:"i"`  // interactions read
	Items        int64 `msgpack:"n"`  // distinct items
	Cut          int64 `msgpack:"cu"` // lists left out by the bounds
}

// RecommendList is a key's scored items, best first.
type RecommendList struct {
	Key    string    `msgpack:"k"`
	Items  []string  `msgpack:"i"`
	Scores []float64 `msgpack:"s"`
}

func listOf(l recommend.List) RecommendList {
	r := RecommendList{Key: l.Key, Items: make([]string, len(l.Items)), Scores: make([]float64, len(l.Items))}
	for i, s := range l.Items {
		r.Items[i], r.Scores[i] = s.Key, s.Score
	}
	return r
}

func (r RecommendList) scored() []recommend.Scored {
	out := make([]recommend.Scored, len(r.Items))
	for i := range r.Items {
		out[i] = recommend.Scored{Key: r.Items[i], Score: r.Scores[i]}
	}
	return out
}

// NewRecommendParams encodes tables (recommend.Model.Tables within the
// bounds above) and the fit's counts.
func NewRecommendParams(t recommend.Tables, users, interactions int64) *RecommendParams {
	o := t.Options
	p := &RecommendParams{
		HalfLifeMs: o.HalfLife.Milliseconds(), Weights: o.Weights[:], Blend: []float64{o.Blend.Self, o.Blend.Neighbours, o.Blend.Category, o.Blend.Popularity},
		Recent: int64(o.Recent), Categories: int64(o.Categories), PerCategory: int64(o.PerCategory),
		Popular: listOf(recommend.List{Items: t.Popular}), PopularTotal: t.PopularTotal,
		Users: users, Interactions: interactions, Items: int64(t.Items), Cut: int64(t.Cut),
	}
	for _, l := range t.Neighbours {
		p.Neighbours = append(p.Neighbours, listOf(l))
	}
	for _, l := range t.Categories {
		p.CategoryTop = append(p.CategoryTop, listOf(l))
	}
	return p
}

// Tables decodes the tables (of valid parameters).
func (p *RecommendParams) Tables() recommend.Tables {
	t := recommend.Tables{
		Options: recommend.ModelOptions{HalfLife: time.Duration(p.HalfLifeMs) * time.Millisecond, Recent: int(p.Recent),
			Categories: int(p.Categories), PerCategory: int(p.PerCategory)},
		Popular: p.Popular.scored(), PopularTotal: p.PopularTotal, Items: int(p.Items), Cut: int(p.Cut),
	}
	if len(p.Weights) == len(t.Options.Weights) {
		copy(t.Options.Weights[:], p.Weights)
	}
	if len(p.Blend) == 4 {
		t.Options.Blend = recommend.Blend{Self: p.Blend[0], Neighbours: p.Blend[1], Category: p.Blend[2], Popularity: p.Blend[3]}
	}
	for _, l := range p.Neighbours {
		t.Neighbours = append(t.Neighbours, recommend.List{Key: l.Key, Items: l.scored()})
	}
	for _, l := range p.CategoryTop {
		t.Categories = append(t.Categories, recommend.List{Key: l.Key, Items: l.scored()})
	}
	return t
}

// validate checks the record's shape and bounds (above), then the tables
// (recommend.Tables.Validate: order, finite positive scores, options).
func (p *RecommendParams) validate(name string) error {
	if p == nil {
		return fmt.Errorf("projections: model %q: kind recommend without its tables", name)
	}
	bad := func(format string, a ...any) error {
		return fmt.Errorf("projections: model %q: "+format, append([]any{name}, a...)...)
	}
	switch {
	case len(p.Weights) != 3 || len(p.Blend) != 4:
		return bad("%d weights and %d blend weights, want 3 and 4", len(p.Weights), len(p.Blend))
	case p.Recent < 1 || p.Recent > MaxRecommendItems:
		return bad("recent %d, want 1..%d", p.Recent, MaxRecommendItems)
	case p.Categories < 0 || p.Categories > MaxRecommendCategories:
		return bad("categories %d, want 0..%d", p.Categories, MaxRecommendCategories)
	case p.PerCategory < 1 || p.PerCategory > MaxRecommendPerCategory:
		return bad("per-category %d, want 1..%d", p.PerCategory, MaxRecommendPerCategory)
	case len(p.Neighbours) > MaxRecommendItems:
		return bad("%d neighbour lists, want at most %d", len(p.Neighbours), MaxRecommendItems)
	case len(p.CategoryTop) > MaxRecommendCategories:
		return bad("%d category lists, want at most %d", len(p.CategoryTop), MaxRecommendCategories)
	case len(p.Popular.Items) > MaxRecommendPopular:
		return bad("%d popular items, want at most %d", len(p.Popular.Items), MaxRecommendPopular)
	case p.Popular.Key != "":
		return bad("popular list keyed %q, want no key", p.Popular.Key)
	}
	for _, w := range append(append([]float64(nil), p.Weights...), p.Blend...) {
		if math.IsNaN(w) || math.IsInf(w, 0) {
			return bad("weight %v, want finite", w)
		}
	}
	check := func(what string, l RecommendList, max int) error {
		if len(l.Key) > features.MaxKeyLen || len(l.Items) != len(l.Scores) || len(l.Items) > max {
			return bad("%s %q: %d items and %d scores, key of %d bytes: want equal counts of at most %d, keys of at most %d bytes",
				what, l.Key, len(l.Items), len(l.Scores), len(l.Key), max, features.MaxKeyLen)
		}
		for _, it := range l.Items {
			if len(it) > features.MaxKeyLen {
				return bad("%s %q: item of %d bytes, want at most %d", what, l.Key, len(it), features.MaxKeyLen)
			}
		}
		return nil
	}
	for _, l := range p.Neighbours {
		if err := check("neighbours of", l, MaxRecommendNeighbours); err != nil {
			return err
		}
	}
	for _, l := range p.CategoryTop {
		if err := check("category", l, int(p.PerCategory)); err != nil {
			return err
		}
	}
	if err := check("popular", p.Popular, MaxRecommendPopular); err != nil {
		return err
	}
	t := p.Tables()
	if err := t.Validate(); err != nil {
		return bad("%v", err)
	}
	return nil
}

// RecommendInteraction converts one stored event (its properties opened)
// of a profile into its interactions: the event's categories and products
// as features.EachInteraction reads them, kind buy for Order Completed,
// cart for Product Added, view for any other track event; interactions
// without a product are left out.
func RecommendInteraction(user string, rec *event.Record, fn func(recommend.Interaction)) {
	kind := recommend.View
	switch rec.Event {
	case features.PurchaseEvent:
		kind = recommend.Buy
	case "Product Added":
		kind = recommend.Cart
	}
	features.EachInteraction(rec, func(category, product string) {
		if product != "" {
			fn(recommend.Interaction{User: user, Item: product, Category: category, Kind: kind, Time: rec.Time})
		}
	})
}

// Recommendation is one next best product and its score.
type Recommendation struct {
	Item  string  `json:"item"`
	Score float64 `json:"score"`
}

// NextBestProducts ranks a profile's n next best products as of now under
// a valid recommend model, from its interactions (RecommendInteraction of
// its latest RecommendHistory events): recommend.Tables.Recommend, the
// items it has not bought, best first. A pure function of the record, the
// interactions and now. ok is false for a model of another kind.
//
// The ranking is taken as of the latest interaction at or before now (now
// itself without one): every part of the score is a share of decayed
// interactions that all decay at one rate, so in exact arithmetic the list
// and its scores are the same at any later time; ranking as of that
// interaction keeps them the same bit for bit as time passes (and never
// lets the decay underflow). The list then changes only with the
// profile's events (an event dated after now, when now reaches it), and
// with the model's record.
func NextBestProducts(m *Model, history []recommend.Interaction, now int64, n int) ([]Recommendation, bool) {
	if m.Kind != ModelKindRecommend || m.Recommend == nil {
		return nil, false
	}
	t := m.Recommend.Tables()
	out := []Recommendation{}
	for _, s := range t.Recommend(history, rankTime(history, now), n) {
		out = append(out, Recommendation{Item: s.Key, Score: s.Score})
	}
	return out, true
}

// rankTime is the time NextBestProducts ranks at: the latest interaction
// at or before now, else now.
func rankTime(history []recommend.Interaction, now int64) int64 {
	at, any := int64(math.MinInt64), false
	for i := range history {
		if t := history[i].Time; t <= now && t >= at {
			at, any = t, true
		}
	}
	if !any {
		return now
	}
	return at
}

// ProfileInteractions reads a profile's interactions as NextBestProducts
// takes them: RecommendInteraction of its latest RecommendHistory stored
// events, their properties opened by open. Properties that will never
// open (ErrUnreadable: an erased person's) count as none; any other
// failure is an error (a replay must not differ from the live apply).
func ProfileInteractions(r store.Reader, g *gcr.Projection, p *gcr.Profile, open func(keyID, sealed []byte) ([]byte, error)) ([]recommend.Interaction, error) {
	recs, err := g.Events(r, p, RecommendHistory)
	if err != nil {
		return nil, fmt.Errorf("projections: interactions: %w", err)
	}
	var out []recommend.Interaction
	for i := range recs {
		if len(recs[i].SealedProperties) > 0 && open == nil {
			continue
		}
		if err := recs[i].OpenProperties(open); err != nil {
			if errors.Is(err, ErrUnreadable) {
				continue
			}
			return nil, fmt.Errorf("projections: interactions: event %s: %w", ulidString(recs[i].ID), err)
		}
		RecommendInteraction("", &recs[i], func(it recommend.Interaction) { out = append(out, it) })
	}
	return out, nil
}

// recommender answers rules.Facts.Recommendations for one evaluation of
// one profile: its interactions are read once (on the first question) and
// each model's list is kept per ranking time (rankTime), so that
// rules.NextChange's probes at later times rank again only when an event
// dated after now has come within reach.
type recommender struct {
	sm      *StateMachine
	r       store.Reader
	prof    func() *gcr.Profile
	history []recommend.Interaction
	loaded  bool
	err     error // the first read failure
	lists   map[recommenderKey][]string
}

type recommenderKey struct {
	model string
	at    int64
}

// list returns the item ids of the profile's NextBestCount next best
// products under the recommend model named model as of at; ok is false
// without such a model (or after a read failure, kept in err).
func (rc *recommender) list(model string, at int64) ([]string, bool) {
	ms := *rc.sm.models.Load()
	i, ok := slices.BinarySearchFunc(ms, model, func(m Model, name string) int { return strings.Compare(m.Name, name) })
	if !ok || ms[i].Kind != ModelKindRecommend {
		return nil, false
	}
	if !rc.loaded {
		rc.loaded = true
		rc.history, rc.err = ProfileInteractions(rc.r, rc.sm.gcr, rc.prof(), rc.sm.opts.Open)
	}
	if rc.err != nil {
		return nil, false
	}
	k := recommenderKey{model, rankTime(rc.history, at)}
	if l, ok := rc.lists[k]; ok {
		return l, true
	}
	recs, ok := NextBestProducts(&ms[i], rc.history, at, NextBestCount)
	if !ok {
		return nil, false
	}
	l := make([]string, len(recs))
	for j, r := range recs {
		l[j] = r.Item
	}
	if rc.lists == nil {
		rc.lists = map[recommenderKey][]string{}
	}
	rc.lists[k] = l
	return l, true
}
