package main

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aurumcdp/aurum/engine"
	"github.com/aurumcdp/aurum/internal/check"
	"github.com/aurumcdp/aurum/projections"
)

// TestTransitionsAcrossCrashes: audience transitions published by a node
// that is SIGKILLed several times while events stream in (and time-driven
// exits fire) equal, one for one and in the same order per profile, those
// an offline replay of the same log derives: no duplicate, no gap.
func TestTransitionsAcrossCrashes(t *testing.T) {
	if testing.Short() {
		t.Skip("kills real aurum processes")
	}
	parallelProcess(t)
	dataDir := t.TempDir()
	n := startNode(t, dataDir, "--tick", "100ms")
	key := n.createSource("web")
	for name, rule := range map[string]string{
		"buyers":  `count("Order Completed", "2s") >= 1`,
		"viewers": `count("Product Viewed") >= 3 and count("Order Completed", "2s") == 0`,
	} {
		n.mustJSON("POST", "/v1/audiences", map[string]string{"name": name, "rule": rule}, adminAuth, http.StatusCreated, nil)
	}

	const people, perPerson, batch = 80, 8, 10
	var evs []map[string]any
	for i := range people {
		for j := range perPerson {
			ev := map[string]any{"type": "track", "userId": fmt.Sprintf("p-%d", i), "messageId": fmt.Sprintf("t-%d-%d", i, j), "event": "Product Viewed"}
			if j%4 == 3 {
				ev["event"] = "Order Completed"
				ev["properties"] = map[string]any{"revenue": 10}
			}
			evs = append(evs, ev)
		}
	}
	r := rand.New(rand.NewPCG(3, 4))
	r.Shuffle(len(evs), func(i, j int) { evs[i], evs[j] = evs[j], evs[i] })
	var batches [][]map[string]any
	for len(evs) > 0 {
		k := min(batch, len(evs))
		batches = append(batches, evs[:k])
		evs = evs[k:]
	}

	var acked atomic.Int64
	work := make(chan []map[string]any)
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for b := range work {
				for _, ev := range b { // event time = send time, so windows matter
					ev["timestamp"] = time.Now().UTC().Format(time.RFC3339Nano)
				}
				sendUntilAcked(t, n, key, b, &acked, true)
				time.Sleep(20 * time.Millisecond)
			}
		}()
	}
	killerDone := make(chan int)
	go func() {
		kills := 0
		for kills < 5 {
			threshold := int64(len(batches)) * int64(kills+1) / 6
			for acked.Load() < threshold {
				time.Sleep(2 * time.Millisecond)
			}
			n.kill()
			kills++
			n.restart()
		}
		killerDone <- kills
	}()
	for _, b := range batches {
		work <- b
	}
	close(work)
	wg.Wait()
	kills := <-killerDone
	// A live replay swaps in while purchases age out (time-driven exits are
	// being decided and published): none may be lost or repeated.
	n.mustJSON("POST", "/v1/replay", map[string]any{"from": "start"}, adminAuth, http.StatusAccepted, nil)
	check.For(t, 30*time.Second, 20*time.Millisecond, func() error {
		var st struct{ Status, Error string }
		n.mustJSON("GET", "/v1/replay", nil, adminAuth, http.StatusOK, &st)
		if st.Status != "done" {
			return fmt.Errorf("replay %s %s", st.Status, st.Error)
		}
		return nil
	})
	// Purchases age out (the 2 s windows): ticks drive every buyer out of
	// "buyers" and, with no recent order left, everyone into "viewers"
	// (each person has 6 views and 2 orders).
	check.For(t, 30*time.Second, 50*time.Millisecond, func() error {
		for aud, want := range map[string]int{"buyers": 0, "viewers": people} {
			var a struct {
				Size int `json:"size"`
			}
			n.mustJSON("GET", "/v1/audiences/"+aud, nil, adminAuth, http.StatusOK, &a)
			if a.Size != want {
				return fmt.Errorf("%s has %d members, want %d once purchases aged out", aud, a.Size, want)
			}
		}
		return nil
	})
	n.stop()

	// What a clean replay of the log derives.
	var replayed []projections.OutMsg
	res, err := engine.Replay(context.Background(), engine.ReplayOptions{DataDir: dataDir, Out: func(m projections.OutMsg) error {
		if strings.HasPrefix(m.Subject, projections.SubjectAudiencePrefix) {
			replayed = append(replayed, m)
		}
		return nil
	}})
	if err != nil {
		t.Fatal(err)
	}
	if len(replayed) < people {
		t.Fatalf("replay derived only %d transitions over %d log entries", len(replayed), res.Applied)
	}

	// What was published: restart without ticks so that the node only
	// drains its outbox, then read the stream.
	n.args = append(n.args, "--tick", "0")
	n.restart()
	published := readPublished(t, n.NATS, len(replayed), 30*time.Second)
	compareTransitions(t, published, replayed)
	t.Logf("%d transitions, identical to a clean replay of %d log entries, across %d SIGKILLs", len(published), res.Applied, kills)
}
