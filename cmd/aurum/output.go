package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
)

// The CLI's output convention for list and show commands: a table for
// people by default, --output json (the API's snake_case JSON, RFC 3339
// times) for machines.
const (
	outputTable = "table"
	outputJSON  = "json"
)

// addOutputFlag adds --output table|json to cmd.
func addOutputFlag(cmd *cobra.Command, out *string) {
	cmd.Flags().StringVarP(out, "output", "o", outputTable, "table (for people) or json (for machines: snake_case, RFC 3339 times)")
}

// checkOutput refuses an --output other than table or json.
func checkOutput(out string) error {
	if out != outputTable && out != outputJSON {
		return fmt.Errorf("--output: want table or json, got %q", out)
	}
	return nil
}

// printTable writes a header and rows, columns aligned.
func printTable(w io.Writer, header []string, rows [][]string) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	line := func(cells []string) {
		for i, c := range cells {
			if i > 0 {
				fmt.Fprint(tw, "\t")
			}
			fmt.Fprint(tw, dash(c))
		}
		fmt.Fprintln(tw)
	}
	line(header)
	for _, r := range rows {
		line(r)
	}
	return tw.Flush()
}

// newListCmd is a list or show command following the output convention:
// GET path(args), printed as a table (rows: the answer decoded into rows)
// or, with --output json, as the API's JSON.
func newListCmd(use, short string, nargs cobra.PositionalArgs, server, token *string, path func(args []string) string,
	rows func(raw []byte) (header []string, rows [][]string, err error)) *cobra.Command {
	var output string
	cmd := &cobra.Command{
		Use:   use,
		Short: short,
		Args:  nargs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkOutput(output); err != nil {
				return err
			}
			c, err := newClient(*server, *token)
			if err != nil {
				return err
			}
			var raw json.RawMessage
			if err := c.do(cmd.Context(), http.MethodGet, path(args), nil, &raw); err != nil {
				return err
			}
			if output == outputJSON {
				var v any
				if err := json.Unmarshal(raw, &v); err != nil {
					return err
				}
				return printJSON(cmd.OutOrStdout(), v)
			}
			header, body, err := rows(raw)
			if err != nil {
				return err
			}
			return printTable(cmd.OutOrStdout(), header, body)
		},
	}
	addOutputFlag(cmd, &output)
	return cmd
}

// rfc3339 formats t for a table ("" for the zero time).
func rfc3339(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format(time.RFC3339)
}
