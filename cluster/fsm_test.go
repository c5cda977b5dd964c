package cluster

import (
	"bytes"
	"errors"
	"io"
	"reflect"
	"testing"

	"github.com/hashicorp/raft"
)

func member(name string) Member {
	return Member{NodeConfig: NodeConfig{Name: name, HTTP: "h:" + name, Raft: "r:" + name}}
}

func TestCommandRoundTrip(t *testing.T) {
	for _, c := range []command{
		{op: opInit, partitions: 16, standbys: 2, members: []Member{member("a"), member("b")}},
		{op: opAdd, members: []Member{member("c")}},
		{op: opRemove, name: "b"},
		{op: opLiveness, liveness: []Member{{NodeConfig: NodeConfig{Name: "a"}, Up: false}, {NodeConfig: NodeConfig{Name: "c"}, Up: true}}},
	} {
		got, err := decodeCommand(c.encode())
		if err != nil {
			t.Fatalf("op %d: %v", c.op, err)
		}
		if !reflect.DeepEqual(got, c) {
			t.Fatalf("op %d: %+v != %+v", c.op, got, c)
		}
	}
	good := command{op: opRemove, name: "b"}.encode()
	for name, data := range map[string][]byte{
		"empty":         nil,
		"version 2":     append([]byte{2}, good[1:]...),
		"unknown op":    {commandVersion, 99},
		"trailing byte": append(good, 0),
		"truncated":     good[:len(good)-1],
		"init of 0":     command{op: opInit, partitions: 0, members: []Member{member("a")}}.encode(),
		"init of none":  command{op: opInit, partitions: 4}.encode(),
		"huge count":    {commandVersion, byte(opLiveness), 0xff, 0xff, 0xff, 0xff, 0x0f},
	} {
		if _, err := decodeCommand(data); !errors.Is(err, ErrCorrupt) {
			t.Errorf("%s: %v", name, err)
		}
	}
}

// applyAll applies commands as consecutive log entries from index 1.
func applyAll(t *testing.T, f *fsm, cmds ...command) []any {
	t.Helper()
	var out []any
	for _, c := range cmds {
		out = append(out, f.Apply(&raft.Log{Index: uint64(len(out) + 1), Type: raft.LogCommand, Data: c.encode()}))
	}
	return out
}

func TestFSMApply(t *testing.T) {
	var changes []uint64
	f := newFSM(func(m *Map) { changes = append(changes, m.Index) })
	res := applyAll(t, f,
		command{op: opAdd, members: []Member{member("x")}},                                                        // 1: refused, not initialised
		command{op: opInit, partitions: 6, standbys: 1, members: []Member{member("b"), member("a"), member("c")}}, // 2
		command{op: opInit, partitions: 9, standbys: 0, members: []Member{member("z")}},                           // 3: no-op
		command{op: opLiveness, liveness: []Member{{NodeConfig: NodeConfig{Name: "a"}}}},                          // 4: a down
		command{op: opLiveness, liveness: []Member{{NodeConfig: NodeConfig{Name: "a"}}}},                          // 5: no change
		command{op: opAdd, members: []Member{member("c")}},                                                        // 6: exists
		command{op: opAdd, members: []Member{member("d")}},                                                        // 7
		command{op: opRemove, name: "q"},                                                                          // 8: unknown
		command{op: opRemove, name: "b"},                                                                          // 9
	)
	for i, want := range []error{ErrNotInitialised, nil, nil, nil, nil, ErrNodeExists, nil, ErrUnknownNode, nil} {
		err, _ := res[i].(error)
		if want == nil && err != nil || want != nil && !errors.Is(err, want) {
			t.Errorf("entry %d: %v, want %v", i+1, res[i], want)
		}
	}
	if !reflect.DeepEqual(changes, []uint64{2, 4, 7, 9}) {
		t.Fatalf("changes at %v", changes)
	}
	m := f.cur.Load()
	if m.Index != 9 || len(m.Partitions) != 6 || m.Standbys != 1 {
		t.Fatalf("map %+v", m)
	}
	var names []string
	for _, mb := range m.Members {
		names = append(names, mb.Name)
		if mb.Up != (mb.Name != "a") {
			t.Errorf("member %+v", mb)
		}
	}
	if !reflect.DeepEqual(names, []string{"a", "c", "d"}) {
		t.Fatalf("members %v", names)
	}
	if err := checkMap(*m, []string{"c", "d"}); err != nil {
		t.Fatal(err)
	}
	if got := f.Apply(&raft.Log{Index: 10, Type: raft.LogCommand, Data: []byte{commandVersion, 42}}); !errors.Is(got.(error), ErrCorrupt) {
		t.Fatalf("corrupt entry: %v", got)
	}
	if f.cur.Load() != m {
		t.Fatal("a refused entry changed the map")
	}
}

type memSink struct {
	bytes.Buffer
	closed, cancelled bool
}

func (s *memSink) ID() string    { return "mem" }
func (s *memSink) Close() error  { s.closed = true; return nil }
func (s *memSink) Cancel() error { s.cancelled = true; return nil }

func TestFSMSnapshotRestore(t *testing.T) {
	f := newFSM(func(*Map) {})
	applyAll(t, f,
		command{op: opInit, partitions: 5, standbys: 2, members: []Member{member("a"), member("b"), member("c")}},
		command{op: opLiveness, liveness: []Member{{NodeConfig: NodeConfig{Name: "b"}}}},
	)
	snap, err := f.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	var sink memSink
	if err := snap.Persist(&sink); err != nil || !sink.closed {
		t.Fatalf("persist: %v", err)
	}
	var restored *Map
	g := newFSM(func(m *Map) { restored = m })
	if err := g.Restore(io.NopCloser(bytes.NewReader(sink.Bytes()))); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(g.cur.Load(), f.cur.Load()) || restored != g.cur.Load() {
		t.Fatalf("restored %+v\nwant %+v", g.cur.Load(), f.cur.Load())
	}
	// The restored machine goes on like the original.
	next := command{op: opLiveness, liveness: []Member{{NodeConfig: NodeConfig{Name: "b"}, Up: true}}}
	f.Apply(&raft.Log{Index: 3, Type: raft.LogCommand, Data: next.encode()})
	g.Apply(&raft.Log{Index: 3, Type: raft.LogCommand, Data: next.encode()})
	if !reflect.DeepEqual(g.cur.Load(), f.cur.Load()) {
		t.Fatal("diverged after restore")
	}
	bad := append([]byte{}, sink.Bytes()...)
	bad[0] = 9
	if err := g.Restore(io.NopCloser(bytes.NewReader(bad))); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("restore of a bad snapshot: %v", err)
	}
}

// FuzzDecodeCommand: no input crashes the decoders, and what decodes
// encodes to a form that decodes the same.
func FuzzDecodeCommand(f *testing.F) {
	f.Add(command{op: opInit, partitions: 16, standbys: 2, members: []Member{member("a"), member("b")}}.encode())
	f.Add(command{op: opLiveness, liveness: []Member{{NodeConfig: NodeConfig{Name: "a"}}}}.encode())
	m := &Map{Index: 3, Standbys: 1, Members: []Member{member("a"), member("b")},
		Partitions: []Partition{{ID: 0, Owner: "a", Standbys: []string{"b"}, Epoch: 2}}}
	f.Add(encodeMap(m))
	f.Fuzz(func(t *testing.T, data []byte) {
		if c, err := decodeCommand(data); err == nil {
			again, err := decodeCommand(c.encode())
			if err != nil || !reflect.DeepEqual(again, c) {
				t.Fatalf("command round trip: %v", err)
			}
			applyCommand(&Map{}, c, 1)
		}
		if m, err := decodeMap(data); err == nil {
			again, err := decodeMap(encodeMap(m))
			if err != nil || !reflect.DeepEqual(again, m) {
				t.Fatalf("snapshot round trip: %v", err)
			}
		}
	})
}

// TestWatchKeepsTheNewest: a watcher that does not receive holds one map,
// the newest; the FSM never blocks on it.
func TestWatchKeepsTheNewest(t *testing.T) {
	n := &Node{watchers: map[*Watcher]struct{}{}}
	n.opts.EnsureDefaults() // a discarding Logger for notify's lines
	n.fsm = newFSM(n.notify)
	w := n.Watch()
	slow := n.Watch()
	if m := <-w.C; m.Initialised() {
		t.Fatalf("first map %+v", m)
	}
	applyAll(t, n.fsm,
		command{op: opInit, partitions: 4, standbys: 1, members: []Member{member("a"), member("b")}},
		command{op: opLiveness, liveness: []Member{{NodeConfig: NodeConfig{Name: "a"}}}},
		command{op: opLiveness, liveness: []Member{{NodeConfig: NodeConfig{Name: "a"}, Up: true}}},
	)
	for _, c := range []<-chan Map{w.C, slow.C} {
		if len(c) != 1 {
			t.Fatalf("%d maps held", len(c))
		}
		if m := <-c; m.Index != 3 {
			t.Fatalf("held the map of %d, want 3", m.Index)
		}
	}
	w.Stop()
	w.Stop() // twice is harmless
	if _, ok := <-w.C; ok {
		t.Fatal("open after Stop")
	}
	applyAll(t, n.fsm, command{op: opRemove, name: "a"})
	if m := <-slow.C; m.Index != 1 || len(m.Members) != 1 {
		t.Fatalf("after remove: %+v", m)
	}
}
