#!/usr/bin/env python3
"""Checks docker-compose.yml and the Dockerfile without a Docker engine.

The compose file must parse and name what a deployment needs (PostgreSQL 15 with a volume and a
healthcheck, the broker built here with DATABASE_URL, a certificates volume and a published port,
the load generator under the `bench` profile), and every flag it passes to `eventflow serve` or
`eventflow-loadgen` must exist in that binary's --help.

Usage: scripts/check-compose.py [BIN_DIR]   (default .build/debug)
"""
import os
import re
import subprocess
import sys

import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
problems = []


def check(condition, message):
    if not condition:
        problems.append(message)


def flags_in(arguments):
    return [a.split("=", 1)[0] for a in arguments if isinstance(a, str) and a.startswith("--")]


def help_flags(command):
    try:
        output = subprocess.run(command, capture_output=True, text=True, timeout=60).stdout
    except OSError as error:
        problems.append(f"cannot run {' '.join(command)}: {error}")
        return set()
    return set(re.findall(r"--[a-z0-9][a-z0-9-]*", output))


def main():
    bin_dir = sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, ".build", "debug")
    with open(os.path.join(ROOT, "docker-compose.yml")) as handle:
        compose = yaml.safe_load(handle)
    services = compose.get("services") or {}
    check(set(services) >= {"postgres", "broker", "loadgen"}, f"services are {sorted(services)}")

    postgres = services.get("postgres", {})
    check(str(postgres.get("image", "")).startswith("postgres:15"), "postgres: image postgres:15")
    check(any(str(v).endswith(":/var/lib/postgresql/data") for v in postgres.get("volumes", [])),
          "postgres: a volume at /var/lib/postgresql/data")
    check("test" in (postgres.get("healthcheck") or {}), "postgres: a healthcheck")

    broker = services.get("broker", {})
    check("build" in broker, "broker: built from the Dockerfile")
    check(str((broker.get("environment") or {}).get("DATABASE_URL", "")).startswith("postgresql://"),
          "broker: DATABASE_URL")
    check((broker.get("depends_on") or {}).get("postgres", {}).get("condition") == "service_healthy",
          "broker: waits for a healthy postgres")
    check(any(":/var/lib/eventflow/tls" in str(v) for v in broker.get("volumes", [])), "broker: certificates volume")
    check(any(str(p).endswith(":9092") for p in broker.get("ports", [])), "broker: port 9092 published")
    command = broker.get("command", [])
    check(command[:1] == ["serve"], "broker: runs `eventflow serve`")
    check(any(str(p).endswith(":9644") for p in broker.get("ports", [])), "broker: metrics port 9644 published")
    check("/ready" in " ".join(map(str, (broker.get("healthcheck") or {}).get("test", []))), "broker: healthcheck on /ready")

    prometheus = services.get("prometheus", {})
    check("observe" in (prometheus.get("profiles") or []), "prometheus: under the observe profile")
    scrape_config = os.path.join(ROOT, "docs", "prometheus.yml")
    check(any(str(v).startswith("./docs/prometheus.yml:") for v in prometheus.get("volumes", [])), "prometheus: mounts docs/prometheus.yml")
    targets = [t for job in (yaml.safe_load(open(scrape_config)).get("scrape_configs") or [])
               for c in job.get("static_configs", []) for t in c.get("targets", [])]
    check("broker:9644" in targets, f"prometheus: scrapes broker:9644 (targets {targets})")

    loadgen = services.get("loadgen", {})
    check("bench" in (loadgen.get("profiles") or []), "loadgen: under the bench profile")
    check(str(loadgen.get("entrypoint", [""])[0]).endswith("eventflow-loadgen"), "loadgen: runs eventflow-loadgen")
    check(set((loadgen.get("environment") or {})) >= {"EVENTFLOW_BROKERS", "EVENTFLOW_API_KEY", "EVENTFLOW_API_SECRET",
                                                      "EVENTFLOW_CA"}, "loadgen: broker, key and CA environment")
    named = set((compose.get("volumes") or {}).keys())
    for service_name, service in services.items():
        for volume in service.get("volumes", []) or []:
            source = str(volume).split(":", 1)[0]
            if not source.startswith((".", "/")):
                check(source in named, f"{service_name}: volume {source} is declared")

    dockerfile = open(os.path.join(ROOT, "Dockerfile")).read()
    check("/usr/local/share/eventflow/prisma" in dockerfile, "Dockerfile: migrations at <prefix>/share/eventflow/prisma")
    check("libpq5" in dockerfile and "liblz4-1" in dockerfile, "Dockerfile: runtime libpq5 and liblz4-1")
    cmd = re.search(r"^CMD (\[.*\])", dockerfile, re.M)

    eventflow = os.path.join(bin_dir, "eventflow")
    loadgen_bin = os.path.join(bin_dir, "eventflow-loadgen")
    serve_flags = help_flags([eventflow, "serve", "--help"])
    loadgen_flags = help_flags([loadgen_bin, "produce", "--help"])
    used_serve = flags_in(command[1:])
    if cmd:
        used_serve += flags_in(yaml.safe_load(cmd.group(1))[1:])
    for flag in used_serve:
        check(flag in serve_flags, f"`eventflow serve` has no {flag}")
    for flag in flags_in(loadgen.get("command", [])):
        check(flag in loadgen_flags, f"`eventflow-loadgen` has no {flag}")

    if problems:
        for problem in problems:
            print(f"check-compose: {problem}", file=sys.stderr)
        sys.exit(1)
    print(f"check-compose: docker-compose.yml and Dockerfile ok ({len(used_serve)} serve flags, "
          f"{len(flags_in(loadgen.get('command', [])))} loadgen flags checked against --help)")


if __name__ == "__main__":
    main()
