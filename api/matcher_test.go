package api_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/aurumcdp/aurum/engine/matching"
	"github.com/aurumcdp/aurum/internal/check"
	"github.com/aurumcdp/aurum/projections/match"
)

// TestMatcherThroughTheNode: people imported as identify calls, a few of
// them twice under another id with a typo in the surname; the model is
// trained through the API; the matcher (never all pairs: the block index)
// proposes, the log merges. Every true duplicate ends up in its person's
// profile, and no two people share one. Then a new duplicate arriving
// after training is matched incrementally.
func TestMatcherThroughTheNode(t *testing.T) {
	cfg := probabilisticConfig()
	cfg.Probabilistic.Fields["date_of_birth"] = match.Date
	cfg.Probabilistic.Blocking = append(cfg.Probabilistic.Blocking, []string{"date_of_birth"})
	s := newIdentityServerWith(t, cfg)
	rng := rand.New(rand.NewPCG(13, 13))
	syl := []string{"ka", "ro", "mi", "ten", "vol", "sar", "bel", "dor", "fin", "gul", "har", "lin", "mos", "nor", "pet", "quin", "ril", "sto", "tur", "wen"}
	given := []string{"james", "mary", "john", "patricia", "robert", "jennifer", "michael", "linda", "william", "elizabeth",
		"david", "barbara", "richard", "susan", "joseph", "jessica", "thomas", "sarah", "charles", "karen"}
	sur := []string{"smith", "johnson", "williams", "brown", "jones", "garcia", "miller", "davis", "rodriguez", "martinez",
		"hernandez", "lopez", "gonzalez", "wilson", "anderson", "thomas", "taylor", "moore", "jackson", "martin",
		"lee", "perez", "thompson", "white", "harris", "sanchez", "clark", "ramirez", "lewis", "robinson"}
	typo := func(w string) string { // one substituted letter, not the first
		i := 1 + rng.IntN(len(w)-1)
		c := byte('a' + rng.IntN(26))
		if c == w[i] {
			c = 'z' - (w[i] - 'a')
		}
		return w[:i] + string(c) + w[i+1:]
	}
	sur = sur[:0]
	for range 200 {
		sur = append(sur, syl[rng.IntN(len(syl))]+syl[rng.IntN(len(syl))]+syl[rng.IntN(len(syl))])
	}
	type person struct{ given, surname, postcode, dob string }
	const people, dups = 240, 30
	var ps []person
	seen := map[string]bool{} // full names are unique: two people of one name and no other evidence are for a reviewer
	for len(ps) < people {
		p := person{given[rng.IntN(len(given))], sur[rng.IntN(len(sur))], fmt.Sprintf("%04d", 2000+rng.IntN(300)),
			fmt.Sprintf("19%02d%02d%02d", 40+rng.IntN(60), 1+rng.IntN(12), 1+rng.IntN(28))}
		if !seen[p.given+" "+p.surname] {
			seen[p.given+" "+p.surname] = true
			ps = append(ps, p)
		}
	}
	var batch []string
	for i, p := range ps {
		batch = append(batch, fmt.Sprintf(`{"type":"identify","anonymousId":"p%d","messageId":"p%d","traits":{"given_name":%q,"surname":%q,"postcode":%q,"date_of_birth":%q}}`,
			i, i, p.given, p.surname, p.postcode, p.dob))
	}
	for i := range dups {
		p := ps[i]
		batch = append(batch, fmt.Sprintf(`{"type":"identify","anonymousId":"d%d","messageId":"d%d","traits":{"given_name":%q,"surname":%q,"postcode":%q,"date_of_birth":%q}}`,
			i, i, p.given, typo(p.surname), p.postcode, p.dob))
	}
	if r := s.do(req{path: "/v1/batch", key: s.webKey, body: []byte(`{"batch":[` + strings.Join(batch, ",") + `]}`)}); r.code != http.StatusOK {
		t.Fatalf("batch: %s", r)
	}
	s.waitProfile(fmt.Sprintf("anonymous_id:d%d", dups-1))
	s.waitProfile(fmt.Sprintf("anonymous_id:p%d", people-1))

	if r := s.do(req{path: "/v1/identity/model", admin: true, body: []byte(`{}`)}); r.code != http.StatusCreated {
		t.Fatalf("train: %s", r)
	}
	m := s.e.Matching()
	if mr := s.do(req{method: "GET", path: "/v1/identity/model", admin: true}); mr.code != http.StatusOK {
		t.Fatalf("model: %s", mr)
	}
	check.For(t, 60*time.Second, 20*time.Millisecond, func() error {
		if !m.Idle() {
			return fmt.Errorf("matcher busy: %+v", m.Stats())
		}
		return nil
	})
	// Idle means proposed (appended), not applied: wait for the log's end.
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := s.e.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	// Pending reviews are rejected: only automatic merges count here.
	for _, rv := range s.reviews() {
		if r := s.decide(rv.ID, "reject"); r.code != http.StatusOK {
			t.Fatalf("decide: %s", r)
		}
	}
	profileOf := func(ref string) string {
		_, p := s.profile(ref)
		return fmt.Sprint(p["profile_id"])
	}
	owner := map[string]int{}
	for i := range ps {
		pid := profileOf(fmt.Sprintf("anonymous_id:p%d", i))
		if j, ok := owner[pid]; ok {
			t.Errorf("people %d %v and %d %v merged", j, ps[j], i, ps[i])
		}
		owner[pid] = i
	}
	found := 0
	for i := range dups {
		if profileOf(fmt.Sprintf("anonymous_id:d%d", i)) == profileOf(fmt.Sprintf("anonymous_id:p%d", i)) {
			found++
		}
	}
	st := m.Stats()
	t.Logf("duplicates merged automatically: %d of %d; matcher %+v", found, dups, st)
	if found < dups*8/10 {
		t.Fatalf("only %d of %d duplicates merged", found, dups)
	}

	// Incremental: a new duplicate after training is matched on arrival.
	p := ps[people-1]
	if r := s.do(req{path: "/v1/identify", key: s.webKey, body: []byte(fmt.Sprintf(`{"anonymousId":"late","traits":{"given_name":%q,"surname":%q,"postcode":%q,"date_of_birth":%q}}`,
		p.given, typo(p.surname), p.postcode, p.dob))}); r.code != http.StatusOK {
		t.Fatalf("identify: %s", r)
	}
	want := profileOf(fmt.Sprintf("anonymous_id:p%d", people-1))
	check.For(t, 60*time.Second, 20*time.Millisecond, func() error {
		if got := profileOf("anonymous_id:late"); got != want {
			return fmt.Errorf("late duplicate in %s, want %s", got, want)
		}
		return nil
	})
	ex := s.explain("anonymous_id:late")
	var last matching.Link
	for _, l := range ex.Links {
		last = l
	}
	if last.Cause != "probabilistic" || last.Match == nil || last.Match.Probability < 0.99 || len(last.Match.Contributions) != 4 {
		t.Fatalf("late link = %+v", last)
	}
}
