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
