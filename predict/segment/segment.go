package segment

import (
	"cmp"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"

	"github.com/aurumcdp/aurum/rules"
)

// Feature is one column of the rows.
type Feature struct {
	// Name is a short identifier, e.g. "orders".
	Name string
	// Expr is the rule expression whose value the column holds for a
	// profile, e.g. `count("Order Completed", "365d")` or
	// `days_since(last_seen)`: the membership rules compare it with
	// thresholds.
	Expr string
	// Label is the column in plain words, e.g. "orders".
	Label string
	// Log clusters on log(1 + x) (for skewed, non-negative columns such
	// as spend); descriptions and rules stay in the column's own units.
	Log bool
}

// Options configure Discover. Zero fields take their defaults.
type Options struct {
	// KMin and KMax bound the number of clusters tried. Defaults 2 and 8.
	KMin, KMax int
	// Seed seeds k-means++ and the silhouette sample.
	Seed uint64
	// Restarts is the number of k-means++ starts per k; the one of least
	// inertia is kept. Default 4.
	Restarts int
	// MaxIter bounds Lloyd's iterations per start. Default 100.
	MaxIter int
	// SilhouetteSample is the number of rows the silhouette is computed on
	// (it costs the square of it). Default 1000.
	SilhouetteSample int
	// MaxConditions bounds the conditions of a membership rule. Default 3.
	MaxConditions int
}

func (o *Options) defaults() error {
	if o.KMin == 0 {
		o.KMin = 2
	}
	if o.KMax == 0 {
		o.KMax = 8
	}
	if o.Restarts == 0 {
		o.Restarts = 4
	}
	if o.MaxIter == 0 {
		o.MaxIter = 100
	}
	if o.SilhouetteSample == 0 {
		o.SilhouetteSample = 1000
	}
	if o.MaxConditions == 0 {
		o.MaxConditions = 3
	}
	switch {
	case o.KMin < 2 || o.KMax < o.KMin || o.KMax > 50:
		return fmt.Errorf("segment: k range %d..%d must lie in 2..50", o.KMin, o.KMax)
	case o.Restarts < 1 || o.MaxIter < 1 || o.SilhouetteSample < 10 || o.MaxConditions < 1:
		return fmt.Errorf("segment: restarts %d, max iterations %d, silhouette sample %d and max conditions %d must be positive (sample >= 10)",
			o.Restarts, o.MaxIter, o.SilhouetteSample, o.MaxConditions)
	}
	return nil
}

// Cluster is one discovered segment.
type Cluster struct {
	// Size is the number of rows in it.
	Size int
	// Mean is the mean of its rows, per feature, in the features' units;
	// Z the centroid in standard deviations from the overall mean (on the
	// clustering scale: log(1 + x) for Log features).
	Mean, Z []float64
	// Description puts the centroid in plain words.
	Description string
	// Rule approximates membership in Aurum's rule language; Precision is
	// the share of the rows it selects that are in the cluster, Recall the
	// share of the cluster it selects.
	Rule              string
	Precision, Recall float64
}

// KScore is the mean silhouette of the clustering with K clusters.
type KScore struct {
	K          int
	Silhouette float64
}

// Result is the chosen clustering.
type Result struct {
	// K is the chosen number of clusters: the greatest mean silhouette
	// (ties: the smaller k).
	K int
	// Scores has the silhouette of every k tried.
	Scores []KScore
	// Clusters, largest first (ties: by mean of the first feature).
	Clusters []Cluster
	// Assign is each row's cluster (an index in Clusters).
	Assign []int
	// Overall is the mean of every row, per feature.
	Overall []float64
}

// Discover clusters rows (one value per feature each, finite) and describes
// the clusters. Memory and time grow with rows × features × k, and the
// silhouette with SilhouetteSample².
func Discover(rows [][]float64, feats []Feature, opt Options) (*Result, error) {
	if err := opt.defaults(); err != nil {
		return nil, err
	}
	if len(feats) == 0 {
		return nil, errors.New("segment: no features")
	}
	for i, f := range feats {
		if f.Name == "" || f.Expr == "" {
			return nil, fmt.Errorf("segment: feature %d: name and expr are required", i)
		}
		// A number: arithmetic on it type-checks.
		if _, err := rules.Compile("(" + f.Expr + ") + 0 >= 0"); err != nil {
			return nil, fmt.Errorf("segment: feature %q: expr %q is not a number expression: %w", f.Name, f.Expr, err)
		}
	}
	if len(rows) < opt.KMax*2 {
		return nil, fmt.Errorf("segment: %d rows: need at least %d (2 per cluster of k max %d)", len(rows), opt.KMax*2, opt.KMax)
	}
	d := len(feats)
	for i, r := range rows {
		if len(r) != d {
			return nil, fmt.Errorf("segment: row %d has %d values, want %d (features)", i, len(r), d)
		}
		for j, v := range r {
			if math.IsNaN(v) || math.IsInf(v, 0) || feats[j].Log && v < 0 {
				return nil, fmt.Errorf("segment: row %d, feature %q: value %v (finite, and >= 0 for a log feature)", i, feats[j].Name, v)
			}
		}
	}
	z := standardize(rows, feats)
	rng := rand.New(rand.NewPCG(opt.Seed, opt.Seed^0x2545f4914f6cdd1d))
	sample := silhouetteSample(len(rows), opt.SilhouetteSample, rng)
	res := &Result{}
	var best []int
	var bestCentres [][]float64
	bestScore := math.Inf(-1)
	for k := opt.KMin; k <= opt.KMax; k++ {
		assign, centres := kmeans(z, k, opt, rng)
		s := silhouette(z, assign, k, sample)
		res.Scores = append(res.Scores, KScore{k, s})
		if s > bestScore {
			bestScore, best, bestCentres, res.K = s, assign, centres, k
		}
	}
	res.Overall = mean(rows, nil, -1)
	if err := res.describe(rows, feats, best, bestCentres, opt); err != nil {
		return nil, err
	}
	return res, nil
}

// standardize maps each column to (x − mean)/sd, after log(1 + x) for Log
// features; a constant column maps to 0.
func standardize(rows [][]float64, feats []Feature) [][]float64 {
	d := len(feats)
	z := make([][]float64, len(rows))
	for i, r := range rows {
		z[i] = make([]float64, d)
		for j, v := range r {
			if feats[j].Log {
				v = math.Log1p(v)
			}
			z[i][j] = v
		}
	}
	n := float64(len(rows))
	for j := range d {
		var m, ss float64
		for _, r := range z {
			m += r[j]
		}
		m /= n
		for _, r := range z {
			ss += (r[j] - m) * (r[j] - m)
		}
		sd := math.Sqrt(ss / n)
		if sd == 0 {
			sd = 1
		}
		for _, r := range z {
			r[j] = (r[j] - m) / sd
		}
	}
	return z
}

func dist2(a, b []float64) float64 {
	var s float64
	for j := range a {
		d := a[j] - b[j]
		s += d * d
	}
	return s
}

// kmeans runs Restarts k-means++ starts of Lloyd's algorithm and keeps the
// one of least inertia.
func kmeans(z [][]float64, k int, opt Options, rng *rand.Rand) ([]int, [][]float64) {
	var bestAssign []int
	var bestCentres [][]float64
	bestInertia := math.Inf(1)
	for range opt.Restarts {
		centres := seedPlusPlus(z, k, rng)
		assign := make([]int, len(z))
		for i := range assign {
			assign[i] = -1
		}
		var inertia float64
		for it := 0; it < opt.MaxIter; it++ {
			changed := false
			inertia = 0
			for i, p := range z {
				c, dc := nearest(p, centres)
				inertia += dc
				if c != assign[i] {
					assign[i], changed = c, true
				}
			}
			if !changed {
				break
			}
			centres = centroids(z, assign, k, centres)
		}
		if inertia < bestInertia {
			bestInertia, bestAssign, bestCentres = inertia, assign, centres
		}
	}
	return bestAssign, bestCentres
}

// seedPlusPlus picks k centres: the first uniformly, each next one with
// probability proportional to its squared distance from the nearest chosen
// centre (Arthur & Vassilvitskii 2007).
func seedPlusPlus(z [][]float64, k int, rng *rand.Rand) [][]float64 {
	centres := [][]float64{slices.Clone(z[rng.IntN(len(z))])}
	d := make([]float64, len(z))
	for i, p := range z {
		d[i] = dist2(p, centres[0])
	}
	for len(centres) < k {
		var total float64
		for _, v := range d {
			total += v
		}
		pick := 0
		if total > 0 {
			u := rng.Float64() * total
			for i, v := range d {
				u -= v
				if u < 0 {
					pick = i
					break
				}
				pick = i
			}
		} else {
			pick = rng.IntN(len(z))
		}
		c := slices.Clone(z[pick])
		centres = append(centres, c)
		for i, p := range z {
			d[i] = min(d[i], dist2(p, c))
		}
	}
	return centres
}

// nearest returns the index of the nearest centre (ties: the lower index)
// and the squared distance to it.
func nearest(p []float64, centres [][]float64) (int, float64) {
	best, bd := 0, math.Inf(1)
	for c, m := range centres {
		if d := dist2(p, m); d < bd {
			best, bd = c, d
		}
	}
	return best, bd
}

// centroids returns the means of the clusters; an empty cluster keeps its
// previous centre.
func centroids(z [][]float64, assign []int, k int, prev [][]float64) [][]float64 {
	out := make([][]float64, k)
	n := make([]int, k)
	for c := range out {
		out[c] = make([]float64, len(z[0]))
	}
	for i, p := range z {
		c := assign[i]
		n[c]++
		for j, v := range p {
			out[c][j] += v
		}
	}
	for c := range out {
		if n[c] == 0 {
			out[c] = prev[c]
			continue
		}
		for j := range out[c] {
			out[c][j] /= float64(n[c])
		}
	}
	return out
}

// silhouetteSample draws the rows the silhouette is computed on: all of
// them when there are at most size.
func silhouetteSample(n, size int, rng *rand.Rand) []int {
	idx := make([]int, n)
	for i := range idx {
		idx[i] = i
	}
	if n <= size {
		return idx
	}
	rng.Shuffle(n, func(a, b int) { idx[a], idx[b] = idx[b], idx[a] })
	idx = idx[:size]
	slices.Sort(idx)
	return idx
}

// silhouette is the mean silhouette (Rousseeuw 1987) over the sample rows,
// distances among the sample: for a row, a = mean distance to its own
// cluster, b = least mean distance to another cluster, s = (b − a)/max(a, b)
// (0 for a row alone in its cluster).
func silhouette(z [][]float64, assign []int, k int, sample []int) float64 {
	var total float64
	sum := make([]float64, k)
	cnt := make([]int, k)
	for _, i := range sample {
		clear(sum)
		clear(cnt)
		for _, j := range sample {
			if i == j {
				continue
			}
			sum[assign[j]] += math.Sqrt(dist2(z[i], z[j]))
			cnt[assign[j]]++
		}
		own := assign[i]
		if cnt[own] == 0 {
			continue
		}
		a := sum[own] / float64(cnt[own])
		b := math.Inf(1)
		for c := range k {
			if c != own && cnt[c] > 0 {
				b = min(b, sum[c]/float64(cnt[c]))
			}
		}
		if math.IsInf(b, 1) {
			continue
		}
		if m := max(a, b); m > 0 {
			total += (b - a) / m
		}
	}
	return total / float64(len(sample))
}

// mean returns the mean of the rows of cluster c (all rows if c < 0).
func mean(rows [][]float64, assign []int, c int) []float64 {
	out := make([]float64, len(rows[0]))
	n := 0
	for i, r := range rows {
		if c >= 0 && assign[i] != c {
			continue
		}
		n++
		for j, v := range r {
			out[j] += v
		}
	}
	for j := range out {
		out[j] /= float64(max(n, 1))
	}
	return out
}

// describe fills the clusters: sizes, means, descriptions and rules, and
// renumbers them largest first.
func (res *Result) describe(rows [][]float64, feats []Feature, assign []int, centres [][]float64, opt Options) error {
	k := len(centres)
	size := make([]int, k)
	for _, c := range assign {
		size[c]++
	}
	means := make([][]float64, k)
	for c := range k {
		means[c] = mean(rows, assign, c)
	}
	order := make([]int, k)
	for c := range order {
		order[c] = c
	}
	slices.SortStableFunc(order, func(a, b int) int {
		if r := cmp.Compare(size[b], size[a]); r != 0 {
			return r
		}
		return cmp.Compare(means[a][0], means[b][0])
	})
	newIdx := make([]int, k)
	for i, c := range order {
		newIdx[c] = i
	}
	res.Assign = make([]int, len(assign))
	for i, c := range assign {
		res.Assign[i] = newIdx[c]
	}
	cands := candidates(rows, feats)
	for _, c := range order {
		cl := Cluster{Size: size[c], Mean: means[c], Z: centres[c]}
		cl.Description = describeCentre(feats, centres[c], means[c], res.Overall)
		in := make([]bool, len(rows))
		for i, a := range res.Assign {
			in[i] = a == newIdx[c]
		}
		conds := chooseRule(rows, in, cands, opt.MaxConditions)
		var err error
		if cl.Rule, cl.Precision, cl.Recall, err = ruleOf(rows, in, feats, conds); err != nil {
			return err
		}
		res.Clusters = append(res.Clusters, cl)
	}
	return nil
}

// describeCentre names the (up to three) features furthest from the
// overall mean, at least half a standard deviation away.
func describeCentre(feats []Feature, z, m, overall []float64) string {
	idx := make([]int, len(feats))
	for j := range idx {
		idx[j] = j
	}
	slices.SortStableFunc(idx, func(a, b int) int { return cmp.Compare(math.Abs(z[b]), math.Abs(z[a])) })
	var parts []string
	for _, j := range idx[:min(3, len(idx))] {
		if math.Abs(z[j]) < 0.5 {
			break
		}
		level := "high"
		switch {
		case z[j] <= -1:
			level = "very low"
		case z[j] < 0:
			level = "low"
		case z[j] >= 1:
			level = "very high"
		}
		parts = append(parts, fmt.Sprintf("%s %s (%s vs %s overall)", level, feats[j].Label, num(m[j]), num(overall[j])))
	}
	if len(parts) == 0 {
		return "close to the average on every feature"
	}
	return strings.Join(parts, ", ")
}

// num formats a value with 3 significant digits.
func num(v float64) string {
	return strconv.FormatFloat(roundSig(v), 'f', -1, 64)
}

// roundSig rounds to 3 significant digits.
func roundSig(v float64) float64 {
	if v == 0 || math.IsNaN(v) || math.IsInf(v, 0) {
		return v
	}
	p := math.Pow(10, 2-math.Floor(math.Log10(math.Abs(v))))
	return math.Round(v*p) / p
}

// RFM returns the default columns of customer segments: orders, spend
// (log), whole days since last seen, product views and cart adds in 30 days
// (log), and refunds, each with its rule expression.
func RFM() []Feature {
	return []Feature{
		{Name: "orders", Expr: `count("Order Completed")`, Label: "orders"},
		{Name: "spend", Expr: `sum("Order Completed", "revenue")`, Label: "spend", Log: true},
		{Name: "recency", Expr: `days_since(last_seen)`, Label: "days since last seen"},
		{Name: "views_30d", Expr: `count("Product Viewed", "30d")`, Label: "product views in 30 days", Log: true},
		{Name: "carts_30d", Expr: `count("Product Added", "30d")`, Label: "cart adds in 30 days", Log: true},
		{Name: "refunds", Expr: `count("Order Refunded")`, Label: "refunds"},
	}
}
