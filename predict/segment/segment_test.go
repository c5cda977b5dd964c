package segment

import (
	"math"
	"math/rand/v2"
	"reflect"
	"strings"
	"testing"

	"github.com/aurumcdp/aurum/rules"
	"github.com/aurumcdp/aurum/rules/rulestest"
)

const dayMs = int64(86_400_000)

var feats = []Feature{
	{Name: "orders", Expr: `count("Order Completed")`, Label: "orders"},
	{Name: "spend", Expr: `sum("Order Completed", "revenue")`, Label: "spend", Log: true},
	{Name: "recency", Expr: `days_since(last_seen)`, Label: "days since last seen"},
	{Name: "views", Expr: `count("Product Viewed", "30d")`, Label: "product views in 30 days"},
}

// planted returns profiles of three kinds (0 loyal, 1 lapsed, 2 browsers),
// n of each, as event lists at now, with their feature rows.
func planted(n int, now int64, seed uint64) (facts []*rulestest.Facts, rows [][]float64, kind []int) {
	rng := rand.New(rand.NewPCG(seed, 1))
	between := func(lo, hi int) int { return lo + rng.IntN(hi-lo+1) }
	for k := range 3 {
		for range n {
			var evs []rulestest.Event
			var orders, views int
			var spend float64
			var recency int
			switch k {
			case 0: // loyal: frequent, recent, spending
				orders, recency, views = between(6, 12), between(0, 5), between(10, 30)
			case 1: // lapsed: a few old orders, no recent views
				orders, recency, views = between(1, 3), between(60, 120), 0
			case 2: // browsers: views, no orders
				orders, recency, views = 0, between(0, 10), between(15, 40)
			}
			last := now - int64(recency)*dayMs - rng.Int64N(dayMs/2)
			for i := range orders {
				rev := float64(between(20, 150))
				if k == 1 {
					rev = float64(between(20, 80))
				}
				spend += rev
				t := last - int64(i*between(1, 20))*dayMs
				evs = append(evs, rulestest.Event{Name: "Order Completed", Time: t, Props: map[string]any{"revenue": rev}})
			}
			for i := range views {
				evs = append(evs, rulestest.Event{Name: "Product Viewed", Time: last - int64(i)*dayMs/4})
			}
			if k == 1 {
				evs = append(evs, rulestest.Event{Name: "Product Viewed", Time: last - 2*dayMs}) // old view
			}
			if len(evs) == 0 || evs[0].Time != last {
				evs = append(evs, rulestest.Event{Name: "Signed In", Time: last})
			}
			// Views of the 30-day window: those in (now - 30d, now].
			var v30 int
			for _, e := range evs {
				if e.Name == "Product Viewed" && e.Time > now-30*dayMs {
					v30++
				}
			}
			facts = append(facts, &rulestest.Facts{At: now, Events: evs})
			rows = append(rows, []float64{float64(orders), spend, float64((now - last) / dayMs), float64(v30)})
			kind = append(kind, k)
		}
	}
	return facts, rows, kind
}

func TestDiscoverPlanted(t *testing.T) {
	now := int64(1_767_225_600_000) // 2026-01-01
	facts, rows, kind := planted(150, now, 1)
	res, err := Discover(rows, feats, Options{KMax: 6, Seed: 7})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("scores %v", res.Scores)
	for i, c := range res.Clusters {
		t.Logf("cluster %d: %d rows: %s\n  rule %s (precision %.3f, recall %.3f)", i, c.Size, c.Description, c.Rule, c.Precision, c.Recall)
	}
	if res.K != 3 {
		t.Fatalf("k = %d, want the 3 planted kinds", res.K)
	}
	// Each cluster is one planted kind (purity >= 95 %).
	for c := range res.Clusters {
		var count [3]int
		for i, a := range res.Assign {
			if a == c {
				count[kind[i]]++
			}
		}
		top := max(count[0], count[1], count[2])
		if float64(top) < 0.95*float64(res.Clusters[c].Size) {
			t.Errorf("cluster %d mixes the kinds: %v", c, count)
		}
	}
	for c, cl := range res.Clusters {
		if cl.Precision < 0.9 || cl.Recall < 0.9 {
			t.Errorf("cluster %d: rule %q precision %.3f recall %.3f, want >= 0.9", c, cl.Rule, cl.Precision, cl.Recall)
		}
		// The rule means in Aurum what it claims: evaluated by the rules
		// package on the profiles' events, it selects the same rows.
		r, err := rules.Compile(cl.Rule)
		if err != nil {
			t.Fatalf("cluster %d: rule %q: %v", c, cl.Rule, err)
		}
		var tp, sel int
		for i, f := range facts {
			ok, err := r.Eval(f)
			if err != nil {
				t.Fatal(err)
			}
			if ok {
				sel++
				if res.Assign[i] == c {
					tp++
				}
			}
		}
		p, rc := float64(tp)/float64(sel), float64(tp)/float64(cl.Size)
		if math.Abs(p-cl.Precision) > 1e-12 || math.Abs(rc-cl.Recall) > 1e-12 {
			t.Errorf("cluster %d: rule %q evaluated on events: precision %.4f recall %.4f, reported %.4f %.4f", c, cl.Rule, p, rc, cl.Precision, cl.Recall)
		}
	}
	// Descriptions name the planted traits.
	for c, cl := range res.Clusters {
		var count [3]int
		for i, a := range res.Assign {
			if a == c {
				count[kind[i]]++
			}
		}
		want := map[int]string{0: "high orders", 1: "days since last seen", 2: "low orders"}
		k := 0
		for j := range count {
			if count[j] > count[k] {
				k = j
			}
		}
		if !strings.Contains(cl.Description, want[k]) {
			t.Errorf("cluster %d (kind %d): description %q lacks %q", c, k, cl.Description, want[k])
		}
	}
	again, err := Discover(rows, feats, Options{KMax: 6, Seed: 7})
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(res, again) {
		t.Fatal("two runs with the same seed differ")
	}
}

func TestSilhouette(t *testing.T) {
	// Two points at 0 and 1 (cluster 0), one at 5 (cluster 1), on a line.
	z := [][]float64{{0}, {1}, {5}}
	assign := []int{0, 0, 1}
	// Point 0: a = 1, b = 5: 0.8. Point 1: a = 1, b = 4: 0.75.
	// Point 2 is alone in its cluster: 0.
	want := (0.8 + 0.75 + 0) / 3
	if got := silhouette(z, assign, 2, []int{0, 1, 2}); math.Abs(got-want) > 1e-12 {
		t.Fatalf("silhouette = %v, want %v", got, want)
	}
}

func TestDiscoverErrors(t *testing.T) {
	rows := make([][]float64, 40)
	for i := range rows {
		rows[i] = []float64{float64(i), 1, 2, 3}
	}
	for _, tc := range []struct {
		name  string
		rows  [][]float64
		feats []Feature
		opt   Options
		want  string
	}{
		{"k range", rows, feats, Options{KMin: 5, KMax: 3}, "k range"},
		{"bad expr", rows, []Feature{{Name: "x", Expr: `cnt("A")`}}, Options{}, `feature "x"`},
		{"not a number", rows, []Feature{{Name: "b", Expr: `count("A") > 1 or count("B") > 1`}}, Options{}, `expr "count(\"A\") > 1 or count(\"B\") > 1" is not a number`},
		{"ragged", append(rows[:39:39], []float64{1}), feats, Options{}, "row 39 has 1 values"},
		{"negative log", append(rows[:39:39], []float64{1, -1, 0, 0}), feats, Options{}, `feature "spend"`},
		{"few rows", rows[:5], feats, Options{}, "5 rows"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Discover(tc.rows, tc.feats, tc.opt)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want %q", err, tc.want)
			}
		})
	}
}

func TestRFMCompiles(t *testing.T) {
	seen := map[string]bool{}
	for _, f := range RFM() {
		if seen[f.Name] {
			t.Errorf("column %q twice", f.Name)
		}
		seen[f.Name] = true
		if _, err := rules.Compile("(" + f.Expr + ") + 0 >= 0"); err != nil {
			t.Errorf("%s: %q: %v", f.Name, f.Expr, err)
		}
	}
}
