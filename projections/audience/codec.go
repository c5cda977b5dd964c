package audience

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"

	"github.com/aurumcdp/aurum/internal/wire"
)

// The stored form of a State (key p/<partition>/u/<profile>).
//
// Hand-written (no reflection), deterministic: equal states give equal
// bytes, which the digest relies on. Version 2 (issue #15, session 13: the
// audience state was half of the bytes the state store takes per event,
// and a windowed aggregate paid 24 bytes of zero sums and a count's events
// 8 bytes of zero values each):
//
//	state    = 0xc2 uvarint(len Aggs) agg* uvarint(len Members) member* varint(Timer)
//	agg      = str(Key) uvarint(len Entries) uvarint(flags) entry* [varint(N)] [f64(Sum)] [f64(Min)] [f64(Max)] [varint(First)] [varint(Last)]
//	entry    = varint(T − the previous entry's T; the first's from 0) [f64(V)] bytes(ID)
//	member   = str(Audience) varint(Since) varint(Version)
//
// flags: a field in brackets is there when its bit is set, and the encoder
// sets it when the field is not zero (a float: not all-zero bits): 1 the
// entries carry values (one of them is not zero), 2 N, 4 Sum, 8 Min,
// 16 Max, 32 First, 64 Last. Version 1 (0xc1), still read:
//
//	state    = 0xc1 uvarint(len Aggs) agg* uvarint(len Members) member* varint(Timer)
//	agg      = str(Key) uvarint(len Entries) entry* varint(N) f64(Sum) f64(Min) f64(Max) varint(First) varint(Last)
//	entry    = varint(T) f64(V) bytes(ID)
//
// Both:
//
//	str      = uvarint(len) bytes
//	bytes    = uvarint(len) bytes        (length 0 decodes as nil)
//	f64      = 8 bytes little endian of math.Float64bits (every bit kept: -0, NaN payloads)
//	varint   = encoding/binary zig-zag varint; uvarint = encoding/binary uvarint
//
// The leading byte is the version: 0xc1 and 0xc2 are codes msgpack never
// uses (msgpack states of earlier builds are not read any more).
//
// Decoding checks every length against the bytes left before it allocates,
// so hostile input allocates at most a small multiple of its own length, and
// it refuses trailing bytes and unknown flags.
const (
	stateV1 byte = 0xc1
	stateV2 byte = 0xc2
)

// Aggregate flags of version 2.
const (
	aggValues = 1 << iota
	aggN
	aggSum
	aggMin
	aggMax
	aggFirst
	aggLast
	aggFlags = aggLast<<1 - 1 // every flag
)

// Minimum encoded sizes, used to bound allocations by the input length.
const (
	minAggSize     = 1 + 1 + 1 + 3*8 + 1 + 1 // v1: key len, entries len, N, Sum/Min/Max, First, Last
	minEntrySize   = 1 + 8 + 1               // v1: T, V, ID len
	minAggSizeV2   = 1 + 1 + 1               // key len, entries len, flags
	minEntrySizeV2 = 1 + 1                   // T, ID len
	minMemberSize  = 1 + 1 + 1               // name len, Since, Version
)

// ErrCorruptState is wrapped by DecodeState for bytes that are not a valid
// stored state.
var ErrCorruptState = errors.New("audience: corrupt state")

// EncodeState encodes s deterministically (format version 1, above).
func EncodeState(s *State) ([]byte, error) {
	return AppendState(make([]byte, 0, stateSize(s)), s), nil
}

// AppendState appends the encoding of s (the current version, 2) to dst.
func AppendState(dst []byte, s *State) []byte {
	dst = append(dst, stateV2)
	dst = binary.AppendUvarint(dst, uint64(len(s.Aggs)))
	for i := range s.Aggs {
		a := &s.Aggs[i]
		dst = wire.AppendString(dst, a.Key)
		dst = binary.AppendUvarint(dst, uint64(len(a.Entries)))
		flags := aggFlagsOf(a)
		dst = binary.AppendUvarint(dst, flags)
		prev := int64(0)
		for j := range a.Entries {
			e := &a.Entries[j]
			dst = binary.AppendVarint(dst, e.T-prev)
			prev = e.T
			if flags&aggValues != 0 {
				dst = wire.AppendFloat64(dst, e.V)
			}
			dst = wire.AppendBytes(dst, e.ID)
		}
		if flags&aggN != 0 {
			dst = binary.AppendVarint(dst, a.N)
		}
		for _, f := range [...]struct {
			bit uint64
			v   float64
		}{{aggSum, a.Sum}, {aggMin, a.Min}, {aggMax, a.Max}} {
			if flags&f.bit != 0 {
				dst = wire.AppendFloat64(dst, f.v)
			}
		}
		if flags&aggFirst != 0 {
			dst = binary.AppendVarint(dst, a.First)
		}
		if flags&aggLast != 0 {
			dst = binary.AppendVarint(dst, a.Last)
		}
	}
	return appendMembers(dst, s)
}

// appendMembers appends the tail both versions share: the memberships and
// the timer (decodeMembers reads it).
func appendMembers(dst []byte, s *State) []byte {
	dst = binary.AppendUvarint(dst, uint64(len(s.Members)))
	for i := range s.Members {
		m := &s.Members[i]
		dst = wire.AppendString(dst, m.Audience)
		dst = binary.AppendVarint(dst, m.Since)
		dst = binary.AppendVarint(dst, m.Version)
	}
	return binary.AppendVarint(dst, s.Timer)
}

// aggFlagsOf returns the version-2 flags of a: the fields that are not zero.
func aggFlagsOf(a *AggState) uint64 {
	var f uint64
	for j := range a.Entries {
		if math.Float64bits(a.Entries[j].V) != 0 {
			f |= aggValues
			break
		}
	}
	if a.N != 0 {
		f |= aggN
	}
	if math.Float64bits(a.Sum) != 0 {
		f |= aggSum
	}
	if math.Float64bits(a.Min) != 0 {
		f |= aggMin
	}
	if math.Float64bits(a.Max) != 0 {
		f |= aggMax
	}
	if a.First != 0 {
		f |= aggFirst
	}
	if a.Last != 0 {
		f |= aggLast
	}
	return f
}

// stateSize is an upper bound of the encoded size of s (varints counted at
// their maximum), so that EncodeState allocates once.
func stateSize(s *State) int {
	n := 1 + binary.MaxVarintLen64*3
	for i := range s.Aggs {
		a := &s.Aggs[i]
		n += binary.MaxVarintLen64*5 + 3*8 + len(a.Key)
		for j := range a.Entries {
			n += binary.MaxVarintLen64*2 + 8 + len(a.Entries[j].ID)
		}
	}
	for i := range s.Members {
		n += binary.MaxVarintLen64*3 + len(s.Members[i].Audience)
	}
	return n
}

// DecodeState decodes a stored state (format version 2 or 1).
func DecodeState(data []byte) (*State, error) { return decodeState(data, nil) }

// DecodeState is DecodeState for states of this set's profiles: aggregate
// keys and audience names the set knows are not allocated again (the
// decoded strings share the set's). s may be nil.
func (s *Set) DecodeState(data []byte) (*State, error) {
	if s == nil {
		return decodeState(data, nil)
	}
	return decodeState(data, s.intern)
}

func decodeState(data []byte, intern map[string]string) (*State, error) {
	if len(data) == 0 || (data[0] != stateV1 && data[0] != stateV2) {
		return nil, fmt.Errorf("audience: decode state: %w: not a state of version 1 or 2", ErrCorruptState)
	}
	d := wire.NewReader(data[1:], ErrCorruptState)
	var s *State
	if data[0] == stateV2 {
		s = decodeV2(&d, intern)
	} else {
		s = decodeV1(&d, intern)
	}
	if err := d.Finish(); err != nil {
		return nil, fmt.Errorf("audience: decode state: %w", err)
	}
	return s, nil
}

// decodeV2 reads the body of format version 2 (after its version byte).
func decodeV2(d *wire.Reader, intern map[string]string) *State {
	s := &State{}
	if n := d.Count("aggregate count", minAggSizeV2); n > 0 {
		s.Aggs = make([]AggState, n)
		for i := range s.Aggs {
			a := &s.Aggs[i]
			a.Key = d.InternString("aggregate key", intern)
			m := d.Count("entry count", minEntrySizeV2)
			flags := d.Uvarint("aggregate flags")
			if flags&^aggFlags != 0 {
				d.Fail("aggregate flags %#x: unknown", flags)
				return s
			}
			if m > 0 {
				a.Entries = make([]AggEntry, m)
				prev := int64(0)
				for j := range a.Entries {
					e := &a.Entries[j]
					e.T = prev + d.Varint("entry time")
					prev = e.T
					if flags&aggValues != 0 {
						e.V = d.Float64("entry value")
					}
					e.ID = d.Bytes("entry id")
				}
			}
			if flags&aggN != 0 {
				a.N = d.Varint("count")
			}
			if flags&aggSum != 0 {
				a.Sum = d.Float64("sum")
			}
			if flags&aggMin != 0 {
				a.Min = d.Float64("min")
			}
			if flags&aggMax != 0 {
				a.Max = d.Float64("max")
			}
			if flags&aggFirst != 0 {
				a.First = d.Varint("first")
			}
			if flags&aggLast != 0 {
				a.Last = d.Varint("last")
			}
		}
	}
	decodeMembers(d, s, intern)
	return s
}

// decodeMembers reads what appendMembers wrote.
func decodeMembers(d *wire.Reader, s *State, intern map[string]string) {
	if n := d.Count("member count", minMemberSize); n > 0 {
		s.Members = make([]Member, n)
		for i := range s.Members {
			m := &s.Members[i]
			m.Audience = d.InternString("audience", intern)
			m.Since = d.Varint("since")
			m.Version = d.Varint("version")
		}
	}
	s.Timer = d.Varint("timer")
}

// decodeV1 reads the body of format version 1 (after its version byte).
func decodeV1(d *wire.Reader, intern map[string]string) *State {
	s := &State{}
	if n := d.Count("aggregate count", minAggSize); n > 0 {
		s.Aggs = make([]AggState, n)
		for i := range s.Aggs {
			a := &s.Aggs[i]
			a.Key = d.InternString("aggregate key", intern)
			if m := d.Count("entry count", minEntrySize); m > 0 {
				a.Entries = make([]AggEntry, m)
				for j := range a.Entries {
					e := &a.Entries[j]
					e.T = d.Varint("entry time")
					e.V = d.Float64("entry value")
					e.ID = d.Bytes("entry id")
				}
			}
			a.N = d.Varint("count")
			a.Sum = d.Float64("sum")
			a.Min = d.Float64("min")
			a.Max = d.Float64("max")
			a.First = d.Varint("first")
			a.Last = d.Varint("last")
		}
	}
	decodeMembers(d, s, intern)
	return s
}

// StateUnchanged reports whether data, a stored state of a settled profile
// (Step.Settled), would be written back unchanged by an evaluation at now
// that feeds no aggregate and evaluates no audience (Set.Quiet): it is in
// the current format and well formed (DecodeState would accept it), it
// holds exactly the set's aggregates, no windowed aggregate has an entry
// to evict at now, every membership is of an audience of the set, and its
// timer is not due (0 or after now). It allocates nothing.
//
// The timer is then also the one the evaluation would compute: on a
// settled profile it was computed under this set, no input of any rule
// changed since, and now has not reached it, so every candidate
// (rules.Rule.NextChange, entries dated in the future) is what it was.
func (s *Set) StateUnchanged(data []byte, now int64) bool {
	if len(data) == 0 || data[0] != stateV2 {
		return false
	}
	d := wire.NewReader(data[1:], ErrCorruptState)
	n := d.Count("aggregate count", minAggSizeV2)
	if d.Err() != nil || n != len(s.sorted) {
		return false
	}
	for i := 0; i < n; i++ {
		ka := &s.sorted[i]
		if string(d.Raw("aggregate key")) != ka.key {
			return false
		}
		m := d.Count("entry count", minEntrySizeV2)
		flags := d.Uvarint("aggregate flags")
		if flags&^aggFlags != 0 {
			return false
		}
		for j := 0; j < m; j++ {
			t := d.Varint("entry time") // the first entry's: from 0
			if flags&aggValues != 0 {
				d.Float64("entry value")
			}
			d.Raw("entry id")
			if j == 0 && ka.agg.Window > 0 && t <= now-ka.agg.Window {
				return false // evict would drop it
			}
		}
		if flags&aggN != 0 {
			d.Varint("count")
		}
		for _, bit := range [...]uint64{aggSum, aggMin, aggMax} {
			if flags&bit != 0 {
				d.Float64("sum, min or max")
			}
		}
		if flags&aggFirst != 0 {
			d.Varint("first")
		}
		if flags&aggLast != 0 {
			d.Varint("last")
		}
	}
	members := d.Count("member count", minMemberSize)
	for i := 0; i < members; i++ {
		if _, ok := s.byName[string(d.Raw("audience"))]; !ok {
			return false
		}
		d.Varint("since")
		d.Varint("version")
	}
	timer := d.Varint("timer")
	if d.Finish() != nil {
		return false
	}
	if n == 0 && members == 0 && timer == 0 {
		return false // would be deleted
	}
	return timer == 0 || timer > now
}
