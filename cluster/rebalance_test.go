package cluster

import (
	"fmt"
	"math/rand/v2"
	"reflect"
	"slices"
	"sort"
	"testing"
)

// TestRebalanceProperties drives random membership and liveness changes
// through Rebalance and checks after each step: one owner per partition,
// among the members up; owner counts within one of each other; epochs
// grow by one exactly on an owner change; the number of owner changes is
// the least any balanced map allows; standbys distinct, up, not the owner,
// as many as wanted and possible; the result does not depend on anything
// but the input, which is left untouched.
func TestRebalanceProperties(t *testing.T) {
	for seed := range uint64(100) {
		rng := rand.New(rand.NewPCG(seed, 7))
		n := 1 + rng.IntN(40)
		standbys := rng.IntN(4)
		var members []Member
		for i := range 1 + rng.IntN(5) {
			members = append(members, Member{NodeConfig: NodeConfig{Name: fmt.Sprintf("n%d", i)}, Up: true})
		}
		next := len(members)
		parts := Rebalance(make([]Partition, n), members, standbys)
		checkRebalance(t, seed, make([]Partition, n), parts, members, standbys)
		for step := range 30 {
			switch rng.IntN(4) {
			case 0: // add
				members = append(members, Member{NodeConfig: NodeConfig{Name: fmt.Sprintf("n%d", next)}, Up: true})
				next++
			case 1: // remove
				if len(members) > 0 {
					i := rng.IntN(len(members))
					members = slices.Delete(members, i, i+1)
				}
			default: // flip liveness
				if len(members) > 0 {
					i := rng.IntN(len(members))
					members[i].Up = !members[i].Up
				}
			}
			prev := parts
			prevCopy := clonePartitions(prev)
			membersCopy := slices.Clone(members)
			parts = Rebalance(prev, members, standbys)
			if !reflect.DeepEqual(prev, prevCopy) || !reflect.DeepEqual(members, membersCopy) {
				t.Fatalf("seed %d step %d: Rebalance changed its input", seed, step)
			}
			if again := Rebalance(prev, members, standbys); !reflect.DeepEqual(again, parts) {
				t.Fatalf("seed %d step %d: not deterministic", seed, step)
			}
			checkRebalance(t, seed, prev, parts, members, standbys)
		}
	}
}

func clonePartitions(ps []Partition) []Partition {
	out := slices.Clone(ps)
	for i := range out {
		out[i].Standbys = slices.Clone(out[i].Standbys)
	}
	return out
}

func checkRebalance(t *testing.T, seed uint64, prev, next []Partition, members []Member, standbys int) {
	t.Helper()
	up := map[string]bool{}
	for _, m := range members {
		if m.Up {
			up[m.Name] = true
		}
	}
	kept := map[string]int{} // partitions each member up held before
	for _, p := range prev {
		if up[p.Owner] {
			kept[p.Owner]++
		}
	}
	count := map[string]int{}
	moves := 0
	for i, p := range next {
		if p.ID != i {
			t.Fatalf("seed %d: partition %d has id %d", seed, i, p.ID)
		}
		if len(up) == 0 {
			if p.Owner != "" || len(p.Standbys) != 0 {
				t.Fatalf("seed %d: nobody up, partition %+v", seed, p)
			}
		} else if !up[p.Owner] {
			t.Fatalf("seed %d: partition %d owned by %q, not up", seed, i, p.Owner)
		}
		count[p.Owner]++
		if p.Owner != prev[i].Owner {
			moves++
			if p.Epoch != prev[i].Epoch+1 {
				t.Fatalf("seed %d: partition %d changed owner, epoch %d → %d", seed, i, prev[i].Epoch, p.Epoch)
			}
		} else if p.Epoch != prev[i].Epoch {
			t.Fatalf("seed %d: partition %d kept its owner, epoch %d → %d", seed, i, prev[i].Epoch, p.Epoch)
		}
		want := min(standbys, max(len(up)-1, 0))
		if len(p.Standbys) != want {
			t.Fatalf("seed %d: partition %d has %d standbys, want %d", seed, i, len(p.Standbys), want)
		}
		seen := map[string]bool{}
		for _, s := range p.Standbys {
			if !up[s] || s == p.Owner || seen[s] {
				t.Fatalf("seed %d: partition %d standbys %v (owner %s)", seed, i, p.Standbys, p.Owner)
			}
			seen[s] = true
		}
		if up[prev[i].Owner] && prev[i].Owner != p.Owner && want > 0 && p.Standbys[0] != prev[i].Owner {
			t.Fatalf("seed %d: partition %d: the previous owner %s is not its first standby %v", seed, i, prev[i].Owner, p.Standbys)
		}
	}
	if len(up) == 0 {
		return
	}
	lo, hi := len(next), 0
	for name := range up {
		lo, hi = min(lo, count[name]), max(hi, count[name])
	}
	if hi-lo > 1 {
		t.Fatalf("seed %d: unbalanced %v", seed, count)
	}
	// The least movement of a balanced map: shares of ceil go to the
	// members that held the most; each keeps min(held, share).
	var held []int
	for name := range up {
		held = append(held, kept[name])
	}
	sort.Sort(sort.Reverse(sort.IntSlice(held)))
	base, extra := len(next)/len(up), len(next)%len(up)
	best := 0
	for i, h := range held {
		share := base
		if i < extra {
			share++
		}
		best += min(h, share)
	}
	if moves != len(next)-best {
		t.Fatalf("seed %d: %d owner changes, the least is %d", seed, moves, len(next)-best)
	}
}

func TestRebalanceOrphansGoToStandbys(t *testing.T) {
	members := []Member{
		{NodeConfig: NodeConfig{Name: "a"}, Up: true},
		{NodeConfig: NodeConfig{Name: "b"}, Up: true},
		{NodeConfig: NodeConfig{Name: "c"}, Up: true},
	}
	parts := Rebalance(make([]Partition, 9), members, 1)
	members[0].Up = false
	next := Rebalance(parts, members, 1)
	for i, p := range parts {
		if p.Owner == "a" && next[i].Owner != p.Standbys[0] {
			t.Errorf("partition %d of a (standby %s) went to %s", i, p.Standbys[0], next[i].Owner)
		}
	}
	// a back: it gets its share again, and only it gains.
	members[0].Up = true
	back := Rebalance(next, members, 1)
	n := 0
	for i := range back {
		if back[i].Owner != next[i].Owner {
			n++
			if back[i].Owner != "a" {
				t.Errorf("partition %d moved to %s", i, back[i].Owner)
			}
		}
	}
	if n != 3 {
		t.Errorf("%d partitions moved back, want 3", n)
	}
}
