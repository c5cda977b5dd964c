package projections

import (
	"bytes"
	"fmt"
	"testing"

	"github.com/aurumcdp/aurum/projections/match"
	"github.com/aurumcdp/aurum/store"
)

func (r *matchRun) queue() []QueuedMatch {
	r.t.Helper()
	q, err := QueuedMatches(r.s, nil, 1000)
	if err != nil {
		r.t.Fatal(err)
	}
	return q
}

func (r *matchRun) pass() (MatchPass, bool) {
	r.t.Helper()
	p, ok, err := PassInProgress(r.s)
	if err != nil {
		r.t.Fatal(err)
	}
	return p, ok
}

// TestMatchQueueAndPass: a pass's steps re-index and queue the profiles a
// bounded number at a time and only at the cursor they name (a repeated
// record is no change); a report of progress removes the queue up to its
// key; a profile whose matching values change is queued only while a model
// is in effect.
func TestMatchQueueAndPass(t *testing.T) {
	r := newMatchRun(t)
	if p, ok := r.pass(); !ok || p.Reason != "config" {
		t.Fatalf("enabling matching: pass %+v %v, want a config pass", p, ok)
	}
	for i := range 5 {
		r.personWith(map[string]any{"surname": fmt.Sprint("smith", i), "postcode": "2000"}, fmt.Sprint("crm_id:", i))
	}
	if q := r.queue(); len(q) != 0 {
		t.Fatalf("queued %d without a model", len(q))
	}
	r.apply(&Control{Kind: ControlIdentityModel, Time: 2, IdentityModel: &match.Model{Version: "v1",
		Fields: []match.FieldModel{{Field: "surname", Comparison: match.Name}}}})
	p, ok := r.pass()
	if !ok || p.Reason != "model" || p.After != nil {
		t.Fatalf("after a model: pass %+v %v, want a model pass from the start", p, ok)
	}
	step := func(after []byte) {
		r.apply(&Control{Kind: ControlIdentityProgress, Time: 3, Progress: &MatchProgress{Step: 2, After: after}})
	}
	step(nil)
	p1, _ := r.pass()
	if p1.Visited != 2 || len(r.queue()) != 2 {
		t.Fatalf("first step: visited %d, queued %d; want 2, 2", p1.Visited, len(r.queue()))
	}
	step(nil) // the same step again: no change
	if p, _ := r.pass(); p.Visited != 2 || len(r.queue()) != 2 {
		t.Fatalf("repeated step: visited %d, queued %d; want 2, 2", p.Visited, len(r.queue()))
	}
	step(p1.After)
	p2, _ := r.pass()
	step(p2.After) // one profile left: fewer than asked ends the pass
	if p, ok := r.pass(); ok || len(r.queue()) != 5 {
		t.Fatalf("after the last step: pass %+v %v, queued %d; want none, 5", p, ok, len(r.queue()))
	}
	q := r.queue()
	r.apply(&Control{Kind: ControlIdentityProgress, Time: 4, Progress: &MatchProgress{Done: q[2].Key}})
	if left := r.queue(); len(left) != 2 || string(left[0].Key) != string(q[3].Key) {
		t.Fatalf("after done up to the third: %d left", len(left))
	}
	_, res := r.personWith(map[string]any{"surname": "jones", "postcode": "2001"}, "crm_id:new")
	if len(res.MatchProfiles) != 1 || len(r.queue()) != 3 {
		t.Fatalf("a new profile with a model: match profiles %d, queued %d; want 1, 3", len(res.MatchProfiles), len(r.queue()))
	}
	s2 := store.NewMem()
	applyAll(t, newSM(), s2, r.log)
	if a, b := digest(t, r.s), digest(t, s2); !bytes.Equal(a, b) {
		t.Fatalf("replay digest %x != %x", b, a)
	}
}
