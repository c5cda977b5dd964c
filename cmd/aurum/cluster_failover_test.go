package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aurumcdp/aurum/internal/check"
)

// The steps of a failover, read from the surviving nodes' logs (JSON
// lines: serve --log-format json) after a SIGKILL: what ARCHITECTURE.md
// "Cluster" ("Where a failover's time goes") describes, measured.
var failoverSteps = []struct{ name, what string }{
	{"elected", "a survivor became Raft leader (victim led Raft)"},
	{"hb_failing", "the Raft leader saw heartbeats to the victim fail"},
	{"marked_down", "the leader committed the victim down (DownAfter after hb_failing)"},
	{"map_applied", "the new owner applied the map that gave it the partition"},
	{"js_log", "a new AURUM_LOG stream leader (victim led it)"},
	{"js_out", "a new AURUM_OUT stream leader (victim led it)"},
	{"reader_reopen", "the new owner's log reader re-opened its consumer (victim held it)"},
	{"owner_seen", "the new owner's outbox saw the ownership (engine: outbox: owner of partition)"},
	{"caught_up", "the new owner applied the log's end it noted"},
	{"claimed", "the new owner's fence claim stored (engine: outbox: publishing partition)"},
	{"first_publish", "its first fenced output acknowledged"},
	{"stored", "AURUM_OUT's timestamp of that transition (the failover)"},
}

// failoverBreakdown is the time since the SIGKILL of each step (absent:
// not seen in the window, e.g. no election when the victim did not lead).
type failoverBreakdown struct {
	victim    string
	leader    bool
	parts     []int
	partition int    // the partition of the first transition after the kill
	newOwner  string // its new owner
	at        map[string]time.Duration
}

// logLine is one JSON log line of a node.
type logLine struct {
	time  time.Time
	msg   string
	attrs map[string]any
}

// parseLogLines reads a node's JSON log lines (others are skipped).
func parseLogLines(text string) []logLine {
	var out []logLine
	sc := bufio.NewScanner(strings.NewReader(text))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		b := sc.Bytes()
		if len(b) == 0 || b[0] != '{' {
			continue
		}
		var m map[string]any
		if json.Unmarshal(b, &m) != nil {
			continue
		}
		ts, _ := m["time"].(string)
		t, err := time.Parse(time.RFC3339Nano, ts)
		if err != nil {
			continue
		}
		msg, _ := m["msg"].(string)
		out = append(out, logLine{time: t, msg: msg, attrs: m})
	}
	return out
}

// num reads a numeric attribute.
func (l logLine) num(key string) (int, bool) {
	v, ok := l.attrs[key].(float64)
	return int(v), ok
}

// breakdownFailover reads the survivors' logs between the SIGKILL and the
// first transition of one of the victim's partitions stored after it.
func breakdownFailover(c *testCluster, victim string, leader bool, parts []int, killed time.Time, tr seenTransition) failoverBreakdown {
	b := failoverBreakdown{victim: victim, leader: leader, parts: parts, partition: tr.partition, at: map[string]time.Duration{}}
	end := tr.stored.Add(500 * time.Millisecond) // log times and the stream's may differ by a little
	logs := map[string][]logLine{}
	for i, name := range c.names {
		if name == victim {
			continue
		}
		for _, l := range parseLogLines(c.nodes[i].logText()) {
			if !l.time.Before(killed) && !l.time.After(end) {
				logs[name] = append(logs[name], l)
			}
		}
	}
	first := func(step string, nodes []string, match func(logLine) bool) {
		for _, name := range nodes {
			for _, l := range logs[name] {
				if match(l) {
					if d, ok := b.at[step]; !ok || l.time.Sub(killed) < d {
						b.at[step] = l.time.Sub(killed)
					}
					break
				}
			}
		}
	}
	survivors := slices.DeleteFunc(slices.Clone(c.names), func(n string) bool { return n == victim })
	// The new owner: whose outbox saw ownership of the partition.
	for _, name := range survivors {
		for _, l := range logs[name] {
			if p, ok := l.num("partition"); ok && p == tr.partition && l.msg == "engine: outbox: owner of partition" {
				if d, ok := b.at["owner_seen"]; !ok || l.time.Sub(killed) < d {
					b.at["owner_seen"], b.newOwner = l.time.Sub(killed), name
				}
				break
			}
		}
	}
	owner := []string{b.newOwner}
	if leader {
		first("elected", survivors, func(l logLine) bool { return l.msg == "cluster: leadership" && l.attrs["leader"] == true })
	}
	first("hb_failing", survivors, func(l logLine) bool { return l.msg == "cluster: heartbeats failing" && l.attrs["peer"] == victim })
	first("marked_down", survivors, func(l logLine) bool {
		down, _ := l.attrs["down"].([]any)
		return l.msg == "cluster: liveness committed" && slices.Contains(down, any(victim))
	})
	first("map_applied", owner, func(l logLine) bool {
		moved, _ := l.attrs["moved"].(string)
		return l.msg == "cluster: map applied" && slices.Contains(strings.Fields(moved), fmt.Sprintf("%d:%s@%s", tr.partition, b.newOwner, epochOf(tr.epoch)))
	})
	first("js_log", survivors, func(l logLine) bool {
		return strings.HasPrefix(l.msg, "nats-server: JetStream cluster new stream leader") && strings.Contains(l.msg, "> AURUM_LOG'")
	})
	first("js_out", survivors, func(l logLine) bool {
		return strings.HasPrefix(l.msg, "nats-server: JetStream cluster new stream leader") && strings.Contains(l.msg, "> AURUM_OUT'")
	})
	first("reader_reopen", owner, func(l logLine) bool { return strings.HasPrefix(l.msg, "log: reader: re-opening") })
	for step, msg := range map[string]string{"caught_up": "engine: outbox: caught up", "claimed": "engine: outbox: publishing partition",
		"first_publish": "engine: outbox: first publish"} {
		first(step, owner, func(l logLine) bool {
			p, ok := l.num("partition")
			return ok && p == tr.partition && l.msg == msg
		})
	}
	b.at["stored"] = tr.stored.Sub(killed)
	return b
}

// epochOf is E of an Aurum-Epoch header "<p>.<E>".
func epochOf(h string) string {
	_, e, _ := strings.Cut(h, ".")
	return e
}

// String is one line: the step times since the kill.
func (b failoverBreakdown) String() string {
	var s strings.Builder
	fmt.Fprintf(&s, "failover of %s (leader %v, partitions %v) via partition %d on %s:", b.victim, b.leader, b.parts, b.partition, b.newOwner)
	for _, st := range failoverSteps {
		if d, ok := b.at[st.name]; ok {
			fmt.Fprintf(&s, " %s %.2fs", st.name, d.Seconds())
		}
	}
	return s.String()
}

// failoverTable is a markdown table of breakdowns, then median, p90 and
// max of each step over the kills it occurred in.
func failoverTable(bs []failoverBreakdown) string {
	var s strings.Builder
	s.WriteString("| # | victim | Raft leader | partitions | via | ")
	for _, st := range failoverSteps {
		s.WriteString(st.name + " | ")
	}
	s.WriteString("\n|---|---|---|---|---|")
	for range failoverSteps {
		s.WriteString("---|")
	}
	s.WriteString("\n")
	for i, b := range bs {
		fmt.Fprintf(&s, "| %d | %s | %v | %v | %d on %s | ", i+1, b.victim, b.leader, b.parts, b.partition, b.newOwner)
		for _, st := range failoverSteps {
			if d, ok := b.at[st.name]; ok {
				fmt.Fprintf(&s, "%.2f | ", d.Seconds())
			} else {
				s.WriteString("- | ")
			}
		}
		s.WriteString("\n")
	}
	for _, q := range []struct {
		name string
		q    float64
	}{{"median", 0.5}, {"p90", 0.9}, {"max", 1}} {
		fmt.Fprintf(&s, "| %s | | | | | ", q.name)
		for _, st := range failoverSteps {
			var ds []time.Duration
			for _, b := range bs {
				if d, ok := b.at[st.name]; ok {
					ds = append(ds, d)
				}
			}
			if len(ds) == 0 {
				s.WriteString("- | ")
				continue
			}
			fmt.Fprintf(&s, "%.2f | ", quantile(ds, q.q).Seconds())
		}
		s.WriteString("\n")
	}
	return s.String()
}

// quantile is the nearest-rank quantile q of ds.
func quantile(ds []time.Duration, q float64) time.Duration {
	ds = slices.Clone(ds)
	slices.Sort(ds)
	i := int(q*float64(len(ds))+0.999999) - 1
	return ds[max(0, min(i, len(ds)-1))]
}

// TestClusterFailover measures failovers (issue #11, must-show 2): three
// `aurum serve --cluster` processes (8 partitions, ticks every 100 ms), a
// steady stream of new profiles entering and leaving a windowed audience
// (about 40 transitions a second over every partition), and
// AURUM_FAILOVER_KILLS (default 16) SIGKILLs, alternately of the Raft
// leader and of another node, each restarted once the others took over and
// every node is current again. For each kill it prints the breakdown of
// failoverSteps read from the nodes' logs, then a table with the median,
// p90 and max (bench/RESULTS.md "Issue #11: failover steps").
//
//	make bench-failover   # AURUM_BENCH=failover go test -run TestClusterFailover ./cmd/aurum
//
// Real processes and minutes of wall time: only with AURUM_BENCH=failover.
func TestClusterFailover(t *testing.T) {
	if os.Getenv("AURUM_BENCH") != "failover" {
		t.Skip("a measurement of minutes: AURUM_BENCH=failover (make bench-failover)")
	}
	kills := 16
	if s := os.Getenv("AURUM_FAILOVER_KILLS"); s != "" {
		var err error
		if kills, err = strconv.Atoi(s); err != nil || kills < 1 {
			t.Fatalf("AURUM_FAILOVER_KILLS=%q: want a positive number", s)
		}
	}
	c := newTestCluster(t, 8, "--tick", "100ms")
	if dir := os.Getenv("AURUM_CHAOS_LOGS"); dir != "" {
		t.Cleanup(func() { saveNodeLogs(t, c, dir) })
	}
	c.settled(60*time.Second, c.names...)
	key := c.nodes[0].createSource("bench")
	c.nodes[0].mustJSON("POST", "/v1/audiences", map[string]string{"name": "pinged", "rule": `count("Ping", "2s") >= 1`}, adminAuth, http.StatusCreated, nil)
	sub := subscribeTransitions(t, c)

	// The stream: one new profile every 25 ms, to the nodes in turn
	// (skipping one that does not answer), until the test ends.
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	defer func() { cancel(); wg.Wait() }()
	wg.Add(1)
	go func() {
		defer wg.Done()
		client := &http.Client{Timeout: 3 * time.Second}
		tick := time.NewTicker(25 * time.Millisecond)
		defer tick.Stop()
		for i := 0; ctx.Err() == nil; i++ {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
			body, _ := json.Marshal(map[string]any{"batch": []map[string]any{{"type": "track", "event": "Ping",
				"userId": fmt.Sprintf("u%d", i), "messageId": fmt.Sprintf("m%d", i), "timestamp": time.Now().UTC().Format(time.RFC3339Nano)}}})
			for try := 0; ctx.Err() == nil; try++ {
				n := c.nodes[(i+try)%len(c.nodes)]
				req, _ := http.NewRequestWithContext(ctx, "POST", n.HTTP+"/v1/batch", bytes.NewReader(body))
				writeKeyAuth(key)(req)
				resp, err := client.Do(req)
				if err == nil {
					resp.Body.Close()
					if resp.StatusCode == http.StatusOK {
						break
					}
				}
				if try%len(c.nodes) == len(c.nodes)-1 {
					time.Sleep(20 * time.Millisecond)
				}
			}
		}
	}()
	check.For(t, 60*time.Second, 50*time.Millisecond, func() error {
		if len(sub.snapshot()) < 50 {
			return fmt.Errorf("%d transitions seen", len(sub.snapshot()))
		}
		return nil
	})

	r := rand.New(rand.NewPCG(11, 0xfa11))
	var bs []failoverBreakdown
	for k := range kills {
		b, step := killOwner(t, c, sub, r, k%2 == 0)
		t.Log(step)
		bs = append(bs, b)
	}
	var totals []time.Duration
	for _, b := range bs {
		totals = append(totals, b.at["stored"])
	}
	t.Logf("%d failovers (SIGKILL → next transition of one of the victim's partitions stored): median %.2fs, p90 %.2fs, max %.2fs\n%s",
		len(bs), quantile(totals, 0.5).Seconds(), quantile(totals, 0.9).Seconds(), quantile(totals, 1).Seconds(), failoverTable(bs))
}

// killOwner waits until every node is current and the map settled, kills
// the Raft leader (leader) or another node at a random point of the
// stream, waits for the others to settle and for the next transition of
// one of its partitions, breaks the failover down and restarts the
// victim. It returns the breakdown and a line saying what happened. A step
// that times out fails the test and ends the calling goroutine (the test's
// or TestClusterChaos's chaos goroutine, which the test waits for).
func killOwner(t *testing.T, c *testCluster, sub *transitionSubscriber, r *rand.Rand, leader bool) (failoverBreakdown, string) {
	t.Helper()
	c.current(60 * time.Second)
	st := c.settled(60*time.Second, c.names...)
	victim := st.Leader
	if !leader {
		others := slices.DeleteFunc(slices.Clone(c.names), func(n string) bool { return n == st.Leader })
		victim = others[r.IntN(len(others))]
	}
	parts := st.owned(victim)
	n := c.node(victim)
	time.Sleep(time.Duration(200+r.IntN(300)) * time.Millisecond) // a random point of the stream
	killed := time.Now()
	n.kill()
	rest := slices.DeleteFunc(slices.Clone(c.names), func(s string) bool { return s == victim })
	c.settled(60*time.Second, rest...)
	var tr seenTransition
	check.For(t, 60*time.Second, 20*time.Millisecond, func() error {
		var ok bool
		if tr, ok = sub.firstAfter(killed, parts); !ok {
			return fmt.Errorf("no transition of %s's partitions %v since its SIGKILL", victim, parts)
		}
		return nil
	})
	b := breakdownFailover(c, victim, victim == st.Leader, parts, killed, tr)
	step := fmt.Sprintf("SIGKILL %s at %s (leader %v, partitions %v): failover %v; %v",
		victim, killed.UTC().Format("15:04:05.000"), victim == st.Leader, parts, tr.stored.Sub(killed).Round(time.Millisecond), b)
	if err := n.launch(); err != nil {
		t.Fatal(err)
	}
	if err := n.waitListening(90 * time.Second); err != nil {
		t.Fatal(err)
	}
	return b, step
}

// saveNodeLogs writes every node's log to dir/<node>.log.
func saveNodeLogs(t *testing.T, c *testCluster, dir string) {
	for i, n := range c.nodes {
		if err := os.WriteFile(filepath.Join(dir, c.names[i]+".log"), []byte(n.logText()), 0o644); err != nil {
			t.Error(err)
		}
	}
}
