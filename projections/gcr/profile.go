package gcr

import (
	"bytes"
	"fmt"
	"slices"
	"sort"

	"github.com/aurumcdp/aurum/event"
	"github.com/aurumcdp/aurum/projections/features"
)

// Profile is the stored Golden Customer Record of one profile.
//
// Invariants (checked by Check): ID has 16 bytes; MergedFrom is sorted,
// without duplicates and without ID; Identifiers are sorted by (Type, Hash)
// without duplicates, each with FirstSeen <= LastSeen; Stats.FirstSeen <=
// Stats.LastSeen when Stats.Events > 0.
type Profile struct {
	ID []byte `msgpack:"id"`
	// MergedFrom lists the profiles merged into this one (directly or
	// transitively). Their events stay under their own ids.
	MergedFrom  [][]byte           `msgpack:"mf,omitempty"`
	Identifiers []Ident            `msgpack:"ids,omitempty"`
	Traits      map[string]Trait   `msgpack:"tr,omitempty"`
	Stats       Stats              `msgpack:"st"`
	Revenue     map[string]Money   `msgpack:"rv,omitempty"` // track event name → revenue
	Audiences   map[string]int64   `msgpack:"au,omitempty"` // reserved: audience → since (Unix ms); joined by min
	Predictions map[string]float64 `msgpack:"pd,omitempty"` // reserved; joined by max
	// Consent is the latest consent statement per channel (event.ConsentChannels),
	// last-writer-wins by (Time, Event) like traits.
	Consent map[string]Consent `msgpack:"cn,omitempty"`
	// Features is the feature projection of the profile (issue #12; nil:
	// none yet). It is folded and joined with the rest of the record.
	Features *features.Features `msgpack:"-"`
}

// Consent is one channel's consent statement: whether it was granted, and
// the event that stated it. Statements are joined last-writer-wins by
// (Time, Event); an exact tie (only possible when an event id is reused)
// goes to the withdrawal, then to the smaller source, so the order is total.
type Consent struct {
	Granted bool   `msgpack:"g"`
	Time    int64  `msgpack:"t"` // event time, Unix ms
	Event   []byte `msgpack:"e"` // event id
	Source  string `msgpack:"s,omitempty"`
}

// Ident is an identifier owned by a profile. Key and Sealed are those of its
// earliest sighting by (FirstSeen, FirstEvent).
type Ident struct {
	Type       string `msgpack:"t"`
	Hash       []byte `msgpack:"h"`
	Key        []byte `msgpack:"k,omitempty"` // id of the data key that sealed Sealed
	Sealed     []byte `msgpack:"s,omitempty"` // sealed msgpack string
	FirstSeen  int64  `msgpack:"f"`           // Unix ms
	LastSeen   int64  `msgpack:"l"`           // Unix ms
	FirstEvent []byte `msgpack:"fe"`          // id of the earliest sighting
}

// Trait is a sealed trait value, last-writer-wins by (Time, Event).
type Trait struct {
	Key    []byte `msgpack:"k,omitempty"` // id of the data key that sealed Sealed
	Sealed []byte `msgpack:"s,omitempty"` // sealed msgpack value
	Time   int64  `msgpack:"t"`           // event time, Unix ms
	Event  []byte `msgpack:"e"`           // event id
}

// Stats are event statistics. FirstSeen and LastSeen are meaningful only
// when Events > 0. Empty source, channel and device values are not counted.
type Stats struct {
	FirstSeen   int64            `msgpack:"f"`
	LastSeen    int64            `msgpack:"l"`
	Events      int64            `msgpack:"n"`
	EventCounts map[string]int64 `msgpack:"ec,omitempty"` // track event name → count
	KindCounts  map[string]int64 `msgpack:"kc,omitempty"`
	Sources     map[string]int64 `msgpack:"so,omitempty"`
	Channels    map[string]int64 `msgpack:"ch,omitempty"`
	Devices     map[string]int64 `msgpack:"dv,omitempty"`
}

// Money is a count and an exact sum in micro-units (1e-6).
type Money struct {
	Count  int64 `msgpack:"n"`
	Micros int64 `msgpack:"m"`
}

// add folds one event into p. owned are the event's identifiers that p owns.
// The caller has validated rec and owned. Byte slices are copied.
func (p *Profile) add(rec *event.Record, owned []event.IDRef) { p.fold(rec, owned, true, nil) }

// fold is add, with the feature projection only when withFeatures, and
// its category and product interactions under interKey's keys when it is
// set. It reports whether p.Features changed.
func (p *Profile) fold(rec *event.Record, owned []event.IDRef, withFeatures bool, interKey features.KeyFunc) (featuresChanged bool) {
	s := &p.Stats
	if s.Events == 0 {
		s.FirstSeen, s.LastSeen = rec.Time, rec.Time
	} else {
		s.FirstSeen, s.LastSeen = min(s.FirstSeen, rec.Time), max(s.LastSeen, rec.Time)
	}
	s.Events++
	var micros int64
	var hasRevenue bool
	if rec.Kind == event.Track && rec.Event != "" {
		incr(&s.EventCounts, rec.Event, 1)
		if micros, hasRevenue = revenueOf(rec.Properties); hasRevenue {
			if p.Revenue == nil {
				p.Revenue = make(map[string]Money)
			}
			m := p.Revenue[rec.Event]
			m.Count++
			m.Micros += micros
			p.Revenue[rec.Event] = m
		}
	}
	if withFeatures {
		if p.Features == nil {
			p.Features = &features.Features{}
		}
		featuresChanged = p.Features.Add(rec, micros, hasRevenue)
		if interKey != nil {
			featuresChanged = p.Features.AddInteractions(rec, interKey) || featuresChanged
		}
	}
	incr(&s.KindCounts, string(rec.Kind), 1)
	incr(&s.Sources, rec.Source, 1)
	incr(&s.Channels, rec.Channel, 1)
	incr(&s.Devices, rec.DeviceType, 1)

	key, id := bytes.Clone(rec.Key), bytes.Clone(rec.ID)
	for _, o := range owned {
		p.joinIdent(Ident{
			Type: o.Type, Hash: bytes.Clone(o.Hash),
			Key: key, Sealed: bytes.Clone(o.Sealed),
			FirstSeen: rec.Time, LastSeen: rec.Time, FirstEvent: id,
		})
	}
	for name, sealed := range rec.Traits {
		p.joinTrait(name, Trait{Key: key, Sealed: bytes.Clone(sealed), Time: rec.Time, Event: id})
	}
	for ch, granted := range rec.Consent {
		if !event.ValidConsentChannel(ch) {
			continue // the edge accepts only channels; a malformed record states nothing
		}
		p.joinConsent(ch, Consent{Granted: granted, Time: rec.Time, Event: id, Source: rec.Source})
	}
	return featuresChanged
}

// join folds from into p (the semilattice join). from is not modified but p
// may share its byte slices afterwards.
func (p *Profile) join(from *Profile) {
	// MergedFrom ∪ from.MergedFrom ∪ {from.ID}, without p.ID.
	mf := make([][]byte, 0, len(p.MergedFrom)+len(from.MergedFrom)+1)
	mf = append(mf, p.MergedFrom...)
	mf = append(mf, from.MergedFrom...)
	mf = append(mf, from.ID)
	slices.SortFunc(mf, bytes.Compare)
	mf = slices.CompactFunc(mf, bytes.Equal)
	mf = slices.DeleteFunc(mf, func(b []byte) bool { return bytes.Equal(b, p.ID) })
	if len(mf) == 0 {
		mf = nil
	}
	p.MergedFrom = mf

	for _, id := range from.Identifiers {
		p.joinIdent(id)
	}
	for name, t := range from.Traits {
		p.joinTrait(name, t)
	}
	for ch, c := range from.Consent {
		p.joinConsent(ch, c)
	}

	s, fs := &p.Stats, &from.Stats
	if fs.Events > 0 {
		if s.Events == 0 {
			s.FirstSeen, s.LastSeen = fs.FirstSeen, fs.LastSeen
		} else {
			s.FirstSeen, s.LastSeen = min(s.FirstSeen, fs.FirstSeen), max(s.LastSeen, fs.LastSeen)
		}
	}
	s.Events += fs.Events
	addCounts(&s.EventCounts, fs.EventCounts)
	addCounts(&s.KindCounts, fs.KindCounts)
	addCounts(&s.Sources, fs.Sources)
	addCounts(&s.Channels, fs.Channels)
	addCounts(&s.Devices, fs.Devices)

	if !from.Features.Empty() {
		if p.Features == nil {
			p.Features = &features.Features{}
		}
		p.Features.Join(from.Features)
	}
	for name, m := range from.Revenue {
		if p.Revenue == nil {
			p.Revenue = make(map[string]Money)
		}
		cur := p.Revenue[name]
		p.Revenue[name] = Money{Count: cur.Count + m.Count, Micros: cur.Micros + m.Micros}
	}
	for name, since := range from.Audiences {
		if p.Audiences == nil {
			p.Audiences = make(map[string]int64)
		}
		if cur, ok := p.Audiences[name]; !ok || since < cur {
			p.Audiences[name] = since
		}
	}
	for name, v := range from.Predictions {
		if p.Predictions == nil {
			p.Predictions = make(map[string]float64)
		}
		if cur, ok := p.Predictions[name]; !ok || v > cur {
			p.Predictions[name] = v
		}
	}
}

// joinIdent inserts id or joins it with the identifier of the same (Type, Hash).
func (p *Profile) joinIdent(id Ident) {
	i, found := sort.Find(len(p.Identifiers), func(i int) int { return compareIdent(&id, &p.Identifiers[i]) })
	if !found {
		p.Identifiers = slices.Insert(p.Identifiers, i, id)
		return
	}
	cur := &p.Identifiers[i]
	if sightingBefore(&id, cur) {
		cur.Key, cur.Sealed, cur.FirstSeen, cur.FirstEvent = id.Key, id.Sealed, id.FirstSeen, id.FirstEvent
	}
	cur.LastSeen = max(cur.LastSeen, id.LastSeen)
}

func compareIdent(a, b *Ident) int {
	if a.Type != b.Type {
		if a.Type < b.Type {
			return -1
		}
		return 1
	}
	return bytes.Compare(a.Hash, b.Hash)
}

// sightingBefore reports whether a's first sighting precedes b's in the total
// order (FirstSeen, FirstEvent, Key, Sealed).
func sightingBefore(a, b *Ident) bool {
	if a.FirstSeen != b.FirstSeen {
		return a.FirstSeen < b.FirstSeen
	}
	if c := bytes.Compare(a.FirstEvent, b.FirstEvent); c != 0 {
		return c < 0
	}
	if c := bytes.Compare(a.Key, b.Key); c != 0 {
		return c < 0
	}
	return bytes.Compare(a.Sealed, b.Sealed) < 0
}

// joinTrait keeps the later of t and the current value of name.
func (p *Profile) joinTrait(name string, t Trait) {
	if cur, ok := p.Traits[name]; ok && !traitAfter(&t, &cur) {
		return
	}
	if p.Traits == nil {
		p.Traits = make(map[string]Trait)
	}
	p.Traits[name] = t
}

// traitAfter reports whether a is later than b in the total order
// (Time, Event, Key, Sealed).
func traitAfter(a, b *Trait) bool {
	if a.Time != b.Time {
		return a.Time > b.Time
	}
	if c := bytes.Compare(a.Event, b.Event); c != 0 {
		return c > 0
	}
	if c := bytes.Compare(a.Key, b.Key); c != 0 {
		return c > 0
	}
	return bytes.Compare(a.Sealed, b.Sealed) > 0
}

// joinConsent keeps the later of c and the current statement for channel ch.
func (p *Profile) joinConsent(ch string, c Consent) {
	if cur, ok := p.Consent[ch]; ok && !consentAfter(&c, &cur) {
		return
	}
	if p.Consent == nil {
		p.Consent = make(map[string]Consent)
	}
	p.Consent[ch] = c
}

// consentAfter reports whether a is later than b in the total order
// (Time, Event, withdrawal over grant, Source).
func consentAfter(a, b *Consent) bool {
	if a.Time != b.Time {
		return a.Time > b.Time
	}
	if c := bytes.Compare(a.Event, b.Event); c != 0 {
		return c > 0
	}
	if a.Granted != b.Granted {
		return !a.Granted
	}
	return a.Source > b.Source
}

// ConsentGranted reports whether the profile may be contacted on channel:
// its latest statement for the channel, else def (the node's default).
func (p *Profile) ConsentGranted(channel string, def bool) bool {
	if c, ok := p.Consent[channel]; ok {
		return c.Granted
	}
	return def
}

func incr(m *map[string]int64, k string, n int64) {
	if k == "" {
		return
	}
	if *m == nil {
		*m = make(map[string]int64)
	}
	(*m)[k] += n
}

func addCounts(dst *map[string]int64, src map[string]int64) {
	for k, n := range src {
		if *dst == nil {
			*dst = make(map[string]int64, len(src))
		}
		(*dst)[k] += n
	}
}

// Check verifies the invariants documented on Profile.
func (p *Profile) Check() error {
	if len(p.ID) != idLen {
		return fmt.Errorf("gcr: profile id has %d bytes, want %d", len(p.ID), idLen)
	}
	for i, id := range p.MergedFrom {
		if len(id) != idLen {
			return fmt.Errorf("gcr: profile %x: merged id %x has %d bytes", p.ID, id, len(id))
		}
		if bytes.Equal(id, p.ID) {
			return fmt.Errorf("gcr: profile %x: merged from itself", p.ID)
		}
		if i > 0 && bytes.Compare(p.MergedFrom[i-1], id) >= 0 {
			return fmt.Errorf("gcr: profile %x: merged ids not sorted and unique at %d", p.ID, i)
		}
	}
	for i := range p.Identifiers {
		id := &p.Identifiers[i]
		if id.FirstSeen > id.LastSeen {
			return fmt.Errorf("gcr: profile %x: identifier %s/%x first seen %d after last seen %d", p.ID, id.Type, id.Hash, id.FirstSeen, id.LastSeen)
		}
		if i > 0 && compareIdent(&p.Identifiers[i-1], id) >= 0 {
			return fmt.Errorf("gcr: profile %x: identifiers not sorted and unique at %d", p.ID, i)
		}
	}
	for ch := range p.Consent {
		if !event.ValidConsentChannel(ch) {
			return fmt.Errorf("gcr: profile %x: consent for unknown channel %q", p.ID, ch)
		}
	}
	if p.Stats.Events > 0 && p.Stats.FirstSeen > p.Stats.LastSeen {
		return fmt.Errorf("gcr: profile %x: first seen %d after last seen %d", p.ID, p.Stats.FirstSeen, p.Stats.LastSeen)
	}
	return nil
}
