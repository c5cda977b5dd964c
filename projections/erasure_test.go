package projections

import (
	"bytes"
	"fmt"
	"strconv"
	"strings"
	"testing"

	"github.com/aurumcdp/aurum/event"
	"github.com/aurumcdp/aurum/projections/audience"
	"github.com/aurumcdp/aurum/projections/identity"
	"github.com/aurumcdp/aurum/store"
	"github.com/oklog/ulid/v2"
)

func ulidBytes(s string) ([]byte, error) {
	u, err := ulid.ParseStrict(s)
	return u[:], err
}

// runErasure runs the erasure commands of the data-driven audience tests.
func (r *audienceRun) runErasure(f []string) string {
	switch f[0] {
	case "erase":
		at := parseTime(r.t, f[1])
		typ, hash := f[2], testHash(f[2], f[3])
		if typ == event.ProfileID {
			p := r.profileOf(f[3])
			if p == nil {
				r.t.Fatalf("erase profile_id: unknown user %s", f[3])
			}
			hash = p
		}
		r.lastErasure = testHash("erasure", strconv.FormatUint(r.seq+1, 10))
		out := r.apply(SubjectControl, &Control{Kind: ControlErasureRequest, Time: at,
			Erasure: ErasureRequest{ID: r.lastErasure, Type: typ, Hash: hash}})
		st, err := Erasure(r.s, r.lastErasure)
		if err != nil {
			r.t.Fatal(err)
		}
		line := fmt.Sprintf("erasure: found=%v identifiers=%d profiles=%d events=%d audiences=%d",
			st.Found, st.Identifiers, st.Profiles, st.Events, st.Audiences)
		pend, err := PendingErasures(r.s)
		if err != nil {
			r.t.Fatal(err)
		}
		for _, p := range pend {
			if bytes.Equal(p.ID, r.lastErasure) {
				line += fmt.Sprintf("\npending: keys=%d values=%d profiles=%d first_output=%v", len(p.Keys), len(p.Values), len(p.Profiles), p.FirstOutput > 0)
			}
		}
		if out != "" {
			return out + "\n" + line
		}
		return line
	case "complete":
		r.apply(SubjectControl, &Control{Kind: ControlErasureCompleted, Time: 1, Erasure: ErasureRequest{ID: r.lastErasure}})
		st, err := Erasure(r.s, r.lastErasure)
		if err != nil {
			r.t.Fatal(err)
		}
		pend, _ := PendingErasures(r.s)
		return fmt.Sprintf("completed=%v pending=%d", st.Completed != 0, len(pend))
	case "lookup":
		p, err := r.sm.Keychain().Lookup(r.s, f[1], testHash(f[1], f[2]))
		if err != nil {
			return "not found"
		}
		return "owned by " + r.label(ulidString(p))
	case "state":
		var lines []string
		n, err := Suppressed(r.s)
		if err != nil {
			r.t.Fatal(err)
		}
		keys, _ := SuppressedKeys(r.s)
		lines = append(lines, fmt.Sprintf("suppressed events %d, identifiers %d", n, len(keys)))
		if err := r.sm.Keychain().Check(r.s); err != nil {
			lines = append(lines, "keychain: "+err.Error())
		} else {
			lines = append(lines, "keychain ok")
		}
		lines = append(lines, "leftovers: "+r.leftovers())
		// A replay of the same log gives the same state, even though the
		// erased keys are destroyed by then (traits sealed under them
		// cannot be read).
		other := store.NewMem()
		opts := r.opts
		gone := map[string]bool{}
		for _, k := range keys {
			gone[string(k)] = true
		}
		open := opts.Open
		opts.Open = func(key, sealed []byte) ([]byte, error) {
			if gone[string(key)] {
				return nil, fmt.Errorf("%w: key %x destroyed", ErrUnreadable, key)
			}
			return open(key, sealed)
		}
		sm := New(opts)
		for _, e := range r.log {
			if _, err := sm.Apply(other, e.seq, e.subject, e.data); err != nil {
				r.t.Fatal(err)
			}
		}
		if bytes.Equal(digest(r.t, r.s), digest(r.t, other)) {
			lines = append(lines, "replay: same digest")
		} else {
			lines = append(lines, "replay: DIGEST DIFFERS")
		}
		return strings.Join(lines, "\n")
	}
	return ""
}

// leftovers lists the keys that still name an erased profile: profiles
// are labelled "erased" once an erasure removed them.
func (r *audienceRun) leftovers() string {
	erased := map[string]bool{}
	// Profiles whose label is known but whose keychain node is gone.
	for pid := range r.users {
		id, err := ulidBytes(pid)
		if err != nil {
			continue
		}
		if _, err := r.sm.Keychain().Root(r.s, id); err != nil {
			erased[string(id)] = true
		}
	}
	var found []string
	err := r.s.Scan(nil, nil, false, func(k, v []byte) bool {
		if IsOutboxKey(k) {
			return true
		}
		for id := range erased {
			if bytes.Contains(k, []byte(id)) || (len(v) == identity.IDLen && bytes.Equal(v, []byte(id))) {
				found = append(found, fmt.Sprintf("%q", k))
			}
		}
		return true
	})
	if err != nil {
		r.t.Fatal(err)
	}
	if len(found) == 0 {
		return "none"
	}
	return strings.Join(found, " ")
}

// TestErasureApplyEdges: outbox entries about the person not yet published
// lose their identifiers; malformed and repeated requests change nothing
// but the position; profile_id erasures work; a snapshot restore followed
// by the erasure record gives the same state as the live one.
func TestErasureApplyEdges(t *testing.T) {
	sm := New(Options{Partitions: 4})
	s := store.NewMem()
	var seq uint64
	apply := func(subject string, v any) Result {
		t.Helper()
		data, err := marshalEntry(v)
		if err != nil {
			t.Fatal(err)
		}
		seq++
		res, err := sm.Apply(s, seq, subject, data)
		if err != nil {
			t.Fatal(err)
		}
		return res
	}
	apply(SubjectControl, &Control{Kind: ControlAudiencePut, Audience: audience.Definition{Name: "all", Rule: `count("Viewed") >= 1`}})
	uid := event.IDRef{Type: event.UserID, Hash: testHash(event.UserID, "u1"), Sealed: []byte("sealed-u1")}
	rec := event.Record{ID: testHash("ev", "1"), MessageID: "m1", Source: "web", Kind: event.Track, Event: "Viewed",
		Time: 1000, Received: 1000, Key: uid.Hash, IDs: []event.IDRef{uid}}
	apply(SubjectEvents, &event.Batch{ID: testHash("b", "1"), Received: 1000, Records: []event.Record{rec}})
	pid, err := sm.Keychain().Lookup(s, event.UserID, uid.Hash)
	if err != nil {
		t.Fatal(err)
	}
	snap := store.NewMem()
	var buf bytes.Buffer
	if err := Snapshot(s, &buf); err != nil {
		t.Fatal(err)
	}
	if err := Restore(snap, bytes.NewReader(buf.Bytes())); err != nil {
		t.Fatal(err)
	}
	snapSeq := seq

	// The entry is still in the outbox, with the sealed identifier.
	withIDs := func() int {
		n := 0
		for _, p := range OutboxPrefixes(4) {
			ents, err := Outbox(s, p, 100)
			if err != nil {
				t.Fatal(err)
			}
			for _, e := range ents {
				if bytes.Equal(e.Msg.Profile, pid) && len(e.Msg.Identifiers) > 0 {
					n++
				}
			}
		}
		return n
	}
	if withIDs() != 1 {
		t.Fatalf("want the entered transition pending with identifiers")
	}
	var tail []entry
	record := func(subject string, v any) Result {
		data, _ := marshalEntry(v)
		tail = append(tail, entry{seq: seq + 1, subject: subject, data: data})
		return apply(subject, v)
	}
	// Malformed requests: ignored, counted.
	for _, bad := range []ErasureRequest{{ID: []byte("short"), Type: "email", Hash: uid.Hash},
		{ID: testHash("e", "x"), Type: "Bad/Type", Hash: uid.Hash}, {ID: testHash("e", "y"), Type: "email", Hash: []byte("x")}} {
		if res := record(SubjectControl, &Control{Kind: ControlErasureRequest, Erasure: bad}); res.Invalid != 1 || res.Erasures != 0 {
			t.Fatalf("bad request %+v: %+v", bad, res)
		}
	}
	id := testHash("erasure", "1")
	res := record(SubjectControl, &Control{Kind: ControlErasureRequest, Time: 2000,
		Erasure: ErasureRequest{ID: id, Type: event.ProfileID, Hash: pid}})
	if res.Erasures != 1 || res.Transitions != 1 {
		t.Fatalf("erasure by profile_id: %+v", res)
	}
	if withIDs() != 0 {
		t.Fatal("an outbox entry about the erased person still carries identifiers")
	}
	if _, err := sm.Keychain().Lookup(s, event.UserID, uid.Hash); err == nil {
		t.Fatal("the person is still in the keychain")
	}
	// The same request again (an append retried): nothing changes.
	if res := record(SubjectControl, &Control{Kind: ControlErasureRequest, Time: 3000,
		Erasure: ErasureRequest{ID: id, Type: event.UserID, Hash: uid.Hash}}); res.Erasures != 0 {
		t.Fatalf("repeated request applied again: %+v", res)
	}
	st, err := Erasure(s, id)
	if err != nil || !st.Found || st.Requested != 2000 || st.Identifiers != 1 || st.Events != 1 || st.Audiences != 1 {
		t.Fatalf("status %+v %v", st, err)
	}

	// From the snapshot, the log's tail gives the same state.
	sm2 := New(Options{Partitions: 4})
	if err := sm2.Load(snap); err != nil {
		t.Fatal(err)
	}
	for i, e := range tail {
		if _, err := sm2.Apply(snap, snapSeq+uint64(i)+1, e.subject, e.data); err != nil {
			t.Fatal(err)
		}
	}
	if !bytes.Equal(digest(t, s), digest(t, snap)) {
		t.Fatal("restore from a snapshot taken before the erasure, then the log: digest differs")
	}
	// A later event with the identifier is dropped and counted.
	rec2 := rec
	rec2.ID, rec2.MessageID = testHash("ev", "2"), "m2"
	if res := apply(SubjectEvents, &event.Batch{ID: testHash("b", "2"), Received: 4000, Records: []event.Record{rec2}}); res.Suppressed != 1 || res.Created != 0 {
		t.Fatalf("later event: %+v", res)
	}
}
