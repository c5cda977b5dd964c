package features

import (
	"cmp"
	"slices"
	"strings"
	"time"
)

// View is the JSON form of a Features as of a time (the `features` of the
// GCR view; schema in docs/predictions.md).
type View struct {
	AsOf            time.Time  `json:"as_of"`
	Purchases       int64      `json:"purchases"`      // customer-days with a purchase, folded ones included
	Orders          int64      `json:"orders"`         // purchase events
	FirstPurchase   *string    `json:"first_purchase"` // YYYY-MM-DD (UTC) of the oldest kept purchase day
	LastPurchase    *string    `json:"last_purchase"`
	SpendSum        float64    `json:"spend_sum"`         // units
	RepeatSpendMean *float64   `json:"repeat_spend_mean"` // mean spend of the purchase days after the first
	ActiveDays      int64      `json:"active_days"`
	LastActivity    *time.Time `json:"last_activity"`
	DaysSinceActive *float64   `json:"days_since_last_activity"`
	// Events, Categories and Products are the decayed scores as of AsOf.
	Events     map[string]Score   `json:"events"`
	Categories []Ranked           `json:"categories"` // by 30-day score, highest first
	Products   []Ranked           `json:"products"`
	ChannelMix map[string]float64 `json:"channel_mix"` // share of the profile's events
	DeviceMix  map[string]float64 `json:"device_mix"`
}

// Score is a decayed score under both half-lives.
type Score struct {
	Short float64 `json:"7d"`
	Long  float64 `json:"30d"`
}

// Ranked is a scored category or product.
type Ranked struct {
	ID string `json:"id"`
	Score
}

// View returns f as of now (Unix ms). lastActivity is the time of the
// profile's latest event (gcr's Stats.LastSeen; hasActivity false when it
// has none), channels and devices its event counts per channel and device.
func (f *Features) View(now, lastActivity int64, hasActivity bool, channels, devices map[string]int64) View {
	if f == nil {
		f = &Features{}
	}
	v := View{
		AsOf:       time.UnixMilli(now).UTC(),
		Purchases:  int64(len(f.Purchases)) + f.FoldedPurchaseDays,
		Orders:     f.FoldedOrders,
		ActiveDays: int64(len(f.ActiveDays)) + f.FoldedActiveDays,
		Events:     make(map[string]Score, len(f.Events)),
		Categories: ranked(f.Categories, now),
		Products:   ranked(f.Products, now),
		ChannelMix: mix(channels),
		DeviceMix:  mix(devices),
	}
	micros := f.FoldedMicros
	var repeat int64
	for i, p := range f.Purchases {
		v.Orders += p.Orders
		micros += p.Micros
		if i > 0 || f.FoldedPurchaseDays > 0 {
			repeat += p.Micros
		}
	}
	v.SpendSum = float64(micros) / 1e6
	if n := len(f.Purchases); n > 0 {
		first, last := dayText(f.Purchases[0].Day), dayText(f.Purchases[n-1].Day)
		v.FirstPurchase, v.LastPurchase = &first, &last
		repeats := n - 1
		if f.FoldedPurchaseDays > 0 {
			repeats = n
		}
		if repeats > 0 {
			m := float64(repeat) / 1e6 / float64(repeats)
			v.RepeatSpendMean = &m
		}
	}
	if hasActivity {
		t := time.UnixMilli(lastActivity).UTC()
		d := float64(max(now-lastActivity, 0)) / DayMs
		v.LastActivity, v.DaysSinceActive = &t, &d
	}
	for _, e := range f.Events {
		s, l := e.At(now)
		v.Events[e.Key] = Score{s, l}
	}
	return v
}

func dayText(day int64) string { return time.UnixMilli(day * DayMs).UTC().Format(time.DateOnly) }

func ranked(sc Scores, now int64) []Ranked {
	out := make([]Ranked, 0, len(sc))
	for _, e := range sc {
		s, l := e.At(now)
		out = append(out, Ranked{ID: e.Key, Score: Score{s, l}})
	}
	slices.SortFunc(out, func(a, b Ranked) int {
		return cmp.Or(cmp.Compare(b.Long, a.Long), strings.Compare(a.ID, b.ID))
	})
	return out
}

func mix(counts map[string]int64) map[string]float64 {
	var total int64
	for _, n := range counts {
		total += n
	}
	out := make(map[string]float64, len(counts))
	for k, n := range counts {
		if total > 0 {
			out[k] = float64(n) / float64(total)
		}
	}
	return out
}
