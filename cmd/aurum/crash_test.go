package main

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aurumcdp/aurum/internal/check"
)

// crashWorkload is a deterministic set of people and their events.
type crashWorkload struct {
	people  int
	batches [][]map[string]any
	perUser map[string]int // user id → events sent
}

func newCrashWorkload(people, eventsPerPerson, batchSize int, seed uint64) *crashWorkload {
	r := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	w := &crashWorkload{people: people, perUser: map[string]int{}}
	var all []map[string]any
	t0 := time.Date(2026, 10, 1, 0, 0, 0, 0, time.UTC)
	for i := range people {
		user := fmt.Sprintf("u-%d", i)
		anons := []string{fmt.Sprintf("a-%d-0", i), fmt.Sprintf("a-%d-1", i)}
		for j := range eventsPerPerson {
			ev := map[string]any{"messageId": fmt.Sprintf("c-%d-%d", i, j),
				"timestamp": t0.Add(time.Duration(r.IntN(90*24)) * time.Hour).Format(time.RFC3339)}
			anon := anons[j%2]
			switch j % 5 {
			case 0, 1: // anonymous browsing
				ev["type"], ev["name"], ev["anonymousId"] = "page", "Home", anon
			case 2: // login on this device
				ev["type"], ev["event"], ev["userId"], ev["anonymousId"] = "track", "Signed In", user, anon
			case 3:
				ev["type"], ev["userId"], ev["anonymousId"] = "identify", user, anon
				ev["traits"] = map[string]any{"email": fmt.Sprintf("p%d@example.com", i), "visits": j}
			case 4:
				ev["type"], ev["event"], ev["userId"] = "track", "Order Completed", user
				ev["properties"] = map[string]any{"revenue": float64(r.IntN(10000)) / 100}
			}
			all = append(all, ev)
		}
		w.perUser[user] = eventsPerPerson
	}
	r.Shuffle(len(all), func(i, j int) { all[i], all[j] = all[j], all[i] })
	for len(all) > 0 {
		n := min(batchSize, len(all))
		w.batches = append(w.batches, all[:n])
		all = all[n:]
	}
	return w
}

// sendUntilAcked posts a batch until it is acknowledged (a 200), as an SDK
// retries across a node's crash; count says whether to count it as acked.
func sendUntilAcked(t *testing.T, n *node, key string, b []map[string]any, acked *atomic.Int64, count bool) {
	for {
		code, _, err := n.request("POST", "/v1/batch", map[string]any{"batch": b}, writeKeyAuth(key))
		if err == nil && code == http.StatusOK {
			if count {
				acked.Add(1)
			}
			return
		}
		if err == nil && code != http.StatusServiceUnavailable {
			t.Errorf("batch answered %d", code)
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestCrashRecovery streams events into a real `aurum serve` while killing it
// with SIGKILL several times. Producers retry every batch until it is
// acknowledged (as SDKs do). Afterwards every person's event count equals
// what was sent, and the projections equal a clean rebuild from the log.
func TestCrashRecovery(t *testing.T) {
	if testing.Short() {
		t.Skip("kills real aurum processes")
	}
	parallelProcess(t)
	dataDir := t.TempDir()
	n := startNode(t, dataDir)
	key := n.createSource("web")
	w := newCrashWorkload(100, 30, 20, 42)

	var acked atomic.Int64
	work := make(chan []map[string]any)
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() { // senders: retry each batch until a 200
			defer wg.Done()
			for b := range work {
				// Every third batch is sent twice, as an SDK does when an
				// acknowledgement is lost: only dedup keeps counts exact.
				sends := 1
				if id, _ := b[0]["messageId"].(string); len(id)%3 == 0 {
					sends = 2
				}
				for s := 0; s < sends; s++ {
					sendUntilAcked(t, n, key, b, &acked, s == 0)
				}
			}
		}()
	}
	stopKiller := make(chan struct{})
	killerDone := make(chan int)
	go func() { // the killer: SIGKILL at random moments spread over the stream, then restart
		r := rand.New(rand.NewPCG(7, 11))
		const wantKills = 5
		kills := 0
		total := int64(len(w.batches))
		for kills < wantKills {
			threshold := total * int64(kills+1) / (wantKills + 1)
			for acked.Load() < threshold {
				select {
				case <-stopKiller:
					killerDone <- kills
					return
				case <-time.After(2 * time.Millisecond):
				}
			}
			time.Sleep(time.Duration(r.IntN(20)) * time.Millisecond)
			n.kill()
			kills++
			n.restart()
		}
		<-stopKiller
		killerDone <- kills
	}()
	for _, b := range w.batches {
		work <- b
	}
	close(work)
	wg.Wait()
	close(stopKiller)
	kills := <-killerDone
	if kills < 3 {
		t.Fatalf("only %d kills happened while streaming; the workload is too small to test recovery", kills)
	}
	t.Logf("%d batches acknowledged across %d SIGKILLs", acked.Load(), kills)

	// Every person's count equals what was sent: nothing lost, nothing twice.
	check.For(t, 60*time.Second, 100*time.Millisecond, func() error {
		for user, want := range w.perUser {
			p, err := n.profile("user_id:" + user)
			if err != nil {
				return err
			}
			if got := p["stats"].(map[string]any)["total_events"]; got != float64(want) {
				return fmt.Errorf("%s: total_events %v, want %d", user, got, want)
			}
		}
		return nil
	})
	for i := range w.people {
		p, err := n.profile(fmt.Sprintf("email:p%d@example.com", i))
		if err != nil {
			t.Fatal(err)
		}
		if got := len(p["identifiers"].(map[string]any)["anonymous_id"].([]any)); got != 2 {
			t.Fatalf("person %d: %d anonymous ids, want 2", i, got)
		}
	}

	// A clean rebuild from the log gives identical projections.
	n.stop()
	crashed := digestOf(t, dataDir)
	aside := t.TempDir()
	if err := os.Rename(filepath.Join(dataDir, "state"), filepath.Join(aside, "state")); err != nil {
		t.Fatal(err)
	}
	if got := digestOf(t, aside); got != crashed {
		t.Fatalf("digest changed by moving the directory: %s vs %s", got, crashed)
	}
	// No ticks while rebuilding: a tick appended now would move the log
	// past the crashed node's position and the digests apart.
	n.args = append(n.args, "--tick", "0")
	n.restart()
	var applied uint64
	if _, err := fmt.Sscanf(crashed[strings.Index(crashed, "applied="):], "applied=%d", &applied); err != nil {
		t.Fatalf("digest output %q: %v", crashed, err)
	}
	check.For(t, 60*time.Second, 50*time.Millisecond, func() error {
		var h struct {
			AppliedSeq uint64 `json:"applied_seq"`
		}
		code, body, err := n.request("GET", "/healthz", nil, nil)
		if err != nil || code != http.StatusOK {
			return fmt.Errorf("healthz: %d %s %v", code, body, err)
		}
		if err := json.Unmarshal(body, &h); err != nil {
			return err
		}
		if h.AppliedSeq != applied {
			return fmt.Errorf("rebuild at %d of %d", h.AppliedSeq, applied)
		}
		return nil
	})
	n.stop()
	rebuilt := digestOf(t, dataDir)
	if rebuilt != crashed {
		t.Fatalf("projections after %d SIGKILLs differ from a clean rebuild:\n crashed %s\n rebuilt %s", kills, crashed, rebuilt)
	}
}

// TestStateSyncedBeforeSIGKILL: the live state has no WAL; what a node
// applied is on disk within its checkpoint interval (--state-checkpoint),
// and at once after an entry that changed who may connect, so a SIGKILL
// does not send the restarted node back before a write key it issued
// (before session 10's periodic WAL sync, an unsynced tail made a fresh
// node answer 401 to that key until it re-applied the log; NATS producers
// refused twice give up). Events applied before a checkpoint are applied
// again from the log after the restart.
func TestStateSyncedBeforeSIGKILL(t *testing.T) {
	if testing.Short() {
		t.Skip("kills a real aurum process")
	}
	parallelProcess(t)
	for _, tc := range []struct {
		name  string
		args  []string
		event bool          // a track event after the source, then the kill
		idle  time.Duration // before the kill
		same  bool          // restarted at the position applied before the kill
	}{
		{"after a checkpoint", []string{"--state-checkpoint", "1s"}, true, 2500 * time.Millisecond, true},
		{"access at once", nil, false, 300 * time.Millisecond, true},
		{"events before a checkpoint", nil, true, 0, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n := startNode(t, t.TempDir(), append([]string{"--tick", "0"}, tc.args...)...) // nothing but our writes moves the log
			key := n.createSource("web")
			before, err := n.appliedSeq()
			if err != nil {
				t.Fatal(err)
			}
			if tc.event {
				time.Sleep(300 * time.Millisecond) // the source's checkpoint
				if code, body, err := n.request("POST", "/v1/track", `{"userId":"u0","event":"E","messageId":"m0"}`, writeKeyAuth(key)); err != nil || code != http.StatusOK {
					t.Fatalf("track: %d %s %v", code, body, err)
				}
			}
			var applied uint64
			check.For(t, 10*time.Second, 10*time.Millisecond, func() error {
				var err error
				if applied, err = n.appliedSeq(); err == nil && tc.event && applied <= before {
					err = fmt.Errorf("applied %d: the event not yet", applied)
				}
				return err
			})
			time.Sleep(tc.idle)
			n.kill()
			n.restart()
			var started struct {
				AppliedSeq uint64 `json:"applied_seq"`
			}
			for _, line := range strings.Split(n.logText(), "\n") {
				if strings.Contains(line, `"msg":"engine started"`) {
					_ = json.Unmarshal([]byte(line), &started) // the last start's line wins
				}
			}
			if tc.same && started.AppliedSeq < applied {
				t.Fatalf("restarted at applied %d; %d was applied %v before the SIGKILL", started.AppliedSeq, applied, tc.idle)
			}
			if !tc.same && started.AppliedSeq >= applied {
				t.Fatalf("restarted at applied %d, killed at %d before any checkpoint: nothing to apply again (the case tests nothing)", started.AppliedSeq, applied)
			}
			// Right after the restart: the write key works (200, or 503
			// while the node applies the log again; never a 401).
			check.For(t, 20*time.Second, 20*time.Millisecond, func() error {
				code, body, err := n.request("POST", "/v1/track", `{"userId":"u","event":"E","messageId":"m1"}`, writeKeyAuth(key))
				switch {
				case err != nil:
					return err
				case code == http.StatusUnauthorized:
					t.Fatalf("track with the write key after the restart (at applied %d of %d): 401 %s", started.AppliedSeq, applied, body)
				case code != http.StatusOK:
					return fmt.Errorf("track with the write key after the restart: %d %s", code, body)
				}
				return nil
			})
		})
	}
}
