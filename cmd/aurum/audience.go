package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/aurumcdp/aurum/api"
	"github.com/aurumcdp/aurum/engine/query"
	"github.com/spf13/cobra"
)

// ruleHelp is the rule language in brief, for the audience commands' help.
const ruleHelp = `Rules (docs/rules.md has the whole language). A person is in an audience exactly while
its rule holds; windows ("90d", "2h", ...) end at the current log time. Examples:

  1 bought without returning   count("Order Completed", "90d") >= 1 and count("Order Refunded", "90d") == 0
  2 high spenders              sum("Order Completed", "revenue", "365d") >= 1000
  3 lapsed buyers              count("Order Completed") >= 2 and days_since("Order Completed") > 90
  4 browsers                   count("Product Viewed", "7d") >= 5 and count("Order Completed", "30d") == 0
  5 loyalty                    traits.loyalty_tier in ["gold", "platinum"] and traits.country == "DK"
  6 claimers                   count("Order Refunded", "180d", properties.reason == "damaged") >= 2
  7 cart abandoners            funnel(["Product Viewed", "Product Added"], "2h") and count("Order Completed", "1d") == 0
  8 combined                   in_audience("high-spenders") and not in_audience("claimers")

Quote the rule for the shell with single quotes, or pass --rule-file FILE (- for stdin).`

func newAudienceCmd() *cobra.Command {
	var server, token string
	cmd := &cobra.Command{
		Use:   "audience",
		Short: "Manage audiences (rule-based segments) and export their members",
		Long: `Manage audiences: rule-based segments a person is in exactly while the rule holds.
Members enter and leave as events arrive and as time windows run out; each change is
published on aurum.audience.<name>.entered / .exited.

` + ruleHelp,
		Example: `  aurum audience add buyers --rule 'count("Order Completed", "90d") >= 1 and count("Order Refunded", "90d") == 0' \
      --description "bought in the last 90 days, no refund"
  aurum audience list
  aurum audience members buyers --all
  aurum audience export buyers --channel email --format csv --out buyers.csv
  aurum audience suggest`,
	}
	addClientFlags(cmd, &server, &token)
	cmd.AddCommand(
		newAudiencePutCmd(&server, &token, false),
		newAudiencePutCmd(&server, &token, true),
		newAudienceListCmd(&server, &token),
		newAudienceSuggestCmd(&server, &token),
		newListCmd("show NAME", "Print an audience: rule, description, version, size, times", cobra.ExactArgs(1), &server, &token,
			func(args []string) string { return "/v1/audiences/" + url.PathEscape(args[0]) },
			func(raw []byte) ([]string, [][]string, error) {
				var a query.AudienceInfo
				err := json.Unmarshal(raw, &a)
				return []string{"FIELD", "VALUE"}, [][]string{{"name", a.Name}, {"size", strconv.FormatInt(a.Size, 10)},
					{"version", strconv.FormatInt(a.Version, 10)}, {"rule", strings.Join(strings.Fields(a.Rule), " ")},
					{"description", a.Description}, {"created", rfc3339(time.UnixMilli(a.Created))},
					{"updated", rfc3339(time.UnixMilli(a.Updated))}}, err
			}),
		newDeleteCmd("rm NAME", "Delete an audience (its members exit)", &server, &token, "audiences", "deleted audience", "delete"),
		newAudienceMembersCmd(&server, &token),
		newAudienceExportCmd(&server, &token),
	)
	return cmd
}

// newAudiencePutCmd is `audience add` (POST; refuses an existing name) or,
// with update, `audience update` (PUT of an existing audience; the fields
// not given keep their values).
func newAudiencePutCmd(server, token *string, update bool) *cobra.Command {
	var rule, ruleFile, description string
	cmd := &cobra.Command{
		Use:   "add NAME --rule RULE [--description TEXT]",
		Short: "Create an audience and print it",
		Long: `Create an audience and print it as JSON. Names are 1-64 characters of a-z, 0-9, _ and -.
Existing events count at once: the node backfills the audience, so its size grows
while that runs. A rule that does not compile is refused with its line and column.

` + ruleHelp,
		Example: `  aurum audience add high-spenders --rule 'sum("Order Completed", "revenue", "365d") >= 1000'
  aurum audience add cart-abandoners --rule-file abandoners.rule --description "viewed and added, no order"`,
		Args: cobra.ExactArgs(1),
	}
	if update {
		cmd.Use = "update NAME [--rule RULE] [--description TEXT]"
		cmd.Short = "Change an audience's rule or description and print it"
		cmd.Long = `Change an audience's rule or description (the one not given keeps its value) and print
the audience as JSON. A new rule raises the version; members are re-evaluated.

` + ruleHelp
		cmd.Example = `  aurum audience update buyers --rule 'count("Order Completed", "30d") >= 1'
  aurum audience update buyers --description "bought in the last 30 days"`
	}
	cmd.Flags().StringVar(&rule, "rule", "", "the audience rule")
	cmd.Flags().StringVar(&ruleFile, "rule-file", "", "read the rule from FILE (- for stdin)")
	cmd.Flags().StringVar(&description, "description", "", "what the audience is for")
	cmd.MarkFlagsMutuallyExclusive("rule", "rule-file")
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		name := args[0]
		f := cmd.Flags()
		haveRule := f.Changed("rule") || f.Changed("rule-file")
		if ruleFile != "" {
			var data []byte
			var err error
			if ruleFile == "-" {
				data, err = io.ReadAll(io.LimitReader(cmd.InOrStdin(), 1<<20))
			} else {
				data, err = os.ReadFile(ruleFile)
			}
			if err != nil {
				return fmt.Errorf("--rule-file: %w", err)
			}
			rule = strings.TrimRight(string(data), "\r\n")
		}
		if !update && !haveRule {
			return errors.New("--rule is required (see aurum audience add --help for examples)")
		}
		if update && !haveRule && !f.Changed("description") {
			return errors.New("nothing to update: give --rule, --rule-file or --description")
		}
		c, err := newClient(*server, *token)
		if err != nil {
			return err
		}
		method, path := http.MethodPost, "/v1/audiences"
		if update {
			method, path = http.MethodPut, "/v1/audiences/"+url.PathEscape(name)
			var cur struct {
				Rule        string `json:"rule"`
				Description string `json:"description"`
			}
			if err := c.do(cmd.Context(), http.MethodGet, path, nil, &cur); err != nil {
				return err
			}
			if !haveRule {
				rule = cur.Rule
			}
			if !f.Changed("description") {
				description = cur.Description
			}
		}
		body, err := json.Marshal(map[string]string{"name": name, "description": description, "rule": rule})
		if err != nil {
			return err
		}
		var out any
		if err := c.doRule(cmd.Context(), method, path, body, &out); err != nil {
			var re *ruleError
			if errors.As(err, &re) {
				fmt.Fprint(cmd.ErrOrStderr(), re.explain(rule))
				return exitError{code: 1}
			}
			return err
		}
		return printJSON(cmd.OutOrStdout(), out)
	}
	return cmd
}

// ruleError is the API's 400 answer for a rule that does not compile.
type ruleError struct {
	Msg    string `json:"error"`
	Field  string `json:"field"`
	Line   int    `json:"line"`
	Column int    `json:"column"`
	Reason string `json:"reason"`
}

func (e *ruleError) Error() string { return e.Msg }

// explain prints the error with the rule's line and a caret under the
// column (1-based, in code points).
func (e *ruleError) explain(rule string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "aurum: the rule does not compile: line %d, column %d: %s\n", e.Line, e.Column, e.Reason)
	lines := strings.Split(rule, "\n")
	if e.Line >= 1 && e.Line <= len(lines) && e.Column >= 1 {
		line := strings.ReplaceAll(lines[e.Line-1], "\t", " ")
		if col := e.Column - 1; col <= utf8.RuneCountInString(line) {
			fmt.Fprintf(&b, "  %s\n  %s^\n", line, strings.Repeat(" ", col))
		}
	}
	return b.String()
}

// doRule is c.do for requests that carry a rule: a 400 on the field "rule"
// comes back as a *ruleError with the problem's position.
func (c *client) doRule(ctx context.Context, method, path string, body []byte, out any) error {
	req, err := http.NewRequestWithContext(ctx, method, c.server+path, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+c.token)
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.hc.Do(req)
	if err != nil {
		return fmt.Errorf("cannot reach %s: %w", c.server, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return err
	}
	if resp.StatusCode >= 300 {
		var re ruleError
		if resp.StatusCode == http.StatusBadRequest && json.Unmarshal(data, &re) == nil && re.Field == "rule" && re.Line > 0 {
			return &re
		}
		return newAPIError(resp.StatusCode, data)
	}
	return json.Unmarshal(data, out)
}

func newAudienceListCmd(server, token *string) *cobra.Command {
	var asJSON bool
	var output string
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List audiences: name, size, version and rule",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if asJSON {
				output = outputJSON
			}
			return getOutput(cmd, *server, *token, output, "/v1/audiences", typedRows(audienceRows))
		},
	}
	addOutputFlag(cmd, &output)
	cmd.Flags().BoolVar(&asJSON, "json", false, "the same as --output json")
	_ = cmd.Flags().MarkHidden("json")
	return cmd
}

func newAudienceMembersCmd(server, token *string) *cobra.Command {
	var limit int
	var cursor, output, search string
	var all, withIDs bool
	cmd := &cobra.Command{
		Use:   "members NAME [--limit N] [--cursor C | --all] [--identifiers] [--search Q]",
		Short: "List an audience's members (profile id, since, rule version)",
		Long: `List an audience's members in profile id order, one page of --limit: a table (profile id,
since, rule version; the cursor of the next page on stderr), or with --output json the API's
page ({"members": [...], "next": cursor}; pass next to --cursor for the following page).
With --all the command follows the cursors itself and prints every member (with --output
json one {"members": [...]}), fetching --limit at a time. --identifiers adds each member's
identifiers (a column of type:value, or {"email": ["ann@example.com"], ...}); for traits,
or only the people reachable on a channel, use aurum audience export.

--search Q finds members on the server: Q of the form type:value naming a known identifier
(email:ann@example.com, user_id:42) is looked up exactly, at once whatever the audience's
size; any other Q is the start of an identifier (an email, a user id, a phone number...)
compared without case, the members scanned in profile id order (at most 5000 per page:
follow the cursor, or --all, to search the whole audience).`,
		Example: `  aurum audience members buyers --limit 10
  aurum audience members buyers --search email:rob@example.com --identifiers
  aurum audience members buyers --search rob@ --all --identifiers
  aurum audience members buyers --all --output json | jq -r '.members[].profile_id'
  aurum audience members buyers --identifiers --all --output json | jq -r '.members[].identifiers.email[0]'`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkOutput(output); err != nil {
				return err
			}
			if limit < 1 || limit > 10000 {
				return fmt.Errorf("--limit must be in [1, 10000], got %d", limit)
			}
			base := "/v1/audiences/" + url.PathEscape(args[0]) + "/members?limit=" + strconv.Itoa(limit)
			if withIDs {
				base += "&identifiers=true"
			}
			if cmd.Flags().Changed("search") {
				if strings.TrimSpace(search) == "" {
					return errors.New("--search is empty: give type:value (e.g. email:ann@example.com) or the start of an identifier")
				}
				base += "&q=" + url.QueryEscape(search)
			}
			c, err := newClient(*server, *token)
			if err != nil {
				return err
			}
			if output == outputJSON && all {
				return printAllMembers(cmd.Context(), c, cmd.OutOrStdout(), base, cursor)
			}
			for first := true; ; first = false {
				var raw json.RawMessage
				if err := c.do(cmd.Context(), http.MethodGet, base+"&cursor="+url.QueryEscape(cursor), nil, &raw); err != nil {
					return err
				}
				if output == outputJSON {
					return printOutput(cmd.OutOrStdout(), output, raw, nil)
				}
				next, err := printMemberRows(cmd.OutOrStdout(), raw, withIDs, first)
				if err != nil {
					return err
				}
				switch {
				case next == "":
					return nil
				case !all:
					fmt.Fprintf(cmd.ErrOrStderr(), "more members: --cursor %s (or --all)\n", next)
					return nil
				case next == cursor:
					return fmt.Errorf("members: the server returned the same cursor %q twice", cursor)
				}
				cursor = next
			}
		},
	}
	cmd.Flags().IntVar(&limit, "limit", 100, "members per page (1-10000)")
	cmd.Flags().StringVar(&cursor, "cursor", "", "start after this cursor (the previous page's next)")
	cmd.Flags().BoolVar(&all, "all", false, "follow the cursors and print every member")
	cmd.Flags().BoolVar(&withIDs, "identifiers", false, "with each member's identifiers (email, phone, user_id, ...)")
	cmd.Flags().StringVar(&search, "search", "", "only members with this identifier (type:value) or an identifier starting with it")
	addOutputFlag(cmd, &output)
	return cmd
}

// memberPage is a page of GET /v1/audiences/{name}/members.
type memberPage struct {
	Members []struct {
		ProfileID   string              `json:"profile_id"`
		Since       time.Time           `json:"since"`
		RuleVersion int64               `json:"rule_version"`
		Identifiers map[string][]string `json:"identifiers"`
	} `json:"members"`
	Next string `json:"next"`
}

// printMemberRows prints a page of members as table rows (the header
// first when header) and returns the next page's cursor. Pages of one
// listing align: the columns but the last have fixed widths (a ULID, an
// RFC 3339 time in seconds).
func printMemberRows(w io.Writer, raw []byte, withIDs, header bool) (string, error) {
	var page memberPage
	if err := json.Unmarshal(raw, &page); err != nil {
		return "", fmt.Errorf("the node's answer: %w", err)
	}
	line := func(cells ...string) {
		if withIDs {
			fmt.Fprintf(w, "%-26s  %-20s  %-12s  %s\n", cells[0], cells[1], cells[2], cells[3])
		} else {
			fmt.Fprintf(w, "%-26s  %-20s  %s\n", cells[0], cells[1], cells[2])
		}
	}
	if header {
		line("PROFILE_ID", "SINCE", "RULE_VERSION", "IDENTIFIERS")
	}
	for _, m := range page.Members {
		var ids []string
		types := make([]string, 0, len(m.Identifiers))
		for typ := range m.Identifiers {
			types = append(types, typ)
		}
		sort.Strings(types)
		for _, typ := range types {
			for _, v := range m.Identifiers[typ] {
				ids = append(ids, typ+":"+v)
			}
		}
		line(m.ProfileID, rfc3339(m.Since), strconv.FormatInt(m.RuleVersion, 10), strings.Join(ids, " "))
	}
	return page.Next, nil
}

// printAllMembers pages through the members from cursor and prints them as
// one JSON object, page by page (memory holds one page).
func printAllMembers(ctx context.Context, c *client, w io.Writer, base, cursor string) error {
	first := true
	if _, err := io.WriteString(w, "{\n  \"members\": ["); err != nil {
		return err
	}
	for {
		var page struct {
			Members []json.RawMessage `json:"members"`
			Next    string            `json:"next"`
		}
		if err := c.do(ctx, http.MethodGet, base+"&cursor="+url.QueryEscape(cursor), nil, &page); err != nil {
			return err
		}
		for _, m := range page.Members {
			var buf bytes.Buffer
			if err := json.Indent(&buf, m, "    ", "  "); err != nil {
				return err
			}
			sep := ",\n    "
			if first {
				sep, first = "\n    ", false
			}
			if _, err := io.WriteString(w, sep+buf.String()); err != nil {
				return err
			}
		}
		if page.Next == "" {
			break
		}
		if page.Next == cursor {
			return fmt.Errorf("members: the server returned the same cursor %q twice", cursor)
		}
		cursor = page.Next
	}
	end := "\n  ]\n}\n"
	if first {
		end = "]\n}\n"
	}
	_, err := io.WriteString(w, end)
	return err
}

func newAudienceExportCmd(server, token *string) *cobra.Command {
	var format, out, channel string
	cmd := &cobra.Command{
		Use:   "export NAME --channel email|sms|push|ads|web|none [--format csv|json|ndjson|xml] [--out FILE]",
		Short: "Export an audience's members with their identifiers and traits",
		Long: `Stream every member of an audience with its identifiers and traits to stdout or --out.
With --out the file appears only when the export is complete (it is written beside it
under a temporary name and renamed); a failed export leaves no file.

--channel (required) is what the export will be used for: only the members reachable on
it are exported. Members without consent for it, and members without an address for it
(an email address for email, a phone number for sms), are left out; a summary on stderr
says how many members were exported and how many were left out, and why. "none" is for
uses that contact nobody (analysis, a warehouse): it leaves nobody out.

Formats:
  csv     header profile_id,since,rule_version,email,phone,user_id,identifiers,traits;
          several values of one type are separated by ";", the identifiers column holds the
          other types as type:value;type:value (";" and "\" in a value escaped with "\"),
          traits is a JSON object
  json    an array of {"profile_id","since","rule_version","identifiers":{type:[values]},"traits"}
  ndjson  the same objects, one per line
  xml     <audience name=".." exported=".."><member profile_id=".." since=".." rule_version="..">
          <identifier type="email">..</identifier><trait name="..">..</trait></member></audience>`,
		Example: `  aurum audience export buyers --channel email --format csv --out buyers.csv
  aurum audience export buyers --channel sms --format ndjson | jq -r '.identifiers.phone[0]'`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			switch format {
			case "csv", "json", "ndjson", "xml":
			default:
				return fmt.Errorf("--format: %q is not csv, json, ndjson or xml", format)
			}
			if channel == "" {
				return errors.New("--channel is required: email, sms, push, ads or web (members without consent for it are left out), or none for a use that contacts nobody")
			}
			c, err := newClient(*server, *token)
			if err != nil {
				return err
			}
			path := "/v1/audiences/" + url.PathEscape(args[0]) + "/export?format=" + format + "&channel=" + url.QueryEscape(channel)
			var tr http.Header
			if out == "" || out == "-" {
				tr, err = c.stream(cmd.Context(), path, cmd.OutOrStdout())
			} else {
				tr, err = exportToFile(cmd.Context(), c, path, out)
			}
			if err == nil {
				fmt.Fprintln(cmd.ErrOrStderr(), exportSummary(args[0], channel, tr))
			}
			return err
		},
	}
	cmd.Flags().StringVar(&channel, "channel", "", "what the export is used for: email, sms, push, ads, web, or none (required)")
	cmd.Flags().StringVar(&format, "format", "csv", "csv, json, ndjson or xml")
	cmd.Flags().StringVarP(&out, "out", "o", "", "write to FILE instead of stdout")
	return cmd
}

// exportToFile streams path into a temporary file beside name and renames it
// to name once the whole body arrived.
func exportToFile(ctx context.Context, c *client, path, name string) (trailer http.Header, err error) {
	f, err := os.CreateTemp(filepath.Dir(name), "."+filepath.Base(name)+".tmp-*")
	if err != nil {
		return nil, fmt.Errorf("--out: %w", err)
	}
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(f.Name())
		}
	}()
	if trailer, err = c.stream(ctx, path, f); err != nil {
		return nil, err
	}
	if err = f.Sync(); err != nil {
		return nil, fmt.Errorf("--out: %w", err)
	}
	if err = f.Close(); err != nil {
		return nil, fmt.Errorf("--out: %w", err)
	}
	if err = os.Chmod(f.Name(), 0o644); err != nil {
		return nil, fmt.Errorf("--out: %w", err)
	}
	if err = os.Rename(f.Name(), name); err != nil {
		return nil, fmt.Errorf("--out: %w", err)
	}
	return trailer, nil
}

// exportSummary is the line an export prints on stderr: how many members
// were exported and how many were left out, and why (the response's
// trailers, api.TrailerExported and the others).
func exportSummary(audience, channel string, tr http.Header) string {
	n := func(k string) string {
		if v := tr.Get(k); v != "" {
			return v
		}
		return "0"
	}
	line := fmt.Sprintf("aurum: %s for channel %s: %s exported", audience, channel, n(api.TrailerExported))
	var out []string
	if v := n(api.TrailerConsentExcluded); v != "0" {
		out = append(out, v+" without consent for "+channel)
	}
	if v := n(api.TrailerNoAddressExcluded); v != "0" {
		out = append(out, v+" without an address for "+channel)
	}
	if len(out) == 0 {
		return line + "; nobody left out"
	}
	return line + "; left out: " + strings.Join(out, ", ")
}

// stream GETs path and copies the body to w as it arrives. It returns the
// response's trailers. The client's overall timeout does not apply (an
// export may take long); ctx ends it.
func (c *client) stream(ctx context.Context, path string, w io.Writer) (http.Header, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.server+path, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "Bearer "+c.token)
	hc := *c.hc
	hc.Timeout = 0
	resp, err := hc.Do(req)
	if err != nil {
		return nil, fmt.Errorf("cannot reach %s: %w", c.server, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode >= 300 {
		data, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		return nil, newAPIError(resp.StatusCode, data)
	}
	n, err := io.Copy(w, resp.Body)
	if err != nil {
		return nil, fmt.Errorf("export interrupted after %d bytes: %w", n, err)
	}
	return resp.Trailer, nil
}

// audienceRows is the table of audience list.
func audienceRows(page struct {
	Audiences []struct {
		Name    string `json:"name"`
		Rule    string `json:"rule"`
		Version int64  `json:"version"`
		Size    int64  `json:"size"`
	} `json:"audiences"`
}) ([]string, [][]string) {
	rows := make([][]string, len(page.Audiences))
	for i, a := range page.Audiences {
		rows[i] = []string{a.Name, fmt.Sprint(a.Size), fmt.Sprint(a.Version), strings.Join(strings.Fields(a.Rule), " ")}
	}
	return []string{"NAME", "SIZE", "VERSION", "RULE"}, rows
}
