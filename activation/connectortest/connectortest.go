// Package connectortest is test support for connectors: the one suite
// every connector kind passes against a local fake of its API (Run), and
// what the fakes share (Faults: an outage or throttling switched on and
// off by the test; Book: who the tool holds and what it was sent).
//
// The fakes themselves live beside their connector, in its test code,
// written from the tool's public API documentation.
package connectortest

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aurumcdp/aurum/activation"
	"github.com/aurumcdp/aurum/engine"
	"github.com/aurumcdp/aurum/engine/privacy"
	"github.com/aurumcdp/aurum/event"
	"github.com/aurumcdp/aurum/internal/check"
	"github.com/aurumcdp/aurum/internal/testnode"
	"github.com/aurumcdp/aurum/projections/audience"
)

// Fault is what a fake answers instead of doing its job.
type Fault int32

// Faults a test switches on.
const (
	NoFault  Fault = iota
	Throttle       // the API's throttling answer (429 and Retry-After, or its own code)
	Outage         // 5xx
)

// Faults is the switch a fake reads on every request.
type Faults struct{ v atomic.Int32 }

// Set switches f on (NoFault: off).
func (s *Faults) Set(f Fault) { s.v.Store(int32(f)) }

// Get is the fault in force.
func (s *Faults) Get() Fault { return Fault(s.v.Load()) }

// Book is what a fake tool holds: per list (audience) the people on it, and
// the messages each person was sent; it counts duplicates (an add of
// someone already on the list, a second message for one entry).
type Book struct {
	mu       sync.Mutex
	lists    map[string]map[string]bool // audience → person key → on the list
	sent     map[string]int             // person key → messages
	deleted  map[string]bool            // person keys whose record was deleted
	removals map[string]int             // person key → removals from a list asked for
	dups     int
	requests int
}

// NewBook returns an empty Book.
func NewBook() *Book {
	return &Book{lists: map[string]map[string]bool{}, sent: map[string]int{}, deleted: map[string]bool{},
		removals: map[string]int{}}
}

// Request counts one request that did the tool's job.
func (b *Book) Request() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.requests++
}

// Requests is the number of requests that did the tool's job.
func (b *Book) Requests() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.requests
}

// Add puts key on list; a key already there is a duplicate.
func (b *Book) Add(list, key string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	l := b.lists[list]
	if l == nil {
		l = map[string]bool{}
		b.lists[list] = l
	}
	if l[key] {
		b.dups++
	}
	l[key] = true
	delete(b.deleted, key)
}

// Remove takes key off list (whether or not it is on it).
func (b *Book) Remove(list, key string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	delete(b.lists[list], key)
	b.removals[key]++
}

// Removals is the number of times the tool was asked to take key off a
// list.
func (b *Book) Removals(key string) int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.removals[key]
}

// Delete deletes key's record (and takes it off every list).
func (b *Book) Delete(key string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, l := range b.lists {
		delete(l, key)
	}
	b.deleted[key] = true
}

// Send records a message to key.
func (b *Book) Send(key string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.sent[key]++
	if b.sent[key] > 1 {
		b.dups++
	}
}

// On reports whether key is on list.
func (b *Book) On(list, key string) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.lists[list][key]
}

// Sent is the number of messages key got.
func (b *Book) Sent(key string) int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.sent[key]
}

// Deleted reports whether key's record was deleted.
func (b *Book) Deleted(key string) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.deleted[key]
}

// Dups is the number of duplicates seen.
func (b *Book) Dups() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.dups
}

// Size is the number of people on list.
func (b *Book) Size(list string) int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.lists[list])
}

// Case is one connector kind under the suite.
type Case struct {
	Kind string
	// Config is the destination's config against the fake at url.
	Config func(url string) json.RawMessage
	// Handler is the fake API; it records into Book and reads Faults.
	// nil: the fake serves something else than HTTP (Config gets "").
	Handler http.Handler
	Book    *Book
	Faults  *Faults
	// Key is how the fake names a person (email, phone, or a hash of
	// either): the suite's people have Email and Phone.
	Key func(email, phone string) string
	// Messages: the tool sends a message per entry (email, SMS) instead
	// of keeping a list.
	Messages bool
	// Deletes: an erasure deletes the person's record in the tool.
	Deletes bool
}

// Members is the size of the first sync: 300 (a CI budget), or 10,000 with
// AURUM_LONG=1 (the figure; it takes longer under -race).
func Members() int {
	if long() {
		return 10000
	}
	return 300
}

// Person i of the suite.
func Email(i int) string { return fmt.Sprintf("p%d@example.com", i) }

// Phone of person i (E.164).
func Phone(i int) string { return fmt.Sprintf("+4520%06d", i) }

// noConsent reports whether person i states no consent for the kind's
// channel (every 10th).
func noConsent(i int) bool { return i%10 == 3 }

// Node starts a node for connector tests: fast retries (a minute of
// backoff compressed into a second), no ticks.
func Node(t *testing.T) *engine.Engine {
	return testnode.Engine(t, engine.Options{TickPeriod: -1, WebhookTimeout: 5 * time.Second,
		WebhookBackoffMin: 20 * time.Millisecond, WebhookBackoffMax: 400 * time.Millisecond, WebhookMaxAttempts: 10000,
		ConnectorConsentSweep: 50 * time.Millisecond, ErasureRetry: 100 * time.Millisecond})
}

// Ingest sends identify events: person i with plan, their email and phone
// as traits, and consent for channel withheld for every 10th.
func Ingest(ctx context.Context, t *testing.T, e *engine.Engine, channel string, from, to int, plan string) {
	t.Helper()
	const batch = 500
	for lo := from; lo < to; lo += batch {
		var evs []event.Event
		for i := lo; i < min(lo+batch, to); i++ {
			consent := ""
			if noConsent(i) {
				consent = fmt.Sprintf(`,"consent":{%q:false}`, channel)
			}
			doc := fmt.Sprintf(`{"type":"identify","userId":"u-%d","messageId":"m-%d-%s","traits":{"email":%q,"phone":%q,"plan":%q,"first_name":"P%d"%s}}`,
				i, i, plan, Email(i), Phone(i), plan, i, consent)
			ev, err := event.Parse([]byte(doc), "", e.Edge().ParseOptions())
			if err != nil {
				t.Fatal(err)
			}
			evs = append(evs, ev)
		}
		if err := e.Edge().Ingest(ctx, "web", evs); err != nil {
			t.Fatal(err)
		}
	}
}

// Setup creates the source and the audience "vip" (traits.plan == "gold").
func Setup(ctx context.Context, t *testing.T, e *engine.Engine) {
	t.Helper()
	if _, err := e.Gate().CreateSource(ctx, "web"); err != nil {
		t.Fatal(err)
	}
	if _, err := e.PutAudience(ctx, audience.Definition{Name: "vip", Rule: `traits.plan == "gold"`}); err != nil {
		t.Fatal(err)
	}
}

// WaitSize waits until audience vip has n members.
func WaitSize(t *testing.T, e *engine.Engine, n int) {
	t.Helper()
	check.For(t, 60*time.Second, 20*time.Millisecond, func() error {
		a, err := e.Reader().Audience("vip")
		if err != nil {
			return err
		}
		if a.Size != int64(n) {
			return fmt.Errorf("vip has %d members, want %d", a.Size, n)
		}
		return nil
	})
}

// Stats returns destination name's statistics.
func Stats(e *engine.Engine, name string) (activation.DestStats, error) {
	d, err := e.Destination(name)
	return d.Stats, err
}

// Run is the suite: on one node,
//   - a first sync of Members() people while more enter meanwhile (no gap,
//     no duplicate between the sync and the changes);
//   - entries and exits while the API throttles, then fails with 5xx,
//     then recovers: nothing lost, nothing sent twice;
//   - consent: people without consent for the kind's channel are never
//     added or sent (and are removed from lists), and a member on a list
//     who withdraws consent is removed from it;
//   - erasure: an erased person leaves the tool's lists (and their record
//     is deleted where the API allows);
//   - no dead letter.
func Run(t *testing.T, c Case) {
	ctx, cancel := context.WithTimeout(context.Background(), scaled(3*time.Minute))
	defer cancel()
	begin := time.Now()
	srv := ""
	if c.Handler != nil {
		srv = newServer(t, c.Handler)
	}
	e := Node(t)
	Setup(ctx, t, e)
	channel := activation.Kinds()[c.Kind].Channel
	n := Members()
	Ingest(ctx, t, e, channel, 0, n, "gold")
	WaitSize(t, e, n)

	// The first sync, with people entering while it runs.
	const during = 60
	var wg sync.WaitGroup
	wg.Add(1)
	start := time.Now()
	if _, err := e.PutDestination(ctx, activation.Destination{Name: "dest", Kind: c.Kind, Config: c.Config(srv), Audiences: []string{"vip"}}); err != nil {
		t.Fatal(err)
	}
	go func() {
		defer wg.Done()
		for lo := n; lo < n+during; lo += 50 {
			Ingest(ctx, t, e, channel, lo, min(lo+50, n+during), "gold")
		}
	}()
	wg.Wait()
	in := map[int]bool{}
	for i := range n + during {
		in[i] = true
	}
	expect(t, e, c, in, "first sync")
	st, _ := Stats(e, "dest")
	t.Logf("%s: first sync of %d members and %d entries during it: %v (%d requests)", c.Kind, n, during, time.Since(start).Round(time.Millisecond), c.Book.requests)
	if st.FirstSync != activation.SyncDone {
		t.Fatalf("first sync %q", st.FirstSync)
	}

	// Throttled, then failing, while people enter and leave.
	total := n + during
	c.Faults.Set(Throttle)
	Ingest(ctx, t, e, channel, 0, 50, "silver") // 50 exits
	Ingest(ctx, t, e, channel, total, total+50, "gold")
	for i := range 50 {
		delete(in, i)
		in[total+i] = true
	}
	waitFailures(t, e, 3)
	c.Faults.Set(Outage)
	base, _ := Stats(e, "dest")
	waitFailures(t, e, base.FailedAttempts+3)
	changes := 100
	if long() {
		// The figure: 5xx for a minute, with 50 more exits and
		// entries while it lasts.
		outage := time.Now()
		Ingest(ctx, t, e, channel, 100, 150, "silver")
		Ingest(ctx, t, e, channel, total+50, total+100, "gold")
		for i := range 50 {
			delete(in, 100+i)
			in[total+50+i] = true
		}
		changes += 100
		pace(ctx, time.Minute-time.Since(outage))
	}
	before := c.Book.Requests()
	c.Faults.Set(NoFault)
	failed, _ := Stats(e, "dest")
	t.Logf("%s: throttled, then failing: %d failed attempts", c.Kind, failed.FailedAttempts)
	mark := time.Now()
	expect(t, e, c, in, "after throttling and an outage")
	// The changes held back went out in batches, not one request each (a
	// tool that keeps a list takes many people per request).
	reqs := c.Book.Requests() - before
	t.Logf("%s: caught up %v after the outage, %d requests for %d changes", c.Kind, time.Since(mark).Round(time.Millisecond), reqs, changes)
	if !c.Messages && reqs >= changes/2 {
		t.Fatalf("%d requests for %d changes: not batched", reqs, changes)
	}
	mark = time.Now()

	// Erasure of a member on the list.
	victim := 60
	if _, err := e.Privacy().RequestErasure(ctx, "email:"+Email(victim)); err != nil {
		t.Fatal(err)
	}
	delete(in, victim)
	expect(t, e, c, in, "after an erasure")
	t.Logf("%s: erasure reached the tool in %v", c.Kind, time.Since(mark).Round(time.Millisecond))
	if c.Deletes {
		check.For(t, 20*time.Second, 20*time.Millisecond, func() error {
			if !c.Book.Deleted(c.Key(Email(victim), Phone(victim))) {
				return fmt.Errorf("the erased person's record is not deleted")
			}
			return nil
		})
	}

	// Consent withdrawn by a member on the list: no transition, so the
	// consent sweep removes them where the tool keeps a list.
	if !c.Messages {
		quitter := 70
		if err := e.Privacy().SetConsent(ctx, "email:"+Email(quitter), map[string]bool{channel: false}); err != nil {
			t.Fatal(err)
		}
		delete(in, quitter)
		expect(t, e, c, in, "after a consent withdrawal")
	}
	if !c.Messages {
		eraseFormer(ctx, t, e, c, channel, in)
	}
	st, _ = Stats(e, "dest")
	if st.DeadLettered != 0 {
		t.Fatalf("%d dead letters: %s", st.DeadLettered, st.LastError)
	}
	if d := c.Book.Dups(); d != 0 {
		t.Fatalf("%d duplicates", d)
	}
	// expect checked, person by person, that nobody is missing (lost 0).
	t.Logf("%s: figures: %d members, %v in all, %d requests, %d failed attempts, duplicates 0, lost 0",
		c.Kind, n, time.Since(begin).Round(time.Second), c.Book.Requests(), st.FailedAttempts)
}

// long reports whether the suite runs at the size (AURUM_LONG).
func long() bool { return os.Getenv("AURUM_LONG") != "" }

// scaled is d, or ten times d at the size (a first sync of 10,000
// under a loaded machine).
func scaled(d time.Duration) time.Duration {
	if long() {
		return 10 * d
	}
	return d
}

// pace waits d (the length of a fault: the suite holds the tool down for
// it) or until ctx ends.
func pace(ctx context.Context, d time.Duration) {
	if d <= 0 {
		return
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
}

// eraseFormer erases a person who left the audience (off the tool's
// list, but the tool may still hold them: a CRM contact) while the tool
// fails: the erasure's status shows the destination not done and the
// erasure not completed; once the tool is back, the erasure reaches it
// (the record deleted, or a removal sent) and completes with the
// destination done.
func eraseFormer(ctx context.Context, t *testing.T, e *engine.Engine, c Case, channel string, in map[int]bool) {
	t.Helper()
	former := 80
	Ingest(ctx, t, e, channel, former, former+1, "bronze") // an exit
	delete(in, former)
	expect(t, e, c, in, "after the exit of a member")
	key := c.Key(Email(former), Phone(former))
	removals := c.Book.Removals(key)
	c.Faults.Set(Outage)
	er, err := e.Privacy().RequestErasure(ctx, "email:"+Email(former))
	if err != nil {
		t.Fatal(err)
	}
	check.For(t, 60*time.Second, 20*time.Millisecond, func() error {
		info, err := e.Privacy().Erasure(er.ID)
		if err != nil {
			return err
		}
		if info.Status == privacy.ErasureCompleted {
			t.Fatalf("the erasure completed while the tool that holds the person fails: %+v", info)
		}
		if len(info.Destinations) != 1 || info.Destinations[0].Name != "dest" {
			return fmt.Errorf("erasure destinations %+v, want dest", info.Destinations)
		}
		if d := info.Destinations[0]; d.Status == activation.ErasureDone || d.Error == "" {
			t.Fatalf("the failing destination shows %+v", d)
		}
		return nil
	})
	c.Faults.Set(NoFault)
	mark := time.Now()
	check.For(t, 60*time.Second, 20*time.Millisecond, func() error {
		info, err := e.Privacy().Erasure(er.ID)
		if err != nil {
			return err
		}
		if info.Status != privacy.ErasureCompleted {
			return fmt.Errorf("erasure %s: %+v", info.Status, info.Destinations)
		}
		want := []activation.DestinationErasure{{Name: "dest", Status: activation.ErasureDone}}
		if !slices.Equal(info.Destinations, want) {
			t.Fatalf("completed erasure's destinations %+v, want %+v", info.Destinations, want)
		}
		return nil
	})
	if c.Deletes && !c.Book.Deleted(key) {
		t.Fatalf("the erased former member's record is not deleted")
	}
	if !c.Deletes && c.Book.Removals(key) <= removals {
		t.Fatalf("the erased former member was not removed from the tool")
	}
	t.Logf("%s: erasure of a former member completed %v after the tool recovered", c.Kind, time.Since(mark).Round(time.Millisecond))
}

// expect waits until the tool holds (or was sent to) exactly the people of
// in that consented, and never anyone else.
func expect(t *testing.T, e *engine.Engine, c Case, in map[int]bool, when string) {
	t.Helper()
	hi := 0
	for i := range in {
		hi = max(hi, i+1)
	}
	hi = max(hi, Members()+200)
	check.For(t, scaled(90*time.Second), 50*time.Millisecond, func() error {
		for i := range hi {
			k := c.Key(Email(i), Phone(i))
			want := in[i] && !noConsent(i)
			if c.Messages {
				got := c.Book.Sent(k)
				if noConsent(i) && got != 0 {
					t.Fatalf("%s: person %d has no consent and was sent %d messages", when, i, got)
				}
				if want && got == 0 {
					return fmt.Errorf("%s: person %d was not sent a message", when, i)
				}
				continue
			}
			if got := c.Book.On("vip", k); got != want {
				if noConsent(i) && got {
					t.Fatalf("%s: person %d has no consent and is on the list", when, i)
				}
				return fmt.Errorf("%s: person %d on the list: %v, want %v", when, i, got, want)
			}
		}
		if d := c.Book.Dups(); d != 0 {
			t.Fatalf("%s: %d duplicates", when, d)
		}
		return nil
	})
}

func waitFailures(t *testing.T, e *engine.Engine, n uint64) {
	t.Helper()
	check.For(t, 30*time.Second, 10*time.Millisecond, func() error {
		st, err := Stats(e, "dest")
		if err != nil {
			return err
		}
		if st.FailedAttempts < n {
			return fmt.Errorf("%d failed attempts, want %d", st.FailedAttempts, n)
		}
		return nil
	})
}

// KeyEmail names people by email.
func KeyEmail(email, _ string) string { return email }

// KeyPhone names people by phone.
func KeyPhone(_, phone string) string { return phone }

func newServer(t *testing.T, h http.Handler) string {
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv.URL
}
