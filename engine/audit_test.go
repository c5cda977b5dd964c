package engine_test

import (
	"bytes"
	"context"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/aurumcdp/aurum/engine"
	"github.com/aurumcdp/aurum/engine/audit"
	"github.com/aurumcdp/aurum/engine/base"
	"github.com/aurumcdp/aurum/internal/testnode"
)

func openAuditEngine(t *testing.T, dir string, now func() time.Time) *engine.Engine {
	t.Helper()
	return testnode.Engine(t, engine.Options{
		DataDir: dir, TickPeriod: -1, MasterKey: bytes.Repeat([]byte{3}, 32), Partitions: 2, Now: now,
	})
}

// TestAuditLog: entries are appended in order, read back by cursor and by
// time, survive a restart, and invalid ones are refused and counted.
func TestAuditLog(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	clock := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
	e := openAuditEngine(t, dir, func() time.Time { return clock })
	want := []audit.AuditEntry{
		{Actor: "admin", Role: "admin", Action: "POST /v1/sources", Object: map[string]string{"name": "web"}, Remote: "10.0.0.1", Status: 201, Result: audit.AuditOK},
		{Actor: "", Role: "", Action: "DELETE /v1/audiences/{name}", Object: map[string]string{"name": "x"}, Remote: "10.0.0.2", Status: 401, Result: audit.AuditUnauthenticated, Detail: "invalid token"},
		{Actor: "ops", Role: "viewer", Action: "POST /v1/replay", Status: 403, Result: audit.AuditDenied},
	}
	for _, a := range want {
		if err := e.Recorder().Audit(ctx, a); err != nil {
			t.Fatalf("Audit(%+v): %v", a, err)
		}
	}
	for _, bad := range []audit.AuditEntry{{Result: audit.AuditOK}, {Action: "GET /x", Result: "maybe"}, {Action: "GET /x"}} {
		if err := e.Recorder().Audit(ctx, bad); !errors.Is(err, base.ErrInvalid) {
			t.Errorf("Audit(%+v) = %v, want ErrInvalid", bad, err)
		}
	}
	check := func(e *engine.Engine) {
		t.Helper()
		got, next, err := e.Recorder().AuditLog(ctx, audit.AuditQuery{})
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != len(want) || next != uint64(len(want)+1) {
			t.Fatalf("AuditLog: %d entries, next %d: %+v", len(got), next, got)
		}
		for i := range got {
			if got[i].Seq != uint64(i+1) || len(got[i].ID) != 26 || !got[i].Time.Equal(clock) {
				t.Errorf("entry %d: seq %d, id %q, time %v", i, got[i].Seq, got[i].ID, got[i].Time)
			}
			g := got[i]
			g.Seq, g.ID, g.Time = 0, "", time.Time{}
			if !reflect.DeepEqual(g, want[i]) {
				t.Errorf("entry %d:\n got %+v\nwant %+v", i, g, want[i])
			}
		}
		page, next, err := e.Recorder().AuditLog(ctx, audit.AuditQuery{Cursor: 2, Limit: 1})
		if err != nil || len(page) != 1 || page[0].Seq != 2 || page[0].Action != want[1].Action || next != 3 {
			t.Fatalf("page from cursor 2: %+v next %d %v", page, next, err)
		}
		// Stream time, not entry time, selects by Since: everything was
		// written before now.
		page, next, err = e.Recorder().AuditLog(ctx, audit.AuditQuery{Since: time.Now().Add(time.Minute)})
		if err != nil || len(page) != 0 || next != 4 {
			t.Fatalf("since the future: %+v next %d %v", page, next, err)
		}
		page, _, err = e.Recorder().AuditLog(ctx, audit.AuditQuery{Since: time.Now().Add(-time.Hour)})
		if err != nil || len(page) != 3 {
			t.Fatalf("since an hour ago: %d entries, %v", len(page), err)
		}
		for _, l := range []int{-1, audit.MaxAuditPage + 1} {
			if _, _, err := e.Recorder().AuditLog(ctx, audit.AuditQuery{Limit: l}); !errors.Is(err, base.ErrInvalid) {
				t.Errorf("limit %d: %v", l, err)
			}
		}
	}
	check(e)
	for _, m := range []struct {
		name, result string
		want         float64
	}{
		{"aurum_audit_entries_total", "ok", 1},
		{"aurum_audit_entries_total", "unauthenticated", 1},
		{"aurum_audit_entries_total", "denied", 1},
		{"aurum_audit_failures_total", "", 3},
	} {
		if got := metricValue(t, e, m.name, m.result); got != m.want {
			t.Errorf("%s{result=%q} = %v, want %v", m.name, m.result, got, m.want)
		}
	}
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	if err := e.Recorder().Audit(ctx, want[0]); err == nil {
		t.Error("Audit on a closed engine succeeded")
	}
	e = openAuditEngine(t, dir, func() time.Time { return clock })
	defer e.Close()
	check(e)
}

// TestRefHash: a profile reference is kept as type + keyed hash of its
// normalised value, never in plaintext; equal identifiers hash alike.
func TestRefHash(t *testing.T) {
	e := openAuditEngine(t, t.TempDir(), nil)
	defer e.Close()
	h := e.Recorder().RefHash("email:Jane@Example.com")
	if !strings.HasPrefix(h, "email:") || len(h) != len("email:")+32 || strings.Contains(strings.ToLower(h), "jane") {
		t.Fatalf("RefHash = %q", h)
	}
	if h2 := e.Recorder().RefHash("EMAIL: jane@example.com "); h2 != h {
		t.Errorf("normalised forms hash differently: %q vs %q", h2, h)
	}
	if e.Recorder().RefHash("email:john@example.com") == h {
		t.Error("different identifiers hash alike")
	}
	for _, ref := range []string{"nocolon", "email:", "profile_id:not-a-ulid", "phone:xyz"} {
		got := e.Recorder().RefHash(ref)
		if strings.Contains(got, strings.TrimPrefix(ref, "email:")) && ref != "email:" {
			t.Errorf("RefHash(%q) = %q holds the plaintext", ref, got)
		}
	}
}

// metricValue returns the value of the counter name (with label result =
// result when result is not empty) in e's registry.
func metricValue(t *testing.T, e *engine.Engine, name, result string) float64 {
	t.Helper()
	mfs, err := e.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			match := result == ""
			for _, lp := range m.GetLabel() {
				if lp.GetName() == "result" && lp.GetValue() == result {
					match = true
				}
			}
			if match {
				return m.GetCounter().GetValue()
			}
		}
	}
	return 0
}
