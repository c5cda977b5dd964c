package ingest

import "github.com/prometheus/client_golang/prometheus"

// metrics are the edge's Prometheus metrics.
type metrics struct {
	ingested       *prometheus.CounterVec
	deadLetters    *prometheus.CounterVec
	appends        prometheus.Counter
	batchEvents    prometheus.Histogram
	suppressedEdge prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		ingested: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "aurum_ingest_events_total",
			Help: "Events accepted at the edge and durable on the log, by source."}, []string{"source"}),
		deadLetters: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "aurum_ingest_dead_letters_total",
			Help: "Invalid events kept on the dead-letter stream, by source."}, []string{"source"}),
		appends: prometheus.NewCounter(prometheus.CounterOpts{Name: "aurum_log_appends_total",
			Help: "Group-commit appends to the event log."}),
		batchEvents: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "aurum_log_append_events",
			Help: "Events per group-commit append.", Buckets: prometheus.ExponentialBuckets(1, 4, 8)}),
		suppressedEdge: prometheus.NewCounter(prometheus.CounterOpts{Name: "aurum_ingest_suppressed_events_total",
			Help: "Events dropped at the edge because their anchor identifier's data key was destroyed by an erasure."}),
	}
	if reg != nil {
		reg.MustRegister(m.ingested, m.deadLetters, m.appends, m.batchEvents, m.suppressedEdge)
	}
	return m
}
