// Package workload generates a synthetic store's customer events with ground
// truth: a deterministic (seeded) stream of Segment messages from the web
// shop, the app, the tills (pos) and the CRM, and a record of which
// identifiers belong to which person, to score identity resolution.
//
// The store has People customers. Each uses one to MaxDevices devices (web
// browsers, whose cookies churn, and app installs), each with an anonymous
// id. Account holders sign in ("Signed In" with userId and anonymousId) on
// some of their devices; some devices never sign in. CRM rows (identify with
// traits email, first_name, country, loyalty_tier and the loyalty id) link a
// person's user id, email and loyalty card. Loyalty members buy in stores
// ("Order Completed" from pos with context.externalIds loyalty_id). Shoppers
// browse Zipf-distributed products ("Product Viewed", "Product Added"), order
// ("Order Completed") and sometimes refund ("Order Refunded", properties.reason
// damaged, wrong_size or changed_mind). Some account holders also use a family
// member's device, signing in there with their own user id.
//
// Sessions happen over Days of simulated time from Start, mostly in the
// daytime; Next returns events in event-time order. The generator is a pure
// function of its Config: the same Config gives the same bytes.
package workload

import (
	"container/heap"
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"strings"
	"time"
)

// Event is one generated message.
type Event struct {
	// Source is the ingest source: "web", "app", "pos" or "crm".
	Source string
	// JSON is a Segment message with messageId, type, timestamp, ids, ...
	JSON []byte
	// Person is the index in [0, People) of the person who caused the event.
	Person int
	// Time is the event's timestamp.
	Time time.Time
}

// Sources are the ingest sources the generator's events name.
var Sources = []string{"web", "app", "pos", "crm"}

// Config configures a Generator. Zero fields take their defaults
// (EnsureDefaults); for the rates and per-day frequencies, a negative value
// means none.
type Config struct {
	// People is the number of customers. Default 1000.
	People int
	// Seed seeds every random choice.
	Seed uint64
	// Start is the beginning of simulated time. Default 2026-01-05T00:00:00Z.
	Start time.Time
	// Days of simulated activity. Default 30.
	Days int
	// TimeCompression divides simulated time: event time = Start +
	// simulated offset / TimeCompression (24 puts a simulated day into an
	// hour of event time). Default 1.
	TimeCompression float64
	// SharedDeviceRate is the share of account holders who also use a
	// family member's device. Default 0.05.
	SharedDeviceRate float64
	// AccountRate is the share of people with an account (a user id).
	// Default 0.7.
	AccountRate float64
	// CRMRate is the share of people with a CRM row (with an email).
	// Default 0.6.
	CRMRate float64
	// LoyaltyRate is the share of people with a loyalty card. Default 0.4.
	LoyaltyRate float64
	// NeverLoginRate is the share of devices on which their owner never
	// signs in. Default 0.25.
	NeverLoginRate float64
	// LoginRate is the chance that an account holder signs in during a
	// session on a device where they are not signed in. Default 0.5.
	LoginRate float64
	// CookieChurnRate is the chance that a web session starts with a fresh
	// cookie (a new anonymous id, signed out). Default 0.1.
	CookieChurnRate float64
	// SessionsPerDay is the mean number of online sessions per person and
	// day (each person's activity varies around it). Default 0.3.
	SessionsPerDay float64
	// StoreVisitsPerDay is the mean number of store purchases per loyalty
	// member and day. Default 0.05.
	StoreVisitsPerDay float64
	// OrderRate is the chance that a session with a filled cart ends in an
	// order. Default 0.3.
	OrderRate float64
	// RefundRate is the share of orders refunded later. Default 0.08.
	RefundRate float64
	// MaxDevices per person. Default 3.
	MaxDevices int
	// Products in the catalogue. Default 1000.
	Products int
	// ZipfS is the Zipf exponent (> 1) of product popularity. Default 1.1.
	ZipfS float64
	// Preference plants per-person tastes: each person has a favourite
	// category and a few favourite products in it, and each product view
	// is, with this chance, of the favourite category (a product of it
	// drawn by the same Zipf popularity), a third of those of a favourite
	// product. The tastes come from their own seeded stream, and the other
	// draws are the same as without: only which product is viewed (and so
	// carted and ordered) changes. 0 (the default) plants none; at most 1.
	Preference float64
}

// EnsureDefaults sets the zero fields to their defaults and the negative
// rates to 0.
func (c *Config) EnsureDefaults() {
	def := func(v *int, d int) {
		if *v == 0 {
			*v = d
		}
	}
	def(&c.People, 1000)
	def(&c.Days, 30)
	def(&c.MaxDevices, 3)
	def(&c.Products, 1000)
	if c.Start.IsZero() {
		c.Start = time.Date(2026, 1, 5, 0, 0, 0, 0, time.UTC)
	}
	if c.TimeCompression == 0 {
		c.TimeCompression = 1
	}
	if c.ZipfS == 0 {
		c.ZipfS = 1.1
	}
	rate := func(v *float64, d float64) {
		switch {
		case *v == 0:
			*v = d
		case *v < 0:
			*v = 0
		}
	}
	rate(&c.SharedDeviceRate, 0.05)
	rate(&c.AccountRate, 0.7)
	rate(&c.CRMRate, 0.6)
	rate(&c.LoyaltyRate, 0.4)
	rate(&c.NeverLoginRate, 0.25)
	rate(&c.LoginRate, 0.5)
	rate(&c.CookieChurnRate, 0.1)
	rate(&c.SessionsPerDay, 0.3)
	rate(&c.StoreVisitsPerDay, 0.05)
	rate(&c.OrderRate, 0.3)
	rate(&c.RefundRate, 0.08)
}

// Validate checks a Config after EnsureDefaults.
func (c *Config) Validate() error {
	switch {
	case c.People < 1 || c.People > 10_000_000:
		return fmt.Errorf("workload: people must be in [1, 10000000], got %d", c.People)
	case c.Days < 1 || c.Days > 3650:
		return fmt.Errorf("workload: days must be in [1, 3650], got %d", c.Days)
	case c.MaxDevices < 1 || c.MaxDevices > 20:
		return fmt.Errorf("workload: max devices must be in [1, 20], got %d", c.MaxDevices)
	case c.Preference < 0 || c.Preference > 1 || c.Preference != c.Preference:
		return fmt.Errorf("workload: preference must be in [0, 1], got %v", c.Preference)
	case c.Products < 2:
		return fmt.Errorf("workload: products must be at least 2, got %d", c.Products)
	case c.TimeCompression <= 0 || math.IsInf(c.TimeCompression, 0) || math.IsNaN(c.TimeCompression):
		return fmt.Errorf("workload: time compression must be positive, got %v", c.TimeCompression)
	case !(c.ZipfS > 1) || math.IsInf(c.ZipfS, 0):
		return fmt.Errorf("workload: zipf exponent must be > 1, got %v", c.ZipfS)
	}
	for _, r := range []struct {
		name string
		v    float64
	}{{"shared device rate", c.SharedDeviceRate}, {"account rate", c.AccountRate}, {"crm rate", c.CRMRate},
		{"loyalty rate", c.LoyaltyRate}, {"never-login rate", c.NeverLoginRate}, {"login rate", c.LoginRate},
		{"cookie churn rate", c.CookieChurnRate}, {"order rate", c.OrderRate}, {"refund rate", c.RefundRate}} {
		if !(r.v >= 0 && r.v <= 1) {
			return fmt.Errorf("workload: %s must be in [0, 1], got %v", r.name, r.v)
		}
	}
	for _, r := range []struct {
		name string
		v    float64
	}{{"sessions per day", c.SessionsPerDay}, {"store visits per day", c.StoreVisitsPerDay}} {
		if !(r.v >= 0 && r.v <= 1000) {
			return fmt.Errorf("workload: %s must be in [0, 1000], got %v", r.name, r.v)
		}
	}
	return nil
}

const (
	dayMs = int64(24 * time.Hour / time.Millisecond)
	// borrowRate is the chance that a family member with a shared device
	// uses it for a session (once its owner has signed in on it).
	borrowRate = 0.3
	// borrowLoginRate is the chance that they sign in there.
	borrowLoginRate = 0.8
	// newsletterRate is the chance that a web session of a person without
	// an account but with an email subscribes to the newsletter (identify
	// with anonymousId and email).
	newsletterRate = 0.05
	// maxViews bounds the product views of a session.
	maxViews = 30
)

// Generator generates a workload. It is not safe for concurrent use.
type Generator struct {
	cfg      Config
	rng      *rand.Rand
	pref     *rand.Rand // tastes and the taste-led views: Config.Preference
	prefZipf *rand.Zipf // popularity on pref
	zipf     *rand.Zipf
	salt     uint64
	ids      uint64 // counter behind every generated id
	seq      uint64 // heap tie-break, in push order
	horizon  int64  // ms of simulated time
	people   []person
	products []product
	q        queue
	truth    *Truth
}

type person struct {
	userID   string // "" without an account
	email    string // "" without one
	first    string
	country  string
	tier     string
	loyalty  string // "" without a card
	store    int    // home store
	rate     float64
	devices  []*device
	borrowed *device // a family member's shared device, or nil
	likes    int     // favourite category (an index of categories), with Preference > 0
	favs     []int   // favourite products, of that category
}

type device struct {
	app           bool
	anon          string
	owner         int
	user          int // person signed in, -1 when signed out
	neverLogin    bool
	shared        bool
	ownerSignedIn bool
	ua            string // web: user agent; app: "ios" or "android"
}

type product struct {
	sku      string
	name     string
	category string
	price    float64
}

// New returns a generator for cfg (defaults applied). It panics if the
// Config is invalid: call Validate first on untrusted input.
func New(cfg Config) *Generator {
	cfg.EnsureDefaults()
	if err := cfg.Validate(); err != nil {
		panic(err)
	}
	g := &Generator{
		cfg:     cfg,
		rng:     rand.New(rand.NewPCG(cfg.Seed, cfg.Seed^0x9e3779b97f4a7c15)),
		pref:    rand.New(rand.NewPCG(cfg.Seed^0x5851f42d4c957f2d, cfg.Seed+1)),
		salt:    mix(cfg.Seed + 0x632be59bd9b4e019),
		horizon: int64(cfg.Days) * dayMs,
		truth:   NewTruth(),
	}
	g.zipf = rand.NewZipf(g.rng, cfg.ZipfS, 1, uint64(cfg.Products-1))
	g.prefZipf = rand.NewZipf(g.pref, cfg.ZipfS, 1, uint64(cfg.Products-1))
	g.makeProducts()
	g.makePeople()
	return g
}

// Config returns the configuration in use (defaults applied).
func (g *Generator) Config() Config { return g.cfg }

// Truth returns a copy of the ground truth of the events returned so far:
// every identifier they carried and its person.
func (g *Generator) Truth() *Truth { return g.truth.Clone() }

// Next returns the next event in event-time order, or false when the
// workload is exhausted.
func (g *Generator) Next() (Event, bool) {
	for g.q.Len() > 0 {
		it := heap.Pop(&g.q).(*item)
		switch it.kind {
		case kindSession:
			g.session(it.at, it.person)
		case kindStore:
			g.storeVisit(it.at, it.person)
		case kindEmit:
			return g.emit(it), true
		}
	}
	return Event{}, false
}

// mix is the splitmix64 finaliser, a bijection on uint64: distinct counters
// give distinct ids.
func mix(z uint64) uint64 {
	z ^= z >> 30
	z *= 0xbf58476d1ce4e5b9
	z ^= z >> 27
	z *= 0x94d049bb133111eb
	z ^= z >> 31
	return z
}

// newID returns prefix followed by 16 hex digits, unique per generator.
func (g *Generator) newID(prefix string) string {
	n := g.ids
	g.ids++
	return prefix + fmt.Sprintf("%016x", mix(n+g.salt))
}

func (g *Generator) chance(p float64) bool { return g.rng.Float64() < p }

// expGap returns an exponential gap in ms for a rate per day (0: never).
func (g *Generator) expGap(perDay float64) int64 {
	if perDay <= 0 {
		return math.MaxInt64
	}
	return int64(g.rng.ExpFloat64() / perDay * float64(dayMs))
}

// schedule queues a person's next session or store visit after at, at a
// rate per day, if it falls within the simulated days.
func (g *Generator) schedule(at int64, perDay float64, kind itemKind, person int) {
	gap := g.expGap(perDay)
	if gap >= g.horizon-at {
		return
	}
	if next := g.daytime(at + gap); next < g.horizon {
		g.push(&item{at: next, kind: kind, person: person})
	}
}

// daytime moves times between 01:00 and 07:00 (simulated) into the morning.
func (g *Generator) daytime(at int64) int64 {
	h := (at % dayMs) / int64(time.Hour/time.Millisecond)
	if h >= 1 && h < 7 {
		at += (7-h)*int64(time.Hour/time.Millisecond) + g.rng.Int64N(3*int64(time.Hour/time.Millisecond))
	}
	return at
}

var (
	firstNames = []string{"ann", "ben", "carla", "dev", "emma", "farid", "grace", "hiro", "ines", "jon",
		"kemal", "lea", "mia", "noah", "olga", "pablo", "quinn", "rosa", "sven", "tara", "uma", "viktor", "wen", "yara"}
	lastNames = []string{"lee", "smith", "garcia", "nielsen", "kowalski", "rossi", "dubois", "tanaka", "silva",
		"novak", "berg", "okafor", "murphy", "schmidt", "haddad", "ivanova"}
	domains    = []string{"example.com", "example.org", "mail.example.net"}
	countries  = []string{"DK", "DE", "SE", "NL", "FR", "US", "GB", "ES"}
	tiers      = []string{"bronze", "silver", "gold", "platinum"}
	categories = []string{"shoes", "shirts", "trousers", "jackets", "bags", "accessories", "sport", "kids"}
	adjectives = []string{"classic", "urban", "trail", "soft", "bold", "light", "warm", "retro"}
	browsers   = []string{
		"Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 Chrome/131.0 Safari/537.36",
		"Mozilla/5.0 (Macintosh; Intel Mac OS X 14_5) AppleWebKit/605.1.15 Version/18.1 Safari/605.1.15",
		"Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0",
		"Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 Mobile/15E148",
	}
	refundReasons = []string{"damaged", "wrong_size", "changed_mind"}
	stores        = 24
)

func pick[T any](g *Generator, s []T) T { return s[g.rng.IntN(len(s))] }

func (g *Generator) makeProducts() {
	g.products = make([]product, g.cfg.Products)
	for k := range g.products {
		cat := categories[k%len(categories)]
		g.products[k] = product{
			sku:      fmt.Sprintf("SKU-%05d", k),
			name:     pick(g, adjectives) + " " + cat,
			category: cat,
			price:    float64(500+g.rng.IntN(19500)) / 100,
		}
	}
}

// inCategory maps a product index drawn by popularity to a product of
// category c of about the same rank (products are assigned to categories
// round-robin).
func (g *Generator) inCategory(k, c int) int {
	n := len(categories)
	if j := k/n*n + c; j < len(g.products) {
		return j
	}
	return c
}

// taste returns the product a person views given the one drawn by
// popularity: with chance Preference one of their favourite category (a
// third of those a favourite product), else k.
func (g *Generator) taste(p *person, k int) int {
	if g.cfg.Preference == 0 || g.pref.Float64() >= g.cfg.Preference {
		return k
	}
	if g.pref.IntN(3) == 0 {
		return p.favs[g.pref.IntN(len(p.favs))]
	}
	return g.inCategory(k, p.likes)
}

func (g *Generator) makePeople() {
	cfg := g.cfg
	g.people = make([]person, cfg.People)
	var accounts []int
	for i := range g.people {
		p := &g.people[i]
		p.first = pick(g, firstNames)
		p.country = pick(g, countries)
		p.store = g.rng.IntN(stores)
		// Activity varies per person (log-normal with mean 1).
		p.rate = cfg.SessionsPerDay * math.Exp(0.7*g.rng.NormFloat64()-0.245)
		if g.chance(cfg.AccountRate) {
			p.userID = g.newID("usr_")
			accounts = append(accounts, i)
		}
		crm := g.chance(cfg.CRMRate)
		if crm || p.userID != "" {
			p.email = fmt.Sprintf("%s.%s%d@%s", p.first, pick(g, lastNames), i, pick(g, domains))
		}
		if g.chance(cfg.LoyaltyRate) {
			p.loyalty = "LC" + g.newID("")
			p.tier = pick(g, tiers)
		}
		n := 1 + g.rng.IntN(cfg.MaxDevices)
		for range n {
			d := &device{app: g.chance(0.4), owner: i, user: -1, neverLogin: g.chance(cfg.NeverLoginRate)}
			d.anon = g.newID("anon_")
			if d.app {
				d.ua = pick(g, []string{"ios", "android"})
			} else {
				d.ua = pick(g, browsers)
			}
			p.devices = append(p.devices, d)
		}
		if cfg.Preference > 0 {
			p.likes = g.pref.IntN(len(categories))
			for range 3 {
				p.favs = append(p.favs, g.inCategory(g.pref.IntN(len(g.products)), p.likes))
			}
		}
		g.schedule(0, p.rate, kindSession, i)
		if p.loyalty != "" {
			g.schedule(0, cfg.StoreVisitsPerDay, kindStore, i)
		}
		if crm {
			g.push(&item{at: g.rng.Int64N(g.horizon), kind: kindEmit, person: i, ev: g.crmRow(i)})
		}
	}
	// Family devices: a borrower uses an owner's device (never cookie-churned,
	// always sign-in capable), signing in with their own user id.
	if len(accounts) < 2 {
		return
	}
	for _, b := range accounts {
		if !g.chance(cfg.SharedDeviceRate) {
			continue
		}
		o := accounts[g.rng.IntN(len(accounts))]
		if o == b {
			continue
		}
		d := g.people[o].devices[0]
		d.shared, d.neverLogin = true, false
		g.people[b].borrowed = d
	}
}

// pending is an event built but not yet emitted: messageId and timestamp
// are set at emission.
type pending struct {
	source string
	msg    map[string]any
	ids    []owned
}

// owned is an identifier carried by an event and its owner.
type owned struct {
	id    Identifier
	owner int
}

func (g *Generator) emit(it *item) Event {
	ts := g.cfg.Start.Add(time.Duration(float64(it.at) / g.cfg.TimeCompression * float64(time.Millisecond))).UTC()
	ev := it.ev
	ev.msg["messageId"] = g.newID("msg_")
	ev.msg["timestamp"] = ts.Format("2006-01-02T15:04:05.000Z07:00")
	data, err := json.Marshal(ev.msg)
	if err != nil {
		panic(fmt.Sprintf("workload: encode event: %v", err)) // only plain values are generated
	}
	for _, o := range ev.ids {
		g.truth.Add(o.id, o.owner)
		if o.owner != it.person {
			g.truth.Add(o.id, it.person)
		}
	}
	return Event{Source: ev.source, JSON: data, Person: it.person, Time: ts}
}

func (g *Generator) crmRow(i int) *pending {
	p := &g.people[i]
	traits := map[string]any{"email": p.email, "first_name": p.first, "country": p.country}
	ids := []owned{{Identifier{"email", p.email}, i}}
	msg := map[string]any{"type": "identify", "traits": traits}
	if p.userID != "" {
		msg["userId"] = p.userID
		ids = append(ids, owned{Identifier{"user_id", p.userID}, i})
	}
	if p.loyalty != "" {
		traits["loyalty_tier"] = p.tier
		msg["context"] = map[string]any{"externalIds": loyaltyIDs(p.loyalty)}
		ids = append(ids, owned{Identifier{"loyalty_id", p.loyalty}, i})
	}
	return &pending{source: "crm", msg: msg, ids: ids}
}

func loyaltyIDs(id string) []any {
	return []any{map[string]any{"id": id, "type": "loyalty_id", "collection": "users", "encoding": "none"}}
}

// basket draws 1..n Zipf-distributed products.
func (g *Generator) basket(n int) []int {
	out := make([]int, 1+g.rng.IntN(n))
	for i := range out {
		out[i] = int(g.zipf.Uint64())
	}
	return out
}

// orderProps are the properties of an order of the products.
func (g *Generator) orderProps(orderID string, items []int) (map[string]any, float64) {
	var revenue float64
	lines := make([]any, len(items))
	for i, k := range items {
		pr := g.products[k]
		revenue += pr.price
		lines[i] = map[string]any{"sku": pr.sku, "name": pr.name, "category": pr.category, "price": pr.price, "quantity": 1}
	}
	revenue = math.Round(revenue*100) / 100
	shipping := 0.0
	if revenue < 50 {
		shipping = 4.95
	}
	return map[string]any{
		"order_id": orderID, "revenue": revenue, "total": math.Round((revenue+shipping)*100) / 100,
		"shipping": shipping, "currency": "EUR", "products": lines,
	}, revenue
}

// refund schedules, with RefundRate, an "Order Refunded" 1-14 days after an
// order, from source with base's identifiers.
func (g *Generator) refund(at int64, person int, source string, base map[string]any, ids []owned, orderID string, amount float64) {
	if !g.chance(g.cfg.RefundRate) {
		return
	}
	msg := map[string]any{"type": "track", "event": "Order Refunded", "properties": map[string]any{
		"order_id": orderID, "revenue": amount, "total": amount, "currency": "EUR", "reason": pick(g, refundReasons),
	}}
	for k, v := range base {
		msg[k] = v
	}
	at += dayMs + g.rng.Int64N(13*dayMs)
	g.push(&item{at: at, kind: kindEmit, person: person, ev: &pending{source: source, msg: msg, ids: ids}})
}

func (g *Generator) storeVisit(at int64, pi int) {
	p := &g.people[pi]
	g.schedule(at, g.cfg.StoreVisitsPerDay, kindStore, pi)
	store := p.store
	if g.chance(0.2) {
		store = g.rng.IntN(stores)
	}
	orderID := g.newID("ord_")
	props, revenue := g.orderProps(orderID, g.basket(4))
	props["store"] = fmt.Sprintf("store-%02d", store)
	ids := []owned{{Identifier{"loyalty_id", p.loyalty}, pi}}
	msg := map[string]any{"type": "track", "event": "Order Completed", "properties": props,
		"context": map[string]any{"channel": "pos", "externalIds": loyaltyIDs(p.loyalty)}}
	g.push(&item{at: at, kind: kindEmit, person: pi, ev: &pending{source: "pos", msg: msg, ids: ids}})
	g.refund(at, pi, "pos", map[string]any{"context": map[string]any{"channel": "pos", "externalIds": loyaltyIDs(p.loyalty)}}, ids, orderID, revenue)
}

// session expands one online session of person pi starting at at into
// events, and schedules the person's next session.
func (g *Generator) session(at int64, pi int) {
	p := &g.people[pi]
	g.schedule(at, p.rate, kindSession, pi)
	d := p.devices[g.rng.IntN(len(p.devices))]
	if b := p.borrowed; b != nil && b.ownerSignedIn && g.chance(borrowRate) {
		d = b
	}
	s := &sess{g: g, p: p, pi: pi, d: d, t: at}
	if !d.app && !d.shared && g.chance(g.cfg.CookieChurnRate) {
		d.anon, d.user = g.newID("anon_"), -1
	}
	// Sign-in: the owner of a shared device signs in on their first
	// session there (so a family member's later use cannot claim it); a
	// family member usually signs in; others sometimes, where they can.
	views := 1 + min(int(g.rng.ExpFloat64()*4), maxViews-1)
	loginAt := -1
	switch {
	case d.shared && d.owner == pi && !d.ownerSignedIn:
		loginAt = 0
	case d.shared && d.owner != pi:
		if g.chance(borrowLoginRate) {
			loginAt = g.rng.IntN(views)
		}
	case p.userID != "" && !d.neverLogin && d.user != pi && g.chance(g.cfg.LoginRate):
		loginAt = g.rng.IntN(views)
	}

	s.landing()
	var cart []int
	for v := range views {
		if v == loginAt {
			s.login()
		}
		k := g.taste(p, int(g.zipf.Uint64()))
		pr := g.products[k]
		props := map[string]any{"sku": pr.sku, "name": pr.name, "category": pr.category, "price": pr.price, "currency": "EUR"}
		s.track("Product Viewed", props)
		if g.chance(0.3) {
			add := map[string]any{"sku": pr.sku, "name": pr.name, "category": pr.category, "price": pr.price, "quantity": 1, "currency": "EUR"}
			s.track("Product Added", add)
			cart = append(cart, k)
		}
	}
	if len(cart) > 0 && g.chance(g.cfg.OrderRate) {
		switch {
		case d.user == pi:
			s.order(cart, false)
		case p.userID != "" && !d.neverLogin:
			s.login()
			s.order(cart, false)
		case p.userID == "" && p.email != "":
			s.order(cart, true) // guest checkout with an email
		}
	}
	if !d.app && p.userID == "" && p.email != "" && g.chance(newsletterRate) {
		msg, ids := s.base("identify", map[string]any{"traits": map[string]any{"email": p.email}})
		s.emit(msg, ids, owned{Identifier{"email", p.email}, pi})
	}
	if d.shared {
		d.user = -1 // family devices are signed out after use
	}
}

// sess is a session being expanded.
type sess struct {
	g  *Generator
	p  *person
	pi int
	d  *device
	t  int64
}

// base returns a message of type typ from the session's device with the
// extra fields, and the identifiers it carries.
func (s *sess) base(typ string, extra map[string]any) (map[string]any, []owned) {
	d := s.d
	msg := map[string]any{"type": typ, "anonymousId": d.anon}
	ids := []owned{{Identifier{"anonymous_id", d.anon}, d.owner}}
	if d.user >= 0 {
		u := s.g.people[d.user].userID
		msg["userId"] = u
		ids = append(ids, owned{Identifier{"user_id", u}, d.user})
	}
	var ctx map[string]any
	if d.app {
		ctx = map[string]any{"channel": "mobile", "device": map[string]any{"type": d.ua},
			"app": map[string]any{"name": "Aurum Shop", "version": "4.2.0"}, "os": map[string]any{"name": d.ua}}
	} else {
		ctx = map[string]any{"channel": "web", "userAgent": d.ua, "library": map[string]any{"name": "analytics.js", "version": "2.11.1"}}
	}
	msg["context"] = ctx
	for k, v := range extra {
		if k == "context" {
			for ck, cv := range v.(map[string]any) {
				ctx[ck] = cv
			}
			continue
		}
		msg[k] = v
	}
	return msg, ids
}

// emit queues an event at the session's clock and advances it by 5-120 s.
func (s *sess) emit(msg map[string]any, ids []owned, more ...owned) {
	src := "web"
	if s.d.app {
		src = "app"
	}
	s.g.push(&item{at: s.t, kind: kindEmit, person: s.pi, ev: &pending{source: src, msg: msg, ids: append(ids, more...)}})
	s.t += 5000 + s.g.rng.Int64N(115_000)
}

func (s *sess) landing() {
	name := pick(s.g, []string{"Home", "Home", "Category", "Sale"})
	if s.d.app {
		s.emit(s.base("screen", map[string]any{"name": name}))
		return
	}
	path := "/"
	if name != "Home" {
		path = "/" + strings.ToLower(name)
	}
	s.emit(s.base("page", map[string]any{"name": name, "properties": map[string]any{"path": path},
		"context": map[string]any{"page": map[string]any{"url": "https://shop.example" + path, "path": path}}}))
}

func (s *sess) login() {
	s.d.user = s.pi
	if s.d.shared && s.d.owner == s.pi {
		s.d.ownerSignedIn = true
	}
	s.emit(s.base("track", map[string]any{"event": "Signed In", "properties": map[string]any{"method": "password"}}))
}

func (s *sess) track(name string, props map[string]any) {
	s.emit(s.base("track", map[string]any{"event": name, "properties": props}))
}

// order emits "Order Completed" for the cart; a guest order carries the
// person's email in context.traits.
func (s *sess) order(cart []int, guest bool) {
	g := s.g
	orderID := g.newID("ord_")
	props, revenue := g.orderProps(orderID, cart)
	extra := map[string]any{"event": "Order Completed", "properties": props}
	var more []owned
	if guest {
		extra["context"] = map[string]any{"traits": map[string]any{"email": s.p.email}}
		more = append(more, owned{Identifier{"email", s.p.email}, s.pi})
	}
	msg, ids := s.base("track", extra)
	at := s.t
	s.emit(msg, ids, more...)
	// The refund comes from the shop's backend: the user id, else the
	// guest's email.
	var base map[string]any
	var rids []owned
	if guest {
		base = map[string]any{"context": map[string]any{"channel": "server", "traits": map[string]any{"email": s.p.email}}}
		rids = []owned{{Identifier{"email", s.p.email}, s.pi}}
	} else {
		base = map[string]any{"userId": s.p.userID, "context": map[string]any{"channel": "server"}}
		rids = []owned{{Identifier{"user_id", s.p.userID}, s.pi}}
	}
	src := "web"
	if s.d.app {
		src = "app"
	}
	g.refund(at, s.pi, src, base, rids, orderID, revenue)
}

// Queue of pending items, ordered by simulated time then push order.

type itemKind uint8

const (
	kindSession itemKind = iota // expand a person's online session
	kindStore                   // expand a person's store visit
	kindEmit                    // emit a built event
)

type item struct {
	at     int64
	seq    uint64
	kind   itemKind
	person int
	ev     *pending
}

func (g *Generator) push(it *item) {
	it.seq = g.seq
	g.seq++
	heap.Push(&g.q, it)
}

type queue []*item

func (q queue) Len() int { return len(q) }
func (q queue) Less(i, j int) bool {
	if q[i].at != q[j].at {
		return q[i].at < q[j].at
	}
	return q[i].seq < q[j].seq
}
func (q queue) Swap(i, j int) { q[i], q[j] = q[j], q[i] }
func (q *queue) Push(x any)   { *q = append(*q, x.(*item)) }
func (q *queue) Pop() any {
	old := *q
	it := old[len(old)-1]
	old[len(old)-1] = nil
	*q = old[:len(old)-1]
	return it
}
