package features

import (
	"bytes"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/aurumcdp/aurum/event"
)

const t0 = 1_700_000_000_000 // 2023-11-14T22:13:20Z

type step struct {
	rec        *event.Record
	micros     int64
	hasRevenue bool
}

func track(name string, t int64, props map[string]any) *event.Record {
	return &event.Record{ID: []byte{1}, Kind: event.Track, Event: name, Time: t, Properties: props}
}

// randSteps returns n events over about a year: purchases with and without
// revenue, views and adds with categories and products (also in
// products[]), pages.
func randSteps(r *rand.Rand, n, keys int) []step {
	names := []string{PurchaseEvent, "Product Viewed", "Product Added", "Signed Up"}
	out := make([]step, n)
	for i := range out {
		tm := t0 + r.Int64N(365*DayMs) - 180*DayMs
		if r.IntN(6) == 0 {
			out[i] = step{rec: &event.Record{ID: []byte{1}, Kind: event.Page, Time: tm}}
			continue
		}
		props := map[string]any{}
		if r.IntN(3) > 0 {
			props["category"] = fmt.Sprint("c", r.IntN(keys))
			props["product_id"] = fmt.Sprint("p", r.IntN(keys))
		}
		if r.IntN(3) == 0 {
			props["products"] = []any{
				map[string]any{"product_id": fmt.Sprint("p", r.IntN(keys)), "category": fmt.Sprint("c", r.IntN(keys))},
				"not an object",
			}
		}
		out[i] = step{rec: track(names[r.IntN(len(names))], tm, props), micros: r.Int64N(5e8) - 1e7, hasRevenue: r.IntN(4) > 0}
	}
	return out
}

// add is what a profile with interactions on would fold: Add, then
// AddInteractions.
func add(f *Features, rec *event.Record, micros int64, hasRevenue bool) {
	f.Add(rec, micros, hasRevenue)
	f.AddInteractions(rec, nil)
}

func build(steps []step, order []int) *Features {
	f := &Features{}
	for _, i := range order {
		s := steps[i]
		f.Add(s.rec, s.micros, s.hasRevenue)
		f.AddInteractions(s.rec, nil)
	}
	return f
}

func seq(n int) []int {
	o := make([]int, n)
	for i := range o {
		o[i] = i
	}
	return o
}

// TestOrderAndMergeIndependence: the events of a profile in any order, or
// spread over profiles that are then merged in any order, give the same
// Features (decayed scores within 1e-12), under the caps.
func TestOrderAndMergeIndependence(t *testing.T) {
	for seed := range uint64(40) {
		r := rand.New(rand.NewPCG(seed, 12))
		steps := randSteps(r, 50+r.IntN(200), 20)
		want := build(steps, seq(len(steps)))
		if got := build(steps, r.Perm(len(steps))); !Equal(got, want, 1e-12) {
			t.Fatalf("seed %d: another order differs:\n%+v\n%+v", seed, got, want)
		}
		// A then B, B then A, and A, B, C built apart and merged.
		perm := r.Perm(len(steps))
		cut1, cut2 := len(perm)/3, 2*len(perm)/3
		a, b, c := build(steps, perm[:cut1]), build(steps, perm[cut1:cut2]), build(steps, perm[cut2:])
		join := func(fs ...*Features) *Features {
			out := &Features{}
			for _, f := range fs {
				out.Join(f)
			}
			return out
		}
		for i, got := range []*Features{join(a, b, c), join(c, b, a), join(b, join(c, a)), join(join(a, b), c)} {
			if !Equal(got, want, 1e-12) {
				t.Fatalf("seed %d: merge %d differs:\n%+v\n%+v", seed, i, got, want)
			}
		}
		// Join does not change its argument.
		before := a.Append(nil)
		join(b, a)
		if !bytes.Equal(before, a.Append(nil)) {
			t.Fatalf("seed %d: Join changed its argument", seed)
		}
	}
	// Equal can fail: a different decayed score, a different day.
	f := build(randSteps(rand.New(rand.NewPCG(1, 1)), 30, 3), seq(30))
	g := build(randSteps(rand.New(rand.NewPCG(1, 1)), 30, 3), seq(30))
	g.Events[0].Long *= 1 + 1e-9
	if Equal(f, g, 1e-12) || !Equal(f, g, 1e-6) {
		t.Error("Equal does not tell a changed score apart")
	}
}

func TestValues(t *testing.T) {
	f := &Features{}
	add(f, track(PurchaseEvent, t0, map[string]any{"category": "shoes", "product_id": "s1"}), 100e6, true)
	add(f, track(PurchaseEvent, t0+3600_000, nil), 50e6, true) // same day: one customer-day
	add(f, track(PurchaseEvent, t0+10*DayMs, nil), 0, false)   // no revenue: counts, spends 0
	add(f, track(PurchaseEvent, t0+20*DayMs, nil), 30e6, true)
	add(f, track("Product Viewed", t0+20*DayMs, map[string]any{"category": "hats"}), 0, false)
	add(f, &event.Record{Kind: event.Identify, Time: t0 + 21*DayMs}, 0, false)

	v := f.View(t0+27*DayMs, t0+21*DayMs, true, map[string]int64{"web": 3, "mobile": 1}, nil)
	if v.Purchases != 3 || v.Orders != 4 || v.SpendSum != 180 {
		t.Errorf("purchases %d orders %d spend %v, want 3, 4, 180", v.Purchases, v.Orders, v.SpendSum)
	}
	if *v.FirstPurchase != "2023-11-14" || *v.LastPurchase != "2023-12-04" {
		t.Errorf("first %s last %s", *v.FirstPurchase, *v.LastPurchase)
	}
	if v.RepeatSpendMean == nil || *v.RepeatSpendMean != 15 { // (0 + 30) / 2: the trial day is left out
		t.Errorf("repeat spend mean %v, want 15", v.RepeatSpendMean)
	}
	if v.ActiveDays != 4 || *v.DaysSinceActive != 6 {
		t.Errorf("active days %d, days since %v", v.ActiveDays, *v.DaysSinceActive)
	}
	// Viewed once at day 20, read at day 27: 2^(-7/7) and 2^(-7/30).
	hv := v.Events["Product Viewed"]
	if math.Abs(hv.Short-0.5) > 1e-12 || math.Abs(hv.Long-math.Exp2(-7.0/30)) > 1e-12 {
		t.Errorf("Product Viewed scores %+v", hv)
	}
	// shoes: one purchase (weight 5) 27 days before; hats: a view 7 days before.
	if len(v.Categories) != 2 || v.Categories[0].ID != "shoes" || math.Abs(v.Categories[0].Long-5*math.Exp2(-27.0/30)) > 1e-12 {
		t.Errorf("categories %+v", v.Categories)
	}
	if v.ChannelMix["web"] != 0.75 || len(v.DeviceMix) != 0 {
		t.Errorf("mix %v %v", v.ChannelMix, v.DeviceMix)
	}
	// Integer product ids are keys too; other types are not.
	n := &Features{}
	add(n, track("Product Viewed", t0, map[string]any{"product_id": int64(42), "category": 3.5}), 0, false)
	add(n, track("Product Viewed", t0, map[string]any{"product_id": 42.0, "category": true}), 0, false)
	add(n, track("Product Viewed", t0, map[string]any{"product_id": int8(42)}), 0, false)
	if d, ok := n.Products.Get("42"); !ok || d.Long != 3 || len(n.Categories) != 0 {
		t.Errorf("numeric keys: products %+v categories %+v", n.Products, n.Categories)
	}
	// Only PurchaseEvent is a purchase.
	g := &Features{}
	add(g, track("Order Refunded", t0, nil), -5e6, true)
	if len(g.Purchases) != 0 {
		t.Errorf("a refund counted as a purchase: %+v", g.Purchases)
	}
}

// TestBounds: keys, purchase days and active days stay within their caps;
// the keys kept are the top scores; the encoding stays bounded.
func TestBounds(t *testing.T) {
	f := &Features{}
	// 3×MaxKeys products on one day, each viewed once, then the last
	// 2×MaxKeys again: the top MaxKeys are kept; at a tie the smaller
	// key stays, so p000..p063 (first, with 1) give way to none of the
	// newcomers (1 each, greater keys) until the repeat views.
	view := func(i int, t int64) {
		add(f, track("Product Viewed", t, map[string]any{"product_id": fmt.Sprintf("p%03d", i)}), 0, false)
	}
	for i := range 3 * MaxKeys {
		view(i, t0)
	}
	if len(f.Products) != MaxKeys {
		t.Fatalf("%d products kept, want %d", len(f.Products), MaxKeys)
	}
	for i := range MaxKeys {
		if _, ok := f.Products.Get(fmt.Sprintf("p%03d", i)); !ok {
			t.Errorf("product p%03d evicted at a tie with a greater key", i)
		}
	}
	// A day later the old scores have decayed below 1: each newcomer enters
	// (it evicts the greatest of the equal old keys) and repeat views
	// strengthen it.
	for i := MaxKeys; i < 2*MaxKeys; i++ {
		view(i, t0+DayMs)
		view(i, t0+DayMs)
	}
	for i := MaxKeys; i < 2*MaxKeys; i++ {
		if d, ok := f.Products.Get(fmt.Sprintf("p%03d", i)); !ok || d.Long != 2 {
			t.Errorf("newcomer p%03d: %+v, %v", i, d, ok)
		}
	}
	add(f, track("x", t0, map[string]any{"category": string(bytes.Repeat([]byte{'a'}, MaxKeyLen+1))}), 0, false)
	if len(f.Categories) != 0 {
		t.Error("an over-long key was kept")
	}
	for d := range int64(MaxPurchaseDays + 100) {
		add(f, track(PurchaseEvent, t0+d*DayMs, nil), 1e6, true)
	}
	if len(f.Purchases) != MaxPurchaseDays || f.FoldedPurchaseDays != 100 || f.FoldedMicros != 100e6 {
		t.Errorf("%d purchase days kept, %d folded (%d micros)", len(f.Purchases), f.FoldedPurchaseDays, f.FoldedMicros)
	}
	if len(f.ActiveDays) != MaxActiveDays || f.FoldedActiveDays != MaxPurchaseDays+100-MaxActiveDays {
		t.Errorf("%d active days kept, %d folded", len(f.ActiveDays), f.FoldedActiveDays)
	}
	v := f.View(t0, 0, false, nil, nil)
	if v.Purchases != MaxPurchaseDays+100 || v.SpendSum != MaxPurchaseDays+100 {
		t.Errorf("view of a folded profile: %d purchases, spend %v", v.Purchases, v.SpendSum)
	}
	if n, bound := len(f.Append(nil)), f.SizeBound(); n > bound || n > 64<<10 {
		t.Errorf("encoding of a full profile: %d bytes (bound %d)", n, bound)
	} else {
		t.Logf("a full row encodes to %d bytes", n)
	}
	// Merging two full profiles stays within the caps.
	g := build(randSteps(rand.New(rand.NewPCG(5, 5)), 2000, 500), seq(2000))
	g.Join(f)
	if len(g.Products) > MaxKeys || len(g.Categories) > MaxKeys || len(g.Purchases) > MaxPurchaseDays || len(g.ActiveDays) > MaxActiveDays {
		t.Errorf("merged profile beyond the caps: %d %d %d %d", len(g.Products), len(g.Categories), len(g.Purchases), len(g.ActiveDays))
	}
}

func TestCodec(t *testing.T) {
	r := rand.New(rand.NewPCG(9, 9))
	for range 100 {
		steps := randSteps(r, r.IntN(300), 1+r.IntN(100))
		f := build(steps, seq(len(steps)))
		b := f.Append(nil)
		if len(b) > f.SizeBound() {
			t.Fatalf("%d bytes over the bound %d", len(b), f.SizeBound())
		}
		g, err := Decode(b)
		if err != nil {
			t.Fatal(err)
		}
		if !Equal(f, g, 0) || !bytes.Equal(g.Append(nil), b) {
			t.Fatal("round trip differs")
		}
		for i := range min(len(b), 600) { // every strict prefix fails
			if _, err := Decode(b[:len(b)-1-i]); err == nil {
				t.Fatalf("prefix of %d/%d bytes decoded", len(b)-1-i, len(b))
			}
		}
		if _, err := Decode(append(bytes.Clone(b), 0)); err == nil {
			t.Fatal("trailing byte decoded")
		}
	}
}

func TestDecodeRefuses(t *testing.T) {
	f := &Features{}
	add(f, track("Product Viewed", t0, map[string]any{"category": "a"}), 0, false)
	ok := f.Append(nil)
	for name, b := range map[string][]byte{
		"version":        append([]byte{4}, ok[1:]...),
		"version 0":      append([]byte{0}, ok[1:]...),
		"negative score": (&Features{Events: Scores{{"e", Decayed{Short: -1, Long: 1}}}}).Append(nil),
		"NaN score":      (&Features{Events: Scores{{"e", Decayed{Short: math.NaN()}}}}).Append(nil),
		"empty key":      (&Features{Events: Scores{{"", Decayed{}}}}).Append(nil),
		"keys unsorted":  (&Features{Events: Scores{{"b", Decayed{}}, {"a", Decayed{}}}}).Append(nil),
		"too many keys":  (&Features{Events: manyKeys(MaxKeys + 1)}).Append(nil),
		"folded < 0":     (&Features{FoldedActiveDays: -1}).Append(nil),
	} {
		if _, err := Decode(b); err == nil {
			t.Errorf("%s: decoded", name)
		}
	}
}

func manyKeys(n int) Scores {
	var s Scores
	for i := range n {
		s = append(s, Keyed{fmt.Sprintf("%03d", i), Decayed{Short: 1, Long: 1}})
	}
	return s
}

// FuzzDecode: decoding never panics, allocates within the caps, and what
// decodes re-encodes to a fixed point.
func FuzzDecode(f *testing.F) {
	steps := randSteps(rand.New(rand.NewPCG(3, 3)), 40, 5)
	f.Add(build(steps, seq(len(steps))).Append(nil))
	f.Add([]byte{v1, 0, 0, 0, 0, 0, 0, 0, 0, 0})
	f.Add([]byte{v1, 1, 2, 1, 2})
	keyed := &Features{}
	for _, s := range steps {
		keyed.AddInteractions(s.rec, hexKey)
	}
	f.Add(keyed.Append(nil))
	f.Add(appendV1(keyed))
	f.Add(appendV2(keyed))
	f.Fuzz(func(t *testing.T, in []byte) {
		g, err := Decode(in)
		if err != nil {
			return
		}
		if len(g.Purchases) > MaxPurchaseDays || len(g.ActiveDays) > MaxActiveDays ||
			len(g.Events) > MaxKeys || len(g.Categories) > MaxKeys || len(g.Products) > MaxKeys {
			t.Fatal("decoded beyond the caps")
		}
		b1 := g.Append(nil)
		g2, err := Decode(b1)
		if err != nil {
			t.Fatalf("re-decode: %v", err)
		}
		if !bytes.Equal(b1, g2.Append(nil)) {
			t.Fatal("encoding is not a fixed point")
		}
	})
}

// BenchmarkRowUpkeep is the feature projection's work for one event on a
// typical row (about 20 products and categories, 4 event names, 20 active
// days): decode the row, Add, encode it, as the GCR's Txn does; keys plain
// or keyed hashes (16 hex digits, as the engine keeps them).
func BenchmarkRowUpkeep(b *testing.B) {
	for _, bc := range []struct {
		name string
		key  KeyFunc
	}{{"plain", nil}, {"keyed", hexKey}} {
		b.Run(bc.name, func(b *testing.B) {
			f := &Features{}
			for i := range 20 {
				name := []string{"Product Viewed", "Product Added", PurchaseEvent, "Order Refunded"}[i%4]
				rec := track(name, t0+int64(i)*3*DayMs, map[string]any{"product_id": fmt.Sprint("sku-", i*31), "category": fmt.Sprint("cat-", i)})
				f.Add(rec, 120e6, true)
				f.AddInteractions(rec, bc.key)
			}
			row := f.Append(nil)
			rec := track("Product Viewed", t0+61*DayMs, map[string]any{"product_id": "sku-77", "category": "cat-7"})
			var buf []byte
			b.ReportAllocs()
			for b.Loop() {
				g, err := Decode(row)
				if err != nil {
					b.Fatal(err)
				}
				g.Add(rec, 0, false)
				g.AddInteractions(rec, bc.key)
				buf = g.Append(buf[:0])
			}
			b.ReportMetric(float64(len(row)), "row-bytes")
			b.ReportMetric(float64(len(appendV2(f))), "v2-row-bytes")
			b.ReportMetric(float64(len(appendV1(f))), "v1-row-bytes")
		})
	}
}

// TestFind: Scores.find answers as sort.Find over the keys does (the index
// of the key, or where it goes), for keys before, between, at and after
// those of slices of 0 to 9 distinct sorted keys.
func TestFind(t *testing.T) {
	keys := []string{"", "a", "ab", "b", "ba", "c", "cat-1", "cat-10", "cat-2", "z"}
	for n := range 10 {
		for start := 0; start+n <= len(keys); start++ {
			var s Scores
			for _, k := range keys[start : start+n] {
				s = append(s, Keyed{Key: k})
			}
			for _, k := range append(slices.Clone(keys), "0", "zz", "cat-") {
				wi, wok := sort.Find(len(s), func(i int) int { return strings.Compare(k, s[i].Key) })
				if i, ok := s.find(k); i != wi || ok != wok {
					t.Fatalf("keys %q: find(%q) = %d, %v; sort.Find: %d, %v", keys[start:start+n], k, i, ok, wi, wok)
				}
			}
		}
	}
}
