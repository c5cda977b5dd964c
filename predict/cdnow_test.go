package predict

import (
	"bufio"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// cdnowDir returns the CDNOW data directory, ../shared/data/cdnow from the
// repository root (the clone sits next to shared/), or skips the test.
func cdnowDir(t testing.TB) string {
	t.Helper()
	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for dir := wd; ; dir = filepath.Dir(dir) {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			d := filepath.Join(filepath.Dir(dir), "shared", "data", "cdnow")
			if _, err := os.Stat(filepath.Join(d, "CDNOW_sample.txt")); err != nil {
				t.Skipf("CDNOW data not found next to the repository (%s): %v", d, err)
			}
			return d
		}
		if filepath.Dir(dir) == dir {
			t.Skipf("no go.mod above %s: cannot find ../shared", wd)
		}
	}
}

func day(s string) int {
	tm, err := time.Parse("20060102", s)
	if err != nil {
		panic(err)
	}
	return DayOf(tm)
}

// cdnowPurchases reads CDNOW_sample.txt: master id, sample id, date, CDs, dollars.
func cdnowPurchases(t testing.TB) []Purchase {
	f, err := os.Open(filepath.Join(cdnowDir(t), "CDNOW_sample.txt"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var ps []Purchase
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fs := strings.Fields(sc.Text())
		if len(fs) == 0 {
			continue
		}
		if len(fs) != 5 {
			t.Fatalf("line %q: %d fields", sc.Text(), len(fs))
		}
		amount, err := strconv.ParseFloat(fs[4], 64)
		if err != nil {
			t.Fatal(err)
		}
		ps = append(ps, Purchase{Customer: fs[1], Day: day(fs[2]), Amount: amount})
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return ps
}

var cdnowOptions = SummaryOptions{CalibrationEnd: day("19970930"), HoldoutEnd: day("19980630")}

func cdnowCustomers(t testing.TB) []Customer {
	cs, err := Summarize(cdnowPurchases(t), cdnowOptions)
	if err != nil {
		t.Fatal(err)
	}
	return cs
}

func cdnowGroups(t testing.TB, cs []Customer) ([]Group, []Spend) {
	var g Grouper
	var sg SpendGrouper
	for _, c := range cs {
		if err := g.Add(c.RFM); err != nil {
			t.Fatal(err)
		}
		if c.X > 0 {
			if err := sg.Add(c.X, c.MeanSpend); err != nil {
				t.Fatal(err)
			}
		}
	}
	return g.Groups(), sg.Groups()
}

func within(t *testing.T, name string, got, want, rel float64) {
	t.Helper()
	if math.Abs(got-want) > rel*math.Abs(want) {
		t.Errorf("%s = %.5g, want %.5g within %.2g%%", name, got, want, rel*100)
	}
}

func TestCDNOWBGNBD(t *testing.T) {
	cs := cdnowCustomers(t)
	groups, _ := cdnowGroups(t, cs)
	m, fit, err := FitBGNBD(groups, FitOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("bgnbd %+v %+v (%d groups)", m, fit, len(groups))
	within(t, "r", m.R, 0.243, 0.01)
	within(t, "alpha", m.Alpha, 4.414, 0.01)
	within(t, "a", m.A, 0.793, 0.01)
	within(t, "b", m.B, 2.426, 0.01)
	if math.Abs(fit.LogLikelihood - -9582.4) > 0.5 {
		t.Errorf("LL = %.3f, want -9582.4 ± 0.5", fit.LogLikelihood)
	}
}

func TestCDNOWParetoNBD(t *testing.T) {
	cs := cdnowCustomers(t)
	groups, _ := cdnowGroups(t, cs)
	m, fit, err := FitParetoNBD(groups, FitOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("pareto/nbd %+v %+v", m, fit)
	within(t, "r", m.R, 0.553, 0.01)
	within(t, "alpha", m.Alpha, 10.578, 0.01)
	within(t, "s", m.S, 0.606, 0.01)
	within(t, "beta", m.Beta, 11.669, 0.01)
	if math.Abs(fit.LogLikelihood - -9595.0) > 0.5 {
		t.Errorf("LL = %.3f, want -9595.0 ± 0.5", fit.LogLikelihood)
	}
}

func TestCDNOWGammaGamma(t *testing.T) {
	cs := cdnowCustomers(t)
	_, spends := cdnowGroups(t, cs)
	m, fit, err := FitGammaGamma(spends, FitOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("gamma-gamma %+v %+v", m, fit)
	if fit.Customers != 946 {
		t.Errorf("customers = %d, want 946 with x > 0", fit.Customers)
	}
	within(t, "p", m.P, 6.25, 0.01)
	within(t, "q", m.Q, 3.74, 0.01)
	within(t, "gamma", m.Gamma, 15.44, 0.01)
	if math.Abs(fit.LogLikelihood - -4055.92) > 0.05 {
		t.Errorf("LL = %.3f, want -4055.92 (our scipy recomputation)", fit.LogLikelihood)
	}
}

// TestCDNOWSummaries checks Summarize against the published summaries
// (derived file cdnow_cbs_calibration_holdout.csv, which matches the
// lifetimes files): 2,457 calibration repeats, 1,411 customers with x = 0,
// 1,882 holdout purchases of which 334 by them.
func TestCDNOWSummaries(t *testing.T) {
	cs := cdnowCustomers(t)
	if len(cs) != 2357 {
		t.Fatalf("customers = %d, want 2357", len(cs))
	}
	var repeats, zero, holdout, holdoutZero int
	for _, c := range cs {
		repeats += c.X
		holdout += c.Holdout
		if c.X == 0 {
			zero++
			holdoutZero += c.Holdout
		}
	}
	if repeats != 2457 || zero != 1411 || holdout != 1882 || holdoutZero != 334 {
		t.Errorf("repeats %d, x=0 %d, holdout %d (x=0: %d); want 2457, 1411, 1882 (334)", repeats, zero, holdout, holdoutZero)
	}
	f, err := os.Open(filepath.Join(cdnowDir(t), "cdnow_cbs_calibration_holdout.csv"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	byID := map[string]Customer{}
	for _, c := range cs {
		id, _ := strconv.Atoi(c.ID)
		byID[strconv.Itoa(id)] = c
	}
	sc := bufio.NewScanner(f)
	sc.Scan() // header
	rows := 0
	for sc.Scan() {
		fs := strings.Split(sc.Text(), ",")
		var v [5]float64
		for i := range v {
			if v[i], err = strconv.ParseFloat(fs[i+1], 64); err != nil {
				t.Fatal(err)
			}
		}
		c, ok := byID[fs[0]]
		if !ok {
			t.Fatalf("customer %s missing", fs[0])
		}
		if c.X != int(v[0]) || math.Abs(c.TX-v[1]) > 1e-4 || math.Abs(c.T-v[2]) > 1e-4 || c.Holdout != int(v[3]) || math.Abs(c.MeanSpend-v[4]) > 1e-4 {
			t.Errorf("customer %s: got %+v, want x %v t_x %v T %v x* %v m %v", fs[0], c, v[0], v[1], v[2], v[3], v[4])
		}
		rows++
	}
	if rows != 2357 {
		t.Errorf("rows = %d", rows)
	}
}

// TestCDNOWHoldout back-tests the fitted BG/NBD over the 39-week holdout
// (to 1998-06-30): the published correlation 0.626 and the BTYDplus
// mean-by-frequency table, MAPE and relative error of the total.
func TestCDNOWHoldout(t *testing.T) {
	cs := cdnowCustomers(t)
	groups, _ := cdnowGroups(t, cs)
	m, _, err := FitBGNBD(groups, FitOptions{})
	if err != nil {
		t.Fatal(err)
	}
	ev, err := Evaluate(m, cs, 39, 5)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%+v", ev)
	if math.Abs(ev.Correlation-0.626) > 0.01 {
		t.Errorf("correlation = %.4f, want 0.626 ± 0.01", ev.Correlation)
	}
	if ev.Actual != 1882 {
		t.Errorf("actual = %d, want 1882", ev.Actual)
	}
	if math.Abs(ev.MAPE-0.984) > 0.0005 || math.Abs(ev.TotalError - -0.121) > 0.0005 {
		t.Errorf("MAPE %.4f, total error %.4f; want 0.984, -0.121", ev.MAPE, ev.TotalError)
	}
	// Published (BTYDplus demo, 2 decimals): expected (actual) by x = 0..5.
	want := [][2]float64{{0.23, 0.24}, {0.52, 0.70}, {1.04, 1.39}, {1.52, 1.56}, {2.16, 2.53}, {2.65, 2.95}}
	for x, w := range want {
		r := ev.ByFrequency[x]
		if math.Abs(r.Expected-w[0]) > 0.005 || math.Abs(r.Actual-w[1]) > 0.005 {
			t.Errorf("x = %d: expected %.3f actual %.3f, want %.2f (%.2f)", x, r.Expected, r.Actual, w[0], w[1])
		}
	}
}

// TestCDNOWParetoNBDHoldout: the published Pareto/NBD holdout correlation
// (0.630) and BTYDplus's MAPE (0.945) for the Pareto/NBD fit.
func TestCDNOWParetoNBDHoldout(t *testing.T) {
	cs := cdnowCustomers(t)
	groups, _ := cdnowGroups(t, cs)
	m, _, err := FitParetoNBD(groups, FitOptions{})
	if err != nil {
		t.Fatal(err)
	}
	ev, err := Evaluate(m, cs, 39, 5)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%+v", ev)
	if math.Abs(ev.Correlation-0.630) > 0.01 {
		t.Errorf("correlation = %.4f, want 0.630 ± 0.01", ev.Correlation)
	}
	if math.Abs(ev.MAPE-0.945) > 0.0005 {
		t.Errorf("MAPE = %.4f, want 0.945", ev.MAPE)
	}
}

// TestCDNOWGammaGammaSpend: E[M | x, zbar] of customers 1–10 from Hardie's
// spreadsheet (note 025, as the lifetimes tests assert it, ± 0.1).
func TestCDNOWGammaGammaSpend(t *testing.T) {
	cs := cdnowCustomers(t)
	_, spends := cdnowGroups(t, cs)
	m, _, err := FitGammaGamma(spends, FitOptions{})
	if err != nil {
		t.Fatal(err)
	}
	want := []float64{24.65, 18.91, 35.17, 35.17, 35.17, 71.46, 18.91, 35.17, 27.28, 35.17}
	for i, w := range want {
		c := cs[i] // IDs 0001 .. 0010 sort first
		if got := m.ConditionalSpend(c.X, c.MeanSpend); math.Abs(got-w) > 0.1 {
			t.Errorf("customer %s (x %d, mean %.2f): E[M] = %.3f, want %.2f", c.ID, c.X, c.MeanSpend, got, w)
		}
	}
}
