"""The latency sweep's analysis for bench_report.py: the curve (SVG), the broker's ingest stages per
run and per second (from scripts/stall-monitor.py's samples of /metrics), and each stalled second
beside what PostgreSQL (postgres.log, pg_stat_wal, pg_stat_bgwriter) and the kernel (/proc/meminfo,
/proc/vmstat) did in it."""
import datetime
import json
import os
import re

# The broker's stages in the order a batch passes them (IngestStage in the broker).
BROKER_STAGES = ["frame_to_accepted", "accepted_to_flush_started", "flush_started_to_copy_sent",
                 "copy_sent_to_committed", "committed_to_answered", "accepted_to_answered",
                 "answered_to_written", "frame_to_written"]
PRODUCER_STAGES = ["send_to_sealed", "sealed_to_written", "written_to_answered"]
LOG_LINE = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d(?:\.\d+)?) (\w+)? ?\[\d+\] (\w+):\s+(.*)$")


def sweep_runs(runs):
    names = [n for n in runs if n.startswith("eventflow-rate-")]
    return sorted(names, key=lambda n: int(n.rsplit("-", 1)[1]))


def load_monitor(folder):
    path = os.path.join(folder, "monitor.jsonl")
    samples = []
    if os.path.exists(path):
        with open(path) as handle:
            for line in handle:
                try:
                    samples.append(json.loads(line))
                except ValueError:
                    pass
    return samples


def load_postgres_log(folder):
    """[(epoch seconds, kind, text)]: checkpoint starts/ends, slow statements, autovacuum runs."""
    path = os.path.join(folder, "postgres.log")
    events = []
    if not os.path.exists(path):
        return events
    with open(path, errors="replace") as handle:
        for line in handle:
            match = LOG_LINE.match(line.strip())
            if not match:
                continue
            stamp, _, _, message = match.groups()
            try:
                when = datetime.datetime.strptime(stamp, "%Y-%m-%d %H:%M:%S.%f")
            except ValueError:
                when = datetime.datetime.strptime(stamp, "%Y-%m-%d %H:%M:%S")
            when = when.replace(tzinfo=datetime.timezone.utc).timestamp()
            if message.startswith("checkpoint starting"):
                events.append((when, "checkpoint_start", message))
            elif message.startswith("checkpoint complete"):
                events.append((when, "checkpoint_end", message))
            elif message.startswith("duration:"):
                events.append((when, "slow_statement", message[:160]))
            elif message.startswith("automatic vacuum") or message.startswith("automatic analyze"):
                events.append((when, "autovacuum", message[:160]))
    return events


def bucket_percentile(buckets, percentile):
    """Upper bound (ms) of the bucket holding the percentile of [(le seconds, count)] (non-cumulative)."""
    total = sum(count for _, count in buckets)
    if total <= 0:
        return None
    rank = total * percentile / 100
    seen = 0
    for le, count in buckets:
        seen += count
        if seen >= rank:
            return None if le == float("inf") else round(le * 1000, 3)
    return None


def stage_delta(first, last):
    """{stage: [(le, count)]} of what happened between two /metrics samples."""
    result = {}
    if not first or not last:
        return result
    for stage, entry in last.items():
        before = {le: count for le, count in (first.get(stage) or {}).get("buckets", [])}
        cumulative = []
        for le, count in entry["buckets"]:
            cumulative.append((float("inf") if le == "+Inf" else float(le), count - before.get(le, 0)))
        cumulative.sort()
        plain, previous = [], 0
        for le, count in cumulative:
            plain.append((le, max(count - previous, 0)))
            previous = count
        result[stage] = plain
    return result


def stage_summary(delta, percentiles=(50, 99, 99.9)):
    summary = {}
    for stage in BROKER_STAGES:
        buckets = delta.get(stage)
        if not buckets or sum(c for _, c in buckets) == 0:
            continue
        entry = {"count": int(sum(c for _, c in buckets))}
        for p in percentiles:
            entry["p" + str(p).replace(".", "")] = bucket_percentile(buckets, p)
        summary[stage] = entry
    return summary


def sample_at(samples, epoch):
    """The last sample taken at or before `epoch`."""
    chosen = None
    for sample in samples:
        if sample["t"] <= epoch:
            chosen = sample
        else:
            break
    return chosen


def second_context(samples, pg_events, start, end):
    """What PostgreSQL and the kernel did between `start` and `end` (epoch seconds)."""
    first, last = sample_at(samples, start), sample_at(samples, end)
    context = {}
    if first and last and last is not first:
        seconds = max(last["t"] - first["t"], 0.001)
        context["sampled_seconds"] = round(seconds, 2)
        context["dirty_mb"] = round(last.get("dirty_kb", 0) / 1024, 1)
        context["writeback_mb"] = round(last.get("writeback_kb", 0) / 1024, 1)
        context["disk_written_mb"] = round((last.get("pgpgout", 0) - first.get("pgpgout", 0)) / 1024, 1)
        ticks = sum(last.get(k, 0) - first.get(k, 0) for k in ("cpu_user", "cpu_nice", "cpu_system", "cpu_idle",
                                                                 "cpu_iowait", "cpu_irq", "cpu_softirq", "cpu_steal"))
        if ticks > 0:
            context["cpu_busy_percent"] = round(100 * (1 - (last.get("cpu_idle", 0) - first.get("cpu_idle", 0)
                                                            + last.get("cpu_iowait", 0) - first.get("cpu_iowait", 0)) / ticks), 1)
            context["cpu_iowait_percent"] = round(100 * (last.get("cpu_iowait", 0) - first.get("cpu_iowait", 0)) / ticks, 1)
            context["cpu_steal_percent"] = round(100 * (last.get("cpu_steal", 0) - first.get("cpu_steal", 0)) / ticks, 1)
        if "disk_flushes" in last and "disk_flushes" in first:
            flushes = last["disk_flushes"] - first["disk_flushes"]
            context["disk_flushes"] = flushes
            if flushes:
                context["disk_flush_ms_mean"] = round((last["disk_flush_ms"] - first["disk_flush_ms"]) / flushes, 2)
            context["disk_writes_mb"] = round((last["disk_sectors_written"] - first["disk_sectors_written"]) * 512 / 1e6, 1)
        pg0, pg1 = first.get("pg") or {}, last.get("pg") or {}
        wal0, wal1 = pg0.get("wal") or {}, pg1.get("wal") or {}
        if wal0 and wal1:
            context["wal_mb"] = round((wal1["wal_bytes"] - wal0["wal_bytes"]) / 1e6, 1)
            context["wal_fpi"] = wal1["wal_fpi"] - wal0["wal_fpi"]
            context["wal_buffers_full"] = wal1["wal_buffers_full"] - wal0["wal_buffers_full"]
            syncs = wal1["wal_sync"] - wal0["wal_sync"]
            context["wal_syncs"] = syncs
            if syncs:
                context["wal_sync_ms_mean"] = round((wal1["wal_sync_time"] - wal0["wal_sync_time"]) / syncs, 2)
        bg0, bg1 = pg0.get("bgwriter") or {}, pg1.get("bgwriter") or {}
        if bg0 and bg1:
            context["buffers_backend"] = bg1["buffers_backend"] - bg0["buffers_backend"]
            context["buffers_clean"] = bg1["buffers_clean"] - bg0["buffers_clean"]
        context["autovacuum_workers"] = max((s.get("pg") or {}).get("autovacuum", 0) or 0
                                            for s in samples if start - 1 <= s["t"] <= end)
        context["stages"] = {stage: v.get("p99") for stage, v in
                             stage_summary(stage_delta(first.get("stages"), last.get("stages")), (99,)).items()}
    checkpointing = False
    open_start = None
    for when, kind, _ in pg_events:
        if kind == "checkpoint_start":
            open_start = when
        elif kind == "checkpoint_end":
            if open_start is not None and open_start <= end and when >= start:
                checkpointing = True
            open_start = None
    if open_start is not None and open_start <= end:
        checkpointing = True
    context["checkpoint_in_progress"] = checkpointing
    context["postgres_log"] = [text for when, kind, text in pg_events
                               if start - 0.5 <= when <= end + 0.5 and kind != "checkpoint_start"][:6]
    return context


def analyse(folder, runs):
    """Adds broker stages, the worst second and the stalls to each sweep run; returns the curve."""
    samples = load_monitor(folder)
    pg_events = load_postgres_log(folder)
    marks = {}
    times_path = os.path.join(folder, "run-times.txt")
    if os.path.exists(times_path):
        with open(times_path) as handle:
            for line in handle:
                when, name, edge = line.split()
                if edge == "start":
                    marks[name] = int(when)
    curve = []
    for name in sweep_runs(runs) + [n for n in ("eventflow-max",) if n in runs]:
        run = runs[name]
        start_ms = run.get("start_monotonic_ms")
        warmup = run["config"].get("warmup_seconds", 0)
        duration = run["config"].get("duration_seconds", 0)
        if (start_ms is not None or name in marks) and samples:
            if start_ms is not None:
                # Monotonic -> epoch through the monitor's own pairs of clocks.
                start = start_ms / 1000 + samples[0]["t"] - samples[0]["monotonic"]
            else:
                # A loadgen without start_monotonic_ms: bench.sh's mark (whole seconds, just before the start).
                start = marks[name] + 0.5
            first, last = sample_at(samples, start + warmup), sample_at(samples, start + warmup + duration)
            if first and last and last is not first:
                run["broker_stages_ms"] = stage_summary(stage_delta(first.get("stages"), last.get("stages")))
            timeline = [s for s in run.get("timeline", []) if s["second"] > warmup + 0.5]
            if timeline:
                p99s = sorted(s["p99_ms"] for s in timeline)
                median = p99s[len(p99s) // 2]
                worst = max(timeline, key=lambda s: s["p99_ms"])
                run["worst_second"] = {"second": round(worst["second"], 1), "p99_ms": worst["p99_ms"],
                                       "events_per_second": round(worst["events_per_second"]),
                                       "producer_stages_p99_ms": worst.get("stages_p99_ms"),
                                       **second_context(samples, pg_events, start + worst["second"] - 1, start + worst["second"])}
                threshold = max(3 * median, 25)
                run["stalls"] = [{"second": round(s["second"], 1), "p99_ms": s["p99_ms"],
                                  "producer_stages_p99_ms": s.get("stages_p99_ms"),
                                  **second_context(samples, pg_events, start + s["second"] - 1, start + s["second"])}
                                 for s in timeline if s["p99_ms"] > threshold]
                run["median_second_p99_ms"] = median
        if name.startswith("eventflow-rate-"):
            latency = run["latency_ms"]
            curve.append({"percent": int(name.rsplit("-", 1)[1]), "target_rate": run["config"]["rate"],
                          "events_per_second": run["events_per_second"], "p50_ms": latency["p50"],
                          "p99_ms": latency["p99"], "p999_ms": latency["p999"], "max_ms": latency["max"]})
    return curve


def curve_svg(curve, title):
    """p50, p99 and p99.9 against throughput, log latency axis."""
    import math
    width, height, left, right, top, bottom = 760, 420, 70, 20, 40, 50
    if not curve:
        return ""
    xmax = max(point["events_per_second"] for point in curve) * 1.05
    values = [point[k] for point in curve for k in ("p50_ms", "p99_ms", "p999_ms") if point[k] > 0]
    ymin = 10 ** math.floor(math.log10(min(values + [1])))
    ymax = 10 ** math.ceil(math.log10(max(values + [10])))

    def x(value):
        return left + (width - left - right) * value / xmax

    def y(value):
        value = max(value, ymin)
        return top + (height - top - bottom) * (1 - (math.log10(value) - math.log10(ymin)) / (math.log10(ymax) - math.log10(ymin)))

    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="sans-serif" font-size="12">',
             f'<rect width="{width}" height="{height}" fill="white"/>',
             f'<text x="{width / 2}" y="20" text-anchor="middle" font-size="14">{title}</text>']
    decade = ymin
    while decade <= ymax:
        for factor in (1, 2, 5):
            value = decade * factor
            if value > ymax:
                break
            parts.append(f'<line x1="{left}" x2="{width - right}" y1="{y(value):.1f}" y2="{y(value):.1f}" stroke="#ddd"/>')
            parts.append(f'<text x="{left - 6}" y="{y(value) + 4:.1f}" text-anchor="end">{value:g}</text>')
        decade *= 10
    for target, label in ((10, "10 ms"), (25, "25 ms")):
        if ymin <= target <= ymax:
            parts.append(f'<line x1="{left}" x2="{width - right}" y1="{y(target):.1f}" y2="{y(target):.1f}" stroke="#c00" stroke-dasharray="4 4"/>')
    steps = 5
    for i in range(steps + 1):
        value = xmax * i / steps
        parts.append(f'<text x="{x(value):.1f}" y="{height - bottom + 18}" text-anchor="middle">{value / 1000:,.0f}k</text>')
    parts.append(f'<text x="{width / 2}" y="{height - 8}" text-anchor="middle">durable events/s (acks=all, TLS, 8 producers)</text>')
    parts.append(f'<text x="16" y="{height / 2}" transform="rotate(-90 16 {height / 2})" text-anchor="middle">latency, ms (log)</text>')
    for key, color, label in (("p50_ms", "#1f77b4", "p50"), ("p99_ms", "#ff7f0e", "p99"), ("p999_ms", "#2ca02c", "p99.9")):
        points = " ".join(f"{x(p['events_per_second']):.1f},{y(p[key]):.1f}" for p in curve)
        parts.append(f'<polyline fill="none" stroke="{color}" stroke-width="2" points="{points}"/>')
        for p in curve:
            parts.append(f'<circle cx="{x(p["events_per_second"]):.1f}" cy="{y(p[key]):.1f}" r="3" fill="{color}"/>')
    for i, (color, label) in enumerate((("#1f77b4", "p50"), ("#ff7f0e", "p99"), ("#2ca02c", "p99.9"), ("#c00", "targets 10 / 25 ms"))):
        parts.append(f'<rect x="{left + 10 + i * 110}" y="{top + 4}" width="12" height="12" fill="{color}"/>')
        parts.append(f'<text x="{left + 26 + i * 110}" y="{top + 14}">{label}</text>')
    for p in curve:
        parts.append(f'<text x="{x(p["events_per_second"]):.1f}" y="{height - bottom - 4}" text-anchor="middle" fill="#888" font-size="10">{p["percent"]}%</text>')
    parts.append("</svg>")
    return "\n".join(parts)


def print_sweep(curve, runs):
    if not curve:
        return
    print("latency sweep (durable acks; % of max rate):")
    print("  " + " ".join(f"{h:>10}" for h in ["load", "events/s", "p50 ms", "p99 ms", "p99.9 ms", "max ms"]))
    for p in curve:
        print("  " + " ".join(f"{v:>10}" for v in [f"{p['percent']}%", f"{p['events_per_second']:,.0f}", f"{p['p50_ms']:.2f}",
                                                     f"{p['p99_ms']:.2f}", f"{p['p999_ms']:.2f}", f"{p['max_ms']:.2f}"]))
    by_percent = {p["percent"]: p for p in curve}
    if 50 in by_percent:
        p = by_percent[50]
        met = p["p99_ms"] <= 10 and p["p999_ms"] <= 25
        print(f"  target at 50%: p99 <= 10 ms and p99.9 <= 25 ms: {p['p99_ms']:.2f} / {p['p999_ms']:.2f} ({'met' if met else 'MISSED'})")
    if 75 in by_percent:
        p = by_percent[75]
        print(f"  target at 75%: p99 <= 25 ms: {p['p99_ms']:.2f} ({'met' if p['p99_ms'] <= 25 else 'MISSED'})")
    for name in sweep_runs(runs):
        run = runs[name]
        worst = run.get("worst_second")
        if not worst:
            continue
        stages = worst.get("stages") or {}
        producer = worst.get("producer_stages_p99_ms") or {}
        print(f"  {name}: worst second {worst['second']} s p99 {worst['p99_ms']:.1f} ms;"
              f" producer p99 " + ", ".join(f"{k} {v:.1f}" for k, v in producer.items()) +
              "; broker p99 " + ", ".join(f"{k} {v}" for k, v in stages.items() if v is not None) +
              f"; checkpoint {'yes' if worst.get('checkpoint_in_progress') else 'no'}, dirty {worst.get('dirty_mb')} MB,"
              f" writeback {worst.get('writeback_mb')} MB, disk {worst.get('disk_written_mb')} MB,"
              f" WAL {worst.get('wal_mb')} MB, WAL fsync mean {worst.get('wal_sync_ms_mean')} ms,"
              f" disk flushes {worst.get('disk_flushes')} (mean {worst.get('disk_flush_ms_mean')} ms),"
              f" CPU busy {worst.get('cpu_busy_percent')}% steal {worst.get('cpu_steal_percent')}%, stalls {len(run.get('stalls', []))}")
