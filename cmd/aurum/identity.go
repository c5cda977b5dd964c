package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/aurumcdp/aurum/engine/matching"
	"github.com/spf13/cobra"
)

func newIdentityCmd() *cobra.Command {
	var server, token string
	cmd := &cobra.Command{
		Use:   "identity",
		Short: "Probabilistic identity: train the model, review matches, explain a profile's links",
		Long: `Probabilistic identity (docs/identity.md). With a probabilistic section in the identity config
(--identity-config), the node matches a profile against the profiles that share a blocking key with
it whenever its matching traits change, and records each decision on the log: merged at or above
auto_merge, queued for review between review and auto_merge. "identity train" fits the weights
(m and u per comparison level) from the current profiles and matches every profile again.`,
		Example: `  aurum identity train --sample 100000
  aurum identity model --output json
  aurum identity reviews
  aurum identity review 01JABCDEF... --merge
  aurum identity explain crm_id:12345`,
	}
	addClientFlags(cmd, &server, &token)

	var trainOut string
	var sample int
	var trainTimeout time.Duration
	train := &cobra.Command{
		Use:   "train [--sample N]",
		Short: "Fit the identity model from the current profiles and record it (every profile is matched again)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := checkOutput(trainOut); err != nil {
				return err
			}
			c, err := newClient(server, token)
			if err != nil {
				return err
			}
			c.hc.Timeout = trainTimeout // training reads and fits on the node: longer than a request
			body, _ := json.Marshal(matching.TrainRequest{Sample: sample})
			var info matching.ModelInfo
			if err := c.do(cmd.Context(), http.MethodPost, "/v1/identity/model", body, &info); err != nil {
				return err
			}
			return printIdentityModel(cmd, trainOut, info)
		},
	}
	train.Flags().IntVar(&sample, "sample", 0, "profiles read at most (0: the node's default, 200000)")
	train.Flags().DurationVar(&trainTimeout, "timeout", 30*time.Minute, "give up waiting for the node after this long")
	addOutputFlag(train, &trainOut)

	var modelOut string
	model := &cobra.Command{
		Use:   "model",
		Short: "Show the identity model in effect: m and u per comparison level",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := checkOutput(modelOut); err != nil {
				return err
			}
			c, err := newClient(server, token)
			if err != nil {
				return err
			}
			var info matching.ModelInfo
			if err := c.do(cmd.Context(), http.MethodGet, "/v1/identity/model", nil, &info); err != nil {
				return err
			}
			return printIdentityModel(cmd, modelOut, info)
		},
	}
	addOutputFlag(model, &modelOut)

	reviews := newListCmd("reviews", "List the matches awaiting a reviewer", cobra.NoArgs, &server, &token,
		func([]string) string { return "/v1/identity/reviews" },
		func(raw []byte) ([]string, [][]string, error) {
			var page struct {
				Reviews []matching.Review `json:"reviews"`
			}
			if err := json.Unmarshal(raw, &page); err != nil {
				return nil, nil, err
			}
			rows := make([][]string, len(page.Reviews))
			for i, r := range page.Reviews {
				rows[i] = []string{r.ID, r.ProfileA, r.ProfileB, fmt.Sprintf("%.4f", r.Probability), contributionsText(r), r.Proposed.Format(time.RFC3339)}
			}
			return []string{"ID", "PROFILE_A", "PROFILE_B", "PROBABILITY", "CONTRIBUTIONS", "PROPOSED"}, rows, nil
		})

	var merge, reject bool
	var reviewOut string
	review := &cobra.Command{
		Use:   "review ID --merge|--reject",
		Short: "Decide a pending match (a rejected pair is never merged automatically again)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkOutput(reviewOut); err != nil {
				return err
			}
			if merge == reject {
				return errors.New("give exactly one of --merge and --reject")
			}
			decision := "reject"
			if merge {
				decision = "merge"
			}
			c, err := newClient(server, token)
			if err != nil {
				return err
			}
			body, _ := json.Marshal(map[string]string{"decision": decision})
			var rv matching.Review
			if err := c.do(cmd.Context(), http.MethodPost, "/v1/identity/reviews/"+url.PathEscape(args[0]), body, &rv); err != nil {
				return err
			}
			if reviewOut == outputJSON {
				return printJSON(cmd.OutOrStdout(), rv)
			}
			line := fmt.Sprintf("match %s: %s", rv.ID, rv.Status)
			if rv.Reason != "" {
				line += " (" + rv.Reason + ")"
			}
			fmt.Fprintln(cmd.OutOrStdout(), line)
			return nil
		},
	}
	review.Flags().BoolVar(&merge, "merge", false, "merge the two profiles")
	review.Flags().BoolVar(&reject, "reject", false, "keep them apart, for good")
	addOutputFlag(review, &reviewOut)

	var explainOut string
	explain := &cobra.Command{
		Use:   "explain TYPE:VALUE",
		Short: "A profile's identifiers and, for each link, what made it",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkOutput(explainOut); err != nil {
				return err
			}
			c, err := newClient(server, token)
			if err != nil {
				return err
			}
			var ex matching.Explanation
			if err := c.do(cmd.Context(), http.MethodGet, "/v1/profiles/"+url.PathEscape(args[0])+"/identity", nil, &ex); err != nil {
				return err
			}
			if explainOut == outputJSON {
				return printJSON(cmd.OutOrStdout(), ex)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "profile %s\n", ex.ProfileID)
			var rows [][]string
			for _, l := range ex.Links {
				cause := fmt.Sprintf("event %s shared %s", l.EventID, l.IdentifierType)
				if l.Match != nil {
					cause = fmt.Sprintf("match %s p=%.4f %s", l.Match.ID, l.Match.Probability, contributionsText(*l.Match))
					if l.Match.Decision != "" {
						cause += " (reviewer: " + l.Match.Decision + ")"
					}
				}
				rows = append(rows, []string{l.Time.Format(time.RFC3339), l.From, l.Into, l.Cause, cause})
			}
			return printTable(cmd.OutOrStdout(), []string{"TIME", "FROM", "INTO", "CAUSE", "DETAIL"}, rows)
		},
	}
	addOutputFlag(explain, &explainOut)

	cmd.AddCommand(train, model, reviews, review, explain)
	return cmd
}

func contributionsText(r matching.Review) string {
	parts := make([]string, 0, len(r.Contributions))
	for _, c := range r.Contributions {
		parts = append(parts, fmt.Sprintf("%s=%s(%+.1f)", c.Field, c.Level, c.Weight))
	}
	return strings.Join(parts, " ")
}

func printIdentityModel(cmd *cobra.Command, output string, m matching.ModelInfo) error {
	if output == outputJSON {
		return printJSON(cmd.OutOrStdout(), m)
	}
	fmt.Fprintf(cmd.OutOrStdout(), "model %s: %d records, prior %.3g, %d EM iterations (converged %v)\n",
		m.Version, m.Records, m.Prior, m.Iterations, m.Converged)
	var rows [][]string
	for _, f := range m.Fields {
		for _, l := range f.Levels {
			rows = append(rows, []string{f.Field, string(f.Comparison), l.Name, fmt.Sprintf("%.4g", l.M), fmt.Sprintf("%.4g", l.U)})
		}
	}
	return printTable(cmd.OutOrStdout(), []string{"FIELD", "COMPARISON", "LEVEL", "M", "U"}, rows)
}

// newProfileSplitCmd is "aurum profile split": the unmerge of issue #13.
func newProfileSplitCmd(server, token *string) *cobra.Command {
	var ids []string
	var out string
	cmd := &cobra.Command{
		Use:   "split REF --identifier TYPE:VALUE...",
		Short: "Undo a wrong merge: move identifiers, and the events that came with them, into a new profile",
		Long: `Split the profile REF resolves to (POST /v1/profiles/{ref}/split): the identifiers given move
to a new profile together with the events that carried them and no identifier that stays (an event
that carried both, the link itself, stays). Both Golden Customer Records and their audience
memberships are recomputed, the exits and entries this causes go out once, and the matcher never
merges the two back (a later event carrying identifiers of both still links them). "aurum identity
explain" shows the split. Identifiers that REF's profile does not own, or all of its identifiers,
are refused.`,
		Example: `  aurum profile split email:rob@example.com --identifier crm_id:C1
  aurum profile split user_id:42 --identifier crm_id:9 --identifier email:ann@example.com --output json`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkOutput(out); err != nil {
				return err
			}
			if len(ids) == 0 {
				return errors.New("give at least one --identifier TYPE:VALUE to split off")
			}
			c, err := newClient(*server, *token)
			if err != nil {
				return err
			}
			body, _ := json.Marshal(map[string][]string{"identifiers": ids})
			var info matching.SplitInfo
			if err := c.do(cmd.Context(), http.MethodPost, "/v1/profiles/"+url.PathEscape(args[0])+"/split", body, &info); err != nil {
				return err
			}
			if out == outputJSON {
				return printJSON(cmd.OutOrStdout(), info)
			}
			return printTable(cmd.OutOrStdout(), []string{"FIELD", "VALUE"}, [][]string{
				{"split", info.ID}, {"status", info.Status}, {"from", info.From}, {"into", info.Into},
				{"identifiers", strings.Join(info.IdentifierTypes, ", ")},
				{"events_moved", fmt.Sprint(info.EventsMoved)}, {"events_kept", fmt.Sprint(info.EventsKept)},
				{"time", info.Time.Format(time.RFC3339)},
			})
		},
	}
	cmd.Flags().StringArrayVar(&ids, "identifier", nil, "an identifier TYPE:VALUE to move to the new profile (repeat for more)")
	addOutputFlag(cmd, &out)
	return cmd
}
