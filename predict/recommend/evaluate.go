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
// users and the same training data.
type EvalResult struct {
	// Users is the number of users evaluated: at least two interactions and
	// a held-out item they had not bought before the split.
	Users int
	// HitRate is the share of users with at least one held-out item in
	// their top K; Recall the mean share of their held-out items in it.
	HitRate, Recall float64
	// PopHitRate and PopRecall are the same for the K most popular items
	// the user had not bought.
	PopHitRate, PopRecall float64
	// NewUsers, NewHitRate and NewPopHitRate count only held-out items the
	// user had not interacted with before the split (discovery).
	NewUsers                  int
	NewHitRate, NewPopHitRate float64
}

// Evaluate splits each user's interactions in time (the first 1 − Holdout
// for training, the rest held out; at least one on each side), trains one
// model on every user's training part (the whole history of users with a
// single interaction), and scores each user's top K from their training part
// against the distinct items of their held-out part that they had not
// bought. Nothing held out is ever seen by the model or the baseline.
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
	type split struct{ train, test []Interaction }
	splits := make([]split, len(users))
	for u, h := range users {
		s := sorted(h)
		if len(s) < 2 {
			splits[u].train = s
			m.AddUser(s)
			continue
		}
		cut := int(math.Round(float64(len(s)) * (1 - opt.Holdout)))
		cut = max(1, min(len(s)-1, cut))
		splits[u] = split{s[:cut], s[cut:]}
		m.AddUser(s[:cut])
	}
	var r EvalResult
	for _, sp := range splits {
		if len(sp.test) == 0 {
			continue
		}
		asOf := sp.train[len(sp.train)-1].Time
		bought := Bought(sp.train, asOf)
		seen := map[string]bool{}
		for _, it := range sp.train {
			seen[it.Item] = true
		}
		targets, fresh := map[string]bool{}, map[string]bool{}
		for _, it := range sp.test {
			if !bought[it.Item] {
				targets[it.Item] = true
				if !seen[it.Item] {
					fresh[it.Item] = true
				}
			}
		}
		if len(targets) == 0 {
			continue
		}
		rec := m.Recommend(sp.train, asOf, opt.K)
		pop := m.Popular(opt.K, bought)
		r.Users++
		h, rc := hits(rec, targets)
		r.HitRate += h
		r.Recall += rc
		h, rc = hits(pop, targets)
		r.PopHitRate += h
		r.PopRecall += rc
		if len(fresh) > 0 {
			r.NewUsers++
			h, _ = hits(rec, fresh)
			r.NewHitRate += h
			h, _ = hits(pop, fresh)
			r.NewPopHitRate += h
		}
	}
	if r.Users == 0 {
		return r, errors.New("recommend: evaluate: no user with a held-out item")
	}
	n := float64(r.Users)
	r.HitRate, r.Recall, r.PopHitRate, r.PopRecall = r.HitRate/n, r.Recall/n, r.PopHitRate/n, r.PopRecall/n
	if r.NewUsers > 0 {
		r.NewHitRate /= float64(r.NewUsers)
		r.NewPopHitRate /= float64(r.NewUsers)
	}
	return r, nil
}

// hits returns 1 if the list holds a target (else 0) and the share of the
// targets it holds.
func hits(list []Scored, targets map[string]bool) (hit, recall float64) {
	n := 0
	for _, s := range list {
		if targets[s.Key] {
			n++
		}
	}
	if n > 0 {
		hit = 1
	}
	return hit, float64(n) / float64(len(targets))
}
