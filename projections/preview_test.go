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
