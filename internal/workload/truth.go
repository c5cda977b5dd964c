package workload

import (
	"cmp"
	"slices"
)

// Identifier is one typed identifier value, normalised as event.Parse
// normalises it (emails are generated lower-case), so that its String form
// is a valid engine look-up reference ("email:ann.lee3@example.com").
type Identifier struct {
	Type  string
	Value string
}

func (id Identifier) String() string { return id.Type + ":" + id.Value }

// Truth is the ground truth of a workload: which person each identifier
// belongs to.
//
// The first person recorded for an identifier owns it. A later Add of the
// same identifier with another person records that person as an other user
// (a family member on a shared device) without changing the owner; the
// generator always records the owner first, and only lets a family member use
// a shared device after its owner has signed in on it, so that an identity
// resolver that keeps a device with the first user id it saw agrees with the
// owner.
//
// A Truth is not safe for concurrent use.
type Truth struct {
	owner  map[Identifier]int
	others map[Identifier][]int
}

// NewTruth returns an empty Truth.
func NewTruth() *Truth {
	return &Truth{owner: map[Identifier]int{}, others: map[Identifier][]int{}}
}

// Add records that person uses id (see Truth for owners and other users).
func (t *Truth) Add(id Identifier, person int) {
	o, ok := t.owner[id]
	if !ok {
		t.owner[id] = person
		return
	}
	if o == person || slices.Contains(t.others[id], person) {
		return
	}
	t.others[id] = append(t.others[id], person)
}

// Person returns the owner of id.
func (t *Truth) Person(id Identifier) (int, bool) {
	p, ok := t.owner[id]
	return p, ok
}

// OtherUsers returns the people other than the owner who used id, in the
// order they were recorded (nil for an identifier of one person).
func (t *Truth) OtherUsers(id Identifier) []int { return slices.Clone(t.others[id]) }

// SamePerson reports whether a and b are both known and have the same owner.
func (t *Truth) SamePerson(a, b Identifier) bool {
	pa, oka := t.owner[a]
	pb, okb := t.owner[b]
	return oka && okb && pa == pb
}

// Len is the number of identifiers.
func (t *Truth) Len() int { return len(t.owner) }

// Shared is the number of identifiers used by more than one person.
func (t *Truth) Shared() int { return len(t.others) }

// Identifiers returns every identifier, sorted by type then value.
func (t *Truth) Identifiers() []Identifier {
	out := make([]Identifier, 0, len(t.owner))
	for id := range t.owner {
		out = append(out, id)
	}
	slices.SortFunc(out, func(a, b Identifier) int {
		return cmp.Or(cmp.Compare(a.Type, b.Type), cmp.Compare(a.Value, b.Value))
	})
	return out
}

// Clone returns a deep copy.
func (t *Truth) Clone() *Truth {
	c := &Truth{owner: make(map[Identifier]int, len(t.owner)), others: make(map[Identifier][]int, len(t.others))}
	for id, p := range t.owner {
		c.owner[id] = p
	}
	for id, ps := range t.others {
		c.others[id] = slices.Clone(ps)
	}
	return c
}

// Pairs counts unordered identifier pairs for the pairwise "same person"
// score of a clustering.
type Pairs struct {
	Predicted int64 // pairs in the same cluster
	Actual    int64 // pairs with the same owner (over every identifier of the Truth)
	Correct   int64 // pairs in the same cluster and with the same owner
}

// Precision is Correct/Predicted, 1 when nothing was predicted (no wrong
// merge was made).
func (p Pairs) Precision() float64 {
	if p.Predicted == 0 {
		return 1
	}
	return float64(p.Correct) / float64(p.Predicted)
}

// Recall is Correct/Actual, 1 when there is nothing to find.
func (p Pairs) Recall() float64 {
	if p.Actual == 0 {
		return 1
	}
	return float64(p.Correct) / float64(p.Actual)
}

// F1 is the harmonic mean of Precision and Recall (0 when both are 0).
func (p Pairs) F1() float64 {
	pr, rc := p.Precision(), p.Recall()
	if pr+rc == 0 {
		return 0
	}
	return 2 * pr * rc / (pr + rc)
}

// Count counts the pairs of a clustering of identifiers (e.g. the profiles
// an identity resolver built). Identifiers the Truth does not know are
// ignored; an identifier listed more than once counts only in its first
// cluster; a known identifier missing from every cluster is a singleton (its
// links count as missed). It runs in time linear in the number of
// identifiers: pairs are counted per cluster from the sizes of its
// intersections with each person, never enumerated.
func (t *Truth) Count(clusters [][]Identifier) Pairs {
	var p Pairs
	perPerson := map[int]int64{}
	for _, person := range t.owner {
		perPerson[person]++
	}
	for _, n := range perPerson {
		p.Actual += n * (n - 1) / 2
	}
	seen := make(map[Identifier]bool)
	inCluster := map[int]int64{}
	for _, c := range clusters {
		clear(inCluster)
		var size int64
		for _, id := range c {
			person, ok := t.owner[id]
			if !ok || seen[id] {
				continue
			}
			seen[id] = true
			inCluster[person]++
			size++
		}
		p.Predicted += size * (size - 1) / 2
		for _, n := range inCluster {
			p.Correct += n * (n - 1) / 2
		}
	}
	return p
}

// Score returns the pairwise precision, recall and F1 of a clustering (see
// Count and Pairs).
func (t *Truth) Score(clusters [][]Identifier) (precision, recall, f1 float64) {
	p := t.Count(clusters)
	return p.Precision(), p.Recall(), p.F1()
}
