package main

import (
	"fmt"
	"io"
	"time"

	"github.com/aurumcdp/aurum/predict/segment"
)

// segmentSeed seeds the workload segmentation.
const segmentSeed = 12

type segmentResult struct {
	*segment.Result
	Rows int
}

func evalSegments(d *workloadData) (*segmentResult, error) {
	rows, _ := d.segmentRows(d.End)
	res, err := segment.Discover(rows, segment.RFM(), segment.Options{Seed: segmentSeed})
	if err != nil {
		return nil, err
	}
	return &segmentResult{res, len(rows)}, nil
}

func (s *segmentResult) print(w io.Writer) {
	fmt.Fprintf(w, "Segments: workload (%d people with events), k-means++ (seed %d) on standardized RFM and behaviour, k by silhouette:", s.Rows, segmentSeed)
	for _, k := range s.Scores {
		fmt.Fprintf(w, " k=%d %.3f", k.K, k.Silhouette)
	}
	fmt.Fprintf(w, "; chosen k = %d\n", s.K)
	for i, c := range s.Clusters {
		fmt.Fprintf(w, "  %d. %d people: %s\n     rule: %s  (precision %.3f, recall %.3f)\n", i+1, c.Size, c.Description, c.Rule, c.Precision, c.Recall)
	}
}

// workloadPropensity is the time-split propensity of "Order Completed
// within 7 days" on the workload: rows at day 16 (labels to day 23) train,
// rows at day 23 (labels to day 30) test.
type workloadPropensity struct {
	Train, Test, TrainPos, TestPos int
	Logistic, Boosted              float64
}

func evalWorkloadPropensity(d *workloadData) (*workloadPropensity, error) {
	start := workloadConfig.Start
	week := 7 * 24 * time.Hour
	train, err := d.examples(start.Add(16*24*time.Hour), week)
	if err != nil {
		return nil, err
	}
	test, err := d.examples(start.Add(23*24*time.Hour), week)
	if err != nil {
		return nil, err
	}
	r := &workloadPropensity{Train: len(train.Y), Test: len(test.Y), TrainPos: train.Positives(), TestPos: test.Positives()}
	r.Logistic, r.Boosted, err = fitBoth(train, test, train, test, quickBoosted)
	if err != nil {
		return nil, err
	}
	return r, nil
}

func (r *workloadPropensity) print(w io.Writer) {
	fmt.Fprintf(w, "Propensity: workload, \"Order Completed\" within 7 days, time split: %d rows at day 16 train (%d positive), %d rows at day 23 test (%d positive)\n",
		r.Train, r.TrainPos, r.Test, r.TestPos)
	printAUCs(w, r.Logistic, r.Boosted, quickBoosted)
}
