package projections

import (
	"testing"

	"github.com/aurumcdp/aurum/projections/audience"
	"github.com/aurumcdp/aurum/store"
)

// TestPreviewExactAndSampled: a preview over every profile counts exactly
// what a created audience would hold; over a sample it estimates the size
// within its stated 95 % margin, and changes nothing.
func TestPreviewExactAndSampled(t *testing.T) {
	s := store.NewMem()
	sm := newSM()
	applyAll(t, sm, s, syntheticLog(t, 400, 1200, 9))
	before := digest(t, s)
	set, err := audience.Compile([]audience.Definition{{Name: "p", Rule: `count("Order Completed") >= 1`, Version: 1}})
	if err != nil {
		t.Fatal(err)
	}
	now, _ := LogClock(s)
	exact, err := sm.Preview(s, set, now, 5, 0)
	if err != nil {
		t.Fatal(err)
	}
	if !exact.Exact || exact.Evaluated != exact.Profiles || exact.Size == 0 || exact.Size == exact.Profiles || len(exact.Sample) != 5 {
		t.Fatalf("exact preview %+v", exact)
	}
	// The same rule as an audience: its size equals the exact preview.
	var seq uint64 = 1 << 20
	c := Control{Kind: ControlAudiencePut, Audience: audience.Definition{Name: "p", Rule: `count("Order Completed") >= 1`}}
	applyControlEntry(t, sm, s, &seq, &c)
	if n, _ := sm.AudienceSize(s, "p"); n != exact.Size {
		t.Fatalf("audience holds %d, exact preview said %d", n, exact.Size)
	}
	if bytesEqual(before, digest(t, s)) {
		t.Fatal("creating the audience changed nothing (the test proves nothing)")
	}
	sampled, err := sm.Preview(s, set, now, 5, 60)
	if err != nil {
		t.Fatal(err)
	}
	if sampled.Exact || sampled.Evaluated > 70 || sampled.Evaluated < 40 || sampled.Margin <= 0 {
		t.Fatalf("sampled preview %+v", sampled)
	}
	if d := sampled.Size - exact.Size; d > sampled.Margin || -d > sampled.Margin {
		t.Fatalf("estimate %d ± %d misses the exact size %d", sampled.Size, sampled.Margin, exact.Size)
	}
}

// TestPreviewStreamsLikeCollecting: the streaming preview gives exactly the
// result of the former one, which collected every profile id first and
// evaluated every k-th of each partition (the reference below), for exact
// and sampled previews and samples smaller and larger than the members.
func TestPreviewStreamsLikeCollecting(t *testing.T) {
	s := store.NewMem()
	sm := newSM()
	applyAll(t, sm, s, syntheticLog(t, 300, 900, 5))
	set, err := audience.Compile([]audience.Definition{{Name: "p", Rule: `count("Order Completed") >= 1`, Version: 1}})
	if err != nil {
		t.Fatal(err)
	}
	now, _ := LogClock(s)
	reference := func(sample, maxEval int) PreviewResult {
		var ids [][][]byte
		var total int64
		for _, p := range sm.partitions {
			var part [][]byte
			prefix := p.key([]byte("g/"))
			if err := s.Scan(prefix, store.PrefixEnd(prefix), false, func(k, _ []byte) bool {
				part = append(part, append([]byte(nil), k[len(prefix):]...))
				return true
			}); err != nil {
				t.Fatal(err)
			}
			ids = append(ids, part)
			total += int64(len(part))
		}
		stride := int64(1)
		if maxEval > 0 && total > int64(maxEval) {
			stride = (total + int64(maxEval) - 1) / int64(maxEval)
		}
		out := PreviewResult{Profiles: total, Exact: stride == 1}
		for i, part := range ids {
			var taken int
			for j := int64(0); j < int64(len(part)); j += stride {
				in, err := sm.partitions[i].previewOne(s, set, now, part[j])
				if err != nil {
					t.Fatal(err)
				}
				out.Evaluated++
				if in {
					out.Size++
					if taken < sample && len(out.Sample) < sample {
						out.Sample = append(out.Sample, part[j])
					}
					taken++
				}
			}
		}
		return out
	}
	for _, tc := range []struct{ sample, maxEval int }{{0, 0}, {5, 0}, {1000, 0}, {3, 50}, {7, 120}} {
		got, err := sm.Preview(s, set, now, tc.sample, tc.maxEval)
		if err != nil {
			t.Fatal(err)
		}
		want := reference(tc.sample, tc.maxEval)
		if got.Profiles != want.Profiles || got.Evaluated != want.Evaluated || got.Exact != want.Exact {
			t.Fatalf("%+v: got %+v, want %+v", tc, got, want)
		}
		if want.Exact && got.Size != want.Size {
			t.Fatalf("%+v: size %d, want %d", tc, got.Size, want.Size)
		}
		if len(got.Sample) != len(want.Sample) {
			t.Fatalf("%+v: sample of %d, want %d", tc, len(got.Sample), len(want.Sample))
		}
		for i := range got.Sample {
			if !bytesEqual(got.Sample[i], want.Sample[i]) {
				t.Fatalf("%+v: sample %d differs", tc, i)
			}
		}
	}
}
