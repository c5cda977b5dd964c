package engine

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/aurumcdp/aurum/event"
	"github.com/aurumcdp/aurum/projections"
	"github.com/aurumcdp/aurum/projections/audience"
)

// TestGroupedLiveAndReplayMatch builds a log through a live engine (merges,
// audiences, a corrupt entry), then rebuilds its state three ways: the live
// apply loop over the whole log as a backlog (state/ removed: it groups the
// entries at hand), and offline replays with one batch per entry and in
// groups. All give the live digest, and both replays the same outputs.
func TestGroupedLiveAndReplayMatch(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	dir := t.TempDir()
	opts := Options{DataDir: dir, NATSListen: "127.0.0.1:-1", Partitions: 4, TickPeriod: -1}
	e, err := Open(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.Gate().CreateSource(ctx, "web"); err != nil {
		t.Fatal(err)
	}
	for name, rule := range map[string]string{"buyers": `count("Order Completed") >= 2`, "viewers": `count("Product Viewed") >= 3`} {
		if _, err := e.PutAudience(ctx, audience.Definition{Name: name, Rule: rule}); err != nil {
			t.Fatal(err)
		}
	}
	names := []string{"Product Viewed", "Order Completed", "Product Viewed"}
	ingest := func(from, to int) {
		for i := from; i < to; i++ {
			p := i % 17
			js := fmt.Sprintf(`{"type":"track","event":%q,"anonymousId":"a%d","messageId":"m%d","timestamp":"2026-01-01T00:%02d:00Z","properties":{"revenue":%d}}`, names[i%3], p, i, i%60, i%7)
			if i%4 == 0 { // links an anonymous id to a user id; some users span two anonymous ids: merges
				js = fmt.Sprintf(`{"type":"identify","userId":"u%d","anonymousId":"a%d","messageId":"m%d","timestamp":"2026-01-01T00:%02d:00Z"}`, p%11, p, i, i%60)
			}
			ev, err := event.Parse([]byte(js), "", e.Edge().ParseOptions())
			if err != nil {
				t.Fatal(err)
			}
			if err := e.Edge().Ingest(ctx, "web", []event.Event{ev}); err != nil {
				t.Fatal(err)
			}
		}
	}
	ingest(0, 60)
	if _, _, err := e.log.Append(ctx, projections.SubjectEvents, "", []byte{0xdd, 0xff, 0xff, 0xff, 0xff, 0x01}); err != nil {
		t.Fatal(err)
	}
	ingest(60, 120)
	if err := e.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	live, err := e.Digest()
	if err != nil {
		t.Fatal(err)
	}
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}

	// The live loop over a backlog: groups.
	if err := os.RemoveAll(filepath.Join(dir, "state")); err != nil {
		t.Fatal(err)
	}
	e, err = Open(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	if err := e.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	again, err := e.Digest()
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(again, live) {
		t.Fatalf("digest after the grouped backlog %+v, want %+v", again, live)
	}
	mfs, err := e.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	var groups, entries float64
	for _, mf := range mfs {
		if mf.GetName() == "aurum_apply_group_entries" {
			h := mf.GetMetric()[0].GetHistogram()
			groups, entries = float64(h.GetSampleCount()), h.GetSampleSum()
		}
	}
	t.Logf("backlog of %d entries applied in %v groups", live.Applied, groups)
	if entries != float64(live.Applied) || groups >= entries {
		t.Fatalf("the apply loop applied %v entries in %v groups: want all %d entries, in fewer groups", entries, groups, live.Applied)
	}
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}

	replay := func(group int, memLimit int64) (ReplayResult, []string) {
		var outs []string
		res, err := Replay(ctx, ReplayOptions{DataDir: dir, GroupEntries: group, MemoryLimit: memLimit, Out: func(m projections.OutMsg) error {
			outs = append(outs, m.MsgID+" "+m.Subject+" "+string(m.Data))
			return nil
		}})
		if err != nil {
			t.Fatal(err)
		}
		return res, outs
	}
	one, oneOut := replay(1, 0)
	grouped, groupedOut := replay(0, 0)
	// The smallest memory limit shrinks caches, filters and memtables,
	// never the results.
	small, smallOut := replay(0, MinMemoryLimit)
	if fmt.Sprintf("%x", one.Digest) != live.All || fmt.Sprintf("%x", grouped.Digest) != live.All || fmt.Sprintf("%x", small.Digest) != live.All {
		t.Fatalf("replay digests %x (one by one), %x (grouped), %x (smallest memory limit), want %s", one.Digest, grouped.Digest, small.Digest, live.All)
	}
	if !slices.Equal(groupedOut, smallOut) {
		t.Fatalf("outputs differ at the smallest memory limit: %d, want %d", len(smallOut), len(groupedOut))
	}
	if _, err := Replay(ctx, ReplayOptions{DataDir: dir, MemoryLimit: MinMemoryLimit - 1}); err == nil || !strings.Contains(err.Error(), "MemoryLimit") {
		t.Fatalf("a memory limit under the minimum: %v", err)
	}
	if one.Applied != live.Applied || grouped.Applied != live.Applied {
		t.Fatalf("replays applied %d and %d, want %d", one.Applied, grouped.Applied, live.Applied)
	}
	// The fetch stage opened the properties ahead (the revenue the GCRs
	// sum, in the digests compared above); the live apply opened its own.
	if one.OpenedAhead == 0 || grouped.OpenedAhead == 0 {
		t.Fatalf("properties opened ahead: %d (one by one), %d (grouped), want some", one.OpenedAhead, grouped.OpenedAhead)
	}
	var transitions int
	for _, o := range oneOut {
		if strings.HasPrefix(o, "aud:") {
			transitions++
		}
	}
	if transitions == 0 || !slices.ContainsFunc(oneOut, func(o string) bool { return strings.HasPrefix(o, "merge:") }) {
		t.Fatalf("the log made %d transitions and no merge: it does not test outputs", transitions)
	}
	// The order across outboxes depends on the grouping; each outbox's
	// order does not (checked by the store comparison of the unit test).
	slices.Sort(oneOut)
	slices.Sort(groupedOut)
	if !slices.Equal(oneOut, groupedOut) {
		t.Fatalf("outputs differ: %d one by one, %d grouped", len(oneOut), len(groupedOut))
	}
}
