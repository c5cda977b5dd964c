package seal

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"sync"
	"testing"

	"github.com/aurumcdp/aurum/store"
)

// memShared is an in-memory SharedKeys: first writer wins, tombstones are
// final. fail, when set, is returned by every call.
type memShared struct {
	mu      sync.Mutex
	m       map[keyID]SharedKey
	creates int // Create calls
	gets    int // Get calls
	fail    error
}

func newMemShared() *memShared { return &memShared{m: map[keyID]SharedKey{}} }

func (s *memShared) Create(_ context.Context, keys []SharedKey) ([]SharedKey, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.creates++
	if s.fail != nil {
		return nil, s.fail
	}
	out := make([]SharedKey, len(keys))
	for i, k := range keys {
		id := keyID(k.ID)
		cur, ok := s.m[id]
		if !ok {
			cur = SharedKey{ID: id[:], State: SharedPresent, Wrapped: bytes.Clone(k.Wrapped)}
			s.m[id] = cur
		}
		out[i] = cur
	}
	return out, nil
}

func (s *memShared) Get(_ context.Context, id []byte) (SharedKey, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.gets++
	if s.fail != nil {
		return SharedKey{}, s.fail
	}
	cur, ok := s.m[keyID(id)]
	if !ok {
		return SharedKey{ID: id, State: SharedUnknown}, nil
	}
	return cur, nil
}

func (s *memShared) Destroy(_ context.Context, ids [][]byte) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.fail != nil {
		return s.fail
	}
	for _, raw := range ids {
		id := keyID(raw)
		s.m[id] = SharedKey{ID: id[:], State: SharedDestroyed}
	}
	return nil
}

func (s *memShared) state(raw []byte) SharedState {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.m[keyID(raw)].State
}

func (s *memShared) setFail(err error) {
	s.mu.Lock()
	s.fail = err
	s.mu.Unlock()
}

// sharedNode is one node's keyring over its own keys database and the
// shared store.
func sharedNode(t testing.TB, shared SharedKeys) (*Keyring, *store.DB) {
	t.Helper()
	k, db, _ := newTestKeyring(t, &Options{Shared: shared})
	return k, db
}

func localWrapped(t *testing.T, db *store.DB, kid []byte) []byte {
	t.Helper()
	id := keyID(kid)
	v, err := db.Get(dbKey(prefixKey, &id))
	if err != nil {
		t.Fatalf("local wrapped key %x: %v", kid, err)
	}
	return v
}

func hasTombstone(t *testing.T, db *store.DB, kid []byte) bool {
	t.Helper()
	id := keyID(kid)
	_, err := db.Get(dbKey(prefixTombstone, &id))
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		t.Fatal(err)
	}
	return err == nil
}

// TestSharedEnsureConcurrent: two nodes Ensure the same ids at the same
// time; each id ends with one key, the same wrapped bytes in both keys
// databases, and what one node seals the other opens.
func TestSharedEnsureConcurrent(t *testing.T) {
	shared := newMemShared()
	a, dbA := sharedNode(t, shared)
	b, dbB := sharedNode(t, shared)
	const n = 64
	ids := make([][]byte, n)
	for i := range ids {
		ids[i] = id(i)
	}
	for round := 0; round < 4; round++ {
		var wg sync.WaitGroup
		errs := make([]error, 2)
		for j, k := range []*Keyring{a, b} {
			wg.Add(1)
			go func() {
				defer wg.Done()
				errs[j] = k.Ensure(ids)
			}()
		}
		wg.Wait()
		if err := errors.Join(errs...); err != nil {
			t.Fatal(err)
		}
	}
	for _, kid := range ids {
		if !bytes.Equal(localWrapped(t, dbA, kid), localWrapped(t, dbB, kid)) {
			t.Fatalf("key %x: the nodes keep different keys", kid)
		}
		for _, pair := range [][2]*Keyring{{a, b}, {b, a}} {
			s, err := pair[0].Seal(kid, []byte("alice"))
			if err != nil {
				t.Fatal(err)
			}
			if p, err := pair[1].Open(kid, s); err != nil || string(p) != "alice" {
				t.Fatalf("key %x: open on the other node: %q, %v", kid, p, err)
			}
		}
	}
	// Each Ensure that created keys offered them in one call.
	if shared.creates > 2 {
		t.Errorf("%d Create calls, want at most 2 (one per node's first Ensure)", shared.creates)
	}
}

// twoNodes returns a shared store, node a that created key id(1) and
// sealed "v" under it (s), and node b, with its keys database, that has
// not seen the key.
func twoNodes(t *testing.T) (shared *memShared, a, b *Keyring, dbB *store.DB, s []byte) {
	t.Helper()
	shared = newMemShared()
	a, _ = sharedNode(t, shared)
	b, dbB = sharedNode(t, shared)
	mustEnsure(t, a, id(1))
	s, err := a.Seal(id(1), []byte("v"))
	if err != nil {
		t.Fatal(err)
	}
	return shared, a, b, dbB, s
}

// TestSharedEnsureLoser: a node whose offer loses keeps the winner's key,
// in its cache and its keys database.
func TestSharedEnsureLoser(t *testing.T) {
	shared, _, b, dbB, s := twoNodes(t)
	// b has not seen the key: its Ensure offers a new one and loses.
	mustEnsure(t, b, id(1), id(2))
	if p, err := b.Open(id(1), s); err != nil || string(p) != "v" {
		t.Fatalf("open after a lost Ensure: %q, %v", p, err)
	}
	if shared.gets != 0 {
		t.Errorf("%d Get calls: Ensure and an Open of a key it cached need none", shared.gets)
	}
	// A fresh keyring over b's database, without the shared store, has it.
	b2, err := NewKeyring(dbB, testMaster(1), nil)
	if err != nil {
		t.Fatal(err)
	}
	if p, err := b2.Open(id(1), s); err != nil || string(p) != "v" {
		t.Fatalf("open from b's keys database alone: %q, %v", p, err)
	}
}

// TestSharedLoadFallback: a key missing locally is fetched from the shared
// store once and then kept locally; an unknown key stays unknown.
func TestSharedLoadFallback(t *testing.T) {
	shared, _, b, dbB, s := twoNodes(t)
	if p, err := b.Open(id(1), s); err != nil || string(p) != "v" {
		t.Fatalf("open on b: %q, %v", p, err)
	}
	if _, err := b.Open(id(1), s); err != nil {
		t.Fatal(err)
	}
	if shared.gets != 1 {
		t.Errorf("%d Get calls for two opens, want 1", shared.gets)
	}
	localWrapped(t, dbB, id(1))
	if _, err := b.Open(id(9), s); !errors.Is(err, ErrUnknownKey) {
		t.Errorf("open under a key nobody created: %v, want ErrUnknownKey", err)
	}
	// Ensure on b does not offer a key b fetched.
	before := shared.creates
	mustEnsure(t, b, id(1))
	if shared.creates != before {
		t.Error("Ensure offered a key the node already holds")
	}
}

// TestSharedDestroy: a destroy on one node destroys the shared key; a node
// that never held it locally then finds it destroyed (and keeps a
// tombstone); a node holding a local copy reads it until its own
// DestroyAll; nobody recreates it.
func TestSharedDestroy(t *testing.T) {
	shared := newMemShared()
	a, dbA := sharedNode(t, shared)
	b, dbB := sharedNode(t, shared)
	c, dbC := sharedNode(t, shared)
	mustEnsure(t, a, id(1), id(2))
	s, err := a.Seal(id(1), []byte("v"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.Open(id(1), s); err != nil { // b holds a local copy
		t.Fatal(err)
	}
	if err := a.Destroy(id(1)); err != nil {
		t.Fatal(err)
	}
	if st := shared.state(id(1)); st != SharedDestroyed {
		t.Fatalf("shared state after Destroy: %v", st)
	}
	if !hasTombstone(t, dbA, id(1)) {
		t.Error("no local tombstone on the destroying node")
	}
	if _, err := c.Open(id(1), s); !errors.Is(err, ErrKeyDestroyed) {
		t.Fatalf("open on a node without a local copy: %v, want ErrKeyDestroyed", err)
	}
	if !hasTombstone(t, dbC, id(1)) {
		t.Error("no local tombstone after a shared tombstone was read")
	}
	if _, err := b.Open(id(1), s); err != nil {
		t.Fatalf("b's local copy: %v (it stays until b destroys it)", err)
	}
	n, err := b.DestroyAll([][]byte{id(1)})
	if err != nil || n != 1 {
		t.Fatalf("DestroyAll on b: %d, %v", n, err)
	}
	if _, err := b.Open(id(1), s); !errors.Is(err, ErrKeyDestroyed) {
		t.Fatalf("open on b after its DestroyAll: %v", err)
	}
	if !hasTombstone(t, dbB, id(1)) {
		t.Error("no tombstone on b")
	}
	// Nobody recreates it, also a node that never heard of it.
	d, dbD := sharedNode(t, shared)
	mustEnsure(t, d, id(1))
	if !hasTombstone(t, dbD, id(1)) {
		t.Error("Ensure of a shared-destroyed id wrote no tombstone")
	}
	if _, err := d.Seal(id(1), []byte("x")); !errors.Is(err, ErrKeyDestroyed) {
		t.Errorf("seal under a destroyed id: %v", err)
	}
	// DestroyAll of a key unknown locally destroys it in the shared store.
	if n, err := c.DestroyAll([][]byte{id(2)}); err != nil || n != 1 {
		t.Fatalf("DestroyAll of a key c never loaded: %d, %v", n, err)
	}
	if st := shared.state(id(2)); st != SharedDestroyed {
		t.Errorf("shared state of id 2: %v", st)
	}
}

// TestSharedFailures: a failing shared store fails the call and leaves the
// keys database as it was, so a retry does the whole work; its failures
// are not the errors that mean "will never open".
func TestSharedFailures(t *testing.T) {
	shared := newMemShared()
	a, dbA := sharedNode(t, shared)
	mustEnsure(t, a, id(1))
	s, err := a.Seal(id(1), []byte("v"))
	if err != nil {
		t.Fatal(err)
	}
	down := errors.New("cluster unavailable")
	shared.setFail(down)
	b, dbB := sharedNode(t, shared)
	if err := b.Ensure([][]byte{id(2)}); !errors.Is(err, down) {
		t.Fatalf("Ensure with the store down: %v", err)
	}
	id2 := keyID(id(2))
	if _, err := dbB.Get(dbKey(prefixKey, &id2)); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("a key was kept locally although the shared store refused it: %v", err)
	}
	_, err = b.Open(id(1), s)
	if !errors.Is(err, down) || errors.Is(err, ErrUnknownKey) || errors.Is(err, ErrKeyDestroyed) || errors.Is(err, ErrCorrupt) {
		t.Fatalf("open with the store down: %v, want its error and none of the permanent ones", err)
	}
	if err := a.Destroy(id(1)); !errors.Is(err, down) {
		t.Fatalf("Destroy with the store down: %v", err)
	}
	if hasTombstone(t, dbA, id(1)) {
		t.Fatal("a local tombstone was written although the shared destroy failed")
	}
	if _, err := a.Open(id(1), s); err != nil {
		t.Fatalf("the key must stay until the destroy succeeds: %v", err)
	}
	shared.setFail(nil)
	if n, err := a.DestroyAll([][]byte{id(1)}); err != nil || n != 1 {
		t.Fatalf("retried destroy: %d, %v", n, err)
	}
	if shared.state(id(1)) != SharedDestroyed {
		t.Error("the retry did not destroy the shared key")
	}
}

// TestSharedCorruptRecord: a shared key that does not unwrap under this
// node's master key (another master key, or a forged record) fails the
// open with an error that is not ErrCorrupt: the node must not take as
// unreadable what the creating node reads.
func TestSharedCorruptRecord(t *testing.T) {
	shared := newMemShared()
	other, _, _ := newTestKeyringMaster(t, testMaster(2))
	other.shared = shared
	mustEnsure(t, other, id(1))
	s, err := other.Seal(id(1), []byte("v"))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := sharedNode(t, shared)
	_, err = b.Open(id(1), s)
	if err == nil || errors.Is(err, ErrCorrupt) || errors.Is(err, ErrUnknownKey) {
		t.Fatalf("open under a shared key of another master key: %v", err)
	}
	if err := b.Ensure([][]byte{id(1)}); err == nil || errors.Is(err, ErrCorrupt) {
		t.Fatalf("Ensure against a shared key of another master key: %v", err)
	}
}

// TestSharedBatch: one Ensure of many new ids is one Create call.
func TestSharedBatch(t *testing.T) {
	shared := newMemShared()
	a, _ := sharedNode(t, shared)
	ids := make([][]byte, 500)
	for i := range ids {
		ids[i] = id(i)
	}
	mustEnsure(t, a, ids...)
	if shared.creates != 1 {
		t.Errorf("%d Create calls for one Ensure, want 1", shared.creates)
	}
	if got := len(shared.m); got != len(ids) {
		t.Errorf("%d shared keys, want %d", got, len(ids))
	}
}

// TestShare: a keys database filled without the shared store is shared
// once (keys and tombstones); after a write without it, again; a key the
// shared store holds differently is an error.
func TestShare(t *testing.T) {
	shared := newMemShared()
	alone, dbA, _ := newTestKeyring(t, nil)
	mustEnsure(t, alone, id(1), id(2), id(3))
	s1, err := alone.Seal(id(1), []byte("v"))
	if err != nil {
		t.Fatal(err)
	}
	if err := alone.Destroy(id(3)); err != nil {
		t.Fatal(err)
	}
	a, err := NewKeyring(dbA, testMaster(1), &Options{Shared: shared})
	if err != nil {
		t.Fatal(err)
	}
	if n, err := a.Share(); err != nil || n != 3 {
		t.Fatalf("Share: %d, %v; want 2 keys and 1 tombstone", n, err)
	}
	b, _ := sharedNode(t, shared)
	if p, err := b.Open(id(1), s1); err != nil || string(p) != "v" {
		t.Fatalf("another node opens what the lone node sealed: %q, %v", p, err)
	}
	if _, err := b.Seal(id(3), nil); !errors.Is(err, ErrKeyDestroyed) {
		t.Fatalf("a key destroyed before sharing: %v", err)
	}
	if n, err := a.Share(); err != nil || n != 0 {
		t.Fatalf("Share again: %d, %v; want nothing to do", n, err)
	}
	// Keys written without the shared store make the database unshared.
	alone2, err := NewKeyring(dbA, testMaster(1), nil)
	if err != nil {
		t.Fatal(err)
	}
	mustEnsure(t, alone2, id(4))
	if n, err := a.Share(); err != nil || n != 4 {
		t.Fatalf("Share after a lone Ensure: %d, %v; want 3 keys and 1 tombstone", n, err)
	}
	// A conflict: the cluster created id 5 first.
	mustEnsure(t, b, id(5))
	mustEnsure(t, alone2, id(5))
	if _, err := a.Share(); err == nil || !strings.Contains(err.Error(), "another key") {
		t.Fatalf("Share with a conflicting key: %v", err)
	}
	// A key destroyed in the cluster is destroyed here.
	mustEnsure(t, alone2, id(6))
	if err := shared.Destroy(context.Background(), [][]byte{id(6)}); err != nil {
		t.Fatal(err)
	}
	alone3, err := NewKeyring(dbA, testMaster(1), nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := alone3.Destroy(id(5)); err != nil { // resolve the conflict the hard way
		t.Fatal(err)
	}
	if _, err := a.Share(); err != nil {
		t.Fatal(err)
	}
	if !hasTombstone(t, dbA, id(6)) {
		t.Error("a key destroyed in the shared store stayed here")
	}
}

// TestAdopt: adopted keys open without the shared store; a key destroyed
// here is not brought back; tombstones and keys that do not unwrap are not
// taken; the position is kept.
func TestAdopt(t *testing.T) {
	shared := newMemShared()
	a, _ := sharedNode(t, shared)
	mustEnsure(t, a, id(1), id(2), id(3))
	s1, err := a.Seal(id(1), []byte("v"))
	if err != nil {
		t.Fatal(err)
	}
	s3, err := a.Seal(id(3), []byte("v"))
	if err != nil {
		t.Fatal(err)
	}
	// What a follower delivers: the keys as created (key 2 before its
	// tombstone), key 4 wrapped under another master key, a tombstone.
	var recs []SharedKey
	for _, n := range []int{1, 2, 3} {
		k, _ := shared.Get(context.Background(), id(n))
		recs = append(recs, k)
	}
	other, _, _ := newTestKeyringMaster(t, testMaster(2))
	otherShared := newMemShared()
	other.shared = otherShared
	mustEnsure(t, other, id(4))
	k4, _ := otherShared.Get(context.Background(), id(4))
	recs = append(recs, k4)
	b0, dbB := sharedNode(t, shared)
	if err := b0.Destroy(id(2)); err != nil { // destroyed here (and there)
		t.Fatal(err)
	}
	// A keyring whose cache does not know it: the keys database decides.
	b, err := NewKeyring(dbB, testMaster(1), &Options{Shared: shared})
	if err != nil {
		t.Fatal(err)
	}
	recs = append(recs, SharedKey{ID: id(5), State: SharedDestroyed})
	n, err := b.Adopt(recs, 77)
	if err != nil || n != 2 {
		t.Fatalf("Adopt: %d, %v; want keys 1 and 3", n, err)
	}
	if pos, err := b.AdoptedPosition(); err != nil || pos != 77 {
		t.Fatalf("AdoptedPosition: %d, %v", pos, err)
	}
	shared.setFail(errors.New("shared store down"))
	for i, s := range map[int][]byte{1: s1, 3: s3} {
		if p, err := b.Open(id(i), s); err != nil || string(p) != "v" {
			t.Fatalf("open of adopted key %d with the shared store down: %q, %v", i, p, err)
		}
	}
	if !hasTombstone(t, dbB, id(2)) {
		t.Fatal("the tombstone of key 2 is gone")
	}
	id2 := keyID(id(2))
	if _, err := dbB.Get(dbKey(prefixKey, &id2)); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("Adopt brought a destroyed key back: %v", err)
	}
	for _, n := range []int{4, 5} {
		x := keyID(id(n))
		if has, err := b.hasLocal(&x); err != nil || has {
			t.Errorf("key %d adopted: %v, %v", n, has, err)
		}
	}
}

// TestDestroyLocal: DestroyLocal leaves the shared store's copy (another
// node still opens it) and says so in its tombstone, so that a later
// DestroyAll here destroys the shared copy too.
func TestDestroyLocal(t *testing.T) {
	shared, _, b, dbB, s := twoNodes(t)
	if _, err := b.Open(id(1), s); err != nil {
		t.Fatal(err)
	}
	if n, err := b.DestroyLocal([][]byte{id(1), id(1)}); err != nil || n == 0 {
		t.Fatalf("DestroyLocal: %d, %v", n, err)
	}
	if _, err := b.Open(id(1), s); !errors.Is(err, ErrKeyDestroyed) {
		t.Fatalf("b after DestroyLocal: %v", err)
	}
	if !hasTombstone(t, dbB, id(1)) || shared.state(id(1)) != SharedPresent {
		t.Fatalf("after DestroyLocal: local tombstone %v, shared %v", hasTombstone(t, dbB, id(1)), shared.state(id(1)))
	}
	c, _ := sharedNode(t, shared)
	if _, err := c.Open(id(1), s); err != nil {
		t.Fatalf("another node after b's DestroyLocal: %v", err)
	}
	if n, err := b.DestroyLocal([][]byte{id(1)}); err != nil || n != 0 {
		t.Fatalf("DestroyLocal again: %d, %v; want nothing to do", n, err)
	}
	if n, err := b.DestroyAll([][]byte{id(1)}); err != nil || n != 1 {
		t.Fatalf("DestroyAll after DestroyLocal: %d, %v; want the shared copy destroyed", n, err)
	}
	if shared.state(id(1)) != SharedDestroyed {
		t.Fatal("the shared copy survived DestroyAll")
	}
	if n, err := b.DestroyAll([][]byte{id(1)}); err != nil || n != 0 {
		t.Fatalf("DestroyAll again: %d, %v; want nothing to do", n, err)
	}
}
