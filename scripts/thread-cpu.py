#!/usr/bin/env python3
"""CPU time per thread of every process on the machine over an interval, for `make bench`'s
consume runs: which thread (broker event loop, catch-up thread, writer, PostgreSQL backend,
consumer) bounds a run when `perf` has no counters to sample.

Usage: thread-cpu.py SECONDS [OUT.json]   (prints the busiest threads; writes them all as JSON)

Snapshots every 0.2 s and sums the differences, so a process that exits inside the interval (a
finite consumer read) keeps what it used up to its last snapshot.
"""
import json
import os
import sys
import time

TICKS = os.sysconf("SC_CLK_TCK")
SNAPSHOT_SECONDS = 0.2


def snapshot():
    threads = {}
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/comm") as handle:
                process = handle.read().strip()
            with open(f"/proc/{pid}/cmdline", "rb") as handle:
                command = handle.read().split(b"\0")[0].decode(errors="replace")
            for tid in os.listdir(f"/proc/{pid}/task"):
                with open(f"/proc/{pid}/task/{tid}/stat") as handle:
                    stat = handle.read()
                # The thread name is in parentheses and may contain spaces; fields follow it.
                name = stat[stat.index("(") + 1:stat.rindex(")")]
                fields = stat[stat.rindex(")") + 2:].split()
                threads[(int(pid), int(tid))] = (process, os.path.basename(command) or process, name,
                                                 int(fields[11]) + int(fields[12]))
        except (OSError, ValueError):
            continue
    return threads


def main():
    seconds = float(sys.argv[1])
    previous = snapshot()
    start = time.monotonic()
    spent_by_thread = {}
    names = {}
    while time.monotonic() - start < seconds:
        time.sleep(min(SNAPSHOT_SECONDS, max(seconds - (time.monotonic() - start), 0.01)))
        current = snapshot()
        for key, (process, command, name, ticks) in current.items():
            if key in previous:
                spent_by_thread[key] = spent_by_thread.get(key, 0) + ticks - previous[key][3]
            names[key] = (process, command, name)
        previous = current
    elapsed = time.monotonic() - start
    rows = []
    for key, spent in spent_by_thread.items():
        process, command, name = names[key]
        if spent > 0:
            rows.append({"pid": key[0], "tid": key[1], "process": process, "command": command, "thread": name,
                         "cpu_percent": round(100.0 * spent / TICKS / elapsed, 1)})
    rows.sort(key=lambda row: -row["cpu_percent"])
    if len(sys.argv) > 2:
        with open(sys.argv[2], "w") as handle:
            json.dump({"seconds": round(elapsed, 2), "threads": rows}, handle, indent=1)
    for row in rows[:12]:
        print(f"  {row['cpu_percent']:6.1f}%  {row['command']:<20} {row['thread']:<20} pid {row['pid']} tid {row['tid']}")


if __name__ == "__main__":
    main()
