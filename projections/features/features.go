// Package features is the feature projection of issue #12: per profile, the
// inputs of the prediction models (package predict) and the behaviour
// features of docs/predictions.md, maintained by the state machine with the
// Golden Customer Record (package gcr stores a Features inside each Profile,
// so it lives in the same Pebble batch, follows merges and erasure, and the
// digest covers it).
//
// # Semantics
//
// Everything but the decayed scores is exact and order-independent (a
// join-semilattice, like the GCR): Add of events in any order, and Join of
// profiles in any order, give equal Features, while the caps below are not
// reached.
//   - Purchase days are a set of UTC days with the orders and the revenue
//     (micro-units, gcr's definition) of each day summed.
//   - Active days are a set of UTC days with any event.
//   - Decayed scores (event names; categories and products through
//     AddInteractions, keyed by the GCR's keyed hash) are, per key,
//     Σ weight·2^(−(asOf−t)/h) over the key's events, kept as of the latest
//     event time of the key (asOf) for two half-lives (HalfLifeShort,
//     HalfLifeLong). In exact arithmetic this is order-independent; in
//     float64 two orders may differ in the last bits (relative 1e-12), so
//     they are equal within rounding, and byte-identical for one log order
//     (a replay applies the log in its order).
//
// # Bounds (documented deterministic rules)
//
//   - At most MaxPurchaseDays purchase days and MaxActiveDays active days
//     are kept, the newest. Older days are folded into counts (and the
//     revenue of folded purchase days into a sum). A late event on a day
//     older than every kept day of a full set counts as a new folded day.
//   - At most MaxKeys keys per decayed map. When a map exceeds it, the keys
//     with the lowest long-half-life score, compared as of the map's latest
//     time, are evicted (ties: the greater key goes). An evicted key's past
//     is forgotten: beyond MaxKeys distinct keys the result depends on the
//     order (deterministic for one log order).
//   - Keys longer than MaxKeyLen bytes are ignored.
package features

import (
	"cmp"
	"encoding/json"
	"math"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/aurumcdp/aurum/event"
)

// Bounds and constants of the projection (docs/predictions.md).
const (
	MaxPurchaseDays = 4096
	MaxActiveDays   = 1024
	MaxKeys         = 64
	MaxKeyLen       = 128

	// HalfLifeShort and HalfLifeLong are the half-lives of the decayed
	// scores, in milliseconds: 7 and 30 days.
	HalfLifeShort = 7 * DayMs
	HalfLifeLong  = 30 * DayMs

	DayMs = 86_400_000

	// PurchaseEvent is the track event that is a purchase (Segment's
	// e-commerce spec). Its revenue is gcr's: properties.revenue, else
	// properties.total.
	PurchaseEvent = "Order Completed"
)

// Interaction weights of the category and product scores.
const (
	weightView     = 1
	weightAdded    = 3
	weightPurchase = 5
)

// Features is the feature row of one profile. The zero value is empty.
type Features struct {
	Purchases []PurchaseDay // sorted by Day, distinct
	// FoldedPurchaseDays, FoldedOrders and FoldedMicros are the purchase
	// days beyond MaxPurchaseDays (the oldest), folded.
	FoldedPurchaseDays int64
	FoldedOrders       int64
	FoldedMicros       int64

	ActiveDays       []int64 // sorted, distinct
	FoldedActiveDays int64

	Events     Scores // by track event name
	Categories Scores // by properties.category (and those of products[])
	Products   Scores // by properties.product_id (and those of products[])
}

// Scores are decayed scores by key, sorted by key, keys distinct (a sorted
// slice: cheaper to decode and encode than a map).
type Scores []Keyed

// Keyed is one key's decayed score.
type Keyed struct {
	Key string
	Decayed
}

// Get returns the score of k.
func (s Scores) Get(k string) (Decayed, bool) {
	i, ok := s.find(k)
	if !ok {
		return Decayed{}, false
	}
	return s[i].Decayed, true
}

// find returns the index of k in s, or where to insert it (sort.Find's
// answer, without a call per comparison: it runs for every key of every
// event).
func (s Scores) find(k string) (int, bool) {
	lo, hi := 0, len(s)
	for lo < hi {
		m := int(uint(lo+hi) >> 1)
		if s[m].Key < k {
			lo = m + 1
		} else {
			hi = m
		}
	}
	return lo, lo < len(s) && s[lo].Key == k
}

// PurchaseDay is one UTC day with purchases.
type PurchaseDay struct {
	Day    int64 // days since 1970-01-01 UTC (floor of ms / DayMs)
	Orders int64 // purchase events that day
	Micros int64 // their revenue, micro-units (events without revenue add 0)
}

// Decayed is an exponentially decayed count as of AsOf (Unix ms).
type Decayed struct {
	Short float64 // half-life HalfLifeShort
	Long  float64 // half-life HalfLifeLong
	AsOf  int64
}

// decay returns the factor 2^(−dt/h) for dt ≥ 0 ms.
func decay(dt, h int64) float64 {
	if dt <= 0 {
		return 1
	}
	return math.Exp2(-float64(dt) / float64(h))
}

// At returns d's scores as of t (t before AsOf: as of AsOf).
func (d Decayed) At(t int64) (short, long float64) {
	dt := t - d.AsOf
	return d.Short * decay(dt, HalfLifeShort), d.Long * decay(dt, HalfLifeLong)
}

// longAt is the long-half-life score of d as of t (At's second result,
// without computing the first).
func (d Decayed) longAt(t int64) float64 { return d.Long * decay(t-d.AsOf, HalfLifeLong) }

// join folds o into d: both brought to the later AsOf and summed.
func (d Decayed) join(o Decayed) Decayed {
	if o.AsOf > d.AsOf {
		d, o = o, d
	}
	dt := d.AsOf - o.AsOf
	d.Short += o.Short * decay(dt, HalfLifeShort)
	d.Long += o.Long * decay(dt, HalfLifeLong)
	return d
}

// DayOf is the UTC day of a Unix ms time.
func DayOf(ms int64) int64 {
	d := ms / DayMs
	if ms%DayMs < 0 {
		d--
	}
	return d
}

// Add folds one event into f and reports whether f changed (an event other
// than a track event, on a day f has as active already, changes nothing:
// a caller holding f's encoding may write it again). micros/hasRevenue are
// the event's revenue as gcr reads it (gcr computes it once for both
// projections).
func (f *Features) Add(rec *event.Record, micros int64, hasRevenue bool) (changed bool) {
	day := DayOf(rec.Time)
	changed = f.addActiveDay(day)
	if rec.Kind != event.Track || rec.Event == "" {
		return changed
	}
	addDecayed(&f.Events, rec.Event, Decayed{Short: 1, Long: 1, AsOf: rec.Time})
	if rec.Event == PurchaseEvent {
		if !hasRevenue {
			micros = 0
		}
		f.addPurchase(PurchaseDay{Day: day, Orders: 1, Micros: micros})
	}
	return true
}

// KeyFunc maps an interaction's kind ("category" or "product") and value
// to the key the row keeps (the GCR's: a keyed hash, so that no property
// value is stored in clear; docs/predictions.md). It must be deterministic.
// nil keeps the value itself.
type KeyFunc func(kind, value string) string

// AddInteractions folds one event's category and product interactions into
// f: properties.category and properties.product_id, and those of the
// elements of properties.products, weighted by the event (view 1, Product
// Added 3, Order Completed 5), their keys mapped by key. It reports
// whether f changed (the event had an interaction).
func (f *Features) AddInteractions(rec *event.Record, key KeyFunc) (changed bool) {
	if rec.Kind != event.Track || rec.Event == "" || len(rec.Properties) == 0 {
		return false
	}
	w := float64(weightView)
	switch rec.Event {
	case PurchaseEvent:
		w = weightPurchase
	case "Product Added":
		w = weightAdded
	}
	changed = f.interactions(rec.Properties, w, rec.Time, key)
	if items, ok := rec.Properties["products"].([]any); ok {
		for i, it := range items {
			if i == MaxKeys {
				break // bounded work per event
			}
			if m, ok := it.(map[string]any); ok {
				changed = f.interactions(m, w, rec.Time, key) || changed
			}
		}
	}
	return changed
}

func (f *Features) interactions(props map[string]any, w float64, t int64, key KeyFunc) (changed bool) {
	if c, ok := keyOf(props["category"]); ok && c != "" && len(c) <= MaxKeyLen {
		if key != nil {
			c = key("category", c)
		}
		changed = addDecayed(&f.Categories, c, Decayed{Short: w, Long: w, AsOf: t}) || changed
	}
	if p, ok := keyOf(props["product_id"]); ok && p != "" && len(p) <= MaxKeyLen {
		if key != nil {
			p = key("product", p)
		}
		changed = addDecayed(&f.Products, p, Decayed{Short: w, Long: w, AsOf: t}) || changed
	}
	return changed
}

// Affinity is the affinity of a profile's row for one category or product
// (kind "category" or "product"; key as the row keeps it) as of at: the
// key's share of the long-half-life decayed interaction scores of its kind,
// in [0, 1]. ok is false for a row without interactions of the kind.
// Every key decays at one rate, so the shares move only with new events.
func Affinity(f *Features, kind, key string, at int64) (float64, bool) {
	if f == nil {
		return 0, false
	}
	s := f.Categories
	if kind == "product" {
		s = f.Products
	}
	if len(s) == 0 {
		return 0, false
	}
	var total, mine float64
	for _, e := range s {
		l := e.longAt(at)
		total += l
		if e.Key == key {
			mine = l
		}
	}
	if !(total > 0) {
		return 0, true
	}
	return mine / total, true
}

// keyOf is the key of a category or product id: a string (trimmed) or an
// integer (decimal; product ids are often numbers, and the properties'
// decoder gives integers their smallest type).
func keyOf(v any) (string, bool) {
	switch x := v.(type) {
	case string:
		return strings.TrimSpace(x), true
	case int8:
		return strconv.FormatInt(int64(x), 10), true
	case int16:
		return strconv.FormatInt(int64(x), 10), true
	case int32:
		return strconv.FormatInt(int64(x), 10), true
	case int64:
		return strconv.FormatInt(x, 10), true
	case int:
		return strconv.Itoa(x), true
	case uint8:
		return strconv.FormatUint(uint64(x), 10), true
	case uint16:
		return strconv.FormatUint(uint64(x), 10), true
	case uint32:
		return strconv.FormatUint(uint64(x), 10), true
	case uint64:
		return strconv.FormatUint(x, 10), true
	case json.Number:
		return x.String(), true
	case float64:
		if x == math.Trunc(x) && math.Abs(x) < 1<<53 {
			return strconv.FormatInt(int64(x), 10), true
		}
	}
	return "", false
}

// addDecayed adds d to the score of k and reports whether s changed (it
// does unless k is refused).
func addDecayed(s *Scores, k string, d Decayed) bool {
	if k == "" || len(k) > MaxKeyLen {
		return false
	}
	i, ok := s.find(k)
	if ok {
		(*s)[i].Decayed = (*s)[i].join(d)
		return true
	}
	*s = slices.Insert(*s, i, Keyed{Key: k, Decayed: d})
	s.trim()
	return true
}

// trim evicts keys beyond MaxKeys: lowest long score as of the latest time
// of s first, ties the greater key first. It allocates nothing: one key
// over (an event's new key) is the common case.
func (s *Scores) trim() {
	if len(*s) <= MaxKeys {
		return
	}
	latest := s.latest()
	for len(*s) > MaxKeys {
		worst, wl := 0, math.Inf(1)
		for i, e := range *s {
			l := e.longAt(latest)
			// ranked's order (long score descending, key ascending), reversed:
			// the last key of that order is evicted first.
			if l < wl || l == wl && e.Key > (*s)[worst].Key {
				worst, wl = i, l
			}
		}
		*s = slices.Delete(*s, worst, worst+1)
	}
}

// latest is the greatest AsOf of s (math.MinInt64 for an empty s).
func (s Scores) latest() int64 {
	var latest int64 = math.MinInt64
	for _, e := range s {
		latest = max(latest, e.AsOf)
	}
	return latest
}

// addActiveDay adds day to the active days and reports whether f changed.
func (f *Features) addActiveDay(day int64) bool {
	// The newest day first: events mostly come in time order.
	n := len(f.ActiveDays)
	if n > 0 && f.ActiveDays[n-1] == day {
		return false
	}
	i, found := slices.BinarySearch(f.ActiveDays, day)
	if found {
		return false
	}
	if len(f.ActiveDays) >= MaxActiveDays && i == 0 {
		f.FoldedActiveDays++
		return true
	}
	f.ActiveDays = slices.Insert(f.ActiveDays, i, day)
	if len(f.ActiveDays) > MaxActiveDays {
		f.ActiveDays = slices.Delete(f.ActiveDays, 0, 1)
		f.FoldedActiveDays++
	}
	return true
}

func (f *Features) addPurchase(p PurchaseDay) {
	i, found := sort.Find(len(f.Purchases), func(i int) int { return cmp.Compare(p.Day, f.Purchases[i].Day) })
	if found {
		f.Purchases[i].Orders += p.Orders
		f.Purchases[i].Micros += p.Micros
		return
	}
	if len(f.Purchases) >= MaxPurchaseDays && i == 0 {
		f.fold(p)
		return
	}
	f.Purchases = slices.Insert(f.Purchases, i, p)
	if len(f.Purchases) > MaxPurchaseDays {
		f.fold(f.Purchases[0])
		f.Purchases = slices.Delete(f.Purchases, 0, 1)
	}
}

func (f *Features) fold(p PurchaseDay) {
	f.FoldedPurchaseDays++
	f.FoldedOrders += p.Orders
	f.FoldedMicros += p.Micros
}

// Join folds o into f (o is not modified; f shares nothing with it).
func (f *Features) Join(o *Features) {
	if o == nil {
		return
	}
	for _, p := range o.Purchases {
		f.addPurchase(p)
	}
	f.FoldedPurchaseDays += o.FoldedPurchaseDays
	f.FoldedOrders += o.FoldedOrders
	f.FoldedMicros += o.FoldedMicros
	for _, d := range o.ActiveDays {
		f.addActiveDay(d)
	}
	f.FoldedActiveDays += o.FoldedActiveDays
	joinScores(&f.Events, o.Events)
	joinScores(&f.Categories, o.Categories)
	joinScores(&f.Products, o.Products)
}

func joinScores(dst *Scores, src Scores) {
	if len(src) == 0 {
		return
	}
	out := make(Scores, 0, len(*dst)+len(src))
	a, b := *dst, src
	for len(a) > 0 || len(b) > 0 {
		switch {
		case len(b) == 0 || len(a) > 0 && a[0].Key < b[0].Key:
			out, a = append(out, a[0]), a[1:]
		case len(a) == 0 || b[0].Key < a[0].Key:
			out, b = append(out, b[0]), b[1:]
		default:
			out = append(out, Keyed{Key: a[0].Key, Decayed: a[0].join(b[0].Decayed)})
			a, b = a[1:], b[1:]
		}
	}
	*dst = out
	dst.trim()
}

// Empty reports whether f holds nothing.
func (f *Features) Empty() bool {
	return f == nil || (len(f.Purchases) == 0 && f.FoldedPurchaseDays == 0 && len(f.ActiveDays) == 0 &&
		f.FoldedActiveDays == 0 && len(f.Events) == 0 && len(f.Categories) == 0 && len(f.Products) == 0)
}

// Equal reports whether f and o are equal: exactly, but for the decayed
// scores, which may differ by a relative rel (the rounding of float64 sums
// taken in another order). A nil Features equals an empty one.
func Equal(f, o *Features, rel float64) bool {
	if f == nil {
		f = &Features{}
	}
	if o == nil {
		o = &Features{}
	}
	if !slices.Equal(f.Purchases, o.Purchases) || !slices.Equal(f.ActiveDays, o.ActiveDays) ||
		f.FoldedPurchaseDays != o.FoldedPurchaseDays || f.FoldedOrders != o.FoldedOrders ||
		f.FoldedMicros != o.FoldedMicros || f.FoldedActiveDays != o.FoldedActiveDays {
		return false
	}
	return scoresNear(f.Events, o.Events, rel) && scoresNear(f.Categories, o.Categories, rel) &&
		scoresNear(f.Products, o.Products, rel)
}

func scoresNear(a, b Scores, rel float64) bool {
	return slices.EqualFunc(a, b, func(x, y Keyed) bool {
		return x.Key == y.Key && x.AsOf == y.AsOf && near(x.Short, y.Short, rel) && near(x.Long, y.Long, rel)
	})
}

func near(a, b, rel float64) bool {
	return a == b || math.Abs(a-b) <= rel*max(math.Abs(a), math.Abs(b))
}

// EachInteraction calls fn with the category and product (either may be
// "") of each interaction of a track event, as AddInteractions reads them
// (properties.category and properties.product_id, then those of the first
// MaxKeys elements of properties.products; values of 1..MaxKeyLen bytes),
// in that order: the next best product's history (docs/predictions.md).
func EachInteraction(rec *event.Record, fn func(category, product string)) {
	if rec.Kind != event.Track || rec.Event == "" || len(rec.Properties) == 0 {
		return
	}
	one := func(props map[string]any) {
		c, ok := keyOf(props["category"])
		if !ok || len(c) > MaxKeyLen {
			c = ""
		}
		p, ok := keyOf(props["product_id"])
		if !ok || len(p) > MaxKeyLen {
			p = ""
		}
		if c != "" || p != "" {
			fn(c, p)
		}
	}
	one(rec.Properties)
	if items, ok := rec.Properties["products"].([]any); ok {
		for i, it := range items {
			if i == MaxKeys {
				break
			}
			if m, ok := it.(map[string]any); ok {
				one(m)
			}
		}
	}
}
