package activation_test

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
	"github.com/aurumcdp/aurum/activation/connectortest"
	"github.com/aurumcdp/aurum/internal/check"
)

// TestConnectorDownIsolated: one connector whose API is down for the whole
// test (every request a 503) delays neither a healthy connector on the same
// audience nor ingestion. Measured: the ingest time of a batch of entries
// with the down destination in place against the same batch before any
// destination existed, and the time the healthy destination takes to get
// them all while the other keeps failing.
func TestConnectorDownIsolated(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	var healthy, down atomic.Int64
	ok := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		healthy.Add(1)
		w.WriteHeader(http.StatusCreated)
		_, _ = w.Write([]byte(`{"sid":"SM0"}`))
	}))
	defer ok.Close()
	bad := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		down.Add(1)
		w.WriteHeader(http.StatusServiceUnavailable)
	}))
	defer bad.Close()
	cfg := func(url string) json.RawMessage {
		return json.RawMessage(fmt.Sprintf(`{"account_sid":"AC1","auth_token":"t0123456789","from":"+4512345678","body":"hi","api_url":%q}`, url))
	}
	e := connectortest.Node(t)
	connectortest.Setup(ctx, t, e)
	const n = 300
	start := time.Now()
	connectortest.Ingest(ctx, t, e, "sms", 0, n, "gold")
	baseline := time.Since(start)
	connectortest.WaitSize(t, e, n)
	for name, url := range map[string]string{"down": bad.URL, "healthy": ok.URL} {
		if _, err := e.PutDestination(ctx, activation.Destination{Name: name, Kind: "sms", Config: cfg(url), Audiences: []string{"vip"}}); err != nil {
			t.Fatal(err)
		}
	}
	// The healthy one syncs; the down one keeps failing its first batch.
	check.For(t, 30*time.Second, 10*time.Millisecond, func() error {
		st, err := connectortest.Stats(e, "healthy")
		if err != nil || st.FirstSync != activation.SyncDone {
			return fmt.Errorf("healthy: first sync %q (%v)", st.FirstSync, err)
		}
		return nil
	})
	start = time.Now()
	connectortest.Ingest(ctx, t, e, "sms", n, 2*n, "gold")
	withDown := time.Since(start)
	want := int64(2*n - 2*n/10) // every 10th has no sms consent
	check.For(t, 30*time.Second, 10*time.Millisecond, func() error {
		if got := healthy.Load(); got < want {
			return fmt.Errorf("healthy got %d of %d texts", got, want)
		}
		return nil
	})
	caughtUp := time.Since(start)
	st, err := connectortest.Stats(e, "down")
	if err != nil {
		t.Fatal(err)
	}
	if st.Delivered != 0 || st.FailedAttempts < 2 || down.Load() < 2 {
		t.Fatalf("the down destination: %+v, %d requests", st, down.Load())
	}
	if got := healthy.Load(); got != want {
		t.Fatalf("healthy got %d texts, want %d (none twice)", got, want)
	}
	t.Logf("ingest of %d entries: %v with no destination, %v with one destination down; the healthy one had them all %v after the ingest began (the down one: %d failed attempts, first sync %s)",
		n, baseline.Round(time.Millisecond), withDown.Round(time.Millisecond), caughtUp.Round(time.Millisecond), st.FailedAttempts, st.FirstSync)
	if withDown > 5*baseline+2*time.Second {
		t.Fatalf("ingest took %v with a destination down, %v without", withDown, baseline)
	}
}

// TestConnectorDownMeasured is issue #17's must-show 2, measured
// (AURUM_BENCH=isolation; `make bench-isolation`; bench/RESULTS.md): one
// node, three SMS connectors on one audience, people entering it at a
// steady pace (50 every 500 ms). One connector's API answers every request
// with a 503 for AURUM_ISOLATION_DOWN (default 2 min) at a time, in rounds
// interleaved with phases where it is up (AURUM_ISOLATION_UP, default
// 1 min); the rounds alternate up, down, up, down. Per phase kind it
// reports the median and 95th percentile of the healthy connectors'
// delivery latency (ingest call returned → the fake API got the text) and
// the median ingest rate of the batches.
func TestConnectorDownMeasured(t *testing.T) {
	if os.Getenv("AURUM_BENCH") != "isolation" {
		t.Skip("a measurement of minutes: AURUM_BENCH=isolation (make bench-isolation)")
	}
	dur := func(env string, def time.Duration) time.Duration {
		if d, err := time.ParseDuration(os.Getenv(env)); err == nil && d > 0 {
			return d
		}
		return def
	}
	downFor, upFor := dur("AURUM_ISOLATION_DOWN", 2*time.Minute), dur("AURUM_ISOLATION_UP", time.Minute)
	const rounds, batch, pace = 2, 50, 500 * time.Millisecond
	ctx, cancel := context.WithTimeout(context.Background(), time.Duration(rounds)*(downFor+upFor)+5*time.Minute)
	defer cancel()

	var mu sync.Mutex
	arrived := map[string][]time.Time{} // phone → arrival at each healthy fake
	healthy := func(w http.ResponseWriter, r *http.Request) {
		_ = r.ParseForm()
		mu.Lock()
		arrived[r.PostForm.Get("To")] = append(arrived[r.PostForm.Get("To")], time.Now())
		mu.Unlock()
		w.WriteHeader(http.StatusCreated)
		_, _ = w.Write([]byte(`{"sid":"SM0"}`))
	}
	ok1, ok2 := httptest.NewServer(http.HandlerFunc(healthy)), httptest.NewServer(http.HandlerFunc(healthy))
	defer ok1.Close()
	defer ok2.Close()
	var isDown atomic.Bool
	var flakyGot atomic.Int64
	flaky := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if isDown.Load() {
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		flakyGot.Add(1)
		w.WriteHeader(http.StatusCreated)
		_, _ = w.Write([]byte(`{"sid":"SM0"}`))
	}))
	defer flaky.Close()
	cfg := func(url string) json.RawMessage {
		return json.RawMessage(fmt.Sprintf(`{"account_sid":"AC1","auth_token":"t0123456789","from":"+4512345678","body":"hi","api_url":%q}`, url))
	}
	e := connectortest.Node(t)
	connectortest.Setup(ctx, t, e)
	for name, url := range map[string]string{"healthy1": ok1.URL, "healthy2": ok2.URL, "flaky": flaky.URL} {
		if _, err := e.PutDestination(ctx, activation.Destination{Name: name, Kind: "sms", Config: cfg(url), Audiences: []string{"vip"}}); err != nil {
			t.Fatal(err)
		}
	}
	check.For(t, 60*time.Second, 10*time.Millisecond, func() error {
		for _, name := range []string{"healthy1", "healthy2", "flaky"} {
			if st, err := connectortest.Stats(e, name); err != nil || st.FirstSync != activation.SyncDone {
				return fmt.Errorf("%s: first sync %q (%v)", name, st.FirstSync, err)
			}
		}
		return nil
	})

	type sample struct {
		down     bool
		ingested time.Time
		from, to int
		rate     float64 // people per second of the ingest call
	}
	var samples []sample
	next := 0
	for r := range 2 * rounds {
		down := r%2 == 1
		isDown.Store(down)
		end := time.Now().Add(upFor)
		if down {
			end = time.Now().Add(downFor)
		}
		for time.Now().Before(end) {
			start := time.Now()
			connectortest.Ingest(ctx, t, e, "sms", next, next+batch, "gold")
			done := time.Now()
			samples = append(samples, sample{down: down, ingested: done, from: next, to: next + batch,
				rate: batch / done.Sub(start).Seconds()})
			next += batch
			if d := pace - time.Since(start); d > 0 {
				time.Sleep(d) // paces the producer
			}
		}
	}
	isDown.Store(false)
	// Every consenting person reaches both healthy fakes (and, once it is
	// back, the flaky one): nobody lost, nobody twice.
	want := 0
	for i := range next {
		if i%10 != 3 {
			want++
		}
	}
	check.For(t, 5*time.Minute, 50*time.Millisecond, func() error {
		mu.Lock()
		n := 0
		for _, ts := range arrived {
			n += len(ts)
		}
		mu.Unlock()
		if n < 2*want || flakyGot.Load() < int64(want) {
			return fmt.Errorf("healthy got %d of %d texts, flaky %d of %d", n, 2*want, flakyGot.Load(), want)
		}
		return nil
	})
	var lat [2][]time.Duration
	var rate [2][]float64
	mu.Lock()
	for _, s := range samples {
		k := 0
		if s.down {
			k = 1
		}
		rate[k] = append(rate[k], s.rate)
		for i := s.from; i < s.to; i++ {
			ts := arrived[connectortest.Phone(i)]
			if i%10 == 3 {
				if len(ts) != 0 {
					t.Fatalf("person %d has no consent and got %d texts", i, len(ts))
				}
				continue
			}
			if len(ts) != 2 {
				t.Fatalf("person %d got %d texts from the healthy connectors, want 2", i, len(ts))
			}
			for _, at := range ts {
				lat[k] = append(lat[k], at.Sub(s.ingested))
			}
		}
	}
	mu.Unlock()
	quantile := func(ds []time.Duration, q float64) time.Duration {
		slices.Sort(ds)
		return ds[int(q*float64(len(ds)-1))]
	}
	median := func(fs []float64) float64 {
		slices.Sort(fs)
		return fs[len(fs)/2]
	}
	st, _ := connectortest.Stats(e, "flaky")
	for k, name := range []string{"all up", "one connector down"} {
		t.Logf("%-18s healthy delivery latency median %v p95 %v (%d texts); ingest median %.0f people/s (%d batches of %d)",
			name, quantile(lat[k], 0.5).Round(time.Millisecond), quantile(lat[k], 0.95).Round(time.Millisecond), len(lat[k]),
			median(rate[k]), len(rate[k]), batch)
	}
	t.Logf("rounds: %d × (up %v, down %v); the flaky connector: %d failed attempts, %d texts once back, %d dead letters",
		rounds, upFor, downFor, st.FailedAttempts, flakyGot.Load(), st.DeadLettered)
	if ml, mu := quantile(lat[1], 0.5), quantile(lat[0], 0.5); ml > 3*mu+time.Second {
		t.Fatalf("healthy latency median %v with one connector down, %v with all up", ml, mu)
	}
}
