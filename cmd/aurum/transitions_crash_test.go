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
	"github.com/aurumcdp/aurum/projections"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// TestTransitionsAcrossCrashes: audience transitions published by a node
// that is SIGKILLed several times while events stream in (and time-driven
// exits fire) equal, one for one and in the same order per profile, those
// an offline replay of the same log derives: no duplicate, no gap.
func TestTransitionsAcrossCrashes(t *testing.T) {
	if testing.Short() {
		t.Skip("kills real aurum processes")
	}
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
	checkFor(t, 30*time.Second, 20*time.Millisecond, func() error {
		var st struct{ Status, Error string }
		n.mustJSON("GET", "/v1/replay", nil, adminAuth, http.StatusOK, &st)
		if st.Status != "done" {
			return fmt.Errorf("replay %s %s", st.Status, st.Error)
		}
		return nil
	})
	time.Sleep(3 * time.Second) // purchases age out: time-driven exits
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
	nc, err := nats.Connect(n.NATS)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	type pub struct{ id, subject string }
	var published []pub
	checkFor(t, 30*time.Second, 200*time.Millisecond, func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		cons, err := js.OrderedConsumer(ctx, "AURUM_OUT", jetstream.OrderedConsumerConfig{FilterSubjects: []string{"aurum.audience.>"}})
		if err != nil {
			return err
		}
		published = published[:0]
		for {
			m, err := cons.Next(jetstream.FetchMaxWait(300 * time.Millisecond))
			if err != nil {
				break
			}
			published = append(published, pub{m.Headers().Get("Nats-Msg-Id"), m.Subject()})
		}
		if len(published) < len(replayed) {
			return fmt.Errorf("%d of %d transitions published so far", len(published), len(replayed))
		}
		return nil
	})

	seen := map[string]bool{}
	for _, p := range published {
		if seen[p.id] {
			t.Fatalf("transition %s published twice", p.id)
		}
		seen[p.id] = true
	}
	want := map[string]bool{}
	for _, m := range replayed {
		want[m.MsgID] = true
		if !seen[m.MsgID] {
			t.Fatalf("transition %s (%s) derived by the replay was never published (a gap)", m.MsgID, m.Subject)
		}
	}
	for _, p := range published {
		if !want[p.id] {
			t.Fatalf("transition %s (%s) published but not derived by a clean replay", p.id, p.subject)
		}
	}
	// Same order per profile (and audience).
	order := func(ids []string) map[string][]string {
		out := map[string][]string{}
		for _, id := range ids {
			parts := strings.Split(id, ":") // aud:<audience>:<profile>:<seq>:<idx>
			k := parts[1] + "/" + parts[2]
			out[k] = append(out[k], id)
		}
		return out
	}
	var pubIDs, repIDs []string
	for _, p := range published {
		pubIDs = append(pubIDs, p.id)
	}
	for _, m := range replayed {
		repIDs = append(repIDs, m.MsgID)
	}
	po, ro := order(pubIDs), order(repIDs)
	for k, ids := range ro {
		if fmt.Sprint(po[k]) != fmt.Sprint(ids) {
			t.Fatalf("order of %s differs:\n published %v\n replayed  %v", k, po[k], ids)
		}
	}
	t.Logf("%d transitions, identical to a clean replay of %d log entries, across %d SIGKILLs", len(published), res.Applied, kills)
}
