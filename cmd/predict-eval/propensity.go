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

// boostedOptions are the trees the command fits; quickBoosted a smaller
// ensemble for the tests that run in CI (about 4 times less work, AUC within
// 0.002 on the split seeds tried, docs/predictions.md).
var (
	boostedOptions = propensity.BoostedOptions{Trees: 200, Depth: 3, LearningRate: 0.1, Bins: 64}
	quickBoosted   = propensity.BoostedOptions{Trees: 60, Depth: 3, LearningRate: 0.2, Bins: 32}
)

// propensityResult holds the holdout AUCs of the models on the shoppers data.
type propensityResult struct {
	Seed                       uint64
	Trees                      propensity.BoostedOptions
	Train, Test, TestPositives int
	Logistic, Boosted          float64
}

func readShoppersFile(dir string) (*shoppers, error) {
	f, err := os.Open(filepath.Join(dir, "online_shoppers_intention", "online_shoppers_intention.csv"))
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return readShoppers(f)
}

// evalPropensity fits both models on the split of seed and scores the rest.
func evalPropensity(s *shoppers, seed uint64, trees propensity.BoostedOptions) (*propensityResult, error) {
	train, test := propensity.StratifiedSplit(s.Trees.Y, 0.7, seed)
	res := &propensityResult{Seed: seed, Trees: trees, Train: len(train), Test: len(test), TestPositives: s.Trees.Subset(test).Positives()}
	var err error
	res.Logistic, res.Boosted, err = fitBoth(s.Linear.Subset(train), s.Linear.Subset(test), s.Trees.Subset(train), s.Trees.Subset(test), trees)
	if err != nil {
		return nil, err
	}
	return res, nil
}

// fitBoth fits logistic regression on linTrain and trees on treeTrain and
// returns their AUCs on the test rows.
func fitBoth(linTrain, linTest, treeTrain, treeTest *propensity.Dataset, trees propensity.BoostedOptions) (logistic, boosted float64, err error) {
	lin, err := propensity.FitLogistic(linTrain, propensity.LogisticOptions{})
	if err != nil {
		return 0, 0, err
	}
	gb, err := propensity.FitBoosted(treeTrain, trees)
	if err != nil {
		return 0, 0, err
	}
	return propensity.AUC(propensity.PredictAll(lin, linTest.X), linTest.Y), propensity.AUC(propensity.PredictAll(gb, treeTest.X), treeTest.Y), nil
}

// printAUCs prints the two models' AUCs.
func printAUCs(w io.Writer, logistic, boosted float64, trees propensity.BoostedOptions) {
	fmt.Fprintf(w, "  %-40s AUC %.4f\n", "logistic regression (L2, Newton)", logistic)
	fmt.Fprintf(w, "  %-40s AUC %.4f\n", fmt.Sprintf("gradient-boosted trees (%d × depth %d)", trees.Trees, trees.Depth), boosted)
}

func (r *propensityResult) print(w io.Writer) {
	fmt.Fprintf(w, "Propensity: online_shoppers_intention, label Revenue, stratified 70/30 split (seed %d): %d train, %d test (%d positive)\n",
		r.Seed, r.Train, r.Test, r.TestPositives)
	printAUCs(w, r.Logistic, r.Boosted, r.Trees)
}
