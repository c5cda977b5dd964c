package match

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"sort"
)

// ErrInvalidModel marks a model that fails Validate.
var ErrInvalidModel = errors.New("match: invalid model")

// Model is a trained Fellegi–Sunter model: per field, the m and u
// probability of each comparison level, and the prior probability that two
// records match. It has only exported fields, slices in a fixed order (fields
// by name, levels most similar first, term frequencies by value), so its
// msgpack and JSON encodings are deterministic.
type Model struct {
	// Version identifies the model: a hash of everything below.
	Version string `json:"version" msgpack:"version"`
	// Fields are sorted by name.
	Fields []FieldModel `json:"fields" msgpack:"fields"`
	// Prior is the probability that two records drawn at random match.
	Prior float64 `json:"prior" msgpack:"prior"`
	// Training statistics.
	Records      int     `json:"records" msgpack:"records"`
	BlockedPairs float64 `json:"blocked_pairs" msgpack:"blocked_pairs"` // candidate pairs, sampled blocks extrapolated
	RandomPairs  int     `json:"random_pairs" msgpack:"random_pairs"`
	Iterations   int     `json:"iterations" msgpack:"iterations"`
	Converged    bool    `json:"converged" msgpack:"converged"`
}

// FieldModel is one field's part of a Model.
type FieldModel struct {
	Field      string     `json:"field" msgpack:"field"`
	Comparison Comparison `json:"comparison" msgpack:"comparison"`
	// Levels follow Comparison.Levels().
	Levels []Level `json:"levels" msgpack:"levels"`
	// TermFreqs are the most common normalized values with their share of
	// the records that have a value (at most MaxTermFreqs, sorted by value);
	// empty unless the config asked for term frequencies and the comparison
	// is exact, name or text. TermFloor is the share used for a value not in
	// the list.
	TermFreqs []TermFreq `json:"term_freqs,omitempty" msgpack:"term_freqs,omitempty"`
	TermFloor float64    `json:"term_floor,omitempty" msgpack:"term_floor,omitempty"`
}

// Level is the m probability (among matches) and u probability (among
// non-matches) of one comparison level.
type Level struct {
	Name string  `json:"name" msgpack:"name"`
	M    float64 `json:"m" msgpack:"m"`
	U    float64 `json:"u" msgpack:"u"`
}

// TermFreq is a value's share of the records.
type TermFreq struct {
	Value string  `json:"value" msgpack:"value"`
	Freq  float64 `json:"freq" msgpack:"freq"`
}

// SwappedElsewhere is the level reported for the second field of a swapped
// pair of name fields: it contributes 0, the swap being counted under the
// first field (level "swapped").
const SwappedElsewhere = "swapped_counted_elsewhere"

// Contribution is what one field adds to a pair's match weight: the log2
// Bayes factor m/u of its comparison level (0 when a value is missing).
type Contribution struct {
	Field  string  `json:"field" msgpack:"field"`
	Level  string  `json:"level" msgpack:"level"`
	Weight float64 `json:"weight" msgpack:"weight"`
}

// Decision is the score of a pair: Weight is the match weight (log2 prior
// odds plus the contributions), Probability the match probability
// 2^Weight / (1 + 2^Weight). Contributions are sorted by field.
type Decision struct {
	Probability   float64        `json:"probability" msgpack:"probability"`
	Weight        float64        `json:"weight" msgpack:"weight"`
	Contributions []Contribution `json:"contributions" msgpack:"contributions"`
}

// PriorWeight is log2 of the prior odds of a match.
func (m *Model) PriorWeight() float64 {
	return math.Log2(m.Prior / (1 - m.Prior))
}

// Score compares a and b on every field that both the model and c have
// (with the same comparison) and returns the decision. It is deterministic
// and does not modify m.
func (m *Model) Score(c Config, a, b Record) Decision {
	d := Decision{Weight: m.PriorWeight()}
	const stack = 16
	var kindsBuf [stack]Comparison
	var vaBuf, vbBuf [stack]string
	var idxBuf, lvsBuf [stack]int
	kinds, va, vb, idx := kindsBuf[:0], vaBuf[:0], vbBuf[:0], idxBuf[:0]
	for i := range m.Fields {
		f := &m.Fields[i]
		if k, ok := c.Fields[f.Field]; !ok || k != f.Comparison {
			continue
		}
		kinds = append(kinds, f.Comparison)
		va = append(va, Normalize(f.Comparison, a[f.Field]))
		vb = append(vb, Normalize(f.Comparison, b[f.Field]))
		idx = append(idx, i)
	}
	lvs := lvsBuf[:0]
	if len(kinds) > stack {
		lvs = make([]int, len(kinds))
	} else {
		lvs = lvsBuf[:len(kinds)]
	}
	levels(kinds, va, vb, lvs)
	d.Contributions = make([]Contribution, 0, len(idx))
	for n, i := range idx {
		f := &m.Fields[i]
		ct := Contribution{Field: f.Field, Level: Missing}
		if lvs[n] == countedElsewhere {
			ct.Level = SwappedElsewhere
		}
		if lv := lvs[n]; lv >= 0 && lv < len(f.Levels) {
			ct.Level = f.Levels[lv].Name
			ct.Weight = f.weight(lv, va[n], c.TermFrequency)
		}
		d.Weight += ct.Weight
		d.Contributions = append(d.Contributions, ct)
	}
	d.Probability = probability(d.Weight)
	return d
}

// weight is the log2 Bayes factor of level lv; an exact agreement on value v
// is adjusted by v's term frequency when tf is set and the model has them.
func (f *FieldModel) weight(lv int, v string, tf bool) float64 {
	l := f.Levels[lv]
	u := l.U
	if tf && lv == 0 && len(f.TermFreqs) > 0 {
		u = f.TermFloor
		i := sort.Search(len(f.TermFreqs), func(i int) bool { return f.TermFreqs[i].Value >= v })
		if i < len(f.TermFreqs) && f.TermFreqs[i].Value == v {
			u = f.TermFreqs[i].Freq
		}
		u = max(u, minProb)
	}
	return math.Log2(l.M / u)
}

// probability maps a match weight to a probability.
func probability(w float64) float64 {
	if math.IsNaN(w) {
		return 0
	}
	return 1 / (1 + math.Exp2(-w))
}

// seal sets m.Version from the content of m.
func (m *Model) seal() {
	h := sha256.New()
	var buf [8]byte
	num := func(f float64) {
		binary.BigEndian.PutUint64(buf[:], math.Float64bits(f))
		h.Write(buf[:])
	}
	str := func(s string) {
		num(float64(len(s)))
		h.Write([]byte(s))
	}
	num(m.Prior)
	num(float64(m.Records))
	num(m.BlockedPairs)
	num(float64(m.RandomPairs))
	num(float64(m.Iterations))
	for _, f := range m.Fields {
		str(f.Field)
		str(string(f.Comparison))
		for _, l := range f.Levels {
			str(l.Name)
			num(l.M)
			num(l.U)
		}
		num(f.TermFloor)
		for _, t := range f.TermFreqs {
			str(t.Value)
			num(t.Freq)
		}
	}
	m.Version = "fs1-" + hex.EncodeToString(h.Sum(nil)[:8])
}

// Validate checks a model from outside (decoded from the log, say): fields
// sorted and known, the levels of each comparison in order, every
// probability in (0, 1], the prior in (0, 1), term frequencies sorted by
// value. Errors wrap ErrInvalidModel. Score on a model that passes never
// returns NaN.
func (m *Model) Validate() error {
	bad := func(format string, a ...any) error {
		return fmt.Errorf("%w: %s", ErrInvalidModel, fmt.Sprintf(format, a...))
	}
	if !(m.Prior > 0 && m.Prior < 1) {
		return bad("prior %v is not in (0, 1)", m.Prior)
	}
	for i, f := range m.Fields {
		if i > 0 && m.Fields[i-1].Field >= f.Field {
			return bad("fields[%d]: %q not sorted after %q", i, f.Field, m.Fields[i-1].Field)
		}
		if err := checkTrait(f.Field); err != nil {
			return bad("fields[%d]: %v", i, err)
		}
		names, ok := levelNames[f.Comparison]
		if !ok {
			return bad("fields[%d] (%s): unknown comparison %q", i, f.Field, f.Comparison)
		}
		if len(f.Levels) != len(names) {
			return bad("fields[%d] (%s): %d levels, %s has %d", i, f.Field, len(f.Levels), f.Comparison, len(names))
		}
		for j, l := range f.Levels {
			if l.Name != names[j] {
				return bad("fields[%d] (%s): level %d is %q, want %q", i, f.Field, j, l.Name, names[j])
			}
			if !(l.M > 0 && l.M <= 1) || !(l.U > 0 && l.U <= 1) {
				return bad("fields[%d] (%s): level %s: m %v, u %v not in (0, 1]", i, f.Field, l.Name, l.M, l.U)
			}
		}
		for j, t := range f.TermFreqs {
			if j > 0 && f.TermFreqs[j-1].Value >= t.Value {
				return bad("fields[%d] (%s): term_freqs[%d] not sorted", i, f.Field, j)
			}
			if !(t.Freq > 0 && t.Freq <= 1) {
				return bad("fields[%d] (%s): term_freqs[%d]: %v not in (0, 1]", i, f.Field, j, t.Freq)
			}
		}
		if len(f.TermFreqs) > 0 && !(f.TermFloor > 0 && f.TermFloor <= 1) {
			return bad("fields[%d] (%s): term_floor %v not in (0, 1]", i, f.Field, f.TermFloor)
		}
	}
	return nil
}
