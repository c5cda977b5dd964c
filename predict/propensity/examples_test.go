package propensity

import (
	"math"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/aurumcdp/aurum/event"
	"github.com/aurumcdp/aurum/projections/features"
)

var day0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

func at(days float64) time.Time { return day0.Add(time.Duration(days * 24 * float64(time.Hour))) }

func TestExamplesFeaturesAndLabel(t *testing.T) {
	cut := at(30)
	ex, err := NewExamples(ExampleOptions{Cutoff: cut, Horizon: 10 * 24 * time.Hour, Names: []string{"Product Viewed", "Order Completed"}})
	if err != nil {
		t.Fatal(err)
	}
	events := []Event{
		{"a", at(2), "Product Viewed", 0},
		{"a", at(23), "Product Viewed", 0},
		{"a", at(23.5), "Order Completed", 40},
		{"a", at(35), "Order Completed", 10}, // in the horizon: label
		{"b", at(16), "Product Viewed", 0},
		{"b", at(16), "Signed In", 0},       // not a feature name, still activity
		{"b", at(45), "Order Completed", 5}, // after the horizon: ignored
		{"c", at(31), "Product Viewed", 0},  // first seen after the cutoff: no row
	}
	for _, e := range events {
		ex.Add(e)
	}
	d, ids := ex.Dataset()
	if len(ids) != 2 || ids[0] != "a" || ids[1] != "b" {
		t.Fatalf("profiles %v, want [a b]", ids)
	}
	col := map[string]int{}
	for j, n := range d.Names {
		col[n] = j
	}
	want := map[string][2]float64{ // feature: a, b
		"decayed_7d:Product Viewed":   {math.Exp2(-28.0/7) + math.Exp2(-1), math.Exp2(-2)},
		"decayed_30d:Order Completed": {math.Exp2(-6.5 / 30), 0},
		"days_since_first":            {28, 14},
		"days_since_last":             {6.5, 14},
		"active_days":                 {2, 1},
		"target_days":                 {1, 0},
		"days_since_target":           {7, 15}, // a: from the start of day 23
		"target_value":                {40, 0},
	}
	for name, w := range want {
		j, ok := col[name]
		if !ok {
			t.Fatalf("no feature %q in %v", name, d.Names)
		}
		for i := range 2 {
			if math.Abs(d.X[i][j]-w[i]) > 1e-9 {
				t.Errorf("%s of %s = %v, want %v", name, ids[i], d.X[i][j], w[i])
			}
		}
	}
	if !d.Y[0] || d.Y[1] {
		t.Errorf("labels %v, want [true false]", d.Y)
	}
}

// TestExamplesTimeSplit plants a purchase rate per profile, builds training
// rows at one cutoff and holdout rows a horizon later, and checks that a
// model fitted on the first ranks the second well and that reordering the
// history changes nothing but the last bits.
func TestExamplesTimeSplit(t *testing.T) {
	rng := rand.New(rand.NewPCG(9, 9))
	var events []Event
	for p := range 1500 {
		id := string(rune('A'+p%26)) + string(rune('a'+p/26%26)) + string(rune('a'+p/676))
		rate := math.Exp(rng.NormFloat64()*1.2 - 3) // purchases per day
		for d := 0.0; d < 120; d++ {
			if rng.Float64() < 3*rate {
				events = append(events, Event{id, at(d + rng.Float64()), "Product Viewed", 0})
			}
			if rng.Float64() < rate {
				events = append(events, Event{id, at(d + rng.Float64()), "Order Completed", 20})
			}
		}
	}
	build := func(cut time.Time, evs []Event) (*Dataset, []string) {
		ex, err := NewExamples(ExampleOptions{Cutoff: cut, Horizon: 14 * 24 * time.Hour, Names: []string{"Product Viewed", "Order Completed"}})
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range evs {
			ex.Add(e)
		}
		return ex.Dataset()
	}
	train, _ := build(at(90), events)
	test, _ := build(at(104), events)
	m, err := FitLogistic(train, LogisticOptions{})
	if err != nil {
		t.Fatal(err)
	}
	auc := AUC(PredictAll(m, test.X), test.Y)
	t.Logf("time split: %d train rows (%d positive), %d holdout rows (%d positive), AUC %.3f",
		len(train.Y), train.Positives(), len(test.Y), test.Positives(), auc)
	if auc < 0.75 {
		t.Errorf("holdout AUC %.3f, want >= 0.75", auc)
	}
	shuffled := append([]Event(nil), events...)
	rng.Shuffle(len(shuffled), func(i, j int) { shuffled[i], shuffled[j] = shuffled[j], shuffled[i] })
	again, _ := build(at(104), shuffled)
	for i := range test.X {
		if test.Y[i] != again.Y[i] {
			t.Fatalf("row %d: label depends on the event order", i)
		}
		for j := range test.X[i] {
			if math.Abs(test.X[i][j]-again.X[i][j]) > 1e-9*(1+math.Abs(test.X[i][j])) {
				t.Fatalf("row %d, %s: %v vs %v after reordering", i, test.Names[j], test.X[i][j], again.X[i][j])
			}
		}
	}
}

// TestFromFeaturesMatchesExamples feeds the same histories to Examples (at
// a cutoff) and to feature rows (the events up to the cutoff, as the state
// machine adds them): the live row must equal the training row.
//
// Both for the purchase target (dated columns) and for another target
// (Undated: its decayed counts stand for its days, which the feature row
// does not keep).
func TestFromFeaturesMatchesExamples(t *testing.T) {
	for _, c := range []struct {
		target  string
		undated bool
		cols    int
	}{
		{"Order Completed", false, 3*2 + 6},
		{"Signed In", true, 3*2 + 3},
	} {
		t.Run(c.target, func(t *testing.T) {
			testFromFeaturesMatchesExamples(t, ExampleOptions{Target: c.target, Undated: c.undated}, c.cols)
		})
	}
}

func testFromFeaturesMatchesExamples(t *testing.T, opt ExampleOptions, cols int) {
	rng := rand.New(rand.NewPCG(4, 4))
	names := []string{"Product Viewed", "Order Completed", "Signed In"}
	cut := at(60)
	opt.Cutoff, opt.Names = cut, names
	ex, err := NewExamples(opt)
	if err != nil {
		t.Fatal(err)
	}
	type profile struct {
		row         features.Features
		first, last int64
	}
	profiles := map[string]*profile{}
	for p := range 40 {
		id := string(rune('a'+p%26)) + string(rune('a'+p/26))
		pr := &profile{first: math.MaxInt64}
		profiles[id] = pr
		for range 1 + rng.IntN(30) {
			tm := at(rng.Float64() * 80)
			kind, name := event.Track, names[rng.IntN(len(names))]
			if rng.IntN(5) == 0 {
				kind, name = event.Page, ""
			}
			micros := int64(0)
			if name == "Order Completed" {
				micros = rng.Int64N(200_000_000)
			}
			exName := name
			if kind == event.Page {
				exName = "page"
			}
			ex.Add(Event{Profile: id, Time: tm, Name: exName, Value: float64(micros) / 1e6})
			if tm.After(cut) {
				continue
			}
			pr.row.Add(&event.Record{ID: []byte{1}, Kind: kind, Event: name, Time: tm.UnixMilli()}, micros, true)
			pr.first, pr.last = min(pr.first, tm.UnixMilli()), max(pr.last, tm.UnixMilli())
		}
	}
	d, ids := ex.Dataset()
	if len(ids) == 0 {
		t.Fatal("no rows")
	}
	if len(d.Names) != cols {
		t.Fatalf("columns %v: want %d", d.Names, cols)
	}
	positives := 0
	for i, id := range ids {
		pr := profiles[id]
		live, err := FromFeatures(&pr.row, pr.first, pr.last, cut.UnixMilli(), opt)
		if err != nil {
			t.Fatal(err)
		}
		if len(live) != cols {
			t.Fatalf("live row of %d columns, want %d", len(live), cols)
		}
		if d.Y[i] {
			positives++
		}
		for j, v := range d.X[i] {
			if math.Abs(live[j]-v) > 1e-9*(1+math.Abs(v)) {
				t.Errorf("profile %s, %s: live %v, examples %v", id, d.Names[j], live[j], v)
			}
		}
	}
	if positives == 0 || positives == len(ids) {
		t.Fatalf("%d of %d rows positive: the labels of %q are not tested", positives, len(ids), opt.Target)
	}
	if _, err := FromFeatures(&features.Features{}, 0, 0, 1, ExampleOptions{Target: "Signed In", Names: names}); err == nil {
		t.Error("a target other than the purchase event accepted without Undated")
	}
	if _, err := NewExamples(ExampleOptions{Target: "Signed Up", Cutoff: cut, Names: names, Undated: true}); err == nil {
		t.Error("Undated with a target outside the names accepted")
	}
}
