#!/usr/bin/env bash
# The cost of schema validation (part of `make bench`; alone: `make bench-schema`): durable ingest
# into a stream without a schema, then into one whose schema every event must match
# (docs/benchmarks/loadgen-event.schema.json: required fields, types, an enum, ranges, a pattern),
# alternating, BENCH_SCHEMA_ROUNDS times each, on one broker.
# 100-byte JSON events, LZ4, acks=-1, 8 connections, TLS, release build, fresh embedded PostgreSQL.
# Writes $BENCH_OUT/schema.json and prints the figures.
#
# Environment: BIN (default .build/release), BENCH_OUT (default bench-results), BENCH_TINY=1 (seconds-long runs),
# BENCH_SCHEMA_SECONDS (each run, default 10), BENCH_SCHEMA_ROUNDS (default 2).
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-.build/release}
OUT=${BENCH_OUT:-bench-results}
if [ "${BENCH_TINY:-0}" = 1 ]; then DURATION=3; WARMUP=1; ROUNDS=1; else DURATION=${BENCH_SCHEMA_SECONDS:-10}; WARMUP=2; ROUNDS=${BENCH_SCHEMA_ROUNDS:-2}; fi
mkdir -p "$OUT"
WORK=$(mktemp -d /tmp/eventflow-bench-schema.XXXXXX)
. scripts/bench-broker.sh
start_bench_broker
cli stream create --org bench plain --partitions 8 >/dev/null
cli stream create --org bench validated --partitions 8 --schema "${BENCH_SCHEMA_FILE:-docs/benchmarks/loadgen-event.schema.json}" >/dev/null
# The broker's CPU time (user + system, clock ticks) so far: per event it is a figure that other
# load on the machine disturbs far less than the rate.
broker_ticks() { awk '{print $14 + $15}' "/proc/$SERVE_PID/stat"; }
ingest() {
    local before; before=$(broker_ticks)
    "$BIN/eventflow-loadgen" --stream "$1" --partitions 8 --connections 8 --duration "$DURATION" --warmup "$WARMUP" \
        --message-size 100 --compression lz4 --acks=-1 --json "$WORK/$1-$2.json" >"$WORK/$1-$2.log" 2>&1 \
        || { cat "$WORK/$1-$2.log" >&2; exit 1; }
    echo $(( $(broker_ticks) - before )) >"$WORK/$1-$2.ticks"
}
for round in $(seq 1 "$ROUNDS"); do
    echo "== round $round: without a schema"; ingest plain "$round"
    echo "== round $round: with the schema"; ingest validated "$round"
done
python3 - "$WORK" "$OUT/schema.json" "$ROUNDS" "$(getconf CLK_TCK)" <<'PY'
import json, sys
work, out, rounds, ticks_per_second = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
runs = {s: [json.load(open(f"{work}/{s}-{r}.json")) for r in range(1, rounds + 1)] for s in ("plain", "validated")}
def cpu_us_per_event(stream, r):
    ticks = int(open(f"{work}/{stream}-{r}.ticks").read())
    return round(ticks / ticks_per_second * 1e6 / max(runs[stream][r - 1]["events_acknowledged_total"], 1), 3)
def mean(values): return round(sum(values) / len(values))
result = {
    "rounds": rounds,
    "without_schema_events_per_second": [r["events_per_second"] for r in runs["plain"]],
    "with_schema_events_per_second": [r["events_per_second"] for r in runs["validated"]],
    "without_schema_p99_ms": [r["latency_ms"]["p99"] for r in runs["plain"]],
    "with_schema_p99_ms": [r["latency_ms"]["p99"] for r in runs["validated"]],
    "without_schema_broker_cpu_us_per_event": [cpu_us_per_event("plain", r) for r in range(1, rounds + 1)],
    "with_schema_broker_cpu_us_per_event": [cpu_us_per_event("validated", r) for r in range(1, rounds + 1)],
    "errors_with_schema": sum(r.get("errors", 0) for r in runs["validated"]),
}
result["with_over_without"] = round(mean(result["with_schema_events_per_second"]) / mean(result["without_schema_events_per_second"]), 3)
json.dump(result, open(out, "w"), indent=2)
for key, value in result.items():
    print(f"  {key:36} {value}")
PY
