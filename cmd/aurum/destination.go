package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/aurumcdp/aurum/engine"
	"github.com/spf13/cobra"
)

func newDestinationCmd() *cobra.Command {
	var server, token string
	cmd := &cobra.Command{
		Use:   "destination",
		Short: "Manage webhook destinations (audience transitions sent to a URL)",
		Long: `Manage webhook destinations: each entry into and exit from the destination's audiences is
POSTed to its URL, signed with its secret (Aurum-Signature: t=<unix>,v1=<hex HMAC-SHA256 of
"<t>.<body>">), retried with backoff and dead-lettered after a bound. --channel is the consent
channel every delivery checks (a person without consent for it is skipped), or none for a
system that contacts nobody. The secret is read from --secret-file or the first line of
standard input (never from a flag), at least 16 characters.`,
		Example: `  aurum destination add crm-sync --url https://crm.example.com/hooks/aurum --audience buyers --channel email --secret-file hook.secret
  aurum destination list
  aurum destination show crm-sync --output json
  aurum destination rm crm-sync`,
	}
	addClientFlags(cmd, &server, &token)
	var dest struct {
		url, channel, secretFile string
		audiences                []string
	}
	add := &cobra.Command{
		Use:   "add NAME --url URL --audience A [--audience B] --channel email|sms|push|ads|web|none [--secret-file FILE]",
		Short: "Create a webhook destination (it receives the transitions from now on)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			secret, err := readSecret(cmd.InOrStdin(), dest.secretFile, "--secret-file", "secret")
			if err != nil {
				return err
			}
			c, err := newClient(server, token)
			if err != nil {
				return err
			}
			body, err := json.Marshal(map[string]any{"name": args[0], "url": dest.url, "secret": secret,
				"audiences": dest.audiences, "channel": dest.channel})
			if err != nil {
				return err
			}
			var info engine.DestinationInfo
			if err := c.do(cmd.Context(), http.MethodPost, "/v1/destinations", body, &info); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "created destination %s → %s (audiences %s, channel %s)\n", info.Name, info.URL,
				strings.Join(info.Audiences, ", "), info.Channel)
			return nil
		},
	}
	add.Flags().StringVar(&dest.url, "url", "", "the URL transitions are POSTed to (required)")
	add.Flags().StringSliceVar(&dest.audiences, "audience", nil, "an audience whose transitions it receives (repeatable, required)")
	add.Flags().StringVar(&dest.channel, "channel", "", "consent channel checked per delivery: email, sms, push, ads, web, or none (required)")
	add.Flags().StringVar(&dest.secretFile, "secret-file", "", "file whose first line is the signing secret (default: standard input)")
	for _, f := range []string{"url", "audience", "channel"} {
		_ = add.MarkFlagRequired(f)
	}

	var listOut, showOut string
	list := &cobra.Command{
		Use:   "list",
		Short: "List destinations with their delivery statistics",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := checkOutput(listOut); err != nil {
				return err
			}
			c, err := newClient(server, token)
			if err != nil {
				return err
			}
			var page struct {
				Destinations []engine.DestinationInfo `json:"destinations"`
			}
			if err := c.do(cmd.Context(), http.MethodGet, "/v1/destinations", nil, &page); err != nil {
				return err
			}
			if listOut == outputJSON {
				return printJSON(cmd.OutOrStdout(), page)
			}
			rows := make([][]string, len(page.Destinations))
			for i, d := range page.Destinations {
				rows[i] = destinationRow(d)
			}
			return printTable(cmd.OutOrStdout(), destinationHeader, rows)
		},
	}
	addOutputFlag(list, &listOut)
	show := &cobra.Command{
		Use:   "show NAME",
		Short: "Show a destination with its delivery statistics",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkOutput(showOut); err != nil {
				return err
			}
			c, err := newClient(server, token)
			if err != nil {
				return err
			}
			var d engine.DestinationInfo
			if err := c.do(cmd.Context(), http.MethodGet, "/v1/destinations/"+url.PathEscape(args[0]), nil, &d); err != nil {
				return err
			}
			if showOut == outputJSON {
				return printJSON(cmd.OutOrStdout(), d)
			}
			last := ""
			if !d.Stats.LastErrorTime.IsZero() {
				last = d.Stats.LastErrorTime.UTC().Format(time.RFC3339) + " " + d.Stats.LastError
			}
			return printTable(cmd.OutOrStdout(), []string{"FIELD", "VALUE"}, [][]string{
				{"name", d.Name}, {"url", d.URL}, {"audiences", strings.Join(d.Audiences, ", ")}, {"channel", d.Channel},
				{"version", fmt.Sprint(d.Version)}, {"delivered", fmt.Sprint(d.Stats.Delivered)},
				{"failed_attempts", fmt.Sprint(d.Stats.FailedAttempts)}, {"dead_lettered", fmt.Sprint(d.Stats.DeadLettered)},
				{"skipped", fmt.Sprint(d.Stats.Skipped)}, {"lag", fmt.Sprint(d.Stats.Lag)}, {"running", fmt.Sprint(d.Stats.Running)},
				{"last_error", last},
			})
		},
	}
	addOutputFlag(show, &showOut)
	rm := &cobra.Command{
		Use:   "rm NAME",
		Short: "Delete a destination (its queue and position go with it)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := newClient(server, token)
			if err != nil {
				return err
			}
			if err := c.do(cmd.Context(), http.MethodDelete, "/v1/destinations/"+url.PathEscape(args[0]), nil, nil); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "deleted destination %s\n", args[0])
			return nil
		},
	}
	cmd.AddCommand(add, list, show, rm)
	return cmd
}

var destinationHeader = []string{"NAME", "CHANNEL", "AUDIENCES", "URL", "DELIVERED", "SKIPPED", "DEAD", "LAG", "RUNNING"}

func destinationRow(d engine.DestinationInfo) []string {
	return []string{d.Name, d.Channel, strings.Join(d.Audiences, ","), d.URL, fmt.Sprint(d.Stats.Delivered),
		fmt.Sprint(d.Stats.Skipped), fmt.Sprint(d.Stats.DeadLettered), fmt.Sprint(d.Stats.Lag), fmt.Sprint(d.Stats.Running)}
}
