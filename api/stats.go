package api

import (
	"net/http"
	"time"

	"github.com/aurumcdp/aurum/engine"
)

// statsHistory is the answer of GET /v1/stats/history.
type statsHistory struct {
	// IntervalSeconds is how often the node samples.
	IntervalSeconds float64 `json:"interval_seconds"`
	// Samples are the samples after since (all of the last hour without
	// it), oldest first.
	Samples []engine.StatsSample `json:"samples"`
}

// handleStatsHistory answers the node's stats history (the console's
// dashboard charts):
//
//	GET /v1/stats/history?since=<RFC 3339 time>
//
// since= (the time of the last sample the caller has) returns only the
// newer samples. The history is this node's memory: a restart starts it
// empty.
func (s *Server) handleStatsHistory(w http.ResponseWriter, r *http.Request) {
	var since time.Time
	if v := r.URL.Query().Get("since"); v != "" {
		t, err := time.Parse(time.RFC3339Nano, v)
		if err != nil {
			writeError(w, http.StatusBadRequest, "since", "want an RFC 3339 time (2024-05-01T00:00:00Z), the time of the last sample you have")
			return
		}
		since = t
	}
	interval, samples := s.svc.Node.StatsHistory()
	out := statsHistory{IntervalSeconds: interval.Seconds(), Samples: make([]engine.StatsSample, 0, len(samples))}
	for _, x := range samples {
		if x.Time.After(since) {
			out.Samples = append(out.Samples, x)
		}
	}
	writeJSON(w, http.StatusOK, out)
}
