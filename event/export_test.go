package event

// Hooks for the external tests (package event_test), which use
// internal/workload.
var (
	ParseBatchStd = parseBatchStd
	ParseStd      = parseStd
)

// ParseBatchFastTakes reports whether the scanner path takes data itself.
func ParseBatchFastTakes(data []byte, opts ParseOptions) bool {
	_, _, ok := parseBatchFast(data, opts.withDefaults())
	return ok
}

// WithDefaults is opts with its defaults filled in.
func WithDefaults(opts ParseOptions) ParseOptions { return opts.withDefaults() }
