// Package match is probabilistic record matching (issue #13, docs/identity.md):
// a Fellegi–Sunter model whose m and u probabilities are learned from the data
// (EM over blocked candidate pairs, u from random pairs), Jaro-Winkler and
// date-typo comparison levels, blocking keys, and explained decisions.
//
// The package is pure: no engine, no clock, no I/O. Every result is a
// deterministic function of its inputs (and, for Train, of the seed): fields
// are visited in sorted order, never in map order.
package match

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
)

// Comparison names how the values of one trait are compared.
type Comparison string

// The comparisons and their levels, from most to least similar (a missing
// value on either side is the level "missing", which contributes nothing):
//
//	exact: exact / else
//	name:  exact / Jaro-Winkler ≥ 0.92 / ≥ 0.88 / ≥ 0.70 / else
//	text:  exact / Jaro-Winkler ≥ 0.92 / ≥ 0.88 / ≥ 0.70 / else
//	date:  exact / one-digit typo (or two adjacent digits swapped) / day and month transposed / else
//	phone: same normalized number / else
//	email: same normalized address / else
const (
	Exact Comparison = "exact"
	Name  Comparison = "name"
	Text  Comparison = "text"
	Date  Comparison = "date"
	Phone Comparison = "phone"
	Email Comparison = "email"
)

// Defaults of Config.
const (
	DefaultAutoMerge = 0.99
	DefaultReview    = 0.80
)

// ErrInvalid marks configuration errors.
var ErrInvalid = errors.New("match: invalid config")

// Config is the probabilistic part of the identity config.
type Config struct {
	// Fields maps a trait name to its comparison.
	Fields map[string]Comparison `json:"fields" yaml:"fields" msgpack:"fields"`
	// Blocking lists the blocking rules: two records are compared only when
	// they agree on every trait of at least one rule (normalized values).
	Blocking [][]string `json:"blocking" yaml:"blocking" msgpack:"blocking"`
	// AutoMerge is the match probability at or above which a pair merges
	// (0: DefaultAutoMerge).
	AutoMerge float64 `json:"auto_merge" yaml:"auto_merge" msgpack:"auto_merge"`
	// Review is the match probability at or above which a pair below
	// AutoMerge goes to the review queue (0: DefaultReview).
	Review float64 `json:"review" yaml:"review" msgpack:"review"`
	// TermFrequency adjusts the weight of an exact agreement on a name, text
	// or exact field by how common the value is (a shared common surname is
	// weaker evidence than a shared rare one).
	TermFrequency bool `json:"term_frequency" yaml:"term_frequency" msgpack:"term_frequency"`
}

// Limits of a configuration: bounds on what a config may ask for.
const (
	MaxFields        = 64
	MaxBlockingRules = 32
	MaxRuleTraits    = 8
	MaxTraitName     = 128
)

// WithDefaults returns c with zero thresholds replaced by their defaults.
func (c Config) WithDefaults() Config {
	if c.AutoMerge == 0 {
		c.AutoMerge = DefaultAutoMerge
	}
	if c.Review == 0 {
		c.Review = DefaultReview
	}
	return c
}

// Validate checks c; its errors wrap ErrInvalid and name the offending field.
func (c Config) Validate() error {
	bad := func(format string, a ...any) error {
		return fmt.Errorf("%w: %s", ErrInvalid, fmt.Sprintf(format, a...))
	}
	if len(c.Fields) == 0 {
		return bad("fields: at least one trait is needed")
	}
	if len(c.Fields) > MaxFields {
		return bad("fields: %d traits, at most %d", len(c.Fields), MaxFields)
	}
	for _, f := range sortedFields(c.Fields) {
		if err := checkTrait(f); err != nil {
			return bad("fields: trait %q: %v", f, err)
		}
		if !c.Fields[f].valid() {
			return bad("fields.%s: unknown comparison %q (want one of exact, name, text, date, phone, email)", f, c.Fields[f])
		}
	}
	if len(c.Blocking) == 0 {
		return bad("blocking: at least one rule is needed (matching never compares all pairs)")
	}
	if len(c.Blocking) > MaxBlockingRules {
		return bad("blocking: %d rules, at most %d", len(c.Blocking), MaxBlockingRules)
	}
	for i, rule := range c.Blocking {
		if len(rule) == 0 {
			return bad("blocking[%d]: empty rule", i)
		}
		if len(rule) > MaxRuleTraits {
			return bad("blocking[%d]: %d traits, at most %d", i, len(rule), MaxRuleTraits)
		}
		seen := map[string]bool{}
		for j, t := range rule {
			if err := checkTrait(t); err != nil {
				return bad("blocking[%d][%d]: %v", i, j, err)
			}
			if _, ok := c.Fields[t]; !ok {
				return bad("blocking[%d][%d]: trait %q is not in fields", i, j, t)
			}
			if seen[t] {
				return bad("blocking[%d][%d]: trait %q twice in one rule", i, j, t)
			}
			seen[t] = true
		}
	}
	for _, th := range []struct {
		name string
		v    float64
	}{{"auto_merge", c.AutoMerge}, {"review", c.Review}} {
		if th.v != th.v || th.v < 0 || th.v > 1 {
			return bad("%s: %v is not a probability in (0, 1]", th.name, th.v)
		}
	}
	d := c.WithDefaults()
	if d.Review > d.AutoMerge {
		return bad("review: %v is above auto_merge %v", d.Review, d.AutoMerge)
	}
	return nil
}

func checkTrait(t string) error {
	switch {
	case t == "":
		return errors.New("empty trait name")
	case len(t) > MaxTraitName:
		return fmt.Errorf("trait name longer than %d bytes", MaxTraitName)
	case strings.TrimSpace(t) != t:
		return fmt.Errorf("trait name %q has surrounding spaces", t)
	}
	return nil
}

func (k Comparison) valid() bool {
	switch k {
	case Exact, Name, Text, Date, Phone, Email:
		return true
	}
	return false
}

// Classify returns "merge" at or above the auto-merge threshold, "review" at
// or above the review threshold, and "none" below (zero thresholds take
// their defaults).
func (c Config) Classify(p float64) string {
	d := c.WithDefaults()
	switch {
	case p >= d.AutoMerge:
		return "merge"
	case p >= d.Review:
		return "review"
	}
	return "none"
}

// Record is one profile's traits: trait name → raw value.
type Record map[string]string

func sortedFields(m map[string]Comparison) []string {
	return slices.Sorted(maps.Keys(m))
}
