package recommend

import (
	"errors"
	"fmt"
	"math"
)

// EvalOptions configure Evaluate. Zero fields take their defaults.
type EvalOptions struct {
	// K is the length of the lists. Default 10.
	K int
	// Holdout is the share of each user's interactions, the latest ones,
	// held out. Default 0.5.
	Holdout float64
	// Model configures the model trained on the rest.
	Model ModelOptions
}

// EvalResult compares the model with the popularity baseline on the same
// cases and the same training data.
//
// The headline figure is the next-item hit rate at K, a recommender's usual
// hit rate (as in session-based evaluation, e.g. GRU4Rec's and OTTO's): every
// held-out interaction is a case, predicted from the user's interactions
// before it, and it is a hit when its item is in the top K. A case is left
// out when its item was bought before it (neither list may hold it) or is
// the item of the interaction just before it (a repeat, e.g. the cart
// following a view: not a next product).
type EvalResult struct {
	// Users is the number of users with at least one case; Cases the
	// number of cases.
	Users, Cases int
	// HitRate is the share of cases whose item is in the model's top K;
	// PopHitRate in the K most popular items the user had not bought.
	HitRate, PopHitRate float64
	// NewCases, NewHitRate and NewPopHitRate count only the cases whose
	// item the user had not interacted with before (discovery).
	NewCases                  int
	NewHitRate, NewPopHitRate float64
	// AnyHitRate and AnyPopHitRate are the per-user figure of earlier
	// versions: the share of users with any of their held-out items (not
	// bought before the split) in one top K made at the split. With many
	// held-out items per user it saturates (popularity hits nearly every
	// user of the workload): it is printed for comparison only.
	AnyHitRate, AnyPopHitRate float64
}

// Evaluate splits each user's interactions in time (the first 1 − Holdout
// for training, the rest held out; at least one on each side), trains one
// model on every user's training part (the whole history of users with a
// single interaction) and scores the held-out cases (EvalResult). Nothing
// held out is ever seen by the model or the baseline; a case's own user's
// earlier held-out interactions are part of its history, as they would be
// of a profile's.
func Evaluate(users [][]Interaction, opt EvalOptions) (EvalResult, error) {
	if opt.K == 0 {
		opt.K = 10
	}
	if opt.Holdout == 0 {
		opt.Holdout = 0.5
	}
	if opt.K < 1 || !(opt.Holdout > 0 && opt.Holdout < 1) {
		return EvalResult{}, fmt.Errorf("recommend: evaluate: K %d must be >= 1 and holdout %v in (0, 1)", opt.K, opt.Holdout)
	}
	m, err := NewModel(opt.Model)
	if err != nil {
		return EvalResult{}, err
	}
	type split struct {
		all []Interaction
		cut int
	}
	splits := make([]split, len(users))
	for u, h := range users {
		s := sorted(h)
		if len(s) < 2 {
			m.AddUser(s)
			continue
		}
		cut := int(math.Round(float64(len(s)) * (1 - opt.Holdout)))
		cut = max(1, min(len(s)-1, cut))
		splits[u] = split{s, cut}
		m.AddUser(s[:cut])
	}
	var r EvalResult
	var anyUsers int
	for _, sp := range splits {
		if sp.cut == 0 {
			continue
		}
		train := sp.all[:sp.cut]
		asOf := train[len(train)-1].Time
		bought := Bought(train, asOf)
		// The per-user figure, at the split.
		targets := map[string]bool{}
		for _, it := range sp.all[sp.cut:] {
			if !bought[it.Item] {
				targets[it.Item] = true
			}
		}
		if len(targets) > 0 {
			anyUsers++
			r.AnyHitRate += hit(m.Recommend(train, asOf, opt.K), targets)
			r.AnyPopHitRate += hit(m.Popular(opt.K, bought), targets)
		}
		// The next-item cases.
		seen := map[string]bool{}
		for _, it := range train {
			seen[it.Item] = true
		}
		cases := 0
		for i := sp.cut; i < len(sp.all); i++ {
			x, prev := sp.all[i], sp.all[i-1]
			if x.Item != prev.Item && !bought[x.Item] {
				cases++
				h := sp.all[:i]
				target := map[string]bool{x.Item: true}
				hm := hit(m.Recommend(h, prev.Time, opt.K), target)
				hp := hit(m.Popular(opt.K, bought), target)
				r.HitRate += hm
				r.PopHitRate += hp
				if !seen[x.Item] {
					r.NewCases++
					r.NewHitRate += hm
					r.NewPopHitRate += hp
				}
			}
			seen[x.Item] = true
			if x.Kind == Buy {
				bought[x.Item] = true
			}
		}
		if cases > 0 {
			r.Users++
			r.Cases += cases
		}
	}
	if r.Cases == 0 {
		return r, errors.New("recommend: evaluate: no held-out case")
	}
	n := float64(r.Cases)
	r.HitRate, r.PopHitRate = r.HitRate/n, r.PopHitRate/n
	if r.NewCases > 0 {
		r.NewHitRate /= float64(r.NewCases)
		r.NewPopHitRate /= float64(r.NewCases)
	}
	if anyUsers > 0 {
		r.AnyHitRate /= float64(anyUsers)
		r.AnyPopHitRate /= float64(anyUsers)
	}
	return r, nil
}

// hit returns 1 if the list holds a target, else 0.
func hit(list []Scored, targets map[string]bool) float64 {
	for _, s := range list {
		if targets[s.Key] {
			return 1
		}
	}
	return 0
}
