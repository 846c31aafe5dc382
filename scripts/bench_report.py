#!/usr/bin/env python3
"""Gathers the loadgen results of `make bench` into one JSON file and prints the table with the ratios.

Usage: bench_report.py RESULTS_DIR [MEMORY_FILE]
"""
import json
import os
import platform
import subprocess
import sys


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

    summary = {"machine": machine(), "broker_memory": memory, "ratios": ratios, "runs": runs}
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
         "eventflow-e2e-50", "consume-e2e-50"]
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
    consume_summary(runs, ratios)
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


if __name__ == "__main__":
    main()
