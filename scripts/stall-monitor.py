#!/usr/bin/env python3
"""Samples, once a second, what can stall a durable produce, into JSON lines (one object a second):

- the broker's ingest stages: the cumulative `eventflow_ingest_stage_seconds` histograms from its
  /metrics (bench_report.py turns consecutive samples into per-second percentiles);
- PostgreSQL's own view: pg_stat_wal (WAL bytes, full-page images, buffers full, write/sync counts
  and times), pg_stat_bgwriter (checkpoints, buffers written by checkpointer/bgwriter/backends,
  checkpoint write and sync time), autovacuum workers running (pg_stat_activity);
- the kernel's: /proc/meminfo Dirty and Writeback, /proc/vmstat pages written (pgpgout) and the
  dirty-page throttling counters.

Usage: stall-monitor.py --data-dir DIR --metrics-url URL --out FILE.jsonl [--seconds N]
Runs until killed (or N seconds). The embedded cluster's port and password come from DIR.

The monitor shares the machine with what it measures, so it keeps its cost down: one psql session
for the whole run (a new psql process and PostgreSQL backend every second doubled the p99 at 700k
events/s on 2 cores: 22-29 ms without the monitor, 38-66 ms with it), and it runs niced.
"""
import argparse
import json
import os
import re
import select
import subprocess
import sys
import time
import urllib.request

STAGE = re.compile(r'^eventflow_ingest_stage_seconds_(bucket|count|sum)\{([^}]*)\}\s+(\S+)')
LABEL = re.compile(r'(\w+)="([^"]*)"')

PG_QUERY = """
SELECT json_build_object(
  'wal', (SELECT row_to_json(w) FROM (SELECT wal_records, wal_fpi, wal_bytes::bigint AS wal_bytes, wal_buffers_full,
                                             wal_write, wal_sync, wal_write_time, wal_sync_time FROM pg_stat_wal) w),
  'bgwriter', (SELECT row_to_json(b) FROM (SELECT checkpoints_timed, checkpoints_req, checkpoint_write_time,
                                                  checkpoint_sync_time, buffers_checkpoint, buffers_clean,
                                                  buffers_backend, buffers_backend_fsync, buffers_alloc FROM pg_stat_bgwriter) b),
  'autovacuum', (SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'autovacuum worker'),
  'autovacuum_query', (SELECT string_agg(query, '; ') FROM pg_stat_activity WHERE backend_type = 'autovacuum worker'),
  'writer_wait', (SELECT string_agg(coalesce(wait_event_type, '') || ':' || coalesce(wait_event, ''), ',')
                  FROM pg_stat_activity WHERE backend_type = 'client backend' AND state = 'active'
                  AND (query LIKE 'COMMIT%' OR query LIKE 'COPY%')))
"""


def database_url(data_dir):
    pid_lines = open(os.path.join(data_dir, "pgdata", "postmaster.pid")).read().split("\n")
    port = pid_lines[3].strip()
    password = open(os.path.join(data_dir, "db-password")).read().strip()
    return f"postgresql://eventflow:{password}@127.0.0.1:{port}/eventflow"


def meminfo():
    values = {}
    for line in open("/proc/meminfo"):
        name, rest = line.split(":", 1)
        if name in ("Dirty", "Writeback"):
            values[name.lower() + "_kb"] = int(rest.split()[0])
    return values


def vmstat():
    wanted = {"pgpgout", "nr_dirtied", "nr_written", "nr_dirty_threshold", "nr_dirty_background_threshold"}
    values = {}
    for line in open("/proc/vmstat"):
        name, value = line.split()
        if name in wanted:
            values[name] = int(value)
    return values


def cpu():
    """The machine's CPU time (USER_HZ ticks): iowait and steal (the hypervisor running someone else)."""
    fields = open("/proc/stat").readline().split()[1:]
    names = ["user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal"]
    return {"cpu_" + name: int(value) for name, value in zip(names, fields)}


def disk():
    """The busiest whole disk's counters (/proc/diskstats): writes, sectors, ms writing, I/Os in flight,
    and the cache flushes a fsync sends to the (virtual) disk, with the ms they took."""
    best = None
    for line in open("/proc/diskstats"):
        parts = line.split()
        name = parts[2]
        if re.match(r"^(loop|ram|zram|dm-)", name) or re.search(r"\dp?\d+$", name) and not name.startswith("nvme"):
            continue
        values = [int(v) for v in parts[3:]]
        entry = {"disk": name, "disk_writes": values[4], "disk_sectors_written": values[6], "disk_write_ms": values[7],
                 "disk_inflight": values[8]}
        if len(values) >= 17:
            entry["disk_flushes"] = values[15]
            entry["disk_flush_ms"] = values[16]
        if best is None or entry["disk_sectors_written"] > best["disk_sectors_written"]:
            best = entry
    return best or {}


class Psql:
    """One psql session, queried once a second; `query` raises on an error, a timeout or a closed session."""
    END = b"__stall_monitor_end__\n"

    def __init__(self, url):
        self.process = subprocess.Popen(["psql", url, "-Atq", "-v", "ON_ERROR_STOP=0"], stdin=subprocess.PIPE,
                                        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        self.buffer = b""

    def query(self, sql, timeout=5.0):
        self.process.stdin.write(sql.strip().encode() + b";\n\\echo " + self.END)
        self.process.stdin.flush()
        deadline = time.time() + timeout
        fd = self.process.stdout.fileno()
        while self.END not in self.buffer:
            remaining = deadline - time.time()
            if remaining <= 0 or not select.select([fd], [], [], remaining)[0]:
                raise TimeoutError("psql did not answer")
            chunk = os.read(fd, 1 << 16)
            if not chunk:
                raise EOFError("psql exited")
            self.buffer += chunk
        answer, _, self.buffer = self.buffer.partition(self.END)
        return answer.decode().strip()

    def close(self):
        self.process.kill()
        self.process.wait()


def stages(url):
    """{stage: {"buckets": [[le, cumulative]], "count": n, "sum": seconds}} or None."""
    try:
        text = urllib.request.urlopen(url, timeout=0.8).read().decode()
    except Exception:
        return None
    result = {}
    for line in text.split("\n"):
        match = STAGE.match(line)
        if not match:
            continue
        kind, labels, value = match.groups()
        labels = dict(LABEL.findall(labels))
        entry = result.setdefault(labels.get("stage", "?"), {"buckets": [], "count": 0, "sum": 0.0})
        if kind == "bucket":
            entry["buckets"].append([labels.get("le"), float(value)])
        elif kind == "count":
            entry["count"] = float(value)
        else:
            entry["sum"] = float(value)
    return result


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--data-dir", required=True)
    parser.add_argument("--metrics-url")
    parser.add_argument("--out", required=True)
    parser.add_argument("--seconds", type=float, default=0)
    args = parser.parse_args()
    os.nice(10)  # the measured processes come first
    psql = None
    started = time.time()
    with open(args.out, "a") as out:
        next_tick = time.time()
        while args.seconds <= 0 or time.time() - started < args.seconds:
            sample = {"t": time.time(), "monotonic": time.monotonic()}
            sample.update(meminfo())
            sample.update(vmstat())
            sample.update(cpu())
            sample.update(disk())
            try:
                psql = psql or Psql(database_url(args.data_dir))
                sample["pg"] = json.loads(psql.query(PG_QUERY))
            except Exception:
                # The database is not up yet, restarted or stalled: a new session next second.
                if psql:
                    psql.close()
                psql = None
            if args.metrics_url:
                sample["stages"] = stages(args.metrics_url)
            out.write(json.dumps(sample) + "\n")
            out.flush()
            next_tick += 1
            time.sleep(max(next_tick - time.time(), 0))


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        sys.exit(0)
