package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"
)

func newPrivacyCmd() *cobra.Command {
	var server, token, outFile string
	var wait bool
	cmd := &cobra.Command{
		Use:   "privacy",
		Short: "Erase a person (GDPR erasure by crypto-shredding) or export their whole record",
		Long: `Erasure removes the person an identifier resolves to from every projection, ends their
audience memberships (exits with reason "erased" and no personal data), suppresses all their
identifiers (later events carrying them are dropped and counted, never a new profile), scrubs the
plaintext copies in the output and dead-letter streams and destroys their data keys, so every
copy of their events on the log, in snapshots and in backups becomes unreadable. Only the
identifier's type and keyed hash go on the log.

Export prints the whole record of a person: the Golden Customer Record, the audience history
and every event decrypted, as JSON.`,
	}
	addClientFlags(cmd, &server, &token)
	erase := &cobra.Command{
		Use:   "erase IDENTIFIER",
		Short: "Request the erasure of the person an identifier (type:value, e.g. email:rob@example.com) resolves to",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := newClient(server, token)
			if err != nil {
				return err
			}
			body, _ := json.Marshal(map[string]string{"identifier": args[0]})
			var out struct {
				ID     string `json:"id"`
				Status string `json:"status"`
			}
			var raw json.RawMessage
			if err := c.do(cmd.Context(), http.MethodPost, "/v1/privacy/erasures", body, &raw); err != nil {
				return err
			}
			if err := json.Unmarshal(raw, &out); err != nil {
				return err
			}
			for wait && out.Status != "completed" {
				if err := sleepCtx(cmd.Context(), pollInterval); err != nil {
					return err
				}
				if err := c.do(cmd.Context(), http.MethodGet, "/v1/privacy/erasures/"+url.PathEscape(out.ID), nil, &raw); err != nil {
					return err
				}
				if err := json.Unmarshal(raw, &out); err != nil {
					return err
				}
			}
			var v any
			_ = json.Unmarshal(raw, &v)
			return printJSON(cmd.OutOrStdout(), v)
		},
	}
	erase.Flags().BoolVar(&wait, "wait", false, "wait until the erasure is completed (keys destroyed)")
	var statusOut string
	status := &cobra.Command{
		Use:   "status [ID]",
		Short: "Print the status of an erasure (pending, applied, completed) and its counts, or list all",
		Example: `  aurum privacy status
  aurum privacy status --output json`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) == 0 {
				return getOutput(cmd, server, token, statusOut, "/v1/privacy/erasures", typedRows(erasureRows))
			}
			return getOutput(cmd, server, token, statusOut, "/v1/privacy/erasures/"+url.PathEscape(args[0]), fieldRows)
		},
	}
	addOutputFlag(status, &statusOut)
	export := &cobra.Command{
		Use:   "export REF",
		Short: "Write the whole record of a person (GCR, audience history, all events decrypted) as JSON",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := newClient(server, token)
			if err != nil {
				return err
			}
			var w io.Writer = cmd.OutOrStdout()
			var tmp *os.File
			if outFile != "" && outFile != "-" {
				// Written beside the target and renamed: a failed export
				// leaves no partial file under the requested name.
				tmp, err = os.CreateTemp(filepath.Dir(outFile), ".aurum-export-*")
				if err != nil {
					return err
				}
				defer os.Remove(tmp.Name())
				defer tmp.Close()
				w = tmp
			}
			if _, err := c.stream(cmd.Context(), "/v1/profiles/"+url.PathEscape(args[0])+"/export", w); err != nil {
				return err
			}
			if tmp != nil {
				if err := tmp.Close(); err != nil {
					return err
				}
				if err := os.Rename(tmp.Name(), outFile); err != nil {
					return err
				}
				fmt.Fprintf(cmd.ErrOrStderr(), "wrote %s\n", outFile)
			}
			return nil
		},
	}
	export.Flags().StringVarP(&outFile, "output", "o", "", "write to this file instead of standard output")
	cmd.AddCommand(erase, status, export)
	return cmd
}

const pollInterval = 200 * time.Millisecond

func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// erasureRows is the table of privacy status without an id.
func erasureRows(page struct {
	Erasures []struct {
		ID        string    `json:"id"`
		Status    string    `json:"status"`
		Type      string    `json:"identifier_type"`
		Requested time.Time `json:"requested"`
		Completed time.Time `json:"completed"`
		Counts    struct {
			Profiles int `json:"profiles"`
			Events   int `json:"events"`
		} `json:"counts"`
		Destinations []struct {
			Name   string `json:"name"`
			Status string `json:"status"`
		} `json:"destinations"`
	} `json:"erasures"`
}) ([]string, [][]string) {
	rows := make([][]string, len(page.Erasures))
	for i, e := range page.Erasures {
		dests := make([]string, len(e.Destinations))
		for j, d := range e.Destinations {
			dests[j] = d.Name + ":" + d.Status
		}
		rows[i] = []string{e.ID, e.Status, e.Type, rfc3339(e.Requested), rfc3339(e.Completed), fmt.Sprint(e.Counts.Profiles), fmt.Sprint(e.Counts.Events), strings.Join(dests, ",")}
	}
	return []string{"ID", "STATUS", "IDENTIFIER_TYPE", "REQUESTED", "COMPLETED", "PROFILES", "EVENTS", "DESTINATIONS"}, rows
}
