package identity

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/aurumcdp/aurum/event"
	"github.com/aurumcdp/aurum/store"
	"github.com/vmihailenco/msgpack/v5"
)

type kv struct{ k, v string }

func dump(t testing.TB, r store.Reader) []kv {
	t.Helper()
	var out []kv
	if err := r.Scan(nil, nil, false, func(k, v []byte) bool {
		out = append(out, kv{string(k), string(v)})
		return true
	}); err != nil {
		t.Fatal(err)
	}
	return out
}

func copyMem(t testing.TB, r store.Reader) *store.Mem {
	m := store.NewMem()
	for _, e := range dump(t, r) {
		if err := m.Set([]byte(e.k), []byte(e.v)); err != nil {
			t.Fatal(err)
		}
	}
	return m
}

type genID struct{ typ, val string }

// genEvents returns n random events. With customers > 0, every event draws
// its identifiers from one customer, who has a single user_id, so the default
// limits are never in conflict; with customers == 0 identifiers are drawn
// from one shared pool (use with no limits). weak adds alias-style weak pairs.
func genEvents(rng *rand.Rand, n, customers int, weak bool) []Input {
	types := []string{event.UserID, event.Email, event.Phone, event.AnonymousID, "crm_id"}
	var evs []Input
	for i := range n {
		in := Input{
			EventID: testEventID(fmt.Sprintf("gen/%d", i)),
			// Few distinct times, so that candidate ids tie on time.
			Time: int64(rng.IntN(8)) * 1000,
		}
		c := rng.IntN(max(customers, 1))
		for range 1 + rng.IntN(3) {
			typ := types[rng.IntN(len(types))]
			val := fmt.Sprint(rng.IntN(12))
			if customers > 0 {
				val = fmt.Sprintf("c%d-%s", c, val)
				if typ == event.UserID {
					val = fmt.Sprintf("c%d", c)
				}
			}
			in.IDs = append(in.IDs, event.IDRef{Type: typ, Hash: testHash(typ, val)})
		}
		if weak && rng.IntN(4) == 0 {
			v := fmt.Sprint(rng.IntN(12))
			in.IDs = append(in.IDs,
				event.IDRef{Type: event.UserID, Hash: testHash(event.UserID, v), Weak: true},
				event.IDRef{Type: event.AnonymousID, Hash: testHash(event.AnonymousID, v), Weak: true})
		}
		evs = append(evs, in)
	}
	return evs
}

// grouping maps every identifier to its root profile.
func grouping(t testing.TB, k *Keychain, r store.Reader, evs []Input) map[string]string {
	t.Helper()
	g := map[string]string{}
	for _, in := range evs {
		for _, id := range in.IDs {
			p, err := k.Lookup(r, id.Type, id.Hash)
			if err != nil {
				t.Fatalf("lookup %s/%x: %v", id.Type, id.Hash, err)
			}
			g[id.Type+"/"+string(id.Hash)] = string(p)
		}
	}
	return g
}

// expectedGrouping is the oracle for conflict-free event sets: identifiers
// that appear together are in one profile, whose id is the smallest candidate
// id of the events touching it.
func expectedGrouping(evs []Input) map[string]string {
	parent := map[string]string{}
	var find func(string) string
	find = func(x string) string {
		if parent[x] == x {
			return x
		}
		parent[x] = find(parent[x])
		return parent[x]
	}
	for _, in := range evs {
		for _, id := range in.IDs {
			k := id.Type + "/" + string(id.Hash)
			if _, ok := parent[k]; !ok {
				parent[k] = k
			}
			parent[find(k)] = find(in.IDs[0].Type + "/" + string(in.IDs[0].Hash))
		}
	}
	minID := map[string]string{}
	for _, in := range evs {
		r := find(in.IDs[0].Type + "/" + string(in.IDs[0].Hash))
		if p := string(ProfileID(in.EventID, in.Time)); minID[r] == "" || p < minID[r] {
			minID[r] = p
		}
	}
	g := map[string]string{}
	for k := range parent {
		g[k] = minID[find(k)]
	}
	return g
}

func resolveAll(t testing.TB, k *Keychain, st store.ReadWriter, evs []Input, check bool) []Result {
	t.Helper()
	var out []Result
	for i, in := range evs {
		res, err := k.Resolve(st, in)
		if err != nil {
			t.Fatalf("event %d: %v", i, err)
		}
		if check {
			if err := k.Check(st); err != nil {
				t.Fatalf("event %d: %v", i, err)
			}
		}
		out = append(out, res)
	}
	return out
}

func TestPermutations(t *testing.T) {
	for _, tc := range []struct {
		name      string
		cfg       Config
		customers int
	}{
		{"unlimited shared pool", Config{Limits: map[string]int{}}, 0},
		{"default limits per customer", DefaultConfig(), 6},
	} {
		t.Run(tc.name, func(t *testing.T) {
			k := New(tc.cfg)
			for seed := range uint64(3) {
				rng := rand.New(rand.NewPCG(seed, 42))
				evs := genEvents(rng, 30, tc.customers, false)
				want := expectedGrouping(evs)
				for perm := range 50 {
					p := slices.Clone(evs)
					if perm > 0 {
						rng.Shuffle(len(p), func(i, j int) { p[i], p[j] = p[j], p[i] })
					}
					st := store.NewMem()
					resolveAll(t, k, st, p, perm == 0)
					if err := k.Check(st); err != nil {
						t.Fatal(err)
					}
					if got := grouping(t, k, st, evs); !reflect.DeepEqual(got, want) {
						t.Fatalf("seed %d permutation %d: grouping differs from the oracle", seed, perm)
					}
					// Replaying every event again changes nothing.
					before := dump(t, st)
					for _, res := range resolveAll(t, k, st, p, false) {
						if res.Created || len(res.Merges) > 0 || len(res.Refused) > 0 {
							t.Fatalf("replay changed something: %+v", res)
						}
					}
					if !reflect.DeepEqual(before, dump(t, st)) {
						t.Fatalf("seed %d permutation %d: replay changed the store", seed, perm)
					}
				}
			}
		})
	}
}

func TestDeterminism(t *testing.T) {
	// Limit conflicts and weak identifiers included.
	for seed := range uint64(5) {
		rng := rand.New(rand.NewPCG(seed, 7))
		evs := genEvents(rng, 60, 0, true)
		k1, k2 := New(DefaultConfig()), New(DefaultConfig())
		s1, s2 := store.NewMem(), store.NewMem()
		r1 := resolveAll(t, k1, s1, evs, true)
		r2 := resolveAll(t, k2, s2, evs, false)
		if !reflect.DeepEqual(r1, r2) {
			t.Fatalf("seed %d: results differ", seed)
		}
		d1, d2 := dump(t, s1), dump(t, s2)
		if len(d1) != len(d2) {
			t.Fatalf("seed %d: %d keys vs %d", seed, len(d1), len(d2))
		}
		for i := range d1 {
			if d1[i] != d2[i] {
				t.Fatalf("seed %d: key %q differs", seed, d1[i].k)
			}
		}
	}
}

// TestReturningShortcut: Resolve with the returning-person shortcut and
// without it (Keychain.slow, the reference) give equal results and equal
// stores after every event, over random events that tie on time (so that
// the event's own profile id is compared by hash), with limits in conflict
// and weak identifiers, and with a shared pool and no limits; and the
// shortcut is taken.
func TestReturningShortcut(t *testing.T) {
	taken := 0
	for seed := range uint64(6) {
		rng := rand.New(rand.NewPCG(seed, 11))
		cfg, customers := DefaultConfig(), 0
		if seed%2 == 1 {
			cfg, customers = Config{Limits: map[string]int{}}, 8
		}
		evs := genEvents(rng, 300, customers, seed%3 == 0)
		fast, ref := New(cfg), New(cfg)
		ref.slow = true
		s1, s2 := store.NewMem(), store.NewMem()
		for i, in := range evs {
			before := s1.Len()
			r1, err1 := fast.Resolve(s1, in)
			r2, err2 := ref.Resolve(s2, in)
			if fmt.Sprint(err1) != fmt.Sprint(err2) || !reflect.DeepEqual(r1, r2) {
				t.Fatalf("seed %d event %d: %+v (%v), reference %+v (%v)", seed, i, r1, err1, r2, err2)
			}
			if !reflect.DeepEqual(dump(t, s1), dump(t, s2)) {
				t.Fatalf("seed %d event %d: stores differ", seed, i)
			}
			if !r1.Created && len(r1.Merges) == 0 && len(r1.Refused) == 0 && s1.Len() == before {
				taken++
			}
		}
		if err := fast.Check(s1); err != nil {
			t.Fatal(err)
		}
	}
	if taken < 100 {
		t.Fatalf("%d events of returning people: the shortcut is hardly exercised", taken)
	}
}

func TestResolveDoesNotModifyInput(t *testing.T) {
	k := New(DefaultConfig())
	st := store.NewMem()
	in := Input{EventID: testEventID("x"), Time: 5, IDs: []event.IDRef{
		{Type: event.AnonymousID, Hash: testHash(event.AnonymousID, "a")},
		{Type: event.UserID, Hash: testHash(event.UserID, "u")},
	}}
	orig := Input{EventID: slices.Clone(in.EventID), Time: in.Time, IDs: slices.Clone(in.IDs)}
	res, err := k.Resolve(st, in)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(in, orig) {
		t.Fatal("input modified")
	}
	if !res.Created || !bytes.Equal(res.Profile, ProfileID(in.EventID, in.Time)) || !reflect.DeepEqual(res.Owned, []int{0, 1}) {
		t.Fatalf("result %+v", res)
	}
}

func TestProfileID(t *testing.T) {
	e := testEventID("e")
	for _, tc := range []struct {
		t    int64
		want string // first 6 bytes
	}{
		{-1, "000000000000"},
		{0, "000000000000"},
		{1000, "0000000003e8"},
		{1 << 60, "ffffffffffff"},
	} {
		if got := fmt.Sprintf("%x", ProfileID(e, tc.t)[:6]); got != tc.want {
			t.Errorf("time %d: %s, want %s", tc.t, got, tc.want)
		}
	}
	a, b := ProfileID(e, 1), ProfileID(testEventID("f"), 1)
	if len(a) != IDLen || bytes.Equal(a, b) || !bytes.Equal(a, ProfileID(e, 1)) {
		t.Fatal("entropy not derived from the event id")
	}
	if bytes.Compare(ProfileID(e, 1), ProfileID(testEventID("f"), 2)) >= 0 {
		t.Fatal("ids do not order by time")
	}
}

func TestResolveErrors(t *testing.T) {
	good := event.IDRef{Type: "email", Hash: testHash("email", "a")}
	for _, tc := range []struct {
		name string
		in   Input
		err  string
	}{
		{"short event id", Input{EventID: []byte{1}, IDs: []event.IDRef{good}}, "event id of 1 bytes"},
		{"no identifiers", Input{EventID: testEventID("e")}, "no identifiers"},
		{"short hash", Input{EventID: testEventID("e"), IDs: []event.IDRef{good, {Type: "email", Hash: []byte{1, 2}}}}, "hash of 2 bytes"},
		{"empty type", Input{EventID: testEventID("e"), IDs: []event.IDRef{{Hash: testHash("", "")}}}, "invalid type"},
		{"slash in type", Input{EventID: testEventID("e"), IDs: []event.IDRef{{Type: "a/b", Hash: testHash("", "")}}}, "invalid type"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st := store.NewMem()
			_, err := New(DefaultConfig()).Resolve(st, tc.in)
			if err == nil || !strings.Contains(err.Error(), tc.err) || !strings.HasPrefix(err.Error(), "identity: resolve") {
				t.Fatalf("err = %v, want %q", err, tc.err)
			}
			if st.Len() != 0 {
				t.Fatal("wrote on error")
			}
		})
	}
	_, err := New(DefaultConfig()).Resolve(store.NewMem(), Input{EventID: testEventID("e")})
	if !errors.Is(err, ErrNoIdentifiers) {
		t.Fatalf("err = %v", err)
	}
}

// failStore fails every Get of an ip/ key once armed, and counts writes.
type failStore struct {
	*store.Mem
	armed  bool
	writes int
}

var errInjected = errors.New("injected")

func (s *failStore) Get(k []byte) ([]byte, error) {
	if s.armed && bytes.HasPrefix(k, prefixIP) {
		return nil, errInjected
	}
	return s.Mem.Get(k)
}

func (s *failStore) Set(k, v []byte) error { s.writes++; return s.Mem.Set(k, v) }

func TestResolveReadErrorWritesNothing(t *testing.T) {
	k := New(DefaultConfig())
	st := &failStore{Mem: store.NewMem()}
	id := func(typ, v string) event.IDRef { return event.IDRef{Type: typ, Hash: testHash(typ, v)} }
	resolveAll(t, k, st, []Input{
		{EventID: testEventID("1"), Time: 1, IDs: []event.IDRef{id("email", "a")}},
		{EventID: testEventID("2"), Time: 2, IDs: []event.IDRef{id("email", "b")}},
	}, true)
	st.armed, st.writes = true, 0
	_, err := k.Resolve(st, Input{EventID: testEventID("3"), Time: 3, IDs: []event.IDRef{id("email", "a"), id("email", "b"), id("phone", "c")}})
	if !errors.Is(err, errInjected) {
		t.Fatalf("err = %v", err)
	}
	if st.writes != 0 {
		t.Fatalf("%d writes after a failed read", st.writes)
	}
}

func TestQueriesNotFound(t *testing.T) {
	k := New(DefaultConfig())
	st := store.NewMem()
	p := testEventID("nope")
	if _, err := k.Lookup(st, "email", testHash("email", "x")); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("Lookup: %v", err)
	}
	if _, err := k.Lookup(st, event.ProfileID, p); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("Lookup profile_id: %v", err)
	}
	if _, err := k.Root(st, p); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("Root: %v", err)
	}
	if _, err := k.Identifiers(st, p); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("Identifiers: %v", err)
	}
	if _, err := k.MergedFrom(st, p); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("MergedFrom: %v", err)
	}
}

func TestCheckDetectsCorruption(t *testing.T) {
	k := New(DefaultConfig())
	base := store.NewMem()
	id := func(typ, v string) event.IDRef { return event.IDRef{Type: typ, Hash: testHash(typ, v)} }
	res := resolveAll(t, k, base, []Input{
		{EventID: testEventID("1"), Time: 1, IDs: []event.IDRef{id("email", "a")}},
		{EventID: testEventID("2"), Time: 2, IDs: []event.IDRef{id("email", "b"), id("user_id", "u")}},
		{EventID: testEventID("3"), Time: 3, IDs: []event.IDRef{id("email", "a"), id("email", "b")}},
	}, true)
	p1, p2 := res[0].Profile, res[1].Profile
	if !bytes.Equal(res[2].Profile, p1) || len(res[2].Merges) != 1 {
		t.Fatalf("setup: %+v", res[2])
	}
	if err := Check(base); err != nil {
		t.Fatal(err)
	}
	ikA := ikKey("email", testHash("email", "a"))
	for _, tc := range []struct {
		name    string
		corrupt func(s *store.Mem)
		limits  bool // only Keychain.Check detects it
	}{
		{"ik to missing profile", func(s *store.Mem) { s.Set(ikA, testEventID("zz")) }, false},
		{"ik to merged profile", func(s *store.Mem) { s.Set(ikA, p2) }, false},
		{"ik value length", func(s *store.Mem) { s.Set(ikA, []byte{1}) }, false},
		{"ik missing", func(s *store.Mem) { s.Delete(ikA) }, false},
		{"extra ik", func(s *store.Mem) { s.Set(ikKey("phone", testHash("phone", "p")), p1) }, false},
		{"malformed ik key", func(s *store.Mem) { s.Set([]byte("ik/x"), p1) }, false},
		{"redirect cycle", func(s *store.Mem) { s.Set(ipKey(p2), mustMarshal(t, node{Redirect: p2})) }, false},
		{"root unlisted merge", func(s *store.Mem) {
			n, _ := getNode(s, p1)
			n.MergedFrom = nil
			s.Set(ipKey(p1), mustMarshal(t, n))
		}, false},
		{"garbage node", func(s *store.Mem) { s.Set(ipKey(p1), []byte{0xc1}) }, false},
		{"over limit", func(s *store.Mem) {
			n, _ := getNode(s, p1)
			v := id("user_id", "v")
			n.IDs = append(n.IDs, nodeID{Type: v.Type, Hash: v.Hash})
			slices.SortFunc(n.IDs, compareNodeID)
			s.Set(ipKey(p1), mustMarshal(t, n))
			s.Set(ikKey(v.Type, v.Hash), p1)
		}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := copyMem(t, base)
			tc.corrupt(s)
			err := k.Check(s)
			if err == nil || !errors.Is(err, ErrCorrupt) {
				t.Fatalf("Keychain.Check: %v", err)
			}
			if err := Check(s); (err == nil) != tc.limits {
				t.Fatalf("Check: %v", err)
			}
		})
	}
	// A redirect cycle makes Root fail rather than loop.
	s := copyMem(t, base)
	s.Set(ipKey(p2), mustMarshal(t, node{Redirect: p2}))
	if _, err := k.Root(s, p2); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("Root on a cycle: %v", err)
	}
}

func mustMarshal(t testing.TB, n any) []byte {
	t.Helper()
	switch x := n.(type) {
	case node:
		return encodeNode(&x)
	case *node:
		return encodeNode(x)
	}
	v, err := msgpack.Marshal(n)
	if err != nil {
		t.Fatal(err)
	}
	return v
}
