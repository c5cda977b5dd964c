package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/aurumcdp/aurum/projections/match"
)

// dataDir returns ../shared/data next to the clone, or skips.
func dataDir(t *testing.T) string {
	t.Helper()
	dir := filepath.Join("..", "..", "..", "shared", "data")
	if _, err := os.Stat(filepath.Join(dir, "febrl", "dataset1.csv")); err != nil {
		t.Skipf("reference data not found (%v): ../shared/data is not next to the clone", err)
	}
	return dir
}

// TestFebrl1 runs the evaluation on febrl1 (1,000 records, 500 true pairs)
// as `febrl-eval -sets febrl1 -tf -json` does and holds every threshold to
// F1 ≥ 0.98. The full table (febrl1-4) is `make febrl`.
func TestFebrl1(t *testing.T) {
	dir := dataDir(t)
	var b strings.Builder
	opts := options{Sets: []string{"febrl1"}, TermFrequency: true}
	opts.Train.RandomPairs = 50_000 // of 499,500; keeps the test a few seconds under -race
	if err := run(&b, dir, opts, true); err != nil {
		t.Fatal(err)
	}
	var rs []result
	if err := json.Unmarshal([]byte(b.String()), &rs); err != nil {
		t.Fatalf("output is not JSON: %v\n%s", err, b.String())
	}
	if len(rs) != 2*len(Thresholds) {
		t.Fatalf("%d rows, want %d", len(rs), 2*len(Thresholds))
	}
	for _, r := range rs {
		t.Logf("febrl1 tf=%v p≥%.2f: precision %.4f recall %.4f F1 %.4f (%d candidates)", r.TermFrequency, r.Threshold, r.Precision, r.Recall, r.F1, r.Candidates)
		if r.TruePairs != 500 || r.Records != 1000 {
			t.Errorf("read %d records, %d true pairs; want 1000, 500", r.Records, r.TruePairs)
		}
		if r.F1 < 0.98 {
			t.Errorf("tf=%v threshold %.2f: F1 %.4f < 0.98", r.TermFrequency, r.Threshold, r.F1)
		}
	}
}

// TestClusterPairs: clusters count transitive merges, and pairs of one
// cluster that belong to different entities are false positives.
func TestClusterPairs(t *testing.T) {
	d := &dataset{entity: []string{"1", "1", "1", "2", "2", "3"}}
	d.recs = make([]match.Record, len(d.entity))
	pairs := []scored{{0, 1, 0.995}, {1, 2, 0.95}, {2, 3, 0.999}, {3, 4, 0.5}, {4, 5, 0.991}}
	for _, tc := range []struct {
		t        float64
		pred, tp int
	}{
		{0.99, 3, 1},          // {0,1} {2,3} {4,5}: one true pair
		{0.90, 6 + 1, 3},      // {0,1,2,3} {4,5}: the three pairs of entity 1
		{0.40, 15, 3 + 1 + 0}, // one cluster of six
		{0.9999, 0, 0},
	} {
		pred, tp := d.clusterPairs(pairs, tc.t)
		if pred != tc.pred || tp != tc.tp {
			t.Errorf("threshold %v: predicted %d, TP %d; want %d, %d", tc.t, pred, tp, tc.pred, tc.tp)
		}
	}
	// Without clustering only the scored pairs count: at 0.90, (0,1) is
	// true, (1,2) true, (2,3) false, (4,5) false.
	if pred, tp := d.directPairs(pairs, 0.90); pred != 4 || tp != 2 {
		t.Errorf("direct pairs at 0.90: %d, TP %d; want 4, 2", pred, tp)
	}
	if d.truePairs() != 4 {
		t.Errorf("true pairs %d, want 4", d.truePairs())
	}
}

func TestEntity(t *testing.T) {
	for _, tc := range []struct {
		id, want string
		ok       bool
	}{
		{"rec-12-org", "12", true},
		{"rec-12-dup-3", "12", true},
		{"rec-12", "", false},
		{"rec--org", "", false},
		{"rec-12-dup-", "", false},
		{"rec-12-dup", "", false},
		{"id-12-org", "", false},
		{"", "", false},
	} {
		got, err := entity(tc.id)
		if (err == nil) != tc.ok || got != tc.want {
			t.Errorf("entity(%q) = %q, %v", tc.id, got, err)
		}
	}
}

func TestRead(t *testing.T) {
	var d dataset
	in := "rec_id, given_name, surname\nrec-1-org, ann, lee\nrec-1-dup-0, , lee\n"
	if err := d.read(strings.NewReader(in)); err != nil {
		t.Fatal(err)
	}
	if len(d.recs) != 2 || d.recs[0]["given_name"] != "ann" || d.recs[1]["surname"] != "lee" {
		t.Errorf("records %v", d.recs)
	}
	if _, ok := d.recs[1]["given_name"]; ok {
		t.Error("an empty field is a missing trait")
	}
	for _, bad := range []string{
		"",
		"id, given_name\nrec-1-org, ann\n",
		"rec_id, given_name\nrec-1-org, ann, extra\n",
		"rec_id, given_name\nrec-x, ann\n",
	} {
		var d dataset
		if err := d.read(strings.NewReader(bad)); err == nil {
			t.Errorf("read(%q): no error", bad)
		}
	}
}

// FuzzRead: any input gives records or an error, never a panic; every
// record has an entity.
func FuzzRead(f *testing.F) {
	f.Add("rec_id, given_name, surname\nrec-1-org, ann, lee\nrec-1-dup-0, , lee\n")
	f.Add("rec_id\nrec-1-org\n")
	f.Add("rec_id, a\n\"rec-1-org\", \"x, y\"\n")
	f.Fuzz(func(t *testing.T, in string) {
		var d dataset
		if err := d.read(strings.NewReader(in)); err != nil {
			return
		}
		if len(d.recs) != len(d.entity) {
			t.Fatalf("%d records, %d entities", len(d.recs), len(d.entity))
		}
	})
}

// TestFebrlGoals holds issue #13's goals on the full data sets at the
// default auto-merge threshold 0.99: febrl4 F1 ≥ 0.995, febrl3 ≥ 0.985
// (about a minute, several under -race: only with AURUM_LONG=1; `make
// febrl` prints the table).
func TestFebrlGoals(t *testing.T) {
	if os.Getenv("AURUM_LONG") == "" {
		t.Skip("the full evaluation runs with AURUM_LONG=1 (TestFebrl1 runs in CI)")
	}
	dir := dataDir(t)
	goal := map[string]float64{"febrl3": 0.985, "febrl4": 0.995}
	for _, set := range []string{"febrl3", "febrl4"} {
		rs, _, err := evaluate(dir, set, options{})
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range rs {
			if r.Threshold == 0.99 {
				t.Logf("%s at 0.99: precision %.4f recall %.4f F1 %.4f", set, r.Precision, r.Recall, r.F1)
				if r.F1 < goal[set] {
					t.Errorf("%s: F1 %.4f < %.3f", set, r.F1, goal[set])
				}
			}
		}
	}
}
