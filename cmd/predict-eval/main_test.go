package main

import (
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/aurumcdp/aurum/rules"
	"github.com/aurumcdp/aurum/rules/rulestest"
)

// dataDir returns ../shared/data next to the clone, or skips.
func dataDir(t *testing.T) string {
	t.Helper()
	dir := filepath.Join("..", "..", "..", "shared", "data")
	for _, f := range []string{"online_shoppers_intention/online_shoppers_intention.csv", "otto_sample/train_sample.jsonl"} {
		if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
			t.Skipf("reference data not found (%v): ../shared/data is not next to the clone", err)
		}
	}
	return dir
}

// TestPredictEval runs what `go run ./cmd/predict-eval` prints (15 s, over
// 2 minutes under -race: only with AURUM_LONG=1) and holds the figures to the issue's
// goals where the data can show them (docs/predictions.md, "Reference
// results"), and the propensity AUC on three more split seeds.
func TestPredictEval(t *testing.T) {
	if os.Getenv("AURUM_LONG") == "" {
		t.Skip("the full evaluation runs with AURUM_LONG=1 (TestPropensityShoppers and TestRecommendReference run in CI)")
	}
	dir := dataDir(t)
	r, err := evaluate(dir)
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	r.print(&b)
	t.Log("\n" + b.String())
	checkPropensity(t, r.Propensity)
	checkRecommend(t, r)
	if wp := r.WorkloadPropensity; wp.Logistic < 0.6 || wp.Boosted < 0.6 {
		t.Errorf("workload propensity AUC %.3f (logistic), %.3f (trees): want > 0.6", wp.Logistic, wp.Boosted)
	}
	checkSegmentRules(t, r.Segments)
	s, err := readShoppersFile(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, seed := range []uint64{1, 2, 3} {
		p, err := evalPropensity(s, seed, boostedOptions)
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("seed %d: logistic AUC %.4f, boosted AUC %.4f", seed, p.Logistic, p.Boosted)
		if p.Boosted < 0.92 {
			t.Errorf("seed %d: boosted trees AUC %.4f, want >= 0.92", seed, p.Boosted)
		}
	}
}

// TestPropensityShoppers is the CI-sized propensity check: the fixed split,
// logistic regression and the smaller tree ensemble.
func TestPropensityShoppers(t *testing.T) {
	s, err := readShoppersFile(dataDir(t))
	if err != nil {
		t.Fatal(err)
	}
	p, err := evalPropensity(s, splitSeed, quickBoosted)
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	p.print(&b)
	t.Log("\n" + b.String())
	checkPropensity(t, p)
}

// TestRecommendReference is the CI-sized recommendation check: otto_sample
// and the planted preferences (the workload runs in TestPredictEval).
func TestRecommendReference(t *testing.T) {
	dir := dataDir(t)
	var r report
	var err error
	if r.Otto, err = evalOtto(dir); err != nil {
		t.Fatal(err)
	}
	if r.Planted, err = evalPlanted(); err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	printRecommend(&b, []*recommendResult{r.Otto, r.Planted})
	t.Log("\n" + b.String())
	checkRecommend(t, &r)
}

// checkSegmentRules evaluates each cluster's rule with the rules package on
// every person's events (rulestest.Facts, the reference semantics) and
// requires the precision and recall Discover reported.
func checkSegmentRules(t *testing.T, s *segmentResult) {
	t.Helper()
	d, err := runWorkload(workloadConfig)
	if err != nil {
		t.Fatal(err)
	}
	_, who := d.segmentRows(d.End)
	if s.K < 2 || len(s.Clusters) != s.K {
		t.Fatalf("k = %d with %d clusters", s.K, len(s.Clusters))
	}
	for c, cl := range s.Clusters {
		rule, err := rules.Compile(cl.Rule)
		if err != nil {
			t.Fatalf("cluster %d: rule %q: %v", c, cl.Rule, err)
		}
		var tp, sel int
		for i, p := range who {
			f := &rulestest.Facts{At: d.End}
			for _, e := range d.People[p] {
				f.Events = append(f.Events, rulestest.Event{Name: e.Name, Time: e.Time, Props: map[string]any{"revenue": e.Revenue}})
			}
			ok, err := rule.Eval(f)
			if err != nil {
				t.Fatal(err)
			}
			if ok {
				sel++
				if s.Assign[i] == c {
					tp++
				}
			}
		}
		p, rc := float64(tp)/float64(max(sel, 1)), float64(tp)/float64(cl.Size)
		if math.Abs(p-cl.Precision) > 1e-9 || math.Abs(rc-cl.Recall) > 1e-9 {
			t.Errorf("cluster %d: rule %q on the events: precision %.4f recall %.4f; Discover reported %.4f %.4f", c, cl.Rule, p, rc, cl.Precision, cl.Recall)
		}
		if cl.Precision < 0.7 || cl.Recall < 0.7 {
			t.Errorf("cluster %d: rule %q: precision %.3f recall %.3f, want >= 0.7", c, cl.Rule, cl.Precision, cl.Recall)
		}
	}
}

func checkPropensity(t *testing.T, p *propensityResult) {
	t.Helper()
	if p.Train != 8631 || p.Test != 3699 || p.TestPositives != 572 {
		t.Errorf("split %d/%d with %d test positives, want 8631/3699 with 572", p.Train, p.Test, p.TestPositives)
	}
	if p.Boosted < 0.92 {
		t.Errorf("boosted trees AUC %.4f, want >= 0.92 (issue #12)", p.Boosted)
	}
	if p.Logistic < 0.90 {
		t.Errorf("logistic AUC %.4f, want >= 0.90", p.Logistic)
	}
}

func checkRecommend(t *testing.T, r *report) {
	t.Helper()
	if pl := r.Planted; pl.HitRate < 2*pl.PopHitRate || pl.NewHitRate < 2*pl.NewPopHitRate {
		t.Errorf("planted preferences: hit rate %.3f (new %.3f) vs popularity %.3f (%.3f), want >= 2x", pl.HitRate, pl.NewHitRate, pl.PopHitRate, pl.NewPopHitRate)
	}
	// At the workload's preference 0.7 a recommender knowing each
	// person's taste would reach about 1.76x popularity on next views
	// (docs): the model must come near it; at 0.9 it must reach 2x.
	if wl := r.Workload; wl != nil && wl.HitRate < 1.5*wl.PopHitRate {
		t.Errorf("workload: hit rate %.3f vs popularity %.3f: want >= 1.5x", wl.HitRate, wl.PopHitRate)
	}
	if wl := r.StrongWorkload; wl != nil && wl.HitRate < 2*wl.PopHitRate {
		t.Errorf("workload, preference %.1f: hit rate %.3f vs popularity %.3f: want >= 2x", strongPreference, wl.HitRate, wl.PopHitRate)
	}
	// otto_sample: 18 of its 20 sessions have held-out cases.
	if o := r.Otto; o.Users != 18 || o.Cases < 300 || o.HitRate < 2*o.PopHitRate {
		t.Errorf("otto_sample: %d users, %d cases, hit rate %.3f vs popularity %.3f: want >= 2x", o.Users, o.Cases, o.HitRate, o.PopHitRate)
	}
}

func TestReadShoppersErrors(t *testing.T) {
	head := "Administrative,Administrative_Duration,Informational,Informational_Duration,ProductRelated,ProductRelated_Duration,BounceRates,ExitRates,PageValues,SpecialDay,Month,OperatingSystems,Browser,Region,TrafficType,VisitorType,Weekend,Revenue\n"
	for _, tc := range []struct{ name, csv, want string }{
		{"no column", "Administrative\n1\n", `column "Administrative_Duration" missing`},
		{"bad number", head + "x,0,0,0,1,0,0.2,0.2,0,0,Feb,1,1,1,1,Returning_Visitor,FALSE,0\n", "line 2, Administrative"},
		{"bad month", head + "0,0,0,0,1,0,0.2,0.2,0,0,Foo,1,1,1,1,Returning_Visitor,FALSE,0\n", "Month"},
		{"bad label", head + "0,0,0,0,1,0,0.2,0.2,0,0,Feb,1,1,1,1,Returning_Visitor,FALSE,2\n", "Revenue"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := readShoppers(strings.NewReader(tc.csv))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want %q", err, tc.want)
			}
		})
	}
}

func TestReadOttoErrors(t *testing.T) {
	for _, tc := range []struct{ name, in, want string }{
		{"json", "{\n", "line 1"},
		{"type", `{"session": 1, "events": [{"aid": 1, "ts": 1, "type": "likes"}]}`, `type "likes"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := readOtto(strings.NewReader(tc.in))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want %q", err, tc.want)
			}
		})
	}
}
