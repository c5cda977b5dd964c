package workload_test

import (
	"math"
	"strconv"
	"testing"

	"github.com/aurumcdp/aurum/internal/workload"
)

func id(s string) workload.Identifier {
	for i := range len(s) {
		if s[i] == ':' {
			return workload.Identifier{Type: s[:i], Value: s[i+1:]}
		}
	}
	panic("bad identifier " + s)
}

func ids(ss ...string) []workload.Identifier {
	out := make([]workload.Identifier, len(ss))
	for i, s := range ss {
		out[i] = id(s)
	}
	return out
}

// handTruth: person 0 owns u:a, e:a, c:a1, c:a2 (6 pairs); person 1 owns u:b,
// c:b (1 pair); person 2 owns u:c (0 pairs). 7 true pairs.
func handTruth() *workload.Truth {
	t := workload.NewTruth()
	for _, x := range []struct {
		id     string
		person int
	}{{"user_id:a", 0}, {"email:a", 0}, {"anonymous_id:a1", 0}, {"anonymous_id:a2", 0},
		{"user_id:b", 1}, {"anonymous_id:b", 1}, {"user_id:c", 2}} {
		t.Add(id(x.id), x.person)
	}
	return t
}

func TestScore(t *testing.T) {
	for _, tc := range []struct {
		name     string
		clusters [][]workload.Identifier
		want     workload.Pairs
		p, r, f1 float64
	}{
		{
			name: "perfect",
			clusters: [][]workload.Identifier{ids("user_id:a", "email:a", "anonymous_id:a1", "anonymous_id:a2"),
				ids("user_id:b", "anonymous_id:b"), ids("user_id:c")},
			want: workload.Pairs{Predicted: 7, Actual: 7, Correct: 7}, p: 1, r: 1, f1: 1,
		},
		{
			// b's cookie wrongly merged into a: 5 cookie pairs added, 4 wrong (with a's ids), and b's pair lost.
			name: "one wrong merge",
			clusters: [][]workload.Identifier{ids("user_id:a", "email:a", "anonymous_id:a1", "anonymous_id:a2", "anonymous_id:b"),
				ids("user_id:b"), ids("user_id:c")},
			want: workload.Pairs{Predicted: 10, Actual: 7, Correct: 6}, p: 0.6, r: 6.0 / 7, f1: 2 * 0.6 * (6.0 / 7) / (0.6 + 6.0/7),
		},
		{
			// Two whole people merged: recall stays 1, precision drops.
			name: "merge of two people",
			clusters: [][]workload.Identifier{ids("user_id:a", "email:a", "anonymous_id:a1", "anonymous_id:a2"),
				ids("user_id:b", "anonymous_id:b", "user_id:c")},
			want: workload.Pairs{Predicted: 9, Actual: 7, Correct: 7}, p: 7.0 / 9, r: 1, f1: 2 * (7.0 / 9) / (7.0/9 + 1),
		},
		{
			// a2 never linked (e.g. a device that never signs in): 3 pairs missed.
			name: "missed link",
			clusters: [][]workload.Identifier{ids("user_id:a", "email:a", "anonymous_id:a1"), ids("anonymous_id:a2"),
				ids("user_id:b", "anonymous_id:b"), ids("user_id:c")},
			want: workload.Pairs{Predicted: 4, Actual: 7, Correct: 4}, p: 1, r: 4.0 / 7, f1: 2 * (4.0 / 7) / (1 + 4.0/7),
		},
		{
			// Identifiers missing from every cluster are singletons;
			// unknown identifiers and repeats are ignored.
			name: "missing, unknown and repeated identifiers",
			clusters: [][]workload.Identifier{ids("user_id:a", "email:a", "anonymous_id:a1", "anonymous_id:a2", "email:stranger"),
				ids("user_id:a", "user_id:b")},
			want: workload.Pairs{Predicted: 6, Actual: 7, Correct: 6}, p: 1, r: 6.0 / 7, f1: 2 * (6.0 / 7) / (1 + 6.0/7),
		},
		{
			name:     "nothing clustered",
			clusters: nil,
			want:     workload.Pairs{Predicted: 0, Actual: 7, Correct: 0}, p: 1, r: 0, f1: 0,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			truth := handTruth()
			if got := truth.Count(tc.clusters); got != tc.want {
				t.Fatalf("Count = %+v, want %+v", got, tc.want)
			}
			p, r, f1 := truth.Score(tc.clusters)
			for _, c := range []struct {
				name      string
				got, want float64
			}{{"precision", p, tc.p}, {"recall", r, tc.r}, {"f1", f1, tc.f1}} {
				if math.Abs(c.got-c.want) > 1e-12 {
					t.Errorf("%s = %v, want %v", c.name, c.got, c.want)
				}
			}
		})
	}
}

func TestTruthShared(t *testing.T) {
	truth := handTruth()
	dev := id("anonymous_id:family-tablet")
	truth.Add(dev, 0)
	truth.Add(dev, 1) // a family member uses person 0's tablet
	truth.Add(dev, 1)
	truth.Add(dev, 0)
	if p, ok := truth.Person(dev); !ok || p != 0 {
		t.Fatalf("owner of the shared device: %d, %v; want 0 (first recorded)", p, ok)
	}
	if o := truth.OtherUsers(dev); len(o) != 1 || o[0] != 1 {
		t.Fatalf("other users %v, want [1]", o)
	}
	if truth.Shared() != 1 {
		t.Fatalf("Shared = %d", truth.Shared())
	}
	if !truth.SamePerson(dev, id("user_id:a")) || truth.SamePerson(dev, id("user_id:b")) {
		t.Fatal("SamePerson must follow the owner")
	}
	if truth.SamePerson(id("email:nobody"), id("email:nobody")) {
		t.Fatal("unknown identifiers are nobody's")
	}
	c := truth.Clone()
	c.Add(id("email:new"), 2)
	if _, ok := truth.Person(id("email:new")); ok {
		t.Fatal("Clone shares state with the original")
	}
}

// TestCountLinear scores a large clustering: pairs are counted, not
// enumerated (100k identifiers in one cluster would be 5e9 pairs).
func TestCountLinear(t *testing.T) {
	truth := workload.NewTruth()
	var all []workload.Identifier
	for i := range 100_000 {
		x := workload.Identifier{Type: "anonymous_id", Value: strconv.Itoa(i)}
		truth.Add(x, i%2)
		all = append(all, x)
	}
	got := truth.Count([][]workload.Identifier{all})
	half := int64(50_000)
	want := workload.Pairs{Predicted: 100_000 * 99_999 / 2, Actual: 2 * half * (half - 1) / 2, Correct: 2 * half * (half - 1) / 2}
	if got != want {
		t.Fatalf("Count = %+v, want %+v", got, want)
	}
}
