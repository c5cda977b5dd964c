package propensity

import (
	"fmt"
	"math"
	"slices"
)

// BoostedOptions configure FitBoosted. Zero fields take their defaults.
type BoostedOptions struct {
	// Trees is the number of boosting rounds. Default 200.
	Trees int
	// Depth is the depth of each tree (2^Depth leaves at most). Default 3.
	Depth int
	// LearningRate shrinks each tree. Default 0.1.
	LearningRate float64
	// Bins is the number of histogram bins per feature, 2..256: split
	// thresholds are taken between quantiles of the training values.
	// Default 64.
	Bins int
	// L2 is the penalty on leaf values (λ in the leaf weight −G/(H+λ)).
	// Default 1.
	L2 float64
	// MinLeaf is the least number of rows in a leaf. Default 20.
	MinLeaf int
}

func (o *BoostedOptions) defaults() {
	if o.Trees == 0 {
		o.Trees = 200
	}
	if o.Depth == 0 {
		o.Depth = 3
	}
	if o.LearningRate == 0 {
		o.LearningRate = 0.1
	}
	if o.Bins == 0 {
		o.Bins = 64
	}
	if o.L2 == 0 {
		o.L2 = 1
	}
	if o.MinLeaf == 0 {
		o.MinLeaf = 20
	}
}

func (o *BoostedOptions) validate() error {
	switch {
	case o.Trees < 1 || o.Trees > 10000:
		return fmt.Errorf("propensity: boosted: trees %d must be in 1..10000", o.Trees)
	case o.Depth < 1 || o.Depth > 10:
		return fmt.Errorf("propensity: boosted: depth %d must be in 1..10", o.Depth)
	case o.Bins < 2 || o.Bins > 256:
		return fmt.Errorf("propensity: boosted: bins %d must be in 2..256", o.Bins)
	case !(o.LearningRate > 0 && o.LearningRate <= 1):
		return fmt.Errorf("propensity: boosted: learning rate %v must be in (0, 1]", o.LearningRate)
	case o.L2 < 0 || o.MinLeaf < 1:
		return fmt.Errorf("propensity: boosted: L2 %v must be >= 0 and min leaf %d >= 1", o.L2, o.MinLeaf)
	}
	return nil
}

// Node is a tree node: a split (Feature >= 0: x[Feature] <= Threshold goes to
// Left, else Right) or a leaf (Feature = -1, Value).
type Node struct {
	Feature     int
	Threshold   float64
	Left, Right int
	Value       float64
}

// Boosted is a fitted gradient-boosted tree ensemble for the log-odds:
// P(y) = σ(Base + Σ trees(x)).
type Boosted struct {
	Names []string
	Base  float64
	Trees [][]Node
}

// FitBoosted fits gradient-boosted regression trees to the logistic loss
// (Friedman 2001; second-order leaves as in XGBoost). Features are binned
// once into at most Bins quantile bins; each tree grows level by level to
// Depth, choosing at every node the split of greatest gain over all features
// and bin edges (ties: the lower feature, then the lower edge). There is no
// row or column sampling: the same data give the same trees. Work is
// O(Trees · Depth · rows · features).
func FitBoosted(d *Dataset, opt BoostedOptions) (*Boosted, error) {
	opt.defaults()
	if err := opt.validate(); err != nil {
		return nil, err
	}
	if err := d.Validate(); err != nil {
		return nil, err
	}
	n, p := len(d.X), len(d.Names)
	edges := make([][]float64, p)
	bins := make([][]uint8, p) // bins[j][i]: bin of row i for feature j
	col := make([]float64, n)
	for j := range p {
		for i, row := range d.X {
			col[i] = row[j]
		}
		edges[j] = binEdges(col, opt.Bins)
		bins[j] = make([]uint8, n)
		for i, v := range col {
			bins[j][i] = uint8(binOf(edges[j], v))
		}
	}
	pos := float64(d.Positives())
	if pos == 0 || pos == float64(n) {
		return nil, fmt.Errorf("propensity: boosted: labels are all %v", pos > 0)
	}
	m := &Boosted{Names: d.Names, Base: math.Log(pos / (float64(n) - pos))}
	f := make([]float64, n)
	for i := range f {
		f[i] = m.Base
	}
	g := make([]float64, n)
	h := make([]float64, n)
	b := &builder{opt: opt, bins: bins, edges: edges, g: g, h: h}
	for range opt.Trees {
		for i := range f {
			mu := sigmoid(f[i])
			g[i] = mu
			if d.Y[i] {
				g[i] = mu - 1
			}
			h[i] = math.Max(mu*(1-mu), 1e-12)
		}
		tree, leafOf := b.grow(n)
		for i := range f {
			f[i] += tree[leafOf[i]].Value
		}
		m.Trees = append(m.Trees, tree)
	}
	return m, nil
}

// binEdges returns the upper edges of at most maxBins bins of v: bin b holds
// the values in (edges[b-1], edges[b]]; the last bin is open above.
func binEdges(v []float64, maxBins int) []float64 {
	s := slices.Clone(v)
	slices.Sort(s)
	s = slices.Compact(s)
	if len(s) <= maxBins {
		return s[:len(s)-1] // a bin per distinct value
	}
	var edges []float64
	sorted := slices.Clone(v)
	slices.Sort(sorted)
	for b := 1; b < maxBins; b++ {
		e := sorted[b*len(sorted)/maxBins]
		if len(edges) == 0 || e > edges[len(edges)-1] {
			edges = append(edges, e)
		}
	}
	if len(edges) > 0 && edges[len(edges)-1] >= sorted[len(sorted)-1] {
		edges = edges[:len(edges)-1]
	}
	return edges
}

// binOf returns the bin of v: the first edge >= v, or len(edges).
func binOf(edges []float64, v float64) int {
	i, _ := slices.BinarySearch(edges, v)
	return i
}

type builder struct {
	opt   BoostedOptions
	bins  [][]uint8
	edges [][]float64
	g, h  []float64
}

type split struct {
	gain    float64
	feature int
	bin     int // rows with bin <= bin go left
}

// grow builds one tree over all rows and returns it with each row's leaf.
func (b *builder) grow(n int) ([]Node, []int) {
	leafOf := make([]int, n) // node index of each row
	tree := []Node{{Feature: -1}}
	frontier := []int{0}
	rows := map[int][]int{0: make([]int, n)}
	for i := range n {
		rows[0][i] = i
	}
	var gh [256][2]float64
	var cnt [256]int
	for depth := 0; depth < b.opt.Depth && len(frontier) > 0; depth++ {
		var next []int
		for _, ni := range frontier {
			r := rows[ni]
			delete(rows, ni)
			var G, H float64
			for _, i := range r {
				G += b.g[i]
				H += b.h[i]
			}
			tree[ni].Value = -G / (H + b.opt.L2) * b.opt.LearningRate
			best := split{feature: -1}
			parent := G * G / (H + b.opt.L2)
			for j, bj := range b.bins {
				nb := len(b.edges[j]) + 1
				if nb < 2 {
					continue
				}
				clear(gh[:nb])
				clear(cnt[:nb])
				for _, i := range r {
					k := bj[i]
					gh[k][0] += b.g[i]
					gh[k][1] += b.h[i]
					cnt[k]++
				}
				var gl, hl float64
				var cl int
				for k := 0; k < nb-1; k++ {
					gl, hl, cl = gl+gh[k][0], hl+gh[k][1], cl+cnt[k]
					if cl < b.opt.MinLeaf {
						continue
					}
					if len(r)-cl < b.opt.MinLeaf {
						break
					}
					gr, hr := G-gl, H-hl
					gain := gl*gl/(hl+b.opt.L2) + gr*gr/(hr+b.opt.L2) - parent
					if gain > best.gain+1e-12 {
						best = split{gain: gain, feature: j, bin: k}
					}
				}
			}
			if best.feature < 0 {
				for _, i := range r {
					leafOf[i] = ni
				}
				continue
			}
			left, right := len(tree), len(tree)+1
			tree[ni].Feature, tree[ni].Threshold = best.feature, b.edges[best.feature][best.bin]
			tree[ni].Left, tree[ni].Right = left, right
			tree = append(tree, Node{Feature: -1}, Node{Feature: -1})
			var rl, rr []int
			for _, i := range r {
				if int(b.bins[best.feature][i]) <= best.bin {
					rl = append(rl, i)
				} else {
					rr = append(rr, i)
				}
			}
			rows[left], rows[right] = rl, rr
			next = append(next, left, right)
		}
		frontier = next
	}
	for _, ni := range frontier { // leaves at full depth
		var G, H float64
		for _, i := range rows[ni] {
			G += b.g[i]
			H += b.h[i]
			leafOf[i] = ni
		}
		tree[ni].Value = -G / (H + b.opt.L2) * b.opt.LearningRate
	}
	return tree, leafOf
}

// Margin returns the log-odds of x.
func (m *Boosted) Margin(x []float64) float64 { return margin(m.Base, m.Trees, x) }

// Predict returns P(y = true | x); x has one value per feature (Names).
func (m *Boosted) Predict(x []float64) float64 { return sigmoid(m.Margin(x)) }
