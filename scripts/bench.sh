#!/usr/bin/env bash
# make bench: EventFlow's end-to-end ingest benchmark, with its baselines in the same run.
#
# Starts `eventflow serve` (TLS, development CA) on a fresh embedded PostgreSQL in a temporary
# folder, creates an organization, an API key and a stream with the CLI, then runs:
#   1. max-rate durable ingest (100-byte JSON events, LZ4, acks=-1, 8 connections) after a warm-up
#   2. the baselines: multi-row INSERT into `events`, binary COPY of the same batches into `event_batches`
#   3. a latency sweep at 10/25/50/75% of the measured max rate
#   4. 1,000 connections at max rate (against 8 in run 1)
#   5. an overload of the broker alone (pre-built batches, 1 GiB of requests in flight) while its RSS is sampled
# and writes every result into one JSON file ($BENCH_OUT/bench.json) and prints a table with the ratios.
#
# Environment:
#   BENCH_TINY=1        seconds-long runs (CI smoke; the numbers mean nothing)
#   BENCH_CONFIG=debug  use debug binaries (default: release)
#   BENCH_SKIP_BUILD=1  use the binaries already built
#   BENCH_OUT=DIR       where results go (default: bench-results)
#   BENCH_PLAINTEXT=1   broker without TLS
set -euo pipefail
cd "$(dirname "$0")/.."

CONFIG=${BENCH_CONFIG:-release}
OUT=${BENCH_OUT:-bench-results}
if [ "${BENCH_TINY:-0}" = 1 ]; then
    DURATION=2; WARMUP=1; SWEEP_DURATION=2; MANY_CONNECTIONS=50
else
    DURATION=30; WARMUP=5; SWEEP_DURATION=15; MANY_CONNECTIONS=1000
fi
CONNECTIONS=8

if [ "${BENCH_SKIP_BUILD:-0}" != 1 ]; then
    echo "== building ($CONFIG)"
    swift build -c "$CONFIG" --product eventflow
    swift build -c "$CONFIG" --product eventflow-loadgen
fi
BIN=.build/$CONFIG
EVENTFLOW="$BIN/eventflow"
LOADGEN="$BIN/eventflow-loadgen"
for binary in "$EVENTFLOW" "$LOADGEN"; do
    [ -x "$binary" ] || { echo "bench: $binary is missing (build it or unset BENCH_SKIP_BUILD)" >&2; exit 1; }
done

mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
rm -f "$OUT"/*.json "$OUT"/*.hgrm "$OUT"/*.svg "$OUT"/*.txt
WORK=$(mktemp -d /tmp/eventflow-bench.XXXXXX)
# The embedded cluster runs as the unprivileged `postgres` user when we are root.
chmod 755 "$WORK"
DATA="$WORK/data"
SERVE_PID=

cleanup() {
    if [ -n "$SERVE_PID" ] && kill -0 "$SERVE_PID" 2>/dev/null; then
        kill -TERM "$SERVE_PID"
        wait "$SERVE_PID" 2>/dev/null || true
    fi
    rm -rf "$WORK"
}
trap cleanup EXIT

PORT=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
TLS_FLAGS=()
LOADGEN_TLS=()
if [ "${BENCH_PLAINTEXT:-0}" = 1 ]; then
    TLS_FLAGS=(--plaintext)
    LOADGEN_TLS=(--plaintext)
else
    LOADGEN_TLS=(--ca "$DATA/tls/ca.pem")
fi

echo "== machine"
lscpu | grep -E '^(Model name|CPU\(s\)|Thread|Core)' || true
echo "== starting eventflow serve on 127.0.0.1:$PORT (data in $DATA)"
"$EVENTFLOW" serve --data-dir "$DATA" --host 127.0.0.1 --port "$PORT" --log-level warning ${TLS_FLAGS[@]+"${TLS_FLAGS[@]}"} \
    >"$WORK/serve.log" 2>&1 &
SERVE_PID=$!
python3 - "$PORT" "$SERVE_PID" <<'PY' || { echo "bench: the broker did not start:" >&2; cat "$WORK/serve.log" >&2; exit 1; }
import os, socket, sys, time
port, pid = int(sys.argv[1]), int(sys.argv[2])
deadline = time.time() + 120
while time.time() < deadline:
    try:
        os.kill(pid, 0)
    except OSError:
        sys.exit(1)
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        sys.exit(0)
    except OSError:
        time.sleep(0.2)
sys.exit(1)
PY

# The broker's resident memory once a second, to show it stays flat under load.
(while kill -0 "$SERVE_PID" 2>/dev/null; do
    awk -v t="$(date +%s)" '/^VmRSS/ {print t, $2}' "/proc/$SERVE_PID/status" 2>/dev/null || true
    sleep 1
done >"$OUT/broker-rss.txt") &

"$EVENTFLOW" org create bench --data-dir "$DATA" >/dev/null
"$EVENTFLOW" apikey create --org bench --label bench --data-dir "$DATA" --json >"$WORK/key.json"
"$EVENTFLOW" stream create --org bench ingest --partitions 8 --data-dir "$DATA" >/dev/null
export EVENTFLOW_BROKERS="127.0.0.1:$PORT"
EVENTFLOW_API_KEY=$(python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["id"])' "$WORK/key.json")
EVENTFLOW_API_SECRET=$(python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["secret"])' "$WORK/key.json")
export EVENTFLOW_API_KEY EVENTFLOW_API_SECRET

COMMON=(--message-size 100 --compression lz4 --warmup "$WARMUP")
FAILED=()
# Start and end (epoch seconds) of each run, to attribute the broker's RSS samples to runs.
mark() { echo "$(date +%s) $1 $2" >>"$OUT/run-times.txt"; }
# Each run starts with no dirty pages left by the one before: the kernel writes back pages ~30 s
# after they were dirtied, and gigabytes of a baseline's COPY written back during the next run
# stall that run's COMMITs (its WAL fsync waits behind them) — the earlier run's cost, not its own.
settle() { sync; sleep 2; }
# A run with errors still writes its JSON (errors are part of the result); the bench goes on
# and fails at the end, naming the runs.
produce() {  # name, then loadgen flags
    local name=$1; shift
    echo "== $name"
    settle
    mark "$name" start
    "$LOADGEN" --stream ingest ${LOADGEN_TLS[@]+"${LOADGEN_TLS[@]}"} --acks=-1 "${COMMON[@]}" \
        --json "$OUT/$name.json" --hgrm "$OUT/$name.hgrm" "$@" || FAILED+=("$name")
    mark "$name" end
}

produce eventflow-max --connections "$CONNECTIONS" --duration "$DURATION" --plot "$OUT/eventflow-max.svg"
[ -f "$OUT/eventflow-max.json" ] || { echo "bench: the max-rate run produced no result" >&2; exit 1; }
MAX_RATE=$(python3 -c 'import json, sys; print(int(json.load(open(sys.argv[1]))["events_per_second"]))' "$OUT/eventflow-max.json")

for mode in insert copy; do
    echo "== baseline-$mode"
    settle
    mark "baseline-$mode" start
    "$LOADGEN" baseline --mode "$mode" --data-dir "$DATA" --connections "$CONNECTIONS" --duration "$DURATION" "${COMMON[@]}" \
        --json "$OUT/baseline-$mode.json" --hgrm "$OUT/baseline-$mode.hgrm" || FAILED+=("baseline-$mode")
    mark "baseline-$mode" end
done

for percent in 10 25 50 75; do
    rate=$((MAX_RATE * percent / 100))
    [ "$rate" -ge 1 ] || rate=1
    produce "eventflow-rate-$percent" --connections "$CONNECTIONS" --duration "$SWEEP_DURATION" --rate "$rate"
done

produce "eventflow-connections-$MANY_CONNECTIONS" --connections "$MANY_CONNECTIONS" --duration "$SWEEP_DURATION"

# Overload: 64 connections x 16 pipelined 1 MiB produce requests (1 GiB offered at once, 16x the
# broker's 64 MiB batcher bound); the broker must hold its memory by pausing socket reads.
# Batches read while the batcher is full are held until memory frees; only beyond that second bound
# (or past the request timeout) are they answered REQUEST_TIMED_OUT. Those errors are this run's
# measurement, shown in the table; they do not fail the bench.
failed_before=${#FAILED[@]}
produce eventflow-overload-raw --raw-batches --no-idempotent --connections 64 --inflight 16 --duration "$SWEEP_DURATION"
FAILED=("${FAILED[@]:0:$failed_before}")

echo "== broker memory (VmHWM of eventflow serve)"
grep -E 'VmHWM|VmRSS' "/proc/$SERVE_PID/status" | tee "$WORK/memory.txt" || true

python3 scripts/bench_report.py "$OUT" "$WORK/memory.txt"
if [ ${#FAILED[@]} -gt 0 ]; then
    echo "bench: runs with errors: ${FAILED[*]} (see their JSON files)" >&2
    exit 1
fi
