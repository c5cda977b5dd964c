package propensity

import (
	"bytes"
	"encoding/binary"
	"math"
	"reflect"
	"strings"
	"testing"
)

// fittedForest is a small fitted forest (the xor data, 20 trees) and the
// model it came from.
func fittedForest(t testing.TB) (*Boosted, *Forest, *Dataset) {
	t.Helper()
	d := synthetic(600, []float64{0, 0, 0}, 0, true, 21)
	gb, err := FitBoosted(d, BoostedOptions{Trees: 20})
	if err != nil {
		t.Fatal(err)
	}
	f, err := gb.Forest()
	if err != nil {
		t.Fatal(err)
	}
	return gb, f, d
}

// TestModelForestRoundTrip: a fitted model's forest scores every row bit for
// bit as the model does, and its binary form decodes to the same trees,
// which encode to the same bytes and score alike.
func TestModelForestRoundTrip(t *testing.T) {
	gb, f, d := fittedForest(t)
	b, err := f.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	var g Forest
	if err := g.UnmarshalBinary(b); err != nil {
		t.Fatal(err)
	}
	if g.Features != 3 || g.Base != gb.Base || !reflect.DeepEqual(g.Trees, f.Trees) || !g.checked {
		t.Fatalf("decoded forest differs: %d features, base %v (want %v)", g.Features, g.Base, gb.Base)
	}
	b2, err := g.MarshalBinary()
	if err != nil || !bytes.Equal(b, b2) {
		t.Fatalf("re-encoded: %v, equal bytes %v", err, bytes.Equal(b, b2))
	}
	for i, x := range d.X {
		if p, q, r := gb.Predict(x), f.Predict(x), g.Predict(x); p != q || p != r {
			t.Fatalf("row %d: model %v, forest %v, decoded %v", i, p, q, r)
		}
	}
	if g.Depth() != 3 || g.Nodes() != f.Nodes() || len(b) > 12*g.Nodes()+16 {
		t.Errorf("depth %d, %d nodes in %d bytes", g.Depth(), g.Nodes(), len(b))
	}
	t.Logf("%d trees, %d nodes: %d bytes", len(g.Trees), g.Nodes(), len(b))
}

// TestModelForestBounds: a forest out of its bounds, or bytes that are not
// one, are refused with the reason, by Validate and by the decoder.
func TestModelForestBounds(t *testing.T) {
	_, f, _ := fittedForest(t)
	good, err := f.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	edit := func(fn func(f *Forest)) *Forest {
		c := &Forest{Features: f.Features, Base: f.Base}
		for _, tr := range f.Trees {
			c.Trees = append(c.Trees, append([]Node(nil), tr...))
		}
		fn(c)
		return c
	}
	// chain is a tree of the given depth: a split per level, a leaf on
	// the left of each.
	chain := func(depth int) []Node {
		tr := make([]Node, 2*depth+1)
		for k := range depth {
			tr[2*k] = Node{Feature: 0, Left: 2*k + 1, Right: 2*k + 2}
			tr[2*k+1] = Node{Feature: -1, Value: 0.1}
		}
		tr[2*depth] = Node{Feature: -1, Value: 0.2}
		return tr
	}
	for _, tc := range []struct {
		name   string
		forest *Forest
		want   string
	}{
		{"too many trees", edit(func(f *Forest) {
			for len(f.Trees) <= MaxForestTrees {
				f.Trees = append(f.Trees, []Node{{Feature: -1}})
			}
		}), "501 trees"},
		{"too deep", edit(func(f *Forest) { f.Trees[0] = chain(MaxForestDepth + 1) }), "deeper than 6"},
		{"feature", edit(func(f *Forest) { f.Trees[0][0].Feature = 3 }), "feature 3"},
		{"two parents", edit(func(f *Forest) { f.Trees[0][0].Right = f.Trees[0][0].Left }), "two nodes after it"},
		{"cycle", edit(func(f *Forest) { f.Trees[0][0].Left = 0 }), "children 0"},
		{"orphan", edit(func(f *Forest) { f.Trees[0] = append(f.Trees[0], Node{Feature: -1}) }), "0 parents"},
		{"leaf value", edit(func(f *Forest) { f.Trees[1][len(f.Trees[1])-1].Value = 2e6 }), "within ±"},
		{"nan threshold", edit(func(f *Forest) { f.Trees[0][0].Threshold = math.NaN() }), "threshold NaN"},
		{"base", edit(func(f *Forest) { f.Base = math.Inf(-1) }), "base -Inf"},
		{"no features", edit(func(f *Forest) { f.Features = 0 }), "0 features"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := tc.forest.Validate(); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Validate: %v, want %q", err, tc.want)
			}
			if _, err := tc.forest.MarshalBinary(); err == nil {
				t.Fatal("encoded an invalid forest")
			}
		})
	}
	if err := edit(func(f *Forest) { f.Trees[0] = chain(MaxForestDepth) }).Validate(); err != nil {
		t.Fatalf("a tree of the greatest depth: %v", err)
	}

	overlong := append([]byte{forestVersion, 0x83, 0x00}, good[2:]...) // features 3 as two bytes
	for _, tc := range []struct {
		name string
		b    []byte
		want string
	}{
		{"empty", nil, "truncated"},
		{"version", append([]byte{2}, good[1:]...), "version 2"},
		{"truncated", good[:len(good)-1], "truncated"},
		{"trailing", append(append([]byte(nil), good...), 0), "1 bytes after"},
		{"overlong varint", overlong, "not minimal"},
		{"trees over the bound", binary.AppendUvarint(append([]byte(nil), good[:10]...), 1<<40), "over the bound"},
		{"huge count", append(append([]byte(nil), good[:10]...), 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01), "varint"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var g Forest
			if err := g.UnmarshalBinary(tc.b); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("decode: %v, want %q", err, tc.want)
			}
			if g.Trees != nil || g.checked {
				t.Fatal("a failed decode changed the forest")
			}
		})
	}
}

// FuzzModelForest: any bytes either fail to decode or decode to a forest
// within its bounds that encodes to the same bytes and scores a row of
// its width to a probability.
func FuzzModelForest(f *testing.F) {
	_, forest, _ := fittedForest(f)
	good, err := forest.MarshalBinary()
	if err != nil {
		f.Fatal(err)
	}
	f.Add(good)
	f.Add(good[:len(good)/2])
	f.Add([]byte{forestVersion, 1, 0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0})
	f.Add([]byte{forestVersion, 1, 0, 0, 0, 0, 0, 0, 0, 0, 1, 3, 1, 0, 0, 0, 0, 0, 0, 0, 0, 1, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		var g Forest
		if err := g.UnmarshalBinary(b); err != nil {
			return
		}
		g.checked = false
		if err := g.Validate(); err != nil {
			t.Fatalf("decoded an invalid forest: %v", err)
		}
		if len(g.Trees) > MaxForestTrees || g.Depth() > MaxForestDepth {
			t.Fatalf("%d trees of depth %d", len(g.Trees), g.Depth())
		}
		out, err := g.MarshalBinary()
		if err != nil || !bytes.Equal(out, b) {
			t.Fatalf("re-encoded: %v, equal %v", err, bytes.Equal(out, b))
		}
		if p := g.Predict(make([]float64, g.Features)); !(p >= 0 && p <= 1) {
			t.Fatalf("score %v", p)
		}
	})
}
