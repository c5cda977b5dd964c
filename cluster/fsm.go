package cluster

import (
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync/atomic"

	"github.com/hashicorp/raft"
)

// maxSnapshotLen bounds what Restore reads: MaxNodes members and
// MaxPartitions partitions with MaxReplicas-1 standbys fit with room.
const maxSnapshotLen = 4 << 20

// fsm is the Raft state machine of the control state. Apply is
// deterministic: it reads only the entry and the current Map (no clock, no
// randomness, no map iteration), so every replica holds the same Map at the
// same index.
type fsm struct {
	cur      atomic.Pointer[Map]
	onChange func(*Map) // called on raft's FSM goroutine after each change; must not block
}

var _ raft.FSM = (*fsm)(nil)

func newFSM(onChange func(*Map)) *fsm {
	f := &fsm{onChange: onChange}
	f.cur.Store(&Map{})
	return f
}

// Apply applies one committed entry. A refused entry (corrupt, or not
// valid on this state) changes nothing and returns its error, alike on
// every replica; the proposer sees it as the future's Response.
func (f *fsm) Apply(l *raft.Log) any {
	if l.Type != raft.LogCommand {
		return nil
	}
	c, err := decodeCommand(l.Data)
	if err != nil {
		return err
	}
	next, err := applyCommand(f.cur.Load(), c, l.Index)
	if err != nil {
		return err
	}
	if next != nil {
		f.cur.Store(next)
		f.onChange(next)
	}
	return nil
}

var (
	// ErrNotInitialised: the first map is not written yet.
	ErrNotInitialised = errors.New("cluster: the cluster is not initialised yet")
	// ErrUnknownNode: no member has that name.
	ErrUnknownNode = errors.New("cluster: no such node")
	// ErrNodeExists: a member has that name or address already.
	ErrNodeExists = errors.New("cluster: node exists")
)

// applyCommand returns the map after c at index, nil when c changes
// nothing. It never changes m.
func applyCommand(m *Map, c command, index uint64) (*Map, error) {
	switch c.op {
	case opInit:
		if m.Initialised() {
			return nil, nil // a later leader's init: the first one holds
		}
		members := make([]Member, len(c.members))
		for i, mb := range c.members {
			mb.Up = true
			members[i] = mb
		}
		slices.SortFunc(members, func(a, b Member) int { return strings.Compare(a.Name, b.Name) })
		for i := 1; i < len(members); i++ {
			if members[i].Name == members[i-1].Name {
				return nil, fmt.Errorf("%w: %s twice in init", ErrNodeExists, members[i].Name)
			}
		}
		empty := &Map{Standbys: c.standbys, Partitions: make([]Partition, c.partitions)}
		return rebalanced(empty, members, index), nil
	case opAdd:
		if !m.Initialised() {
			return nil, ErrNotInitialised
		}
		add := c.members[0]
		if checkName(add.Name) != nil || add.Raft == "" {
			return nil, fmt.Errorf("cluster: add: invalid node %q (raft %q)", add.Name, add.Raft)
		}
		for _, mb := range m.Members {
			if mb.Name == add.Name || mb.Raft == add.Raft {
				return nil, fmt.Errorf("%w: %s (raft %s)", ErrNodeExists, add.Name, add.Raft)
			}
		}
		add.Up = true
		members := append(slices.Clone(m.Members), add)
		slices.SortFunc(members, func(a, b Member) int { return strings.Compare(a.Name, b.Name) })
		return rebalanced(m, members, index), nil
	case opRemove:
		if !m.Initialised() {
			return nil, ErrNotInitialised
		}
		i := slices.IndexFunc(m.Members, func(mb Member) bool { return mb.Name == c.name })
		if i < 0 {
			return nil, fmt.Errorf("%w: %s", ErrUnknownNode, c.name)
		}
		return rebalanced(m, slices.Delete(slices.Clone(m.Members), i, i+1), index), nil
	case opLiveness:
		members := slices.Clone(m.Members)
		changed := false
		for _, l := range c.liveness {
			for i := range members {
				if members[i].Name == l.Name && members[i].Up != l.Up {
					members[i].Up = l.Up
					changed = true
				}
			}
		}
		if !changed {
			return nil, nil
		}
		return rebalanced(m, members, index), nil
	}
	return nil, fmt.Errorf("%w: op %d", ErrCorrupt, c.op)
}

func rebalanced(m *Map, members []Member, index uint64) *Map {
	return &Map{
		Index:      index,
		Standbys:   m.Standbys,
		Members:    members,
		Partitions: Rebalance(m.Partitions, members, m.Standbys),
	}
}

// Snapshot captures the current Map (immutable: no copy needed).
func (f *fsm) Snapshot() (raft.FSMSnapshot, error) {
	return mapSnapshot{data: encodeMap(f.cur.Load())}, nil
}

// Restore replaces the state with a snapshot's.
func (f *fsm) Restore(rc io.ReadCloser) error {
	defer rc.Close()
	data, err := io.ReadAll(io.LimitReader(rc, maxSnapshotLen+1))
	if err != nil {
		return fmt.Errorf("cluster: restore: %w", err)
	}
	if len(data) > maxSnapshotLen {
		return fmt.Errorf("%w: snapshot larger than %d bytes", ErrCorrupt, maxSnapshotLen)
	}
	m, err := decodeMap(data)
	if err != nil {
		return fmt.Errorf("cluster: restore: %w", err)
	}
	f.cur.Store(m)
	f.onChange(m)
	return nil
}

type mapSnapshot struct{ data []byte }

func (s mapSnapshot) Persist(sink raft.SnapshotSink) error {
	if _, err := sink.Write(s.data); err != nil {
		sink.Cancel()
		return fmt.Errorf("cluster: snapshot: %w", err)
	}
	return sink.Close()
}

func (mapSnapshot) Release() {}
