package engine_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/aurumcdp/aurum/engine/base"
	"github.com/aurumcdp/aurum/engine/ingest"
	"github.com/aurumcdp/aurum/event"
)

// TestIngestJSON feeds raw JSON documents to the edge (what the demo does):
// each document's "type" says its call, SDK habits are accepted as on the
// gateway (a numeric userId), the events reach their profiles in order; a
// batch with one invalid document fails whole, naming the document and its
// field, and appends nothing; an unknown source is ErrUnknownSource.
func TestIngestJSON(t *testing.T) {
	e := openGatewayEngine(t)
	edge := e.Edge()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := e.Gate().CreateSource(ctx, "app"); err != nil {
		t.Fatal(err)
	}
	docs := func(js ...string) [][]byte {
		out := make([][]byte, len(js))
		for i, s := range js {
			out[i] = []byte(s)
		}
		return out
	}

	if err := edge.IngestJSON(ctx, "app", nil); err != nil {
		t.Fatalf("no documents: %v", err)
	}
	err := edge.IngestJSON(ctx, "nosuch", docs(`{"type":"identify","userId":"j-none"}`))
	if !errors.Is(err, ingest.ErrUnknownSource) {
		t.Fatalf("unknown source: %v, want ErrUnknownSource", err)
	}

	err = edge.IngestJSON(ctx, "app", docs(
		`{"type":"identify","userId":"j-bad","traits":{"name":"Never"}}`,
		`{"type":"track","userId":"j-bad"}`, // no "event"
	))
	var fe *event.FieldError
	if !errors.As(err, &fe) || fe.Field != "event" || !strings.Contains(err.Error(), "document 1") {
		t.Fatalf("invalid document: %v, want a FieldError on event naming document 1", err)
	}

	err = edge.IngestJSON(ctx, "app", docs(
		`{"type":"identify","userId":"j-1","traits":{"name":"Jay"},"messageId":"j-m1"}`,
		`{"type":"track","userId":"j-1","event":"Bought","properties":{"revenue":12.5},"messageId":"j-m2"}`,
		`{"type":"track","userId":"j-1","event":"Bought","properties":{"revenue":12.5},"messageId":"j-m2"}`, // duplicate
		`{"type":"alias","userId":"j-1","previousId":"j-anon"}`,
		`{"type":"identify","userId":4711,"traits":{"name":"Number"}}`,
	))
	if err != nil {
		t.Fatal(err)
	}
	if err := e.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	p, err := e.Reader().Profile("user_id:j-1")
	if err != nil {
		t.Fatal(err)
	}
	if p.Traits["name"] != "Jay" || p.Stats.EventCounts["Bought"] != 1 || p.Stats.Sources["app"] != 3 ||
		p.Revenue["Bought"].Total != 12.5 {
		t.Errorf("user_id:j-1: traits %v stats %+v revenue %+v; want Jay, one Bought of 12.5, 3 events from app",
			p.Traits, p.Stats, p.Revenue)
	}
	if a, err := e.Reader().Profile("anonymous_id:j-anon"); err != nil || a.ProfileID != p.ProfileID {
		t.Errorf("anonymous_id:j-anon: %v (err %v), want the profile of user_id:j-1 (the alias applied)", a, err)
	}
	if n, err := e.Reader().Profile("user_id:4711"); err != nil || n.Traits["name"] != "Number" {
		t.Errorf("user_id:4711 (numeric userId): %v, %v", n, err)
	}
	// The failed batch appended nothing, not even its valid first document.
	if _, err := e.Reader().Profile("user_id:j-bad"); !errors.Is(err, base.ErrNotFound) {
		t.Errorf("user_id:j-bad: %v, want not found", err)
	}
}
