package projections

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"runtime"
	"slices"
	"sync"
	"time"

	"github.com/aurumcdp/aurum/event"
	"github.com/aurumcdp/aurum/projections/audience"
	"github.com/aurumcdp/aurum/projections/gcr"
	"github.com/aurumcdp/aurum/store"
	"github.com/vmihailenco/msgpack/v5"
)

// Keys of a partition's audience state, under PartitionPrefix(i):
//
//	u/<profile16>                   audience.State, audience.EncodeState (aggregates, memberships, timer)
//	w/<time u64 BE><profile16>      timer index: re-evaluate the profile at time
//	m/<audience>\x00<profile16>     membership index: since (u64 BE) + version (u64 BE)
//	n/<audience>                    member count (u64 BE)
//	wl                              u64 BE: timers up to this time were run
//	b                               backfill cursor (msgpack backfillCursor)
//	o/<seq u64 BE><idx u32 BE>      outbox: transitions to publish (not part of the digest)
//	h/<profile16><time u64 BE><seq u64 BE><idx u32 BE>  audience history (msgpack HistoryEntry)
func (p *Partition) key(parts ...[]byte) []byte {
	k := PartitionPrefix(p.id)
	for _, x := range parts {
		k = append(k, x...)
	}
	return k
}

func (p *Partition) stateKey(profile []byte) []byte { return p.key([]byte("u/"), profile) }

func (p *Partition) timerKey(t int64, profile []byte) []byte {
	return p.key([]byte("w/"), binary.BigEndian.AppendUint64(nil, uint64(max(t, 0))), profile)
}

func (p *Partition) memberKey(aud string, profile []byte) []byte {
	return p.key([]byte("m/"), []byte(aud), []byte{0}, profile)
}

func (p *Partition) countKey(aud string) []byte { return p.key([]byte("n/"), []byte(aud)) }

type backfillCursor struct {
	Gen   uint64 `msgpack:"g"`
	After []byte `msgpack:"a,omitempty"`
	Done  bool   `msgpack:"d,omitempty"`
}

func loadAudienceState(r store.Reader, p *Partition, profile []byte) (*audience.State, error) {
	v, err := r.Get(p.stateKey(profile))
	if errors.Is(err, store.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	return audience.DecodeState(v)
}

// loadRawAudienceState returns the stored state's bytes, nil when there is
// none.
func loadRawAudienceState(r store.Reader, p *Partition, profile []byte) ([]byte, error) {
	v, err := r.Get(p.stateKey(profile))
	if errors.Is(err, store.ErrNotFound) {
		return nil, nil
	}
	return v, err
}

// work is what an entry asks of one profile's audiences.
type work struct {
	events []audience.Event
	reason string
	all    bool // a merge or the backfill: every audience
	timer  bool // a timer fired (audience.Step.Timer)
	joined []*audience.State
	// rebuilt: a split recomputed the profile; its aggregates are built
	// again from history (its events after the split, newest first).
	rebuilt bool
	history []audience.Event
	// fresh: the profile was created by this entry (Addition.Fresh): it
	// has no stored audience state to read.
	fresh bool
}

// applyAudiences runs the audience stage of an entry in the partition:
// profiles that got events or absorbed others, profiles whose timers are
// due, and the next slice of the backfill after an audience changed.
func (p *Partition) applyAudiences(rw store.ReadWriter, cmd *PartitionCommand) error {
	todo := map[string]*work{}
	get := func(id []byte) *work {
		w, ok := todo[string(id)]
		if !ok {
			w = &work{}
			todo[string(id)] = w
		}
		return w
	}
	outIdx := cmd.outIdx // after the exits of an erasure in this entry
	for _, d := range cmd.Drop {
		if err := p.dropAudienceState(rw, cmd, d, &outIdx); err != nil {
			return err
		}
	}
	for _, rb := range cmd.Rebuild {
		w := get(rb.Profile.ID)
		w.all, w.reason, w.rebuilt, w.history = true, rb.Reason, true, rb.History
	}
	for _, a := range cmd.Absorb {
		w := get(a.Into)
		w.all, w.reason = true, "merge"
		if a.FromState != nil {
			w.joined = append(w.joined, a.FromState)
		}
	}
	for _, a := range cmd.Add {
		w := get(a.Profile)
		name := ""
		if a.Record.Kind == event.Track {
			name = a.Record.Event
		}
		ev := audience.Event{Name: name, Time: a.Record.Time, ID: a.Record.ID,
			Props: a.Record.Properties, HasTraits: len(a.Record.Traits) > 0}
		if ev.HasTraits {
			ev.Traits = make([]string, 0, len(a.Record.Traits))
			for t := range a.Record.Traits {
				ev.Traits = append(ev.Traits, t)
			}
		}
		w.events = append(w.events, ev)
		w.fresh = w.fresh || a.Fresh
		if w.reason == "" {
			w.reason = "event:" + ulidString(a.Record.ID)
		}
	}
	// Due timers, from where the last scan stopped: deleted timer keys
	// before it are never read again.
	last, err := readUint64(rw, p.key([]byte("wl")))
	if err != nil {
		return err
	}
	now := uint64(max(cmd.Now, 0))
	// The scan finds nothing when the partition's timers are known to
	// be all later than now (timerFloor): it is not made.
	floor, known := p.timerFloor, p.timersOK && p.timersAt == cmd.prev && !p.sm.opts.noTimerFloor
	p.timersOK = false // until this entry's audience stage is done
	var due [][]byte
	if known && now < floor {
		p.timerSkips++
	} else {
		p.timerScans++
		lower := p.key([]byte("w/"), binary.BigEndian.AppendUint64(nil, last))
		upper := p.key([]byte("w/"), binary.BigEndian.AppendUint64(nil, now+1))
		if err := rw.Scan(lower, upper, false, func(k, _ []byte) bool {
			due = append(due, bytes.Clone(k))
			return len(due) < p.sm.opts.TimersPerEntry
		}); err != nil {
			return err
		}
		floor = now + 1 // every timer at or before now is due and taken below
	}
	scanned := now
	if len(due) == p.sm.opts.TimersPerEntry { // more may be due at the last one's time
		k := due[len(due)-1]
		scanned = binary.BigEndian.Uint64(k[len(k)-24 : len(k)-16])
		floor = scanned
	}
	if scanned != last {
		if err := setUint64(rw, p.key([]byte("wl")), scanned); err != nil {
			return err
		}
	}
	for _, k := range due {
		if err := rw.Delete(k); err != nil {
			return err
		}
		w := get(k[len(k)-16:])
		w.timer = true
		if w.reason == "" {
			w.reason = "time"
		}
	}
	// Backfill after an audience change.
	cur, err := p.backfill(rw, cmd, get)
	if err != nil {
		return err
	}

	if len(cmd.Audiences.Audiences()) == 0 && cmd.Gen == 0 {
		p.knowTimers(cmd, floor)
		return nil // no audience was ever defined: nothing to evaluate
	}
	ids := make([]string, 0, len(todo))
	for id := range todo {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	for _, id := range ids {
		// Settled (audience.Step.Settled): the backfill of this
		// generation has evaluated the profile, or it was created after
		// the backfill passed its place; either way its state was written
		// under this set of definitions.
		settled := !p.sm.opts.noAudienceIndex && cur.Gen == cmd.Gen && cmd.Gen != 0 &&
			(cur.Done || bytes.Compare([]byte(id), cur.After) <= 0)
		if err := p.evaluate(rw, cmd, []byte(id), todo[id], settled, &outIdx); err != nil {
			return err
		}
	}
	p.knowTimers(cmd, floor)
	return nil
}

// knowTimers records what the audience stage of cmd left: every timer key
// of the partition at or after its wl is at floor or later, but those cmd
// set (cmd.newTimer), in the store at the partition's position cmd.Seq.
//
// Why the next entry may then skip its scan when its now is before the
// bound: timer keys are written only by evaluate (each one after now, so
// after wl), all of them through cmd, and the bound is used only when the
// partition's stored position is the one it was recorded at. A failed
// Apply, a Skip, Load and ResetFilters forget it (forgetTimers): the first
// two may leave the store at that position with other contents, the last
// two follow writes behind the state machine's back.
func (p *Partition) knowTimers(cmd *PartitionCommand, floor uint64) {
	if cmd.newTimer != 0 && cmd.newTimer < floor {
		floor = cmd.newTimer
	}
	p.timerFloor, p.timersAt, p.timersOK = floor, cmd.Seq, true
}

// backfill queues the next slice of the backfill of the current audience
// generation and returns the cursor after it.
func (p *Partition) backfill(rw store.ReadWriter, cmd *PartitionCommand, get func([]byte) *work) (backfillCursor, error) {
	if cmd.Gen == 0 {
		return backfillCursor{}, nil
	}
	var cur backfillCursor
	v, err := rw.Get(p.key([]byte("b")))
	if err == nil {
		if err := msgpack.Unmarshal(v, &cur); err != nil {
			return cur, fmt.Errorf("backfill cursor: %w", err)
		}
	} else if !errors.Is(err, store.ErrNotFound) {
		return cur, err
	}
	if cur.Gen == cmd.Gen && cur.Done {
		return cur, nil
	}
	if cur.Gen != cmd.Gen {
		cur = backfillCursor{Gen: cmd.Gen}
	}
	// Profiles with a GCR or with audience state (memberships of a deleted
	// audience must end too); the GCR range covers both in practice. The
	// scan sees the GCRs ApplyHeld keeps in memory once they are written:
	// a profile created in a held entry has no key in the store before.
	if err := p.releaseHeld(rw); err != nil {
		return cur, err
	}
	prefix := p.key([]byte("g/"))
	lower := prefix
	if cur.After != nil {
		lower = append(bytes.Clone(prefix), cur.After...)
		lower = append(lower, 0)
	}
	n := 0
	err = rw.Scan(lower, store.PrefixEnd(prefix), false, func(k, _ []byte) bool {
		id := bytes.Clone(k[len(prefix):])
		w := get(id)
		w.all = true
		if w.reason == "" {
			w.reason = "backfill"
		}
		cur.After = id
		n++
		return n < p.sm.opts.BackfillPerEntry
	})
	if err != nil {
		return cur, err
	}
	if n < p.sm.opts.BackfillPerEntry {
		cur.Done = true
	}
	return cur, setMsgpack(rw, p.key([]byte("b")), &cur)
}

// evaluate re-evaluates one profile's audiences and writes its state,
// timer, membership index and transitions. settled is audience.Step.Settled.
func (p *Partition) evaluate(rw store.ReadWriter, cmd *PartitionCommand, id []byte, w *work, settled bool, outIdx *uint32) error {
	var raw []byte
	var err error
	if !w.fresh {
		if raw, err = loadRawAudienceState(rw, p, id); err != nil {
			return err
		}
	}
	quiet := settled && !w.all && !w.timer && len(w.joined) == 0 && cmd.Audiences.Quiet(w.events)
	if quiet && raw != nil && cmd.Audiences.StateUnchanged(raw, cmd.Now) {
		// The events change nothing any rule reads and the state would be
		// written back as it is: no decode, no evaluation, no write.
		p.quiet++
		return nil
	}
	st := &audience.State{}
	if raw != nil {
		if st, err = cmd.Audiences.DecodeState(raw); err != nil {
			return err
		}
	}
	oldTimer := st.Timer
	if w.rebuilt {
		st.Aggs = nil // built again from the profile's events after the split
	}
	for _, j := range w.joined {
		cmd.Audiences.Join(st, j)
	}
	// The GCR is read only when a rule needs it (traits, stats, history)
	// or a transition carries the person's identifiers, and then once.
	step, loadProf, profErr := p.lazyStep(rw, cmd.gcr, id)
	if !p.sm.opts.noFreshHistory && len(w.joined) == 0 && len(w.events) > 0 {
		stored := step.History
		step.History = func(fn func(audience.Event) bool) error {
			if evs, ok := freshHistory(loadProf(), w.events); ok {
				p.fresh++
				for _, ev := range evs {
					if !fn(ev) {
						break
					}
				}
				return nil
			}
			return stored(fn)
		}
	}
	if w.rebuilt {
		step.History = func(fn func(audience.Event) bool) error {
			for _, ev := range w.history {
				if !fn(ev) {
					break
				}
			}
			return nil
		}
	}
	step.Now, step.Events, step.Reason, step.All, step.Timer, step.Settled = cmd.Now, w.events, w.reason, w.all, w.timer, settled
	if len(w.events) > 1 && !w.all && !w.timer {
		step.Reason = "events"
	}
	trs, err := cmd.Audiences.Apply(st, step)
	if err == nil {
		err = profErr() // a rule read the GCR and the read failed
	}
	if err != nil {
		return err
	}
	for _, tr := range trs {
		if err := p.transition(rw, cmd, id, loadProf(), tr, outIdx); err != nil {
			return err
		}
	}
	if oldTimer != st.Timer {
		if oldTimer != 0 {
			if err := rw.Delete(p.timerKey(oldTimer, id)); err != nil {
				return err
			}
		}
		if st.Timer != 0 {
			if err := rw.Set(p.timerKey(st.Timer, id), nil); err != nil {
				return err
			}
			if t := uint64(max(st.Timer, 0)); cmd.newTimer == 0 || t < cmd.newTimer {
				cmd.newTimer = t
			}
		}
	}
	if len(st.Aggs) == 0 && len(st.Members) == 0 && st.Timer == 0 {
		return rw.Delete(p.stateKey(id))
	}
	data, err := audience.EncodeState(st)
	if err != nil {
		return err
	}
	return rw.Set(p.stateKey(id), data)
}

// dropAudienceState ends the memberships of a profile merged away (reason
// "merged") and deletes its audience state; its aggregates live on in the
// absorbing profile (Absorption.FromState).
func (p *Partition) dropAudienceState(rw store.ReadWriter, cmd *PartitionCommand, id []byte, outIdx *uint32) error {
	st, err := loadAudienceState(rw, p, id)
	if err != nil || st == nil {
		return err
	}
	for _, m := range st.Members {
		tr := audience.Transition{Audience: m.Audience, Version: m.Version, Reason: "merged", Time: cmd.Now}
		if err := p.transition(rw, cmd, id, nil, tr, outIdx); err != nil {
			return err
		}
	}
	if st.Timer != 0 {
		if err := rw.Delete(p.timerKey(st.Timer, id)); err != nil {
			return err
		}
	}
	return rw.Delete(p.stateKey(id))
}

// Transition is the JSON published on aurum.audience.<name>.entered|exited.
type Transition struct {
	Type        string `json:"type"` // audience.entered | audience.exited
	Audience    string `json:"audience"`
	ProfileID   string `json:"profile_id"`
	RuleVersion int64  `json:"rule_version"`
	Time        string `json:"time"` // log time, RFC 3339
	Reason      string `json:"reason"`
	Seq         uint64 `json:"seq"` // log position that caused it
}

func (p *Partition) transition(rw store.ReadWriter, cmd *PartitionCommand, id []byte, prof *gcr.Profile, tr audience.Transition, outIdx *uint32) error {
	kind := "exited"
	if tr.Entered {
		kind = "entered"
	}
	mk := p.memberKey(tr.Audience, id)
	cnt, err := readUint64(rw, p.countKey(tr.Audience))
	if err != nil {
		return err
	}
	if tr.Entered {
		v := binary.BigEndian.AppendUint64(binary.BigEndian.AppendUint64(nil, uint64(tr.Time)), uint64(tr.Version))
		if err := rw.Set(mk, v); err != nil {
			return err
		}
		cnt++
	} else {
		if err := rw.Delete(mk); err != nil {
			return err
		}
		if cnt > 0 {
			cnt--
		}
	}
	if cnt == 0 {
		if err := rw.Delete(p.countKey(tr.Audience)); err != nil {
			return err
		}
	} else if err := setUint64(rw, p.countKey(tr.Audience), cnt); err != nil {
		return err
	}
	data, err := json.Marshal(Transition{Type: "audience." + kind, Audience: tr.Audience, ProfileID: ulidString(id),
		RuleVersion: tr.Version, Time: time.UnixMilli(tr.Time).UTC().Format(time.RFC3339Nano), Reason: tr.Reason, Seq: cmd.Seq})
	if err != nil {
		return err
	}
	msg := OutMsg{Subject: SubjectAudiencePrefix + tr.Audience + "." + kind, Data: data,
		MsgID: fmt.Sprintf("aud:%s:%s:%d:%d", tr.Audience, ulidString(id), cmd.Seq, *outIdx)}
	if tr.Reason != ReasonErased {
		// An erased exit carries no identifiers, no profile header and no
		// history row: the person is gone.
		msg.Profile = bytes.Clone(id)
		h := HistoryEntry{Audience: tr.Audience, Entered: tr.Entered, Time: tr.Time, Reason: tr.Reason,
			RuleVersion: tr.Version, Seq: cmd.Seq}
		if err := setMsgpack(rw, p.historyKey(id, tr.Time, cmd.Seq, *outIdx), &h); err != nil {
			return err
		}
	}
	if prof != nil && tr.Reason != ReasonErased {
		msg.ConsentKnown = true
		for ch, c := range prof.Consent {
			if msg.Consent == nil {
				msg.Consent = make(map[string]bool, len(prof.Consent))
			}
			msg.Consent[ch] = c.Granted
		}
		for _, ident := range prof.Identifiers {
			msg.Identifiers = append(msg.Identifiers, OutIdent{Type: ident.Type, Key: ident.Key, Sealed: ident.Sealed})
		}
	}
	ok := p.key([]byte("o/"), binary.BigEndian.AppendUint32(binary.BigEndian.AppendUint64(nil, cmd.Seq), *outIdx))
	*outIdx++
	cmd.transitions++
	return setMsgpack(rw, ok, &msg)
}

// traitReader unseals trait values on demand (cached per evaluation). A
// failure to open that is not ErrUnreadable goes to fail (see
// Options.Open), and the trait reads as absent meanwhile.
func (p *Partition) traitReader(prof *gcr.Profile, fail func(error)) func(string) (any, bool) {
	cache := map[string]any{}
	return func(name string) (any, bool) {
		if v, ok := cache[name]; ok {
			return v, v != nil
		}
		t, ok := prof.Traits[name]
		if !ok || p.sm.opts.Open == nil {
			cache[name] = nil
			return nil, false
		}
		pt, err := p.sm.opts.Open(t.Key, t.Sealed)
		if err != nil {
			if err := openFailure(err); err != nil {
				fail(fmt.Errorf("trait %q: %w", name, err))
			}
			cache[name] = nil
			return nil, false
		}
		// CheckMsgpack first: msgpack.Unmarshal sizes slices by their
		// declared length, and the plaintext is only as sound as its key's
		// holder (a corrupt or hostile value must not allocate without bound).
		var v any
		if CheckMsgpack(pt) != nil || msgpack.Unmarshal(pt, &v) != nil || v == nil {
			cache[name] = nil
			return nil, false
		}
		cache[name] = v
		return v, true
	}
}

// Membership is a profile's membership of an audience (read side).
type Membership struct {
	Audience string
	Since    int64
	Version  int64
}

// Memberships returns the audiences profile is in.
func (sm *StateMachine) Memberships(r store.Reader, profile []byte) ([]Membership, error) {
	p := sm.partitions[gcr.PartitionOf(profile, len(sm.partitions))]
	st, err := loadAudienceState(r, p, profile)
	if err != nil || st == nil {
		return nil, err
	}
	out := make([]Membership, 0, len(st.Members))
	for _, m := range st.Members {
		out = append(out, Membership{Audience: m.Audience, Since: m.Since, Version: m.Version})
	}
	return out, nil
}

// AudienceSize returns the number of members of an audience.
func (sm *StateMachine) AudienceSize(r store.Reader, name string) (int64, error) {
	var total int64
	for _, p := range sm.partitions {
		n, err := readUint64(r, p.countKey(name))
		if err != nil {
			return 0, err
		}
		total += int64(n)
	}
	return total, nil
}

// AudienceMembers lists up to limit members of an audience with profile ids
// after the cursor (exclusive; nil = from the start), in profile id order.
func (sm *StateMachine) AudienceMembers(r store.Reader, name string, after []byte, limit int) ([]Membership, [][]byte, error) {
	type row struct {
		id []byte
		m  Membership
	}
	var rows []row
	for _, p := range sm.partitions {
		prefix := p.key([]byte("m/"), []byte(name), []byte{0})
		lower := prefix
		if after != nil {
			lower = append(append(bytes.Clone(prefix), after...), 0)
		}
		n := 0
		err := r.Scan(lower, store.PrefixEnd(prefix), false, func(k, v []byte) bool {
			if len(v) != 16 {
				return true
			}
			rows = append(rows, row{id: bytes.Clone(k[len(prefix):]), m: Membership{Audience: name,
				Since: int64(binary.BigEndian.Uint64(v[:8])), Version: int64(binary.BigEndian.Uint64(v[8:]))}})
			n++
			return n < limit
		})
		if err != nil {
			return nil, nil, err
		}
	}
	slices.SortFunc(rows, func(a, b row) int { return bytes.Compare(a.id, b.id) })
	if len(rows) > limit {
		rows = rows[:limit]
	}
	ms := make([]Membership, len(rows))
	ids := make([][]byte, len(rows))
	for i, r := range rows {
		ms[i], ids[i] = r.m, r.id
	}
	return ms, ids, nil
}

// PreviewResult is the outcome of a preview.
type PreviewResult struct {
	Size      int64    // members (exact) or the estimate
	Exact     bool     // every profile was evaluated
	Margin    int64    // 95 % confidence half-width of an estimate (0 when exact)
	Profiles  int64    // profiles in the state
	Evaluated int64    // profiles evaluated
	Sample    [][]byte // up to the requested number of member ids
}

// Preview evaluates rule (the audience named name in set, compiled alone)
// over the profiles as of now, without changing anything. With at most
// maxEval profiles (0: no bound) it evaluates all of them and the size is
// exact; otherwise it evaluates an evenly spaced sample of maxEval profiles
// (every k-th in key order, in every partition) and estimates the size with
// a 95 % margin. Partitions are evaluated in parallel; aggregates the
// profile's stored audience state already has are reused, others are
// computed from its event history, and the GCR is read only when needed.
//
// It streams: a first pass counts each partition's profiles, a second
// evaluates every k-th one as it is scanned. Memory is bounded by the
// sample (at most sample ids per partition), not by the profiles.
func (sm *StateMachine) Preview(r store.Reader, set *audience.Set, now int64, sample, maxEval int) (PreviewResult, error) {
	var total int64
	for _, p := range sm.partitions {
		prefix := p.key([]byte("g/"))
		if err := r.Scan(prefix, store.PrefixEnd(prefix), false, func(_, _ []byte) bool {
			total++
			return true
		}); err != nil {
			return PreviewResult{}, err
		}
	}
	stride := int64(1)
	if maxEval > 0 && total > int64(maxEval) {
		stride = (total + int64(maxEval) - 1) / int64(maxEval)
	}
	type result struct {
		matched, evaluated int64
		sample             [][]byte
		err                error
	}
	results := make([]result, len(sm.partitions))
	work := make(chan int)
	var wg sync.WaitGroup
	for range min(runtime.GOMAXPROCS(0), len(sm.partitions)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range work {
				var res result
				prefix := sm.partitions[i].key([]byte("g/"))
				j := int64(0)
				err := r.Scan(prefix, store.PrefixEnd(prefix), false, func(k, _ []byte) bool {
					j++
					if (j-1)%stride != 0 {
						return true
					}
					id := k[len(prefix):]
					in, err := sm.partitions[i].previewOne(r, set, now, id)
					if err != nil {
						res.err = err
						return false
					}
					res.evaluated++
					if in {
						res.matched++
						if len(res.sample) < sample {
							res.sample = append(res.sample, bytes.Clone(id))
						}
					}
					return true
				})
				if res.err == nil {
					res.err = err
				}
				results[i] = res
			}
		}()
	}
	for i := range sm.partitions {
		work <- i
	}
	close(work)
	wg.Wait()
	out := PreviewResult{Profiles: total, Exact: stride == 1}
	var matched int64
	for _, res := range results {
		if res.err != nil {
			return PreviewResult{}, res.err
		}
		matched += res.matched
		out.Evaluated += res.evaluated
		out.Sample = append(out.Sample, res.sample[:min(len(res.sample), sample-len(out.Sample))]...)
	}
	out.Size = matched
	if !out.Exact && out.Evaluated > 0 {
		p := float64(matched) / float64(out.Evaluated)
		out.Size = int64(math.Round(p * float64(total)))
		fpc := math.Sqrt(float64(total-out.Evaluated) / float64(max(total-1, 1))) // finite population
		out.Margin = int64(math.Ceil(1.96 * math.Sqrt(p*(1-p)/float64(out.Evaluated)) * fpc * float64(total)))
	}
	return out, nil
}

// previewOne evaluates the preview set for one profile.
func (p *Partition) previewOne(r store.Reader, set *audience.Set, now int64, id []byte) (bool, error) {
	live, err := loadAudienceState(r, p, id)
	if err != nil {
		return false, err
	}
	st := &audience.State{}
	if live != nil {
		// Memberships of other audiences stay (in_audience reads them); one
		// of the previewed name must not count as already in.
		st.Aggs = live.Aggs
		for _, m := range live.Members {
			if _, ok := set.Get(m.Audience); !ok {
				st.Members = append(st.Members, m)
			}
		}
	}
	step, _, profErr := p.lazyStep(r, nil, id)
	step.Now, step.All, step.Preview, step.Reason = now, true, true, "preview"
	trs, err := set.Apply(st, step)
	if err == nil {
		err = profErr()
	}
	if err != nil {
		return false, err
	}
	for _, tr := range trs {
		if tr.Entered {
			return true, nil
		}
	}
	return false, nil
}

// lazyStep returns a Step whose Traits, Stats and History read the
// profile's GCR on first use (once), the loader itself (for callers that
// need the GCR too), and a function reporting the error of that read if it
// happened (it does not force the read), or else of opening a trait (a
// failure other than ErrUnreadable: the evaluation must not be kept). A GCR that txn (nil: none) wrote
// in this apply is taken from it instead of being read and decoded again.
func (p *Partition) lazyStep(r store.Reader, txn *gcr.Txn, id []byte) (audience.Step, func() *gcr.Profile, func() error) {
	var prof *gcr.Profile
	var profErr, openErr error
	var traits func(string) (any, bool)
	var recs *recommender
	load := func() *gcr.Profile {
		if prof == nil {
			var ok bool
			if txn != nil {
				prof, ok = txn.Flushed(id)
			}
			if !ok {
				prof, profErr = p.gcr.Get(r, id)
			} else if prof == nil {
				profErr = store.ErrNotFound
			}
			if profErr != nil {
				if errors.Is(profErr, store.ErrNotFound) {
					profErr = nil
				}
				prof = &gcr.Profile{ID: id}
			}
			traits = p.traitReader(prof, func(err error) {
				if openErr == nil {
					openErr = err
				}
			})
		}
		return prof
	}
	step := audience.Step{
		Traits: func(name string) (any, bool) { load(); return traits(name) },
		Stats: func() (int64, int64, bool) {
			s := load().Stats
			return s.FirstSeen, s.LastSeen, s.Events > 0
		},
		History: func(fn func(audience.Event) bool) error { return p.history(r, load())(fn) },
		Predictions: func(name string, at int64) (float64, bool) {
			return p.sm.prediction(load(), name, at)
		},
		Recommendations: func(model string, at int64) ([]string, bool) {
			if recs == nil {
				recs = &recommender{sm: p.sm, r: r, prof: load}
			}
			return recs.list(model, at)
		},
	}
	return step, load, func() error {
		if profErr != nil {
			return profErr
		}
		if recs != nil && recs.err != nil {
			return recs.err
		}
		return openErr
	}
}

// history iterates a profile's stored events for audience aggregates.
func (p *Partition) history(r store.Reader, prof *gcr.Profile) func(fn func(audience.Event) bool) error {
	return func(fn func(audience.Event) bool) error {
		recs, err := p.gcr.Events(r, prof, 1<<20)
		if err != nil {
			return err
		}
		for i := range recs {
			rec := &recs[i]
			if err := openFailure(rec.OpenProperties(p.sm.opts.Open)); err != nil {
				return fmt.Errorf("projections: history of %s: event %s: %w", ulidString(prof.ID), ulidString(rec.ID), err)
			}
			name := ""
			if rec.Kind == event.Track {
				name = rec.Event
			}
			if !fn(audience.Event{Name: name, Time: rec.Time, ID: rec.ID, Props: rec.Properties}) {
				break
			}
		}
		return nil
	}
}

// freshHistory returns what history would iterate for prof when its only
// stored events are the step's events, without reading the store; ok is
// false when that cannot be shown (then the history must be read).
//
// Why it is the same: every event record under a profile is written by
// gcr.Txn.Add, which also counts it in Stats.Events, and a profile's
// records are read only from it and from MergedFrom. A profile with no
// MergedFrom whose Stats.Events equals the number of the step's events got
// no event before this step (each Add of the step counted one), so its
// records are exactly the step's, stored under (time clamped at 0, id):
// history yields them newest first in that order, with the fields below,
// and one record per key, hence the fallback when two events share a key.
// The order matters: sums of floats depend on it.
func freshHistory(prof *gcr.Profile, events []audience.Event) ([]audience.Event, bool) {
	if prof == nil || len(prof.MergedFrom) != 0 || prof.Stats.Events != int64(len(events)) || len(events) == 0 {
		return nil, false
	}
	out := make([]audience.Event, len(events))
	for i, ev := range events {
		out[i] = audience.Event{Name: ev.Name, Time: ev.Time, ID: ev.ID, Props: ev.Props}
	}
	order := func(a, b *audience.Event) int { // stored key order, newest first
		ta, tb := uint64(max(a.Time, 0)), uint64(max(b.Time, 0))
		if ta != tb {
			if ta > tb {
				return -1
			}
			return 1
		}
		return bytes.Compare(b.ID, a.ID)
	}
	slices.SortFunc(out, func(a, b audience.Event) int { return order(&a, &b) })
	for i := 1; i < len(out); i++ {
		if order(&out[i-1], &out[i]) == 0 {
			return nil, false // one stored record for two events
		}
	}
	return out, true
}
