package engine

import "github.com/prometheus/client_golang/prometheus"

// metrics are the engine's Prometheus metrics (aurum_engine_*).
type metrics struct {
	applied      prometheus.Counter
	duplicates   prometheus.Counter
	merges       prometheus.Counter
	profiles     prometheus.Counter
	transitions  prometheus.Counter
	ticks        prometheus.Counter
	corrupt      prometheus.Counter
	invalid      prometheus.Counter
	appliedSeq   prometheus.Gauge
	applySeconds prometheus.Histogram
	applyGroup   prometheus.Histogram
	failures     *prometheus.CounterVec
	checkpoints  prometheus.Counter // the live state's flushes by checkpointLoop

	suppressed prometheus.Counter
	// webhookSkipped counts transitions a destination skipped, by reason.
	webhookSkipped *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		applied: prometheus.NewCounter(prometheus.CounterOpts{Name: "aurum_apply_events_total",
			Help: "Events applied to the projections."}),
		duplicates: prometheus.NewCounter(prometheus.CounterOpts{Name: "aurum_apply_duplicates_total",
			Help: "Events dropped as duplicate messageIds."}),
		merges: prometheus.NewCounter(prometheus.CounterOpts{Name: "aurum_identity_merges_total",
			Help: "Profile merges."}),
		profiles: prometheus.NewCounter(prometheus.CounterOpts{Name: "aurum_identity_profiles_created_total",
			Help: "Profiles created (since this process started)."}),
		transitions: prometheus.NewCounter(prometheus.CounterOpts{Name: "aurum_audience_transitions_total",
			Help: "Audience entries and exits decided by the state machine."}),
		ticks: prometheus.NewCounter(prometheus.CounterOpts{Name: "aurum_ticks_total",
			Help: "Tick records appended to the log (the passage of time)."}),
		corrupt: prometheus.NewCounter(prometheus.CounterOpts{Name: "aurum_apply_corrupt_entries_total",
			Help: "Log entries skipped because they could not be decoded."}),
		invalid: prometheus.NewCounter(prometheus.CounterOpts{Name: "aurum_apply_invalid_records_total",
			Help: "Malformed records skipped (no identifier, bad hash or id, no kind)."}),
		appliedSeq: prometheus.NewGauge(prometheus.GaugeOpts{Name: "aurum_apply_position",
			Help: "Last applied log sequence."}),
		applySeconds: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "aurum_apply_entry_seconds",
			Help: "Time to apply and commit one log entry (entries committed together share their group's time).", Buckets: prometheus.ExponentialBuckets(0.0001, 4, 8)}),
		applyGroup: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "aurum_apply_group_entries",
			Help: "Log entries applied in one Pebble batch by the apply loop.", Buckets: prometheus.ExponentialBuckets(1, 4, 6)}),
		failures: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "aurum_engine_task_failures_total",
			Help: "Background tasks that stopped with an error."}, []string{"task"}),
		checkpoints: prometheus.NewCounter(prometheus.CounterOpts{Name: "aurum_state_checkpoints_total",
			Help: "Checkpoints of the live state by time (its memtables flushed to tables; a full memtable is flushed by Pebble and not counted)."}),
		webhookSkipped: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "aurum_webhook_skipped_total",
			Help: "Audience transitions a webhook destination acked without sending, by reason (consent: the person has no consent for the destination's channel)."}, []string{"destination", "reason"}),
	}
	m.suppressed = prometheus.NewCounter(prometheus.CounterOpts{Name: "aurum_suppressed_events_total",
		Help: "Events dropped by the state machine because they carry an erased (suppressed) identifier."})
	reg.MustRegister(m.suppressed)
	reg.MustRegister(m.applied, m.duplicates,
		m.merges, m.profiles, m.transitions, m.ticks, m.corrupt, m.invalid, m.appliedSeq, m.applySeconds, m.applyGroup, m.failures, m.checkpoints, m.webhookSkipped)
	return m
}
