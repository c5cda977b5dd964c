package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"strings"

	"github.com/aurumcdp/aurum/engine"
	"github.com/spf13/cobra"
)

func newDestinationCmd() *cobra.Command {
	var server, token string
	cmd := &cobra.Command{
		Use:   "destination",
		Short: "Manage destinations: webhooks and connectors (HubSpot, Salesforce, Meta, Google, SMTP, SMS)",
		Long: `Manage destinations. A webhook (the default kind): each entry into and exit from the
destination's audiences is POSTed to its URL, signed with its secret (Aurum-Signature:
t=<unix>,v1=<hex HMAC-SHA256 of "<t>.<body>">), retried with backoff and dead-lettered after a
bound. --channel is the consent channel every delivery checks (a person without consent for it
is skipped), or none for a system that contacts nobody. The secret is read from --secret-file
or the first line of standard input (never from a flag), at least 16 characters.

A connector (--kind hubspot|salesforce|meta_audience|google_customer_match|smtp|sms) keeps a tool in step with the audiences:
it first sends the current members, then the entries and exits. Its configuration, credentials
included, is a JSON object read from --config-file (docs/connectors.md lists each kind's
fields); the credentials are sealed and never shown. Its channel is the kind's.`,
		Example: `  aurum destination add crm-sync --url https://crm.example.com/hooks/aurum --audience buyers --channel email --secret-file hook.secret
  aurum destination add texts --kind sms --audience buyers --config-file twilio.json
  aurum destination list
  aurum destination show crm-sync --output json
  aurum destination rm crm-sync`,
	}
	addClientFlags(cmd, &server, &token)
	var dest struct {
		kind, url, channel, secretFile, configFile string
		audiences                                  []string
	}
	add := &cobra.Command{
		Use:   "add NAME (--url URL --channel email|sms|push|ads|web|none [--secret-file FILE] | --kind KIND --config-file FILE) --audience A [--audience B]",
		Short: "Create a destination: a webhook (transitions from now on) or a connector (members first, then transitions)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			req := map[string]any{"name": args[0], "audiences": dest.audiences}
			if dest.kind == "" || dest.kind == "webhook" {
				if dest.url == "" || dest.channel == "" {
					return fmt.Errorf("a webhook needs --url and --channel")
				}
				secret, err := readSecret(cmd.InOrStdin(), dest.secretFile, "--secret-file", "secret")
				if err != nil {
					return err
				}
				req["url"], req["secret"], req["channel"] = dest.url, secret, dest.channel
			} else {
				if dest.configFile == "" {
					return fmt.Errorf("a %s destination needs --config-file (a JSON object; docs/connectors.md)", dest.kind)
				}
				raw, err := os.ReadFile(dest.configFile)
				if err != nil {
					return err
				}
				if !json.Valid(raw) {
					return fmt.Errorf("--config-file %s: not JSON", dest.configFile)
				}
				req["kind"], req["config"] = dest.kind, json.RawMessage(raw)
			}
			c, err := newClient(server, token)
			if err != nil {
				return err
			}
			body, err := json.Marshal(req)
			if err != nil {
				return err
			}
			var info engine.DestinationInfo
			if err := c.do(cmd.Context(), http.MethodPost, "/v1/destinations", body, &info); err != nil {
				return err
			}
			target := info.URL
			if info.Kind != "webhook" {
				target = info.Kind
			}
			fmt.Fprintf(cmd.OutOrStdout(), "created destination %s → %s (audiences %s, channel %s)\n", info.Name, target,
				strings.Join(info.Audiences, ", "), info.Channel)
			return nil
		},
	}
	add.Flags().StringVar(&dest.kind, "kind", "webhook", "webhook, hubspot, salesforce, meta_audience, google_customer_match, smtp or sms")
	add.Flags().StringVar(&dest.configFile, "config-file", "", "a connector's configuration: a JSON file (credentials included)")
	add.Flags().StringVar(&dest.url, "url", "", "a webhook's URL, transitions are POSTed to it")
	add.Flags().StringSliceVar(&dest.audiences, "audience", nil, "an audience whose transitions it receives (repeatable, required)")
	add.Flags().StringVar(&dest.channel, "channel", "", "a webhook's consent channel checked per delivery: email, sms, push, ads, web, or none")
	add.Flags().StringVar(&dest.secretFile, "secret-file", "", "file whose first line is the signing secret (default: standard input)")
	_ = add.MarkFlagRequired("audience")

	list := newListCmd("list", "List destinations with their delivery statistics", cobra.NoArgs, &server, &token,
		func([]string) string { return "/v1/destinations" },
		typedRows(func(page struct {
			Destinations []engine.DestinationInfo `json:"destinations"`
		}) ([]string, [][]string) {
			rows := make([][]string, len(page.Destinations))
			for i, d := range page.Destinations {
				rows[i] = destinationRow(d)
			}
			return destinationHeader, rows
		}))
	show := newListCmd("show NAME", "Show a destination with its delivery statistics", cobra.ExactArgs(1), &server, &token,
		func(args []string) string { return "/v1/destinations/" + url.PathEscape(args[0]) },
		typedRows(destinationFields))
	rm := newDeleteCmd("rm NAME", "Delete a destination (its queue and position go with it)", &server, &token, "destinations", "deleted destination")
	cmd.AddCommand(add, list, show, rm)
	return cmd
}

var destinationHeader = []string{"NAME", "KIND", "CHANNEL", "AUDIENCES", "URL", "DELIVERED", "SKIPPED", "DEAD", "LAG", "RUNNING"}

func destinationRow(d engine.DestinationInfo) []string {
	return []string{d.Name, d.Kind, d.Channel, strings.Join(d.Audiences, ","), d.URL, fmt.Sprint(d.Stats.Delivered),
		fmt.Sprint(d.Stats.Skipped), fmt.Sprint(d.Stats.DeadLettered), fmt.Sprint(d.Stats.Lag), fmt.Sprint(d.Stats.Running)}
}

// destinationFields is the table of destination show.
func destinationFields(d engine.DestinationInfo) ([]string, [][]string) {
	last := ""
	if !d.Stats.LastErrorTime.IsZero() {
		last = rfc3339(d.Stats.LastErrorTime) + " " + d.Stats.LastError
	}
	return []string{"FIELD", "VALUE"}, [][]string{
		{"name", d.Name}, {"kind", d.Kind}, {"url", d.URL}, {"config", string(d.Config)}, {"first_sync", d.Stats.FirstSync},
		{"synced", fmt.Sprint(d.Stats.Synced)}, {"removed", fmt.Sprint(d.Stats.Removed)}, {"audiences", strings.Join(d.Audiences, ", ")}, {"channel", d.Channel},
		{"version", fmt.Sprint(d.Version)}, {"delivered", fmt.Sprint(d.Stats.Delivered)},
		{"failed_attempts", fmt.Sprint(d.Stats.FailedAttempts)}, {"dead_lettered", fmt.Sprint(d.Stats.DeadLettered)},
		{"skipped", fmt.Sprint(d.Stats.Skipped)}, {"lag", fmt.Sprint(d.Stats.Lag)}, {"running", fmt.Sprint(d.Stats.Running)},
		{"last_error", last},
	}
}
