package bench

import (
	"fmt"
	"os"
	"os/exec"
	"runtime/debug"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/aurumcdp/aurum/engine"
)

// TestLatencyStages breaks the event → audience transition latency down
// into the engine's stages (engine.Trace), issue #15's latency tail: for
// each offered rate, the quantiles of every stage over all transitions and
// their means over the slowest 1 %, the apply loop's busy share, the state
// store's write stalls, flushes and compactions, the GCs, and the windows
// whose latency stands out with what happened in them. Run on purpose
// (make bench-latency):
//
//	AURUM_BENCH=latency go test -run TestLatencyStages -v ./bench/
//
// AURUM_LATENCY_RATES (events/s, comma-separated; default 5000,10000),
// AURUM_LATENCY_ROUNDS (default 1), AURUM_LATENCY_SECONDS (default 3),
// AURUM_LATENCY_MEMLIMIT (the engine's memory limit in MiB; default none,
// as the report's latency rounds), AURUM_LATENCY_TICK (the engine's tick
// period, e.g. 1s; default none, as the report's), AURUM_LATENCY_AB=1 (each
// round and rate runs twice, with the state's WAL and without: write-back
// state's checkpoints, in alternating order).
func TestLatencyStages(t *testing.T) {
	if os.Getenv("AURUM_BENCH") != "latency" {
		t.Skip("set AURUM_BENCH=latency (make bench-latency)")
	}
	rates := []int{5000, latencyTargetRate}
	if v := os.Getenv("AURUM_LATENCY_RATES"); v != "" {
		rates = nil
		for _, f := range strings.Split(v, ",") {
			r, err := strconv.Atoi(strings.TrimSpace(f))
			if err != nil || r <= 0 {
				t.Fatalf("AURUM_LATENCY_RATES: %q is not a rate", f)
			}
			rates = append(rates, r)
		}
	}
	rounds := latencyEnv(t, "AURUM_LATENCY_ROUNDS", 1)
	d := time.Duration(latencyEnv(t, "AURUM_LATENCY_SECONDS", 3)) * time.Second
	var eo engine.Options
	eo.MemoryLimit = int64(latencyEnv(t, "AURUM_LATENCY_MEMLIMIT", 0)) << 20
	if eo.MemoryLimit > 0 {
		// As aurum serve and the report's engine process: the Go limit
		// that fits beside Pebble's memory (the whole test process here).
		prev := debug.SetMemoryLimit(engine.MemorySizesFor(eo.MemoryLimit).GoLimit)
		defer debug.SetMemoryLimit(prev)
	}
	if v := os.Getenv("AURUM_LATENCY_TICK"); v != "" {
		p, err := time.ParseDuration(v)
		if err != nil {
			t.Fatalf("AURUM_LATENCY_TICK: %v", err)
		}
		eo.TickPeriod = p
	}
	modes := []bool{eo.StateWAL}
	if os.Getenv("AURUM_LATENCY_AB") == "1" {
		modes = []bool{true, false}
	}
	for r := range rounds {
		for _, rate := range rates {
			for i := range modes {
				wal := modes[(i+r)%len(modes)] // alternate the order by round
				eo.StateWAL = wal
				load := uptime()
				o := runLatency(t, latencyConfig{rate: rate, d: d, engine: eo, trace: true})
				t.Logf("round %d, %d/s, state WAL %v (sent %.0f/s; %s): accepted → subscriber p50 %s p99 %s p99.9 %s max %s (%d transitions)",
					r+1, rate, wal, o.offered, load, msf(o.q(0.5)), msf(o.q(0.99)), msf(o.q(0.999)), msf(o.lat[len(o.lat)-1]), len(o.lat))
				for _, line := range stageReport(o) {
					t.Log("  " + line)
				}
			}
		}
	}
}

func latencyEnv(t *testing.T, name string, def int) int {
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 0 {
		t.Fatalf("%s: %q is not a count", name, v)
	}
	return n
}

// uptime is the load as `uptime` prints it.
func uptime() string {
	out, err := exec.Command("uptime").Output()
	if err != nil {
		return fmt.Sprintf("load %.2f", loadAverage())
	}
	s := strings.TrimSpace(string(out))
	if i := strings.Index(s, "load average"); i >= 0 {
		s = s[i:]
	}
	return s
}

func msf(d time.Duration) string { return fmt.Sprintf("%.1f ms", float64(d.Microseconds())/1000) }

// stageNames are the stages of a transition's way (stageReport).
var stageNames = []string{
	"accepted → apply start (delivery, apply queue)",
	"apply (group's entries into its batch)",
	"commit (Pebble)",
	"after commit (results, kick)",
	"→ publisher pass start (pass in flight)",
	"pass start → sent (scan, decorate, publish)",
	"sent → subscriber",
}

// stages splits one transition's latency; ok false when its group or pass
// was not traced.
func stages(o latencyOutcome, tr transitionTimes, passOf map[string]int) ([]time.Duration, bool) {
	i := sort.Search(len(o.groups), func(i int) bool { return o.groups[i].Last >= tr.seq })
	if i == len(o.groups) || o.groups[i].First > tr.seq {
		return nil, false
	}
	g := o.groups[i]
	pi, ok := passOf[tr.msgID]
	if !ok {
		return nil, false
	}
	p := o.passes[pi]
	pos := func(d time.Duration) time.Duration { return max(d, 0) }
	readAt := g.Read
	if readAt.Before(tr.accepted) {
		readAt = tr.accepted // read before Ingest returned
	}
	pubStart := p.Start
	if pubStart.Before(g.Done) {
		pubStart = g.Done // the pass was already running when the kick came
	}
	return []time.Duration{
		pos(g.Read.Sub(tr.accepted)),
		pos(g.Applied.Sub(readAt)),
		pos(g.Committed.Sub(g.Applied)),
		pos(g.Done.Sub(g.Committed)),
		pos(p.Start.Sub(g.Done)),
		pos(p.Sent.Sub(pubStart)),
		pos(tr.arrived.Sub(p.Sent)),
	}, true
}

// stageReport is the breakdown of a traced run (TestLatencyStages).
func stageReport(o latencyOutcome) []string {
	var lines []string
	add := func(format string, args ...any) { lines = append(lines, fmt.Sprintf(format, args...)) }
	passOf := make(map[string]int)
	for i, p := range o.passes {
		for _, id := range p.MsgIDs {
			passOf[id] = i
		}
	}
	type row struct {
		total time.Duration
		st    []time.Duration
		tr    transitionTimes
	}
	var rows []row
	for _, tr := range o.transitions {
		st, ok := stages(o, tr, passOf)
		if !ok {
			continue
		}
		rows = append(rows, row{total: max(0, tr.arrived.Sub(tr.accepted)), st: st, tr: tr})
	}
	if len(rows) == 0 {
		return []string{"no transition traced"}
	}
	sort.Slice(rows, func(i, j int) bool { return rows[i].total < rows[j].total })
	tail := rows[len(rows)-max(1, len(rows)/100):]
	add("stage: p50 / p99 over all %d; mean over the slowest 1%% (%d, from %s)", len(rows), len(tail), msf(tail[0].total))
	for s, name := range stageNames {
		all := make([]time.Duration, len(rows))
		for i, r := range rows {
			all[i] = r.st[s]
		}
		sd := sortedDur(all)
		var sum time.Duration
		for _, r := range tail {
			sum += r.st[s]
		}
		add("  %-46s %8s / %8s; slowest 1%%: %8s", name, msf(quant(sd, 0.5)), msf(quant(sd, 0.99)), msf(sum/time.Duration(len(tail))))
	}

	// The apply loop.
	var busy, syncCommit, plainCommit, maxSync, maxPlain time.Duration
	var nSync, nPlain, entries, batchBytes int
	for _, g := range o.groups {
		busy += g.Done.Sub(g.Read)
		c := g.Committed.Sub(g.Applied)
		if g.Sync {
			syncCommit += c
			maxSync = max(maxSync, c)
			nSync++
		} else {
			plainCommit += c
			maxPlain = max(maxPlain, c)
			nPlain++
		}
		entries += int(g.Last - g.First + 1)
		batchBytes += g.Bytes
	}
	var span time.Duration // of the apply loop's work in the run
	if len(o.groups) > 0 {
		span = o.groups[len(o.groups)-1].Done.Sub(o.groups[0].Read)
	}
	add("apply loop: %d groups, %.1f entries and %.0f KiB each, busy %.0f%% of %s; commits: %d synced mean %s max %s, %d not mean %s max %s",
		len(o.groups), float64(entries)/float64(max(1, len(o.groups))), float64(batchBytes)/1024/float64(max(1, len(o.groups))), 100*busy.Seconds()/max(span.Seconds(), 1e-9), msf(span),
		nSync, msf(meanDur(syncCommit, nSync)), msf(maxSync), nPlain, msf(meanDur(plainCommit, nPlain)), msf(maxPlain))
	var pbusy, maxPass time.Duration
	msgs := 0
	for _, p := range o.passes {
		pbusy += p.Committed.Sub(p.Start)
		maxPass = max(maxPass, p.Committed.Sub(p.Start))
		msgs += len(p.MsgIDs)
	}
	add("publisher: %d passes, %.1f messages each, busy %s, longest pass %s", len(o.passes), float64(msgs)/float64(max(1, len(o.passes))), msf(pbusy), msf(maxPass))
	sumEv := func(evs []storeEvent) (time.Duration, time.Duration) {
		var s, m time.Duration
		for _, e := range evs {
			s, m = s+e.d, max(m, e.d)
		}
		return s, m
	}
	ss, sm := sumEv(o.stalls)
	fs, fm := sumEv(o.flushes)
	cs, cm := sumEv(o.compactions)
	ys, ym := sumEv(o.syncs)
	var rot []string // the commits that rotated a memtable
	for _, w := range o.wals {
		for _, g := range o.groups {
			if !w.Before(g.Applied) && !w.After(g.Committed) {
				rot = append(rot, msf(g.Committed.Sub(g.Applied)))
				break
			}
		}
	}
	add("state store: %d new WALs (memtable rotations; their commits: %s)", len(o.wals), strings.Join(rot, ", "))
	add("state store: %d WAL syncs (mean %s, longest %s), %d write stalls (total %s, longest %s), %d flushes (total %s, longest %s), %d compactions (total %s, longest %s); %d GCs",
		len(o.syncs), msf(meanDur(ys, len(o.syncs))), msf(ym), len(o.stalls), msf(ss), msf(sm), len(o.flushes), msf(fs), msf(fm),
		len(o.compactions), msf(cs), msf(cm), len(o.gcs))

	// Windows (100 ms of acceptance) whose slowest transition stands out.
	const win = 100 * time.Millisecond
	p50 := rows[len(rows)/2].total
	worst := map[int]row{}
	for _, r := range rows {
		w := int(r.tr.accepted.Sub(o.start) / win)
		if r.total > worst[w].total {
			worst[w] = r
		}
	}
	var ws []int
	for w, r := range worst {
		if r.total > 3*p50 && r.total > 10*time.Millisecond {
			ws = append(ws, w)
		}
	}
	sort.Ints(ws)
	at := func(t time.Time) string { return fmt.Sprintf("%.0f", float64(t.Sub(o.start).Microseconds())/1000) }
	for i, w := range ws {
		if i == 8 {
			add("… %d more windows", len(ws)-i)
			break
		}
		r := worst[w]
		var parts []string
		for s := range stageNames {
			parts = append(parts, msf(r.st[s]))
		}
		lo, hi := r.tr.accepted.Add(-50*time.Millisecond), r.tr.arrived
		var evs []string
		for _, e := range o.stalls {
			if e.at.After(lo) && e.at.Add(-e.d).Before(hi) {
				evs = append(evs, fmt.Sprintf("stall %s@%s (%s)", msf(e.d), at(e.at.Add(-e.d)), e.reason))
			}
		}
		for _, e := range o.flushes {
			if e.at.After(lo) && e.at.Add(-e.d).Before(hi) {
				evs = append(evs, fmt.Sprintf("flush %s@%s", msf(e.d), at(e.at.Add(-e.d))))
			}
		}
		for _, e := range o.compactions {
			if e.at.After(lo) && e.at.Add(-e.d).Before(hi) {
				evs = append(evs, fmt.Sprintf("compaction %s %s@%s", e.reason, msf(e.d), at(e.at.Add(-e.d))))
			}
		}
		for _, g := range o.wals {
			if g.After(lo) && g.Before(hi) {
				evs = append(evs, "new WAL@"+at(g))
			}
		}
		for _, g := range o.gcs {
			if g.After(lo) && g.Before(hi) {
				evs = append(evs, "GC@"+at(g))
			}
		}
		for _, e := range o.syncs {
			if e.at.After(lo) && e.at.Add(-e.d).Before(hi) {
				evs = append(evs, fmt.Sprintf("WAL sync %s@%s", msf(e.d), at(e.at.Add(-e.d))))
			}
		}
		for _, g := range o.groups { // long commits: a memtable rotation closes (syncs) the WAL
			if c := g.Committed.Sub(g.Applied); c > 5*time.Millisecond && g.Applied.Before(hi) && g.Committed.After(lo) {
				evs = append(evs, fmt.Sprintf("commit %s@%s", msf(c), at(g.Applied)))
			}
		}
		add("window %s ms: slowest %s accepted@%s (stages %s) %s", at(o.start.Add(time.Duration(w)*win)), msf(r.total), at(r.tr.accepted),
			strings.Join(parts, " "), strings.Join(evs, ", "))
	}
	return lines
}

func sortedDur(d []time.Duration) []time.Duration {
	sort.Slice(d, func(i, j int) bool { return d[i] < d[j] })
	return d
}

func quant(d []time.Duration, f float64) time.Duration {
	return d[min(len(d)-1, int(f*float64(len(d))))]
}

func meanDur(sum time.Duration, n int) time.Duration {
	if n == 0 {
		return 0
	}
	return sum / time.Duration(n)
}
