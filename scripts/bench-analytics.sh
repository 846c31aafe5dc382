#!/usr/bin/env bash
# The analytics projection's cost and rate (part of `make bench`; alone: `make bench-analytics`):
#   1. durable ingest into a stream without the projection (the reference)
#   2. the same ingest into a stream with `--analytics on`, the projector running beside it at its
#      default share (`--analytics-busy-percent-max 25`)
#   3. the broker restarted with the projector unbounded (`--analytics-busy-percent-max 100`) and no
#      producers, run 1's stream switched on too: the projection of everything not yet in `events`,
#      timed until it holds every record of both streams (rows/s)
# 100-byte JSON events, LZ4, acks=-1, 8 connections, TLS, release build, fresh embedded PostgreSQL.
# Writes $BENCH_OUT/analytics.json and prints the figures.
#
# Environment: BIN (default .build/release), BENCH_OUT (default bench-results), BENCH_TINY=1 (seconds-long runs).
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-.build/release}
OUT=${BENCH_OUT:-bench-results}
if [ "${BENCH_TINY:-0}" = 1 ]; then DURATION=3; WARMUP=1; else DURATION=10; WARMUP=2; fi
mkdir -p "$OUT"
WORK=$(mktemp -d /tmp/eventflow-bench-analytics.XXXXXX)
chmod 755 "$WORK"  # the embedded PostgreSQL runs as the postgres user
DATA="$WORK/data"
free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
PORT=$(free_port); HTTP_PORT=$(free_port)
# start_broker [serve flags...]
start_broker() {
    "$BIN/eventflow" serve --data-dir "$DATA" --host 127.0.0.1 --port "$PORT" --http-port "$HTTP_PORT" --log-level warning "$@" \
        >>"$WORK/serve.log" 2>&1 &
    SERVE_PID=$!
    for _ in $(seq 1 300); do
        python3 -c 'import socket, sys; socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=1).close()' "$PORT" 2>/dev/null && return
        kill -0 "$SERVE_PID" 2>/dev/null || { cat "$WORK/serve.log" >&2; exit 1; }
        sleep 0.2
    done
}
stop_broker() { kill "$SERVE_PID" 2>/dev/null || true; wait "$SERVE_PID" 2>/dev/null || true; }
trap stop_broker EXIT
start_broker
cli() { "$BIN/eventflow" "$@" --data-dir "$DATA"; }
cli org create bench >/dev/null
cli apikey create --org bench --json >"$WORK/key.json"
export EVENTFLOW_API_KEY=$(python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["id"])' "$WORK/key.json")
export EVENTFLOW_API_SECRET=$(python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["secret"])' "$WORK/key.json")
export EVENTFLOW_BROKERS="127.0.0.1:$PORT" EVENTFLOW_CA="$DATA/tls/ca.pem"
cli stream create --org bench plain --partitions 8 >/dev/null
cli stream create --org bench projected --partitions 8 >/dev/null
cli stream alter --org bench projected --analytics on >/dev/null
ingest() {
    "$BIN/eventflow-loadgen" --stream "$1" --partitions 8 --connections 8 --duration "$DURATION" --warmup "$WARMUP" \
        --message-size 100 --compression lz4 --acks=-1 --json "$WORK/$1.json" >"$WORK/$1.log" 2>&1
}
# caught_up STREAM: seconds until the projection of STREAM has no lag and `events` holds every stored record.
caught_up() {
    python3 - "$BIN/eventflow" "$DATA" "$1" <<'PY'
import json, subprocess, sys, time
eventflow, data, stream = sys.argv[1:]
started = time.monotonic()
while True:
    described = json.loads(subprocess.run([eventflow, "stream", "describe", "--org", "bench", stream, "--json", "--data-dir", data],
                                          capture_output=True, text=True, check=True).stdout)
    parts = described.get("analyticsPartitions", [])
    stored = sum(p["end"] for p in parts)
    if parts and all(p["lag"] == 0 for p in parts) and described.get("analyticsRows") == stored:
        print(json.dumps({"seconds": time.monotonic() - started, "rows": stored}))
        break
    if time.monotonic() - started > 1800:
        sys.exit(f"bench-analytics: {stream} not projected after 30 minutes: {described}")
    time.sleep(0.2)
PY
}
echo "== 1. ingest without the projection"; ingest plain
echo "== 2. ingest with the projection running"; ingest projected
stop_broker
echo "== 3. the projection unbounded, no producers: everything not yet in events"
cli stream alter --org bench plain --analytics on >/dev/null
BEFORE=$(python3 - "$BIN/eventflow" "$DATA" <<'PY'
import json, subprocess, sys
eventflow, data = sys.argv[1:]
print(sum(json.loads(subprocess.run([eventflow, "stream", "describe", "--org", "bench", s, "--json", "--data-dir", data],
                                    capture_output=True, text=True, check=True).stdout).get("analyticsRows", 0) for s in ("plain", "projected")))
PY
)
start_broker --analytics-busy-percent-max 100
caught_up projected >"$WORK/projected-caught-up.json"
caught_up plain >"$WORK/backfill.json"
echo "$BEFORE" >"$WORK/rows-before.txt"
python3 - "$WORK" "$OUT/analytics.json" <<'PY'
import json, sys
work, out = sys.argv[1:]
plain, projected = json.load(open(f"{work}/plain.json")), json.load(open(f"{work}/projected.json"))
first, second = json.load(open(f"{work}/projected-caught-up.json")), json.load(open(f"{work}/backfill.json"))
before = int(open(f"{work}/rows-before.txt").read())
seconds = first["seconds"] + second["seconds"]
rows = first["rows"] + second["rows"] - before
result = {
    "ingest_without_projection_events_per_second": plain["events_per_second"],
    "ingest_with_projection_events_per_second": projected["events_per_second"],
    "ingest_p50_ms_without": plain["latency_ms"]["p50"], "ingest_p50_ms_with": projected["latency_ms"]["p50"],
    "ingest_p99_ms_without": plain["latency_ms"]["p99"], "ingest_p99_ms_with": projected["latency_ms"]["p99"],
    "rows_projected_during_ingest": before, "events_stored": first["rows"] + second["rows"],
    "unbounded_projection_rows": rows, "unbounded_projection_seconds": round(seconds, 2),
    "unbounded_projection_rows_per_second": round(rows / seconds) if seconds > 0 else None,
}
json.dump(result, open(out, "w"), indent=2)
for key, value in result.items():
    print(f"  {key:46} {value}")
PY
