#!/usr/bin/env bash
# The analytics projection's cost and rate (part of `make bench`; alone: `make bench-analytics`):
#   1. durable ingest into a stream without the projection (the reference)
#   2. the same ingest into a stream with `--analytics on`, the projector running beside it at its
#      default share (`--analytics-busy-percent-max 25`)
#   3. the broker restarted with the projector unbounded (`--analytics-busy-percent-max 100`) and no
#      producers, run 1's stream switched on too: the rows it adds to `events` in PROJECTION_SECONDS
#      (rows/s; catching up completely can take far longer than the ingest did)
# 100-byte JSON events, LZ4, acks=-1, 8 connections, TLS, release build, fresh embedded PostgreSQL.
# Writes $BENCH_OUT/analytics.json and prints the figures.
#
# Environment: BIN (default .build/release), BENCH_OUT (default bench-results), BENCH_TINY=1 (seconds-long runs),
# BENCH_ANALYTICS_SECONDS (each ingest run, default 10).
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-.build/release}
OUT=${BENCH_OUT:-bench-results}
if [ "${BENCH_TINY:-0}" = 1 ]; then DURATION=3; WARMUP=1; PROJECTION_SECONDS=10; else DURATION=${BENCH_ANALYTICS_SECONDS:-10}; WARMUP=2; PROJECTION_SECONDS=60; fi
mkdir -p "$OUT"
WORK=$(mktemp -d /tmp/eventflow-bench-analytics.XXXXXX)
. scripts/bench-broker.sh
start_bench_broker
cli stream create --org bench plain --partitions 8 >/dev/null
cli stream create --org bench projected --partitions 8 >/dev/null
cli stream alter --org bench projected --analytics on >/dev/null
ingest() {
    "$BIN/eventflow-loadgen" --stream "$1" --partitions 8 --connections 8 --duration "$DURATION" --warmup "$WARMUP" \
        --message-size 100 --compression lz4 --acks=-1 --json "$WORK/$1.json" >"$WORK/$1.log" 2>&1
}
# rows: rows in `events` of both streams.
rows() {
    python3 - "$BIN/eventflow" "$DATA" <<'PY'
import json, subprocess, sys
eventflow, data = sys.argv[1:]
print(sum(json.loads(subprocess.run([eventflow, "stream", "describe", "--org", "bench", s, "--json", "--data-dir", data],
                                    capture_output=True, text=True, check=True).stdout).get("analyticsRows", 0) for s in ("plain", "projected")))
PY
}
echo "== 1. ingest without the projection"; ingest plain
echo "== 2. ingest with the projection running"; ingest projected
stop_broker
echo "== 3. the projection unbounded, no producers: everything not yet in events"
cli stream alter --org bench plain --analytics on >/dev/null
BEFORE=$(rows)
start_broker --analytics-busy-percent-max 100
sleep 2  # the projector's first round
FROM=$(rows); FROM_TIME=$(date +%s.%N)
sleep "$PROJECTION_SECONDS"
TO=$(rows); TO_TIME=$(date +%s.%N)
echo "{\"before\": $BEFORE, \"from\": $FROM, \"to\": $TO, \"seconds\": $(python3 -c "print($TO_TIME - $FROM_TIME)")}" >"$WORK/projection.json"
python3 - "$WORK" "$OUT/analytics.json" <<'PY'
import json, sys
work, out = sys.argv[1:]
plain, projected = json.load(open(f"{work}/plain.json")), json.load(open(f"{work}/projected.json"))
projection = json.load(open(f"{work}/projection.json"))
added = projection["to"] - projection["from"]
result = {
    "ingest_without_projection_events_per_second": plain["events_per_second"],
    "ingest_with_projection_events_per_second": projected["events_per_second"],
    "ingest_p50_ms_without": plain["latency_ms"]["p50"], "ingest_p50_ms_with": projected["latency_ms"]["p50"],
    "ingest_p99_ms_without": plain["latency_ms"]["p99"], "ingest_p99_ms_with": projected["latency_ms"]["p99"],
    "events_stored": plain["events_acknowledged_total"] + projected["events_acknowledged_total"],
    "rows_projected_during_ingest": projection["before"],
    "unbounded_projection_rows": added, "unbounded_projection_seconds": round(projection["seconds"], 2),
    "unbounded_projection_rows_per_second": round(added / projection["seconds"]),
}
json.dump(result, open(out, "w"), indent=2)
for key, value in result.items():
    print(f"  {key:46} {value}")
PY
