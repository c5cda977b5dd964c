package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aurumcdp/aurum/internal/check"
	"github.com/aurumcdp/aurum/internal/workload"
	"github.com/nats-io/nats.go/jetstream"
)

// TestClusterThroughput is issue #11's must-show 3, a benchmark run on
// demand (bench/RESULTS.md "Issue #11: throughput, one node against
// three"):
//
//	AURUM_BENCH=cluster go test -run TestClusterThroughput -v -timeout 30m ./cmd/aurum
//
// Each round runs the same workload (the synthetic store; AURUM_BENCH_PEOPLE
// people, default 1000) on two set-ups, in an order that alternates each
// round (AURUM_BENCH_ROUNDS, default 3): a single node without --cluster
// and three nodes (R3 streams, fenced outputs). (A one-node cluster file,
// to separate fencing from replication, does not start: the embedded
// server waits for routes that never come.) Four producers post batches of 100 events as
// fast as they are acknowledged, to the nodes in turn. It reports per run:
// ingest (events acknowledged per second), apply (events per second until
// every node applied the whole log) and outputs (audience transitions per
// second until the last one was stored), then the medians and the ratios
// to the single node.
func TestClusterThroughput(t *testing.T) {
	if os.Getenv("AURUM_BENCH") != "cluster" {
		t.Skip("a benchmark: AURUM_BENCH=cluster go test -run TestClusterThroughput -v ./cmd/aurum")
	}
	people, rounds := envInt(t, "AURUM_BENCH_PEOPLE", 1000), envInt(t, "AURUM_BENCH_ROUNDS", 3)
	w := newChaosWorkload(t, chaosConfig{people: people, days: 14, producers: 4, batch: 100, dupEvery: 1 << 30, seed: 11})
	setups := []string{"single", "cluster-3"}
	results := map[string][]throughput{}
	for r := range rounds {
		for i := range setups {
			s := setups[(i+r)%len(setups)]
			res := throughputRun(t, s, w)
			t.Logf("round %d %-9s %6d events: ingest %7.0f ev/s, apply (all nodes) %7.0f ev/s, %5d transitions at %6.0f/s",
				r+1, s, w.events, res.ingestRate(), res.applyRate(), res.transitions, res.outRate())
			results[s] = append(results[s], res)
		}
	}
	med := func(s string, f func(throughput) float64) float64 {
		var v []float64
		for _, r := range results[s] {
			v = append(v, f(r))
		}
		slices.Sort(v)
		return v[len(v)/2]
	}
	var b strings.Builder
	fmt.Fprintf(&b, "\n| set-up | ingest ev/s | apply ev/s (all nodes) | transitions/s | ingest ratio | apply ratio | output ratio |\n|---|---|---|---|---|---|---|\n")
	base := [3]float64{med("single", throughput.ingestRate), med("single", throughput.applyRate), med("single", throughput.outRate)}
	for _, s := range setups {
		m := [3]float64{med(s, throughput.ingestRate), med(s, throughput.applyRate), med(s, throughput.outRate)}
		fmt.Fprintf(&b, "| %s | %.0f | %.0f | %.0f | %.2f | %.2f | %.2f |\n", s, m[0], m[1], m[2], m[0]/base[0], m[1]/base[1], m[2]/base[2])
	}
	// The ratio within each round (the two set-ups ran back to back, under
	// the same load of a shared machine), and its median.
	for _, s := range setups[1:] {
		for _, m := range []struct {
			name string
			f    func(throughput) float64
		}{{"ingest", throughput.ingestRate}, {"apply", throughput.applyRate}} {
			var ratios []float64
			for r := range rounds {
				ratios = append(ratios, m.f(results[s][r])/m.f(results["single"][r]))
			}
			sorted := slices.Clone(ratios)
			slices.Sort(sorted)
			fmt.Fprintf(&b, "%s/single %s per round: %.2f (median %.2f)\n", s, m.name, ratios, sorted[len(sorted)/2])
		}
	}
	t.Logf("medians of %d rounds, %d events, %d people:%s", rounds, w.events, people, b.String())
}

func envInt(t *testing.T, name string, def int) int {
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil || n <= 0 {
		t.Fatalf("%s=%q: want a positive integer", name, v)
	}
	return n
}

// throughput is one run's timings, from the first send.
type throughput struct {
	events      int
	ingest      time.Duration // every batch acknowledged
	apply       time.Duration // every node applied the whole log
	transitions int           // aurum.audience.> messages stored
	out         time.Duration // the last of them stored
}

func (r throughput) ingestRate() float64 { return float64(r.events) / r.ingest.Seconds() }
func (r throughput) applyRate() float64  { return float64(r.events) / r.apply.Seconds() }
func (r throughput) outRate() float64    { return float64(r.transitions) / r.out.Seconds() }

// throughputRun starts the set-up, sends w, measures and stops it.
func throughputRun(t *testing.T, setup string, w *chaosWorkload) throughput {
	t.Helper()
	var nodes []*node
	switch setup {
	case "single":
		nodes = []*node{startNode(t, t.TempDir(), "--tick", "0")}
	case "cluster-3":
		names := []string{"n1", "n2", "n3"}
		nodes = startClusterWith(t, writeClusterFile(t, 3, 8, names...), []string{"--tick", "0"}, names...)
	default:
		t.Fatalf("set-up %q", setup)
	}
	defer func() {
		for _, n := range nodes {
			n.stop()
		}
	}()
	keys := map[string]string{}
	for _, s := range workload.Sources {
		keys[s] = nodes[0].createSource(s)
	}
	for _, a := range chaosAudiences {
		nodes[0].mustJSON("POST", "/v1/audiences", map[string]string{"name": a.name, "rule": a.rule}, adminAuth, http.StatusCreated, nil)
	}
	for _, n := range nodes {
		check.For(t, 60*time.Second, 50*time.Millisecond, func() error {
			sizes, err := n.audienceSizes()
			if err == nil && len(sizes) != len(chaosAudiences) {
				err = fmt.Errorf("%d audiences", len(sizes))
			}
			if err == nil {
				code, body, herr := n.request("GET", "/healthz", nil, nil)
				if herr != nil || code != http.StatusOK {
					err = fmt.Errorf("/healthz %d %s %v", code, body, herr)
				}
			}
			return err
		})
	}
	start := time.Now()
	var wg sync.WaitGroup
	errs := make(chan error, len(w.producers))
	for p, batches := range w.producers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i, b := range batches {
				body, err := json.Marshal(map[string]any{"batch": b.events})
				if err != nil {
					errs <- err
					return
				}
				n := nodes[(p+i)%len(nodes)]
				if _, err := chaosSend(n, keys[b.source], body, time.Now().Add(time.Minute)); err != nil {
					errs <- fmt.Errorf("producer %d batch %d: %w", p, i, err)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	res := throughput{events: w.events, ingest: time.Since(start)}
	last := logLastSeq(t, nodes[0].NATS)
	var wgA sync.WaitGroup
	for _, n := range nodes {
		wgA.Add(1)
		go func() {
			defer wgA.Done()
			for time.Since(start) < 10*time.Minute {
				if got, err := n.appliedSeq(); err == nil && got >= last {
					return
				}
				time.Sleep(10 * time.Millisecond)
			}
		}()
	}
	wgA.Wait()
	res.apply = time.Since(start)
	// Outputs: once AURUM_OUT has not grown for 2 s, the last transition's
	// time.
	nc := natsConnect(t, nodes[0].NATS, natsAdmin())
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	var lastOut uint64
	var lastTime time.Time
	check.For(t, 5*time.Minute, 2*time.Second, func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		s, err := js.Stream(ctx, "AURUM_OUT")
		if err != nil {
			return err
		}
		info, err := s.Info(ctx, jetstream.WithSubjectFilter("aurum.audience.>"))
		if err != nil {
			return err
		}
		if info.State.LastSeq != lastOut {
			lastOut, lastTime = info.State.LastSeq, info.State.LastTime
			return fmt.Errorf("AURUM_OUT still growing")
		}
		res.transitions = 0
		for _, c := range info.State.Subjects {
			res.transitions += int(c)
		}
		return nil
	})
	res.out = lastTime.Sub(start)
	return res
}
