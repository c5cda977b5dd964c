package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/aurumcdp/aurum/internal/check"
	"github.com/aurumcdp/aurum/internal/workload"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// chaosConfig sizes a chaos run (TestChaos).
type chaosConfig struct {
	name      string
	people    int // workload.Config.People
	days      int // workload.Config.Days
	kills     int // plain SIGKILLs spread over the stream (the replay kill comes on top)
	producers int // concurrent producers (odd ones over NATS); a person's events stay with one producer
	batch     int // events per /v1/batch request
	dupEvery  int // every dupEvery-th batch of a producer is sent twice (a lost acknowledgement)
	rate      int // batches per second per producer (0: unthrottled), so that the stream spans the windows
	seed      uint64
	timeout   time.Duration // for the post-stream waits
}

var (
	chaosShort = chaosConfig{name: "short", people: 150, days: 14, kills: 10, producers: 4, batch: 25,
		dupEvery: 4, rate: 8, seed: 1, timeout: 60 * time.Second}
	chaosLong = chaosConfig{name: "long", people: 2000, days: 30, kills: 30, producers: 8, batch: 50,
		dupEvery: 4, rate: 20, seed: 1, timeout: 5 * time.Minute}
)

// chaosConfigFromEnv picks the run: AURUM_CHAOS=long for the long one, and
// AURUM_CHAOS_SEED=N to vary the workload and the kill points.
func chaosConfigFromEnv(t *testing.T) chaosConfig {
	t.Helper()
	var c chaosConfig
	switch v := os.Getenv("AURUM_CHAOS"); v {
	case "", "short":
		c = chaosShort
	case "long":
		c = chaosLong
	default:
		t.Fatalf("AURUM_CHAOS=%q: want short or long", v)
	}
	if s := os.Getenv("AURUM_CHAOS_SEED"); s != "" {
		seed, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			t.Fatalf("AURUM_CHAOS_SEED=%q: %v", s, err)
		}
		c.seed = seed
	}
	return c
}

// chaosBatch is one /v1/batch request of a single source.
type chaosBatch struct {
	source string
	events []map[string]any
	dup    bool // sent a second time after its acknowledgement
}

// chaosWorkload is the workload split over producers.
type chaosWorkload struct {
	producers [][]chaosBatch // each producer's batches, in send order
	batches   int            // batches (first sends)
	events    int            // distinct messageIds
	perSource map[string]int
	truth     *workload.Truth
}

// newChaosWorkload generates the synthetic store and deals its events to
// producers by person, so that each person's events are sent in their
// order (per source, which is all identity resolution needs).
func newChaosWorkload(t *testing.T, c chaosConfig) *chaosWorkload {
	t.Helper()
	g := workload.New(workload.Config{People: c.people, Seed: c.seed, Days: c.days})
	w := &chaosWorkload{producers: make([][]chaosBatch, c.producers), perSource: map[string]int{}}
	pending := make([]map[string][]map[string]any, c.producers)
	for i := range pending {
		pending[i] = map[string][]map[string]any{}
	}
	flush := func(p int, src string) {
		if len(pending[p][src]) == 0 {
			return
		}
		b := chaosBatch{source: src, events: pending[p][src]}
		b.dup = (len(w.producers[p])+p)%c.dupEvery == 0
		w.producers[p] = append(w.producers[p], b)
		w.batches++
		pending[p][src] = nil
	}
	ids := map[string]bool{}
	for {
		ev, ok := g.Next()
		if !ok {
			break
		}
		var m map[string]any
		if err := json.Unmarshal(ev.JSON, &m); err != nil {
			t.Fatalf("workload event: %v", err)
		}
		id, _ := m["messageId"].(string)
		if id == "" || ids[id] {
			t.Fatalf("workload event without a unique messageId: %s", ev.JSON)
		}
		ids[id] = true
		w.perSource[ev.Source]++
		p := ev.Person % c.producers
		pending[p][ev.Source] = append(pending[p][ev.Source], m)
		if len(pending[p][ev.Source]) == c.batch {
			flush(p, ev.Source)
		}
	}
	for p := range pending {
		for _, src := range workload.Sources {
			flush(p, src)
		}
	}
	w.events = len(ids)
	w.truth = g.Truth()
	return w
}

// chaosSend posts one request body until the node acknowledges it with a
// 200, as an SDK retries across a crash. It returns the rejected count of the
// acknowledging response; any other answer than 200 or 503 (or a refused
// connection while the node restarts) is an error.
func chaosSend(n *node, key string, body []byte, deadline time.Time) (rejected int, err error) {
	for {
		code, data, err := n.request("POST", "/v1/batch", body, writeKeyAuth(key))
		if err == nil && code == http.StatusOK {
			var resp struct {
				Accepted int               `json:"accepted"`
				Rejected []json.RawMessage `json:"rejected"`
			}
			if err := json.Unmarshal(data, &resp); err != nil {
				return 0, fmt.Errorf("batch response %s: %v", data, err)
			}
			return len(resp.Rejected), nil
		}
		if err == nil && code != http.StatusServiceUnavailable {
			return 0, fmt.Errorf("batch answered %d: %s", code, data)
		}
		if time.Now().After(deadline) {
			return 0, fmt.Errorf("batch not acknowledged before the deadline (last: %d %v)", code, err)
		}
		time.Sleep(20 * time.Millisecond) // retry backoff, as an SDK's
	}
}

// replayStatus is GET /v1/replay.
type replayStatus struct {
	Status  string `json:"status"`
	Applied uint64 `json:"applied"`
	Target  uint64 `json:"target"`
	Attempt int    `json:"-"` // replays started until one was caught running
}

// errNoReplayAPI: the node has no live replay endpoint (404).
var errNoReplayAPI = fmt.Errorf("no /v1/replay endpoint (404)")

// killDuringReplay starts a live replay (POST /v1/replay from the start)
// and SIGKILLs the node as soon as the replay is seen running with applied
// > 0 (the replay reports progress in steps, so waiting for a later step
// could outlast the stream). A replay that finishes before it was caught
// running is started again, up to a bound. It returns the status seen at
// the kill.
func killDuringReplay(n *node) (replayStatus, error) {
	var st replayStatus
	for attempt := range 20 {
		st.Attempt = attempt + 1
		code, data, err := n.request("POST", "/v1/replay", map[string]string{"from": "start"}, adminAuth)
		if err != nil {
			return st, fmt.Errorf("POST /v1/replay: %v", err)
		}
		switch {
		case code == http.StatusNotFound:
			return st, errNoReplayAPI
		case code == http.StatusConflict: // one is already running: catch it
		case code != http.StatusAccepted:
			return st, fmt.Errorf("POST /v1/replay: %d %s", code, data)
		}
		deadline := time.Now().Add(30 * time.Second)
		for time.Now().Before(deadline) {
			code, data, err := n.request("GET", "/v1/replay", nil, adminAuth)
			if err != nil || code != http.StatusOK {
				return st, fmt.Errorf("GET /v1/replay: %d %s %v", code, data, err)
			}
			st = replayStatus{Attempt: st.Attempt}
			if err := json.Unmarshal(data, &st); err != nil {
				return st, fmt.Errorf("GET /v1/replay %s: %v", data, err)
			}
			// Kill it well into its work (a third of the log), not at its
			// first entry: progress moves with each entry of a group.
			if st.Status == "running" && st.Applied > 0 && st.Applied*3 >= st.Target {
				n.kill()
				return st, nil
			}
			if st.Status == "failed" {
				return st, fmt.Errorf("replay failed: %s", data)
			}
			if st.Status == "done" || st.Status == "idle" {
				break // over before it was caught running: start another
			}
			time.Sleep(time.Millisecond)
		}
	}
	return st, fmt.Errorf("no replay was seen running in 20 attempts (last status %+v)", st)
}

// waitReplaySettled waits until the node reports no replay running or
// swapping, and returns the final status ("" without the endpoint).
func waitReplaySettled(t *testing.T, n *node, timeout time.Duration) string {
	t.Helper()
	var st replayStatus
	check.For(t, timeout, 50*time.Millisecond, func() error {
		code, data, err := n.request("GET", "/v1/replay", nil, adminAuth)
		if err != nil {
			return err
		}
		if code == http.StatusNotFound {
			st.Status = ""
			return nil
		}
		if code != http.StatusOK {
			return fmt.Errorf("GET /v1/replay: %d %s", code, data)
		}
		if err := json.Unmarshal(data, &st); err != nil {
			return err
		}
		if st.Status == "running" || st.Status == "swapping" {
			return fmt.Errorf("replay still %s (%d of %d)", st.Status, st.Applied, st.Target)
		}
		return nil
	})
	return st.Status
}

// appliedSeq is the node's applied log position (GET /healthz; a cluster
// node whose JetStream replicas catch up answers 503 with it too).
func (n *node) appliedSeq() (uint64, error) {
	var h struct {
		AppliedSeq *uint64 `json:"applied_seq"`
	}
	code, body, err := n.request("GET", "/healthz", nil, nil)
	if err != nil || (code != http.StatusOK && code != http.StatusServiceUnavailable) {
		return 0, fmt.Errorf("healthz: %d %s %v", code, body, err)
	}
	if err := json.Unmarshal(body, &h); err != nil || h.AppliedSeq == nil {
		return 0, fmt.Errorf("healthz %d %s: no applied_seq (%v)", code, body, err)
	}
	return *h.AppliedSeq, nil
}

// waitApplied waits until the node has applied exactly seq.
func waitApplied(t *testing.T, n *node, seq uint64, timeout time.Duration) {
	t.Helper()
	check.For(t, timeout, 50*time.Millisecond, func() error {
		got, err := n.appliedSeq()
		if err != nil {
			return err
		}
		if got != seq {
			return fmt.Errorf("applied %d of %d", got, seq)
		}
		return nil
	})
}

// audienceSizes returns GET /v1/audiences as name → size.
func (n *node) audienceSizes() (map[string]int64, error) {
	var out struct {
		Audiences []struct {
			Name string `json:"name"`
			Size int64  `json:"size"`
		} `json:"audiences"`
	}
	code, data, err := n.request("GET", "/v1/audiences", nil, adminAuth)
	if err != nil || code != http.StatusOK {
		return nil, fmt.Errorf("GET /v1/audiences: %d %s %v", code, data, err)
	}
	if err := json.Unmarshal(data, &out); err != nil {
		return nil, err
	}
	sizes := map[string]int64{}
	for _, a := range out.Audiences {
		sizes[a.Name] = a.Size
	}
	return sizes, nil
}

// countEvents sums stats.total_events over the distinct profiles that the
// truth's identifiers resolve to: each accepted event lies in exactly one
// profile, so the sum is the number of events the node counted. An
// identifier without a profile is an error (its events were lost).
func countEvents(n *node, truth *workload.Truth) (total int64, profiles int, err error) {
	seen := map[string]bool{}
	for _, id := range truth.Identifiers() {
		p, err := n.profile(id.String())
		if err != nil {
			return 0, 0, err
		}
		pid, _ := p["profile_id"].(string)
		if pid == "" {
			return 0, 0, fmt.Errorf("%s: profile without profile_id", id)
		}
		if seen[pid] {
			continue
		}
		seen[pid] = true
		stats, _ := p["stats"].(map[string]any)
		te, ok := stats["total_events"].(float64)
		if !ok {
			return 0, 0, fmt.Errorf("%s: no stats.total_events in %v", id, p)
		}
		total += int64(te)
	}
	return total, len(seen), nil
}

// published is a transition read back from AURUM_OUT.
type published struct{ id, subject string }

// readPublished reads every audience transition on AURUM_OUT, polling until
// at least want are there.
func readPublished(t *testing.T, natsURL string, want int, timeout time.Duration) []published {
	t.Helper()
	nc := natsConnect(t, natsURL, natsAdmin())
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	var out []published
	check.For(t, timeout, 200*time.Millisecond, func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		cons, err := js.OrderedConsumer(ctx, "AURUM_OUT", jetstream.OrderedConsumerConfig{FilterSubjects: []string{"aurum.audience.>"}})
		if err != nil {
			return err
		}
		out = out[:0]
		for {
			m, err := cons.Next(jetstream.FetchMaxWait(300 * time.Millisecond))
			if err != nil {
				break
			}
			out = append(out, published{m.Headers().Get("Nats-Msg-Id"), m.Subject()})
		}
		if len(out) < want {
			return fmt.Errorf("%d of %d transitions published so far", len(out), want)
		}
		return nil
	})
	return out
}

// logLastSeq is the last sequence of AURUM_LOG.
// natsProducers connects one JetStream producer per workload source (its
// write key) to url, reconnecting without end (nodes restart); close
// closes the connections.
func natsProducers(url string, keys map[string]string, opts ...nats.Option) (js map[string]jetstream.JetStream, close func(), err error) {
	var conns []*nats.Conn
	close = func() {
		for _, nc := range conns {
			nc.Close()
		}
	}
	js = map[string]jetstream.JetStream{}
	for _, s := range workload.Sources {
		nc, err := nats.Connect(url, append([]nats.Option{natsProducer(s, keys[s]), nats.MaxReconnects(-1),
			nats.ReconnectWait(100 * time.Millisecond)}, opts...)...)
		if err != nil {
			close()
			return nil, nil, fmt.Errorf("NATS producer of %s: %w", s, err)
		}
		conns = append(conns, nc)
		if js[s], err = jetstream.New(nc); err != nil {
			close()
			return nil, nil, err
		}
	}
	return js, close, nil
}

// waitIngestDrained waits until AURUM_INGEST holds no message: the
// gateway has handled (and purged) everything producers published.
func waitIngestDrained(t *testing.T, natsURL string, timeout time.Duration) {
	t.Helper()
	nc := natsConnect(t, natsURL, natsAdmin())
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	check.For(t, timeout, 20*time.Millisecond, func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		s, err := js.Stream(ctx, "AURUM_INGEST")
		if err != nil {
			return err
		}
		if st := s.CachedInfo().State; st.Msgs != 0 {
			return fmt.Errorf("AURUM_INGEST holds %d messages (first %d, last %d)", st.Msgs, st.FirstSeq, st.LastSeq)
		}
		return nil
	})
}

func logLastSeq(t *testing.T, natsURL string) uint64 {
	t.Helper()
	nc := natsConnect(t, natsURL, natsAdmin())
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s, err := js.Stream(ctx, "AURUM_LOG")
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return info.State.LastSeq
}

// transitionKey groups a transition id aud:<audience>:<profile>:<seq>:<idx>
// by audience and profile.
func transitionKey(id string) (string, error) {
	parts := strings.Split(id, ":")
	if len(parts) != 5 || parts[0] != "aud" {
		return "", fmt.Errorf("transition id %q is not aud:<audience>:<profile>:<seq>:<idx>", id)
	}
	return parts[1] + "/" + parts[2], nil
}

// parseDigest splits the first line of `aurum digest` output, "<hex>
// applied=N" (later lines, per partition, are ignored).
func parseDigest(t *testing.T, out string) (hexDigest string, applied uint64) {
	t.Helper()
	first, _, _ := strings.Cut(out, "\n")
	f := strings.Fields(first)
	if len(f) < 2 || !strings.HasPrefix(f[1], "applied=") {
		t.Fatalf("digest output %q: want \"<hex> applied=N\" on the first line", out)
	}
	applied, err := strconv.ParseUint(strings.TrimPrefix(f[1], "applied="), 10, 64)
	if err != nil {
		t.Fatalf("digest output %q: %v", out, err)
	}
	return f[0], applied
}
