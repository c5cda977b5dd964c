package main

import (
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/aurumcdp/aurum/internal/workload"
	"github.com/aurumcdp/aurum/predict/recommend"
)

// recommendHoldout is the share of each user's interactions held out.
const recommendHoldout = 0.5

// evalModel configures the models evaluated (defaults).
var evalModel recommend.ModelOptions

type recommendResult struct {
	Name string
	recommend.EvalResult
}

func evalOtto(dir string) (*recommendResult, error) {
	f, err := os.Open(filepath.Join(dir, "otto_sample", "train_sample.jsonl"))
	if err != nil {
		return nil, err
	}
	defer f.Close()
	users, err := readOtto(f)
	if err != nil {
		return nil, err
	}
	r, err := recommend.Evaluate(users, recommend.EvalOptions{Holdout: recommendHoldout, Model: evalModel})
	if err != nil {
		return nil, fmt.Errorf("otto: %w", err)
	}
	return &recommendResult{"otto_sample (20 sessions)", r}, nil
}

// strongPreference is the workload's second, stronger planted taste: at
// workloadPreference even a recommender that knew each person's taste could
// not reach 2x popularity on next items (docs/predictions.md, "Results").
const strongPreference = 0.9

func evalWorkload(d *workloadData, cfg workload.Config) (*recommendResult, error) {
	r, err := recommend.Evaluate(d.interactions(), recommend.EvalOptions{Holdout: recommendHoldout, Model: evalModel})
	if err != nil {
		return nil, fmt.Errorf("workload: %w", err)
	}
	return &recommendResult{fmt.Sprintf("workload (%d people, %d days, preference %.1f)", cfg.People, cfg.Days, cfg.Preference), r}, nil
}

// evalPlanted runs the evaluation on recommend.Planted's users (a planted
// favourite category), the signal the workload generator does not plant.
func evalPlanted() (*recommendResult, error) {
	cfg := recommend.PlantedConfig{Users: 1000, Categories: 20, PerCategory: 100, Seed: 12}
	r, err := recommend.Evaluate(recommend.Planted(cfg), recommend.EvalOptions{Holdout: recommendHoldout, Model: evalModel})
	if err != nil {
		return nil, fmt.Errorf("planted: %w", err)
	}
	return &recommendResult{fmt.Sprintf("synthetic, planted favourite category (%d users)", cfg.Users), r}, nil
}

func printRecommend(w io.Writer, rs []*recommendResult) {
	fmt.Fprintf(w, "Next best product: next-item hit rate at 10 on each user's later %.0f%% of interactions, against popularity in the same run\n", recommendHoldout*100)
	fmt.Fprintln(w, "  (cases: held-out interactions, each predicted from the history before it; new: items the user had not touched; any: earlier per-user figure, any held-out item in one list at the split)")
	fmt.Fprintf(w, "  %-55s %6s %6s %8s %8s %6s %10s %10s %8s %8s\n", "data", "users", "cases", "model", "popular", "ratio", "new:model", "new:popular", "any:model", "any:pop")
	for _, r := range rs {
		ratio := "-"
		if r.PopHitRate > 0 {
			ratio = fmt.Sprintf("%.2f", r.HitRate/r.PopHitRate)
		}
		fmt.Fprintf(w, "  %-55s %6d %6d %8.3f %8.3f %6s %10.3f %10.3f %8.3f %8.3f\n", r.Name, r.Users, r.Cases, r.HitRate, r.PopHitRate, ratio, r.NewHitRate, r.NewPopHitRate, r.AnyHitRate, r.AnyPopHitRate)
	}
}
