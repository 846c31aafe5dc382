# EventFlow — the two commands that matter:
#   make run    install what is missing, build (release), start `eventflow serve` on the embedded PostgreSQL
#   make test   install what is missing, build, run every test (embedded PostgreSQL, kafka-python cross-checks)

SWIFT ?= swift
DATA_DIR ?= eventflow-data
SERVE_FLAGS ?=
FUZZ_RUNS ?= 1000000
BROKER_FUZZ_ITERATIONS ?= 20000
CHAOS_ROUNDS ?= 20
CHAOS_FLAGS ?=
OVERLOAD_SECONDS ?= 180

.PHONY: run test deps deps-test build release crosscheck fuzz microbench bench bench-analytics bench-schema chaos overload clean-data

deps:
	scripts/install-deps.sh

deps-test:
	scripts/install-deps.sh --python

build: deps
	$(SWIFT) build

release: deps
	$(SWIFT) build -c release --product eventflow

run: release
	.build/release/eventflow serve --data-dir $(DATA_DIR) $(SERVE_FLAGS)

TEST_LOG_DIR ?= $(CURDIR)/.build/test-logs

test: deps-test
	$(SWIFT) build --build-tests
	rm -rf $(TEST_LOG_DIR)
	EVENTFLOW_TEST_LOG_DIR=$(TEST_LOG_DIR) $(SWIFT) test --skip-build
	scripts/check-logs-for-secrets.py $(TEST_LOG_DIR)
	scripts/crosscheck-batches.sh
	scripts/loadgen-smoke.sh
	scripts/chaos.py --rounds 2
	python3 scripts/check-compose.py

# The codec's libFuzzer targets, then the seeded random driver of the whole broker (BrokerFuzzTests).
fuzz: deps
	FUZZ_RUNS=$(FUZZ_RUNS) scripts/fuzz.sh
	$(SWIFT) build --build-tests
	EVENTFLOW_FUZZ_ITERATIONS=$(BROKER_FUZZ_ITERATIONS) $(SWIFT) test --skip-build --filter BrokerFuzzTests

microbench: deps
	$(SWIFT) package --package-path Benchmarks --scratch-path Benchmarks/.build benchmark

# The end-to-end ingest benchmark (release build, fresh embedded database); BENCH_TINY=1 for a smoke run.
bench: deps-test
	scripts/bench.sh
	BENCH_SKIP_BUILD=1 $(MAKE) bench-analytics
	BENCH_SKIP_BUILD=1 $(MAKE) bench-schema

# The analytics projection: ingest with and without it, and its backfill rate into `events` (BENCHMARKS.md).
bench-analytics: deps-test
	if [ "$${BENCH_SKIP_BUILD:-0}" != 1 ]; then $(SWIFT) build -c release --product eventflow && $(SWIFT) build -c release --product eventflow-loadgen; fi
	scripts/bench-analytics.sh

# Schema validation's cost: ingest into a stream with a JSON Schema against the same stream without (BENCHMARKS.md).
bench-schema: deps-test
	if [ "$${BENCH_SKIP_BUILD:-0}" != 1 ]; then $(SWIFT) build -c release --product eventflow && $(SWIFT) build -c release --product eventflow-loadgen; fi
	scripts/bench-schema.sh

# Crash and restart under load (RELIABILITY.md): CHAOS_ROUNDS SIGKILLs of the broker, ROUNDS/4 immediate
# PostgreSQL stops, ROUNDS/2 kills under a committing consumer group; every acknowledged event read back.
chaos: deps-test
	$(SWIFT) build --product eventflow
	scripts/chaos.py --rounds $(CHAOS_ROUNDS) $(CHAOS_FLAGS)

# Overload (RELIABILITY.md): 1 GiB of produce requests in flight against the 64 MiB batcher for
# OVERLOAD_SECONDS, consumers beside it; the broker's RSS stays under the bound, nothing acknowledged is lost.
# Release builds: the load is measured against the broker as shipped.
overload: deps-test
	$(SWIFT) build -c release --product eventflow
	$(SWIFT) build -c release --product eventflow-loadgen
	scripts/chaos.py --scenarios overload --overload-seconds $(OVERLOAD_SECONDS) --eventflow .build/release/eventflow $(CHAOS_FLAGS)

clean-data:
	rm -rf $(DATA_DIR)
