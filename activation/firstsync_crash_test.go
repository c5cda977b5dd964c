package activation_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/aurumcdp/aurum/activation"
	"github.com/aurumcdp/aurum/activation/connectortest"
	"github.com/aurumcdp/aurum/engine"
	"github.com/aurumcdp/aurum/internal/check"
)

// TestFirstSyncRestartSendsNoTextTwice (issue #17): the engine stops (an
// in-process restart: Close, then Open on the same data directory) while
// the first sync of an SMS destination is sending, with one request hung
// at the tool. After the restart the sync finishes and nobody gets a
// second text: those sent before the stop are skipped, and the batch whose
// outcome is unknown is dead-lettered instead of sent again (at most
// once); everybody else with consent gets exactly one.
func TestFirstSyncRestartSendsNoTextTwice(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	var mu sync.Mutex
	sent := map[string]int{}
	total, hang := 0, true
	const before = 120 // texts sent before the stop
	hung := make(chan struct{})
	var hangOnce sync.Once
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_ = r.ParseForm()
		mu.Lock()
		if hang && total >= before {
			mu.Unlock()
			hangOnce.Do(func() { close(hung) })
			<-r.Context().Done() // in flight when the engine stops
			return
		}
		total++
		sent[r.PostForm.Get("To")]++
		mu.Unlock()
		w.WriteHeader(http.StatusCreated)
		_, _ = w.Write([]byte(`{"sid":"SM1"}`))
	}))
	defer srv.Close()
	cfg := json.RawMessage(fmt.Sprintf(`{"account_sid":"AC1","auth_token":"t0123456789","from":"+4512345678","body":"hi","api_url":%q}`, srv.URL))
	dir := t.TempDir()
	opts := engine.Options{DataDir: dir, NATSListen: "127.0.0.1:-1", TickPeriod: -1, WebhookTimeout: 60 * time.Second,
		WebhookBackoffMin: 20 * time.Millisecond, WebhookBackoffMax: 200 * time.Millisecond, ConnectorConsentSweep: -1}
	e1, err := engine.Open(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	connectortest.Setup(ctx, t, e1)
	const n = 300
	connectortest.Ingest(ctx, t, e1, "sms", 0, n, "gold")
	connectortest.WaitSize(t, e1, n)
	if _, err := e1.PutDestination(ctx, activation.Destination{Name: "texts", Kind: "sms", Config: cfg, Audiences: []string{"vip"}}); err != nil {
		t.Fatal(err)
	}
	select {
	case <-hung:
	case <-ctx.Done():
		t.Fatal("the sync never reached the hung request")
	}
	if err := e1.Close(); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	hang = false
	mu.Unlock()

	e2, err := engine.Open(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = e2.Close() }()
	var st activation.DestStats
	check.For(t, 60*time.Second, 20*time.Millisecond, func() error {
		st, err = connectortest.Stats(e2, "texts")
		if err != nil || st.FirstSync != activation.SyncDone {
			return fmt.Errorf("first sync %q (%v)", st.FirstSync, err)
		}
		return nil
	})
	mu.Lock()
	defer mu.Unlock()
	consenting, got := 0, 0
	for i := range n {
		k := connectortest.Phone(i)
		if i%10 == 3 { // no sms consent in the suite's people
			if sent[k] != 0 {
				t.Fatalf("person %d without consent was sent %d texts", i, sent[k])
			}
			continue
		}
		consenting++
		if sent[k] > 1 {
			t.Fatalf("person %d was sent %d texts", i, sent[k])
		}
		got += sent[k]
	}
	unknown := consenting - got
	t.Logf("%d texts before the stop, %d after; %d of unknown outcome dead-lettered, not resent", before, total-before, unknown)
	if unknown < 1 || unknown > 50 || st.DeadLettered != uint64(unknown) {
		t.Fatalf("%d people without a text, %d dead letters: want the one batch in flight (1..50) dead-lettered", unknown, st.DeadLettered)
	}
}
