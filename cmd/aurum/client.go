package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"
)

// client talks to a running node's HTTP API with a bearer token (the admin
// token or an API token).
type client struct {
	server, token string
	hc            *http.Client
}

func addClientFlags(cmd *cobra.Command, server, token *string) {
	addClientFlagsDefault(cmd, server, token, "http://127.0.0.1:8080")
}

// addClientFlagsDefault is addClientFlags with the --server used when
// $AURUM_SERVER is not set (digest: none, it then reads a data directory).
func addClientFlagsDefault(cmd *cobra.Command, server, token *string, fallback string) {
	def := os.Getenv("AURUM_SERVER")
	if def == "" {
		def = fallback
	}
	cmd.PersistentFlags().StringVar(server, "server", def, "Aurum HTTP API base URL (default $AURUM_SERVER)")
	cmd.PersistentFlags().StringVar(token, "token", "", "bearer token: the admin token or an API token with the role the command needs (default $AURUM_ADMIN_TOKEN)")
	var caFile string
	cmd.PersistentFlags().StringVar(&caFile, "ca-file", "", "PEM file of the CA to trust for an https --server with a private certificate (default $AURUM_CA_FILE)")
	// newClient reads $AURUM_CA_FILE; the flag overrides it for this run.
	prev := cmd.PersistentPreRunE
	cmd.PersistentPreRunE = func(c *cobra.Command, args []string) error {
		if caFile != "" {
			if err := os.Setenv("AURUM_CA_FILE", caFile); err != nil {
				return err
			}
		}
		if prev != nil {
			return prev(c, args)
		}
		return nil
	}
}

// httpClient returns the CLI's HTTP client; with caFile it trusts the CAs
// in that PEM file (instead of the system's) for https servers.
func httpClient(caFile string) (*http.Client, error) {
	hc := &http.Client{Timeout: 60 * time.Second}
	if caFile == "" {
		return hc, nil
	}
	pem, err := os.ReadFile(caFile)
	if err != nil {
		return nil, fmt.Errorf("--ca-file: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("--ca-file: %s holds no PEM certificate", caFile)
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	hc.Transport = tr
	return hc, nil
}

func newClient(server, token string) (*client, error) {
	if token == "" {
		token = os.Getenv("AURUM_ADMIN_TOKEN")
	}
	if token == "" {
		return nil, fmt.Errorf("no admin token: set $AURUM_ADMIN_TOKEN or --token (aurum serve prints one on first start)")
	}
	if _, err := url.Parse(server); err != nil {
		return nil, fmt.Errorf("--server: %w", err)
	}
	hc, err := httpClient(os.Getenv("AURUM_CA_FILE"))
	if err != nil {
		return nil, err
	}
	return &client{server: strings.TrimRight(server, "/"), token: token, hc: hc}, nil
}

// apiError is an error response of the API.
type apiError struct {
	Status int
	Msg    string `json:"error"`
	Field  string `json:"field"`
	Body   []byte `json:"-"` // the whole answer
}

// pathParam are the fields of error answers that name a URL parameter
// (GET /v1/profiles/{ref}, ...): the CLI's user wrote an argument, not it.
var pathParam = map[string]bool{"ref": true, "id": true, "name": true, "source": true}

// newAPIError decodes the error answer data of status.
func newAPIError(status int, data []byte) *apiError {
	ae := &apiError{Status: status, Body: data}
	if json.Unmarshal(data, ae) != nil || ae.Msg == "" {
		ae.Msg = strings.TrimSpace(string(data))
	}
	if ae.Msg == "" {
		ae.Msg = http.StatusText(status)
	}
	return ae
}

// Error says what was wrong and, where the answer's status tells, what to
// do. The field is named for bad input (it is the flag or the part of the
// body the user wrote); elsewhere it names a URL parameter, which the user
// did not write.
func (e *apiError) Error() string {
	msg := e.Msg
	if e.Field != "" && !pathParam[e.Field] && (e.Status == http.StatusBadRequest || e.Status == http.StatusRequestEntityTooLarge) &&
		!strings.HasPrefix(msg, e.Field) && !strings.Contains(msg, e.Field+" ") {
		msg = e.Field + ": " + msg
	}
	hint := ""
	switch {
	case e.Status == http.StatusUnauthorized:
		hint = ": set $AURUM_ADMIN_TOKEN or --token to the admin token (aurum serve prints it on first start; README: Lost the admin token?) or to a valid API token"
	case e.Status == http.StatusForbidden:
		hint = ": use a token whose role may do this (aurum token add --role admin|editor|viewer|privacy)"
	case e.Status == http.StatusNotFound:
		hint = ": check the name or identifier (the list commands show what exists)"
	case e.Status == http.StatusRequestEntityTooLarge:
		hint = ": send less at a time (README: Limits you may hit)"
	case e.Status == http.StatusTooManyRequests || e.Status == http.StatusServiceUnavailable:
		hint = ": the node is busy or not ready; try again shortly"
	case e.Status >= 500:
		hint = ": the node's log says more"
	}
	return fmt.Sprintf("%s (HTTP %d)%s", msg, e.Status, hint)
}

// do sends a request and decodes a JSON answer into out (when non-nil).
func (c *client) do(ctx context.Context, method, path string, body []byte, out any) error {
	req, err := http.NewRequestWithContext(ctx, method, c.server+path, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+c.token)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return fmt.Errorf("cannot reach %s: %w", c.server, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return err
	}
	if resp.StatusCode >= 300 {
		return newAPIError(resp.StatusCode, data)
	}
	if out != nil {
		return json.Unmarshal(data, out)
	}
	return nil
}

func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false)
	return enc.Encode(v)
}

func newSourceCmd() *cobra.Command {
	var server, token string
	cmd := &cobra.Command{Use: "source", Short: "Manage ingest sources",
		Long: `Manage ingest sources. Each source has a write key (shown once, only its hash is kept) that
producers send as the HTTP Basic user name or as the NATS password of user <source>.
rotate-key gives a source a new key and keeps the old one working for --grace (default 24h,
at most 720h; 0s ends it at once) while producers switch (NATS producers on the old key are
disconnected once and reconnect with a deadline at the grace's end); rm deletes a source and
ends its keys at once, closing its producers' NATS connections (its events stay).`,
		Example: `  aurum source add shop
  aurum source list
  aurum source rotate-key shop --grace 24h
  aurum source rm shop`}
	addClientFlags(cmd, &server, &token)
	var grace time.Duration
	rotate := &cobra.Command{
		Use:   "rotate-key NAME [--grace 24h]",
		Short: "Give a source a new write key (shown once); the old one works for --grace",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := newClient(server, token)
			if err != nil {
				return err
			}
			body, _ := json.Marshal(map[string]string{"grace": grace.String()})
			var out map[string]string
			if err := c.do(cmd.Context(), http.MethodPost, "/v1/sources/"+url.PathEscape(args[0])+"/rotate-key", body, &out); err != nil {
				return err
			}
			return printJSON(cmd.OutOrStdout(), out)
		},
	}
	rotate.Flags().DurationVar(&grace, "grace", 24*time.Hour, "how long the old key keeps working (0s: not at all; at most 720h)")
	rm := newDeleteCmd("rm NAME", "Delete a source: its write keys stop working (its events stay)", &server, &token, "sources", "deleted source")
	cmd.AddCommand(rotate, rm)
	cmd.AddCommand(&cobra.Command{
		Use:   "add NAME",
		Short: "Create a source and print its write key (shown once)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := newClient(server, token)
			if err != nil {
				return err
			}
			body, _ := json.Marshal(map[string]string{"name": args[0]})
			var out map[string]string
			if err := c.do(cmd.Context(), http.MethodPost, "/v1/sources", body, &out); err != nil {
				return err
			}
			return printJSON(cmd.OutOrStdout(), out)
		},
	}, newListCmd("list", "List sources (never their keys)", cobra.NoArgs, &server, &token,
		func([]string) string { return "/v1/sources" },
		func(raw []byte) ([]string, [][]string, error) {
			var out struct {
				Sources []struct {
					Name     string    `json:"name"`
					Created  time.Time `json:"created"`
					OldUntil time.Time `json:"old_key_valid_until"`
				} `json:"sources"`
			}
			err := json.Unmarshal(raw, &out)
			rows := make([][]string, len(out.Sources))
			for i, s := range out.Sources {
				rows[i] = []string{s.Name, rfc3339(s.Created), rfc3339(s.OldUntil)}
			}
			return []string{"NAME", "CREATED", "OLD KEY VALID UNTIL"}, rows, err
		}))
	return cmd
}

func newProfileCmd() *cobra.Command {
	var server, token, getOut, eventsOut string
	var limit int
	cmd := &cobra.Command{Use: "profile", Short: "Look up Golden Customer Records"}
	addClientFlags(cmd, &server, &token)
	get := &cobra.Command{
		Use:   "get REF",
		Short: "Print the profile of an identifier, e.g. email:rob@example.com, user_id:42, profile_id:01J...",
		Long: `Print the Golden Customer Record of the person an identifier resolves to: a table of its
fields (nested ones joined with ".", e.g. identifiers.email, traits.country, audiences.vip = the
time of entry), or with --output json the API's record (GET /v1/profiles/{ref}).`,
		Example: `  aurum profile get email:rob@example.com
  aurum profile get email:rob@example.com --output json | jq .audiences`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return getOutput(cmd, server, token, getOut, "/v1/profiles/"+url.PathEscape(args[0]), fieldRows)
		},
	}
	addOutputFlag(get, &getOut)
	var cursor, histOut, histCursor string
	var histLimit int
	events := &cobra.Command{
		Use:   "events REF [--limit N] [--cursor C]",
		Short: "Print a page of a profile's events, newest first",
		Long: `Print the latest events of the person an identifier resolves to, newest first, one page of
--limit: a table (time, type, event, source, id; the cursor of the older page on stderr) or
with --output json the API's page ({"events": [...], "next": cursor}: the events as stored,
in the Segment form the sources sent; GET /v1/profiles/{ref}/events). Pass next to --cursor
for the older page.`,
		Example: `  aurum profile events email:rob@example.com --limit 5
  aurum profile events email:rob@example.com --limit 1 --output json | jq -r .next`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return getPage(cmd, server, token, eventsOut, fmt.Sprintf("/v1/profiles/%s/events?limit=%d&cursor=%s",
				url.PathEscape(args[0]), limit, url.QueryEscape(cursor)), "older events", typedRows(eventRows))
		},
	}
	events.Flags().IntVar(&limit, "limit", 20, "number of events (1-1000)")
	events.Flags().StringVar(&cursor, "cursor", "", "the older page from this cursor (the previous page's next)")
	addOutputFlag(events, &eventsOut)
	history := &cobra.Command{
		Use:   "history REF [--limit N] [--cursor C]",
		Short: "Print a profile's audience history: entries and exits with times and reasons",
		Long: `Print the audience entries and exits of the person an identifier resolves to (and of the
profiles merged into them), newest first, one page of --limit: a table (time, audience, event,
reason, rule version; the cursor of the older page on stderr) or with --output json the API's
page ({"history": [...], "next": cursor}; GET /v1/profiles/{ref}/audience-history). Reasons:
event:<id> or events (the person's events), time (a time window passed), backfill (the rule
was created or changed), audience deleted, merged (the profile was merged into another).
aurum profile get shows the audiences the person is in now.`,
		Example: `  aurum profile history email:rob@example.com
  aurum profile history email:rob@example.com --output json | jq -r '.history[] | select(.event == "exited") | .audience'`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return getPage(cmd, server, token, histOut, fmt.Sprintf("/v1/profiles/%s/audience-history?limit=%d&cursor=%s",
				url.PathEscape(args[0]), histLimit, url.QueryEscape(histCursor)), "older entries", typedRows(historyRows))
		},
	}
	history.Flags().IntVar(&histLimit, "limit", 50, "number of entries (1-1000)")
	history.Flags().StringVar(&histCursor, "cursor", "", "the older page from this cursor (the previous page's next)")
	addOutputFlag(history, &histOut)
	consent := &cobra.Command{
		Use:   "consent REF CHANNEL=true|false...",
		Short: "State a person's consent per channel (email, sms, push, ads, web)",
		Long: `State consent for the person identified by REF (an identifier such as email:rob@example.com
or phone:+4512345678; not a profile_id). The statement is a "Consent Updated" event on the
log from the internal source "aurum"; the latest statement per channel, under any of the
person's identifiers, decides. aurum profile get REF shows the result under "consent".`,
		Example: `  aurum profile consent email:rob@example.com email=false
  aurum profile consent phone:+4512345678 sms=true push=false`,
		Args: cobra.MinimumNArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			stmts := map[string]bool{}
			for _, a := range args[1:] {
				ch, v, ok := strings.Cut(a, "=")
				if !ok || (v != "true" && v != "false") {
					return fmt.Errorf("%q: want CHANNEL=true or CHANNEL=false", a)
				}
				stmts[ch] = v == "true"
			}
			body, err := json.Marshal(stmts)
			if err != nil {
				return err
			}
			c, err := newClient(server, token)
			if err != nil {
				return err
			}
			var out any
			if err := c.do(cmd.Context(), http.MethodPut, "/v1/profiles/"+url.PathEscape(args[0])+"/consent", body, &out); err != nil {
				return err
			}
			return printJSON(cmd.OutOrStdout(), out)
		},
	}
	cmd.AddCommand(get, events, history, consent, newProfileSplitCmd(&server, &token))
	return cmd
}

func newDeadLettersCmd() *cobra.Command {
	var server, token, output string
	var from uint64
	var limit int
	cmd := &cobra.Command{
		Use:   "deadletters",
		Short: "List rejected events kept on the dead-letter stream, with their reasons",
		Long: `List rejected events kept on the dead-letter stream from --from: a table (sequence, time,
source, field, reason) or with --output json the records with their payloads and the next
--from ({"dead_letters": [...], "next": N}).`,
		Example: `  aurum deadletters --limit 20
  aurum deadletters --output json | jq '.dead_letters[].payload'`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return getOutput(cmd, server, token, output, fmt.Sprintf("/v1/deadletters?from=%d&limit=%d", from, limit), typedRows(deadLetterRows))
		},
	}
	addClientFlags(cmd, &server, &token)
	cmd.Flags().Uint64Var(&from, "from", 1, "first dead-letter stream sequence")
	cmd.Flags().IntVar(&limit, "limit", 100, "maximum records (1-1000)")
	addOutputFlag(cmd, &output)
	return cmd
}

// eventRows is the table of profile events.
func eventRows(page struct {
	Events []struct {
		ID        string `json:"id"`
		Type      string `json:"type"`
		Event     string `json:"event"`
		Name      string `json:"name"`
		Source    string `json:"source"`
		Timestamp string `json:"timestamp"`
	} `json:"events"`
}) ([]string, [][]string) {
	rows := make([][]string, len(page.Events))
	for i, e := range page.Events {
		what := e.Event
		if what == "" {
			what = e.Name // a page or screen
		}
		rows[i] = []string{e.Timestamp, e.Type, what, e.Source, e.ID}
	}
	return []string{"TIME", "TYPE", "EVENT", "SOURCE", "ID"}, rows
}

// historyRows is the table of profile history.
func historyRows(page struct {
	History []struct {
		Audience    string    `json:"audience"`
		Event       string    `json:"event"`
		Time        time.Time `json:"time"`
		Reason      string    `json:"reason"`
		RuleVersion int64     `json:"rule_version"`
	} `json:"history"`
}) ([]string, [][]string) {
	rows := make([][]string, len(page.History))
	for i, h := range page.History {
		rows[i] = []string{rfc3339(h.Time), h.Audience, h.Event, h.Reason, strconv.FormatInt(h.RuleVersion, 10)}
	}
	return []string{"TIME", "AUDIENCE", "EVENT", "REASON", "RULE_VERSION"}, rows
}

// getPage is getOutput for a paged route: in a table, the cursor of the
// following page ("next") goes to stderr as "<more>: --cursor C".
func getPage(cmd *cobra.Command, server, token, output, path, more string,
	rows func(raw []byte) (header []string, rows [][]string, err error)) error {
	raw, err := getPrinted(cmd, server, token, output, path, rows)
	if err != nil {
		return err
	}
	var page struct {
		Next string `json:"next"`
	}
	if output != outputJSON && json.Unmarshal(raw, &page) == nil && page.Next != "" {
		fmt.Fprintf(cmd.ErrOrStderr(), "%s: --cursor %s\n", more, page.Next)
	}
	return nil
}

// deadLetterRows is the table of deadletters.
func deadLetterRows(page struct {
	DeadLetters []struct {
		Seq      uint64    `json:"seq"`
		Received time.Time `json:"received"`
		Source   string    `json:"source"`
		Index    int       `json:"index"`
		Field    string    `json:"field"`
		Reason   string    `json:"reason"`
	} `json:"dead_letters"`
}) ([]string, [][]string) {
	rows := make([][]string, len(page.DeadLetters))
	for i, d := range page.DeadLetters {
		rows[i] = []string{fmt.Sprint(d.Seq), rfc3339(d.Received), d.Source, fmt.Sprint(d.Index), d.Field, d.Reason}
	}
	return []string{"SEQ", "RECEIVED", "SOURCE", "INDEX", "FIELD", "REASON"}, rows
}

// newDeleteCmd is a command that deletes the object its argument names:
// DELETE /v1/<collection>/<arg>, then prints "<done> <arg>".
func newDeleteCmd(use, short string, server, token *string, collection, done string, aliases ...string) *cobra.Command {
	return &cobra.Command{
		Use:     use,
		Aliases: aliases,
		Short:   short,
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := newClient(*server, *token)
			if err != nil {
				return err
			}
			if err := c.do(cmd.Context(), http.MethodDelete, "/v1/"+collection+"/"+url.PathEscape(args[0]), nil, nil); err != nil {
				return err
			}
			_, err = fmt.Fprintf(cmd.OutOrStdout(), "%s %s\n", done, args[0])
			return err
		},
	}
}
