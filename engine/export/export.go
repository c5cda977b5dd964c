// Package export is the warehouse export (issue #17, docs/export.md): the
// profiles (Golden Customer Records, without decrypted personal values
// unless asked) and the audience memberships, as Parquet files in one run
// directory per export, written as of one applied log position, with a
// manifest, for loading into a warehouse.
//
// A run is atomic: its files are written into DIR/.tmp-<run>/, synced, the
// manifest written last, then the directory renamed to DIR/<run>/ and DIR
// synced. A reader that sees DIR/<run>/manifest.json sees the whole run; a
// crash leaves at most a .tmp- directory, removed by the next run. Run
// names sort by time: "20261203T050000.000Z-<applied seq>".
//
// Scheduler runs an export every Options.Interval (aurum serve
// --export-dir, --export-interval).
package export

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/aurumcdp/aurum/event"
	"github.com/aurumcdp/aurum/projections"
	"github.com/aurumcdp/aurum/projections/gcr"
	"github.com/aurumcdp/aurum/store"
	"github.com/oklog/ulid/v2"
	"github.com/parquet-go/parquet-go"
)

// File names of a run.
const (
	ProfilesFile    = "profiles.parquet"
	MembershipsFile = "memberships.parquet"
	ManifestFile    = "manifest.json"
	tmpPrefix       = ".tmp-"
)

// ErrNoDir is returned when no export directory is configured.
var ErrNoDir = errors.New("export: no export directory configured (serve --export-dir)")

// State runs fn on a consistent snapshot of the projections (the engine's
// state read).
type State interface {
	Read(fn func(r store.Reader, sm *projections.StateMachine) error) error
}

// Options configure an Exporter. The zero value is valid but has no Dir:
// Run then fails with ErrNoDir.
type Options struct {
	// Dir is the directory runs are written into (created if missing).
	Dir string
	// Interval is the Scheduler's period (0: no schedule).
	Interval time.Duration
	// Personal adds the decrypted identifier values and traits to the
	// profiles (columns emails, phones, user_ids, traits_json).
	Personal bool
	// Keep is the number of runs kept (the oldest are deleted after a
	// run; 0: all).
	Keep int
	// RowGroupRows bounds the rows of one Parquet row group (default
	// 10,000): the writer buffers one row group.
	RowGroupRows int
	// Now is the clock of run names (nil: time.Now).
	Now    func() time.Time
	Logger *slog.Logger
}

// EnsureDefaults fills zero fields.
func (o *Options) EnsureDefaults() {
	if o.RowGroupRows <= 0 {
		o.RowGroupRows = 10000
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
}

// Validate checks o.
func (o *Options) Validate() error {
	if o.Interval < 0 {
		return fmt.Errorf("export: interval %v < 0", o.Interval)
	}
	if o.Interval > 0 && o.Interval < time.Second {
		return fmt.Errorf("export: interval %v shorter than 1s", o.Interval)
	}
	if o.Keep < 0 {
		return fmt.Errorf("export: keep %d < 0", o.Keep)
	}
	if o.Interval > 0 && o.Dir == "" {
		return fmt.Errorf("export: an interval needs a directory")
	}
	return nil
}

// Profile is one row of profiles.parquet: the documented column set
// (docs/export.md). Times are UTC milliseconds; personal columns are
// empty unless Options.Personal.
type Profile struct {
	ProfileID   string   `parquet:"profile_id"`
	FirstSeen   int64    `parquet:"first_seen,timestamp(millisecond)"`
	LastSeen    int64    `parquet:"last_seen,timestamp(millisecond)"`
	TotalEvents int64    `parquet:"total_events"`
	RevenueMic  int64    `parquet:"revenue_micros"` // every track event's revenue, micro-units
	Orders      int64    `parquet:"revenue_events"` // events that carried revenue
	IDTypes     []string `parquet:"identifier_types,list"`
	TraitNames  []string `parquet:"trait_names,list"`
	Audiences   []string `parquet:"audiences,list"`
	// Consent per channel: "granted", "denied" or "" (no statement).
	ConsentEmail string `parquet:"consent_email"`
	ConsentSMS   string `parquet:"consent_sms"`
	ConsentPush  string `parquet:"consent_push"`
	ConsentAds   string `parquet:"consent_ads"`
	ConsentWeb   string `parquet:"consent_web"`
	MergedFrom   int64  `parquet:"merged_profiles"`
	// Personal values (Options.Personal).
	Emails     []string `parquet:"emails,list"`
	Phones     []string `parquet:"phones,list"`
	UserIDs    []string `parquet:"user_ids,list"`
	TraitsJSON string   `parquet:"traits_json"`
}

// Membership is one row of memberships.parquet: a person in an audience.
type Membership struct {
	Audience    string `parquet:"audience"`
	ProfileID   string `parquet:"profile_id"`
	Since       int64  `parquet:"since,timestamp(millisecond)"`
	RuleVersion int64  `parquet:"rule_version"`
}

// FileInfo describes one file of a run.
type FileInfo struct {
	Name   string `json:"name"`
	Rows   int64  `json:"rows"`
	Bytes  int64  `json:"bytes"`
	SHA256 string `json:"sha256"`
}

// Manifest is DIR/<run>/manifest.json.
type Manifest struct {
	Run        string     `json:"run"`
	Created    time.Time  `json:"created"`
	AppliedSeq uint64     `json:"applied_seq"` // the log position the run is as of
	LogClock   time.Time  `json:"log_clock"`
	Personal   bool       `json:"personal"`
	Files      []FileInfo `json:"files"`
}

// Exporter writes runs. Run is safe for concurrent use (runs are
// serialised).
type Exporter struct {
	opts  Options
	state State
	open  gcr.Opener
	mu    sync.Mutex
}

// New returns an Exporter over state; open decrypts personal values (only
// used with Options.Personal).
func New(opts Options, state State, open gcr.Opener) *Exporter {
	opts.EnsureDefaults()
	return &Exporter{opts: opts, state: state, open: open}
}

// Dir is the configured directory ("" if none).
func (x *Exporter) Dir() string { return x.opts.Dir }

// ErrRunning is returned by TryRun while another run is being written.
var ErrRunning = errors.New("export: a run is in progress")

// Schedule is the schedule in effect: the serve flags --export-dir,
// --export-interval, --export-keep and --export-personal (it cannot be
// changed at run time).
type Schedule struct {
	Dir      string
	Interval time.Duration
	Keep     int
	Personal bool
}

// Schedule returns the schedule in effect.
func (x *Exporter) Schedule() Schedule {
	return Schedule{Dir: x.opts.Dir, Interval: x.opts.Interval, Keep: x.opts.Keep, Personal: x.opts.Personal}
}

// TryRun is Run, but fails with ErrRunning at once if a run is being
// written (Run would wait for it).
func (x *Exporter) TryRun(ctx context.Context, ro RunOptions) (Manifest, error) {
	if x.opts.Dir == "" {
		return Manifest{}, ErrNoDir
	}
	if !x.mu.TryLock() {
		return Manifest{}, ErrRunning
	}
	defer x.mu.Unlock()
	return x.run(ctx, ro)
}

// RunOptions are a run's own settings.
type RunOptions struct {
	// Personal adds the personal columns to this run (as
	// Options.Personal does to every run).
	Personal bool
}

// Run writes one run and returns its manifest.
func (x *Exporter) Run(ctx context.Context, ro RunOptions) (Manifest, error) {
	if x.opts.Dir == "" {
		return Manifest{}, ErrNoDir
	}
	x.mu.Lock()
	defer x.mu.Unlock()
	return x.run(ctx, ro)
}

// run writes one run; x.mu is held.
func (x *Exporter) run(ctx context.Context, ro RunOptions) (Manifest, error) {
	if err := os.MkdirAll(x.opts.Dir, 0o750); err != nil {
		return Manifest{}, fmt.Errorf("export: %w", err)
	}
	x.removeTemps()
	now := x.opts.Now().UTC()
	tmp, err := os.MkdirTemp(x.opts.Dir, tmpPrefix)
	if err != nil {
		return Manifest{}, fmt.Errorf("export: %w", err)
	}
	defer func() { _ = os.RemoveAll(tmp) }() // a no-op after the rename
	m := Manifest{Created: now, Personal: x.opts.Personal || ro.Personal}
	err = x.state.Read(func(r store.Reader, sm *projections.StateMachine) error {
		var err error
		if m.AppliedSeq, err = projections.Applied(r); err != nil {
			return err
		}
		clock, err := projections.LogClock(r)
		if err != nil {
			return err
		}
		m.LogClock = time.UnixMilli(clock).UTC()
		fi, err := x.writeMemberships(ctx, r, sm, filepath.Join(tmp, MembershipsFile))
		if err != nil {
			return err
		}
		fp, err := x.writeProfiles(ctx, r, sm, filepath.Join(tmp, ProfilesFile), m.Personal)
		if err != nil {
			return err
		}
		m.Files = []FileInfo{fp, fi}
		return nil
	})
	if err != nil {
		return Manifest{}, fmt.Errorf("export: %w", err)
	}
	m.Run = fmt.Sprintf("%s-%d", now.Format("20060102T150405.000Z"), m.AppliedSeq)
	for i := 2; ; i++ { // runs are serialised: only an earlier one can hold the name
		if _, err := os.Stat(filepath.Join(x.opts.Dir, m.Run)); err != nil {
			break
		}
		m.Run = fmt.Sprintf("%s-%d-%d", now.Format("20060102T150405.000Z"), m.AppliedSeq, i)
	}
	if err := writeJSON(filepath.Join(tmp, ManifestFile), m); err != nil {
		return Manifest{}, err
	}
	if err := syncDir(tmp); err != nil {
		return Manifest{}, err
	}
	final := filepath.Join(x.opts.Dir, m.Run)
	if err := os.Rename(tmp, final); err != nil {
		return Manifest{}, fmt.Errorf("export: %w", err)
	}
	if err := syncDir(x.opts.Dir); err != nil {
		return Manifest{}, err
	}
	x.prune()
	x.opts.Logger.Info("export: run written", "run", m.Run, "applied", m.AppliedSeq,
		"profiles", m.Files[0].Rows, "memberships", m.Files[1].Rows)
	return m, nil
}

// Runs lists the manifests of the runs in the directory, oldest first.
func (x *Exporter) Runs() ([]Manifest, error) {
	if x.opts.Dir == "" {
		return nil, ErrNoDir
	}
	ents, err := os.ReadDir(x.opts.Dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("export: %w", err)
	}
	var out []Manifest
	for _, e := range ents {
		if !e.IsDir() || strings.HasPrefix(e.Name(), tmpPrefix) {
			continue
		}
		b, err := os.ReadFile(filepath.Join(x.opts.Dir, e.Name(), ManifestFile))
		if err != nil {
			continue // not a run
		}
		var m Manifest
		if err := json.Unmarshal(b, &m); err != nil {
			return nil, fmt.Errorf("export: %s: manifest: %w", e.Name(), err)
		}
		out = append(out, m)
	}
	slices.SortFunc(out, func(a, b Manifest) int { return strings.Compare(a.Run, b.Run) })
	return out, nil
}

// removeTemps deletes what an interrupted run left.
func (x *Exporter) removeTemps() {
	ents, _ := os.ReadDir(x.opts.Dir)
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), tmpPrefix) {
			_ = os.RemoveAll(filepath.Join(x.opts.Dir, e.Name()))
		}
	}
}

// prune keeps the newest Options.Keep runs.
func (x *Exporter) prune() {
	if x.opts.Keep == 0 {
		return
	}
	runs, err := x.Runs()
	if err != nil {
		return
	}
	for len(runs) > x.opts.Keep {
		_ = os.RemoveAll(filepath.Join(x.opts.Dir, runs[0].Run))
		runs = runs[1:]
	}
}

// rowWriter writes rows of T to a Parquet file, a row group at a time.
type rowWriter[T any] struct {
	f    *os.File
	h    hashWriter
	w    *parquet.GenericWriter[T]
	buf  []T
	rows int64
	max  int
}

type hashWriter struct {
	w io.Writer
	h interface {
		io.Writer
		Sum([]byte) []byte
	}
	n int64
}

func (h *hashWriter) Write(p []byte) (int, error) {
	n, err := h.w.Write(p)
	h.h.Write(p[:n])
	h.n += int64(n)
	return n, err
}

func newRowWriter[T any](path string, max int) (*rowWriter[T], error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o640)
	if err != nil {
		return nil, err
	}
	rw := &rowWriter[T]{f: f, max: max}
	rw.h = hashWriter{w: f, h: sha256.New()}
	rw.w = parquet.NewGenericWriter[T](&rw.h, parquet.Compression(&parquet.Zstd))
	return rw, nil
}

func (rw *rowWriter[T]) add(row T) error {
	rw.buf = append(rw.buf, row)
	if len(rw.buf) >= rw.max {
		return rw.flush()
	}
	return nil
}

func (rw *rowWriter[T]) flush() error {
	if len(rw.buf) == 0 {
		return nil
	}
	if _, err := rw.w.Write(rw.buf); err != nil {
		return err
	}
	rw.rows += int64(len(rw.buf))
	rw.buf = rw.buf[:0]
	return rw.w.Flush()
}

// close finishes the file (synced) and describes it.
func (rw *rowWriter[T]) close() (FileInfo, error) {
	err := rw.flush()
	if err == nil {
		err = rw.w.Close()
	}
	if err == nil {
		err = rw.f.Sync()
	}
	if cerr := rw.f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return FileInfo{}, fmt.Errorf("%s: %w", filepath.Base(rw.f.Name()), err)
	}
	return FileInfo{Name: filepath.Base(rw.f.Name()), Rows: rw.rows, Bytes: rw.h.n,
		SHA256: hex.EncodeToString(rw.h.h.Sum(nil))}, nil
}

func (rw *rowWriter[T]) abort() { _ = rw.f.Close() }

const membersPage = 10000

// writeMemberships writes every audience's members (audience order, then
// profile id order).
func (x *Exporter) writeMemberships(ctx context.Context, r store.Reader, sm *projections.StateMachine, path string) (FileInfo, error) {
	rw, err := newRowWriter[Membership](path, x.opts.RowGroupRows)
	if err != nil {
		return FileInfo{}, err
	}
	defer rw.abort()
	defs, err := projections.Audiences(r)
	if err != nil {
		return FileInfo{}, err
	}
	for _, d := range defs {
		var after []byte
		for {
			if err := ctx.Err(); err != nil {
				return FileInfo{}, err
			}
			ms, ids, err := sm.AudienceMembers(r, d.Name, after, membersPage)
			if err != nil {
				return FileInfo{}, err
			}
			for i, id := range ids {
				if err := rw.add(Membership{Audience: d.Name, ProfileID: ulid.ULID(id).String(),
					Since: ms[i].Since, RuleVersion: ms[i].Version}); err != nil {
					return FileInfo{}, err
				}
			}
			if len(ids) < membersPage {
				break
			}
			after = ids[len(ids)-1]
		}
	}
	return rw.close()
}

// writeProfiles writes every GCR (partition by partition).
func (x *Exporter) writeProfiles(ctx context.Context, r store.Reader, sm *projections.StateMachine, path string, personal bool) (FileInfo, error) {
	rw, err := newRowWriter[Profile](path, x.opts.RowGroupRows)
	if err != nil {
		return FileInfo{}, err
	}
	defer rw.abort()
	err = sm.GCR().EachProfile(r, func(p *gcr.Profile) error {
		if err := ctx.Err(); err != nil {
			return err
		}
		row, err := x.profileRow(p, personal)
		if err != nil {
			return err
		}
		return rw.add(row)
	})
	if err != nil {
		return FileInfo{}, err
	}
	return rw.close()
}

func consentText(p *gcr.Profile, ch string) string {
	c, ok := p.Consent[ch]
	switch {
	case !ok:
		return ""
	case c.Granted:
		return "granted"
	}
	return "denied"
}

// profileRow is the row of p.
func (x *Exporter) profileRow(p *gcr.Profile, personal bool) (Profile, error) {
	if len(p.ID) != 16 {
		return Profile{}, fmt.Errorf("profile id of %d bytes", len(p.ID))
	}
	row := Profile{ProfileID: ulid.ULID(p.ID).String(), TotalEvents: p.Stats.Events,
		MergedFrom:   int64(len(p.MergedFrom)),
		ConsentEmail: consentText(p, "email"), ConsentSMS: consentText(p, "sms"),
		ConsentPush: consentText(p, "push"), ConsentAds: consentText(p, "ads"), ConsentWeb: consentText(p, "web")}
	if p.Stats.Events > 0 {
		row.FirstSeen, row.LastSeen = p.Stats.FirstSeen, p.Stats.LastSeen
	}
	for _, m := range p.Revenue {
		row.RevenueMic += m.Micros
		row.Orders += m.Count
	}
	for _, id := range p.Identifiers {
		if !slices.Contains(row.IDTypes, id.Type) {
			row.IDTypes = append(row.IDTypes, id.Type)
		}
	}
	slices.Sort(row.IDTypes)
	for name := range p.Traits {
		row.TraitNames = append(row.TraitNames, name)
	}
	slices.Sort(row.TraitNames)
	for a := range p.Audiences {
		row.Audiences = append(row.Audiences, a)
	}
	slices.Sort(row.Audiences)
	if !personal {
		return row, nil
	}
	v, err := p.View(x.open)
	if err != nil {
		return Profile{}, err
	}
	values := func(typ string) []string {
		var out []string
		for _, iv := range v.Identifiers[typ] {
			if s, ok := iv.Value.(string); ok {
				out = append(out, s)
			}
		}
		return out
	}
	row.Emails, row.Phones, row.UserIDs = values(event.Email), values(event.Phone), values(event.UserID)
	b, err := json.Marshal(v.Traits)
	if err != nil {
		return Profile{}, err
	}
	row.TraitsJSON = string(b)
	return row, nil
}

func writeJSON(path string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o640)
	if err != nil {
		return fmt.Errorf("export: %w", err)
	}
	_, err = f.Write(append(b, '\n'))
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("export: %s: %w", filepath.Base(path), err)
	}
	return nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("export: %w", err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("export: sync %s: %w", dir, err)
	}
	return nil
}

// Scheduler runs x every Options.Interval until ctx ends; a failed run is
// logged and retried at the next tick.
func (x *Exporter) Scheduler(ctx context.Context) {
	if x.opts.Interval <= 0 || x.opts.Dir == "" {
		return
	}
	t := time.NewTicker(x.opts.Interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if _, err := x.Run(ctx, RunOptions{}); err != nil && ctx.Err() == nil {
				x.opts.Logger.Warn("export: scheduled run failed", "err", err)
			}
		}
	}
}
