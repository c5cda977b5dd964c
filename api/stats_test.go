package api_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"testing"
	"time"

	"github.com/aurumcdp/aurum/api"
	"github.com/aurumcdp/aurum/engine"
	"github.com/aurumcdp/aurum/internal/check"
	"github.com/aurumcdp/aurum/internal/testnode"
)

// TestStatsHistory: GET /v1/stats/history answers the samples the node
// took on its own (events per second, profiles, audience sizes), bounded
// by HistorySamples; since= answers only newer samples; a bad since is a
// 400 naming the field.
func TestStatsHistory(t *testing.T) {
	n := testnode.Start(t, testnode.Options{
		Engine: engine.Options{MasterKey: bytes.Repeat([]byte{7}, 32), Partitions: 2,
			HistoryInterval: 50 * time.Millisecond, HistorySamples: 40},
		API:        &api.Options{RequestTimeout: 20 * time.Second},
		AdminToken: adminToken,
	})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	key, err := n.Engine.Gate().CreateSource(ctx, "web")
	if err != nil {
		t.Fatal(err)
	}
	s := &testServer{t: t, e: n.Engine, srv: n.API, URL: n.URL, webKey: key}
	if r := s.do(req{path: "/v1/audiences", admin: true, body: []byte(`{"name":"buyers","rule":"count(\"Order Completed\") >= 1"}`)}); r.code != 201 {
		t.Fatalf("create audience: %s", r)
	}
	var batch bytes.Buffer
	batch.WriteString(`{"batch":[`)
	for i := range 4 {
		if i > 0 {
			batch.WriteString(",")
		}
		fmt.Fprintf(&batch, `{"type":"track","event":"Order Completed","userId":"h%d"}`, i)
	}
	batch.WriteString(`]}`)
	if r := s.do(req{path: "/v1/batch", key: key, body: batch.Bytes()}); r.code != 200 {
		t.Fatalf("batch: %s", r)
	}

	type history struct {
		IntervalSeconds float64 `json:"interval_seconds"`
		Samples         []struct {
			Time              time.Time        `json:"time"`
			EventsPerSecond   float64          `json:"events_per_second"`
			IngestedPerSecond float64          `json:"ingested_per_second"`
			Profiles          int64            `json:"profiles"`
			Merges            int64            `json:"merges"`
			Audiences         map[string]int64 `json:"audiences"`
		} `json:"samples"`
	}
	get := func(query string) (history, resp) {
		r := s.do(req{method: "GET", path: "/v1/stats/history" + query, admin: true})
		var h history
		if r.code == 200 {
			if err := json.Unmarshal(r.body, &h); err != nil {
				t.Fatalf("history: %v: %s", err, r)
			}
		}
		return h, r
	}
	var sawApplied, sawIngested bool
	var last history
	check.For(t, 60*time.Second, 20*time.Millisecond, func() error {
		h, r := get("")
		if r.code != 200 {
			t.Fatalf("GET /v1/stats/history: %s", r)
		}
		if h.IntervalSeconds != 0.05 || len(h.Samples) > 40 {
			t.Fatalf("interval %v, %d samples (at most 40)", h.IntervalSeconds, len(h.Samples))
		}
		for _, x := range h.Samples {
			sawApplied = sawApplied || x.EventsPerSecond > 0
			sawIngested = sawIngested || x.IngestedPerSecond > 0
		}
		last = h
		if k := len(h.Samples); k < 40 || !sawApplied || !sawIngested || h.Samples[k-1].Audiences["buyers"] != 4 || h.Samples[k-1].Profiles != 4 {
			return fmt.Errorf("%d samples, applied/s seen %v, ingested/s seen %v, last %+v", k, sawApplied, sawIngested, h.Samples[max(k-1, 0):])
		}
		return nil
	})

	// since= answers only the samples after it.
	mid := last.Samples[3].Time
	h, r := get("?since=" + url.QueryEscape(mid.Format(time.RFC3339Nano)))
	if r.code != 200 || len(h.Samples) == 0 {
		t.Fatalf("since %v: %s", mid, r)
	}
	for _, x := range h.Samples {
		if !x.Time.After(mid) {
			t.Fatalf("since %v answered a sample at %v", mid, x.Time)
		}
	}
	// (unless the ring slid past it meanwhile: then it is full)
	if h.Samples[0].Time != last.Samples[4].Time && (h.Samples[0].Time.Before(last.Samples[4].Time) || len(h.Samples) < 40) {
		t.Errorf("since %v: first sample at %v, want %v (the next one)", mid, h.Samples[0].Time, last.Samples[4].Time)
	}
	if _, r := get("?since=yesterday"); r.code != 400 {
		t.Errorf("since=yesterday: %s, want 400", r)
	} else if _, field := r.errorBody(t); field != "since" {
		t.Errorf("since=yesterday: field %q, want since", field)
	}
}
