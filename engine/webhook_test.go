package engine_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/aurumcdp/aurum/activation"
	"github.com/aurumcdp/aurum/engine"
	"github.com/aurumcdp/aurum/event"
	"github.com/aurumcdp/aurum/internal/check"
	"github.com/aurumcdp/aurum/internal/testnode"
	"github.com/aurumcdp/aurum/projections/audience"
)

// hook records the deliveries a webhook endpoint accepted.
type hook struct {
	mu      sync.Mutex
	secret  string
	failing bool                 // answer 500 (an outage) while set
	got     map[string]time.Time // delivery id → when accepted
	dups    int
	badSig  int
}

func (h *hook) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	h.mu.Lock()
	defer h.mu.Unlock()
	if err := activation.Verify(h.secret, r.Header.Get("Aurum-Signature"), body, time.Now(), time.Minute); err != nil {
		h.badSig++
		w.WriteHeader(http.StatusUnauthorized)
		return
	}
	if h.failing {
		w.WriteHeader(http.StatusInternalServerError)
		return
	}
	id := r.Header.Get("Aurum-Delivery")
	if _, ok := h.got[id]; ok {
		h.dups++
	}
	h.got[id] = time.Now()
	w.WriteHeader(http.StatusOK)
}

func (h *hook) setFailing(v bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.failing = v
}

func (h *hook) count() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.got)
}

// TestWebhooksFailingAndHealthy: a webhook endpoint that fails for a while
// receives every transition once it recovers, while a healthy second
// endpoint on the same audience is not delayed meanwhile (it gets every
// transition while the other is still failing and being retried; the test
// ends the outage only then, so no wall-clock window is involved). Requests
// are signed (HMAC-SHA256) and each transition arrives once per endpoint.
func TestWebhooksFailingAndHealthy(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	e := testnode.Engine(t, engine.Options{
		TickPeriod:        -1,
		WebhookBackoffMin: 50 * time.Millisecond, WebhookBackoffMax: 200 * time.Millisecond, WebhookMaxAttempts: 1000,
	})
	if _, err := e.Gate().CreateSource(ctx, "web"); err != nil {
		t.Fatal(err)
	}
	if _, err := e.PutAudience(ctx, audience.Definition{Name: "buyers", Rule: `count("Order Completed") >= 1`}); err != nil {
		t.Fatal(err)
	}
	flaky := &hook{secret: "flaky-secret-0123456789", failing: true, got: map[string]time.Time{}}
	healthy := &hook{secret: "healthy-secret-0123456789", got: map[string]time.Time{}}
	fs, hs := httptest.NewServer(flaky), httptest.NewServer(healthy)
	defer fs.Close()
	defer hs.Close()
	for name, h := range map[string]struct {
		url, secret string
	}{"flaky": {fs.URL, flaky.secret}, "healthy": {hs.URL, healthy.secret}} {
		if _, err := e.PutDestination(ctx, activation.Destination{Name: name, URL: h.url, Secret: h.secret, Audiences: []string{"buyers"}, Channel: "email"}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := e.PutDestination(ctx, activation.Destination{Name: "bad", URL: "ftp://x", Secret: "short", Audiences: []string{"buyers"}}); err == nil {
		t.Fatal("an invalid destination was accepted")
	}

	const n = 20
	var evs []event.Event
	for i := range n {
		ev, err := event.Parse([]byte(fmt.Sprintf(`{"type":"track","event":"Order Completed","userId":"w-%d","messageId":"w-%d"}`, i, i)), "", e.Edge().ParseOptions())
		if err != nil {
			t.Fatal(err)
		}
		evs = append(evs, ev)
	}
	if err := e.Edge().Ingest(ctx, "web", evs); err != nil {
		t.Fatal(err)
	}
	check.For(t, 20*time.Second, 10*time.Millisecond, func() error {
		if got := healthy.count(); got < n {
			return fmt.Errorf("the healthy endpoint got %d of %d while the other is failing", got, n)
		}
		return nil
	})
	// The failing endpoint was tried (and retried) meanwhile.
	check.For(t, 20*time.Second, 10*time.Millisecond, func() error {
		ds, err := e.Destinations()
		if err != nil {
			return err
		}
		for _, d := range ds {
			if d.Name == "flaky" && d.Stats.FailedAttempts >= 2 {
				return nil
			}
		}
		return fmt.Errorf("the failing endpoint was not retried: %+v", ds)
	})
	if flaky.count() != 0 {
		t.Fatalf("the failing endpoint accepted %d during its outage", flaky.count())
	}
	flaky.setFailing(false) // the outage ends
	check.For(t, 20*time.Second, 10*time.Millisecond, func() error {
		if got := flaky.count(); got < n {
			return fmt.Errorf("after recovering the endpoint got %d of %d transitions", got, n)
		}
		return nil
	})
	for name, h := range map[string]*hook{"flaky": flaky, "healthy": healthy} {
		h.mu.Lock()
		if h.dups != 0 || h.badSig != 0 {
			t.Errorf("%s: %d duplicate deliveries, %d bad signatures", name, h.dups, h.badSig)
		}
		h.mu.Unlock()
	}
	// The endpoint answers before the worker counts the answer: poll.
	check.For(t, 10*time.Second, 10*time.Millisecond, func() error {
		ds, err := e.Destinations()
		if err != nil || len(ds) != 2 || ds[0].Stats.Delivered != n || ds[0].Stats.FailedAttempts == 0 || ds[1].Stats.FailedAttempts != 0 {
			return fmt.Errorf("destinations %+v (%v)", ds, err)
		}
		return nil
	})
	// A destination created now gets the transitions from now on, not the
	// retained history.
	late := &hook{secret: "late-secret-0123456789", got: map[string]time.Time{}}
	ls := httptest.NewServer(late)
	defer ls.Close()
	if _, err := e.PutDestination(ctx, activation.Destination{Name: "late", URL: ls.URL, Secret: late.secret, Audiences: []string{"buyers"}, Channel: "sms"}); err != nil {
		t.Fatal(err)
	}
	var more []event.Event
	for i := n; i < n+5; i++ {
		ev, err := event.Parse([]byte(fmt.Sprintf(`{"type":"track","event":"Order Completed","userId":"w-%d","messageId":"w-%d"}`, i, i)), "", e.Edge().ParseOptions())
		if err != nil {
			t.Fatal(err)
		}
		more = append(more, ev)
	}
	if err := e.Edge().Ingest(ctx, "web", more); err != nil {
		t.Fatal(err)
	}
	check.For(t, 20*time.Second, 10*time.Millisecond, func() error {
		if healthy.count() < n+5 || late.count() < 5 {
			return fmt.Errorf("new transitions: healthy %d of %d, late %d of 5", healthy.count(), n+5, late.count())
		}
		return nil
	})
	// A destination's consumer delivers in stream order, one message at a
	// time: an old transition in its range would have come before the new
	// ones. So with the 5 new ones delivered and nothing left after them
	// (Lag 0), no old transition can still arrive. (The endpoint answers
	// before the worker counts the answer: poll the worker's view.)
	check.For(t, 20*time.Second, 10*time.Millisecond, func() error {
		d, err := e.Destination("late")
		if err != nil {
			return err
		}
		if d.Stats.Delivered < 5 || d.Stats.Lag != 0 {
			return fmt.Errorf("late destination stats %+v, want 5 delivered and nothing pending", d.Stats)
		}
		return nil
	})
	if d, err := e.Destination("late"); err != nil || d.Stats.Delivered != 5 {
		t.Fatalf("late destination: %+v, %v; want 5 delivered", d.Stats, err)
	}
	if late.count() != 5 {
		t.Fatalf("the destination created later got %d transitions, want only the 5 after its creation", late.count())
	}
	if err := e.DeleteDestination(ctx, "flaky"); err != nil {
		t.Fatal(err)
	}
	if ds, _ := e.Destinations(); len(ds) != 2 || ds[0].Name != "healthy" || ds[1].Name != "late" {
		t.Fatalf("after delete: %+v", ds)
	}
}
