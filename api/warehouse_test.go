package api_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/aurumcdp/aurum/api"
	"github.com/aurumcdp/aurum/engine"
	"github.com/aurumcdp/aurum/engine/export"
	"github.com/aurumcdp/aurum/internal/check"
	"github.com/aurumcdp/aurum/internal/testnode"
	"github.com/aurumcdp/aurum/projections/audience"
)

// exportRunJSON is a run as GET and POST /v1/exports answer it.
type exportRunJSON struct {
	ID                  string            `json:"id"`
	Created             time.Time         `json:"created"`
	AppliedSeq          uint64            `json:"applied_seq"`
	Personal            bool              `json:"personal"`
	Trigger             string            `json:"trigger"`
	TransitionsAfterSeq uint64            `json:"transitions_after_seq"`
	Directory           string            `json:"directory"`
	Files               []export.FileInfo `json:"files"`
}

type exportScheduleJSON struct {
	Configured bool   `json:"configured"`
	Interval   string `json:"interval"`
	Keep       int    `json:"keep"`
	Personal   bool   `json:"personal"`
	Source     string `json:"source"`
}

// TestExportAPI (issue #17, the warehouse export): a run on request
// writes the files its manifest names (rows, sizes and SHA-256 checked on
// disk), the runs are listed newest first, a schedule set through the API
// (bad values refused naming the field) drives the scheduler and is still
// in effect after a restart with other serve flags.
func TestExportAPI(t *testing.T) {
	dir, exportDir := t.TempDir(), t.TempDir()
	clock := &testClock{}
	open := func(flagInterval time.Duration) *testServer {
		n := testnode.Start(t, testnode.Options{
			Engine: engine.Options{DataDir: dir, MasterKey: bytes.Repeat([]byte{7}, 32), Partitions: 2, Now: clock.Now,
				Export: export.Options{Dir: exportDir, Interval: flagInterval, Keep: 5, Poll: 10 * time.Millisecond}},
			API:        &api.Options{RequestTimeout: 20 * time.Second},
			AdminToken: adminToken,
		})
		return &testServer{t: t, e: n.Engine, srv: n.API, URL: n.URL}
	}
	s := open(0)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	key, err := s.e.Gate().CreateSource(ctx, "web")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.e.PutAudience(ctx, audience.Definition{Name: "buyers", Rule: ruleE}); err != nil {
		t.Fatal(err)
	}
	const people = 6
	for i := range people {
		if r := s.do(req{path: "/v1/batch", key: key, body: []byte(fmt.Sprintf(
			`{"batch":[{"type":"track","userId":"u%d","event":"E","messageId":"m%d"}]}`, i, i))}); r.code != 200 {
			t.Fatalf("batch: %s", r)
		}
	}
	check.For(t, 30*time.Second, 10*time.Millisecond, func() error {
		a, err := s.e.Reader().Audience("buyers")
		if err != nil || a.Size != people {
			return fmt.Errorf("buyers: %+v %v", a.Size, err)
		}
		return nil
	})

	var sc exportScheduleJSON
	decode := func(r resp, code int, v any) {
		t.Helper()
		if r.code != code {
			t.Fatalf("want %d, got %s", code, r)
		}
		if err := json.Unmarshal(r.body, v); err != nil {
			t.Fatalf("%v: %s", err, r)
		}
	}
	decode(s.do(req{method: "GET", path: "/v1/exports/schedule", admin: true}), 200, &sc)
	if sc.Source != "flags" || sc.Interval != "0s" || sc.Keep != 5 || !sc.Configured {
		t.Fatalf("schedule before any was set: %+v", sc)
	}

	// A run on request: the manifest on disk is the answer, the files are
	// what it says.
	var run exportRunJSON
	decode(s.do(req{path: "/v1/exports", admin: true}), 201, &run)
	if run.Trigger != "request" || run.Personal || run.Directory != filepath.Join(exportDir, run.ID) || len(run.Files) != 3 {
		t.Fatalf("run %+v", run)
	}
	var onDisk export.Manifest
	b, err := os.ReadFile(filepath.Join(run.Directory, export.ManifestFile))
	if err != nil || json.Unmarshal(b, &onDisk) != nil || onDisk.Run != run.ID || onDisk.AppliedSeq != run.AppliedSeq {
		t.Fatalf("manifest on disk %s: %v", b, err)
	}
	wantRows := map[string]int64{export.ProfilesFile: people, export.MembershipsFile: people, export.TransitionsFile: people}
	for _, f := range run.Files {
		data, err := os.ReadFile(filepath.Join(run.Directory, f.Name))
		if err != nil {
			t.Fatal(err)
		}
		sum := sha256.Sum256(data)
		if int64(len(data)) != f.Bytes || hex.EncodeToString(sum[:]) != f.SHA256 || f.Rows != wantRows[f.Name] {
			t.Fatalf("%s: %d bytes on disk, sha256 %x; manifest %+v (want %d rows)", f.Name, len(data), sum, f, wantRows[f.Name])
		}
	}

	// Bad schedules: 400 naming the field; nothing changes.
	for _, c := range []struct{ body, field string }{
		{`{"interval":"30s","keep":3}`, "interval"},
		{`{"interval":"soon"}`, "interval"},
		{`{"interval":"1h","keep":0}`, "keep"},
		{`{"interval":"1h","keep":-2}`, "keep"},
		{`{"interval":"1h","every":3}`, "every"},
	} {
		r := s.do(req{method: "PUT", path: "/v1/exports/schedule", admin: true, body: []byte(c.body)})
		if r.code != 400 {
			t.Fatalf("PUT %s: %s, want 400", c.body, r)
		}
		if msg, field := r.errorBody(t); field != c.field {
			t.Fatalf("PUT %s: field %q (%s), want %q", c.body, field, msg, c.field)
		}
	}

	// A schedule: the next run is an interval after the newest one.
	decode(s.do(req{method: "PUT", path: "/v1/exports/schedule", admin: true,
		body: []byte(`{"interval":"1h","keep":2,"personal":true}`)}), 200, &sc)
	if sc.Source != "log" || sc.Interval != "1h0m0s" || sc.Keep != 2 || !sc.Personal {
		t.Fatalf("schedule set: %+v", sc)
	}
	clock.Advance(59 * time.Minute)
	time.Sleep(100 * time.Millisecond) // ten polls: none is due yet (checked below: one run so far)
	clock.Advance(2 * time.Minute)
	var list struct{ Runs []exportRunJSON }
	check.For(t, 30*time.Second, 10*time.Millisecond, func() error {
		decode(s.do(req{method: "GET", path: "/v1/exports", admin: true}), 200, &list)
		if len(list.Runs) != 2 {
			return fmt.Errorf("%d runs", len(list.Runs))
		}
		return nil
	})
	if r0 := list.Runs[0]; r0.Trigger != "schedule" || !r0.Personal || r0.TransitionsAfterSeq != run.AppliedSeq || list.Runs[1].ID != run.ID {
		t.Fatalf("runs %+v, want the scheduled (personal, transitions after %d) then the requested", list.Runs, run.AppliedSeq)
	}

	// A requested run leaves out the personal columns when asked to.
	var r3 exportRunJSON
	check.For(t, 30*time.Second, 10*time.Millisecond, func() error {
		r := s.do(req{path: "/v1/exports", admin: true, body: []byte(`{"personal":false,"all_transitions":true}`)})
		if r.code == 409 { // the scheduled run, listed once renamed, is still pruning
			return fmt.Errorf("%s", r)
		}
		decode(r, 201, &r3)
		return nil
	})
	if r3.Personal || r3.TransitionsAfterSeq != 0 {
		t.Fatalf("run %+v", r3)
	}
	decode(s.do(req{method: "GET", path: "/v1/exports", admin: true}), 200, &list)
	if len(list.Runs) != 2 || list.Runs[0].ID != r3.ID { // keep 2
		t.Fatalf("runs after a third with keep 2: %+v", list.Runs)
	}

	// The audit log names each requested run and schedule change, with
	// whether it was personal.
	var audit struct {
		Entries []struct {
			Action string            `json:"action"`
			Object map[string]string `json:"object"`
			Status int               `json:"status"`
		} `json:"entries"`
	}
	var runs, schedules []map[string]string
	check.For(t, 30*time.Second, 10*time.Millisecond, func() error { // the entry follows the answer
		decode(s.do(req{method: "GET", path: "/v1/audit?limit=1000", admin: true}), 200, &audit)
		runs, schedules = nil, nil
		for _, a := range audit.Entries {
			switch {
			case a.Action == "POST /v1/exports" && a.Status == 201:
				runs = append(runs, a.Object)
			case a.Action == "PUT /v1/exports/schedule" && a.Status == 200:
				schedules = append(schedules, a.Object)
			}
		}
		if len(runs) < 2 {
			return fmt.Errorf("%d runs audited", len(runs))
		}
		return nil
	})
	if len(runs) != 2 || len(schedules) != 1 || schedules[0]["interval"] != "1h0m0s" || schedules[0]["personal"] != "true" ||
		schedules[0]["keep"] != "2" {
		t.Fatalf("audit: runs %v, schedules %v", runs, schedules)
	}
	for _, o := range runs {
		if o["personal"] != "false" || (o["run"] != run.ID && o["run"] != r3.ID) {
			t.Fatalf("audit of a run: %v", o)
		}
	}

	// The schedule is on the log: a restart with other flags keeps it.
	if err := s.e.Close(); err != nil {
		t.Fatal(err)
	}
	s = open(3 * time.Hour)
	decode(s.do(req{method: "GET", path: "/v1/exports/schedule", admin: true}), 200, &sc)
	if sc.Source != "log" || sc.Interval != "1h0m0s" || sc.Keep != 2 || !sc.Personal {
		t.Fatalf("schedule after a restart: %+v", sc)
	}
}
