#!/usr/bin/env bash
# Seconds-long smoke test of eventflow-loadgen (called by `make test`; never asserts on speed):
# both baselines on a fresh embedded PostgreSQL, the producer and consume modes against
# `eventflow serve` (TLS, development CA), and bad input: one clear line, non-zero exit, no JSON written.
#
# LOADGEN_SMOKE_CONFIG=release to use release binaries (default: debug, as `make test` builds).
set -euo pipefail
cd "$(dirname "$0")/.."

BIN=.build/${LOADGEN_SMOKE_CONFIG:-debug}
LOADGEN="$BIN/eventflow-loadgen"
EVENTFLOW="$BIN/eventflow"
[ -x "$LOADGEN" ] || { echo "loadgen-smoke: $LOADGEN missing; run swift build first" >&2; exit 1; }

WORK=$(mktemp -d /tmp/eventflow-loadgen-smoke.XXXXXX)
chmod 755 "$WORK"
DATA="$WORK/data"
SERVE_PID=
cleanup() {
    if [ -n "$SERVE_PID" ] && kill -0 "$SERVE_PID" 2>/dev/null; then
        kill -TERM "$SERVE_PID"
        wait "$SERVE_PID" 2>/dev/null || true
    fi
    # Stops the embedded cluster the baselines left running (serve stops its own).
    if [ -f "$DATA/pgdata/postmaster.pid" ]; then
        PGCTL=$(ls /usr/lib/postgresql/*/bin/pg_ctl 2>/dev/null | tail -1)
        if [ -n "$PGCTL" ]; then
            if [ "$(id -u)" = 0 ]; then su postgres -s /bin/sh -c "$PGCTL -D '$DATA/pgdata' -m fast stop" >/dev/null 2>&1 || true
            else "$PGCTL" -D "$DATA/pgdata" -m fast stop >/dev/null 2>&1 || true; fi
        fi
    fi
    rm -rf "$WORK"
}
trap cleanup EXIT

passed=0
failed=0
pass() { echo "ok   $1"; passed=$((passed + 1)); }
fail() { echo "FAIL $1" >&2; failed=$((failed + 1)); }

# check_result NAME FILE MODE: the JSON has the documented keys, events > 0 and no errors.
check_result() {
    if python3 - "$2" "$3" <<'PY'; then pass "$1"; else fail "$1"; fi
import json, sys
result = json.load(open(sys.argv[1]))
for key in ("events_per_second", "mb_per_second", "events", "errors", "latency_ms", "config", "mode"):
    assert key in result, f"missing {key}"
for key in ("p50", "p90", "p99", "p999", "max"):
    assert key in result["latency_ms"], f"missing latency_ms.{key}"
assert result["mode"] == sys.argv[2], result["mode"]
assert result["events"] > 0, "no events measured"
assert result["events_per_second"] > 0 and result["mb_per_second"] > 0
assert result["errors"] == 0, f"{result['errors']} errors"
assert result["latency_ms"]["p50"] <= result["latency_ms"]["p99"] <= result["latency_ms"]["max"]
assert result["config"]["message_size"] == 100
PY
}

# rejects NAME EXPECTED-TEXT ARGS...: exit status non-zero, one line on stderr naming the problem, no JSON.
rejects() {
    local name=$1 expected=$2; shift 2
    local json="$WORK/rejected.json"
    rm -f "$json"
    local status=0
    "$LOADGEN" "$@" --json "$json" >"$WORK/stdout" 2>"$WORK/stderr" || status=$?
    local lines
    lines=$(wc -l <"$WORK/stderr")
    if [ "$status" -ne 0 ] && [ ! -e "$json" ] && [ "$lines" -eq 1 ] && grep -q -- "$expected" "$WORK/stderr"; then
        pass "$name"
    else
        fail "$name (status $status, $lines stderr lines: $(cat "$WORK/stderr"))"
    fi
}

SHORT=(--duration 1 --warmup 0.5 --connections 2 --quiet)

# The generated events: valid JSON objects of exactly the requested size, all different.
for size in 97 100 1000; do
    if "$LOADGEN" sample --count 50 --message-size "$size" 2>/dev/null | python3 -c '
import json, sys
size = int(sys.argv[1])
lines = sys.stdin.read().splitlines()
assert len(lines) == 50 and len(set(lines)) == 50
for line in lines:
    assert len(line.encode()) == size, (len(line), line)
    event = json.loads(line)
    assert set(event) == {"id", "type", "ts", "user", "text"}, event
' "$size"; then pass "events of $size bytes are distinct JSON"; else fail "events of $size bytes are distinct JSON"; fi
done

rejects "unknown flag" "Unknown option" baseline --mode insert --bogus
rejects "negative rate" "--rate" baseline --mode insert --rate=-5
rejects "message below the JSON minimum" "smallest JSON event" baseline --mode copy --message-size 96
rejects "unknown baseline mode" "mode" baseline --mode upsert
rejects "unknown compression" "--compression" --compression zstd
rejects "idempotent without acks -1" "--idempotent" --idempotent --acks 1
rejects "unreachable broker" "cannot use broker" --brokers 127.0.0.1:1 --plaintext "${SHORT[@]}"

"$LOADGEN" baseline --mode insert --data-dir "$DATA" "${SHORT[@]}" --json "$WORK/insert.json" --hgrm "$WORK/insert.hgrm" \
    && check_result "baseline insert" "$WORK/insert.json" baseline-insert || fail "baseline insert (exit status)"
# A debug COPY of a whole flush can outlast a one-second window on a loaded machine: 3 s measured.
"$LOADGEN" baseline --mode copy --data-dir "$DATA" "${SHORT[@]}" --duration 3 --json "$WORK/copy.json" --plot "$WORK/copy.svg" \
    && check_result "baseline copy" "$WORK/copy.json" baseline-copy || fail "baseline copy (exit status)"
if grep -q "<polyline" "$WORK/copy.svg" 2>/dev/null; then pass "plot written"; else fail "plot written"; fi
if grep -q "Percentile" "$WORK/insert.hgrm" 2>/dev/null; then pass "hgrm written"; else fail "hgrm written"; fi

if [ -x "$EVENTFLOW" ]; then
    PORT=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    HTTP_PORT=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    "$EVENTFLOW" serve --data-dir "$DATA" --host 127.0.0.1 --port "$PORT" --http-port "$HTTP_PORT" --log-level debug >"$WORK/serve.log" 2>&1 &
    SERVE_PID=$!
    for _ in $(seq 1 300); do
        python3 -c 'import socket, sys; socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=1).close()' "$PORT" \
            2>/dev/null && break
        kill -0 "$SERVE_PID" 2>/dev/null || break
        sleep 0.2
    done
    "$EVENTFLOW" org create smoke --data-dir "$DATA" >/dev/null
    "$EVENTFLOW" apikey create --org smoke --data-dir "$DATA" --json >"$WORK/key.json"
    KEY=$(python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["id"])' "$WORK/key.json")
    SECRET=$(python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["secret"])' "$WORK/key.json")
    export EVENTFLOW_BROKERS="127.0.0.1:$PORT" EVENTFLOW_CA="$DATA/tls/ca.pem"
    EVENTFLOW_API_KEY=$KEY EVENTFLOW_API_SECRET=$SECRET "$LOADGEN" --stream smoke --partitions 2 "${SHORT[@]}" \
        --rate 2000 --json "$WORK/producer.json" \
        && check_result "producer (TLS, acks -1, rate 2000)" "$WORK/producer.json" producer || fail "producer (exit status)"
    EVENTFLOW_API_KEY=$KEY EVENTFLOW_API_SECRET=$SECRET "$LOADGEN" --stream smoke --raw-batches --no-idempotent \
        --batch-bytes 65536 "${SHORT[@]}" --json "$WORK/raw.json" \
        && check_result "raw batches" "$WORK/raw.json" raw-batches || fail "raw batches (exit status)"
    # The consumer: everything produced above from the beginning (messages, then the skip hook),
    # then produce -> consume latency from stamped send times, a consumer attached to a producer.
    EVENTFLOW_API_KEY=$KEY EVENTFLOW_API_SECRET=$SECRET "$LOADGEN" consume --stream smoke --from beginning --until-end \
        --quiet --json "$WORK/consume.json" \
        && check_result "consume from the beginning (messages)" "$WORK/consume.json" consume || fail "consume (exit status)"
    EVENTFLOW_API_KEY=$KEY EVENTFLOW_API_SECRET=$SECRET "$LOADGEN" consume --stream smoke --from=-100 --until-end \
        --read skip --connections 2 --quiet --json "$WORK/consume-skip.json" \
        && check_result "consume the last 100 per partition (skip, 2 connections)" "$WORK/consume-skip.json" consume \
        || fail "consume --read skip (exit status)"
    EVENTFLOW_API_KEY=$KEY EVENTFLOW_API_SECRET=$SECRET "$LOADGEN" consume --stream smoke --from end --latency \
        --warmup 0.5 --duration 1.5 --quiet --json "$WORK/e2e.json" &
    CONSUMER_PID=$!
    EVENTFLOW_API_KEY=$KEY EVENTFLOW_API_SECRET=$SECRET "$LOADGEN" --stream smoke --partitions 2 "${SHORT[@]}" \
        --rate 2000 --stamp-send-time --json "$WORK/stamped.json" \
        && check_result "producer with stamped send times" "$WORK/stamped.json" producer || fail "stamped producer (exit status)"
    if wait "$CONSUMER_PID"; then
        check_result "consume --latency beside the producer" "$WORK/e2e.json" consume
    else
        fail "consume --latency (exit status)"
    fi
    # One group member (the broker's 3 s initial rebalance delay, then everything from the
    # beginning): the JSON's group object has its assignment of every partition, each of which delivered.
    EVENTFLOW_API_KEY=$KEY EVENTFLOW_API_SECRET=$SECRET "$LOADGEN" consume --stream smoke --group smoke-group \
        --from beginning --duration 5 --quiet --json "$WORK/group.json" \
        && check_result "consume --group (one member)" "$WORK/group.json" consume \
        && if python3 - "$WORK/group.json" <<'PY'; then pass "consume --group: assignment and first records in the JSON"; else fail "consume --group JSON"; fi
import json, sys
result = json.load(open(sys.argv[1]))
group = result["group"]
assigned = [event for event in group["events"] if event["kind"] == "assigned"]
assert assigned, "no assignment"
partitions = list(range(result["config"]["partitions"]))
assert assigned[0]["partitions"] == partitions, assigned[0]
assert sorted(map(int, assigned[0]["first_record_ms"])) == partitions, assigned[0]
assert group["records_read"] and group["records_read"][-1][1] > 0
PY
    [ -f "$WORK/group.json" ] || fail "consume --group (exit status)"
    # The broker's /metrics after all of the above, read by Prometheus' text parser: every event the
    # producers had acknowledged was flushed, and produce and fetch requests were counted.
    if python3 "$(dirname "$0")/http-probe.py" "http://127.0.0.1:$HTTP_PORT/metrics" --prometheus >"$WORK/metrics.json" \
        && python3 - "$WORK" <<'PY'; then pass "/metrics: produce and fetch requests counted, every acknowledged event flushed"; else fail "/metrics"; fi
import json, sys
work = sys.argv[1]
samples = json.load(open(f"{work}/metrics.json"))["samples"]
def value(name, **labels):
    return sum(s["value"] for s in samples if s["name"] == name and all(s["labels"].get(k) == v for k, v in labels.items()))
acknowledged = sum(json.load(open(f"{work}/{name}.json"))["events_acknowledged_total"] for name in ("producer", "raw", "stamped"))
assert value("eventflow_requests_total", api="produce") > 0, "no produce requests counted"
assert value("eventflow_requests_total", api="fetch") > 0, "no fetch requests counted"
assert value("eventflow_flushed_records_total") >= acknowledged, (value("eventflow_flushed_records_total"), acknowledged)
assert value("eventflow_request_duration_seconds_count", api="produce") > 0
print(f"  /metrics: {len(samples)} samples; {value('eventflow_flushed_records_total'):.0f} records flushed, "
      f"{acknowledged} acknowledged to the load generator; lag series: {sum(1 for s in samples if s['name'] == 'eventflow_consumer_group_lag')}")
PY
    rejects "latency needs messages" "--latency" consume --stream smoke --latency --read skip
    rejects "group needs messages" "--group reads" consume --stream smoke --group g --read skip
    EVENTFLOW_API_KEY=$KEY EVENTFLOW_API_SECRET=$SECRET rejects "unknown stream to consume" "unknown stream" consume --stream nosuch --duration 1
    EVENTFLOW_API_KEY=$KEY EVENTFLOW_API_SECRET=wrong rejects "wrong secret" "authentication failed" --stream smoke "${SHORT[@]}"
    # Neither the broker's log nor the load generator's output ever shows a secret.
    # (serve logs at debug level here, its most verbose; the wrong-secret attempt above is in it.)
    LOG_LINES=$(cat "$WORK"/*.log | wc -l)
    if grep -rqF -e "$SECRET" "$WORK"/*.log "$WORK"/*.json --exclude=key.json 2>/dev/null; then
        fail "the API secret appears in a log or report"
    elif [ "$LOG_LINES" -eq 0 ]; then
        fail "no secret in the logs: serve logged nothing to check"
    else
        pass "no secret in $LOG_LINES log lines"
    fi
else
    echo "skip producer mode: $EVENTFLOW not built"
fi

echo "loadgen-smoke: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
