#!/usr/bin/env python3
"""Gathers the loadgen results of `make bench` into one JSON file and prints the table with the ratios.

Usage: bench_report.py RESULTS_DIR [MEMORY_FILE]
"""
import json
import os
import platform
import subprocess
import sys

import bench_stalls


def machine():
    info = {"platform": platform.platform(), "cpus": os.cpu_count()}
    try:
        lscpu = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
        for line in lscpu.splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "Model name":
                info["cpu_model"] = value.strip()
    except (OSError, subprocess.CalledProcessError):
        pass
    try:
        with open("/proc/meminfo") as meminfo:
            info["memory_kb"] = int(meminfo.readline().split()[1])
    except OSError:
        pass
    return info


def main():
    folder = sys.argv[1]
    runs = {}
    for name in sorted(os.listdir(folder)):
        if name.endswith(".json") and name != "bench.json":
            with open(os.path.join(folder, name)) as handle:
                runs[name[:-5]] = json.load(handle)
    memory = {}
    if len(sys.argv) > 2 and os.path.exists(sys.argv[2]):
        with open(sys.argv[2]) as handle:
            for line in handle:
                key, _, value = line.partition(":")
                if value.strip():
                    memory[key.strip()] = value.strip()

    headline = runs.get("eventflow-max")
    insert = runs.get("baseline-insert")
    copy = runs.get("baseline-copy")
    ratios = {}
    if headline and insert and insert["events_per_second"] > 0:
        ratios["eventflow_vs_insert_events"] = headline["events_per_second"] / insert["events_per_second"]
    if headline and copy and copy["mb_per_second"] > 0:
        ratios["eventflow_vs_copy_bytes"] = headline["mb_per_second"] / copy["mb_per_second"]
    attached = runs.get("eventflow-max-tail-consumer")
    if headline and attached and headline["events_per_second"] > 0:
        ratios["ingest_with_tail_consumer_vs_without"] = attached["events_per_second"] / headline["events_per_second"]
    e2e, e2e_acks = runs.get("consume-e2e-50"), runs.get("eventflow-e2e-50")
    if e2e and e2e_acks:
        ratios["e2e_p99_minus_durable_ack_p99_ms"] = e2e["latency_ms"]["p99"] - e2e_acks["latency_ms"]["p99"]

    group = group_numbers(runs)
    if group:
        ratios.update({key: value for key, value in group.items() if key.startswith("group_vs_")})

    rss_path = os.path.join(folder, "broker-rss.txt")
    if os.path.exists(rss_path):
        with open(rss_path) as handle:
            samples = [int(line.split()[1]) for line in handle if len(line.split()) == 2]
        if samples:
            memory["rss_kb_min"] = min(samples)
            memory["rss_kb_max"] = max(samples)
            memory["rss_kb_last"] = samples[-1]
            memory["rss_samples"] = len(samples)

    # The broker's peak RSS during each run.
    rss_by_run = {}
    times_path = os.path.join(folder, "run-times.txt")
    if os.path.exists(rss_path) and os.path.exists(times_path):
        with open(rss_path) as handle:
            rss = [tuple(map(int, line.split())) for line in handle if len(line.split()) == 2]
        spans = {}
        with open(times_path) as handle:
            for line in handle:
                when, name, edge = line.split()
                spans.setdefault(name, {})[edge] = int(when)
        for name, span in spans.items():
            inside = [kb for when, kb in rss if span.get("start", 0) <= when <= span.get("end", 1 << 62)]
            if inside:
                rss_by_run[name] = max(inside)
    for name, kb in rss_by_run.items():
        if name in runs:
            runs[name]["broker_rss_kb_max"] = kb

    curve = bench_stalls.analyse(folder, runs)
    summary = {"machine": machine(), "broker_memory": memory, "ratios": ratios, "runs": runs}
    if curve:
        summary["sweep"] = curve
        max_rate = runs.get("eventflow-max", {}).get("events_per_second")
        title = "EventFlow durable-ack latency against load" + (f" (max {max_rate:,.0f} events/s)" if max_rate else "")
        with open(os.path.join(folder, "latency-curve.svg"), "w") as handle:
            handle.write(bench_stalls.curve_svg(curve, title))
    if group:
        summary["group"] = group
    with open(os.path.join(folder, "bench.json"), "w") as handle:
        json.dump(summary, handle, indent=2, sort_keys=True)

    header = ["run", "connections", "rate", "events/s", "MB/s", "p50 ms", "p99 ms", "p99.9 ms", "max ms", "errors",
              "broker RSS MB"]
    rows = []
    order = ["eventflow-max", "baseline-insert", "baseline-copy"] + \
        sorted((n for n in runs if n.startswith("eventflow-rate-")), key=lambda n: int(n.rsplit("-", 1)[1])) + \
        sorted(n for n in runs if n.startswith("eventflow-connections-")) + \
        sorted(n for n in runs if n.startswith("eventflow-overload")) + \
        ["consume-tail", "consume-tail-skip", "consume-tail-2", "consume-catch-up", "eventflow-max-tail-consumer", "consume-max-tail",
         "eventflow-e2e-50", "consume-e2e-50", "eventflow-group-producer"] + \
        sorted(n for n in runs if n.startswith("consume-group-"))
    for name in order:
        run = runs.get(name)
        if not run:
            continue
        latency = run["latency_ms"]
        rate = run["config"]["rate"]
        consumer = run["mode"] == "consume"
        # A consumer's latency is produce -> consume, and only measured with --latency.
        timed = not consumer or run["config"].get("latency_from_send_time")
        ms = (lambda value: f"{value:.2f}") if timed else (lambda value: "-")
        rows.append([name, str(run["config"]["connections"]), "read" if consumer else (f"{rate:,}" if rate else "max"),
                     f"{run['events_per_second']:,.0f}", f"{run['mb_per_second']:.1f}",
                     ms(latency['p50']), ms(latency['p99']), ms(latency['p999']),
                     ms(latency['max']), str(run["errors"]),
                     f"{run['broker_rss_kb_max'] / 1024:.0f}" if "broker_rss_kb_max" in run else "-"])
    widths = [max(len(row[i]) for row in [header] + rows) for i in range(len(header))]
    print()
    print("| " + " | ".join(h.ljust(w) for h, w in zip(header, widths)) + " |")
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for row in rows:
        print("| " + " | ".join(c.ljust(w) for c, w in zip(row, widths)) + " |")
    print()
    if "eventflow_vs_insert_events" in ratios:
        print(f"EventFlow / INSERT baseline (events/s):  {ratios['eventflow_vs_insert_events']:.2f}x")
    if "eventflow_vs_copy_bytes" in ratios:
        print(f"EventFlow / COPY limit (bytes/s):        {ratios['eventflow_vs_copy_bytes']:.2f}x")
    bench_stalls.print_sweep(curve, runs)
    consume_summary(runs, ratios)
    group_summary(group)
    if memory:
        print("broker memory: " + ", ".join(f"{k} {v}" for k, v in memory.items()))
    print(f"results: {os.path.join(folder, 'bench.json')}")


def consume_summary(runs, ratios):
    """The consume targets of issue 10, met or missed."""
    lines = []

    def verdict(met):
        return "met" if met else "MISSED"

    for name, label, target in [("consume-tail", "tail read (messages)", 2_000_000),
                                ("consume-tail-skip", "tail read (skip)", 2_000_000),
                                ("consume-tail-2", "tail read (messages, 2 consumers)", 2_000_000),
                                ("consume-catch-up", "catch-up from PostgreSQL", 1_000_000)]:
        run = runs.get(name)
        if run:
            lines.append(f"{label:<34} {run['events_per_second']:>12,.0f} events/s over {run['events']:,} events"
                         f"  (target >= {target:,}: {verdict(run['events_per_second'] >= target)})")
    e2e, acks = runs.get("consume-e2e-50"), runs.get("eventflow-e2e-50")
    if e2e and acks:
        difference = ratios["e2e_p99_minus_durable_ack_p99_ms"]
        lines.append(f"{'end to end at 50% (p50 / p99 ms)':<34} {e2e['latency_ms']['p50']:.2f} / {e2e['latency_ms']['p99']:.2f}"
                     f"  durable ack {acks['latency_ms']['p50']:.2f} / {acks['latency_ms']['p99']:.2f}"
                     f"  p99 difference {difference:+.2f} ms (target <= 5: {verdict(difference <= 5)})")
    if "ingest_with_tail_consumer_vs_without" in ratios:
        ratio = ratios["ingest_with_tail_consumer_vs_without"]
        lines.append(f"{'max ingest with a tail consumer':<34} {ratio:.2f}x of eventflow-max (target >= 0.85: {verdict(ratio >= 0.85)})")
    if lines:
        print("consume:")
        for line in lines:
            print("  " + line)


# Group members: consume-group-1..4 start together, consume-group-5 joins later (bench.sh, run e).
GROUP_INITIAL = [f"consume-group-{i}" for i in range(1, 5)]
GROUP_JOINER = "consume-group-5"
# The broker's initial rebalance delay (group.initial.rebalance.delay.ms), the rebalance target's unit.
INITIAL_REBALANCE_DELAY_MS = 3000


def records_at(member, when_ms):
    """A member's records read by `when_ms` (monotonic), interpolated between its 250 ms samples."""
    group = member["group"]
    points = [(group["start_monotonic_ms"] + at, count) for at, count in group["records_read"]]
    if not points or when_ms <= points[0][0]:
        return 0.0
    for (t0, c0), (t1, c1) in zip(points, points[1:]):
        if t0 <= when_ms <= t1:
            return c0 + (c1 - c0) * ((when_ms - t0) / (t1 - t0) if t1 > t0 else 1)
    return float(points[-1][1])


def assignments(member):
    """(monotonic ms, partitions, {partition: first record monotonic ms}) of each `assigned` event."""
    group = member["group"]
    start = group["start_monotonic_ms"]
    return [(start + event["at_ms"], event["partitions"],
             {int(p): start + ms for p, ms in event["first_record_ms"].items()})
            for event in group["events"] if event["kind"] == "assigned"]


def group_numbers(runs):
    """The group's events/s before the 5th member joins and the rebalance time after it, from the
    members' JSON files (one monotonic clock on the machine lines them up)."""
    initial = [runs[n] for n in GROUP_INITIAL if n in runs and "group" in runs[n]]
    joiner = runs.get(GROUP_JOINER)
    if len(initial) != len(GROUP_INITIAL) or not joiner or "group" not in joiner:
        return None
    partitions = initial[0]["config"]["partitions"]
    joined_ms = joiner["group"]["start_monotonic_ms"]
    result = {"members": len(initial) + 1, "partitions": partitions}

    # Steady window: from the moment every partition delivered a record under the first complete
    # assignment (the initial join waits out the 3 s delay) to the 5th member's start.
    first_round = [a for member in initial for a in assignments(member)[:1] if a[0] < joined_ms]
    covered = {p for _, parts, _ in first_round for p in parts}
    firsts = [ms for _, _, records in first_round for ms in records.values()]
    if covered == set(range(partitions)) and len(firsts) == partitions:
        steady_start = max(firsts)
        seconds = (joined_ms - steady_start) / 1000
        if seconds >= 1:
            events = sum(records_at(m, joined_ms) - records_at(m, steady_start) for m in initial)
            result.update({"steady_window_s": seconds, "events": events, "events_per_second": events / seconds})
            for name in ["consume-e2e-50", "consume-tail"]:
                single = runs.get(name)
                if single and single["events_per_second"] > 0:
                    key = "group_vs_" + name.replace("-", "_")
                    result[key] = result["events_per_second"] / single["events_per_second"]

    # Rebalance: each member's first assignment after the 5th member's start; done when all five
    # have theirs and every partition in them delivered a record.
    after = [next((a for a in assignments(m) if a[0] >= joined_ms), None) for m in initial + [joiner]]
    result["assigned_after_join"] = [sorted(a[1]) if a else None for a in after]
    if all(after):
        owned = [p for a in after for p in a[1]]
        firsts = [a[2].get(p) for a in after for p in a[1]]
        assigned_ms = max(a[0] for a in after)
        result["rebalance_assigned_ms"] = assigned_ms - joined_ms
        if sorted(owned) == list(range(partitions)) and all(ms is not None for ms in firsts):
            result["rebalance_ms"] = max([assigned_ms] + firsts) - joined_ms
        elif sorted(owned) != list(range(partitions)):
            result["rebalance_problem"] = f"the new assignments cover {sorted(owned)}, not each of {partitions} partitions once"
        else:
            result["rebalance_problem"] = "a newly assigned partition delivered no record before the run ended"
    else:
        result["rebalance_problem"] = "a member got no new assignment after the 5th member's start"
    result["heartbeat_interval_ms"] = joiner["group"]["heartbeat_interval_ms"]
    return result


def group_summary(group):
    """The group targets of issue 11, met or missed."""
    if not group:
        return

    def verdict(met):
        return "met" if met else "MISSED"

    print("consumer group (4 members, 8 partitions, at the tail beside a producer at 50%):")
    if "events_per_second" in group:
        line = f"  group read rate {group['events_per_second']:>12,.0f} events/s over {group['steady_window_s']:.1f} s"
        if "group_vs_consume_e2e_50" in group:
            ratio = group["group_vs_consume_e2e_50"]
            line += (f"  {ratio:.2f}x of the single tail consumer beside the same producer (consume-e2e-50)"
                     f" (target within 10%: {verdict(ratio >= 0.9)})")
        print(line)
        if "group_vs_consume_tail" in group:
            print(f"  {'':16}{group['group_vs_consume_tail']:.2f}x of consume-tail (a stored tail read at full speed,"
                  " no producer: an upper bound the producer's rate keeps the group under)")
    else:
        print("  group read rate: no steady window (the first assignment did not cover every partition before the join)")
    if "rebalance_ms" in group:
        ms = group["rebalance_ms"]
        print(f"  rebalance (5th member joins) {ms:,.0f} ms until every partition delivered again; every member assigned after"
              f" {group['rebalance_assigned_ms']:,.0f} ms (target < {2 * INITIAL_REBALANCE_DELAY_MS:,} ms:"
              f" {verdict(ms < 2 * INITIAL_REBALANCE_DELAY_MS)}); heartbeat {group['heartbeat_interval_ms']} ms")
    else:
        print(f"  rebalance: not completed ({group.get('rebalance_problem')}): MISSED")
    print(f"  assignments after the join: {group['assigned_after_join']}")


if __name__ == "__main__":
    main()
