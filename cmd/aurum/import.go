package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/aurumcdp/aurum/importer"
	"github.com/schollz/progressbar/v3"
	"github.com/spf13/cobra"
	"golang.org/x/term"
)

type importFlags struct {
	server, token, source, format, mapping, reasons string
	ids, traits, props                              []string
	event, eventColumn, timestamp, timeLayout       string
	comma, messageID                                string
	batchBytes                                      int
	noProgress                                      bool
}

func newImportCmd() *cobra.Command {
	var f importFlags
	cmd := &cobra.Command{
		Use:   "import --source S [--format csv|json|ndjson|xml] FILE...",
		Short: "Load history files (CRM exports, POS files) into Aurum",
		Long: `Load history files through a running node. Every row becomes an event of source S and
goes through the same validation as the tracking API; rejected rows are counted and written,
with their reasons, to --reasons (created when the first row is rejected; an existing file is
never overwritten: the default name holds the time of the run). Each row gets a deterministic
messageId (unless it has one), so re-importing the same file adds nothing within the dedup
window (serve --dedup-window): the summary counts those rows as duplicates, apart from the
new (accepted) and the rejected ones. A revenue or total property that is not a number is
imported but ignored as revenue: the import warns about it (on stderr, and counted in the
summary). The progress bar is drawn on stderr when it is a terminal.

CSV needs a column mapping, from --mapping FILE (YAML) or from flags:
  --id email=email --id card=loyalty_id     identifier columns (column=type)
  --trait first_name=first_name             trait columns (column=trait)
  --prop amount=revenue                     property columns (column=property)
  --event "Order Completed" | --event-column kind
  --timestamp ts [--time-layout 2006-01-02]
JSON files hold an array of Segment messages or {"batch": [...]}; NDJSON one message per line;
XML <events><event type="track">...</event></events> (see the importer package).

Exit status: 0 when no row was rejected, 2 when some were, 1 on failure.`,
		Example: `  aurum import --source crm --id email=email --id crm_id=crm_id --trait first_name=first_name crm.csv
  aurum import --source pos --id card=loyalty_id --event "Order Completed" --prop amount=revenue --timestamp date pos.csv
  aurum import --source web events.ndjson`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error { return runImport(cmd.Context(), cmd, f, args) },
	}
	addClientFlags(cmd, &f.server, &f.token)
	fl := cmd.Flags()
	fl.StringVar(&f.source, "source", "", "source the events belong to (required)")
	fl.StringVar(&f.format, "format", "", "csv, json, ndjson or xml (default: from the file extension)")
	fl.StringVar(&f.mapping, "mapping", "", "CSV column mapping file (YAML)")
	fl.StringSliceVar(&f.ids, "id", nil, "CSV identifier column as column=type (repeatable)")
	fl.StringSliceVar(&f.traits, "trait", nil, "CSV trait column as column=trait (repeatable)")
	fl.StringSliceVar(&f.props, "prop", nil, "CSV property column as column=property (repeatable)")
	fl.StringVar(&f.event, "event", "", "CSV: constant event name (rows become track events)")
	fl.StringVar(&f.eventColumn, "event-column", "", "CSV: column holding the event name")
	fl.StringVar(&f.timestamp, "timestamp", "", "CSV: column holding the event time")
	fl.StringVar(&f.timeLayout, "time-layout", "", "CSV: Go time layout of --timestamp")
	fl.StringVar(&f.comma, "comma", "", `CSV: field separator ("," default, "\t", or "ws" for whitespace)`)
	fl.StringVar(&f.messageID, "message-id", "", "CSV: column holding a messageId")
	fl.StringVar(&f.reasons, "reasons", "", "new file receiving rejected rows and their reasons (NDJSON; default aurum-import-rejected-<time>.ndjson)")
	fl.IntVar(&f.batchBytes, "batch-bytes", 400<<10, "bytes per request (at most 500 KB)")
	fl.BoolVar(&f.noProgress, "no-progress", false, "do not draw a progress bar (none is drawn when stderr is not a terminal)")
	_ = cmd.MarkFlagRequired("source")
	return cmd
}

func parsePairs(flag string, pairs []string) (map[string]string, error) {
	if len(pairs) == 0 {
		return nil, nil
	}
	m := make(map[string]string, len(pairs))
	for _, p := range pairs {
		k, v, ok := strings.Cut(p, "=")
		if !ok || k == "" || v == "" {
			return nil, fmt.Errorf("--%s %q: want column=name", flag, p)
		}
		m[k] = v
	}
	return m, nil
}

func (f *importFlags) csvMapping() (importer.Mapping, error) {
	var m importer.Mapping
	if f.mapping != "" {
		var err error
		if m, err = importer.LoadMapping(f.mapping); err != nil {
			return m, fmt.Errorf("--mapping: %w", err)
		}
	}
	for flag, pair := range map[string]struct {
		in  []string
		dst *map[string]string
	}{"id": {f.ids, &m.Identifiers}, "trait": {f.traits, &m.Traits}, "prop": {f.props, &m.Properties}} {
		pm, err := parsePairs(flag, pair.in)
		if err != nil {
			return m, err
		}
		if pm != nil {
			if *pair.dst == nil {
				*pair.dst = map[string]string{}
			}
			for k, v := range pm {
				(*pair.dst)[k] = v
			}
		}
	}
	set := func(dst *string, v string) {
		if v != "" {
			*dst = v
		}
	}
	set(&m.Event, f.event)
	set(&m.EventColumn, f.eventColumn)
	set(&m.Timestamp, f.timestamp)
	set(&m.TimeLayout, f.timeLayout)
	set(&m.Comma, f.comma)
	set(&m.MessageID, f.messageID)
	return m, nil
}

func formatOf(flag, path string) (importer.Format, error) {
	if flag == "" {
		flag = strings.TrimPrefix(strings.ToLower(filepath.Ext(path)), ".")
		if flag == "jsonl" {
			flag = "ndjson"
		}
		if flag == "txt" || flag == "tsv" {
			flag = "csv"
		}
	}
	switch f := importer.Format(flag); f {
	case importer.CSV, importer.JSON, importer.NDJSON, importer.XML:
		return f, nil
	}
	return "", fmt.Errorf("--format: want csv, json, ndjson or xml, got %q (for %s)", flag, path)
}

// importStats counts one import run.
type importStats struct{ rows, accepted, duplicates, rejected, warnings int }

// maxWarningLines bounds the warnings printed on stderr; the summary
// counts them all.
const maxWarningLines = 10

// reasonsFile is the --reasons file, created on the first rejected row
// and never over an existing file.
type reasonsFile struct {
	path string
	f    *os.File
	w    *bufio.Writer
	enc  *json.Encoder
}

func (r *reasonsFile) write(rec rejectRecord) error {
	if r.f == nil {
		f, err := os.OpenFile(r.path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
		if err != nil {
			return fmt.Errorf("--reasons: %w", err)
		}
		r.f, r.w = f, bufio.NewWriter(f)
		r.enc = json.NewEncoder(r.w)
	}
	return r.enc.Encode(rec)
}

func (r *reasonsFile) close() error {
	if r.f == nil {
		return nil
	}
	err := r.w.Flush()
	if cerr := r.f.Close(); err == nil {
		err = cerr
	}
	r.f = nil
	return err
}

// rejectRecord is one line of the reasons file.
type rejectRecord struct {
	File   string `json:"file"`
	Line   int    `json:"line"`
	Field  string `json:"field,omitempty"`
	Reason string `json:"reason"`
}

func runImport(ctx context.Context, cmd *cobra.Command, f importFlags, files []string) error {
	if f.batchBytes < 1<<10 || f.batchBytes > 480<<10 {
		return fmt.Errorf("--batch-bytes must be in [1 KB, 480 KB]")
	}
	c, err := newClient(f.server, f.token)
	if err != nil {
		return err
	}
	m, err := f.csvMapping()
	if err != nil {
		return err
	}
	for _, path := range files { // refuse bad arguments before touching the reasons file
		if _, err := formatOf(f.format, path); err != nil {
			return err
		}
		if _, err := os.Stat(path); err != nil {
			return err
		}
	}
	if f.reasons == "" {
		f.reasons = defaultReasonsPath(time.Now())
	} else if _, err := os.Lstat(f.reasons); err == nil {
		return fmt.Errorf("--reasons %s exists (from an earlier import?): name another file or remove it", f.reasons)
	}
	rf := &reasonsFile{path: f.reasons}
	defer rf.close()
	var st importStats
	for _, path := range files {
		if err := importFile(ctx, cmd, c, f, m, path, rf, &st); err != nil {
			return fmt.Errorf("%s: %w", path, err)
		}
	}
	if err := rf.close(); err != nil {
		return fmt.Errorf("--reasons: %w", err)
	}
	out := cmd.OutOrStdout()
	fmt.Fprintf(out, "imported %d file(s): %d rows, %d accepted, %d duplicates, %d rejected", len(files), st.rows, st.accepted, st.duplicates, st.rejected)
	if st.warnings > 0 {
		fmt.Fprintf(out, ", %d warnings", st.warnings)
	}
	if st.rejected > 0 {
		fmt.Fprintf(out, " (reasons in %s)\n", f.reasons)
		return exitError{code: 2}
	}
	fmt.Fprintln(out)
	return nil
}

// defaultReasonsPath is a reasons file name of the run's time that no file
// holds yet (-2, -3, ... after runs in the same second).
func defaultReasonsPath(now time.Time) string {
	base := "aurum-import-rejected-" + now.UTC().Format("20060102T150405Z")
	p := base + ".ndjson"
	for i := 2; ; i++ {
		if _, err := os.Lstat(p); err != nil {
			return p
		}
		p = fmt.Sprintf("%s-%d.ndjson", base, i)
	}
}

// progressOut is where import draws its progress bar: stderr when it is a
// terminal, else nowhere (nil).
func progressOut(cmd *cobra.Command) io.Writer {
	if w, ok := cmd.ErrOrStderr().(*os.File); ok && term.IsTerminal(int(w.Fd())) {
		return w
	}
	return nil
}

func importFile(ctx context.Context, cmd *cobra.Command, c *client, f importFlags, m importer.Mapping,
	path string, rf *reasonsFile, st *importStats) error {
	format, err := formatOf(f.format, path)
	if err != nil {
		return err
	}
	file, err := os.Open(path)
	if err != nil {
		return err
	}
	defer file.Close()
	var in io.Reader = file
	if pw := progressOut(cmd); pw != nil && !f.noProgress {
		if fi, err := file.Stat(); err == nil {
			bar := progressbar.NewOptions64(fi.Size(), progressbar.OptionSetWriter(pw), progressbar.OptionSetDescription(filepath.Base(path)),
				progressbar.OptionShowBytes(true), progressbar.OptionShowCount(), progressbar.OptionThrottle(65*time.Millisecond),
				progressbar.OptionFullWidth(), progressbar.OptionOnCompletion(func() { fmt.Fprintln(pw) }))
			defer bar.Finish()
			in = io.TeeReader(file, bar)
		}
	}
	rd, err := importer.NewReader(in, format, m, f.source)
	if err != nil {
		return err
	}
	var batch []json.RawMessage
	var lines []int
	size := 0
	flush := func() error {
		if len(batch) == 0 {
			return nil
		}
		res, err := c.sendImport(ctx, f.source, batch)
		if err != nil {
			return err
		}
		st.accepted += res.Accepted
		st.duplicates += res.Duplicates
		for _, rj := range res.Rejected {
			line := 0
			if rj.Index >= 0 && rj.Index < len(lines) {
				line = lines[rj.Index]
			}
			st.rejected++
			if err := rf.write(rejectRecord{File: path, Line: line, Field: rj.Field, Reason: rj.Reason}); err != nil {
				return err
			}
		}
		batch, lines, size = batch[:0], lines[:0], 0
		return nil
	}
	for {
		row, err := rd.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return err
		}
		st.rows++
		if row.Err != nil {
			st.rejected++
			if err := rf.write(rejectRecord{File: path, Line: row.Line, Reason: row.Err.Error()}); err != nil {
				return err
			}
			continue
		}
		for _, w := range row.Warnings {
			if st.warnings++; st.warnings <= maxWarningLines {
				fmt.Fprintf(cmd.ErrOrStderr(), "aurum: warning: %s line %d: %s\n", path, row.Line, w)
			}
		}
		data, err := json.Marshal(row.Message)
		if err != nil {
			st.rejected++
			if err := rf.write(rejectRecord{File: path, Line: row.Line, Reason: err.Error()}); err != nil {
				return err
			}
			continue
		}
		if size+len(data) > f.batchBytes {
			if err := flush(); err != nil {
				return err
			}
		}
		batch = append(batch, data)
		lines = append(lines, row.Line)
		size += len(data) + 1
	}
	return flush()
}

// importResult is the answer of /v1/import.
type importResult struct {
	Accepted   int `json:"accepted"`
	Duplicates int `json:"duplicates"`
	Rejected   []struct {
		Index  int    `json:"index"`
		Field  string `json:"field"`
		Reason string `json:"reason"`
	} `json:"rejected"`
}

// sendImport posts one batch, retrying while the node is unavailable (the
// rows' messageIds make retries safe).
func (c *client) sendImport(ctx context.Context, source string, batch []json.RawMessage) (importResult, error) {
	body, err := json.Marshal(map[string]any{"batch": batch})
	if err != nil {
		return importResult{}, err
	}
	var res importResult
	backoff := 200 * time.Millisecond
	for attempt := 0; ; attempt++ {
		err = c.do(ctx, http.MethodPost, "/v1/import/"+url.PathEscape(source), body, &res)
		var ae *apiError
		if errors.As(err, &ae) && ae.Status == http.StatusBadRequest && len(res.Rejected) == 0 {
			// Every row rejected: the answer still lists them.
			var all importResult
			if jerr := json.Unmarshal([]byte(ae.Msg), &all); jerr == nil {
				return all, nil
			}
		}
		retry := err != nil && (!errors.As(err, &ae) || ae.Status == http.StatusServiceUnavailable || ae.Status == http.StatusTooManyRequests)
		if !retry || attempt == 5 {
			return res, err
		}
		select {
		case <-ctx.Done():
			return res, ctx.Err()
		case <-time.After(backoff):
		}
		backoff *= 2
	}
}
