package workload_test

import (
	"context"
	"errors"
	"testing"

	"github.com/aurumcdp/aurum/engine"
	"github.com/aurumcdp/aurum/engine/base"
	"github.com/aurumcdp/aurum/event"
	"github.com/aurumcdp/aurum/internal/testnode"
	"github.com/aurumcdp/aurum/internal/workload"
)

// TestEngineIdentityScore feeds a 300-person workload through an in-process
// engine and scores its identity resolution against the ground truth: each
// identifier's profile_id ((*query.Reader).Profile) is its cluster.
func TestEngineIdentityScore(t *testing.T) {
	if testing.Short() {
		t.Skip("runs an engine over a full workload")
	}
	ctx := context.Background()
	e := testnode.Engine(t, engine.Options{Partitions: 4})
	for _, s := range workload.Sources {
		if _, err := e.Gate().CreateSource(ctx, s); err != nil {
			t.Fatal(err)
		}
	}

	g := workload.New(workload.Config{People: 300, Seed: 11, Days: 14})
	const batch = 500
	pending := map[string][]event.Event{}
	flush := func(src string) {
		if err := e.Edge().Ingest(ctx, src, pending[src]); err != nil {
			t.Fatalf("ingest %s: %v", src, err)
		}
		pending[src] = pending[src][:0]
	}
	n := 0
	for {
		w, ok := g.Next()
		if !ok {
			break
		}
		// Per-source batches keep each source's events in order, which is
		// all resolution needs: the one order-sensitive case, a shared
		// device's owner signing in before a family member uses it, happens
		// on one device and so within one source.
		ev, err := event.Parse(w.JSON, "", e.Edge().ParseOptions())
		if err != nil {
			t.Fatalf("event %d: %v", n, err)
		}
		pending[w.Source] = append(pending[w.Source], ev)
		if len(pending[w.Source]) == batch {
			flush(w.Source)
		}
		n++
	}
	for s := range pending {
		if len(pending[s]) > 0 {
			flush(s)
		}
	}
	if err := e.Sync(ctx); err != nil {
		t.Fatal(err)
	}

	truth := g.Truth()
	byProfile := map[string][]workload.Identifier{}
	var clusters [][]workload.Identifier
	missing := 0
	for _, id := range truth.Identifiers() {
		v, err := e.Reader().Profile(id.String())
		if errors.Is(err, base.ErrNotFound) {
			missing++
			clusters = append(clusters, []workload.Identifier{id})
			continue
		}
		if err != nil {
			t.Fatalf("profile %s: %v", id, err)
		}
		byProfile[v.ProfileID] = append(byProfile[v.ProfileID], id)
	}
	for _, c := range byProfile {
		clusters = append(clusters, c)
	}
	pairs := truth.Count(clusters)
	p, r, f1 := truth.Score(clusters)
	t.Logf("%d events, %d identifiers (%d shared), %d profiles, %d not found: pairs %+v; precision %.4f recall %.4f F1 %.4f",
		n, truth.Len(), truth.Shared(), len(byProfile), missing, pairs, p, r, f1)
	if missing != 0 {
		t.Errorf("%d identifiers of ingested events have no profile", missing)
	}
	// Every link the workload makes is deterministic (same event), so the
	// engine must never merge two people; devices that never sign in keep
	// recall below 1.
	if p != 1 {
		t.Errorf("precision %v, want 1 (no wrong merges)", p)
	}
	if r < 0.5 || r >= 1 {
		t.Errorf("recall %v, want in [0.5, 1): unlinked devices are expected", r)
	}
}
