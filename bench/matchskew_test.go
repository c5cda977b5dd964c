package bench

import (
	"fmt"
	"os"
	"strings"
	"testing"

	"github.com/aurumcdp/aurum/projections/match"
)

// Issue #13, session 9: on the matching bench's people (surnames drawn
// partly by a Zipf law, so a few surnames are shared by many) EM took "same
// surname" for the match class; a pair agreeing on the surname alone scored
// 0.80, the review threshold, and the matcher proposed 8.5 pairs per
// identify event at 100k profiles (bench/RESULTS.md "Issue #13: EM on
// skewed surnames"). These tests train on the bench's generator and score
// its probe events in memory, as the matcher would (every profile sharing a
// blocking key with the event's record, scored once).

// skewOutcome is what a model makes of the probe events at one size.
type skewOutcome struct {
	profiles, probe int
	// Proposals are the pairs at or above the review threshold: Same those
	// of the duplicate and the person it duplicates, Other the rest.
	same, other int
	duplicates  int
}

func (s skewOutcome) perEvent() float64 { return float64(s.same+s.other) / float64(s.probe) }

// skewProbe scores probe records (even ones duplicates of people with
// typos, odd ones new people, as measureMatchCost makes them) against the
// n people that share a blocking key with them.
func skewProbe(cfg match.Config, m *match.Model, g *febrlGen, n, probe int) skewOutcome {
	people := make([]match.Record, n)
	byKey := map[string][]int32{}
	for i := range n {
		people[i] = match.Record(g.person(i))
		for _, k := range match.BlockKeys(cfg, people[i]) {
			byKey[k] = append(byKey[k], int32(i))
		}
	}
	out := skewOutcome{profiles: n, probe: probe}
	review := cfg.WithDefaults().Review
	for j := range probe {
		rec, truth := match.Record(g.person(n+j)), -1
		if j%2 == 0 {
			truth = (j * 7919) % n
			rec = match.Record(g.duplicate(truth, j))
			out.duplicates++
		}
		seen := map[int32]bool{}
		for _, k := range match.BlockKeys(cfg, rec) {
			for _, i := range byKey[k] {
				if seen[i] {
					continue
				}
				seen[i] = true
				if m.Score(cfg, rec, people[i]).Probability < review {
					continue
				}
				if int(i) == truth {
					out.same++
				} else {
					out.other++
				}
			}
		}
	}
	return out
}

// surnameOnly is the match probability of two records that agree on the
// surname and on nothing else.
func surnameOnly(cfg match.Config, m *match.Model) float64 {
	a := match.Record{"given_name": "alice", "surname": "kamiro", "date_of_birth": "19700101", "street_number": "1", "postcode": "2000", "state": "nsw"}
	b := match.Record{"given_name": "zoltan", "surname": "kamiro", "date_of_birth": "19881223", "street_number": "277", "postcode": "9876", "state": "wa"}
	return m.Score(cfg, a, b).Probability
}

// trainSkew trains on the first n people and a duplicate of one in ten,
// as trainModel does (fewer random pairs: u of these fields needs no more).
func trainSkew(tb testing.TB, g *febrlGen, n, randomPairs int) *match.Model {
	var recs []match.Record
	for i := range n {
		recs = append(recs, match.Record(g.person(i)))
		if i%10 == 0 {
			recs = append(recs, match.Record(g.duplicate(i, 1)))
		}
	}
	m, err := match.Train(*matchConfig(), recs, match.TrainOptions{Seed: 1, RandomPairs: randomPairs})
	if err != nil {
		tb.Fatal(err)
	}
	return m
}

// TestSkewedSurnamesModel: a model trained on 5,500 of the bench's records
// (where the EM of session 8 already took the surname for the match class:
// surname-only 0.91, 115 namesakes proposed for these 400 probe events)
// scores a surname-only agreement far below the review threshold, and at
// 5,000 profiles proposes the duplicates' true pairs and no namesakes.
func TestSkewedSurnamesModel(t *testing.T) {
	g := newFebrlGen()
	cfg := *matchConfig()
	m := trainSkew(t, g, 5_000, 100_000)
	review := cfg.WithDefaults().Review
	if p := surnameOnly(cfg, m); p >= review/100 {
		t.Errorf("surname-only agreement scores %.4f, want < %.4f (the review threshold / 100)", p, review/100)
	}
	for _, f := range m.Fields {
		// Every field's exact agreement is evidence for a match.
		if l := f.Levels[0]; l.M <= l.U {
			t.Errorf("%s: exact m %.4g ≤ u %.4g", f.Field, l.M, l.U)
		}
	}
	out := skewProbe(cfg, m, g, 5_000, 400)
	t.Logf("model %s: surname-only %.3g; %d profiles, %d probe events: %.2f proposals per event (%d true pairs of %d duplicates, %d others)",
		m.Version, surnameOnly(cfg, m), out.profiles, out.probe, out.perEvent(), out.same, out.duplicates, out.other)
	if out.other > out.probe/100 {
		t.Errorf("%d proposals of different people for %d probe events, want ≤ %d", out.other, out.probe, out.probe/100)
	}
	if out.same < out.duplicates*9/10 {
		t.Errorf("%d of %d duplicates proposed, want ≥ 90%%", out.same, out.duplicates)
	}
}

// TestSkewedSurnamesSizes prints the proposals per probe event at the
// matching bench's sizes with the bench's model (trained by trainModel on
// 22,000 records), in memory (AURUM_BENCH=match, part of make
// bench-match; -match-block-sizes sets the sizes).
func TestSkewedSurnamesSizes(t *testing.T) {
	if os.Getenv("AURUM_BENCH") != "match" {
		t.Skip("AURUM_BENCH=match runs the matching measurements (make bench-match)")
	}
	sizes, err := parseSizes(*matchBlockSizes)
	if err != nil {
		t.Fatal(err)
	}
	g := newFebrlGen()
	cfg := *matchConfig()
	m := trainModel(t, g, 20_000)
	var b strings.Builder
	fmt.Fprintf(&b, "\n### Proposals per probe event, in memory (model %s; surname-only agreement %.3g; %d probe identify events per size, half duplicates)\n\n",
		m.Version, surnameOnly(cfg, m), *matchProbe)
	fmt.Fprintln(&b, "| profiles | proposals per event | true pairs proposed / duplicates | proposals of different people |")
	fmt.Fprintln(&b, "|---:|---:|---|---:|")
	for _, n := range sizes {
		o := skewProbe(cfg, m, g, n, *matchProbe)
		fmt.Fprintf(&b, "| %d | %.2f | %d / %d | %d |\n", n, o.perEvent(), o.same, o.duplicates, o.other)
	}
	t.Log(b.String())
	fmt.Println(b.String())
}
