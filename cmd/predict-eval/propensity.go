package main

import (
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/aurumcdp/aurum/predict/propensity"
)

// splitSeed seeds the fixed stratified 70/30 split of online_shoppers_intention.
const splitSeed = 12

// propensityResult holds the holdout AUCs of the models on the shoppers data.
type propensityResult struct {
	Train, Test, TestPositives int
	Logistic, Boosted          float64
}

func evalPropensity(dir string) (*propensityResult, error) {
	f, err := os.Open(filepath.Join(dir, "online_shoppers_intention", "online_shoppers_intention.csv"))
	if err != nil {
		return nil, err
	}
	defer f.Close()
	s, err := readShoppers(f)
	if err != nil {
		return nil, err
	}
	train, test := propensity.StratifiedSplit(s.Trees.Y, 0.7, splitSeed)
	res := &propensityResult{Train: len(train), Test: len(test), TestPositives: s.Trees.Subset(test).Positives()}
	lin, err := propensity.FitLogistic(s.Linear.Subset(train), propensity.LogisticOptions{})
	if err != nil {
		return nil, err
	}
	lt := s.Linear.Subset(test)
	res.Logistic = propensity.AUC(propensity.PredictAll(lin, lt.X), lt.Y)
	gb, err := propensity.FitBoosted(s.Trees.Subset(train), propensity.BoostedOptions{})
	if err != nil {
		return nil, err
	}
	tt := s.Trees.Subset(test)
	res.Boosted = propensity.AUC(propensity.PredictAll(gb, tt.X), tt.Y)
	return res, nil
}

func (r *propensityResult) print(w io.Writer) {
	fmt.Fprintf(w, "Propensity: online_shoppers_intention, label Revenue, stratified 70/30 split (seed %d): %d train, %d test (%d positive)\n",
		splitSeed, r.Train, r.Test, r.TestPositives)
	fmt.Fprintf(w, "  %-40s AUC %.4f\n", "logistic regression (L2, Newton)", r.Logistic)
	fmt.Fprintf(w, "  %-40s AUC %.4f\n", "gradient-boosted trees (200 × depth 3)", r.Boosted)
}
