package cluster

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/aurumcdp/aurum/internal/wire"
)

// ErrCorrupt marks a command or snapshot that does not decode.
var ErrCorrupt = errors.New("cluster: corrupt control entry")

// The encodings of the control state (wire primitives, see internal/wire):
//
//	command  = version(1 byte: 1) op(1 byte) body
//	  opInit     = uvarint(partitions) uvarint(standbys) uvarint(n) member*n
//	  opAdd      = member
//	  opRemove   = str(name)
//	  opLiveness = uvarint(n) (str(name) bool(up))*n
//	member   = str(name) str(http) str(nats) str(routes) str(raft) bool(up)
//	snapshot = version(1 byte: 1) uvarint(index) uvarint(standbys)
//	           uvarint(m) member*m uvarint(p) partition*p
//	partition = str(owner) uvarint(epoch) uvarint(s) str(standby)*s
//
// The version selects the command set and the Rebalance that applies it:
// a change of either is a new version, to be written only once every node
// runs a build that reads it (an entry of an unknown version is refused,
// and so left out, by the replicas that cannot read it).
const (
	commandVersion  = 1
	snapshotVersion = 1
)

type op byte

const (
	opInit op = iota + 1
	opAdd
	opRemove
	opLiveness
)

// command is one change of the control state.
type command struct {
	op         op
	partitions int      // opInit
	standbys   int      // opInit
	members    []Member // opInit: the members; opAdd: the one added
	name       string   // opRemove
	liveness   []Member // opLiveness: Name and Up only
}

func appendMember(dst []byte, m Member) []byte {
	dst = wire.AppendString(dst, m.Name)
	dst = wire.AppendString(dst, m.HTTP)
	dst = wire.AppendString(dst, m.NATS)
	dst = wire.AppendString(dst, m.Routes)
	dst = wire.AppendString(dst, m.Raft)
	return wire.AppendBool(dst, m.Up)
}

func readMember(r *wire.Reader) Member {
	var m Member
	m.Name = r.String("member name")
	m.HTTP = r.String("member http")
	m.NATS = r.String("member nats")
	m.Routes = r.String("member routes")
	m.Raft = r.String("member raft")
	m.Up = r.Bool("member up")
	return m
}

// memberMinLen is the least encoding of a member (5 empty strings, a bool).
const memberMinLen = 6

func (c command) encode() []byte {
	b := []byte{commandVersion, byte(c.op)}
	switch c.op {
	case opInit:
		b = binary.AppendUvarint(b, uint64(c.partitions))
		b = binary.AppendUvarint(b, uint64(c.standbys))
		b = binary.AppendUvarint(b, uint64(len(c.members)))
		for _, m := range c.members {
			b = appendMember(b, m)
		}
	case opAdd:
		b = appendMember(b, c.members[0])
	case opRemove:
		b = wire.AppendString(b, c.name)
	case opLiveness:
		b = binary.AppendUvarint(b, uint64(len(c.liveness)))
		for _, m := range c.liveness {
			b = wire.AppendString(b, m.Name)
			b = wire.AppendBool(b, m.Up)
		}
	}
	return b
}

func decodeCommand(data []byte) (command, error) {
	var c command
	if len(data) < 2 {
		return c, fmt.Errorf("%w: %d bytes", ErrCorrupt, len(data))
	}
	if data[0] != commandVersion {
		return c, fmt.Errorf("%w: command version %d (this build reads %d)", ErrCorrupt, data[0], commandVersion)
	}
	c.op = op(data[1])
	r := wire.NewReader(data[2:], ErrCorrupt)
	switch c.op {
	case opInit:
		c.partitions = int(r.Uvarint("partitions"))
		c.standbys = int(r.Uvarint("standbys"))
		n := r.Count("members", memberMinLen)
		for range n {
			c.members = append(c.members, readMember(&r))
		}
		if r.Err() == nil && (c.partitions < 1 || c.partitions > MaxPartitions || c.standbys >= MaxReplicas || n == 0) {
			r.Fail("init of %d partitions, %d standbys, %d members", c.partitions, c.standbys, n)
		}
	case opAdd:
		c.members = []Member{readMember(&r)}
	case opRemove:
		c.name = r.String("name")
	case opLiveness:
		n := r.Count("liveness", 2)
		for range n {
			name := r.String("name")
			c.liveness = append(c.liveness, Member{NodeConfig: NodeConfig{Name: name}, Up: r.Bool("up")})
		}
	default:
		r.Fail("unknown op %d", c.op)
	}
	if err := r.Finish(); err != nil {
		return command{}, err
	}
	return c, nil
}

func encodeMap(m *Map) []byte {
	b := []byte{snapshotVersion}
	b = binary.AppendUvarint(b, m.Index)
	b = binary.AppendUvarint(b, uint64(m.Standbys))
	b = binary.AppendUvarint(b, uint64(len(m.Members)))
	for _, mb := range m.Members {
		b = appendMember(b, mb)
	}
	b = binary.AppendUvarint(b, uint64(len(m.Partitions)))
	for _, p := range m.Partitions {
		b = wire.AppendString(b, p.Owner)
		b = binary.AppendUvarint(b, p.Epoch)
		b = binary.AppendUvarint(b, uint64(len(p.Standbys)))
		for _, s := range p.Standbys {
			b = wire.AppendString(b, s)
		}
	}
	return b
}

func decodeMap(data []byte) (*Map, error) {
	if len(data) < 1 || data[0] != snapshotVersion {
		return nil, fmt.Errorf("%w: snapshot version (this build reads %d)", ErrCorrupt, snapshotVersion)
	}
	r := wire.NewReader(data[1:], ErrCorrupt)
	m := &Map{Index: r.Uvarint("index"), Standbys: int(r.Uvarint("standbys"))}
	nm := r.Count("members", memberMinLen)
	for i := 0; i < nm && r.Err() == nil; i++ {
		mb := readMember(&r)
		if i > 0 && mb.Name <= m.Members[i-1].Name {
			r.Fail("members not in order at %q", mb.Name)
		}
		m.Members = append(m.Members, mb)
	}
	np := r.Count("partitions", 3)
	if np > MaxPartitions {
		r.Fail("%d partitions", np)
	}
	for i := 0; i < np && r.Err() == nil; i++ {
		p := Partition{ID: i, Owner: r.String("owner"), Epoch: r.Uvarint("epoch")}
		ns := r.Count("standbys", 1)
		for range ns {
			p.Standbys = append(p.Standbys, r.String("standby"))
		}
		m.Partitions = append(m.Partitions, p)
	}
	if err := r.Finish(); err != nil {
		return nil, err
	}
	return m, nil
}
