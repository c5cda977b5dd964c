# Aurum build targets. `make test` is the README's test command and what CI runs.
GO ?= go
PKGS := ./...

.PHONY: export-check build test test-short test-membudget bench bench-edge bench-latency bench-match bench-replay bench-writeamp bench-cluster bench-failover chaos-cluster-long bench-isolation connectors-long fuzz lint run clean predict-eval febrl febrl-product

# The commit is recorded by the go command in a git checkout; a git worktree
# (or -buildvcs=false) needs it from the linker: aurum version prints it.
COMMIT ?= $(shell git rev-parse HEAD 2>/dev/null)$(shell git diff --quiet HEAD 2>/dev/null || echo +modified)
build:
	$(GO) build -ldflags "-X main.commit=$(COMMIT)" -o bin/aurum ./cmd/aurum

# The whole suite with the race detector, integration and crash tests included.
# go vet runs every analyzer first, so go test's own vet pass (a subset of the
# same analyzers over the same packages and test files; ~50 s of CPU) is off.
# -ldflags=-w links the test binaries without DWARF (half the linker's CPU for
# each of ~55 race-built binaries); panics and race reports keep their file:line
# (they read the pclntab), only debuggers need DWARF.
test:
	$(GO) vet $(PKGS)
	$(GO) test -race -vet=off -ldflags=-w -timeout 15m $(PKGS)

test-short:
	$(GO) test -short $(PKGS)

# The engine's memory budget with every bound filled (issue #15): a real engine at the
# smallest memory limit (256 MiB) over 12,000 people (~86k events), live and then an
# offline replay, sampling the live Go heap, Pebble's block caches and memtables and
# the state machine's caches and filters; each within its bound and the Go heap within
# 4/5 of the Go soft limit (engine TestMemoryBudget, skipped without AURUM_MEMBUDGET; AURUM_MEMBUDGET=ci runs a
# small workload with the caches' unfilled part added at their bounds). A few minutes. MEMBUDGETPROFILES=dir
# writes the heap profile of each phase's peak there.
MEMBUDGETPROFILES ?=
test-membudget:
	AURUM_MEMBUDGET=full $(if $(MEMBUDGETPROFILES),AURUM_MEMBUDGET_PROFILES=$(MEMBUDGETPROFILES)) $(GO) test -run '^TestMemoryBudget$$' -count 1 -v -timeout 30m ./engine/

# Benchmarks: issue #15's targets in one run, one table ready for bench/RESULTS.md
# (also written to BENCHOUT), each target a ratio to a baseline measured in the same
# run, with PASS/MISS: HTTP and NATS ingest against raw JetStream publish with message
# ids; end to end (8 example audiences, feature projection on) against raw publish of
# the same events; replay against a raw ordered consume of the same log; transition
# p99 at 10,000 events/s; the engine's peak RSS at the largest size against the
# smallest. Throughput ratios run ROUNDS rounds (baseline and measurement alternating,
# medians; the per-round figures follow the table); end to end and replay do so at
# sizes up to ROUNDSMAXSIZE people, larger sizes run one round. SIZES are workload
# sizes in people, each run in processes of its own (generator and scorer; engine;
# replay; the baselines). MEMLIMIT (MiB, empty: none) is the engine's memory limit,
# as `aurum serve --memory-limit` takes it. Wall time on 2 quiet cores, roughly:
# ingest rounds and latency 2 min; 10k 2 min; 100k 10 min; 1M 35-45 min (the 1M
# size needs about 4 GB of memory, 2.4 GB of it the generator and ground truth,
# and ~12 GB of disk). BENCHFLAGS adds flags, e.g. BENCHFLAGS=-profile-dir=/tmp/prof
# (CPU and heap profiles of every end-to-end and replay round, for pprof).
SIZES ?= 10000,100000,1000000
ROUNDS ?= 3
ROUNDSMAXSIZE ?= 100000
MEMLIMIT ?=
BENCHOUT ?= /tmp/aurum-bench-report.md
BENCHTIMEOUT ?= 3h
BENCHFLAGS ?=
bench:
	$(GO) test -run '^TestReport$$' -count 1 -v -timeout $(BENCHTIMEOUT) ./bench/ -args -report -sizes $(SIZES) -rounds $(ROUNDS) -rounds-max-size $(ROUNDSMAXSIZE) $(if $(MEMLIMIT),-engine-memory-limit $(MEMLIMIT)) -report-out $(BENCHOUT) $(BENCHFLAGS)
	$(MAKE) bench-match

# Issue #15 (session 9): the ingest edge and the transition latency alone, EDGEROUNDS
# rounds one after the other (interleave binaries by hand for an A/B): raw JetStream
# publish, NATS and HTTP ingest (events/s and cpu-ns/event), the gateway's own
# JetStream cost per raw message against the raw publish (log BenchmarkConsumeIngest)
# and the event → audience transition latency at 10,000 events/s offered. About a
# minute a round on 2 quiet cores; bench/RESULTS.md "Issue #15: the ingest edge".
EDGEROUNDS ?= 3
bench-edge:
	for r in $$(seq $(EDGEROUNDS)); do \
		$(GO) test -run '^$$' -bench 'JetStreamPublish$$|IngestNATS$$|IngestHTTP$$|TransitionLatency10k$$' -benchtime 30000x -count 1 ./bench/ || exit 1; \
		$(GO) test -run '^$$' -bench 'ConsumeIngest$$' -benchtime 20000x -count 1 ./log/ || exit 1; \
	done

# Issue #15 (session 10): the event → audience transition latency broken down into
# the engine's stages (TestLatencyStages, engine.Trace): per stage its p50/p99 and its
# mean over the slowest 1 %, the apply loop's busy share and commits, the publisher's
# passes, the state store's WAL syncs, write stalls, flushes and compactions, GCs, and
# the windows that stand out. LATENCYRATES events/s offered, LATENCYROUNDS rounds of
# LATENCYSECONDS each, LATENCYMEMLIMIT the engine's memory limit in MiB (empty: none,
# as `make bench`'s latency rounds), LATENCYTICK its tick period (empty: none). About
# 15 s a rate and round; bench/RESULTS.md "Issue #15 (session 10): the latency tail".
LATENCYRATES ?= 5000,10000
LATENCYROUNDS ?= 1
LATENCYSECONDS ?= 3
LATENCYMEMLIMIT ?=
LATENCYTICK ?=
bench-latency:
	AURUM_BENCH=latency AURUM_LATENCY_RATES=$(LATENCYRATES) AURUM_LATENCY_ROUNDS=$(LATENCYROUNDS) AURUM_LATENCY_SECONDS=$(LATENCYSECONDS) \
		AURUM_LATENCY_MEMLIMIT=$(LATENCYMEMLIMIT) AURUM_LATENCY_TICK=$(LATENCYTICK) \
		$(GO) test -run '^TestLatencyStages$$' -count 1 -v -timeout 30m ./bench/

# Issue #13, must-show 2 (part of `make bench`): the matcher's CPU cost per
# identify event at MATCHSIZES profiles (each loaded into a state machine on
# Pebble), apply with matching on against off (interleaved rounds, medians),
# and the block sizes and candidates per event at MATCHBLOCKSIZES profiles
# (from the generator, no store); bench/RESULTS.md "Issue #13: matching cost".
# TestSkewedSurnamesSizes: proposals per probe event at MATCHBLOCKSIZES, in
# memory (bench/RESULTS.md "Issue #13: EM on skewed surnames").
# MATCHSIZES=10000,100000 takes about 10 minutes on 2 busy cores; the 1M size
# loads a million profiles (several more minutes of CPU per 100k).
MATCHSIZES ?= 10000,100000,1000000
MATCHBLOCKSIZES ?= 10000,100000,1000000
bench-match:
	AURUM_BENCH=match $(GO) test -run '^Test(Match(Cost|BlockSizes)|SkewedSurnamesSizes)$$' -count 1 -v -timeout $(BENCHTIMEOUT) ./bench/ -args -match-sizes $(MATCHSIZES) -match-block-sizes $(MATCHBLOCKSIZES)

# Issue #15, the replay target: engine.Replay against a raw ordered consume of as
# many one-event messages (and of the replay log itself), in one process, rounds
# interleaved, medians (bench/RESULTS.md "Issue #15: the replay pipeline").
# REPLAYEVENTS events (default 50000; about a minute on 2 quiet cores with 3 rounds).
# REPLAYMEMLIMIT (MiB, e.g. 320) replays within a memory limit as `aurum replay
# --data-dir --memory-limit` does (bench/RESULTS.md "Issue #15 (session 10): the GC and
# the replay"); each replay's GC share and cycles are printed beside it.
REPLAYEVENTS ?= 50000
REPLAYROUNDS ?= 3
REPLAYMEMLIMIT ?=
bench-replay:
	AURUM_BENCH=replay AURUM_BENCH_REPLAY_EVENTS=$(REPLAYEVENTS) AURUM_BENCH_REPLAY_ROUNDS=$(REPLAYROUNDS) $(if $(REPLAYMEMLIMIT),AURUM_BENCH_REPLAY_MEMLIMIT=$(REPLAYMEMLIMIT)) $(GO) test -run '^TestReplayRatio$$' -count 1 -v -timeout $(BENCHTIMEOUT) ./bench/

# Issue #15 (session 10): the state store's write amplification. The size benchmark's
# workload for WAMPPEOPLE people applied to state stores (one per variant of WAMPVARIANTS,
# bench/writeamp_test.go), WAMPROUNDS rounds interleaved, medians: bytes written per event
# by key family (first round), WAL, flush and compaction bytes, CPU per event
# (bench/RESULTS.md "Issue #15 (session 10): write amplification"). About 2 minutes a
# variant and round at 20k people on 2 quiet cores; 100k people take about 10.
WAMPPEOPLE ?= 20000
WAMPROUNDS ?= 3
WAMPVARIANTS ?= base,l0-16
bench-writeamp:
	AURUM_BENCH=writeamp AURUM_WRITEAMP_FAMILIES=1 AURUM_WRITEAMP_PEOPLE=$(WAMPPEOPLE) AURUM_WRITEAMP_ROUNDS=$(WAMPROUNDS) AURUM_WRITEAMP_VARIANTS=$(WAMPVARIANTS) $(GO) test -run '^TestWriteAmp$$' -count 1 -v -timeout $(BENCHTIMEOUT) ./bench/

# Issue #11: throughput of one node against three (real processes; rounds
# interleaved, medians; bench/RESULTS.md "Issue #11: throughput"). About 10
# minutes on 2 cores with the defaults (3 rounds, 1000 people).
bench-cluster:
	AURUM_BENCH=cluster $(GO) test -run '^TestClusterThroughput$$' -count 1 -v -timeout 1h ./cmd/aurum/

# Issue #11, must-show 2: KILLS SIGKILLs of the Raft leader or of another node of a
# three-node cluster, each failover broken down step by step from the nodes' logs, with
# median, p90 and max (bench/RESULTS.md "Issue #11: failover steps"). About 30 s a kill.
KILLS ?= 16
bench-failover:
	AURUM_BENCH=failover AURUM_FAILOVER_KILLS=$(KILLS) $(GO) test -run '^TestClusterFailover$$' -count 1 -v -timeout 1h ./cmd/aurum/

# Issue #11, must-show 1, the long version of the cluster chaos test: 10 SIGKILLs, a
# SIGSTOP and a rolling restart under a larger workload (bench/RESULTS.md).
chaos-cluster-long:
	AURUM_CHAOS=long $(GO) test -run '^TestClusterChaos$$' -count 1 -v -timeout 2h ./cmd/aurum/

# Issue #17, must-show 2: one connector's API down for 2 minutes at a time
# against all up (interleaved rounds, medians; bench/RESULTS.md "Issue #17:
# one connector down"). About 7 minutes. AURUM_ISOLATION_DOWN/_UP change the
# phases (defaults 2m, 1m).
bench-isolation:
	AURUM_BENCH=isolation $(GO) test -run '^TestConnectorDownMeasured$$' -count 1 -v -timeout 30m ./activation/

# Issue #17, must-show 1: the connector suite at the issue's size (a first
# sync of 10,000 members, 5xx for a minute), every connector; docs/connectors.md
# "Tests". About 20 minutes on 2 cores.
connectors-long:
	AURUM_LONG=1 $(GO) test -p 1 -count 1 -v -timeout 1h -run 'TestCustomerMatch|TestHubSpot|TestMetaAudience|TestSalesforce|TestSMS$$|TestSMTP$$' ./activation/connectors/...

# Each fuzz target for FUZZTIME (default 30s): events and batches, CSV/JSON/
# NDJSON/XML import, the rule language, stored GCRs, webhook signatures, the
# identity config, hostile log entries (Apply, CheckMsgpack), management
# request bodies, the reference-data readers of cmd/predict-eval and
# cmd/febrl-eval, and the normalization and comparisons of projections/match.
FUZZTIME ?= 30s
fuzz:
	@for pkg in ./internal/wire ./event ./importer ./rules ./projections/gcr ./projections/audience ./activation ./projections ./projections/identity ./projections/match ./api ./cmd/predict-eval ./cmd/febrl-eval; do \
	  for t in $$($(GO) test -list '^Fuzz' $$pkg | grep '^Fuzz'); do \
	    echo "== $$pkg $$t"; $(GO) test -run '^$$' -fuzz "^$$t$$" -fuzztime $(FUZZTIME) $$pkg || exit 1; \
	  done; \
	done

# Issue #12, must-show 2: the propensity AUC on online_shoppers_intention and
# the recommendation hit rates at 10 against popularity (docs/predictions.md,
# "Reference results: the command"). Reads ../shared/data; about 10 s.
predict-eval:
	$(GO) run ./cmd/predict-eval -data ../shared/data

# Issue #13: pairwise precision, recall and F1 of projections/match on FEBRL
# 1-4 per threshold, with and without term frequencies (docs/identity.md,
# "Matching quality (FEBRL)"). Reads ../shared/data; about a minute.
febrl:
	$(GO) run ./cmd/febrl-eval -data ../shared/data -tf

lint:
	gofmt -l . | tee /dev/stderr | (! read)
	$(GO) vet $(PKGS)

run:
	$(GO) run ./cmd/aurum serve

clean:
	rm -rf bin aurum-data

# Issue #17, must-show 3: the warehouse export's Parquet files read back by an
# independent reader, Apache Arrow's (build tag arrowcheck: Arrow takes minutes
# to compile, so CI's build reads them back with parquet-go's own reader).
export-check:
	$(GO) test -tags arrowcheck -run '^TestExportReadBackByArrow$$' -count 1 -v ./engine/export/

# Issue #13 must-show 1 through the product: FEBRL 1-4 imported by `aurum import` into fresh
# nodes, `aurum identity train`, pairwise precision/recall/F1 of the profiles the nodes built
# (docs/identity.md). Reads ../shared/data; several minutes. AURUM_FEBRL=febrl1,febrl4 for a subset.
febrl-product:
	AURUM_FEBRL=$${AURUM_FEBRL:-1} $(GO) test ./cmd/aurum -run TestFEBRLThroughTheProduct -v -timeout 60m
