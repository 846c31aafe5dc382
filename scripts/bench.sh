#!/usr/bin/env bash
# make bench: EventFlow's end-to-end ingest benchmark, with its baselines in the same run.
#
# Starts `eventflow serve` (TLS, development CA) on a fresh embedded PostgreSQL in a temporary
# folder, creates an organization, an API key and a stream with the CLI, then runs:
#   1. max-rate durable ingest (100-byte JSON events, LZ4, acks=-1, 8 connections) after a warm-up
#   2. the baselines: multi-row INSERT into `events`, binary COPY of the same batches into `event_batches`
#   3. a latency sweep at 10, 20, ... 90% of the measured max rate (the curve: p50/p99/p99.9 against
#      throughput, latency-curve.svg), every second of it sampled by scripts/stall-monitor.py: the
#      broker's ingest stages, PostgreSQL's WAL/checkpoint/autovacuum counters, the kernel's dirty pages
#   4. 1,000 connections at max rate (against 8 in run 1)
#   5. an overload of the broker alone (pre-built batches, 1 GiB of requests in flight) while its RSS is sampled
# and the consume runs (Swift consumer, `eventflow-loadgen consume`, TLS):
#   a. tail read: the last events of run 1, just committed, read from the tail cache, no producers running
#   b. catch-up: the first 10 M stored events read from offset 0 by a broker restarted with no tail cache
#   c. end to end: produce -> consume latency at 50% of run 1's rate (send time stamped into each event)
#   d. max-rate ingest with a tail consumer attached, against run 1
#   e. consumer group: 4 `consume --group` members over the 8 partitions at the tail beside a producer
#      at 50% of run 1's rate; a 5th member joins later. The report derives the group's events/s
#      (before the join) and the rebalance time (the 5th's start until every member has its new
#      assignment and every partition delivered a record again) from the members' JSON files.
# and writes every result into one JSON file ($BENCH_OUT/bench.json) and prints a table with the ratios.
#
# Environment:
#   BENCH_TINY=1        seconds-long runs (CI smoke; the numbers mean nothing)
#   BENCH_CONFIG=debug  use debug binaries (default: release)
#   BENCH_SKIP_BUILD=1  use the binaries already built
#   BENCH_OUT=DIR       where results go (default: bench-results)
#   BENCH_PLAINTEXT=1   broker without TLS
#   BENCH_ONLY=group    only run 1, the tail read (a), end to end at 50% (c) and the group run (e):
#                       the group run's numbers and the single-consumer runs they are compared with
#   BENCH_ONLY=sweep    only run 1 and the latency sweep (3)
#   BENCH_SWEEP="..."   the sweep's load levels in % of max (default: 10 20 30 40 50 60 70 75 80 90)
#   BENCH_BUILD_DIR=DIR build folder (default: .build; e.g. .build-rel, passed as --scratch-path)
#   BENCH_SERVE_FLAGS="..."    extra `eventflow serve` flags (e.g. --flush-bytes-target 262144)
#   BENCH_PRODUCER_FLAGS="..." extra loadgen flags for the producer runs (e.g. --linger-ms 1)
#   BENCH_MAX_RATE=N    skip run 1's measurement and sweep against N events/s (comparisons between builds)
#   BENCH_POSTGRES_SETTINGS="name=value ..."  reloadable PostgreSQL settings for this run (ALTER SYSTEM)
set -euo pipefail
cd "$(dirname "$0")/.."

CONFIG=${BENCH_CONFIG:-release}
OUT=${BENCH_OUT:-bench-results}
if [ "${BENCH_TINY:-0}" = 1 ]; then
    DURATION=2; WARMUP=1; SWEEP_DURATION=2; MANY_CONNECTIONS=50
    TAIL_PER_PARTITION=20000; CATCH_UP_EVENTS=200000
    # The group's first join waits out the broker's 3 s initial rebalance delay.
    GROUP_JOIN_AT=7; GROUP_AFTER=8
else
    DURATION=30; WARMUP=5; SWEEP_DURATION=15; MANY_CONNECTIONS=1000
    # 8 x 400k events at ~59 LZ4 bytes each (`eventflow-loadgen sample`): ~190 MB, inside the
    # default 256 MiB tail cache.
    TAIL_PER_PARTITION=400000; CATCH_UP_EVENTS=10000000
    # The 5th member joins GROUP_JOIN_AT s after the 4 (initial join + ~15 s of steady reading);
    # GROUP_AFTER s leave room for a rebalance several times the 6 s target.
    GROUP_JOIN_AT=20; GROUP_AFTER=15
fi
CONNECTIONS=8
ONLY=${BENCH_ONLY:-}
case "$ONLY" in ""|group|sweep) ;; *) echo "bench: BENCH_ONLY must be empty, 'group' or 'sweep', got '$ONLY'" >&2; exit 1 ;; esac
# everything: true when every run is selected (BENCH_ONLY unset).
everything() { [ -z "$ONLY" ]; }
SWEEP=${BENCH_SWEEP:-10 20 30 40 50 60 70 75 80 90}
read -r -a SERVE_EXTRA <<<"${BENCH_SERVE_FLAGS:-}"
read -r -a PRODUCER_EXTRA <<<"${BENCH_PRODUCER_FLAGS:-}"
BUILD_DIR=${BENCH_BUILD_DIR:-.build}

if [ "${BENCH_SKIP_BUILD:-0}" != 1 ]; then
    echo "== building ($CONFIG)"
    swift build -c "$CONFIG" --scratch-path "$BUILD_DIR" --product eventflow
    swift build -c "$CONFIG" --scratch-path "$BUILD_DIR" --product eventflow-loadgen
fi
BIN=$BUILD_DIR/$CONFIG
EVENTFLOW="$BIN/eventflow"
LOADGEN="$BIN/eventflow-loadgen"
for binary in "$EVENTFLOW" "$LOADGEN"; do
    [ -x "$binary" ] || { echo "bench: $binary is missing (build it or unset BENCH_SKIP_BUILD)" >&2; exit 1; }
done

mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
rm -f "$OUT"/*.json "$OUT"/*.hgrm "$OUT"/*.svg "$OUT"/*.txt
rm -rf "$OUT/threads"
mkdir -p "$OUT/threads"
WORK=$(mktemp -d /tmp/eventflow-bench.XXXXXX)
# The embedded cluster runs as the unprivileged `postgres` user when we are root.
chmod 755 "$WORK"
DATA="$WORK/data"
SERVE_PID=
MONITOR_PID=

cleanup() {
    if [ -n "$MONITOR_PID" ]; then kill "$MONITOR_PID" 2>/dev/null || true; fi
    if [ -n "$SERVE_PID" ] && kill -0 "$SERVE_PID" 2>/dev/null; then
        kill -TERM "$SERVE_PID"
        wait "$SERVE_PID" 2>/dev/null || true
    fi
    # PostgreSQL's log (checkpoints, slow statements, autovacuum) and the tuning the run used.
    cp "$DATA/postgres.log" "$OUT/postgres.log" 2>/dev/null || true
    cp "$DATA/pgdata/eventflow-tuning.conf" "$OUT/eventflow-tuning.conf" 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT

PORT=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
HTTP_PORT=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
TLS_FLAGS=()
LOADGEN_TLS=()
if [ "${BENCH_PLAINTEXT:-0}" = 1 ]; then
    TLS_FLAGS=(--plaintext)
    LOADGEN_TLS=(--plaintext)
else
    LOADGEN_TLS=(--ca "$DATA/tls/ca.pem")
fi

# start_broker [serve flags...]: starts `eventflow serve` on the data folder, waits for its port,
# and samples its resident memory once a second (to show it stays flat under load).
start_broker() {
    echo "== starting eventflow serve on 127.0.0.1:$PORT (data in $DATA) $*"
    "$EVENTFLOW" serve --data-dir "$DATA" --host 127.0.0.1 --port "$PORT" --http-port "$HTTP_PORT" --log-level warning \
        ${TLS_FLAGS[@]+"${TLS_FLAGS[@]}"} ${SERVE_EXTRA[@]+"${SERVE_EXTRA[@]}"} "$@" >>"$WORK/serve.log" 2>&1 &
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
    local pid=$SERVE_PID
    (while kill -0 "$pid" 2>/dev/null; do
        awk -v t="$(date +%s)" '/^VmRSS/ {print t, $2}' "/proc/$pid/status" 2>/dev/null || true
        sleep 1
    done >>"$OUT/broker-rss.txt") &
}

stop_broker() {
    kill -TERM "$SERVE_PID"
    wait "$SERVE_PID" 2>/dev/null || true
    SERVE_PID=
}

echo "== machine"
lscpu | grep -E '^(Model name|CPU\(s\)|Thread|Core)' || true
echo "== load before: $(uptime)" | tee "$OUT/load.txt"
start_broker
# For the stall correlation: every statement over 10 ms in postgres.log, and the WAL's write and
# fsync times in pg_stat_wal (ALTER SYSTEM: this bench's cluster only).
python3 - "$DATA" "${BENCH_POSTGRES_SETTINGS:-}" <<'PY'
import os, subprocess, sys
data, extra = sys.argv[1], sys.argv[2].split()
port = open(os.path.join(data, "pgdata", "postmaster.pid")).read().split("\n")[3].strip()
password = open(os.path.join(data, "db-password")).read().strip()
url = f"postgresql://eventflow:{password}@127.0.0.1:{port}/eventflow"
settings = ["log_min_duration_statement=10ms", "track_wal_io_timing=on"] + extra
for statement in [f"ALTER SYSTEM SET {name} = '{value}'" for name, value in (s.split("=", 1) for s in settings)] + [
        "SELECT pg_reload_conf()"]:
    subprocess.run(["psql", url, "-Atqc", statement], check=True, stdout=subprocess.DEVNULL)
PY
python3 scripts/stall-monitor.py --data-dir "$DATA" --metrics-url "http://127.0.0.1:$HTTP_PORT/metrics" \
    --out "$OUT/monitor.jsonl" &
MONITOR_PID=$!

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
    [ "${ATTACHED:-0}" = 1 ] || settle
    mark "$name" start
    "$LOADGEN" --stream ingest ${LOADGEN_TLS[@]+"${LOADGEN_TLS[@]}"} --acks=-1 "${COMMON[@]}" \
        ${PRODUCER_EXTRA[@]+"${PRODUCER_EXTRA[@]}"} --json "$OUT/$name.json" --hgrm "$OUT/$name.hgrm" "$@" || FAILED+=("$name")
    mark "$name" end
}

# threads NAME SECONDS [DELAY]: every thread's CPU share on the machine over SECONDS, starting after
# DELAY, into threads/NAME.json (which thread bounds a consume run: perf has no counters on this VM).
threads() {
    (sleep "${3:-0}"; python3 scripts/thread-cpu.py "$2" "$OUT/threads/$1.json" >"$OUT/threads/$1.txt") &
    THREADS_PID=$!
}
# consume NAME, then consume flags: the Swift consumer (`eventflow-loadgen consume`) on the stream.
consume() {
    local name=$1; shift
    "$LOADGEN" consume --stream ingest ${LOADGEN_TLS[@]+"${LOADGEN_TLS[@]}"} --message-size 100 \
        --json "$OUT/$name.json" "$@" || { FAILED+=("$name"); return 1; }
}
# consume_alone NAME, then consume flags: a read with nothing else running; its threads sampled for
# the first seconds (finite reads end on their own).
consume_alone() {
    local name=$1; shift
    echo "== $name"
    settle
    mark "$name" start
    threads "$name" "$THREAD_SAMPLE_SECONDS" 0.5
    # Finite reads: --duration only bounds a read that is far slower than expected.
    consume "$name" --duration 300 "$@" || true
    wait "$THREADS_PID" 2>/dev/null || true
    mark "$name" end
}
# attached PRODUCER-NAME CONSUMER-NAME SECONDS: a producer run (PRODUCER_FLAGS) with a tail consumer
# (CONSUMER_FLAGS) attached from the end, both measuring the same window after the same warm-up.
attached() {
    local producer=$1 consumer=$2 seconds=$3
    echo "== $producer + $consumer"
    settle
    threads "$producer" "$(( seconds > 3 ? seconds - 2 : 1 ))" "$((WARMUP + 1))"
    consume "$consumer" --from end --warmup "$WARMUP" --duration "$seconds" --quiet "${CONSUMER_FLAGS[@]}" &
    local consumer_pid=$!
    ATTACHED=1 produce "$producer" "${PRODUCER_FLAGS[@]}" --duration "$seconds"
    wait "$consumer_pid" || FAILED+=("$consumer")
    wait "$THREADS_PID" 2>/dev/null || true
}
# group_run RATE: (e), the consumer group beside a producer at RATE events/s. The members run
# with no warm-up and the producer for as long as they do: the report picks the windows from the
# members' own timestamps (the steady window starts once every partition delivered).
group_run() {
    local rate=$1 total=$((GROUP_JOIN_AT + GROUP_AFTER)) pids=() i
    echo "== eventflow-group-producer + consume-group-1..5"
    settle
    mark consume-group start
    # The producer's own numbers are secondary here: its warm-up is the group's first join.
    "$LOADGEN" --stream ingest ${LOADGEN_TLS[@]+"${LOADGEN_TLS[@]}"} --acks=-1 "${COMMON[@]}" --connections "$CONNECTIONS" \
        --rate "$rate" --duration "$((total + 1 - WARMUP))" --quiet --json "$OUT/eventflow-group-producer.json" &
    local producer_pid=$!
    for i in 1 2 3 4; do
        consume "consume-group-$i" --group bench-group --from end --duration "$total" --read messages --quiet &
        pids+=($!)
    done
    sleep "$GROUP_JOIN_AT"
    consume consume-group-5 --group bench-group --from end --duration "$GROUP_AFTER" --read messages --quiet &
    pids+=($!)
    for i in 1 2 3 4 5; do wait "${pids[$((i - 1))]}" || FAILED+=("consume-group-$i"); done
    wait "$producer_pid" || FAILED+=(eventflow-group-producer)
    mark consume-group end
}

if [ "${BENCH_TINY:-0}" = 1 ]; then THREAD_SAMPLE_SECONDS=1; else THREAD_SAMPLE_SECONDS=3; fi

if [ -n "${BENCH_MAX_RATE:-}" ]; then
    MAX_RATE=$BENCH_MAX_RATE
else
    produce eventflow-max --connections "$CONNECTIONS" --duration "$DURATION" --plot "$OUT/eventflow-max.svg"
    [ -f "$OUT/eventflow-max.json" ] || { echo "bench: the max-rate run produced no result" >&2; exit 1; }
    MAX_RATE=$(python3 -c 'import json, sys; print(int(json.load(open(sys.argv[1]))["events_per_second"]))' "$OUT/eventflow-max.json")
fi
echo "$MAX_RATE" >"$OUT/max-rate.txt"

if [ "$ONLY" = sweep ]; then
for percent in $SWEEP; do
    rate=$((MAX_RATE * percent / 100))
    [ "$rate" -ge 1 ] || rate=1
    produce "eventflow-rate-$percent" --connections "$CONNECTIONS" --duration "$SWEEP_DURATION" --rate "$rate"
done
fi
if [ "$ONLY" != sweep ]; then

# (a) Tail read: the last events of the run above, committed seconds ago, from the tail cache.
# `messages` is what an application iterates; `skip` reads and checks every record without building
# messages, which separates the consumer's message cost from the fetch path.
consume_alone consume-tail --from="-$TAIL_PER_PARTITION" --until-end --read messages
if everything; then
consume_alone consume-tail-skip --from="-$TAIL_PER_PARTITION" --until-end --read skip
# Two consumers (one per core of this machine), the partitions dealt out between them.
consume_alone consume-tail-2 --from="-$TAIL_PER_PARTITION" --until-end --read messages --connections 2

# (d) Max-rate ingest with a tail consumer attached: its ratio to eventflow-max is in the report.
PRODUCER_FLAGS=(--connections "$CONNECTIONS")
CONSUMER_FLAGS=(--read messages)
attached eventflow-max-tail-consumer consume-max-tail "$DURATION"

for mode in insert copy; do
    echo "== baseline-$mode"
    settle
    mark "baseline-$mode" start
    "$LOADGEN" baseline --mode "$mode" --data-dir "$DATA" --connections "$CONNECTIONS" --duration "$DURATION" "${COMMON[@]}" \
        --json "$OUT/baseline-$mode.json" --hgrm "$OUT/baseline-$mode.hgrm" || FAILED+=("baseline-$mode")
    mark "baseline-$mode" end
done

for percent in $SWEEP; do
    rate=$((MAX_RATE * percent / 100))
    [ "$rate" -ge 1 ] || rate=1
    produce "eventflow-rate-$percent" --connections "$CONNECTIONS" --duration "$SWEEP_DURATION" --rate "$rate"
done
fi

# (c) End to end at 50% of the max rate: each event's id carries its send time (the intended one,
# as the durable-ack latency uses), the consumer measures now - that time on the same clock.
PRODUCER_FLAGS=(--connections "$CONNECTIONS" --rate "$((MAX_RATE / 2 > 0 ? MAX_RATE / 2 : 1))" --stamp-send-time)
CONSUMER_FLAGS=(--read messages --latency --hgrm "$OUT/consume-e2e-50.hgrm")
attached eventflow-e2e-50 consume-e2e-50 "$SWEEP_DURATION"

# (e) The consumer group at the same 50% rate as (c), whose single tail consumer it is compared with.
group_run "$((MAX_RATE / 2 > 0 ? MAX_RATE / 2 : 1))"

if everything; then
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

# (b) Catch-up: the broker restarted without a tail cache, so every fetch reads PostgreSQL
# (the catch-up threads); the first CATCH_UP_EVENTS stored events from offset 0.
echo "== restarting the broker with --tail-cache-bytes-max 0"
stop_broker
start_broker --tail-cache-bytes-max 0
consume_alone consume-catch-up --from beginning --count "$CATCH_UP_EVENTS" --until-end --read messages
fi
fi  # BENCH_ONLY=sweep
echo "== load after: $(uptime)" | tee -a "$OUT/load.txt"
kill "$MONITOR_PID" 2>/dev/null || true
MONITOR_PID=
cp "$DATA/postgres.log" "$OUT/postgres.log" 2>/dev/null || true

python3 scripts/bench_report.py "$OUT" "$WORK/memory.txt"
if [ ${#FAILED[@]} -gt 0 ]; then
    echo "bench: runs with errors: ${FAILED[*]} (see their JSON files)" >&2
    exit 1
fi
