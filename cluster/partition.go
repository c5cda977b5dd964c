package cluster

import (
	"slices"
	"sort"
	"strings"
)

// Member is a node of the cluster as the control state knows it.
type Member struct {
	NodeConfig
	// Up is the leader's verdict: false once the node left the Raft
	// configuration or missed heartbeats for Options.DownAfter.
	Up bool
}

// Partition is the ownership of one partition.
type Partition struct {
	ID int
	// Owner applies the partition and alone may publish its outputs; ""
	// when no member is up.
	Owner string
	// Standbys follow the same log so that one of them can take over
	// without rebuilding state; never the owner, never twice the same.
	Standbys []string
	// Epoch is the fencing token of the ownership: it grows by one on every
	// change of Owner (to "" included) and never goes back. An output
	// published under an older epoch is refused (ARCHITECTURE.md "Cluster").
	Epoch uint64
}

// Map is the replicated control state at one Raft index: membership and
// the partition map. A Map handed out is never changed afterwards.
type Map struct {
	// Index is the Raft log index of the entry that made this map (0
	// before the cluster is initialised).
	Index uint64
	// Standbys is the number of standbys per partition wanted (replicas -
	// 1); fewer when fewer members are up.
	Standbys   int
	Members    []Member    // sorted by name
	Partitions []Partition // Partitions[i].ID == i
}

// Initialised reports whether the leader has written the first map.
func (m *Map) Initialised() bool { return len(m.Partitions) > 0 }

// Member returns the member named name.
func (m *Map) Member(name string) (Member, bool) {
	i, ok := slices.BinarySearchFunc(m.Members, name, func(m Member, n string) int {
		return strings.Compare(m.Name, n)
	})
	if !ok {
		return Member{}, false
	}
	return m.Members[i], true
}

// Rebalance returns the partition map for members given the previous one
// (one entry per partition; neither is changed). It is pure and
// deterministic: the control state's Apply calls it, so every replica
// computes the same map.
//
//   - Every partition gets exactly one owner among the members that are up
//     (none when no member is up), and owner counts differ by at most one.
//   - Movement is minimal: an owner that is up keeps its partitions unless
//     it holds more than its share, and the shares of one more partition go
//     to the members that already hold the most. An orphaned partition goes
//     first to one of its standbys that is up (it has followed the log).
//   - The epoch of a partition grows by one exactly when its owner changes.
//   - Each partition gets min(standbys, up members - 1) standbys: the
//     previous owner first (it holds the state), then the previous
//     standbys, then the members with the fewest standby places so far.
func Rebalance(prev []Partition, members []Member, standbys int) []Partition {
	n := len(prev)
	next := make([]Partition, n)
	var live []string
	isLive := map[string]bool{}
	for _, m := range members {
		if m.Up && !isLive[m.Name] {
			live = append(live, m.Name)
			isLive[m.Name] = true
		}
	}
	sort.Strings(live)
	count := map[string]int{}
	for i, p := range prev {
		next[i] = Partition{ID: i, Epoch: p.Epoch}
		if isLive[p.Owner] {
			next[i].Owner = p.Owner
			count[p.Owner]++
		}
	}
	if len(live) > 0 {
		assignOwners(next, prev, live, count)
	}
	for i := range next {
		if next[i].Owner != prev[i].Owner {
			next[i].Epoch = prev[i].Epoch + 1
		}
	}
	assignStandbys(next, prev, live, isLive, min(standbys, max(len(live)-1, 0)))
	return next
}

// assignOwners fills the partitions next leaves without an owner and takes
// away the excess of members above their share; count is the number of
// partitions each live member keeps.
func assignOwners(next, prev []Partition, live []string, count map[string]int) {
	n := len(next)
	base, extra := n/len(live), n%len(live)
	// The shares of base+1 go to the members holding the most: that keeps
	// the most partitions where they are.
	order := slices.Clone(live)
	sort.SliceStable(order, func(a, b int) bool { return count[order[a]] > count[order[b]] })
	quota := map[string]int{}
	for i, name := range order {
		quota[name] = base
		if i < extra {
			quota[name] = base + 1
		}
	}
	// Excess: the highest partition ids of a member above its share leave.
	for i := n - 1; i >= 0; i-- {
		if o := next[i].Owner; o != "" && count[o] > quota[o] {
			count[o]--
			next[i].Owner = ""
		}
	}
	for i := range next {
		if next[i].Owner != "" {
			continue
		}
		pick := ""
		for _, s := range prev[i].Standbys {
			if _, ok := quota[s]; ok && count[s] < quota[s] {
				pick = s
				break
			}
		}
		if pick == "" {
			for _, name := range live { // sorted: ties go to the first name
				if count[name] < quota[name] && (pick == "" || count[name] < count[pick]) {
					pick = name
				}
			}
		}
		next[i].Owner = pick
		count[pick]++
	}
}

func assignStandbys(next, prev []Partition, live []string, isLive map[string]bool, k int) {
	if k == 0 {
		return
	}
	load := map[string]int{}
	for i := range next {
		p := &next[i]
		chosen := make([]string, 0, k)
		add := func(name string) {
			if len(chosen) < k && isLive[name] && name != p.Owner && !slices.Contains(chosen, name) {
				chosen = append(chosen, name)
				load[name]++
			}
		}
		add(prev[i].Owner)
		for _, s := range prev[i].Standbys {
			add(s)
		}
		for len(chosen) < k {
			pick := ""
			for _, name := range live {
				if name != p.Owner && !slices.Contains(chosen, name) && (pick == "" || load[name] < load[pick]) {
					pick = name
				}
			}
			add(pick)
		}
		p.Standbys = chosen
	}
}
