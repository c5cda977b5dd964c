package match

import (
	"math/rand/v2"
	"slices"
)

// prepared holds the records' normalized values and blocking keys.
type prepared struct {
	fields []string     // sorted
	kinds  []Comparison // by field
	values [][]string   // [record][field] normalized, "" missing
	keys   [][]string   // [record][rule] blocking key, "" when the rule does not apply
	rules  int
}

func prepare(c Config, recs []Record) *prepared {
	p := &prepared{fields: sortedFields(c.Fields), rules: len(c.Blocking)}
	for _, f := range p.fields {
		p.kinds = append(p.kinds, c.Fields[f])
	}
	p.values = make([][]string, len(recs))
	for i, r := range recs {
		row := make([]string, len(p.fields))
		for f, name := range p.fields {
			row[f] = Normalize(p.kinds[f], r[name])
		}
		p.values[i] = row
	}
	p.keys = make([][]string, len(recs))
	for i, r := range recs {
		p.keys[i] = ruleKeys(c, r)
	}
	return p
}

// ruleKeys returns the key of each rule for r ("" when it does not apply).
func ruleKeys(c Config, r Record) []string {
	out := make([]string, len(c.Blocking))
	for i, rule := range c.Blocking {
		ks := BlockKeys(Config{Fields: c.Fields, Blocking: [][]string{rule}}, r)
		if len(ks) == 1 {
			out[i] = ks[0]
		}
	}
	return out
}

// levels sets out to the levels of the pair (i, j).
func (p *prepared) levels(i, j int, out []int) {
	levels(p.kinds, p.values[i], p.values[j], out)
}

// column returns the values of field f.
func (p *prepared) column(f int) []string {
	out := make([]string, len(p.values))
	for i, row := range p.values {
		out[i] = row[f]
	}
	return out
}

func (p *prepared) pattern(i, j int, buf []int) []byte {
	p.levels(i, j, buf)
	out := make([]byte, len(p.fields))
	for f, lv := range buf {
		if lv < 0 {
			out[f] = missingLevel
		} else {
			out[f] = byte(lv)
		}
	}
	return out
}

// sharedBefore reports whether records i and j share the key of a rule
// before rule r (so the pair was counted under that rule already).
func (p *prepared) sharedBefore(i, j, r int) bool {
	for q := 0; q < r; q++ {
		if k := p.keys[i][q]; k != "" && k == p.keys[j][q] {
			return true
		}
	}
	return false
}

// blocks returns, for rule r, the record indexes of each block (blocks of
// one record dropped) in key order.
func (p *prepared) blocks(r int) [][]int {
	byKey := map[string][]int{}
	for i := range p.keys {
		if k := p.keys[i][r]; k != "" {
			byKey[k] = append(byKey[k], i)
		}
	}
	keys := make([]string, 0, len(byKey))
	for k, ids := range byKey {
		if len(ids) > 1 {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	out := make([][]int, len(keys))
	for i, k := range keys {
		out[i] = byKey[k]
	}
	return out
}

// candidates calls fn for the candidate pairs under the caps of o: every
// pair of each rule's blocks, r the rule, first whether r is the first rule
// that finds the pair, w the number of pairs it stands for (1, or more in a
// sampled block).
func (p *prepared) candidates(o TrainOptions, rng *rand.Rand, fn func(i, j, r int, first bool, w float64)) {
	emitted := 0
	for r := 0; r < p.rules; r++ {
		for _, ids := range p.blocks(r) {
			if emitted >= o.MaxBlockedPairs {
				return
			}
			s := len(ids)
			total := s * (s - 1) / 2
			if total <= o.MaxPairsPerBlock {
				for a := 0; a < s; a++ {
					for b := a + 1; b < s; b++ {
						fn(ids[a], ids[b], r, !p.sharedBefore(ids[a], ids[b], r), 1)
					}
				}
				emitted += total
				continue
			}
			w := float64(total) / float64(o.MaxPairsPerBlock)
			for range o.MaxPairsPerBlock {
				a, b := rng.IntN(s), rng.IntN(s-1)
				if b >= a {
					b++
				}
				fn(ids[a], ids[b], r, !p.sharedBefore(ids[a], ids[b], r), w)
			}
			emitted += o.MaxPairsPerBlock
		}
	}
}

// Candidates calls fn(i, j), i < j, once for every pair of recs that share
// a blocking key under c, in a deterministic order (rules in order, blocks
// in key order). Blocks holding more than maxBlock records are skipped
// (maxBlock ≤ 0: no limit), which bounds the work at maxBlock² per block.
func Candidates(c Config, recs []Record, maxBlock int, fn func(i, j int)) {
	p := &prepared{rules: len(c.Blocking), keys: make([][]string, len(recs))}
	for i, r := range recs {
		p.keys[i] = ruleKeys(c, r)
	}
	for r := 0; r < p.rules; r++ {
		for _, ids := range p.blocks(r) {
			if maxBlock > 0 && len(ids) > maxBlock {
				continue
			}
			for a := 0; a < len(ids); a++ {
				for b := a + 1; b < len(ids); b++ {
					if !p.sharedBefore(ids[a], ids[b], r) {
						fn(min(ids[a], ids[b]), max(ids[a], ids[b]))
					}
				}
			}
		}
	}
}
