# Aurum build targets. `make test` is the README's test command and what CI runs.
GO ?= go
PKGS := ./...

.PHONY: build test test-short bench fuzz lint run clean

build:
	$(GO) build -o bin/aurum ./cmd/aurum

# The whole suite with the race detector, integration and crash tests included.
test:
	$(GO) vet $(PKGS)
	$(GO) test -race -timeout 15m $(PKGS)

test-short:
	$(GO) test -short $(PKGS)

# Benchmarks: ingest throughput and look-up latency against raw JetStream publish.
bench:
	$(GO) test -run '^TestReport$$' -count 1 -v -timeout 30m ./bench/ -args -report

# Each fuzz target for FUZZTIME (default 30s).
FUZZTIME ?= 30s
fuzz:
	@for pkg in ./event ./importer; do \
	  for t in $$($(GO) test -list '^Fuzz' $$pkg | grep '^Fuzz'); do \
	    echo "== $$pkg $$t"; $(GO) test -run '^$$' -fuzz "^$$t$$" -fuzztime $(FUZZTIME) $$pkg || exit 1; \
	  done; \
	done

lint:
	gofmt -l . | tee /dev/stderr | (! read)
	$(GO) vet $(PKGS)

run:
	$(GO) run ./cmd/aurum serve

clean:
	rm -rf bin aurum-data
