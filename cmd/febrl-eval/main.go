// Command febrl-eval prints the matching quality of projections/match on
// the FEBRL data sets (issue #13, docs/identity.md, "Matching quality
// (FEBRL)"): for each data set it trains a model on the records, scores the
// candidate pairs of the blocking rules, clusters the records by the pairs at
// or above a threshold (union-find, so transitive merges count) and prints
// the pairwise precision, recall and F1 of "same cluster" against the true
// pairs, per threshold.
//
//	go run ./cmd/febrl-eval [-data DIR] [-sets febrl3,febrl4] [-json] [-tf] [-blocking RULES] [-model]
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/aurumcdp/aurum/projections/match"
)

func main() {
	data := flag.String("data", "../shared/data", "directory holding febrl/")
	sets := flag.String("sets", "febrl1,febrl2,febrl3,febrl4", "comma-separated data sets")
	asJSON := flag.Bool("json", false, "print JSON instead of a table")
	tf := flag.Bool("tf", false, "also score with the term-frequency adjustment")
	showModel := flag.Bool("model", false, "print each trained model (m, u and weight per level) after the table")
	blocking := flag.String("blocking", "", `blocking rules instead of the default, e.g. "surname;given_name,date_of_birth" (rules split by ";", traits by ",")`)
	flag.Parse()
	opts := options{Sets: strings.Split(*sets, ","), TermFrequency: *tf, Blocking: parseBlocking(*blocking), ShowModel: *showModel}
	if err := run(os.Stdout, *data, opts, *asJSON); err != nil {
		fmt.Fprintln(os.Stderr, "febrl-eval:", err)
		os.Exit(1)
	}
}

// parseBlocking reads rules split by ";", traits split by ","; "" is nil.
func parseBlocking(s string) [][]string {
	if strings.TrimSpace(s) == "" {
		return nil
	}
	var rules [][]string
	for _, r := range strings.Split(s, ";") {
		var rule []string
		for _, t := range strings.Split(r, ",") {
			rule = append(rule, strings.TrimSpace(t))
		}
		rules = append(rules, rule)
	}
	return rules
}

func run(w io.Writer, dir string, opts options, asJSON bool) error {
	var results []result
	var models []*match.Model
	for _, s := range opts.Sets {
		r, m, err := evaluate(dir, s, opts)
		if err != nil {
			return err
		}
		results = append(results, r...)
		models = append(models, m)
	}
	if asJSON {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(results)
	}
	printTable(w, results)
	if opts.ShowModel {
		for i, m := range models {
			printModel(w, opts.Sets[i], m)
		}
	}
	return nil
}
