package main

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aurumcdp/aurum/engine"
	"github.com/aurumcdp/aurum/internal/check"
	"github.com/aurumcdp/aurum/internal/workload"
	"github.com/aurumcdp/aurum/projections"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// chaosAudiences have short time windows, so that ticks (every 100 ms)
// produce exits while events stream in and after they stop; "repeat-buyers"
// has no window (entries only) and "engaged" depends on another audience.
var chaosAudiences = []struct {
	name, rule string
	windowed   bool // empties once the stream has been over for its window
}{
	{"recent-buyers", `count("Order Completed", "3s") >= 1`, true},
	{"active-viewers", `count("Product Viewed", "5s") >= 2`, true},
	{"repeat-buyers", `count("Order Completed") >= 2`, false},
	{"engaged", `in_audience("active-viewers") and count("Product Added", "5s") >= 1`, true},
}

// TestChaos is the exactly-once proof. It runs `aurum serve` as a real
// process (ticks every 100 ms), streams the synthetic store
// (internal/workload) into it from several producers, half through
// /v1/batch and half over NATS (aurum.ingest.<source>, each event published
// until JetStream acknowledges it: the gateway's purge-per-batch position
// is crossed by the kills too), that retry every batch until it is
// acknowledged and send a share of batches
// twice (lost acknowledgements), with event time = send time so that the
// audiences' short windows fire time-driven exits. Meanwhile it SIGKILLs the
// node at random points spread over the stream, and once more in the middle
// of a live replay (POST /v1/replay). Afterwards:
//
//  1. every accepted event is counted exactly once: the total_events of the
//     distinct profiles the truth's identifiers resolve to sum to the number
//     of distinct messageIds sent;
//  2. the audience transitions published on AURUM_OUT equal those an
//     offline engine.Replay of the log derives: no duplicate, no gap, same
//     order per profile and audience;
//  3. the crashed node's digest equals engine.Replay's and a clean rebuild's
//     (state/ moved aside, the node restarted on the same log).
//
// The short version (default, ≤ 60 s: 150 people, ~4k events, 10 kills) runs
// in CI. The long one is on demand:
//
//	AURUM_CHAOS=long go test -run TestChaos -timeout 30m ./cmd/aurum
//
// (2000 people, ~130k events, 30 kills; without -race: under -race the
// in-process engine.Replay of that log alone takes many minutes). AURUM_CHAOS_SEED=N changes the
// workload and the kill points; a failure names its seed.
func TestChaos(t *testing.T) {
	if testing.Short() {
		t.Skip("kills real aurum processes")
	}
	t.Parallel() // waits on real processes more than it computes: overlaps the other long tests
	cfg := chaosConfigFromEnv(t)
	start := time.Now()
	w := newChaosWorkload(t, cfg)
	t.Logf("chaos %s, seed %d: %d events (%v) in %d batches, %d identifiers",
		cfg.name, cfg.seed, w.events, w.perSource, w.batches, w.truth.Len())

	dataDir := t.TempDir()
	n := startNode(t, dataDir, "--tick", "100ms")
	keys := map[string]string{}
	for _, s := range workload.Sources {
		keys[s] = n.createSource(s)
	}
	for _, a := range chaosAudiences {
		n.mustJSON("POST", "/v1/audiences", map[string]string{"name": a.name, "rule": a.rule}, adminAuth, http.StatusCreated, nil)
	}

	// Producers: each sends its batches in order, retrying until a 200.
	var acked, rejected, dups, overNATSEvents atomic.Int64
	sendDeadline := time.Now().Add(cfg.timeout + time.Duration(cfg.kills)*5*time.Second) // a bound on retries, should the node not come back
	var wg sync.WaitGroup
	for p, batches := range w.producers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			overNATS := p%2 == 1
			var js map[string]jetstream.JetStream
			if overNATS {
				var closeJS func()
				var err error
				if js, closeJS, err = natsProducers(n.NATS, keys, nats.RetryOnFailedConnect(true)); err != nil {
					t.Errorf("producer %d: %v", p, err)
					return
				}
				defer closeJS()
			}
			pace := time.NewTicker(time.Second / time.Duration(max(cfg.rate, 1)))
			defer pace.Stop()
			for i, b := range batches {
				if cfg.rate > 0 {
					<-pace.C
				}
				now := time.Now().UTC().Format(time.RFC3339Nano)
				for _, ev := range b.events { // event time = send time, so windows matter
					ev["timestamp"] = now
				}
				body, err := json.Marshal(map[string]any{"batch": b.events})
				if err != nil {
					t.Error(err)
					return
				}
				sends := 1
				if b.dup {
					sends = 2
				}
				for s := range sends {
					var rj int
					if overNATS {
						err = natsSendBatch(js[b.source], b, sendDeadline)
						overNATSEvents.Add(int64(len(b.events)))
					} else {
						rj, err = chaosSend(n, keys[b.source], body, sendDeadline)
					}
					if err != nil {
						t.Errorf("producer %d batch %d (send %d): %v", p, i, s+1, err)
						return
					}
					rejected.Add(int64(rj))
					if s == 0 {
						acked.Add(1)
					} else {
						dups.Add(1)
					}
				}
			}
		}()
	}

	// The killer: SIGKILL at a random point of each of cfg.kills equal
	// slices of the stream (counted in acknowledged batches), restart at
	// once; halfway, one more kill in the middle of a live replay.
	type killReport struct {
		kills, replayKills int
		replayNote         string
	}
	killerDone := make(chan killReport, 1)
	streamDone := make(chan struct{})
	go func() {
		var rep killReport
		defer func() { killerDone <- rep }()
		r := rand.New(rand.NewPCG(cfg.seed, 0xc4a05))
		total := float64(w.batches)
		for i := range cfg.kills {
			threshold := int64(total * (float64(i) + 0.1 + 0.8*r.Float64()) / float64(cfg.kills))
			for acked.Load() < threshold {
				select {
				case <-streamDone: // the producers gave up (and said why)
					if acked.Load() < threshold {
						return
					}
				case <-time.After(time.Millisecond): // polling the producers' progress
				}
			}
			time.Sleep(time.Duration(r.IntN(40)) * time.Millisecond) // a random point, not a batch boundary
			n.kill()
			rep.kills++
			n.restart()
			if i != cfg.kills/2 {
				continue
			}
			st, err := killDuringReplay(n)
			switch {
			case err == errNoReplayAPI:
				rep.replayNote = "skipped: the node has no /v1/replay endpoint yet (404)"
			case err != nil:
				t.Errorf("kill during a live replay: %v", err) // the node was not killed
				rep.replayNote = err.Error()
			default:
				rep.replayKills++
				rep.replayNote = fmt.Sprintf("killed while replay (attempt %d) was %s at %d of %d", st.Attempt, st.Status, st.Applied, st.Target)
				n.restart()
			}
		}
	}()
	wg.Wait()
	close(streamDone)
	rep := <-killerDone
	if t.Failed() {
		t.FailNow()
	}
	if got := acked.Load(); got != int64(w.batches) {
		t.Fatalf("%d of %d batches acknowledged", got, w.batches)
	}
	if got := rejected.Load(); got != 0 {
		t.Fatalf("%d events rejected; the workload's events are all valid", got)
	}
	streamed := time.Since(start)
	t.Logf("replay kill: %s", rep.replayNote)
	if rep.replayKills > 0 {
		// A replay that resumed after the crash must finish before the
		// state is compared.
		t.Logf("replay status after the crash: %q", waitReplaySettled(t, n, cfg.timeout))
	}

	// The NATS producers' events are acknowledged once in AURUM_INGEST:
	// the gateway handles them by itself, and the stream is empty once it
	// has (purged after their appends).
	waitIngestDrained(t, n.NATS, cfg.timeout)

	// Time-driven exits: every windowed audience empties once the stream
	// has been over for its window (nothing but ticks happens meanwhile).
	waitWindowedEmpty(t, n, 30*time.Second)
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
	var entered, exited, timeExits int
	for _, m := range replayed {
		var v struct {
			Reason string `json:"reason"`
		}
		if err := json.Unmarshal(m.Data, &v); err != nil {
			t.Fatalf("transition %s: %v", m.MsgID, err)
		}
		switch {
		case strings.HasSuffix(m.Subject, ".entered"):
			entered++
		case strings.HasSuffix(m.Subject, ".exited"):
			exited++
			if v.Reason == "time" {
				timeExits++
			}
		}
	}
	// Sanity of the workload, so that the comparisons below are not vacuous.
	if entered < cfg.people/4 || timeExits < cfg.people/10 {
		t.Fatalf("replay derived only %d entries and %d time exits (of %d exits) for %d people", entered, timeExits, exited, cfg.people)
	}

	// Drain restart: no ticks, so the log stays as the replay saw it; the
	// node applies what it had not and publishes its outbox.
	n.args = append(n.args, "--tick", "0")
	n.restart()
	if last := logLastSeq(t, n.NATS); last != res.Applied {
		t.Fatalf("log ends at %d, the replay applied up to %d", last, res.Applied)
	}
	waitApplied(t, n, res.Applied, cfg.timeout)

	// (1) Every accepted event counted exactly once.
	counted, profiles, err := countEvents(n, w.truth)
	if err != nil {
		t.Fatal(err)
	}
	if counted != int64(w.events) {
		t.Fatalf("the profiles count %d events; %d distinct messageIds were accepted (%d batches sent twice, %d SIGKILLs)",
			counted, w.events, dups.Load(), rep.kills+rep.replayKills)
	}

	// (2) The published transitions equal the replay's.
	pubs := readPublished(t, n.NATS, len(replayed), cfg.timeout)
	compareTransitions(t, pubs, replayed)
	n.stop()

	// (3) Digests: the crashed node's = the offline replay's = a clean rebuild's.
	crashedOut := digestOf(t, dataDir)
	crashed, applied := parseDigest(t, crashedOut)
	if applied != res.Applied {
		t.Fatalf("crashed node applied %d, the log ends at %d", applied, res.Applied)
	}
	if want := hex.EncodeToString(res.Digest); crashed != want {
		// Seen with engine.Replay as of 66c871c: its temporary store lacks
		// meta/partitions (Replay reads the count through a read-only
		// CheckPartitions and never writes it), the only key that differs.
		t.Errorf("crashed node's digest differs from engine.Replay's:\n crashed %s\n replay  %s", crashed, want)
	}
	aside := t.TempDir()
	if err := os.Rename(filepath.Join(dataDir, "state"), filepath.Join(aside, "state")); err != nil {
		t.Fatal(err)
	}
	n.restart() // still --tick 0: the rebuild reads the same log
	waitApplied(t, n, res.Applied, cfg.timeout)
	n.stop()
	if rebuilt, _ := parseDigest(t, digestOf(t, dataDir)); rebuilt != crashed {
		t.Fatalf("projections after %d SIGKILLs differ from a clean rebuild:\n crashed %s\n rebuilt %s", rep.kills+rep.replayKills, crashed, rebuilt)
	}

	t.Logf("chaos %s, seed %d: %d events (%d batches, %d sent twice; %d events sent over NATS) into %d profiles, %d SIGKILLs (+%d during a replay), "+
		"%d transitions (%d entries, %d exits, %d by time) identical to a clean replay of %d log entries; digest %.16s…; stream %v, total %v",
		cfg.name, cfg.seed, w.events, w.batches, dups.Load(), overNATSEvents.Load(), profiles, rep.kills, rep.replayKills,
		len(pubs), entered, exited, timeExits, res.Applied, crashed, streamed.Round(time.Millisecond), time.Since(start).Round(time.Millisecond))
}

// compareTransitions checks that the published transitions are those
// derived by the replay: each once, none missing or extra, on the same
// subject, and in the same order per audience and profile.
func compareTransitions(t *testing.T, pubs []published, replayed []projections.OutMsg) {
	t.Helper()
	subject := map[string]string{}
	for _, p := range pubs {
		if _, dup := subject[p.id]; dup {
			t.Fatalf("transition %s published twice", p.id)
		}
		subject[p.id] = p.subject
	}
	want := map[string]bool{}
	for _, m := range replayed {
		want[m.MsgID] = true
		s, ok := subject[m.MsgID]
		if !ok {
			t.Fatalf("transition %s (%s) derived by the replay was never published (a gap)", m.MsgID, m.Subject)
		}
		if s != m.Subject {
			t.Fatalf("transition %s published on %s, derived on %s", m.MsgID, s, m.Subject)
		}
	}
	for _, p := range pubs {
		if !want[p.id] {
			t.Fatalf("transition %s (%s) published but not derived by a clean replay", p.id, p.subject)
		}
	}
	order := func(ids []string) map[string][]string {
		out := map[string][]string{}
		for _, id := range ids {
			k, err := transitionKey(id)
			if err != nil {
				t.Fatal(err)
			}
			out[k] = append(out[k], id)
		}
		return out
	}
	var pubIDs, repIDs []string
	for _, p := range pubs {
		pubIDs = append(pubIDs, p.id)
	}
	for _, m := range replayed {
		repIDs = append(repIDs, m.MsgID)
	}
	po, ro := order(pubIDs), order(repIDs)
	for k, ids := range ro {
		if !slices.Equal(po[k], ids) {
			t.Fatalf("order of %s differs:\n published %v\n replayed  %v", k, po[k], ids)
		}
	}
}

// waitWindowedEmpty waits until every windowed chaos audience is empty on
// n: once the stream is over, time alone (ticks) makes them so.
func waitWindowedEmpty(t *testing.T, n *node, timeout time.Duration) {
	t.Helper()
	check.For(t, timeout, 100*time.Millisecond, func() error {
		sizes, err := n.audienceSizes()
		if err != nil {
			return err
		}
		for _, a := range chaosAudiences {
			if a.windowed && sizes[a.name] != 0 {
				return fmt.Errorf("audience %s still has %d members", a.name, sizes[a.name])
			}
		}
		return nil
	})
}
