package cluster

import (
	"strings"

	"github.com/hashicorp/raft"
)

// Status is the answer of GET /v1/cluster as this node sees it.
type Status struct {
	Leader     string            `json:"leader"`
	Nodes      []NodeStatus      `json:"nodes"`
	Partitions []PartitionStatus `json:"partitions"`
}

// NodeStatus is one member. State is "up" or "down" (the map's); Raft is
// this node's own Raft state for itself, and for the others "leader",
// "follower" (a voter in the configuration), "nonvoter" or "none" (not in
// the configuration).
type NodeStatus struct {
	Name  string `json:"name"`
	HTTP  string `json:"http"`
	State string `json:"state"`
	Raft  string `json:"raft"`
}

// PartitionStatus is one partition; Applied comes from Options.Applied (0
// without it).
type PartitionStatus struct {
	ID       int      `json:"id"`
	Owner    string   `json:"owner"`
	Standbys []string `json:"standbys"`
	Epoch    uint64   `json:"epoch"`
	Applied  uint64   `json:"applied"`
}

// Status reports the map this node has applied and the Raft roles it
// knows.
func (n *Node) Status() Status {
	m := n.fsm.cur.Load()
	leader := n.Leader()
	roles := map[string]string{}
	if cf := n.raft.GetConfiguration(); cf.Error() == nil {
		for _, s := range cf.Configuration().Servers {
			roles[string(s.ID)] = "follower"
			if s.Suffrage != raft.Voter {
				roles[string(s.ID)] = "nonvoter"
			}
		}
	}
	st := Status{Leader: leader, Nodes: []NodeStatus{}, Partitions: []PartitionStatus{}}
	for _, mb := range m.Members {
		ns := NodeStatus{Name: mb.Name, HTTP: mb.HTTP, State: "down", Raft: "none"}
		if mb.Up {
			ns.State = "up"
		}
		if r, ok := roles[mb.Name]; ok {
			ns.Raft = r
		}
		switch mb.Name {
		case n.name:
			ns.Raft = strings.ToLower(n.raft.State().String())
		case leader:
			ns.Raft = "leader"
		}
		st.Nodes = append(st.Nodes, ns)
	}
	for _, p := range m.Partitions {
		ps := PartitionStatus{ID: p.ID, Owner: p.Owner, Standbys: append([]string{}, p.Standbys...), Epoch: p.Epoch}
		if n.opts.Applied != nil {
			ps.Applied = n.opts.Applied(p.ID)
		}
		st.Partitions = append(st.Partitions, ps)
	}
	return st
}
