package main

import (
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"

	"github.com/aurumcdp/aurum/projections/match"
)

// Config is the probabilistic config of the evaluation: the fields of issue
// #13's example and its four blocking rules, and two more (date of birth
// with state, street with suburb) that catch the duplicates whose names,
// postcode and social-security id all carry typos (docs/identity.md).
func Config(tf bool) match.Config {
	return match.Config{
		Fields: map[string]match.Comparison{
			"given_name":    match.Name,
			"surname":       match.Name,
			"date_of_birth": match.Date,
			"street_number": match.Exact,
			"address_1":     match.Text,
			"suburb":        match.Text,
			"postcode":      match.Exact,
			"state":         match.Exact,
			"soc_sec_id":    match.Exact,
		},
		Blocking: [][]string{
			{"surname"}, {"given_name", "date_of_birth"}, {"postcode", "street_number"}, {"soc_sec_id"},
			{"date_of_birth", "state"}, {"address_1", "suburb"},
		},
		TermFrequency: tf,
	}
}

// Thresholds are the match probabilities evaluated.
var Thresholds = []float64{0.80, 0.90, 0.99}

type options struct {
	Sets []string
	// TermFrequency adds rows scored with the term-frequency adjustment.
	TermFrequency bool
	// ShowModel prints the trained models after the table.
	ShowModel bool
	// Blocking replaces the config's blocking rules when set.
	Blocking [][]string
	Train    match.TrainOptions
}

// result is one row of the table.
type result struct {
	Set       string `json:"set"`
	Records   int    `json:"records"`
	TruePairs int    `json:"true_pairs"`
	// TermFrequency: scored with the term-frequency adjustment.
	TermFrequency bool    `json:"term_frequency"`
	Threshold     float64 `json:"threshold"`
	Predicted     int     `json:"predicted_pairs"`
	TP            int     `json:"true_positives"`
	Precision     float64 `json:"precision"`
	Recall        float64 `json:"recall"`
	F1            float64 `json:"f1"`
	// PairF1 is the F1 of the scored pairs themselves, before clustering
	// (as Splink's published tables count): a true pair is found when it
	// is a candidate scored at or above the threshold.
	PairPrecision float64 `json:"pair_precision"`
	PairRecall    float64 `json:"pair_recall"`
	PairF1        float64 `json:"pair_f1"`
	// Candidates is the number of candidate pairs scored; Model the model's
	// version and Prior its prior.
	Candidates int     `json:"candidate_pairs"`
	Model      string  `json:"model"`
	Prior      float64 `json:"prior"`
}

// files of each data set, under DIR/febrl.
var files = map[string][]string{
	"febrl1": {"dataset1.csv"},
	"febrl2": {"dataset2.csv"},
	"febrl3": {"dataset3.csv"},
	"febrl4": {"dataset4a.csv", "dataset4b.csv"},
}

// dataset is one data set: its records and the entity of each.
type dataset struct {
	recs   []match.Record
	entity []string
}

func load(dir, set string) (*dataset, error) {
	names, ok := files[set]
	if !ok {
		return nil, fmt.Errorf("unknown data set %q (want febrl1, febrl2, febrl3 or febrl4)", set)
	}
	var d dataset
	for _, n := range names {
		f, err := os.Open(filepath.Join(dir, "febrl", n))
		if err != nil {
			return nil, err
		}
		err = d.read(f)
		f.Close()
		if err != nil {
			return nil, fmt.Errorf("%s: %w", n, err)
		}
	}
	return &d, nil
}

// read appends the records of one FEBRL CSV file (comma and space
// separated, a header naming the columns, rec_id first).
func (d *dataset) read(r io.Reader) error {
	cr := csv.NewReader(r)
	cr.TrimLeadingSpace = true
	cr.ReuseRecord = true
	head, err := cr.Read()
	if err != nil {
		return fmt.Errorf("header: %w", err)
	}
	cols := append([]string(nil), head...)
	if len(cols) == 0 || cols[0] != "rec_id" {
		return errors.New("header: the first column is not rec_id")
	}
	for line := 2; ; line++ {
		row, err := cr.Read()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		ent, err := entity(row[0])
		if err != nil {
			return fmt.Errorf("line %d: %w", line, err)
		}
		rec := match.Record{}
		for i, v := range row[1:] {
			if v = strings.TrimSpace(v); v != "" {
				rec[cols[i+1]] = v
			}
		}
		d.recs = append(d.recs, rec)
		d.entity = append(d.entity, ent)
	}
}

// entity returns N of "rec-N-org" or "rec-N-dup-K".
func entity(id string) (string, error) {
	parts := strings.Split(id, "-")
	if len(parts) < 3 || parts[0] != "rec" || parts[1] == "" ||
		!(len(parts) == 3 && parts[2] == "org" || len(parts) == 4 && parts[2] == "dup" && parts[3] != "") {
		return "", fmt.Errorf("rec_id %q is neither rec-N-org nor rec-N-dup-K", id)
	}
	return parts[1], nil
}

// truePairs counts the pairs of records of one entity.
func (d *dataset) truePairs() int {
	n := map[string]int{}
	for _, e := range d.entity {
		n[e]++
	}
	t := 0
	for _, c := range n {
		t += c * (c - 1) / 2
	}
	return t
}

// countLines counts the data lines of a true-pairs file (header excluded).
func countPairsFile(dir, set string) (int, error) {
	b, err := os.ReadFile(filepath.Join(dir, "febrl", set+"_true_pairs.csv"))
	if err != nil {
		return 0, err
	}
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	return len(lines) - 1, nil
}

type scored struct {
	i, j int32
	p    float64
}

func evaluate(dir, set string, o options) ([]result, *match.Model, error) {
	d, err := load(dir, set)
	if err != nil {
		return nil, nil, err
	}
	truth := d.truePairs()
	if n, err := countPairsFile(dir, set); err != nil {
		return nil, nil, err
	} else if n != truth {
		return nil, nil, fmt.Errorf("%s: %d true pairs from the rec_ids, %d in %s_true_pairs.csv", set, truth, n, set)
	}
	// One model serves both ways of scoring: the term frequencies are
	// recorded in training and used only when the config asks.
	c := Config(true)
	if o.Blocking != nil {
		c.Blocking = o.Blocking
	}
	m, err := match.Train(c, d.recs, o.Train)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: train: %w", set, err)
	}
	var out []result
	for _, tf := range []bool{false, true} {
		if tf && !o.TermFrequency {
			break
		}
		c.TermFrequency = tf
		var pairs []scored
		match.Candidates(c, d.recs, 0, func(i, j int) {
			pairs = append(pairs, scored{int32(i), int32(j), m.Score(c, d.recs[i], d.recs[j]).Probability})
		})
		for _, t := range Thresholds {
			pred, tp := d.clusterPairs(pairs, t)
			r := result{Set: set, Records: len(d.recs), TruePairs: truth, TermFrequency: tf, Threshold: t,
				Predicted: pred, TP: tp, Candidates: len(pairs), Model: m.Version, Prior: m.Prior}
			r.Precision, r.Recall, r.F1 = prf(tp, pred, truth)
			ppred, ptp := d.directPairs(pairs, t)
			r.PairPrecision, r.PairRecall, r.PairF1 = prf(ptp, ppred, truth)
			out = append(out, r)
		}
	}
	return out, m, nil
}

// clusterPairs clusters the records by the pairs at or above threshold t
// and returns the pairs of records in one cluster and how many of them are
// true pairs.
func (d *dataset) clusterPairs(pairs []scored, t float64) (pred, tp int) {
	parent := make([]int32, len(d.recs))
	for i := range parent {
		parent[i] = int32(i)
	}
	var find func(int32) int32
	find = func(x int32) int32 {
		for parent[x] != x {
			parent[x] = parent[parent[x]]
			x = parent[x]
		}
		return x
	}
	for _, p := range pairs {
		if p.p >= t {
			a, b := find(p.i), find(p.j)
			if a != b {
				parent[max(a, b)] = min(a, b)
			}
		}
	}
	size := map[int32]int{}
	same := map[[2]string]int{}
	for i := range d.recs {
		r := find(int32(i))
		size[r]++
		same[[2]string{fmt.Sprint(r), d.entity[i]}]++
	}
	for _, s := range size {
		pred += s * (s - 1) / 2
	}
	for _, s := range same {
		tp += s * (s - 1) / 2
	}
	return pred, tp
}

// directPairs returns the scored pairs at or above t and how many of them
// are true pairs.
func (d *dataset) directPairs(pairs []scored, t float64) (pred, tp int) {
	for _, p := range pairs {
		if p.p >= t {
			pred++
			if d.entity[p.i] == d.entity[p.j] {
				tp++
			}
		}
	}
	return pred, tp
}

func prf(tp, pred, truth int) (p, r, f float64) {
	if pred > 0 {
		p = float64(tp) / float64(pred)
	}
	if truth > 0 {
		r = float64(tp) / float64(truth)
	}
	if p+r > 0 {
		f = 2 * p * r / (p + r)
	}
	return p, r, f
}

func printTable(w io.Writer, rs []result) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "set\trecords\ttrue pairs\tcandidates\tterm freq\tthreshold\tpredicted\tTP\tprecision\trecall\tF1\tpair F1\t")
	for _, r := range rs {
		tf := "off"
		if r.TermFrequency {
			tf = "on"
		}
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%s\t%.2f\t%d\t%d\t%.4f\t%.4f\t%.4f\t%.4f\t\n",
			r.Set, r.Records, r.TruePairs, r.Candidates, tf, r.Threshold, r.Predicted, r.TP, r.Precision, r.Recall, r.F1, r.PairF1)
	}
	tw.Flush()
}

// printModel prints a model's levels: m, u and the weight log2(m/u).
func printModel(w io.Writer, set string, m *match.Model) {
	fmt.Fprintf(w, "\n%s: model %s, prior %.3g, %d EM iterations (converged %v), %.0f candidate pairs, %d random pairs\n",
		set, m.Version, m.Prior, m.Iterations, m.Converged, m.BlockedPairs, m.RandomPairs)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "field\tlevel\tm\tu\tweight\t")
	for _, f := range m.Fields {
		for _, l := range f.Levels {
			fmt.Fprintf(tw, "%s\t%s\t%.4f\t%.3g\t%.2f\t\n", f.Field, l.Name, l.M, l.U, math.Log2(l.M/l.U))
		}
	}
	tw.Flush()
}
