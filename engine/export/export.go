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
// The schedule (interval, runs kept, personal columns) is control state on
// the log (projections.ControlExportSchedule, SetSchedule): every node of a
// cluster applies it and it survives restarts; until one is set, the serve
// flags (--export-interval, --export-keep, --export-personal) are the
// schedule. Scheduler runs an export whenever the interval has passed since
// the newest run in the directory.
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
	TransitionsFile = "transitions.parquet"
	ManifestFile    = "manifest.json"
	tmpPrefix       = ".tmp-"
)

// ErrNoDir is returned when no export directory is configured.
var ErrNoDir = errors.New("export: no export directory configured (serve --export-dir)")

// ErrInvalid marks a schedule refused by SetSchedule (the message names
// the field).
var ErrInvalid = errors.New("export: invalid schedule")

// State runs fn on a consistent snapshot of the projections (the engine's
// state read).
type State interface {
	Read(fn func(r store.Reader, sm *projections.StateMachine) error) error
}

// Control appends a control record to the log.
type Control interface {
	AppendControl(ctx context.Context, c projections.Control) (uint64, error)
}

// Applied waits until the state machine has applied log position seq.
type Applied interface {
	WaitApplied(ctx context.Context, seq uint64) error
}

// Deps are what an Exporter is handed.
type Deps struct {
	State   State
	Control Control
	Applied Applied
	// Open decrypts personal values (only used by personal runs).
	Open gcr.Opener
}

// Options configure an Exporter. The zero value is valid but has no Dir:
// Run then fails with ErrNoDir.
type Options struct {
	// Dir is the directory runs are written into (created if missing).
	Dir string
	// Interval is the Scheduler's period (0: no schedule; else at least
	// MinInterval), until a schedule is set on the log (SetSchedule).
	Interval time.Duration
	// Personal adds the decrypted identifier values and traits to the
	// profiles of scheduled runs (columns emails, phones, user_ids,
	// traits_json), until a schedule is set on the log.
	Personal bool
	// Keep is the number of runs kept (the oldest are deleted after a
	// run; 0: all), until a schedule is set on the log.
	Keep int
	// Poll is how often the Scheduler checks whether a run is due and
	// the schedule in effect (default 1s).
	Poll time.Duration
	// LeaderOnly makes only the node Leader names write the scheduled
	// runs: for a Dir every node of a cluster shares (a network file
	// system). Default: each node writes its own runs into its own Dir.
	// Requested runs (Run, TryRun) are written wherever they are asked.
	LeaderOnly bool
	// Leader reports whether this node runs the cluster's singletons now
	// (set by the engine; nil: always).
	Leader func() bool
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
	if o.Poll <= 0 {
		o.Poll = time.Second
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
	if o.Interval > 0 && o.Interval < MinInterval {
		return fmt.Errorf("export: interval %v shorter than %v", o.Interval, MinInterval)
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

// Transition is one row of transitions.parquet: a person entered or left
// an audience (the audience history the projections keep per profile;
// docs/export.md).
type Transition struct {
	ProfileID   string `parquet:"profile_id"`
	Audience    string `parquet:"audience"`
	Type        string `parquet:"type"` // "entered" or "exited"
	Time        int64  `parquet:"time,timestamp(millisecond)"`
	Reason      string `parquet:"reason"` // what caused it: "event", "time", "backfill", "audience deleted", …
	RuleVersion int64  `parquet:"rule_version"`
	Seq         int64  `parquet:"seq"` // the log position that caused it
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
	Run        string    `json:"run"`
	Created    time.Time `json:"created"`
	AppliedSeq uint64    `json:"applied_seq"` // the log position the run is as of
	LogClock   time.Time `json:"log_clock"`
	Personal   bool      `json:"personal"`
	// Trigger is what wrote the run: "schedule" or "request" (the API,
	// the CLI, Run).
	Trigger string `json:"trigger"`
	// TransitionsAfterSeq: transitions.parquet holds the transitions of
	// log positions after it (the previous run's applied_seq; 0: all the
	// history kept).
	TransitionsAfterSeq uint64     `json:"transitions_after_seq"`
	Files               []FileInfo `json:"files"`
}

// File returns the manifest's entry for name (zero if absent).
func (m Manifest) File(name string) FileInfo {
	for _, f := range m.Files {
		if f.Name == name {
			return f
		}
	}
	return FileInfo{}
}

// MinInterval is the shortest schedule interval.
const MinInterval = time.Duration(projections.MinExportIntervalMs) * time.Millisecond

// Schedule is the schedule in effect and where it comes from.
type Schedule struct {
	Dir      string        // this node's export directory ("" : none)
	Interval time.Duration // 0: no scheduled runs
	Keep     int           // runs kept (0: all)
	Personal bool          // scheduled runs include the personal columns
	// Source is "log" (set with SetSchedule, in effect on every node) or
	// "flags" (this node's serve flags: none was set).
	Source  string
	Updated time.Time // when it was set on the log (zero for "flags")
}

// Exporter writes runs. Run is safe for concurrent use (runs are
// serialised).
type Exporter struct {
	opts Options
	deps Deps
	mu   sync.Mutex // held while a run is written

	lastMu sync.Mutex
	last   time.Time // creation time of the newest run (zero: not known yet)
}

// New returns an Exporter.
func New(opts Options, deps Deps) *Exporter {
	opts.EnsureDefaults()
	return &Exporter{opts: opts, deps: deps}
}

// Dir is the configured directory ("" if none).
func (x *Exporter) Dir() string { return x.opts.Dir }

// ErrRunning is returned by TryRun while another run is being written.
var ErrRunning = errors.New("export: a run is in progress")

// Schedule returns the schedule in effect: the one set on the log, else
// the serve flags.
func (x *Exporter) Schedule() (Schedule, error) {
	var s Schedule
	err := x.deps.State.Read(func(r store.Reader, _ *projections.StateMachine) error {
		var err error
		s, err = x.scheduleOf(r)
		return err
	})
	return s, err
}

func (x *Exporter) scheduleOf(r store.Reader) (Schedule, error) {
	ps, ok, err := projections.ExportScheduleOf(r)
	if err != nil {
		return Schedule{}, err
	}
	if !ok {
		return Schedule{Dir: x.opts.Dir, Interval: x.opts.Interval, Keep: x.opts.Keep, Personal: x.opts.Personal,
			Source: "flags"}, nil
	}
	return Schedule{Dir: x.opts.Dir, Interval: time.Duration(ps.IntervalMs) * time.Millisecond, Keep: ps.Keep,
		Personal: ps.Personal, Source: "log", Updated: time.UnixMilli(ps.Updated).UTC()}, nil
}

// SetSchedule sets the schedule of every node through the log (interval
// at least MinInterval, keep at least 1; else an error wrapping
// ErrInvalid that names the field) and returns it once in effect here.
func (x *Exporter) SetSchedule(ctx context.Context, interval time.Duration, keep int, personal bool) (Schedule, error) {
	ps := projections.ExportSchedule{IntervalMs: interval.Milliseconds(), Keep: keep, Personal: personal}
	if interval%time.Millisecond != 0 {
		return Schedule{}, fmt.Errorf("%w: interval: %v is not a whole number of milliseconds", ErrInvalid, interval)
	}
	if err := ps.Validate(); err != nil {
		return Schedule{}, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	cfg, err := projections.EncodeExportSchedule(ps)
	if err != nil {
		return Schedule{}, err
	}
	seq, err := x.deps.Control.AppendControl(ctx, projections.Control{Kind: projections.ControlExportSchedule, Config: cfg})
	if err != nil {
		return Schedule{}, fmt.Errorf("export: set schedule: %w", err)
	}
	if err := x.deps.Applied.WaitApplied(ctx, seq); err != nil {
		return Schedule{}, fmt.Errorf("export: set schedule: %w", err)
	}
	return x.Schedule()
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
	return x.run(ctx, ro, "request")
}

// RunOptions are a run's own settings.
type RunOptions struct {
	// Personal adds the personal columns to this run.
	Personal bool
	// AllTransitions writes every transition of the history kept into
	// transitions.parquet (default: those since the newest run in the
	// directory).
	AllTransitions bool
}

// Run writes one run and returns its manifest.
func (x *Exporter) Run(ctx context.Context, ro RunOptions) (Manifest, error) {
	if x.opts.Dir == "" {
		return Manifest{}, ErrNoDir
	}
	x.mu.Lock()
	defer x.mu.Unlock()
	return x.run(ctx, ro, "request")
}

// run writes one run; x.mu is held.
func (x *Exporter) run(ctx context.Context, ro RunOptions, trigger string) (Manifest, error) {
	if err := os.MkdirAll(x.opts.Dir, 0o750); err != nil {
		return Manifest{}, fmt.Errorf("export: %w", err)
	}
	x.removeTemps()
	prev, err := x.Runs()
	if err != nil {
		return Manifest{}, err
	}
	now := x.opts.Now().UTC()
	tmp, err := os.MkdirTemp(x.opts.Dir, tmpPrefix)
	if err != nil {
		return Manifest{}, fmt.Errorf("export: %w", err)
	}
	defer func() { _ = os.RemoveAll(tmp) }() // a no-op after the rename
	m := Manifest{Created: now, Personal: ro.Personal, Trigger: trigger}
	if len(prev) > 0 && !ro.AllTransitions {
		m.TransitionsAfterSeq = prev[0].AppliedSeq
	}
	var sched Schedule
	err = x.deps.State.Read(func(r store.Reader, sm *projections.StateMachine) error {
		var err error
		if sched, err = x.scheduleOf(r); err != nil {
			return err
		}
		if m.AppliedSeq, err = projections.Applied(r); err != nil {
			return err
		}
		clock, err := projections.LogClock(r)
		if err != nil {
			return err
		}
		m.LogClock = time.UnixMilli(clock).UTC()
		fp, err := x.writeProfiles(ctx, r, sm, filepath.Join(tmp, ProfilesFile), m.Personal)
		if err != nil {
			return err
		}
		fi, err := x.writeMemberships(ctx, r, sm, filepath.Join(tmp, MembershipsFile))
		if err != nil {
			return err
		}
		ft, err := x.writeTransitions(ctx, r, sm, filepath.Join(tmp, TransitionsFile), m.TransitionsAfterSeq)
		if err != nil {
			return err
		}
		m.Files = []FileInfo{fp, fi, ft}
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
	x.setLast(now)
	x.prune(sched.Keep)
	x.opts.Logger.Info("export: run written", "run", m.Run, "applied", m.AppliedSeq, "trigger", trigger,
		"profiles", m.Files[0].Rows, "memberships", m.Files[1].Rows, "transitions", m.Files[2].Rows)
	return m, nil
}

func (x *Exporter) setLast(t time.Time) {
	x.lastMu.Lock()
	defer x.lastMu.Unlock()
	if t.After(x.last) {
		x.last = t
	}
}

// Runs lists the manifests of the runs in the directory, newest first.
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
	slices.SortFunc(out, func(a, b Manifest) int { return strings.Compare(b.Run, a.Run) })
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

// prune keeps the newest keep runs (0: all).
func (x *Exporter) prune(keep int) {
	if keep <= 0 {
		return
	}
	runs, err := x.Runs()
	if err != nil {
		return
	}
	for _, m := range runs[min(keep, len(runs)):] {
		_ = os.RemoveAll(filepath.Join(x.opts.Dir, m.Run))
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
	v, err := p.View(x.deps.Open)
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

// Scheduler writes a run whenever the schedule's interval has passed since
// the newest run in the directory (or, with none, since it started),
// checking every Options.Poll, until ctx ends. It reads the schedule in
// effect at each check, so a change on the log (SetSchedule, on any node)
// takes effect within a Poll. A failed run is logged and retried after
// min(interval, 1 min).
func (x *Exporter) Scheduler(ctx context.Context) {
	if x.opts.Dir == "" {
		return
	}
	if runs, err := x.Runs(); err == nil && len(runs) > 0 {
		x.setLast(runs[0].Created) // after a restart: an interval after the newest run
	} else {
		x.setLast(x.opts.Now().UTC()) // without runs: the first is an interval from now
	}
	var failedAt time.Time
	led := false // LeaderOnly: led at the previous poll
	t := time.NewTicker(x.opts.Poll)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if x.opts.LeaderOnly && x.opts.Leader != nil {
			if !x.opts.Leader() {
				led = false
				continue
			}
			if !led {
				// Newly leading: the previous leader may have written
				// runs into the shared directory since this node looked.
				if runs, err := x.Runs(); err == nil && len(runs) > 0 {
					x.setLast(runs[0].Created)
				}
				led = true
			}
		}
		sc, err := x.Schedule()
		if err != nil || sc.Interval <= 0 {
			continue
		}
		now := x.opts.Now()
		x.lastMu.Lock()
		due := !now.Before(x.last.Add(sc.Interval))
		x.lastMu.Unlock()
		if !due || (!failedAt.IsZero() && now.Before(failedAt.Add(min(sc.Interval, time.Minute)))) {
			continue
		}
		if !x.mu.TryLock() {
			continue // a requested run is being written
		}
		_, err = x.run(ctx, RunOptions{Personal: sc.Personal}, "schedule")
		x.mu.Unlock()
		failedAt = time.Time{}
		if err != nil && ctx.Err() == nil {
			failedAt = now
			x.opts.Logger.Warn("export: scheduled run failed", "err", err)
		}
	}
}

// writeTransitions writes the audience history rows of log positions
// after afterSeq.
func (x *Exporter) writeTransitions(ctx context.Context, r store.Reader, sm *projections.StateMachine, path string, afterSeq uint64) (FileInfo, error) {
	rw, err := newRowWriter[Transition](path, x.opts.RowGroupRows)
	if err != nil {
		return FileInfo{}, err
	}
	defer rw.abort()
	err = sm.EachAudienceHistory(r, func(profile []byte, h projections.HistoryEntry) error {
		if err := ctx.Err(); err != nil {
			return err
		}
		if h.Seq <= afterSeq {
			return nil
		}
		typ := "exited"
		if h.Entered {
			typ = "entered"
		}
		return rw.add(Transition{ProfileID: ulid.ULID(profile).String(), Audience: h.Audience, Type: typ,
			Time: h.Time, Reason: h.Reason, RuleVersion: h.RuleVersion, Seq: int64(h.Seq)})
	})
	if err != nil {
		return FileInfo{}, err
	}
	return rw.close()
}
