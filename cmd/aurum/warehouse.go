package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"time"

	"github.com/aurumcdp/aurum/engine/export"
	"github.com/spf13/cobra"
)

// The warehouse export (docs/export.md): aurum export run | list |
// schedule, through the API (/v1/exports).

// exportRunOut is a run as the API answers it.
type exportRunOut struct {
	ID                  string            `json:"id"`
	Created             time.Time         `json:"created"`
	AppliedSeq          uint64            `json:"applied_seq"`
	Personal            bool              `json:"personal"`
	Trigger             string            `json:"trigger"`
	TransitionsAfterSeq uint64            `json:"transitions_after_seq"`
	Directory           string            `json:"directory"`
	Files               []export.FileInfo `json:"files"`
}

func (r exportRunOut) rows(name string) string {
	for _, f := range r.Files {
		if f.Name == name {
			return strconv.FormatInt(f.Rows, 10)
		}
	}
	return ""
}

func newExportCmd() *cobra.Command {
	var server, token string
	cmd := &cobra.Command{
		Use:   "export",
		Short: "The warehouse export: Parquet runs of profiles, memberships and transitions (docs/export.md)",
		Long: `The warehouse export writes, into the node's --export-dir, one directory per run holding
profiles.parquet (the Golden Customer Records, personal values only when asked),
memberships.parquet (who is in which audience), transitions.parquet (audience entries and
exits since the previous run, with times and reasons) and manifest.json, written last and
atomically, for loading into a warehouse (docs/export.md has the columns and a DuckDB and a
BigQuery example).

The schedule (interval, runs kept, personal columns) is set once for every node of a cluster
and survives restarts; until it is set, each node's serve flags (--export-interval,
--export-keep, --export-personal) are its schedule. Changing it or running an export needs the
admin role; listing needs viewer or editor.`,
	}
	addClientFlags(cmd, &server, &token)
	cmd.AddCommand(newExportRunCmd(&server, &token), newExportListCmd(&server, &token), newExportScheduleCmd(&server, &token))
	return cmd
}

func newExportRunCmd(server, token *string) *cobra.Command {
	var output string
	var personal, allTransitions bool
	cmd := &cobra.Command{
		Use:   "run",
		Short: "Write an export run now and print its manifest",
		Long: `Write an export run now (on the node --server names) and print its files. Without
--personal the run has the personal columns only if the schedule says so (--personal=false
leaves them out); transitions.parquet holds the transitions since the newest run, or all the
history kept with --all-transitions.`,
		Example: `  aurum export run
  aurum export run --personal --all-transitions --output json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := checkOutput(output); err != nil {
				return err
			}
			c, err := newClient(*server, *token)
			if err != nil {
				return err
			}
			body := map[string]any{"all_transitions": allTransitions}
			if cmd.Flags().Changed("personal") {
				body["personal"] = personal
			}
			raw, err := doJSON(cmd, c, http.MethodPost, "/v1/exports", body)
			if err != nil {
				return err
			}
			if output == outputJSON {
				return printOutput(cmd.OutOrStdout(), output, raw, nil)
			}
			var run exportRunOut
			if err := json.Unmarshal(raw, &run); err != nil {
				return fmt.Errorf("the node's answer: %w", err)
			}
			return printExportRun(cmd.OutOrStdout(), run)
		},
	}
	cmd.Flags().BoolVar(&personal, "personal", false, "include the decrypted personal values (emails, phones, user_ids, traits_json); default: the schedule's setting")
	cmd.Flags().BoolVar(&allTransitions, "all-transitions", false, "transitions.parquet holds all the history kept, not only since the newest run")
	addOutputFlag(cmd, &output)
	return cmd
}

// doJSON sends body as JSON and returns the answer as it came.
func doJSON(cmd *cobra.Command, c *client, method, path string, body any) (json.RawMessage, error) {
	b, err := json.Marshal(body)
	if err != nil {
		return nil, err
	}
	var raw json.RawMessage
	if err := c.do(cmd.Context(), method, path, b, &raw); err != nil {
		return nil, err
	}
	return raw, nil
}

// printExportRun prints a run: a line naming it, then its files.
func printExportRun(w io.Writer, run exportRunOut) error {
	since := "all the history kept"
	if run.TransitionsAfterSeq > 0 {
		since = fmt.Sprintf("after log position %d", run.TransitionsAfterSeq)
	}
	fmt.Fprintf(w, "run %s (as of log position %d, personal %t, transitions %s)\nin %s\n\n",
		run.ID, run.AppliedSeq, run.Personal, since, run.Directory)
	rows := make([][]string, 0, len(run.Files))
	for _, f := range run.Files {
		rows = append(rows, []string{f.Name, strconv.FormatInt(f.Rows, 10), strconv.FormatInt(f.Bytes, 10), f.SHA256})
	}
	return printTable(w, []string{"FILE", "ROWS", "BYTES", "SHA256"}, rows)
}

func newExportListCmd(server, token *string) *cobra.Command {
	cmd := newListCmd("list", "List the export runs in the node's export directory, newest first", cobra.NoArgs, server, token,
		func([]string) string { return "/v1/exports" },
		typedRows(func(v struct {
			Runs []exportRunOut `json:"runs"`
		}) ([]string, [][]string) {
			rows := make([][]string, 0, len(v.Runs))
			for _, r := range v.Runs {
				rows = append(rows, []string{r.ID, rfc3339(r.Created), r.Trigger, strconv.FormatUint(r.AppliedSeq, 10),
					strconv.FormatBool(r.Personal), r.rows(export.ProfilesFile), r.rows(export.MembershipsFile),
					r.rows(export.TransitionsFile)})
			}
			return []string{"RUN", "CREATED", "TRIGGER", "SEQ", "PERSONAL", "PROFILES", "MEMBERSHIPS", "TRANSITIONS"}, rows
		}))
	cmd.Example = `  aurum export list
  aurum export list --output json | jq -r '.runs[0].directory'`
	return cmd
}

func newExportScheduleCmd(server, token *string) *cobra.Command {
	var output string
	var interval time.Duration
	var keep int
	var personal bool
	cmd := &cobra.Command{
		Use:   "schedule",
		Short: "Show the export schedule, or set it for every node (--interval, --keep, --personal)",
		Long: `Without flags, show the schedule in effect on the node: set through the API (source "log",
the same on every node of a cluster, kept across restarts) or, until one is set, the node's serve
flags (source "flags"). With --interval, --keep or --personal, set it; what is not given keeps
its value in effect. The interval is at least 1m and keep at least 1.`,
		Example: `  aurum export schedule
  aurum export schedule --interval 1h --keep 24
  aurum export schedule --interval 6h --keep 8 --personal --output json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := checkOutput(output); err != nil {
				return err
			}
			c, err := newClient(*server, *token)
			if err != nil {
				return err
			}
			body := map[string]any{}
			if cmd.Flags().Changed("interval") {
				body["interval"] = interval.String()
			}
			if cmd.Flags().Changed("keep") {
				body["keep"] = keep
			}
			if cmd.Flags().Changed("personal") {
				body["personal"] = personal
			}
			var raw json.RawMessage
			if len(body) == 0 {
				err = c.do(cmd.Context(), http.MethodGet, "/v1/exports/schedule", nil, &raw)
			} else {
				raw, err = doJSON(cmd, c, http.MethodPut, "/v1/exports/schedule", body)
			}
			if err != nil {
				return err
			}
			return printOutput(cmd.OutOrStdout(), output, raw, fieldRows)
		},
	}
	cmd.Flags().DurationVar(&interval, "interval", 0, "write a run this often (at least 1m)")
	cmd.Flags().IntVar(&keep, "keep", 0, "runs kept in the export directory, the oldest deleted (at least 1)")
	cmd.Flags().BoolVar(&personal, "personal", false, "scheduled runs include the decrypted personal values")
	addOutputFlag(cmd, &output)
	return cmd
}
