# Sourced by the benchmark scripts that run their own `eventflow serve` (bench-analytics.sh,
# bench-schema.sh): a fresh embedded PostgreSQL in $WORK/data, the broker on free ports, an
# organization `bench` with an API key exported for eventflow-loadgen. Needs BIN and WORK set.
DATA="$WORK/data"
chmod 755 "$WORK"  # the embedded PostgreSQL runs as the postgres user
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
# At exit: the broker stopped and its database (gigabytes after a run) removed; the results stay in $WORK.
stop_broker_and_remove_data() { stop_broker; rm -rf "$DATA"; }
cli() { "$BIN/eventflow" "$@" --data-dir "$DATA"; }
# The organization and key the runs produce with (call once the broker runs).
create_bench_credentials() {
    cli org create bench >/dev/null
    cli apikey create --org bench --json >"$WORK/key.json"
    EVENTFLOW_API_KEY=$(python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["id"])' "$WORK/key.json")
    EVENTFLOW_API_SECRET=$(python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["secret"])' "$WORK/key.json")
    export EVENTFLOW_API_KEY EVENTFLOW_API_SECRET
    export EVENTFLOW_BROKERS="127.0.0.1:$PORT" EVENTFLOW_CA="$DATA/tls/ca.pem"
}
# The usual start: the broker (stopped when the script exits) and the credentials.
start_bench_broker() {
    trap stop_broker_and_remove_data EXIT
    start_broker "$@"
    create_bench_credentials
}
