package propensity

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
)

// Bounds of a Forest (what a model record keeps): at most MaxForestTrees
// trees of depth at most MaxForestDepth (2^(depth+1) − 1 nodes), every
// leaf value and the base within ±MaxForestLogOdds (so no sum of them
// overflows). The encoded form takes at most 12 bytes a node (a split:
// feature, threshold, children; a leaf: 9): 500 trees of depth 6 are
// under 0.7 MB, 100 of depth 3 under 15 KB.
const (
	MaxForestTrees   = 500
	MaxForestDepth   = 6
	MaxForestLogOdds = 1e6
	maxForestNodes   = 1<<(MaxForestDepth+1) - 1

	// forestVersion leads the binary form.
	forestVersion = 1
)

// Forest is the part of a fitted Boosted model that scores, as a model
// record keeps it: the number of features a row has, the base log-odds
// and the trees (no names: the record's columns name them). Its binary
// form (MarshalBinary) is compact and bounded, and UnmarshalBinary checks
// everything Validate does, so a record read from outside (a log entry)
// never scores out of bounds.
//
// Internal nodes keep no value (Value 0): only leaves score.
type Forest struct {
	Features int
	Base     float64
	Trees    [][]Node

	// checked is set by UnmarshalBinary once the decoded forest passed
	// Validate: Validate is then O(1) (the scorers validate the record
	// at every score). Fields changed after a decode void the contract.
	checked bool
}

// Forest returns the model's forest for a record: its trees copied with
// the internal nodes' values cleared. It fails when the model exceeds the
// Forest's bounds (trees, depth, leaf values).
func (m *Boosted) Forest() (*Forest, error) {
	f := &Forest{Features: len(m.Names), Base: m.Base, Trees: make([][]Node, len(m.Trees))}
	for t, tree := range m.Trees {
		nodes := make([]Node, len(tree))
		for k, n := range tree {
			if n.Feature >= 0 {
				n.Value = 0
			}
			nodes[k] = n
		}
		f.Trees[t] = nodes
	}
	if err := f.Validate(); err != nil {
		return nil, err
	}
	return f, nil
}

// Validate checks a forest before it scores: 1..MaxFeatures features,
// 1..MaxForestTrees trees, each a proper binary tree (every node but the
// root the child of exactly one node before it, so a walk ends) of depth
// at most MaxForestDepth, splits on features in range with finite
// thresholds, leaves (and the base) finite within ±MaxForestLogOdds, and
// internal nodes without a value (the one encoding of a forest).
func (f *Forest) Validate() error {
	if f.checked {
		return nil
	}
	switch {
	case f.Features < 1 || f.Features > MaxFeatures:
		return fmt.Errorf("propensity: forest: %d features, want 1..%d", f.Features, MaxFeatures)
	case len(f.Trees) < 1 || len(f.Trees) > MaxForestTrees:
		return fmt.Errorf("propensity: forest: %d trees, want 1..%d", len(f.Trees), MaxForestTrees)
	case !logOdds(f.Base):
		return fmt.Errorf("propensity: forest: base %v, want finite within ±%g", f.Base, MaxForestLogOdds)
	}
	var depth [maxForestNodes]uint8
	var parents [maxForestNodes]uint8
	for t, tree := range f.Trees {
		if len(tree) < 1 || len(tree) > maxForestNodes {
			return fmt.Errorf("propensity: forest: tree %d has %d nodes, want 1..%d", t, len(tree), maxForestNodes)
		}
		clear(depth[:len(tree)])
		clear(parents[:len(tree)])
		for k, n := range tree {
			if k > 0 && parents[k] != 1 {
				return fmt.Errorf("propensity: forest: tree %d, node %d has %d parents, want 1", t, k, parents[k])
			}
			if n.Feature == -1 {
				if !logOdds(n.Value) || n.Left != 0 || n.Right != 0 || n.Threshold != 0 {
					return fmt.Errorf("propensity: forest: tree %d, leaf %d: value %v (finite within ±%g), no children or threshold", t, k, n.Value, MaxForestLogOdds)
				}
				continue
			}
			switch {
			case n.Feature < 0 || n.Feature >= f.Features:
				return fmt.Errorf("propensity: forest: tree %d, node %d: feature %d, want -1 (leaf) or 0..%d", t, k, n.Feature, f.Features-1)
			case n.Left <= k || n.Right <= k || n.Left >= len(tree) || n.Right >= len(tree) || n.Left == n.Right:
				return fmt.Errorf("propensity: forest: tree %d, node %d: children %d and %d must be two nodes after it, below %d", t, k, n.Left, n.Right, len(tree))
			case !finite(n.Threshold) || n.Value != 0:
				return fmt.Errorf("propensity: forest: tree %d, node %d: threshold %v (finite), value %v (0 at a split)", t, k, n.Threshold, n.Value)
			case depth[k] >= MaxForestDepth:
				return fmt.Errorf("propensity: forest: tree %d deeper than %d", t, MaxForestDepth)
			}
			for _, c := range []int{n.Left, n.Right} {
				depth[c], parents[c] = depth[k]+1, parents[c]+1
			}
		}
	}
	return nil
}

func logOdds(v float64) bool { return finite(v) && math.Abs(v) <= MaxForestLogOdds }

// Margin returns the log-odds of x, which has Features values.
func (f *Forest) Margin(x []float64) float64 { return margin(f.Base, f.Trees, x) }

// Predict returns P(y = true | x); x has Features values.
func (f *Forest) Predict(x []float64) float64 { return sigmoid(f.Margin(x)) }

// Nodes counts the nodes of all trees.
func (f *Forest) Nodes() int {
	n := 0
	for _, t := range f.Trees {
		n += len(t)
	}
	return n
}

// Depth is the depth of the deepest tree (0: every tree a single leaf).
func (f *Forest) Depth() int {
	var most int
	for _, tree := range f.Trees {
		depth := make([]int, len(tree))
		for k, n := range tree {
			if n.Feature >= 0 && n.Left < len(tree) && n.Right < len(tree) {
				depth[n.Left], depth[n.Right] = depth[k]+1, depth[k]+1
				most = max(most, depth[k]+1)
			}
		}
	}
	return most
}

// margin is the log-odds of x under base and trees: a walk from each root.
func margin(base float64, trees [][]Node, x []float64) float64 {
	f := base
	for _, t := range trees {
		k := 0
		for t[k].Feature >= 0 {
			if x[t[k].Feature] <= t[k].Threshold {
				k = t[k].Left
			} else {
				k = t[k].Right
			}
		}
		f += t[k].Value
	}
	return f
}

// MarshalBinary encodes a valid forest, version 1, all integers unsigned
// varints and all floats IEEE 754 bits little-endian:
//
//	version (1 byte) | features | base (8) | trees |
//	per tree: nodes | per node: 0 and value (8) for a leaf,
//	                            feature+1, threshold (8), left, right for a split
func (f *Forest) MarshalBinary() ([]byte, error) {
	if err := f.Validate(); err != nil {
		return nil, err
	}
	b := make([]byte, 0, 16+12*f.Nodes())
	b = append(b, forestVersion)
	b = binary.AppendUvarint(b, uint64(f.Features))
	b = binary.LittleEndian.AppendUint64(b, math.Float64bits(f.Base))
	b = binary.AppendUvarint(b, uint64(len(f.Trees)))
	for _, tree := range f.Trees {
		b = binary.AppendUvarint(b, uint64(len(tree)))
		for _, n := range tree {
			if n.Feature < 0 {
				b = append(b, 0)
				b = binary.LittleEndian.AppendUint64(b, math.Float64bits(n.Value))
				continue
			}
			b = binary.AppendUvarint(b, uint64(n.Feature)+1)
			b = binary.LittleEndian.AppendUint64(b, math.Float64bits(n.Threshold))
			b = binary.AppendUvarint(b, uint64(n.Left))
			b = binary.AppendUvarint(b, uint64(n.Right))
		}
	}
	return b, nil
}

// errForest marks a binary forest that does not decode.
var errForest = errors.New("propensity: forest: bad encoding")

// UnmarshalBinary decodes MarshalBinary's form and validates it. Counts
// are checked against the bounds before anything is allocated, varints
// must be minimal and no byte may follow the last tree: a forest has one
// encoding, so a decoded forest encodes to the same bytes.
func (f *Forest) UnmarshalBinary(data []byte) error {
	d := forestDecoder{b: data}
	if v := d.u8(); d.err != nil {
		return d.err
	} else if v != forestVersion {
		return fmt.Errorf("%w: version %d, want %d", errForest, v, forestVersion)
	}
	out := Forest{Features: d.count(MaxFeatures), Base: d.float()}
	trees := d.count(MaxForestTrees)
	if d.err != nil {
		return d.err
	}
	out.Trees = make([][]Node, 0, trees)
	for range trees {
		n := d.count(maxForestNodes)
		if d.err != nil {
			return d.err
		}
		tree := make([]Node, n)
		for k := range tree {
			feat := d.count(MaxFeatures)
			if feat == 0 {
				tree[k] = Node{Feature: -1, Value: d.float()}
				continue
			}
			tree[k] = Node{Feature: feat - 1, Threshold: d.float(), Left: d.count(maxForestNodes), Right: d.count(maxForestNodes)}
		}
		if d.err != nil {
			return d.err
		}
		out.Trees = append(out.Trees, tree)
	}
	if d.err == nil && len(d.b) > 0 {
		d.err = fmt.Errorf("%w: %d bytes after the last tree", errForest, len(d.b))
	}
	if d.err != nil {
		return d.err
	}
	if err := out.Validate(); err != nil {
		return err
	}
	out.checked = true
	*f = out
	return nil
}

// forestDecoder reads the binary form; the first error sticks.
type forestDecoder struct {
	b   []byte
	err error
}

func (d *forestDecoder) u8() uint8 {
	if d.err != nil || len(d.b) < 1 {
		d.fail("truncated")
		return 0
	}
	v := d.b[0]
	d.b = d.b[1:]
	return v
}

// count reads a minimal uvarint in 0..limit.
func (d *forestDecoder) count(limit int) int {
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.b)
	switch {
	case n <= 0:
		d.fail("truncated or overlong varint")
		return 0
	case n != len(binary.AppendUvarint(nil, v)):
		d.fail("varint not minimal")
		return 0
	case v > uint64(limit):
		d.fail(fmt.Sprintf("count %d over the bound %d", v, limit))
		return 0
	}
	d.b = d.b[n:]
	return int(v)
}

func (d *forestDecoder) float() float64 {
	if d.err != nil || len(d.b) < 8 {
		d.fail("truncated")
		return 0
	}
	v := math.Float64frombits(binary.LittleEndian.Uint64(d.b))
	d.b = d.b[8:]
	return v
}

func (d *forestDecoder) fail(why string) {
	if d.err == nil {
		d.err = fmt.Errorf("%w: %s", errForest, why)
	}
}
