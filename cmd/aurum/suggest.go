package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"

	"github.com/aurumcdp/aurum/engine/models"
	"github.com/spf13/cobra"
)

// newAudienceSuggestCmd is aurum audience suggest: the segments discovered
// in the profiles (POST /v1/audiences/suggest), each with a rule ready for
// aurum audience add.
func newAudienceSuggestCmd(server, token *string) *cobra.Command {
	var (
		req    models.SuggestRequest
		output string
	)
	cmd := &cobra.Command{
		Use:   "suggest [--k-max N] [--seed N] [--max-profiles N]",
		Short: "Discover segments in the profiles and suggest an audience rule for each",
		Long: `Discover segments the marketer did not think of: k-means (k-means++, k from 2 to --k-max chosen by
the silhouette) on standardized recency, frequency, spend and behaviour (orders, spend, days since
last seen, product views and cart adds in 30 days, refunds), computed for every profile with events
as of the log time. For each segment: its size, a plain description of its centre, and a rule that
approximates membership with its precision and recall on the profiles clustered, printed as the
"aurum audience add" command that saves it. Nothing is written.`,
		Example: `  aurum audience suggest
  aurum audience suggest --k-max 4 --output json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := checkOutput(output); err != nil {
				return err
			}
			c, err := newClient(*server, *token)
			if err != nil {
				return err
			}
			body, err := json.Marshal(req)
			if err != nil {
				return err
			}
			var out models.SuggestInfo
			if err := c.do(cmd.Context(), http.MethodPost, "/v1/audiences/suggest", body, &out); err != nil {
				return err
			}
			if output == outputJSON {
				return printJSON(cmd.OutOrStdout(), out)
			}
			return printSuggestions(cmd, out)
		},
	}
	fl := cmd.Flags()
	fl.IntVar(&req.KMax, "k-max", 8, "the most segments tried (2..20)")
	fl.Uint64Var(&req.Seed, "seed", 1, "seed of k-means++ and of the silhouette sample")
	fl.IntVar(&req.MaxProfiles, "max-profiles", 100_000, "profiles read at most (a sample beyond)")
	addOutputFlag(cmd, &output)
	return cmd
}

func printSuggestions(cmd *cobra.Command, out models.SuggestInfo) error {
	w := cmd.OutOrStdout()
	if len(out.Segments) == 0 {
		fmt.Fprintf(w, "no segments: %s\n", out.Note)
		return nil
	}
	var ks []string
	for _, k := range out.Silhouettes {
		ks = append(ks, fmt.Sprintf("k=%d %.3f", k.K, k.Silhouette))
	}
	fmt.Fprintf(w, "%d profiles with events as of %s; silhouette %s; %d segments\n\n", out.Profiles, rfc3339(out.AsOf), strings.Join(ks, ", "), out.K)
	rows := make([][]string, len(out.Segments))
	for i, s := range out.Segments {
		rows[i] = []string{s.Name, fmt.Sprint(s.Size), fmt.Sprintf("%.1f%%", 100*s.Share), fmt.Sprintf("%.2f", s.Precision), fmt.Sprintf("%.2f", s.Recall), s.Description}
	}
	if err := printTable(w, []string{"NAME", "SIZE", "SHARE", "PRECISION", "RECALL", "DESCRIPTION"}, rows); err != nil {
		return err
	}
	fmt.Fprintln(w, "\nTo save one:")
	for _, s := range out.Segments {
		fmt.Fprintf(w, "  aurum audience add %s --rule %s --description %s\n", s.Name, shellQuote(s.Rule), shellQuote(s.Description))
	}
	return nil
}

// shellQuote quotes s for a POSIX shell.
func shellQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }
