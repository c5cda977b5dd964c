package main

import (
	"fmt"
	"io"
	"text/tabwriter"

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
