package gcr

import (
	"encoding/binary"
	"fmt"

	"slices"

	"github.com/aurumcdp/aurum/internal/wire"
	"github.com/aurumcdp/aurum/projections/features"
)

// The stored form of a Profile (key p/<partition>/g/<profile>).
//
// Version 3, hand-written (no reflection), deterministic: equal profiles
// give equal bytes (maps are written in key order, nil and empty alike),
// which the digest and the lattice tests rely on.
//
//	profile  = 0xc3 bytes(Features) rest
//	rest     = bytes(ID) uvarint(n) bytes*(MergedFrom) uvarint(n) ident*(Identifiers)
//	           map(trait)(Traits) stats map(money)(Revenue) map(varint)(Audiences)
//	           map(f64)(Predictions) map(consent)(Consent)
//	ident    = str(Type) bytes(Hash) bytes(Key) bytes(Sealed) varint(FirstSeen) varint(LastSeen) bytes(FirstEvent)
//	trait    = bytes(Key) bytes(Sealed) varint(Time) bytes(Event)
//	stats    = varint(FirstSeen) varint(LastSeen) varint(Events) map(varint)(EventCounts)
//	           map(varint)(KindCounts) map(varint)(Sources) map(varint)(Channels) map(varint)(Devices)
//	money    = varint(Count) varint(Micros)
//	consent  = byte(Granted: 0 or 1) varint(Time) bytes(Event) str(Source)
//	map(v)   = uvarint(n) (str(key) v)*   keys strictly increasing (a decoder refuses any other order)
//	str      = uvarint(len) bytes
//	bytes    = uvarint(len) bytes          (length 0 decodes as nil)
//	f64      = 8 bytes little endian of math.Float64bits
//	varint   = encoding/binary zig-zag varint; uvarint = encoding/binary uvarint
//
// Features is features.Features.Append (its own version byte inside), or
// empty when the profile has none. It comes first so that the decoder
// finds it without reading the rest, and so that the rest, whose byte
// strings the decoder copies once (wire.Reader), does not hold it: a
// decode copies the feature row only if it decodes it, and the Txn's row
// cache (rows.go) spares most of those decodes.
//
// The leading byte is the version: 0xc3. Versions 1 and 2 are still read
// (stored state keeps loading; the profile's next write is version 3):
// version 2 (0xc2, sessions 5–9) is 0xc2 rest bytes(Features): the same
// items with the feature row last; version 1 (0xc1, a code msgpack never
// uses, from when msgpack profiles of earlier builds were still read) is
// 0xc1 rest, a profile without features. A later version takes another
// leading byte.
//
// Decoding checks every count against the bytes left before it allocates,
// so hostile input allocates at most a small multiple of its length; it
// refuses trailing bytes, then checks the Profile's invariants (Check).
const (
	profileV1 byte = 0xc1 // read only
	profileV2 byte = 0xc2 // read only: v1 + features last
	profileV3 byte = 0xc3 // features first
)

// Minimum encoded sizes of the repeated items, to bound allocations by the
// input length.
const (
	minBytesSize   = 1             // uvarint length
	minIdentSize   = 7             // 4 lengths, 2 varints, 1 length
	minTraitSize   = 1 + 4         // key, 3 lengths + 1 varint
	minCountSize   = 1 + 1         // key, varint
	minMoneySize   = 1 + 2         // key, 2 varints
	minFloatSize   = 1 + 8         // key, f64
	minConsentSize = 1 + 1 + 2 + 1 // key, flag, varint + length, length
)

func encodeProfile(p *Profile) ([]byte, error) {
	b, _ := appendProfile(nil, p, nil)
	return b, nil
}

// appendProfile appends the encoding of p to dst[:0] (a buffer it reuses,
// growing it once); feat, when not nil, is the encoding of p.Features to
// write (the bytes it was decoded from, unchanged since). It returns the
// encoding and the feature row's part of it (nil: none), both in the
// buffer.
func appendProfile(dst []byte, p *Profile, feat []byte) (b, row []byte) {
	n := profileSize(p, feat)
	e := profileEncoder{buf: slices.Grow(dst[:0], n)}
	row = e.features(p.Features, feat)
	e.profile(p)
	return e.buf, row
}

// profileEncoder writes format version 3; keys is scratch for sorting map
// keys, reused across the maps of one profile.
type profileEncoder struct {
	buf  []byte
	keys []string
}

func (e *profileEncoder) uvarint(v uint64) { e.buf = binary.AppendUvarint(e.buf, v) }
func (e *profileEncoder) varint(v int64)   { e.buf = binary.AppendVarint(e.buf, v) }
func (e *profileEncoder) str(s string)     { e.buf = wire.AppendString(e.buf, s) }
func (e *profileEncoder) bytes(b []byte)   { e.buf = wire.AppendBytes(e.buf, b) }

// sorted returns the keys of m in order (in e.keys: valid until the next call).
func sorted[V any](e *profileEncoder, m map[string]V) []string {
	e.keys = e.keys[:0]
	for k := range m {
		e.keys = append(e.keys, k)
	}
	slices.Sort(e.keys)
	return e.keys
}

func (e *profileEncoder) counts(m map[string]int64) {
	e.uvarint(uint64(len(m)))
	for _, k := range sorted(e, m) {
		e.str(k)
		e.varint(m[k])
	}
}

// features writes the version byte and the feature row: feat if it is not
// nil, else f's encoding (length 0: none), written in place behind a
// length reserved at its maximum and then moved down over the slack. It
// returns the row's bytes in e.buf (nil: none).
func (e *profileEncoder) features(f *features.Features, feat []byte) []byte {
	e.buf = append(e.buf, profileV3)
	if feat != nil {
		e.bytes(feat)
		return e.buf[len(e.buf)-len(feat):]
	}
	if f.Empty() {
		e.uvarint(0)
		return nil
	}
	mark := len(e.buf)
	e.buf = append(e.buf, make([]byte, binary.MaxVarintLen64)...)
	e.buf = f.Append(e.buf)
	n := len(e.buf) - mark - binary.MaxVarintLen64
	ln := binary.PutUvarint(e.buf[mark:], uint64(n))
	copy(e.buf[mark+ln:], e.buf[mark+binary.MaxVarintLen64:])
	e.buf = e.buf[:mark+ln+n]
	return e.buf[mark+ln:]
}

// profile writes rest (after the version byte and the feature row).
func (e *profileEncoder) profile(p *Profile) {
	e.bytes(p.ID)
	e.uvarint(uint64(len(p.MergedFrom)))
	for _, id := range p.MergedFrom {
		e.bytes(id)
	}
	e.uvarint(uint64(len(p.Identifiers)))
	for i := range p.Identifiers {
		id := &p.Identifiers[i]
		e.str(id.Type)
		e.bytes(id.Hash)
		e.bytes(id.Key)
		e.bytes(id.Sealed)
		e.varint(id.FirstSeen)
		e.varint(id.LastSeen)
		e.bytes(id.FirstEvent)
	}
	e.uvarint(uint64(len(p.Traits)))
	for _, k := range sorted(e, p.Traits) {
		t := p.Traits[k]
		e.str(k)
		e.bytes(t.Key)
		e.bytes(t.Sealed)
		e.varint(t.Time)
		e.bytes(t.Event)
	}
	s := &p.Stats
	e.varint(s.FirstSeen)
	e.varint(s.LastSeen)
	e.varint(s.Events)
	e.counts(s.EventCounts)
	e.counts(s.KindCounts)
	e.counts(s.Sources)
	e.counts(s.Channels)
	e.counts(s.Devices)
	e.uvarint(uint64(len(p.Revenue)))
	for _, k := range sorted(e, p.Revenue) {
		m := p.Revenue[k]
		e.str(k)
		e.varint(m.Count)
		e.varint(m.Micros)
	}
	e.counts(p.Audiences)
	e.uvarint(uint64(len(p.Predictions)))
	for _, k := range sorted(e, p.Predictions) {
		e.str(k)
		e.buf = wire.AppendFloat64(e.buf, p.Predictions[k])
	}
	e.uvarint(uint64(len(p.Consent)))
	for _, k := range sorted(e, p.Consent) {
		c := p.Consent[k]
		e.str(k)
		e.buf = wire.AppendBool(e.buf, c.Granted)
		e.varint(c.Time)
		e.bytes(c.Event)
		e.str(c.Source)
	}
}

// profileSize is an upper bound of the encoded size of p (varints counted
// at their maximum), so that encodeProfile allocates its buffer once; feat
// as for encodeProfileWith.
func profileSize(p *Profile, feat []byte) int {
	const v = binary.MaxVarintLen64
	n := 1 + v + len(p.ID) + v*6 + v
	if feat != nil {
		n += len(feat)
	} else {
		n += p.Features.SizeBound()
	}
	for _, id := range p.MergedFrom {
		n += v + len(id)
	}
	for i := range p.Identifiers {
		id := &p.Identifiers[i]
		n += 7*v + len(id.Type) + len(id.Hash) + len(id.Key) + len(id.Sealed) + len(id.FirstEvent)
	}
	for k, t := range p.Traits {
		n += 5*v + len(k) + len(t.Key) + len(t.Sealed) + len(t.Event)
	}
	for _, m := range []map[string]int64{p.Stats.EventCounts, p.Stats.KindCounts, p.Stats.Sources, p.Stats.Channels, p.Stats.Devices, p.Audiences} {
		n += v
		for k := range m {
			n += 2*v + len(k)
		}
	}
	for k := range p.Revenue {
		n += 3*v + len(k)
	}
	for k := range p.Predictions {
		n += v + 8 + len(k)
	}
	for k, c := range p.Consent {
		n += 4*v + 1 + len(k) + len(c.Event) + len(c.Source)
	}
	return n
}

func decodeProfile(b []byte) (*Profile, error) {
	p, row, err := decodeRow(b)
	if err == nil && len(row) > 0 {
		p.Features, err = features.Decode(row)
		if err != nil {
			err = fmt.Errorf("%w: %v", ErrCorrupt, err)
		}
	}
	if err != nil {
		return nil, fmt.Errorf("decode: %w", err)
	}
	return p, nil
}

// decodeRow decodes a stored profile but for its feature row, whose
// encoding it returns (nil: none; a sub-slice of b), and checks the
// profile's invariants.
func decodeRow(b []byte) (*Profile, []byte, error) {
	p, row, err := decodeUnchecked(b)
	if err != nil {
		return nil, nil, err
	}
	if err := p.Check(); err != nil {
		return nil, nil, fmt.Errorf("%w: %v", ErrCorrupt, err)
	}
	return p, row, nil
}

// decodeUnchecked decodes format version 1, 2 or 3 (b starts with its
// version byte) but for the feature row, without checking the Profile's
// invariants.
func decodeUnchecked(b []byte) (*Profile, []byte, error) {
	if len(b) == 0 || (b[0] != profileV1 && b[0] != profileV2 && b[0] != profileV3) {
		return nil, nil, fmt.Errorf("%w: not format version 1, 2 or 3", ErrCorrupt)
	}
	rest, row := b[1:], []byte(nil)
	if b[0] == profileV3 {
		n, k := binary.Uvarint(rest)
		if k <= 0 || n > uint64(len(rest)-k) {
			return nil, nil, fmt.Errorf("%w: bad features length", ErrCorrupt)
		}
		row, rest = rest[k:k+int(n):k+int(n)], rest[k+int(n):]
	}
	d := profileDecoder{wire.NewReader(rest, ErrCorrupt)}
	p := d.profile()
	if b[0] == profileV2 {
		row = d.Raw("features")
	}
	if err := d.Finish(); err != nil {
		return nil, nil, err
	}
	if len(row) == 0 {
		row = nil
	}
	return p, row, nil
}

// profileDecoder reads rest, the items every format version has (wire.Reader:
// the first error sticks and every later read returns a zero value).
type profileDecoder struct{ wire.Reader }

func (d *profileDecoder) counts(what string) map[string]int64 {
	n := d.Count(what, minCountSize)
	if n == 0 {
		return nil
	}
	m := make(map[string]int64, n)
	var prev string
	for i := range n {
		k := d.Key(what, i, prev)
		m[k], prev = d.Varint(what), k
	}
	return m
}

func (d *profileDecoder) profile() *Profile {
	p := &Profile{}
	p.ID = d.Bytes("id")
	if n := d.Count("merged count", minBytesSize); n > 0 {
		p.MergedFrom = make([][]byte, n)
		for i := range p.MergedFrom {
			p.MergedFrom[i] = d.Bytes("merged id")
		}
	}
	if n := d.Count("identifier count", minIdentSize); n > 0 {
		p.Identifiers = make([]Ident, n)
		for i := range p.Identifiers {
			id := &p.Identifiers[i]
			id.Type = d.String("identifier type")
			id.Hash = d.Bytes("identifier hash")
			id.Key = d.Bytes("identifier key")
			id.Sealed = d.Bytes("identifier value")
			id.FirstSeen = d.Varint("first seen")
			id.LastSeen = d.Varint("last seen")
			id.FirstEvent = d.Bytes("first event")
		}
	}
	if n := d.Count("trait count", minTraitSize); n > 0 {
		p.Traits = make(map[string]Trait, n)
		var prev string
		for i := range n {
			k := d.Key("trait", i, prev)
			var t Trait
			t.Key = d.Bytes("trait key")
			t.Sealed = d.Bytes("trait value")
			t.Time = d.Varint("trait time")
			t.Event = d.Bytes("trait event")
			p.Traits[k], prev = t, k
		}
	}
	s := &p.Stats
	s.FirstSeen = d.Varint("first seen")
	s.LastSeen = d.Varint("last seen")
	s.Events = d.Varint("events")
	s.EventCounts = d.counts("event counts")
	s.KindCounts = d.counts("kind counts")
	s.Sources = d.counts("sources")
	s.Channels = d.counts("channels")
	s.Devices = d.counts("devices")
	if n := d.Count("revenue count", minMoneySize); n > 0 {
		p.Revenue = make(map[string]Money, n)
		var prev string
		for i := range n {
			k := d.Key("revenue", i, prev)
			var m Money
			m.Count = d.Varint("revenue count")
			m.Micros = d.Varint("revenue sum")
			p.Revenue[k], prev = m, k
		}
	}
	p.Audiences = d.counts("audiences")
	if n := d.Count("prediction count", minFloatSize); n > 0 {
		p.Predictions = make(map[string]float64, n)
		var prev string
		for i := range n {
			k := d.Key("prediction", i, prev)
			p.Predictions[k], prev = d.Float64("prediction"), k
		}
	}
	if n := d.Count("consent count", minConsentSize); n > 0 {
		p.Consent = make(map[string]Consent, n)
		var prev string
		for i := range n {
			k := d.Key("consent", i, prev)
			var c Consent
			c.Granted = d.Bool("consent flag")
			c.Time = d.Varint("consent time")
			c.Event = d.Bytes("consent event")
			c.Source = d.String("consent source")
			p.Consent[k], prev = c, k
		}
	}
	return p
}
