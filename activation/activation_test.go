package activation

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aurumcdp/aurum/activation/connector"
	"github.com/aurumcdp/aurum/internal/check"
	alog "github.com/aurumcdp/aurum/log"
)

// testNow is the injected clock: signatures are checked against it.
var testNow = time.Unix(1_700_000_000, 0)

const testSecret = "s3cret-s3cret-s3cret"

// syncBuffer is a log sink printed when a test fails.
type syncBuffer struct {
	mu  sync.Mutex
	buf strings.Builder
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

// testLogger returns a debug logger whose output is shown if t fails.
func testLogger(t testing.TB) *slog.Logger {
	b := &syncBuffer{}
	t.Cleanup(func() {
		if t.Failed() {
			b.mu.Lock()
			defer b.mu.Unlock()
			t.Logf("logs:\n%s", b.buf.String())
		}
	})
	return slog.New(slog.NewTextHandler(b, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

func openLog(t testing.TB) *alog.Log {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	logger := testLogger(t)
	l, err := alog.Open(ctx, alog.Options{Dir: t.TempDir(), Listen: "127.0.0.1:-1", Logger: logger})
	if err != nil {
		t.Fatalf("log.Open: %v", err)
	}
	t.Cleanup(func() { _ = l.Close() })
	return l
}

func body(id string) string { return `{"person":"p-` + id + `","transition":"entered"}` }

// publish appends transition id on aurum.audience.<aud>.entered with
// message id id.
func publish(t testing.TB, l *alog.Log, aud string, ids ...string) {
	t.Helper()
	for _, id := range ids {
		if _, _, err := l.Append(context.Background(), alog.AudiencePrefix+aud+".entered", id, []byte(body(id))); err != nil {
			t.Fatalf("Append %s: %v", id, err)
		}
	}
}

func ids(from, to int) []string {
	var s []string
	for i := from; i <= to; i++ {
		s = append(s, "m"+strconv.Itoa(i))
	}
	return s
}

// request is one request an endpoint received.
type request struct {
	delivery string
	attempt  int
	body     string
	status   int // the status it was answered with; 0: the client had gone
}

// endpoint is a webhook receiver that checks every request and records it.
type endpoint struct {
	t       *testing.T
	srv     *httptest.Server
	respond func(r *http.Request, rq request) int // nil: 200

	mu   sync.Mutex
	reqs []request
	bad  []string // protocol violations
}

func newEndpoint(t *testing.T, respond func(*http.Request, request) int) *endpoint {
	e := &endpoint{t: t, respond: respond}
	e.srv = httptest.NewServer(http.HandlerFunc(e.serve))
	t.Cleanup(e.srv.Close)
	return e
}

func (e *endpoint) serve(w http.ResponseWriter, r *http.Request) {
	b, err := io.ReadAll(r.Body)
	var bad []string
	if err != nil {
		bad = append(bad, "read body: "+err.Error())
	}
	if r.Method != http.MethodPost {
		bad = append(bad, "method "+r.Method)
	}
	if ct := r.Header.Get("Content-Type"); ct != "application/json" {
		bad = append(bad, "content type "+ct)
	}
	if err := Verify(testSecret, r.Header.Get(HeaderSignature), b, testNow, time.Minute); err != nil {
		bad = append(bad, "signature: "+err.Error())
	}
	rq := request{delivery: r.Header.Get(HeaderDelivery), body: string(b)}
	rq.attempt, err = strconv.Atoi(r.Header.Get(HeaderAttempt))
	if err != nil || rq.attempt < 1 {
		bad = append(bad, "attempt header "+r.Header.Get(HeaderAttempt))
	}
	if rq.delivery == "" || (body(rq.delivery) != rq.body && !strings.Contains(rq.body, `"msg":"`+rq.delivery+`"`)) {
		bad = append(bad, fmt.Sprintf("delivery %q does not match body %q", rq.delivery, rq.body))
	}
	rq.status = http.StatusOK
	if e.respond != nil {
		rq.status = e.respond(r, rq)
	}
	if r.Context().Err() != nil {
		rq.status = 0 // the client went away: it got no answer
	}
	e.mu.Lock()
	e.reqs = append(e.reqs, rq)
	e.bad = append(e.bad, bad...)
	e.mu.Unlock()
	if rq.status != 0 {
		w.WriteHeader(rq.status)
	}
}

// delivered returns the delivery ids answered with a 2xx, in order.
func (e *endpoint) delivered() []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	var out []string
	for _, r := range e.reqs {
		if r.status/100 == 2 {
			out = append(out, r.delivery)
		}
	}
	return out
}

func (e *endpoint) requests() []request {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]request(nil), e.reqs...)
}

// check fails the test on any protocol violation seen.
func (e *endpoint) check() {
	e.t.Helper()
	e.mu.Lock()
	defer e.mu.Unlock()
	if len(e.bad) > 0 {
		e.t.Fatalf("endpoint %s saw bad requests: %v", e.srv.URL, e.bad)
	}
}

// waitDelivered polls until the endpoint has acknowledged n deliveries.
func (e *endpoint) waitDelivered(t *testing.T, n int) {
	t.Helper()
	check.For(t, 10*time.Second, 2*time.Millisecond, func() error {
		if got := e.delivered(); len(got) < n {
			return fmt.Errorf("%s: %d of %d delivered", e.srv.URL, len(got), n)
		}
		return nil
	})
}

// waitStats polls until ok accepts the destination's stats.
func waitStats(t *testing.T, d *Dispatcher, name string, ok func(DestStats) bool) DestStats {
	t.Helper()
	var st DestStats
	check.For(t, 10*time.Second, 2*time.Millisecond, func() error {
		if st = d.Stats()[name]; !ok(st) {
			return fmt.Errorf("%s stats %+v", name, st)
		}
		return nil
	})
	return st
}

func dest(name string, e *endpoint, audiences ...string) Destination {
	return Destination{Name: name, URL: e.srv.URL + "/hook", Secret: testSecret, Audiences: audiences, Channel: "web"}
}

// deadLetters collects dead letters from Options.DeadLetter.
type deadLetters struct {
	mu   sync.Mutex
	list []DeadLetter
}

func (d *deadLetters) write(_ context.Context, dl DeadLetter) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.list = append(d.list, dl)
	return nil
}

func (d *deadLetters) get() []DeadLetter {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]DeadLetter(nil), d.list...)
}

func testOpts(t testing.TB) Options {
	return Options{
		Logger:      testLogger(t),
		Timeout:     5 * time.Second,
		MaxAttempts: 1000,
		BackoffMin:  time.Millisecond,
		BackoffMax:  10 * time.Millisecond,
		Now:         func() time.Time { return testNow },
	}
}

func newDispatcher(t *testing.T, l *alog.Log, opts Options) *Dispatcher {
	d := NewDispatcher(l, opts)
	t.Cleanup(func() { _ = d.Close() })
	return d
}

func same(a, b []string) bool { return fmt.Sprint(a) == fmt.Sprint(b) }

// The acceptance test: an endpoint that fails for a while receives every
// transition, once per delivery id and in order, once it recovers; a
// healthy endpoint on the same audience is not delayed meanwhile.
func TestFailingEndpointRecoversHealthyNotDelayed(t *testing.T) {
	l := openLog(t)
	recovered := make(chan struct{})
	failing := newEndpoint(t, func(_ *http.Request, _ request) int {
		select {
		case <-recovered:
			return http.StatusOK
		default:
			return http.StatusInternalServerError
		}
	})
	healthy := newEndpoint(t, nil)
	d := newDispatcher(t, l, testOpts(t))
	if err := d.Set([]Destination{dest("failing", failing, "vip"), dest("healthy", healthy, "vip")}); err != nil {
		t.Fatal(err)
	}
	const n = 10
	publish(t, l, "vip", ids(1, 5)...)
	publish(t, l, "other", "x1") // not for these destinations
	publish(t, l, "vip", ids(6, n)...)

	// The healthy endpoint gets everything while the failing one is
	// still failing (it recovers only after this).
	healthy.waitDelivered(t, n)
	check.For(t, 10*time.Second, 2*time.Millisecond, func() error {
		if got := d.Stats()["failing"].FailedAttempts; got < 3 {
			return fmt.Errorf("failing endpoint: %d failed attempts", got)
		}
		return nil
	})
	if got := failing.delivered(); len(got) != 0 {
		t.Fatalf("failing endpoint delivered %v before recovering", got)
	}
	for _, r := range failing.requests() {
		if r.delivery != "m1" {
			t.Fatalf("failing endpoint got %s while m1 was not delivered: order not kept", r.delivery)
		}
	}
	waitStats(t, d, "healthy", func(s DestStats) bool { return s.Delivered == n })
	st := d.Stats()
	if st["healthy"].Delivered != n || st["healthy"].FailedAttempts != 0 || st["healthy"].Lag != 0 || !st["healthy"].Running {
		t.Fatalf("healthy stats %+v", st["healthy"])
	}
	if f := st["failing"]; f.Delivered != 0 || f.FailedAttempts < 3 || f.LastError != "status 500" || f.DeadLettered != 0 {
		t.Fatalf("failing stats %+v", f)
	}

	close(recovered)
	failing.waitDelivered(t, n)
	publish(t, l, "vip", "m11")
	waitStats(t, d, "failing", func(s DestStats) bool { return s.Delivered == n+1 })
	waitStats(t, d, "healthy", func(s DestStats) bool { return s.Delivered == n+1 })
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	failing.check()
	healthy.check()
	want := ids(1, n+1)
	for _, e := range []*endpoint{failing, healthy} {
		if got := e.delivered(); !same(got, want) {
			t.Fatalf("%s delivered %v, want %v (each once, in order)", e.srv.URL, got, want)
		}
	}
	// Attempts count up on the failing endpoint.
	reqs := failing.requests()
	for i, r := range reqs {
		if r.delivery == "m1" && r.attempt != i+1 {
			t.Fatalf("m1 request #%d has Aurum-Attempt %d", i+1, r.attempt)
		}
	}
	if f := d.Stats()["failing"]; f.Delivered != n+1 || f.LastSeq != n+2 || f.Lag != 0 || f.Running {
		t.Fatalf("failing stats after recovery and Close: %+v", f)
	}
}

func TestPermanentFailureDeadLettersAtOnce(t *testing.T) {
	l := openLog(t)
	ep := newEndpoint(t, func(_ *http.Request, rq request) int {
		switch rq.delivery {
		case "m2":
			return http.StatusBadRequest
		case "m3":
			return http.StatusGone
		case "m4":
			return http.StatusFound // redirects are not followed
		}
		return http.StatusOK
	})
	d := newDispatcher(t, l, testOpts(t)) // default DeadLetter: the log's stream
	if err := d.Set([]Destination{dest("crm", ep, "vip")}); err != nil {
		t.Fatal(err)
	}
	publish(t, l, "vip", ids(1, 5)...)
	ep.waitDelivered(t, 2)
	ep.check()
	if got := ep.delivered(); !same(got, []string{"m1", "m5"}) {
		t.Fatalf("delivered %v", got)
	}
	if got := len(ep.requests()); got != 5 {
		t.Fatalf("%d requests, want 5 (a permanent failure is not retried)", got)
	}
	var dls []alog.DeadLetter
	check.For(t, 5*time.Second, 2*time.Millisecond, func() error {
		var err error
		dls, err = l.ReadDeadLetters(context.Background(), 1, 10)
		if err == nil && len(dls) < 3 {
			err = fmt.Errorf("%d dead letters", len(dls))
		}
		return err
	})
	for i, want := range []struct{ id, status string }{{"m2", "400"}, {"m3", "410"}, {"m4", "302"}} {
		dl := dls[i]
		if dl.Source != "webhook:crm" || string(dl.Payload) != body(want.id) ||
			!strings.Contains(dl.Reason, "status "+want.status+" after 1 attempts") ||
			!strings.Contains(dl.Reason, "delivery "+want.id) || !dl.Received.Equal(testNow) {
			t.Fatalf("dead letter %d: %+v", i, dl)
		}
	}
	if st := waitStats(t, d, "crm", func(s DestStats) bool { return s.Delivered == 2 }); st.Delivered != 2 || st.DeadLettered != 3 || st.FailedAttempts != 3 {
		t.Fatalf("stats %+v", st)
	}
}

func TestMaxAttemptsDeadLettersAndContinues(t *testing.T) {
	l := openLog(t)
	ep := newEndpoint(t, func(_ *http.Request, rq request) int {
		switch rq.delivery {
		case "m1":
			return http.StatusServiceUnavailable
		case "m2":
			if rq.attempt == 1 {
				return http.StatusTooManyRequests
			}
			if rq.attempt == 2 {
				return http.StatusRequestTimeout
			}
		}
		return http.StatusOK
	})
	dl := &deadLetters{}
	opts := testOpts(t)
	opts.MaxAttempts = 3
	opts.DeadLetter = dl.write
	d := newDispatcher(t, l, opts)
	if err := d.Set([]Destination{dest("ads", ep, "vip", "churn")}); err != nil {
		t.Fatal(err)
	}
	publish(t, l, "vip", "m1", "m2")
	publish(t, l, "churn", "m3")
	ep.waitDelivered(t, 2)
	ep.check()
	var got []string
	for _, r := range ep.requests() {
		got = append(got, fmt.Sprintf("%s@%d:%d", r.delivery, r.attempt, r.status))
	}
	want := "[m1@1:503 m1@2:503 m1@3:503 m2@1:429 m2@2:408 m2@3:200 m3@1:200]"
	if fmt.Sprint(got) != want {
		t.Fatalf("requests %v\nwant     %s", got, want)
	}
	dls := dl.get()
	if len(dls) != 1 {
		t.Fatalf("dead letters %+v", dls)
	}
	if g := dls[0]; g.Destination != "ads" || g.DeliveryID != "m1" || g.Attempts != 3 || g.Status != 503 ||
		g.Reason != "status 503" || g.Subject != "aurum.audience.vip.entered" || g.Seq != 1 || string(g.Body) != body("m1") || !g.Time.Equal(testNow) {
		t.Fatalf("dead letter %+v", g)
	}
	if st := waitStats(t, d, "ads", func(s DestStats) bool { return s.Delivered == 2 }); st.Delivered != 2 || st.DeadLettered != 1 || st.FailedAttempts != 5 || st.LastSeq != 3 {
		t.Fatalf("stats %+v", st)
	}
}

func TestTimeoutsAndConnectionErrorsAreRetried(t *testing.T) {
	l := openLog(t)
	ep := newEndpoint(t, func(r *http.Request, rq request) int {
		if rq.attempt == 1 {
			<-r.Context().Done() // hang until the client gives up
		}
		return http.StatusOK
	})
	dead := httptest.NewServer(http.NotFoundHandler())
	deadURL := dead.URL
	dead.Close() // nothing listens there any more

	dl := &deadLetters{}
	opts := testOpts(t)
	opts.Timeout = 100 * time.Millisecond
	opts.MaxAttempts = 4
	opts.DeadLetter = dl.write
	d := newDispatcher(t, l, opts)
	gone := Destination{Name: "gone", URL: deadURL + "/hook?token=secret-token", Secret: testSecret, Audiences: []string{"vip"}, Channel: "web"}
	if err := d.Set([]Destination{dest("slow", ep, "vip"), gone}); err != nil {
		t.Fatal(err)
	}
	publish(t, l, "vip", "m1", "m2")
	ep.waitDelivered(t, 2)
	ep.check()
	var got []string
	for _, r := range ep.requests() {
		if r.status == http.StatusOK {
			got = append(got, fmt.Sprintf("%s@%d", r.delivery, r.attempt))
		}
	}
	if !same(got, []string{"m1@2", "m2@2"}) {
		t.Fatalf("delivered %v, want each on its second attempt", got)
	}
	st := waitStats(t, d, "slow", func(s DestStats) bool { return s.Delivered == 2 })
	if st.FailedAttempts != 2 || !strings.Contains(st.LastError, "deadline exceeded") {
		t.Fatalf("slow stats %+v", st)
	}
	check.For(t, 10*time.Second, 2*time.Millisecond, func() error {
		if n := len(dl.get()); n < 2 {
			return fmt.Errorf("%d dead letters from the dead endpoint", n)
		}
		return nil
	})
	for _, g := range dl.get() {
		if g.Destination != "gone" || g.Attempts != 4 || g.Status != 0 || !strings.HasPrefix(g.Reason, "post: ") ||
			strings.Contains(g.Reason, "secret-token") {
			t.Fatalf("dead letter %+v", g)
		}
	}
}

func TestSetAddsChangesAndRemoves(t *testing.T) {
	l := openLog(t)
	a, a2, b := newEndpoint(t, nil), newEndpoint(t, nil), newEndpoint(t, nil)
	d := newDispatcher(t, l, testOpts(t))
	if err := d.Set([]Destination{dest("a", a, "vip"), dest("b", b, "vip")}); err != nil {
		t.Fatal(err)
	}
	publish(t, l, "vip", "m1")
	// Wait for the dispatcher's view: an endpoint answers before the
	// worker sees the answer, and a worker stopped in between repeats
	// the delivery (at least once).
	waitStats(t, d, "a", func(s DestStats) bool { return s.Delivered == 1 })
	waitStats(t, d, "b", func(s DestStats) bool { return s.Delivered == 1 })

	// Remove b, move a to another URL: b's worker stops and its consumer
	// is deleted; a keeps its position.
	if err := d.Set([]Destination{dest("a", a2, "vip")}); err != nil {
		t.Fatal(err)
	}
	if _, ok := d.Stats()["b"]; ok {
		t.Fatal("stats of the removed destination remain")
	}
	publish(t, l, "vip", "m2")
	a2.waitDelivered(t, 1)
	if got := a2.delivered(); !same(got, []string{"m2"}) {
		t.Fatalf("a after its URL changed: %v, want [m2] (position kept)", got)
	}
	if got := b.delivered(); !same(got, []string{"m1"}) {
		t.Fatalf("removed b got %v", got)
	}

	// b back: a new consumer, from the start of the stream.
	if err := d.Set([]Destination{dest("a", a2, "vip"), dest("b", b, "vip")}); err != nil {
		t.Fatal(err)
	}
	b.waitDelivered(t, 3)
	if got := b.delivered(); !same(got, []string{"m1", "m1", "m2"}) {
		t.Fatalf("re-added b got %v", got)
	}

	// Invalid input changes nothing.
	for _, bad := range [][]Destination{
		{dest("a", a2, "vip"), dest("a", b, "vip")},
		{dest("a", a2, "vip"), {Name: "c", URL: "ftp://x", Secret: testSecret, Audiences: []string{"vip"}}},
	} {
		if err := d.Set(bad); err == nil {
			t.Fatalf("Set(%v) accepted", bad)
		}
	}
	publish(t, l, "vip", "m3")
	waitStats(t, d, "a", func(s DestStats) bool { return s.Delivered == 3 })
	waitStats(t, d, "b", func(s DestStats) bool { return s.Delivered == 3 })
	a2.check()
	b.check()

	// A restarted Dispatcher continues where the consumers stopped.
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	if err := d.Set(nil); !errors.Is(err, ErrClosed) {
		t.Fatalf("Set after Close: %v", err)
	}
	publish(t, l, "vip", "m4")
	d2 := newDispatcher(t, l, testOpts(t))
	if err := d2.Set([]Destination{dest("a", a2, "vip")}); err != nil {
		t.Fatal(err)
	}
	a2.waitDelivered(t, 3)
	if got := a2.delivered(); !same(got, []string{"m2", "m3", "m4"}) {
		t.Fatalf("a after restart: %v", got)
	}
}

func TestCloseStopsWorkers(t *testing.T) {
	l := openLog(t)
	publish(t, l, "vip", "m0") // the log's client is warm
	ep := newEndpoint(t, nil)
	failing := newEndpoint(t, func(*http.Request, request) int { return http.StatusBadGateway })
	before, _ := clientGoroutines()

	d := NewDispatcher(l, testOpts(t))
	var dests []Destination
	for i := range 5 {
		dests = append(dests, dest("ok"+strconv.Itoa(i), ep, "vip"))
	}
	dests = append(dests, dest("failing", failing, "vip"))
	if err := d.Set(dests); err != nil {
		t.Fatal(err)
	}
	ep.waitDelivered(t, 5)
	check.For(t, 5*time.Second, 2*time.Millisecond, func() error {
		if len(failing.requests()) == 0 {
			return errors.New("no attempt on the failing endpoint")
		}
		return nil
	})
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	for name, st := range d.Stats() {
		if st.Running {
			t.Fatalf("%s still running after Close", name)
		}
	}
	check.For(t, 5*time.Second, 2*time.Millisecond, func() error {
		if n, stacks := clientGoroutines(); n > before {
			return fmt.Errorf("%d goroutines, %d before:\n%s", n, before, stacks)
		}
		return nil
	})
	if err := d.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
}

// clientGoroutines counts the goroutines outside the embedded NATS server
// (whose per-consumer goroutines stay: Close keeps the consumers) and
// returns their stacks.
func clientGoroutines() (int, string) {
	buf := make([]byte, 4<<20)
	buf = buf[:runtime.Stack(buf, true)]
	var keep []string
	for _, g := range strings.Split(string(buf), "\n\n") {
		if !strings.Contains(g, "nats-server/v2/server.") {
			keep = append(keep, g)
		}
	}
	return len(keep), strings.Join(keep, "\n\n")
}

func TestWorkerStopsWhenLogCloses(t *testing.T) {
	l := openLog(t)
	ep := newEndpoint(t, nil)
	d := newDispatcher(t, l, testOpts(t))
	if err := d.Set([]Destination{dest("a", ep, "vip")}); err != nil {
		t.Fatal(err)
	}
	publish(t, l, "vip", "m1")
	ep.waitDelivered(t, 1)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	check.For(t, 5*time.Second, 2*time.Millisecond, func() error {
		if d.Stats()["a"].Running {
			return errors.New("worker still running after the log closed")
		}
		return nil
	})
}

func TestDestinationValidate(t *testing.T) {
	ok := Destination{Name: "crm-1_a", URL: "https://hooks.example.com/x?y=1", Secret: "0123456789abcdef", Audiences: []string{"vip", "High-Value_2"}, Channel: "email"}
	if err := ok.Validate(); err != nil {
		t.Fatalf("valid destination: %v", err)
	}
	for _, tc := range []struct {
		name string
		edit func(*Destination)
	}{
		{"empty name", func(d *Destination) { d.Name = "" }},
		{"upper-case name", func(d *Destination) { d.Name = "CRM" }},
		{"name starting with -", func(d *Destination) { d.Name = "-crm" }},
		{"name with dot", func(d *Destination) { d.Name = "crm.1" }},
		{"name too long", func(d *Destination) { d.Name = strings.Repeat("a", 65) }},
		{"relative url", func(d *Destination) { d.URL = "/hook" }},
		{"ftp url", func(d *Destination) { d.URL = "ftp://example.com/x" }},
		{"no host", func(d *Destination) { d.URL = "http:///x" }},
		{"bad url", func(d *Destination) { d.URL = "http://a b\x7f" }},
		{"short secret", func(d *Destination) { d.Secret = "0123456789abcde" }},
		{"no audience", func(d *Destination) { d.Audiences = nil }},
		{"empty audience", func(d *Destination) { d.Audiences = []string{""} }},
		{"audience with dot", func(d *Destination) { d.Audiences = []string{"a.b"} }},
		{"audience wildcard", func(d *Destination) { d.Audiences = []string{"*"} }},
		{"audience gt", func(d *Destination) { d.Audiences = []string{">"} }},
		{"audience space", func(d *Destination) { d.Audiences = []string{"a b"} }},
		{"unknown channel", func(d *Destination) { d.Channel = "fax" }},
		{"no channel", func(d *Destination) { d.Channel = "" }},
		{"upper-case channel", func(d *Destination) { d.Channel = "EMAIL" }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := ok
			d.Audiences = append([]string(nil), ok.Audiences...)
			tc.edit(&d)
			if err := d.Validate(); err == nil {
				t.Fatalf("accepted %+v", d)
			}
		})
	}
	for _, ch := range []string{"email", "sms", "push", "ads", "web", ChannelNone} {
		d := ok
		d.Channel = ch
		if err := d.Validate(); err != nil {
			t.Errorf("channel %s: %v", ch, err)
		}
	}
	long := ok
	long.Name = strings.Repeat("a", 64)
	if err := long.Validate(); err != nil {
		t.Fatalf("64-byte name: %v", err)
	}
}

func TestOptionsAndBackoff(t *testing.T) {
	var o Options
	o.EnsureDefaults()
	if o.Timeout != DefaultTimeout || o.MaxAttempts != DefaultMaxAttempts || o.BackoffMin != DefaultBackoffMin || o.BackoffMax != DefaultBackoffMax {
		t.Fatalf("defaults %+v", o)
	}
	if err := o.Validate(); err != nil {
		t.Fatal(err)
	}
	for i, want := range []time.Duration{500 * time.Millisecond, time.Second, 2 * time.Second, 4 * time.Second} {
		if got := o.backoff(uint64(i + 1)); got != want {
			t.Fatalf("backoff(%d) = %v, want %v", i+1, got, want)
		}
	}
	if got := o.backoff(100); got != DefaultBackoffMax {
		t.Fatalf("backoff(100) = %v", got)
	}
	bad := Options{BackoffMin: time.Second, BackoffMax: time.Millisecond}
	bad.EnsureDefaults()
	if bad.Validate() == nil {
		t.Fatal("BackoffMin > BackoffMax accepted")
	}
	d := NewDispatcher(nil, Options{MaxAttempts: -1})
	if err := d.Set(nil); err == nil {
		t.Fatal("Set with invalid options accepted")
	}
}

func TestRetryAfterAndClassification(t *testing.T) {
	now := time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)
	for _, tc := range []struct {
		v    string
		want time.Duration
	}{
		{"", 0},
		{"3", 3 * time.Second},
		{" 120 ", 2 * time.Minute},
		{"0", 0},
		{"-5", 0},
		{"soon", 0},
		{"99999999999", connector.MaxRetryAfter},
		{now.Add(90 * time.Second).Format(http.TimeFormat), 90 * time.Second},
		{now.Add(-time.Hour).Format(http.TimeFormat), 0},
	} {
		if got := connector.ParseRetryAfter(tc.v, now); got != tc.want {
			t.Errorf("parseRetryAfter(%q) = %v, want %v", tc.v, got, tc.want)
		}
	}
	for status, want := range map[int]bool{
		0: true, 408: true, 429: true, 500: true, 502: true, 503: true, 504: true,
		400: false, 401: false, 403: false, 404: false, 410: false, 422: false, 301: false, 302: false,
	} {
		if got := retryable(status); got != want {
			t.Errorf("retryable(%d) = %v", status, got)
		}
	}
}

func TestRetryAfterHonoured(t *testing.T) {
	l := openLog(t)
	var (
		mu    sync.Mutex
		times []time.Time
	)
	ep := newEndpoint(t, func(_ *http.Request, rq request) int {
		mu.Lock()
		times = append(times, time.Now())
		mu.Unlock()
		if rq.attempt == 1 {
			return http.StatusTooManyRequests
		}
		return http.StatusOK
	})
	// Retry-After: 1 (second) exceeds the backoff; BackoffMax caps it.
	ra := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get(HeaderAttempt) == "1" {
			w.Header().Set("Retry-After", "1")
		}
		ep.srv.Config.Handler.ServeHTTP(w, r)
	}))
	t.Cleanup(ra.Close)
	opts := testOpts(t)
	opts.BackoffMax = 300 * time.Millisecond
	d := newDispatcher(t, l, opts)
	if err := d.Set([]Destination{{Name: "ra", URL: ra.URL, Secret: testSecret, Audiences: []string{"vip"}, Channel: ChannelNone}}); err != nil {
		t.Fatal(err)
	}
	publish(t, l, "vip", "m1")
	ep.waitDelivered(t, 1)
	ep.check()
	mu.Lock()
	defer mu.Unlock()
	if gap := times[1].Sub(times[0]); gap < 250*time.Millisecond || gap > 5*time.Second {
		t.Fatalf("retry after %v, want about BackoffMax (300ms), not the 1 ms backoff", gap)
	}
}

// Suspend stops the workers and keeps their consumers: after a Set the
// destination continues where it stopped (a node that lost, then regained,
// the cluster's leadership), and nothing is delivered while suspended.
func TestSuspendKeepsPositions(t *testing.T) {
	l := openLog(t)
	a := newEndpoint(t, nil)
	d := newDispatcher(t, l, testOpts(t))
	if err := d.Set([]Destination{dest("a", a, "vip")}); err != nil {
		t.Fatal(err)
	}
	publish(t, l, "vip", "m1")
	waitStats(t, d, "a", func(s DestStats) bool { return s.Delivered == 1 })
	if err := d.Suspend(); err != nil {
		t.Fatal(err)
	}
	if st := d.Stats()["a"]; st.Running {
		t.Fatalf("suspended destination still running: %+v", st)
	}
	publish(t, l, "vip", "m2")
	if got := a.delivered(); !same(got, []string{"m1"}) {
		t.Fatalf("delivered while suspended: %v", got)
	}
	if err := d.Set([]Destination{dest("a", a, "vip")}); err != nil {
		t.Fatal(err)
	}
	a.waitDelivered(t, 2)
	if got := a.delivered(); !same(got, []string{"m1", "m2"}) {
		t.Fatalf("after Suspend and Set: %v, want [m1 m2] (position kept)", got)
	}
	a.check()
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	if err := d.Suspend(); !errors.Is(err, ErrClosed) {
		t.Fatalf("Suspend after Close: %v", err)
	}
}
