package projections

import (
	"bytes"
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/aurumcdp/aurum/event"
	"github.com/aurumcdp/aurum/projections/audience"
	"github.com/aurumcdp/aurum/projections/identity"
	"github.com/aurumcdp/aurum/store"
	"github.com/vmihailenco/msgpack/v5"
)

const splitDay = int64(24 * 3600 * 1000)

// splitRun is a matchRun with audiences and events of chosen names, times
// and identifiers.
type splitRun struct {
	*matchRun
	now int64
}

func newSplitRun(t *testing.T) *splitRun {
	r := &splitRun{matchRun: newMatchRun(t), now: 1_700_000_000_000}
	for name, rule := range map[string]string{
		"buyers":   `count("Order Completed", "30d") >= 1`,
		"big":      `sum("Order Completed", "revenue") >= 100`,
		"browsers": `count("Viewed", "7d") >= 2`,
	} {
		r.apply(&Control{Kind: ControlAudiencePut, Time: r.now, Audience: audience.Definition{Name: name, Rule: rule}})
	}
	return r
}

// ev ingests one track event (revenue > 0: an Order Completed) at day
// offset day with the identifiers (type:value) and traits.
func (r *splitRun) ev(day int64, name string, revenue float64, traits map[string]any, ids ...string) []byte {
	r.t.Helper()
	var refs []event.IDRef
	for _, s := range ids {
		typ, v, _ := strings.Cut(s, ":")
		refs = append(refs, event.IDRef{Type: typ, Hash: testHash(typ, v)})
	}
	at := r.now + day*splitDay
	rec := event.Record{ID: r.id(), Source: "web", Kind: event.Track, Event: name, Time: at, Received: at, Key: refs[0].Hash, IDs: refs}
	if revenue > 0 {
		rec.Properties = map[string]any{"revenue": revenue}
	}
	if len(traits) > 0 {
		rec.Traits = map[string][]byte{}
		for k, v := range traits {
			b, _ := msgpack.Marshal(v)
			rec.Traits[k] = b
		}
	}
	r.apply(&event.Batch{ID: r.id(), Received: at, Records: []event.Record{rec}})
	return r.root(refs[0].Type, refs[0].Hash)
}

// split applies an identity.split of profile at day offset day and returns
// its record.
func (r *splitRun) split(day int64, profile []byte, ids ...string) (SplitRecord, Result) {
	r.t.Helper()
	q := &SplitRequest{ID: r.id(), Profile: profile, By: "ann"}
	for _, s := range ids {
		typ, v, _ := strings.Cut(s, ":")
		q.Identifiers = append(q.Identifiers, SplitIdent{Type: typ, Hash: testHash(typ, v)})
	}
	res := r.apply(&Control{Kind: ControlIdentitySplit, Time: r.now + day*splitDay, Split: q})
	rec, err := GetSplit(r.s, q.ID)
	if err != nil {
		r.t.Fatalf("split record: %v", err)
	}
	return rec, res
}

func (r *splitRun) members(p []byte) []string {
	r.t.Helper()
	ms, err := r.sm.Memberships(r.s, p)
	if err != nil {
		r.t.Fatal(err)
	}
	out := []string{}
	for _, m := range ms {
		out = append(out, m.Audience)
	}
	return out
}

// outputs lists every outbox message: msg id → subject.
func outputs(t *testing.T, s store.Reader, partitions int) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, p := range OutboxPrefixes(partitions) {
		ents, err := Outbox(s, p, 1<<20)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range ents {
			out[e.Msg.MsgID] = e.Msg.Subject
		}
	}
	return out
}

// TestSplitUndoesAWrongMerge: a wrong merge (probabilistic, by a shared
// identifier, by a reviewer), then a split: the events of the moved
// identifiers, the counts, revenue, windows, traits, features and the
// audience memberships of both people are as if they had never been
// merged; the exits and entries go out once, with ids a replay gives again.
func TestSplitUndoesAWrongMerge(t *testing.T) {
	type person struct {
		events, orders int64
		revenue        int64 // micro-units
		members        []string
		trait          string
	}
	for _, tc := range []struct {
		name  string
		merge func(r *splitRun, a, b []byte)
		// linked: a shared identifier merged them; its event stays with ann
		linked bool
	}{
		{name: "probabilistic", merge: func(r *splitRun, a, b []byte) {
			if m := r.propose(b, a, 0.999); m.Status != MatchMerged {
				r.t.Fatalf("merge: %+v", m)
			}
		}},
		{name: "reviewer", merge: func(r *splitRun, a, b []byte) {
			m := r.propose(b, a, 0.9)
			if m = r.review(m.ID, DecisionMerge); m.Status != MatchMerged {
				r.t.Fatalf("review: %+v", m)
			}
		}},
		{name: "shared identifier", linked: true, merge: func(r *splitRun, a, b []byte) {
			// Bob's till receipt carries Ann's email: a deterministic link.
			if p := r.ev(12, "Viewed", 0, nil, "crm_id:bob", "email:ann@x.org"); !bytes.Equal(p, a) {
				r.t.Fatalf("the shared email did not merge: %x", p)
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := newSplitRun(t)
			// Ann: two orders of 30 long ago and one view; Bob: one order of
			// 80 last week and two views.
			a := r.ev(0, "Order Completed", 30, map[string]any{"surname": "Lee"}, "crm_id:ann", "email:ann@x.org")
			r.ev(1, "Order Completed", 30, nil, "crm_id:ann")
			r.ev(2, "Viewed", 0, nil, "email:ann@x.org")
			b := r.ev(9, "Order Completed", 80, map[string]any{"surname": "Stone"}, "crm_id:bob")
			r.ev(10, "Viewed", 0, nil, "crm_id:bob")
			r.ev(11, "Viewed", 0, nil, "crm_id:bob", "phone:555")
			// As of day 13: both bought in the last 30 days, neither spent
			// 100 alone, only Bob viewed twice in the last 7 days.
			wantA := person{events: 3, orders: 2, revenue: 60e6, members: []string{"buyers"}, trait: "Lee"}
			wantB := person{events: 3, orders: 1, revenue: 80e6, members: []string{"browsers", "buyers"}, trait: "Stone"}
			if got := r.members(b); !slices.Equal(got, wantB.members) {
				t.Fatalf("bob before the merge: %v", got)
			}

			tc.merge(r, a, b)
			if got := r.members(a); !slices.Equal(got, []string{"big", "browsers", "buyers"}) {
				t.Fatalf("merged profile in %v", got)
			}
			if tc.linked {
				wantA.events++ // the linking event stays with Ann
			}
			before := outputs(t, r.s, r.sm.Partitions())

			rec, res := r.split(13, a, "crm_id:bob", "phone:555")
			if rec.Status != SplitDone || rec.Reason != "" || !bytes.Equal(rec.From, a) || len(rec.Into) != 16 {
				t.Fatalf("split: %+v", rec)
			}
			into := rec.Into
			if want := identity.ProfileID(rec.ID, r.now+13*splitDay); !bytes.Equal(into, want) {
				t.Fatalf("new profile %x, want %x (from the split id)", into, want)
			}
			if rec.EventsMoved != 3 || int64(rec.EventsKept) != wantA.events {
				t.Fatalf("moved %d kept %d, want 3 and %d", rec.EventsMoved, rec.EventsKept, wantA.events)
			}
			for typ, want := range map[string][]byte{"crm_id:bob": into, "phone:555": into, "crm_id:ann": a, "email:ann@x.org": a} {
				k, v, _ := strings.Cut(typ, ":")
				if got := r.root(k, testHash(k, v)); !bytes.Equal(got, want) {
					t.Errorf("%s owned by %x, want %x", typ, got, want)
				}
			}
			if err := r.sm.Keychain().Check(r.s); err != nil {
				t.Fatal(err)
			}
			// Bob's old profile id, all of whose events moved, finds him again.
			if got := r.rootOf(b); !bytes.Equal(got, into) {
				t.Errorf("bob's old profile id resolves to %x, want the new profile %x", got, into)
			}
			for _, c := range []struct {
				name string
				id   []byte
				want person
			}{{"ann", a, wantA}, {"bob", into, wantB}} {
				g := mustGCR(t, r.matchRun, c.id)
				if g.Stats.Events != c.want.events || g.Stats.EventCounts["Order Completed"] != c.want.orders ||
					g.Revenue["Order Completed"].Micros != c.want.revenue {
					t.Errorf("%s: events %d orders %d revenue %d, want %+v", c.name, g.Stats.Events,
						g.Stats.EventCounts["Order Completed"], g.Revenue["Order Completed"].Micros, c.want)
				}
				var surname string
				_ = msgpack.Unmarshal(g.Traits["surname"].Sealed, &surname)
				if surname != c.want.trait {
					t.Errorf("%s: surname %q, want %q", c.name, surname, c.want.trait)
				}
				// Features: one purchase day per order, an active day per event day.
				if g.Features == nil || int64(len(g.Features.Purchases)) != c.want.orders || int64(len(g.Features.ActiveDays)) != c.want.events {
					t.Errorf("%s: feature row %+v, want %d purchase and %d active days", c.name, g.Features, c.want.orders, c.want.events)
				}
				if got := r.members(c.id); !slices.Equal(got, c.want.members) {
					t.Errorf("%s: in %v, want %v", c.name, got, c.want.members)
				}
				n, err := r.sm.GCR().CountEvents(r.s, c.id)
				if err != nil {
					t.Fatal(err)
				}
				var stored int
				if c.name == "bob" {
					stored = 3
				} else {
					for _, p := range append([][]byte{a}, g.MergedFrom...) {
						k, _ := r.sm.GCR().CountEvents(r.s, p)
						stored += k
					}
					n = stored
				}
				if int64(n) != c.want.events {
					t.Errorf("%s: %d event records stored, want %d", c.name, n, c.want.events)
				}
			}
			// Ann's identifiers in her GCR, Bob's in his.
			if g := mustGCR(t, r.matchRun, into); len(g.Identifiers) != 2 {
				t.Errorf("bob's GCR identifiers: %+v", g.Identifiers)
			}

			// The exits of Ann and the entries of Bob's new profile, once.
			after := outputs(t, r.s, r.sm.Partitions())
			var fresh []string
			for id, subj := range after {
				if _, ok := before[id]; !ok {
					parts := strings.Split(id, ":") // aud:<audience>:<profile>:..., split:<id>
					fresh = append(fresh, subj+" "+parts[min(2, len(parts)-1)])
				}
			}
			slices.Sort(fresh)
			want := []string{
				"aurum.audience.big.exited " + ulidString(a),
				"aurum.audience.browsers.entered " + ulidString(into),
				"aurum.audience.browsers.exited " + ulidString(a),
				"aurum.audience.buyers.entered " + ulidString(into),
				SubjectSplit + " " + ulidString(rec.ID),
			}
			slices.Sort(want)
			if !slices.Equal(fresh, want) {
				t.Errorf("outputs of the split:\n%s\nwant\n%s", strings.Join(fresh, "\n"), strings.Join(want, "\n"))
			}
			if res.Transitions != 4 || res.Splits != 1 {
				t.Errorf("result: %+v", res)
			}

			// The matcher cannot merge them back; an event that links them
			// deterministically can.
			if m := r.propose(into, a, 1); m.Status != MatchRefused || !strings.Contains(m.Reason, "rejected") {
				t.Errorf("re-merge by the matcher: %+v", m)
			}
			// Windows run on: Bob leaves buyers when his order is 30 days old.
			r.apply(&Control{Kind: ControlTick, Time: r.now + 40*splitDay})
			if got := r.members(into); len(got) != 0 {
				t.Errorf("bob after 40 days: %v", got)
			}

			// A replay gives the same state and the same output ids.
			s2 := store.NewMem()
			applyAll(t, newSM(), s2, r.log)
			if x, y := digest(t, r.s), digest(t, s2); !bytes.Equal(x, y) {
				t.Fatal("replay digest differs")
			}
			if x, y := outputs(t, r.s, 4), outputs(t, s2, 4); !mapsEqual(x, y) {
				t.Fatalf("replay outputs differ: %d vs %d", len(x), len(y))
			}

			if tc.linked {
				return
			}
			r.ev(41, "Viewed", 0, nil, "crm_id:bob", "email:ann@x.org")
			if !bytes.Equal(r.rootOf(into), r.rootOf(a)) {
				t.Error("a deterministic link after the split did not merge them")
			}
		})
	}
}

func mapsEqual(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

// TestSplitRefused: a split record that fails a check changes nothing but
// its own row, which says why; a split id is decided once.
func TestSplitRefused(t *testing.T) {
	r := newSplitRun(t)
	a := r.ev(0, "Order Completed", 30, nil, "crm_id:ann", "email:ann@x.org")
	r.ev(1, "Viewed", 0, nil, "crm_id:bob", "email:ann@x.org")
	unknown := make([]byte, 16)
	for _, tc := range []struct {
		name    string
		profile []byte
		ids     []string
		reason  string
	}{
		{"empty", a, nil, "no identifier"},
		{"not the profile's", a, []string{"crm_id:ann", "crm_id:zed"}, "not on the profile (types crm_id)"},
		{"all of them", a, []string{"crm_id:ann", "email:ann@x.org", "crm_id:bob"}, "every identifier"},
		{"unknown profile", unknown, []string{"crm_id:ann"}, "unknown"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := dumpRanges(t, r.s, 4)
			rec, res := r.split(2, tc.profile, tc.ids...)
			if rec.Status != SplitRefused || !strings.Contains(rec.Reason, tc.reason) || res.Transitions != 0 || len(rec.Into) != 0 {
				t.Fatalf("split: %+v (result %+v), want refused: %q", rec, res, tc.reason)
			}
			if after := dumpRanges(t, r.s, 4); !bytes.Equal(after, before) {
				t.Fatal("a refused split changed the keychain, a GCR, an event record or an audience state")
			}
		})
	}
	// Splitting off an identifier seen only with one that stays is allowed:
	// the identifier moves, its events (all of them linked) stay.
	rec, _ := r.split(3, a, "crm_id:bob")
	if rec.Status != SplitDone || rec.EventsMoved != 0 || rec.EventsKept != 2 {
		t.Fatalf("split of a linked identifier: %+v", rec)
	}
	g := mustGCR(t, r.matchRun, rec.Into)
	if g.Stats.Events != 0 || len(g.Identifiers) != 1 || g.Identifiers[0].Type != "crm_id" {
		t.Fatalf("new profile: %+v", g)
	}
	// The same split id again is no change.
	q := &SplitRequest{ID: rec.ID, Profile: a, Identifiers: []SplitIdent{{Type: "crm_id", Hash: testHash("crm_id", "ann")}}}
	r.apply(&Control{Kind: ControlIdentitySplit, Time: r.now + 4*splitDay, Split: q})
	if again, err := GetSplit(r.s, rec.ID); err != nil || again.Seq != rec.Seq {
		t.Fatalf("split id applied twice: %+v %v", again, err)
	}
	if got, err := Splits(r.s, a); err != nil || len(got) != 1 || !bytes.Equal(got[0].ID, rec.ID) {
		t.Fatalf("splits of ann: %+v %v", got, err)
	}
	if _, err := GetSplit(r.s, unknown); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("unknown split: %v", err)
	}
}

// dumpRanges returns every key and value of the keychain, the rejections
// and the partitions' GCRs, event records, audience states and memberships.
func dumpRanges(t *testing.T, s store.Reader, partitions int) []byte {
	t.Helper()
	prefixes := [][]byte{[]byte("ik/"), []byte("ip/"), prefixRejection}
	for i := range partitions {
		for _, sub := range []string{"g/", "e/", "u/", "m/", "n/"} {
			prefixes = append(prefixes, append(PartitionPrefix(i), sub...))
		}
	}
	var out []byte
	for _, p := range prefixes {
		if err := s.Scan(p, store.PrefixEnd(p), false, func(k, v []byte) bool {
			out = append(append(append(out, k...), 0), v...)
			return true
		}); err != nil {
			t.Fatal(err)
		}
	}
	return out
}
