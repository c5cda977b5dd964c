package features

import (
	"encoding/binary"
	"encoding/hex"
	"errors"
	"math"
	"strings"

	"github.com/aurumcdp/aurum/internal/wire"
)

// The stored form of a Features (inside the stored GCR, gcr/codec.go).
//
// Version 3 (written since session 10), hand-written, deterministic (scores
// in key order):
//
//	features = 0x03 days(purchase) varint(FoldedPurchaseDays) varint(FoldedOrders) varint(FoldedMicros)
//	           days(active) varint(FoldedActiveDays) scores(Events) scores(Categories) scores(Products)
//	purchase = uvarint(Orders) varint(Micros)
//	days(v)  = uvarint(n) [varint(first day) v (uvarint(day − previous day − 1) v)*]
//	active   = (nothing)
//	scores   = uvarint(n) [varint(latest) (key uvarint((latest − AsOf)·2 + c) value)*]
//	key      = 0x00 8 bytes            a key of 16 lowercase hex digits (the GCR's keyed
//	                                   hash, engine.InteractionKey): those digits' bytes
//	         | uvarint(len ≥ 1) bytes  any other key
//	value    = byte(n)                 c = 1: Short = Long = n, an integer 0..255
//	         | f64(Short) f64(Long)    c = 0: any other pair
//
// latest is the greatest AsOf of the section (one delta is 0), keys are
// strictly increasing (as strings), a key of 16 lowercase hex digits
// always takes the short form and a pair of equal integers 0..255 the
// one-byte form (one encoding per row). A key seen at one instant only (a
// product viewed once: both scores are its weight, 1, 3 or 5) takes
// 11–15 bytes instead of 26–30.
//
// Versions 1 (sessions 5–8) and 2 (session 9) are read still (stored state
// keeps loading) and re-encoded as version 3 by the next write of the
// profile. Version 2 is version 3 but for the scores:
//
//	scores(v2) = uvarint(n) [varint(latest) (key f64(Short) f64(Long) uvarint(latest − AsOf))*]
//
// and version 1 is version 2 but for the scores:
//
//	scores(v1) = uvarint(n) (str(key) f64(Short) f64(Long) varint(AsOf))*
//
// Decode refuses other versions, trailing bytes, more days or keys than
// the caps, keys longer than MaxKeyLen, days out of order, negative counts,
// scores that are negative or not finite, and the long form of a key or
// a pair that has a short one.
const (
	v1 byte = 0x01
	v2 byte = 0x02
	v3 byte = 0x03
)

// ErrCorrupt marks an encoding that does not decode.
var ErrCorrupt = errors.New("features: corrupt")

const (
	minDaySize    = 2             // uvarint delta or orders, varint micros
	minActiveSize = 1             // uvarint delta
	minScoreSize  = 1 + 8 + 8 + 1 // versions 1 and 2
	minPairSize   = 2 + 1 + 1     // version 3: key, delta, value
	hexKeyLen     = 16            // a key of 16 lowercase hex digits is stored as 8 bytes
	maxDayDelta   = 1 << 40       // days: far beyond any Unix ms time
)

// Append appends the encoding of f to dst.
func (f *Features) Append(dst []byte) []byte {
	dst = append(dst, v3)
	dst = binary.AppendUvarint(dst, uint64(len(f.Purchases)))
	for i, p := range f.Purchases {
		if i == 0 {
			dst = binary.AppendVarint(dst, p.Day)
		} else {
			dst = binary.AppendUvarint(dst, uint64(p.Day-f.Purchases[i-1].Day-1))
		}
		dst = binary.AppendUvarint(dst, uint64(p.Orders))
		dst = binary.AppendVarint(dst, p.Micros)
	}
	dst = binary.AppendVarint(dst, f.FoldedPurchaseDays)
	dst = binary.AppendVarint(dst, f.FoldedOrders)
	dst = binary.AppendVarint(dst, f.FoldedMicros)
	dst = binary.AppendUvarint(dst, uint64(len(f.ActiveDays)))
	for i, d := range f.ActiveDays {
		if i == 0 {
			dst = binary.AppendVarint(dst, d)
		} else {
			dst = binary.AppendUvarint(dst, uint64(d-f.ActiveDays[i-1]-1))
		}
	}
	dst = binary.AppendVarint(dst, f.FoldedActiveDays)
	for _, sc := range []Scores{f.Events, f.Categories, f.Products} {
		dst = appendScores(dst, sc)
	}
	return dst
}

func appendScores(dst []byte, sc Scores) []byte {
	dst = binary.AppendUvarint(dst, uint64(len(sc)))
	if len(sc) == 0 {
		return dst
	}
	latest := sc.latest()
	dst = binary.AppendVarint(dst, latest)
	for _, e := range sc {
		if k, ok := hexKey8(e.Key); ok {
			dst = append(dst, 0)
			dst = append(dst, k[:]...)
		} else {
			dst = wire.AppendString(dst, e.Key)
		}
		dt := uint64(latest-e.AsOf) << 1
		if n, ok := smallPair(e.Decayed); ok {
			dst = binary.AppendUvarint(dst, dt|1)
			dst = append(dst, n)
			continue
		}
		dst = binary.AppendUvarint(dst, dt)
		dst = wire.AppendFloat64(dst, e.Short)
		dst = wire.AppendFloat64(dst, e.Long)
	}
	return dst
}

// smallPair reports whether d's scores are equal integers 0..255 (+0, not
// −0: the one-byte form keeps every bit) and returns that integer.
func smallPair(d Decayed) (byte, bool) {
	if d.Short != d.Long || !(d.Short >= 0 && d.Short <= 255) {
		return 0, false
	}
	n := byte(d.Short)
	return n, math.Float64bits(d.Short) == math.Float64bits(float64(n)) && math.Float64bits(d.Long) == math.Float64bits(float64(n))
}

// hexValue maps a byte to its value as a lowercase hex digit, 0xff for
// any other byte.
var hexValue = func() (t [256]byte) {
	for i := range t {
		t[i] = 0xff
	}
	for c := '0'; c <= '9'; c++ {
		t[c] = byte(c - '0')
	}
	for c := 'a'; c <= 'f'; c++ {
		t[c] = byte(c-'a') + 10
	}
	return t
}()

// hexKey8 returns the 8 bytes of a key of 16 lowercase hex digits; ok is
// false for any other key.
func hexKey8(k string) (out [hexKeyLen / 2]byte, ok bool) {
	if len(k) != hexKeyLen {
		return out, false
	}
	var bad byte
	for i := range out {
		hi, lo := hexValue[k[2*i]], hexValue[k[2*i+1]]
		bad |= hi | lo
		out[i] = hi<<4 | lo&0x0f
	}
	return out, bad&0xf0 == 0
}

// isHexKey reports whether k is 16 lowercase hex digits.
func isHexKey(k string) bool {
	_, ok := hexKey8(k)
	return ok
}

// SizeBound is an upper bound of len(f.Append(nil)) (0 for a nil f).
func (f *Features) SizeBound() int {
	if f == nil {
		return 0
	}
	const v = binary.MaxVarintLen64
	n := 1 + 12*v + len(f.Purchases)*3*v + len(f.ActiveDays)*v
	for _, sc := range [...]Scores{f.Events, f.Categories, f.Products} {
		for _, e := range sc {
			// key (a hex key: 1 + 8 bytes; another: a length of at most 2
			// bytes, keys being at most MaxKeyLen), the time delta, two f64
			n += 2 + len(e.Key) + v + 16
		}
	}
	return n
}

// Decode decodes an encoding made by Append. Allocations are bounded by
// the caps and the input's length.
func Decode(b []byte) (*Features, error) {
	if len(b) == 0 || b[0] < v1 || b[0] > v3 {
		return nil, errors.Join(ErrCorrupt, errors.New("features: not format version 1, 2 or 3"))
	}

	r := wire.NewReader(b[1:], ErrCorrupt)
	f := &Features{}
	if n := r.Count("purchase days", minDaySize); n > MaxPurchaseDays {
		r.Fail("%d purchase days, at most %d", n, MaxPurchaseDays)
	} else if n > 0 {
		f.Purchases = make([]PurchaseDay, n, n+1) // room for the next day
		for i := range f.Purchases {
			p := &f.Purchases[i]
			if i == 0 {
				p.Day = firstDay(&r, "purchase day")
			} else {
				p.Day = f.Purchases[i-1].Day + 1 + delta(&r, "purchase day")
			}
			p.Orders = nonNegative(&r, r.Uvarint("orders"), "orders")
			p.Micros = r.Varint("micros")
		}
	}
	f.FoldedPurchaseDays = nonNegativeInt(&r, r.Varint("folded purchase days"), "folded purchase days")
	f.FoldedOrders = nonNegativeInt(&r, r.Varint("folded orders"), "folded orders")
	f.FoldedMicros = r.Varint("folded micros")
	if n := r.Count("active days", minActiveSize); n > MaxActiveDays {
		r.Fail("%d active days, at most %d", n, MaxActiveDays)
	} else if n > 0 {
		f.ActiveDays = make([]int64, n, n+1)
		for i := range f.ActiveDays {
			if i == 0 {
				f.ActiveDays[i] = firstDay(&r, "active day")
			} else {
				f.ActiveDays[i] = f.ActiveDays[i-1] + 1 + delta(&r, "active day")
			}
		}
	}
	f.FoldedActiveDays = nonNegativeInt(&r, r.Varint("folded active days"), "folded active days")
	if b[0] == v1 { // static calls: r stays on the stack (no write barriers)
		f.Events = decodeScoresV1(&r, "events")
		f.Categories = decodeScoresV1(&r, "categories")
		f.Products = decodeScoresV1(&r, "products")
	} else {
		f.Events = decodeScores(&r, "events", b[0])
		f.Categories = decodeScores(&r, "categories", b[0])
		f.Products = decodeScores(&r, "products", b[0])
	}
	if err := r.Finish(); err != nil {
		return nil, err
	}
	return f, nil
}

func delta(r *wire.Reader, what string) int64 {
	d := r.Uvarint(what)
	if d > maxDayDelta {
		r.Fail("%s gap %d out of range", what, d)
		return 0
	}
	return int64(d)
}

func firstDay(r *wire.Reader, what string) int64 {
	d := r.Varint(what)
	if d > maxDayDelta || d < -maxDayDelta {
		r.Fail("%s %d out of range", what, d)
		return 0
	}
	return d
}

func nonNegative(r *wire.Reader, v uint64, what string) int64 {
	if v > math.MaxInt64 {
		r.Fail("%s %d out of range", what, v)
		return 0
	}
	return int64(v)
}

func nonNegativeInt(r *wire.Reader, v int64, what string) int64 {
	if v < 0 {
		r.Fail("%s %d negative", what, v)
		return 0
	}
	return v
}

// decodeScores reads a version 2 or 3 scores. Its keys are substrings of
// one string: one allocation for the keys of a section.
func decodeScores(r *wire.Reader, what string, version byte) Scores {
	minSize := minScoreSize
	if version == v3 {
		minSize = minPairSize
	}
	n := r.Count(what, minSize)
	if n > MaxKeys {
		r.Fail("%d %s, at most %d", n, what, MaxKeys)
		return nil
	}
	if n == 0 {
		return nil
	}
	latest := r.Varint(what)
	sc := make(Scores, n, n+2) // room for an event's new keys
	var (
		text  strings.Builder // the keys' text: one allocation, no copy
		ends  [MaxKeys]int    // where each key's text ends in text
		zero  bool            // some delta is 0
		short uint64          // bit i: key i was stored as 8 bytes (MaxKeys ≤ 64)
	)
	text.Grow(n * hexKeyLen)
	for i := range sc {
		switch l := r.Uvarint(what); {
		case r.Err() != nil:
			return nil
		case l == 0:
			var digits [hexKeyLen]byte
			if b := r.Fixed(what, hexKeyLen/2); b != nil {
				hex.Encode(digits[:], b)
			}
			text.Write(digits[:])
			short |= 1 << i
		case l > MaxKeyLen:
			r.Fail("%s key of %d bytes", what, l)
			return nil
		default:
			text.Write(r.Fixed(what, int(l)))
		}
		ends[i] = text.Len()
		var (
			d  Decayed
			dt uint64
		)
		if version == v3 {
			dt = r.Uvarint(what)
			if dt&1 == 1 {
				b := r.Fixed(what, 1)
				if b == nil {
					return nil
				}
				d.Short = float64(b[0])
				d.Long = d.Short
			} else {
				d = Decayed{Short: r.Float64(what), Long: r.Float64(what)}
				if _, ok := smallPair(d); ok {
					r.Fail("%s: scores %v not in the one-byte form", what, d.Short)
					return nil
				}
			}
			dt >>= 1
		} else {
			d = Decayed{Short: r.Float64(what), Long: r.Float64(what)}
			dt = r.Uvarint(what)
		}
		if dt > math.MaxInt64 || latest-int64(dt) > latest {
			r.Fail("%s time delta %d out of range", what, dt)
			return nil
		}
		d.AsOf, zero = latest-int64(dt), zero || dt == 0
		if !score(d.Short) || !score(d.Long) {
			r.Fail("%s: score not finite or negative", what)
			return nil
		}
		sc[i].Decayed = d
	}
	if r.Err() != nil {
		return nil
	}
	if !zero {
		r.Fail("%s: no key as of the latest time", what)
		return nil
	}
	all, start := text.String(), 0
	for i := range sc {
		k := all[start:ends[i]]
		switch {
		case i > 0 && k <= sc[i-1].Key:
			r.Fail("%s keys not in order at %q", what, k)
			return nil
		case short&(1<<i) == 0 && isHexKey(k):
			r.Fail("%s key %q not in the 8-byte form", what, k)
			return nil
		}
		sc[i].Key, start = k, ends[i]
	}
	return sc
}

// decodeScoresV1 reads a version 1 scores.
func decodeScoresV1(r *wire.Reader, what string) Scores {
	n := r.Count(what, minScoreSize)
	if n > MaxKeys {
		r.Fail("%d %s, at most %d", n, what, MaxKeys)
		return nil
	}
	if n == 0 {
		return nil
	}
	sc := make(Scores, n, n+2) // room for an event's new keys
	var prev string
	for i := range sc {
		k := r.Key(what, i, prev)
		if len(k) == 0 || len(k) > MaxKeyLen {
			r.Fail("%s key of %d bytes", what, len(k))
			return nil
		}
		d := Decayed{Short: r.Float64(what), Long: r.Float64(what), AsOf: r.Varint(what)}
		if !score(d.Short) || !score(d.Long) {
			r.Fail("%s %q: score not finite or negative", what, k)
			return nil
		}
		sc[i], prev = Keyed{Key: k, Decayed: d}, k
	}
	return sc
}

func score(v float64) bool { return v >= 0 && !math.IsInf(v, 0) && !math.IsNaN(v) }

// decodeScores records each key's form in one bit of a uint64.
var _ [64 - MaxKeys]struct{}
