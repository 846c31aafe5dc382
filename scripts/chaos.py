#!/usr/bin/env python3
"""Crash and restart under load (issue 13, item 3): a real `eventflow serve` (embedded PostgreSQL,
TLS with its development CA, SASL PLAIN with an API key made by the CLI) and real librdkafka clients
(confluent-kafka), while the broker is killed with SIGKILL and PostgreSQL is stopped with
`pg_ctl stop -m immediate`. Nothing is mocked. Called by `make chaos` (20 rounds) and, with
`--rounds 2`, by `make test`.

Scenarios, each on a stream of its own in the same data folder:

  kill   idempotent producers (acks=all) record every acknowledged (partition, offset, payload id);
         the broker is killed with SIGKILL at a random moment and restarted on the same data folder
         and port, ROUNDS times. Produce is then read back from offset 0 to the high watermark of
         every partition: every acknowledged event exactly once at its acknowledged offset, no payload
         id stored twice, offsets dense.
  pg     the same producers while the broker keeps running and its PostgreSQL is stopped with
         `pg_ctl stop -m immediate` and started again, PG_ROUNDS times; then the same read-back check.
  group  consumers in one group (enable.auto.commit=false, a synchronous commit after each record is
         processed) beside the producers, across GROUP_ROUNDS broker kills: no record below a
         position that was committed is processed after that commit, and the processed ids cover
         every acknowledged one; then the same read-back check.

A message whose delivery report is an error was not acknowledged and is not counted as lost (it is
reported as a figure). Timings are printed as figures, never asserted. Exit status 1 with one line
per broken promise when a check fails; the work folder (broker and PostgreSQL logs) is kept then.

usage: chaos.py [--rounds N] [--pg-rounds N] [--group-rounds N] [--scenarios kill,pg,group]
                [--eventflow PATH] [--seed N] [--producers N] [--partitions N] [--rate N] [--group-rate N] [--json FILE]
"""
import argparse
import collections
import json
import logging
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request

try:
    from confluent_kafka import Consumer, KafkaError, KafkaException, OFFSET_BEGINNING, Producer, TopicPartition
except ImportError:
    raise SystemExit("chaos: confluent-kafka is missing; install it with scripts/install-deps.sh --python")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Generous: librdkafka retries an idempotent produce until this expires, and the outages here last seconds.
MESSAGE_TIMEOUT_MS = 300_000
# Longest a single wait may take before the run gives up with a clear message (a broker that does not
# come back, produce that does not resume, a consumer group that never catches up). Not an assertion
# on speed: these are hangs, a hundred times the times measured.
STALL_SECONDS = 120
# --no-idempotence (to see the checks fail end to end: librdkafka then resends what the kill left
# unanswered and the broker stores it again).
IDEMPOTENCE = True


def log(message):
    print(f"chaos: {message}", flush=True)


class ChaosFailure(Exception):
    pass


# -- processes -----------------------------------------------------------------------------------

def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_open(port):
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
        return True
    except OSError:
        return False


def pg_bin(tool):
    for version in sorted(os.listdir("/usr/lib/postgresql"), key=lambda v: int(v) if v.isdigit() else 0, reverse=True):
        path = f"/usr/lib/postgresql/{version}/bin/{tool}"
        if os.access(path, os.X_OK):
            return path
    raise ChaosFailure(f"{tool} not found in /usr/lib/postgresql/*/bin (apt-get install postgresql)")


def as_cluster_owner(arguments):
    """A command as the embedded cluster's owner: `postgres` when run as root, as EmbeddedPostgres does;
    setsid so the postmaster is in a session of its own, as the broker starts it."""
    if os.geteuid() == 0:
        return ["/usr/sbin/runuser", "-u", "postgres", "--", "/usr/bin/setsid", "-w"] + arguments
    return ["/usr/bin/setsid", "-w"] + arguments


class Broker:
    """`eventflow serve` on a fixed data folder and port, killed and restarted at will."""

    def __init__(self, eventflow, work):
        self.eventflow = eventflow
        self.data = os.path.join(work, "data")
        self.port = free_port()
        self.http_port = free_port()
        self.log_path = os.path.join(work, "serve.log")
        self.process = None
        self.starts = 0
        self.unexpected_exits = []

    def log_count(self, text):
        """Lines of the broker's log containing `text` so far (observations, not checks)."""
        try:
            with open(self.log_path, errors="replace") as f:
                return sum(1 for line in f if text in line)
        except OSError:
            return 0

    def http_get(self, path):
        """(status, body) of a GET on the broker's HTTP listener (/ready, /health, /metrics)."""
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.http_port}{path}", timeout=10) as response:
                return response.status, response.read().decode()
        except urllib.error.HTTPError as error:
            return error.code, error.read().decode()
        except OSError as error:
            return None, str(error)

    def cli(self, *arguments):
        result = subprocess.run([self.eventflow, *arguments, "--data-dir", self.data],
                                capture_output=True, text=True, timeout=STALL_SECONDS)
        if result.returncode != 0:
            raise ChaosFailure(f"eventflow {' '.join(arguments)}: {result.stderr.strip() or result.stdout.strip()}")
        return result.stdout

    def start(self):
        self.starts += 1
        with open(self.log_path, "a") as out:
            out.write(f"\n=== chaos: start {self.starts} at {time.strftime('%H:%M:%S')} ===\n")
            out.flush()
            self.process = subprocess.Popen(
                [self.eventflow, "serve", "--data-dir", self.data, "--host", "127.0.0.1", "--port", str(self.port),
                 "--http-port", str(self.http_port), "--log-level", "info"], stdout=out, stderr=subprocess.STDOUT)

    def wait_listening(self):
        deadline = time.monotonic() + STALL_SECONDS
        while not port_open(self.port):
            if self.process.poll() is not None:
                raise ChaosFailure(f"eventflow serve exited with status {self.process.returncode} while starting "
                                   f"(start {self.starts}); see {self.log_path}")
            if time.monotonic() > deadline:
                raise ChaosFailure(f"eventflow serve not listening on port {self.port} after {STALL_SECONDS} s")
            time.sleep(0.05)

    def check_alive(self):
        if self.process is not None and self.process.poll() is not None:
            status = self.process.returncode
            self.process = None
            self.unexpected_exits.append(status)
            raise ChaosFailure(f"eventflow serve exited by itself with status {status}; see {self.log_path}")

    def kill(self):
        self.check_alive()
        self.process.send_signal(signal.SIGKILL)
        self.process.wait()
        self.process = None

    def stop(self):
        """SIGTERM: drain and stop, which also stops the embedded PostgreSQL."""
        if self.process is None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            raise ChaosFailure("eventflow serve did not stop within 60 s of SIGTERM")
        status = self.process.returncode
        self.process = None
        if status != 0:
            raise ChaosFailure(f"eventflow serve exited with status {status} after SIGTERM; see {self.log_path}")

    # The embedded PostgreSQL, for the pg scenario and for cleaning up after a killed broker.

    @property
    def pgdata(self):
        return os.path.join(self.data, "pgdata")

    def pg_port(self):
        try:
            with open(os.path.join(self.pgdata, "postmaster.pid")) as f:
                return int(f.read().splitlines()[3])
        except (OSError, IndexError, ValueError):
            return None

    def pg_ctl(self, *arguments):
        result = subprocess.run(as_cluster_owner([pg_bin("pg_ctl"), "-D", self.pgdata, *arguments]),
                                capture_output=True, text=True, timeout=STALL_SECONDS)
        if result.returncode != 0:
            raise ChaosFailure(f"pg_ctl {' '.join(arguments)}: {result.stdout.strip()} {result.stderr.strip()}")

    def pg_stop_immediate(self):
        self.pg_ctl("-m", "immediate", "-w", "-t", "60", "stop")

    def pg_start(self, port):
        # The same port, so the broker's database URL stays valid (PostgreSQL sets SO_REUSEADDR).
        self.pg_ctl("-l", os.path.join(self.data, "postgres.log"), "-w", "-t", "60", "-o", f"-p {port}", "start")

    def cleanup(self):
        if self.process is not None and self.process.poll() is None:
            try:
                self.stop()
            except ChaosFailure as failure:
                log(f"cleanup: {failure}")
        if os.path.exists(os.path.join(self.pgdata, "postmaster.pid")):
            subprocess.run(as_cluster_owner([pg_bin("pg_ctl"), "-D", self.pgdata, "-m", "fast", "-w", "stop"]),
                           capture_output=True)


# -- clients -------------------------------------------------------------------------------------

# librdkafka's own log lines (every refused connection during an outage) go to <work>/clients.log.
CLIENT_LOGGER = logging.getLogger("chaos.clients")
CLIENT_LOGGER.propagate = False


def client_config(broker, key_id, secret):
    return {"logger": CLIENT_LOGGER,"bootstrap.servers": f"127.0.0.1:{broker.port}", "security.protocol": "SASL_SSL",
            "sasl.mechanisms": "PLAIN", "sasl.username": key_id, "sasl.password": secret,
            "ssl.ca.location": os.path.join(broker.data, "tls", "ca.pem"),
            # Come back quickly once the broker listens again.
            "reconnect.backoff.ms": 50, "reconnect.backoff.max.ms": 500,
            "log_level": 6}


class Acks:
    """Every acknowledged (partition, offset, payload id) and every failed delivery, with the times of
    the acknowledgements (to measure when produce resumed)."""

    def __init__(self):
        self.lock = threading.Lock()
        self.acked = []            # (monotonic time, partition, offset, payload id)
        self.failed = collections.Counter()
        self.fatal = []

    def count(self):
        with self.lock:
            return len(self.acked)

    def first_after(self, moment, timeout):
        """The time of the first acknowledgement received after `moment`, waiting up to `timeout`."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                # Acks are appended in time order per producer, not globally: scan the recent ones.
                later = [t for t, *_ in self.acked[-20000:] if t > moment]
            if later:
                return min(later)
            time.sleep(0.02)
        return None


class ProducerThread(threading.Thread):
    """One idempotent producer (acks=all), sending ids `<name>-<n>` at about `rate` messages a second."""

    def __init__(self, name, config, topic, acks, rate):
        super().__init__(name=name, daemon=True)
        self.topic, self.acks, self.rate = topic, acks, rate
        self.stop_event = threading.Event()
        self.sent = 0
        self.errors = []

        def on_error(error):
            if error.fatal():
                with acks.lock:
                    acks.fatal.append(f"{name}: {error}")
        self.producer = Producer({**config, "client.id": name, "enable.idempotence": IDEMPOTENCE, "acks": "all",
                                  "compression.type": "lz4", "linger.ms": 5,
                                  "message.timeout.ms": MESSAGE_TIMEOUT_MS, "retry.backoff.ms": 50,
                                  "queue.buffering.max.messages": 20000, "error_cb": on_error})
        self.prefix = name

    def report(self, error, message):
        if error is not None:
            with self.acks.lock:
                self.acks.failed[str(error.name())] += 1
            return
        with self.acks.lock:
            self.acks.acked.append((time.monotonic(), message.partition(), message.offset(), payload_of(message)))

    def run(self):
        interval = 1.0 / self.rate
        next_send = time.monotonic()
        try:
            while not self.stop_event.is_set():
                now = time.monotonic()
                if now < next_send:
                    self.producer.poll(min(next_send - now, 0.05))
                    continue
                payload_id = f"{self.prefix}-{self.sent}"
                try:
                    # The value is the id as a JSON string, so the analytics projection stores every record.
                    self.producer.produce(self.topic, key=payload_id.encode(), value=json.dumps(payload_id).encode(),
                                          on_delivery=self.report)
                except BufferError:
                    # The local queue is full while the broker is away: wait, keep the id for the retry.
                    self.producer.poll(0.1)
                    continue
                self.sent += 1
                next_send += interval
                if next_send < now - 1:
                    next_send = now  # after an outage: no burst to catch up
                self.producer.poll(0)
        except Exception as error:  # reported by the scenario, not swallowed
            self.errors.append(repr(error))

    def finish(self):
        """Stops sending and waits until every message has its delivery report."""
        self.stop_event.set()
        self.join()
        remaining = self.producer.flush(STALL_SECONDS)
        if remaining:
            raise ChaosFailure(f"{self.prefix}: {remaining} messages without a delivery report after {STALL_SECONDS} s")
        if self.errors:
            raise ChaosFailure(f"{self.prefix}: {self.errors[0]}")


def payload_of(message):
    """The payload id a record carries: its value, a JSON string."""
    return json.loads(message.value())


def wait_projected(broker, topic, stored_total):
    """The analytics projection of `topic` caught up: (rows in `events`, seconds waited); rows must be `stored_total`."""
    started = time.monotonic()
    while True:
        described = json.loads(broker.cli("stream", "describe", "--org", "chaos", topic, "--json"))
        partitions = described.get("analyticsPartitions", [])
        if partitions and all(p["lag"] == 0 for p in partitions) and described.get("analyticsRows") == stored_total:
            return described["analyticsRows"], time.monotonic() - started
        if time.monotonic() - started > STALL_SECONDS:
            return described.get("analyticsRows"), None
        time.sleep(0.5)


def create_stream(broker, name, partitions):
    broker.cli("stream", "create", "--org", "chaos", name, "--partitions", str(partitions))


def read_back(config, topic):
    """Every partition from offset 0 to its high watermark, in assign mode: {partition: [(offset, id)]}."""
    consumer = Consumer({**config, "group.id": "chaos-read-back", "enable.auto.commit": False,
                         "auto.offset.reset": "error", "enable.partition.eof": True})
    try:
        metadata = consumer.list_topics(topic, timeout=30)
        partitions = sorted(metadata.topics[topic].partitions)
        ends = {p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=30)[1] for p in partitions}
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions])
        stored = {p: [] for p in partitions}
        positions = {p: 0 for p in partitions}
        deadline = time.monotonic() + STALL_SECONDS
        while any(positions[p] < ends[p] for p in partitions):
            if time.monotonic() > deadline:
                raise ChaosFailure(f"read-back of {topic} stalled at {positions}, high watermarks {ends}")
            message = consumer.poll(0.5)
            if message is None:
                continue
            if message.error():
                if message.error().code() == KafkaError._PARTITION_EOF:
                    continue
                raise ChaosFailure(f"read-back of {topic}: {message.error()}")
            if message.offset() < ends[message.partition()]:
                stored[message.partition()].append((message.offset(), payload_of(message)))
            positions[message.partition()] = message.offset() + 1
        return ends, stored
    finally:
        consumer.close()


def check_stored(topic, acks, ends, stored, problems):
    """Every acknowledged event exactly once at its acknowledged offset, no id stored twice, offsets dense."""
    by_position = {}
    ids = collections.Counter()
    for partition, records in stored.items():
        offsets = [offset for offset, _ in records]
        if offsets != list(range(ends[partition])):
            missing = sorted(set(range(ends[partition])) - set(offsets))
            repeated = [o for o, n in collections.Counter(offsets).items() if n > 1]
            problems.append(f"{topic}[{partition}]: offsets not dense 0..{ends[partition] - 1}: "
                            f"{len(missing)} missing (first {missing[:5]}), {len(repeated)} repeated (first {repeated[:5]})")
        for offset, payload_id in records:
            by_position[(partition, offset)] = payload_id
            ids[payload_id] += 1
    duplicated = {payload_id: n for payload_id, n in ids.items() if n > 1}
    if duplicated:
        where = collections.defaultdict(list)
        for (partition, offset), payload_id in by_position.items():
            if payload_id in duplicated:
                where[payload_id].append((partition, offset))
        sample = sorted(where.items())[:5]
        problems.append(f"{topic}: {len(duplicated)} payload ids stored more than once (id: (partition, offset)...): {sample}")
    lost, misplaced = [], []
    acked_ids = set()
    for _, partition, offset, payload_id in acks.acked:
        acked_ids.add(payload_id)
        there = by_position.get((partition, offset))
        if there == payload_id:
            continue
        (misplaced if payload_id in ids else lost).append((partition, offset, payload_id, there))
    if lost:
        problems.append(f"{topic}: {len(lost)} acknowledged events lost (partition, offset, id, found there): {lost[:5]}")
    if misplaced:
        problems.append(f"{topic}: {len(misplaced)} acknowledged events stored at another offset "
                        f"(partition, offset, id, found there): {misplaced[:5]}")
    if len(acked_ids) != len(acks.acked):
        problems.append(f"{topic}: {len(acks.acked) - len(acked_ids)} payload ids acknowledged more than once")
    return {"acknowledged": len(acks.acked), "stored": sum(ids.values()), "lost": len(lost) + len(misplaced),
            "duplicated": sum(n - 1 for n in duplicated.values()),
            "stored_unacknowledged": len(set(ids) - acked_ids),
            "delivery_failed": dict(acks.failed), "high_watermarks": ends}


def start_producers(config, topic, count, rate, acks, tag):
    producers = [ProducerThread(f"{tag}-p{i}", config, topic, acks, rate) for i in range(count)]
    for producer in producers:
        producer.start()
    return producers


def wait_acks_grow(acks, since, what):
    """Waits for an acknowledgement newer than `since`; returns its time."""
    moment = acks.first_after(since, STALL_SECONDS)
    if moment is None:
        raise ChaosFailure(f"{what}: no produce acknowledged within {STALL_SECONDS} s")
    return moment


def figures_line(name, figures):
    return (f"{name}: rounds {figures['rounds']}, acknowledged {figures['acknowledged']}, lost {figures['lost']}, "
            f"duplicated {figures['duplicated']}, stored but unacknowledged {figures['stored_unacknowledged']}, "
            f"delivery errors {sum(figures['delivery_failed'].values())} {figures['delivery_failed'] or ''}")


def seconds(values):
    return "[" + ", ".join(f"{v:.2f}" for v in values) + "]"


def summary(values):
    if not values:
        return "-"
    ordered = sorted(values)
    return f"min {ordered[0]:.2f} s, median {ordered[len(ordered) // 2]:.2f} s, max {ordered[-1]:.2f} s"


# -- scenarios -----------------------------------------------------------------------------------

def scenario_kill(broker, config, args, rng, problems):
    topic = "chaos-kill"
    create_stream(broker, topic, args.partitions)
    # The analytics projection runs through every kill: afterwards `events` holds each record exactly once.
    broker.cli("stream", "alter", "--org", "chaos", topic, "--analytics", "on")
    acks = Acks()
    producers = start_producers(config, topic, args.producers, args.rate, acks, "kill")
    wait_acks_grow(acks, 0, "kill: before the first round")
    restarts, downs = [], []
    for round_number in range(1, args.rounds + 1):
        time.sleep(rng.uniform(0.5, args.max_gap))
        before = acks.count()
        killed_at = time.monotonic()
        broker.kill()
        time.sleep(rng.uniform(0, 0.5))
        broker.start()
        broker.wait_listening()
        listening_at = time.monotonic()
        resumed_at = wait_acks_grow(acks, listening_at, f"kill round {round_number}")
        restarts.append(resumed_at - killed_at)
        downs.append(listening_at - killed_at)
        log(f"kill round {round_number}/{args.rounds}: SIGKILL after {before} acks; listening again after "
            f"{listening_at - killed_at:.2f} s, produce acknowledged again {resumed_at - killed_at:.2f} s after the kill")
    time.sleep(1)
    for producer in producers:
        producer.finish()
    if acks.fatal:
        problems.append(f"{topic}: fatal producer errors: {acks.fatal[:3]}")
    ends, stored = read_back(config, topic)
    figures = check_stored(topic, acks, ends, stored, problems)
    stored_total = sum(len(records) for records in stored.values())
    rows, waited = wait_projected(broker, topic, stored_total)
    if waited is None:
        problems.append(f"{topic}: the analytics projection holds {rows} rows of {stored_total} records "
                        f"{STALL_SECONDS} s after the last kill (lost or duplicated rows, or stuck)")
    figures.update(rounds=args.rounds, resume_seconds=restarts, listening_seconds=downs,
                   analytics_rows=rows, analytics_caught_up_seconds=waited)
    log(figures_line("kill", figures))
    log(f"kill: the analytics projection holds {rows} events rows for {stored_total} records stored"
        + (f", caught up {waited:.2f} s after the read-back" if waited is not None else ", NOT caught up"))
    log(f"kill: produce acknowledged again after each SIGKILL (s): {seconds(restarts)} ({summary(restarts)}); "
        f"of which the broker took to listen again: {summary(downs)}")
    return figures


def scenario_pg(broker, config, args, rng, problems):
    topic = "chaos-pg"
    create_stream(broker, topic, args.partitions)
    acks = Acks()
    # What clients meet while the database is away, from the broker's log (printed, not asserted).
    observed = {"authentication failed": broker.log_count("authentication failed"),
                "request failed; closing connection": broker.log_count("request failed; closing connection")}
    producers = start_producers(config, topic, args.producers, args.rate, acks, "pg")
    wait_acks_grow(acks, 0, "pg: before the first round")
    resumes, after_starts, ready_checks = [], [], []
    for round_number in range(1, args.pg_rounds + 1):
        time.sleep(rng.uniform(0.5, args.max_gap))
        port = broker.pg_port()
        if port is None:
            raise ChaosFailure(f"pg round {round_number}: the embedded PostgreSQL is not running "
                               f"(no {broker.pgdata}/postmaster.pid)")
        stopped_at = time.monotonic()
        broker.pg_stop_immediate()
        stop_took = time.monotonic() - stopped_at
        time.sleep(rng.uniform(0.5, 2.0))
        broker.check_alive()
        # Readiness follows the database: not ready while it is away, alive all along.
        ready_down = broker.http_get("/ready")
        health_down = broker.http_get("/health")
        if ready_down[0] != 503 or "database unreachable" not in ready_down[1]:
            problems.append(f"pg round {round_number}: /ready with PostgreSQL stopped answered {ready_down}, not 503 database unreachable")
        if health_down[0] != 200:
            problems.append(f"pg round {round_number}: /health with PostgreSQL stopped answered {health_down}, not 200")
        starting_at = time.monotonic()
        broker.pg_start(port)  # returns once PostgreSQL (after its crash recovery) accepts connections
        started_at = time.monotonic()
        resumed_at = wait_acks_grow(acks, started_at, f"pg round {round_number}")
        broker.check_alive()
        ready_up = broker.http_get("/ready")
        if ready_up[0] != 200:
            problems.append(f"pg round {round_number}: /ready after PostgreSQL was back answered {ready_up}, not 200")
        ready_checks.append((ready_down[0], ready_up[0]))
        resumes.append(resumed_at - started_at)
        after_starts.append(resumed_at - stopped_at)
        log(f"pg round {round_number}/{args.pg_rounds}: stopped -m immediate (pg_ctl stop {stop_took:.2f} s, "
            f"pg_ctl start {started_at - starting_at:.2f} s), down {started_at - stopped_at:.2f} s; "
            f"produce acknowledged again {resumed_at - started_at:.2f} s after PostgreSQL was back")
    time.sleep(1)
    for producer in producers:
        producer.finish()
    if acks.fatal:
        problems.append(f"{topic}: fatal producer errors: {acks.fatal[:3]}")
    ends, stored = read_back(config, topic)
    figures = check_stored(topic, acks, ends, stored, problems)
    observed = {text: broker.log_count(text) - before for text, before in observed.items()}
    figures.update(rounds=args.pg_rounds, resume_seconds=resumes, outage_seconds=after_starts, broker_log=observed,
                   ready_while_down_and_after=ready_checks)
    log(figures_line("pg", figures))
    log(f"pg: while PostgreSQL was away the broker logged {observed['authentication failed']} SASL "
        f"'authentication failed' (the valid key: answered SASL_AUTHENTICATION_FAILED) and "
        f"{observed['request failed; closing connection']} 'request failed; closing connection' (a request that needed the database, Metadata here, answered by closing)")
    log(f"pg: produce acknowledged again after PostgreSQL was back (s): {seconds(resumes)} ({summary(resumes)}); "
        f"from the stop: {summary(after_starts)}")
    return figures


class GroupLog:
    """Processed records and successful commits of every group member, in one order."""

    def __init__(self):
        self.lock = threading.Lock()
        self.entries = []   # ("processed", member, partition, offset, id) | ("committed", member, partition, next offset)

    def add(self, *entry):
        with self.lock:
            self.entries.append(entry)
            if entry[0] == "committed":
                self.last_commit_at = time.monotonic()

    def processed_ids(self):
        with self.lock:
            return {entry[4] for entry in self.entries if entry[0] == "processed"}

    def processed_count(self):
        with self.lock:
            return sum(1 for entry in self.entries if entry[0] == "processed")

    def last_commit_time(self):
        with self.lock:
            return self.last_commit_at

    last_commit_at = 0.0


class GroupMember(threading.Thread):
    """A confluent-kafka group member: process a record (log it), then commit its offset synchronously."""

    def __init__(self, name, config, topic, group_id, group_log):
        super().__init__(name=name, daemon=True)
        self.group_log = group_log
        self.stop_event = threading.Event()
        self.commit_failures = collections.Counter()
        self.errors = []
        self.consumer = Consumer({**config, "client.id": name, "group.id": group_id, "enable.auto.commit": False,
                                  "auto.offset.reset": "earliest", "session.timeout.ms": 10000,
                                  "heartbeat.interval.ms": 1000, "enable.partition.eof": False})
        self.consumer.subscribe([topic])

    def run(self):
        try:
            while not self.stop_event.is_set():
                message = self.consumer.poll(0.2)
                if message is None:
                    continue
                if message.error():
                    # Broker away, coordinator moving: librdkafka reports and recovers by itself.
                    if message.error().fatal():
                        self.errors.append(str(message.error()))
                        return
                    continue
                self.group_log.add("processed", self.name, message.partition(), message.offset(),
                                   payload_of(message))
                try:
                    self.consumer.commit(message=message, asynchronous=False)
                except KafkaException as error:
                    # Not committed (broker killed, rebalance): the record may be processed again, which
                    # is allowed; only a successful commit is a promise.
                    self.commit_failures[error.args[0].name()] += 1
                    continue
                self.group_log.add("committed", self.name, message.partition(), message.offset() + 1)
        except Exception as error:
            self.errors.append(repr(error))

    def finish(self):
        self.stop_event.set()
        self.join()
        try:
            self.consumer.close()
        except KafkaException:
            pass  # leaving the group with the broker just restarted; the check does not depend on it


def check_group(topic, group_log, acks, problems):
    committed = {}       # partition -> highest committed next offset so far
    violations = []
    reprocessed = 0
    seen = set()
    for entry in group_log.entries:
        if entry[0] == "committed":
            _, member, partition, next_offset = entry
            committed[partition] = max(committed.get(partition, 0), next_offset)
        else:
            _, member, partition, offset, payload_id = entry
            if offset < committed.get(partition, 0):
                violations.append((member, partition, offset, committed[partition]))
            if (partition, offset) in seen:
                reprocessed += 1
            seen.add((partition, offset))
    if violations:
        problems.append(f"{topic}: {len(violations)} records processed again below a committed position "
                        f"(member, partition, offset, committed): {violations[:5]}")
    processed = group_log.processed_ids()
    missed = [payload_id for _, _, _, payload_id in acks.acked if payload_id not in processed]
    if missed:
        problems.append(f"{topic}: {len(missed)} acknowledged events never processed by the group: {missed[:5]}")
    return {"processed": len(seen), "reprocessed_uncommitted": reprocessed, "below_commit": len(violations),
            "skipped": len(missed),
            "commits": sum(1 for entry in group_log.entries if entry[0] == "committed")}


def scenario_group(broker, config, args, rng, problems):
    topic = "chaos-group"
    create_stream(broker, topic, args.partitions)
    acks = Acks()
    group_log = GroupLog()
    members = [GroupMember(f"group-c{i}", config, topic, "chaos-group", group_log) for i in range(args.consumers)]
    for member in members:
        member.start()
    producers = start_producers(config, topic, args.producers, args.group_rate, acks, "group")
    wait_acks_grow(acks, 0, "group: before the first round")
    resumes = []
    for round_number in range(1, args.group_rounds + 1):
        # A kill once the members consume again (and a random moment after).
        deadline = time.monotonic() + STALL_SECONDS
        start_count = group_log.processed_count()
        while group_log.processed_count() == start_count:
            if time.monotonic() > deadline:
                raise ChaosFailure(f"group round {round_number}: the group processed nothing for {STALL_SECONDS} s")
            time.sleep(0.05)
        time.sleep(rng.uniform(0.5, args.max_gap))
        processed_before = group_log.processed_count()
        killed_at = time.monotonic()
        broker.kill()
        time.sleep(rng.uniform(0, 0.5))
        broker.start()
        broker.wait_listening()
        listening_at = time.monotonic()
        deadline = listening_at + STALL_SECONDS
        # The group works again once a member commits to the restarted broker (records the members had
        # fetched before the kill may still be processed meanwhile; their commits fail).
        while group_log.last_commit_time() <= listening_at:
            if time.monotonic() > deadline:
                raise ChaosFailure(f"group round {round_number}: no commit succeeded within {STALL_SECONDS} s of the restart")
            time.sleep(0.05)
        resumed_at = group_log.last_commit_time()
        resumes.append(resumed_at - killed_at)
        log(f"group round {round_number}/{args.group_rounds}: SIGKILL after {processed_before} records processed; "
            f"a commit succeeded again {resumed_at - killed_at:.2f} s after the kill")
    for producer in producers:
        producer.finish()
    # Let the group catch up with everything acknowledged.
    wanted = {payload_id for _, _, _, payload_id in acks.acked}
    deadline = time.monotonic() + STALL_SECONDS
    while not wanted <= group_log.processed_ids():
        if time.monotonic() > deadline:
            break  # check_group names what is missing
        if any(member.errors for member in members):
            break
        time.sleep(0.2)
    for member in members:
        member.finish()
        if member.errors:
            problems.append(f"{topic}: member {member.name} stopped with {member.errors[0]}")
    if acks.fatal:
        problems.append(f"{topic}: fatal producer errors: {acks.fatal[:3]}")
    group_figures = check_group(topic, group_log, acks, problems)
    ends, stored = read_back(config, topic)
    figures = check_stored(topic, acks, ends, stored, problems)
    commit_failures = collections.Counter()
    for member in members:
        commit_failures.update(member.commit_failures)
    figures.update(rounds=args.group_rounds, resume_seconds=resumes, group=group_figures,
                   commit_failures=dict(commit_failures))
    log(figures_line("group", figures))
    log(f"group: {group_figures['processed']} records processed by {args.consumers} members, "
        f"{group_figures['commits']} commits ({sum(commit_failures.values())} failed {dict(commit_failures) or ''}), "
        f"{group_figures['reprocessed_uncommitted']} processed again after an uncommitted read, "
        f"{group_figures['below_commit']} below a committed position, {group_figures['skipped']} skipped; "
        f"a commit succeeded again after each SIGKILL (s): {seconds(resumes)} ({summary(resumes)})")
    return figures


class RSSSampler(threading.Thread):
    """The broker's resident set (VmRSS of /proc/PID/status), once a second."""

    def __init__(self, pid):
        super().__init__(name="rss", daemon=True)
        self.pid, self.samples_mib = pid, []
        self.stop_event = threading.Event()

    def sample(self):
        try:
            with open(f"/proc/{self.pid}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        return int(line.split()[1]) / 1024
        except OSError:
            return None
        return None

    def run(self):
        while not self.stop_event.wait(1.0):
            value = self.sample()
            if value is not None:
                self.samples_mib.append(value)

    def finish(self):
        self.stop_event.set()
        self.join()


class TailReader(threading.Thread):
    """A consumer (assign mode, from offset 0) reading a stream as fast as it can beside the overload."""

    def __init__(self, name, config, topic, partitions):
        super().__init__(name=name, daemon=True)
        self.stop_event = threading.Event()
        self.read, self.errors, self.fatal = 0, collections.Counter(), []
        self.consumer = Consumer({**config, "client.id": name, "group.id": "chaos-overload-reader",
                                  "enable.auto.commit": False, "enable.partition.eof": False})
        self.consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in range(partitions)])

    def run(self):
        try:
            while not self.stop_event.is_set():
                for message in self.consumer.consume(1000, 0.2):
                    if message.error():
                        self.errors[message.error().name()] += 1
                        if message.error().fatal():
                            self.fatal.append(str(message.error()))
                            return
                    else:
                        self.read += 1
        except Exception as error:
            self.fatal.append(repr(error))

    def finish(self):
        self.stop_event.set()
        self.join()
        self.consumer.close()


def stored_events(config, topic):
    """The sum of a stream's high watermarks."""
    consumer = Consumer({**config, "group.id": "chaos-watermarks", "enable.auto.commit": False})
    try:
        partitions = consumer.list_topics(topic, timeout=30).topics[topic].partitions
        return sum(consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=30)[1] for p in partitions)
    finally:
        consumer.close()


def scenario_overload(broker, config, args, rng, problems):
    """Ten times what the broker can take, for OVERLOAD_SECONDS: eventflow-loadgen keeps 64 connections
    x 16 pipelined 1 MiB produce requests in flight (1 GiB offered at once against the 64 MiB batcher),
    a second loadgen and a librdkafka reader fetch beside it, and the tracked idempotent producers of the
    other scenarios send their ids. The broker's RSS is sampled each second and must stay under
    RSS_BOUND_MIB; producers see backpressure (slower acks) or retriable errors; afterwards every
    acknowledged tracked event is read back exactly once and the pressure stream holds at least what
    loadgen counted as acknowledged."""
    topic, pressure = "chaos-overload", "chaos-overload-pressure"
    create_stream(broker, topic, args.partitions)
    create_stream(broker, pressure, args.partitions)
    loadgen = os.path.join(os.path.dirname(args.eventflow), "eventflow-loadgen")
    if not os.access(loadgen, os.X_OK):
        raise ChaosFailure(f"{loadgen} missing; build it with `swift build --product eventflow-loadgen`")
    key_id, secret = config["sasl.username"], config["sasl.password"]
    environment = {**os.environ, "EVENTFLOW_BROKERS": f"127.0.0.1:{broker.port}", "EVENTFLOW_API_KEY": key_id,
                   "EVENTFLOW_API_SECRET": secret, "EVENTFLOW_CA": config["ssl.ca.location"]}
    work = os.path.dirname(broker.log_path)
    sampler = RSSSampler(broker.process.pid)
    idle_mib = sampler.sample()
    sampler.start()
    acks = Acks()
    producers = start_producers(config, topic, args.producers, args.rate, acks, "overload")
    reader = TailReader("overload-reader", config, topic, args.partitions)
    reader.start()
    wait_acks_grow(acks, 0, "overload: before the pressure")
    seconds_total = args.overload_seconds
    with open(os.path.join(work, "loadgen.log"), "w") as out:
        pushing = subprocess.Popen(
            [loadgen, "--stream", pressure, "--partitions", str(args.partitions), "--raw-batches", "--no-idempotent",
             "--connections", "64", "--inflight", "16", "--batch-bytes", str(1 << 20), "--warmup", "0",
             "--duration", str(seconds_total), "--json", os.path.join(work, "overload-produce.json")],
            env=environment, stdout=out, stderr=subprocess.STDOUT)
        fetching = subprocess.Popen(
            [loadgen, "consume", "--stream", pressure, "--from", "beginning", "--read", "skip", "--warmup", "0",
             "--duration", str(seconds_total), "--json", os.path.join(work, "overload-consume.json")],
            env=environment, stdout=out, stderr=subprocess.STDOUT)
        started = time.monotonic()
        deadline = started + seconds_total + STALL_SECONDS
        while pushing.poll() is None or fetching.poll() is None:
            broker.check_alive()
            if time.monotonic() > deadline:
                pushing.kill()
                fetching.kill()
                raise ChaosFailure(f"overload: loadgen still running {STALL_SECONDS} s after its {seconds_total} s")
            time.sleep(0.5)
    broker.check_alive()
    for producer in producers:
        producer.finish()
    reader.finish()
    sampler.finish()
    after_mib = sampler.sample()
    if acks.fatal:
        problems.append(f"{topic}: fatal producer errors: {acks.fatal[:3]}")
    if reader.fatal:
        problems.append(f"{topic}: the reader stopped with {reader.fatal[0]}")
    peak_mib = max(sampler.samples_mib, default=0)
    if peak_mib > args.rss_bound_mib:
        problems.append(f"overload: broker RSS peaked at {peak_mib:.0f} MiB, over the {args.rss_bound_mib} MiB bound")
    if not sampler.samples_mib:
        problems.append("overload: no RSS sample taken")

    def loadgen_result(name):
        try:
            with open(os.path.join(work, name)) as f:
                return json.load(f)
        except (OSError, ValueError):
            return None
    produced, consumed = loadgen_result("overload-produce.json"), loadgen_result("overload-consume.json")
    if produced is None:
        problems.append(f"overload: loadgen produce wrote no result (exit status {pushing.returncode}); see loadgen.log")
        produced = {}
    if consumed is None:
        problems.append(f"overload: loadgen consume wrote no result (exit status {fetching.returncode}); see loadgen.log")
        consumed = {}
    pressure_acked = produced.get("events_acknowledged_total", 0)
    pressure_stored = stored_events(config, pressure)
    if pressure_stored < pressure_acked:
        problems.append(f"{pressure}: {pressure_acked} events acknowledged to loadgen, only {pressure_stored} stored")
    ends, stored = read_back(config, topic)
    figures = check_stored(topic, acks, ends, stored, problems)
    figures.update(rounds=1, seconds=seconds_total, rss_idle_mib=idle_mib, rss_peak_mib=peak_mib, rss_after_mib=after_mib,
                   rss_median_mib=sorted(sampler.samples_mib)[len(sampler.samples_mib) // 2] if sampler.samples_mib else None,
                   rss_bound_mib=args.rss_bound_mib, rss_samples=len(sampler.samples_mib),
                   pressure_acknowledged=pressure_acked, pressure_stored=pressure_stored,
                   pressure_errors=produced.get("errors"), pressure_first_error=produced.get("first_error"),
                   pressure_events_per_second=produced.get("events_per_second"),
                   pressure_consumed=consumed.get("events_acknowledged_total", consumed.get("events")),
                   reader_read=reader.read, reader_errors=dict(reader.errors))
    log(figures_line("overload", figures))
    log(f"overload: {seconds_total} s; broker RSS idle {idle_mib or 0:.0f} MiB, median {figures['rss_median_mib'] or 0:.0f}, "
        f"peak {peak_mib:.0f} (bound {args.rss_bound_mib}), after {after_mib or 0:.0f} MiB; pressure: "
        f"{pressure_acked} events acknowledged ({produced.get('events_per_second')} /s), {pressure_stored} stored, "
        f"{produced.get('errors')} answered with errors (first: {produced.get('first_error')}); loadgen consume read "
        f"{figures['pressure_consumed']}; the librdkafka reader read {reader.read} ({dict(reader.errors) or 'no errors'})")
    return figures


def self_test():
    """The checks themselves, on made-up logs: each kind of broken promise is caught, a clean log passes."""
    def acks_of(*records):
        acks = Acks()
        acks.acked = [(0.0, p, o, i) for p, o, i in records]
        return acks

    def problems_of(acks, ends, stored):
        problems = []
        check_stored("t", acks, ends, stored, problems)
        return problems

    clean = {0: [(0, "a"), (1, "b")], 1: [(0, "c")]}
    assert problems_of(acks_of((0, 0, "a"), (0, 1, "b"), (1, 0, "c")), {0: 2, 1: 1}, clean) == []
    # an unacknowledged id stored once is fine (its delivery report was lost with the broker)
    assert problems_of(acks_of((0, 0, "a"), (1, 0, "c")), {0: 2, 1: 1}, clean) == []
    lost = problems_of(acks_of((0, 0, "a"), (0, 1, "b"), (0, 2, "x")), {0: 2, 1: 1}, clean)
    assert len(lost) == 1 and "1 acknowledged events lost" in lost[0], lost
    moved = problems_of(acks_of((0, 1, "a")), {0: 2, 1: 1}, clean)
    assert len(moved) == 1 and "another offset" in moved[0], moved
    twice = problems_of(acks_of((0, 0, "a")), {0: 2, 1: 1}, {0: [(0, "a"), (1, "a")], 1: [(0, "c")]})
    assert len(twice) == 1 and "more than once" in twice[0], twice
    gap = problems_of(acks_of((0, 0, "a")), {0: 3, 1: 1}, {0: [(0, "a"), (2, "b")], 1: [(0, "c")]})
    assert len(gap) == 1 and "not dense" in gap[0], gap

    def group_problems(entries, acks):
        group_log = GroupLog()
        for entry in entries:
            group_log.add(*entry)
        problems = []
        check_group("t", group_log, acks, problems)
        return problems

    acks = acks_of((0, 0, "a"), (0, 1, "b"))
    fine = [("processed", "m", 0, 0, "a"), ("processed", "m", 0, 0, "a"), ("committed", "m", 0, 1),
            ("processed", "n", 0, 1, "b"), ("committed", "n", 0, 2)]
    assert group_problems(fine, acks) == []
    again = fine + [("processed", "m", 0, 0, "a")]
    assert len(group_problems(again, acks)) == 1 and "below a committed" in group_problems(again, acks)[0]
    skipped = fine[:3]
    assert len(group_problems(skipped, acks)) == 1 and "never processed" in group_problems(skipped, acks)[0]
    log("self-test: the checks catch a lost, a moved, a twice-stored event, an offset gap, "
        "a record processed below a commit and a skipped one")


SCENARIOS = {"kill": scenario_kill, "pg": scenario_pg, "group": scenario_group, "overload": scenario_overload}


def secrets_in_logs(work, secrets):
    """Every log of the run (the broker's, the clients', PostgreSQL's) is free of the secrets."""
    found = []
    for folder, _, files in os.walk(work):
        for name in files:
            if not name.endswith(".log"):
                continue
            path = os.path.join(folder, name)
            with open(path, errors="replace") as f:
                text = f.read()
            found += [f"a secret appears in {path}" for secret in secrets if secret in text]
    return found


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=20, help="broker kills in the kill scenario (default 20)")
    parser.add_argument("--pg-rounds", type=int, help="PostgreSQL immediate stops (default: ROUNDS / 4, at least 1)")
    parser.add_argument("--group-rounds", type=int, help="broker kills in the group scenario (default: ROUNDS / 2, at least 1)")
    parser.add_argument("--scenarios", default="kill,pg,group", help="comma-separated: kill, pg, group, overload")
    parser.add_argument("--eventflow", default=os.environ.get("EVENTFLOW_BIN", os.path.join(ROOT, ".build/debug/eventflow")),
                        help="the eventflow binary (default .build/debug/eventflow, or $EVENTFLOW_BIN)")
    parser.add_argument("--seed", type=int, help="random seed for the kill moments (printed; default: random)")
    parser.add_argument("--producers", type=int, default=2, help="idempotent producers (default 2)")
    parser.add_argument("--consumers", type=int, default=2, help="group members in the group scenario (default 2)")
    parser.add_argument("--partitions", type=int, default=4, help="partitions of each stream (default 4)")
    parser.add_argument("--rate", type=int, default=1000, help="messages a second per producer (default 1000)")
    parser.add_argument("--group-rate", type=int, default=100,
                        help="messages a second per producer in the group scenario, where every record is committed "
                             "on its own (default 100, so the members keep up and the kills hit them at the tail)")
    parser.add_argument("--max-gap", type=float, default=3.0,
                        help="a kill comes 0.5..MAX_GAP seconds after produce resumed (default 3)")
    parser.add_argument("--overload-seconds", type=int, default=180,
                        help="length of the overload scenario (default 180; not in the default scenarios: make overload)")
    parser.add_argument("--rss-bound-mib", type=int, default=1024,
                        help="the broker's RSS must stay under this during the overload (default 1024 MiB, RELIABILITY.md)")
    parser.add_argument("--json", help="write the figures to this file")
    parser.add_argument("--no-idempotence", action="store_true",
                        help="producers without enable.idempotence: the duplicates check is expected to fail")
    parser.add_argument("--self-test", action="store_true", help="only check the checks on made-up logs (no broker)")
    parser.add_argument("--keep", action="store_true", help="keep the work folder (logs, data) even when every check passes")
    args = parser.parse_args()
    global IDEMPOTENCE
    IDEMPOTENCE = not args.no_idempotence
    if args.self_test:
        self_test()
        return
    if args.pg_rounds is None:
        args.pg_rounds = max(1, args.rounds // 4)
    if args.group_rounds is None:
        args.group_rounds = max(1, args.rounds // 2)
    scenarios = [name.strip() for name in args.scenarios.split(",") if name.strip()]
    for name in scenarios:
        if name not in SCENARIOS:
            parser.error(f"unknown scenario {name!r} (kill, pg, group, overload)")
    if min(args.rounds, args.pg_rounds, args.group_rounds, args.producers, args.consumers, args.partitions, args.rate,
           args.group_rate) < 1:
        parser.error("rounds, producers, consumers, partitions and rate must be at least 1")
    if not os.access(args.eventflow, os.X_OK):
        raise SystemExit(f"chaos: {args.eventflow} missing; run `swift build --product eventflow` first")
    self_test()
    seed = args.seed if args.seed is not None else random.randrange(1 << 32)
    rng = random.Random(seed)

    work = tempfile.mkdtemp(prefix="eventflow-chaos.")
    os.chmod(work, 0o755)  # the embedded cluster runs as `postgres` under root and must reach its folder
    broker = Broker(args.eventflow, work)
    handler = logging.FileHandler(os.path.join(work, "clients.log"))
    handler.setFormatter(logging.Formatter("%(asctime)s %(message)s"))
    CLIENT_LOGGER.addHandler(handler)
    CLIENT_LOGGER.setLevel(logging.INFO)
    problems, results = [], {}
    started = time.monotonic()
    log(f"seed {seed}; scenarios {','.join(scenarios)}; kill rounds {args.rounds}, pg rounds {args.pg_rounds}, "
        f"group rounds {args.group_rounds}; {args.producers} producers x {args.rate} msg/s; work folder {work}")
    try:
        broker.start()
        broker.wait_listening()
        broker.cli("org", "create", "chaos")
        key = json.loads(broker.cli("apikey", "create", "--org", "chaos", "--label", "chaos", "--json"))
        config = client_config(broker, key["id"], key["secret"])
        for name in scenarios:
            scenario_started = time.monotonic()
            results[name] = SCENARIOS[name](broker, config, args, rng, problems)
            results[name]["elapsed_seconds"] = time.monotonic() - scenario_started
            log(f"{name}: done in {results[name]['elapsed_seconds']:.0f} s")
        broker.stop()
        problems.extend(secrets_in_logs(work, [key["secret"]]))
    except ChaosFailure as failure:
        problems.append(str(failure))
    finally:
        broker.cleanup()
    elapsed = time.monotonic() - started
    if args.json:
        with open(args.json, "w") as out:
            json.dump({"seed": seed, "elapsed_seconds": elapsed, "broker_starts": broker.starts,
                       "scenarios": results, "problems": problems}, out, indent=2)
    if problems:
        for problem in problems:
            print(f"chaos: FAIL {problem}", file=sys.stderr)
        print(f"chaos: {len(problems)} checks failed (seed {seed}); logs kept in {work} "
              f"(serve.log, clients.log, data/postgres.log)", file=sys.stderr)
        sys.exit(1)
    log(f"passed: {', '.join(scenarios)} in {elapsed:.0f} s, {broker.starts} broker starts (seed {seed})")
    if args.keep:
        log(f"work folder kept: {work}")
    else:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
