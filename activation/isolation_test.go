package activation_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
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
