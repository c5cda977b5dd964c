package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"sort"
	"strconv"
	"strings"
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
			return getOutput(cmd, *server, *token, output, path(args), rows)
		},
	}
	addOutputFlag(cmd, &output)
	return cmd
}

// getOutput runs GET path against the node and prints the answer by the
// output convention: with --output json the API's JSON as it came (one
// schema for the API and the CLI), else the table that rows makes of it.
func getOutput(cmd *cobra.Command, server, token, output, path string,
	rows func(raw []byte) (header []string, rows [][]string, err error)) error {
	_, err := getPrinted(cmd, server, token, output, path, rows)
	return err
}

// getPrinted is getOutput returning the answer it printed.
func getPrinted(cmd *cobra.Command, server, token, output, path string,
	rows func(raw []byte) (header []string, rows [][]string, err error)) (json.RawMessage, error) {
	if err := checkOutput(output); err != nil {
		return nil, err
	}
	c, err := newClient(server, token)
	if err != nil {
		return nil, err
	}
	var raw json.RawMessage
	if err := c.do(cmd.Context(), http.MethodGet, path, nil, &raw); err != nil {
		return nil, err
	}
	return raw, printOutput(cmd.OutOrStdout(), output, raw, rows)
}

// printOutput prints the API answer raw as JSON (--output json) or as the
// table rows makes of it.
func printOutput(w io.Writer, output string, raw []byte, rows func(raw []byte) (header []string, rows [][]string, err error)) error {
	if err := checkOutput(output); err != nil {
		return err
	}
	if output == outputJSON {
		var v any
		if err := json.Unmarshal(raw, &v); err != nil {
			return fmt.Errorf("the node's answer is not JSON: %w", err)
		}
		return printJSON(w, v)
	}
	header, body, err := rows(raw)
	if err != nil {
		return fmt.Errorf("the node's answer: %w", err)
	}
	return printTable(w, header, body)
}

// typedRows adapts a function of the decoded answer to printOutput's rows.
func typedRows[T any](rows func(v T) (header []string, rows [][]string)) func(raw []byte) ([]string, [][]string, error) {
	return func(raw []byte) ([]string, [][]string, error) {
		var v T
		if err := json.Unmarshal(raw, &v); err != nil {
			return nil, nil, err
		}
		h, r := rows(v)
		return h, r, nil
	}
}

// fieldRows is the table of a show command: one FIELD VALUE row per leaf
// of the JSON answer, nested objects' keys joined with "." (sorted), a list
// of plain values joined with ", ", a list of identifiers ({"value": ...})
// by their values, other lists as compact JSON.
func fieldRows(raw []byte) ([]string, [][]string, error) {
	var v any
	if err := json.Unmarshal(raw, &v); err != nil {
		return nil, nil, err
	}
	var rows [][]string
	flattenFields(&rows, "", v)
	return []string{"FIELD", "VALUE"}, rows, nil
}

func flattenFields(rows *[][]string, prefix string, v any) {
	switch x := v.(type) {
	case map[string]any:
		keys := make([]string, 0, len(x))
		for k := range x {
			keys = append(keys, k)
		}
		sort.Slice(keys, func(i, j int) bool { // what the record is first, then by name
			pi, pj := prefix == "" && leadField[keys[i]], prefix == "" && leadField[keys[j]]
			if pi != pj {
				return pi
			}
			return keys[i] < keys[j]
		})
		for _, k := range keys {
			name := k
			if prefix != "" {
				name = prefix + "." + k
			}
			flattenFields(rows, name, x[k])
		}
		if len(x) == 0 && prefix != "" {
			*rows = append(*rows, []string{prefix, ""})
		}
	case []any:
		*rows = append(*rows, []string{prefix, listCell(x)})
	default:
		*rows = append(*rows, []string{prefix, scalarCell(x)})
	}
}

// leadField are the top-level fields that say what a record is: they lead
// its table.
var leadField = map[string]bool{"id": true, "profile_id": true, "name": true, "status": true}

// listCell is a list in one cell.
func listCell(list []any) string {
	parts := make([]string, 0, len(list))
	for _, e := range list {
		switch x := e.(type) {
		case map[string]any:
			if val, ok := x["value"]; ok {
				parts = append(parts, scalarCell(val))
				continue
			}
			b, _ := json.Marshal(x)
			parts = append(parts, string(b))
		case []any:
			b, _ := json.Marshal(x)
			parts = append(parts, string(b))
		default:
			parts = append(parts, scalarCell(x))
		}
	}
	return strings.Join(parts, ", ")
}

// scalarCell is a JSON scalar in a cell: numbers without exponents where
// whole, null empty.
func scalarCell(v any) string {
	switch x := v.(type) {
	case nil:
		return ""
	case string:
		return x
	case float64:
		return strconv.FormatFloat(x, 'g', 6, 64)
	default:
		return fmt.Sprint(x)
	}
}

// rfc3339 formats t for a table ("" for the zero time).
func rfc3339(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format(time.RFC3339)
}
