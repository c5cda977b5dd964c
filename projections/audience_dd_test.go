package projections

import (
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/aurumcdp/aurum/event"
	"github.com/aurumcdp/aurum/projections/audience"
	"github.com/aurumcdp/aurum/store"
	"github.com/cockroachdb/datadriven"
	"github.com/vmihailenco/msgpack/v5"
)

// audienceRun drives the state machine with a tiny language, one command
// per block of a github.com/cockroachdb/datadriven file (go test -rewrite
// rewrites the expected output), and prints the transitions each command
// produced:
//
//	audience NAME                    create or replace an audience; input: its rule
//	delete NAME                      delete it
//	event T USER EVENT [k=v ...]     a track event of USER at time T (also the log time)
//	identify T USER [k=v ...]        traits of USER
//	alias T USER ANON                link an anonymous id to USER
//	anon T ANON EVENT [k=v ...]      a track event of an anonymous visitor
//	tick T                           time passes to T
//	members NAME                     list members
//	erase T TYPE VALUE               an erasure request (user_id/anonymous_id/email VALUE; profile_id USER)
//	complete                         the erasure worker's completion of the last erasure
//	lookup TYPE VALUE                which profile owns the identifier (or "not found")
//	state                            erasure counters, keychain check, replay digest equality
//
// T is RFC 3339 or a date (2026-01-02); values that parse as numbers are
// numbers. Output lines: "USER entered|exited NAME (reason)".
type audienceRun struct {
	t           *testing.T
	sm          *StateMachine
	s           *store.Mem
	seq         uint64
	n           int
	users       map[string]string // profile id → label
	log         []entry           // every entry applied, for replays
	opts        Options
	lastErasure []byte
	// shadows apply every entry too, with other cache settings (none, a
	// tiny one): their stores must equal s, outbox included, after every
	// entry (TestCacheNeverServesStaleValues).
	shadows []shadow
}

type shadow struct {
	sm *StateMachine
	s  *store.Mem
}

func parseTime(t *testing.T, s string) int64 {
	for _, layout := range []string{time.RFC3339Nano, "2006-01-02T15:04:05", "2006-01-02T15:04", "2006-01-02"} {
		if tm, err := time.Parse(layout, s); err == nil {
			return tm.UnixMilli()
		}
	}
	t.Fatalf("bad time %q", s)
	return 0
}

func parseValue(s string) any {
	if f, err := strconv.ParseFloat(s, 64); err == nil {
		return f
	}
	return strings.Trim(s, `"`)
}

func (r *audienceRun) apply(subject string, v any) string {
	data, err := marshalEntry(v)
	if err != nil {
		r.t.Fatal(err)
	}
	r.seq++
	before := map[string]bool{}
	for _, p := range OutboxPrefixes(r.sm.Partitions()) {
		_ = r.s.Scan(p, store.PrefixEnd(p), false, func(k, _ []byte) bool { before[string(k)] = true; return true })
	}
	res, err := r.sm.Apply(r.s, r.seq, subject, data)
	if err != nil {
		r.t.Fatalf("apply: %v", err)
	}
	for i, sh := range r.shadows {
		sres, err := sh.sm.Apply(sh.s, r.seq, subject, data)
		if err != nil {
			r.t.Fatalf("apply (shadow %d): %v", i, err)
		}
		if fmt.Sprint(res) != fmt.Sprint(sres) {
			r.t.Fatalf("seq %d: result %+v, shadow %d (cache %d bytes): %+v", r.seq, res, i, sh.sm.opts.CacheBytes, sres)
		}
		if k, ok := firstDifference(r.s, sh.s); !ok {
			r.t.Fatalf("seq %d: store and shadow %d (cache %d bytes, no index %v, %d workers) differ at key %q (no fresh profiles, no timer bounds %v)", r.seq, i, sh.sm.opts.CacheBytes, sh.sm.opts.noAudienceIndex, sh.sm.opts.ApplyWorkers, k, sh.sm.opts.noFreshProfiles)
		}
	}
	r.log = append(r.log, entry{seq: r.seq, subject: subject, data: data})
	var lines []string
	for _, p := range OutboxPrefixes(r.sm.Partitions()) {
		_ = r.s.Scan(p, store.PrefixEnd(p), false, func(k, v []byte) bool {
			if before[string(k)] {
				return true
			}
			var m OutMsg
			if err := msgpack.Unmarshal(v, &m); err != nil {
				r.t.Fatal(err)
			}
			if !strings.HasPrefix(m.Subject, SubjectAudiencePrefix) {
				return true
			}
			var tr Transition
			if err := json.Unmarshal(m.Data, &tr); err != nil {
				r.t.Fatal(err)
			}
			reason := tr.Reason
			if strings.HasPrefix(reason, "event:") {
				reason = "event"
			}
			lines = append(lines, fmt.Sprintf("%s %s %s (%s)", r.label(tr.ProfileID), strings.TrimPrefix(tr.Type, "audience."), tr.Audience, reason))
			return true
		})
	}
	sort.Strings(lines)
	return strings.Join(lines, "\n")
}

func (r *audienceRun) label(pid string) string {
	if l, ok := r.users[pid]; ok {
		return l
	}
	return "?" + pid
}

func (r *audienceRun) record(at int64, ids []event.IDRef, kind event.Kind, name string, props map[string]any, traits map[string]any) string {
	r.n++
	id := testHash("event", strconv.Itoa(r.n))
	rec := event.Record{ID: id, MessageID: strconv.Itoa(r.n), Source: "web", Kind: kind, Event: name, Time: at, Received: at,
		Key: ids[0].Hash, IDs: ids, Properties: props}
	if len(traits) > 0 {
		rec.Traits = map[string][]byte{}
		for k, v := range traits {
			b, _ := marshalEntry(v)
			rec.Traits[k] = b
		}
	}
	return r.apply(SubjectEvents, &event.Batch{ID: id, Received: at, Records: []event.Record{rec}})
}

func (r *audienceRun) userRef(user string) event.IDRef {
	return event.IDRef{Type: event.UserID, Hash: testHash(event.UserID, user)}
}

func (r *audienceRun) profileOf(user string) []byte {
	p, err := r.sm.Keychain().Lookup(r.s, event.UserID, testHash(event.UserID, user))
	if errors.Is(err, store.ErrNotFound) {
		return nil // dropped (an erased identifier)
	}
	if err != nil {
		r.t.Fatalf("user %s: %v", user, err)
	}
	r.users[ulidString(p)] = user
	return p
}

func kv(t *testing.T, args []string) (map[string]any, map[string]any) {
	props, traits := map[string]any{}, map[string]any{}
	for _, a := range args {
		k, v, ok := strings.Cut(a, "=")
		if !ok {
			t.Fatalf("want key=value, got %q", a)
		}
		if tk, ok := strings.CutPrefix(k, "traits."); ok {
			traits[tk] = parseValue(v)
		} else {
			props[k] = parseValue(v)
		}
	}
	return props, traits
}

// fields splits a command line on spaces, keeping "quoted strings" whole.
func fields(line string) []string {
	var out []string
	var cur strings.Builder
	inQ := false
	for _, c := range line {
		switch {
		case c == '"':
			inQ = !inQ
			cur.WriteRune(c)
		case c == ' ' && !inQ:
			if cur.Len() > 0 {
				out = append(out, cur.String())
				cur.Reset()
			}
		default:
			cur.WriteRune(c)
		}
	}
	if cur.Len() > 0 {
		out = append(out, cur.String())
	}
	return out
}

// run runs one command line; input is the block's input (the rule of an
// audience command; without one, the rule is the rest of the line).
func (r *audienceRun) run(line, input string) string {
	f := fields(line)
	switch f[0] {
	case "audience":
		rule := input
		if rule == "" {
			rule = strings.TrimSpace(strings.TrimPrefix(strings.TrimPrefix(line, "audience"), " "+f[1]))
		}
		return r.apply(SubjectControl, &Control{Kind: ControlAudiencePut, Time: 0, Audience: audience.Definition{Name: f[1], Rule: rule}})
	case "delete":
		return r.apply(SubjectControl, &Control{Kind: ControlAudienceDelete, Audience: audience.Definition{Name: f[1]}})
	case "tick":
		return r.apply(SubjectControl, &Control{Kind: ControlTick, Time: parseTime(r.t, f[1])})
	case "event":
		props, _ := kv(r.t, f[4:])
		out := r.record(parseTime(r.t, f[1]), []event.IDRef{r.userRef(f[2])}, event.Track, strings.Trim(f[3], `"`), props, nil)
		r.profileOf(f[2])
		return r.relabelOut(out)
	case "identify":
		_, traits := kv(r.t, f[3:])
		out := r.record(parseTime(r.t, f[1]), []event.IDRef{r.userRef(f[2])}, event.Identify, "", nil, traits)
		r.profileOf(f[2])
		return r.relabelOut(out)
	case "anon":
		props, _ := kv(r.t, f[4:])
		ref := event.IDRef{Type: event.AnonymousID, Hash: testHash(event.AnonymousID, f[2])}
		out := r.record(parseTime(r.t, f[1]), []event.IDRef{ref}, event.Track, strings.Trim(f[3], `"`), props, nil)
		p, _ := r.sm.Keychain().Lookup(r.s, event.AnonymousID, ref.Hash)
		if _, ok := r.users[ulidString(p)]; !ok {
			r.users[ulidString(p)] = "anon:" + f[2]
		}
		return r.relabelOut(out)
	case "alias":
		ids := []event.IDRef{r.userRef(f[2]), {Type: event.AnonymousID, Hash: testHash(event.AnonymousID, f[3])}}
		out := r.record(parseTime(r.t, f[1]), ids, event.Alias, "", nil, nil)
		r.profileOf(f[2])
		return r.relabelOut(out)
	case "erase", "complete", "lookup", "state":
		return r.runErasure(f)
	case "members":
		ms, ids, err := r.sm.AudienceMembers(r.s, f[1], nil, 1000)
		if err != nil {
			r.t.Fatal(err)
		}
		var names []string
		for i := range ms {
			names = append(names, r.label(ulidString(ids[i])))
		}
		sort.Strings(names)
		n, _ := r.sm.AudienceSize(r.s, f[1])
		return fmt.Sprintf("size %d: %s", n, strings.Join(names, " "))
	}
	r.t.Fatalf("unknown command %q", f[0])
	return ""
}

// relabelOut replaces unknown profile ids in out with labels learnt since.
func (r *audienceRun) relabelOut(out string) string {
	for pid, l := range r.users {
		out = strings.ReplaceAll(out, "?"+pid, l)
	}
	return out
}

// shadowCaches are the cache settings runAudienceFile checks the default
// one against, entry by entry: none, and one so small it rotates all the
// time.
var shadowCaches = []int{-1, 2048}

func TestAudiencesDataDriven(t *testing.T) {
	datadriven.Walk(t, "testdata/audiences", runAudienceFile)
}

func runAudienceFile(t *testing.T, file string) {
	opts := Options{Partitions: 4, BackfillPerEntry: 1000, Open: func(_, sealed []byte) ([]byte, error) { return sealed, nil }}
	par := opts
	par.ApplyWorkers = 4 // the partitions at once, against a sequential shadow
	r := &audienceRun{t: t, sm: New(par), s: store.NewMem(), users: map[string]string{}, opts: opts}
	for _, cache := range shadowCaches {
		o := opts
		o.CacheBytes = cache
		r.shadows = append(r.shadows, shadow{sm: New(o), s: store.NewMem()})
	}
	// And one without the audience dependency index: the reference the
	// index must equal, entry by entry (TestAudienceIndexEquivalence).
	o := opts
	o.noAudienceIndex = true
	r.shadows = append(r.shadows, shadow{sm: New(o), s: store.NewMem()})
	// And one reading the GCR and audience state of the profiles an entry
	// created (Options.noFreshProfiles) and scanning for due timers at
	// every entry (Options.noTimerFloor): the reference of the shortcuts.
	o = opts
	o.noFreshProfiles, o.noTimerFloor = true, true
	r.shadows = append(r.shadows, shadow{sm: New(o), s: store.NewMem()})
	// And one applying the partitions one after the other
	// (TestParallelPartitionsMatchSequential).
	o = opts
	o.ApplyWorkers = 1
	r.shadows = append(r.shadows, shadow{sm: New(o), s: store.NewMem()})
	datadriven.RunTest(t, file, func(t *testing.T, d *datadriven.TestData) string {
		r.t = t
		// The command line as written: arguments in "quotes" may hold spaces.
		return r.run(d.FullCmd(), d.Input)
	})
}
