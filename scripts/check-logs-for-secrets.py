#!/usr/bin/env python3
"""Greps the whole test suite's logs for the secrets it used (RELIABILITY.md, "Secrets in logs").

`make test` runs the Swift suite with EVENTFLOW_TEST_LOG_DIR set: every broker the suite starts
logs each line at debug level to <dir>/swift-tests-<pid>.log, and every API key secret the suite
creates or wrong secret it tries is written to <dir>/secrets-<pid>.txt. This script fails when
any log line holds any of those secrets — or when there is nothing to check, so that a suite
that stopped logging cannot pass unnoticed.
"""
import glob
import os
import sys


def check(directory):
    secrets = set()
    for path in glob.glob(os.path.join(directory, "secrets-*.txt")):
        with open(path) as f:
            secrets.update(line.strip() for line in f if line.strip())
    logs = sorted(glob.glob(os.path.join(directory, "*.log")))
    lines = 0
    leaks = []
    for path in logs:
        with open(path, errors="replace") as f:
            for number, line in enumerate(f, 1):
                lines += 1
                for secret in secrets:
                    if secret in line:
                        leaks.append(f"{os.path.basename(path)}:{number}: holds a secret ({secret[:8]}…)")
    return secrets, logs, lines, leaks


def self_test():
    import tempfile
    with tempfile.TemporaryDirectory() as folder:
        with open(os.path.join(folder, "secrets-1.txt"), "w") as f:
            f.write("efs_0123456789abcdef\n")
        with open(os.path.join(folder, "swift-tests-1.log"), "w") as f:
            f.write("1 notice broker: fine\n1 notice broker: password=efs_0123456789abcdef\n")
        _, _, lines, leaks = check(folder)
        assert lines == 2 and len(leaks) == 1, (lines, leaks)


def main():
    if len(sys.argv) != 2:
        raise SystemExit("usage: check-logs-for-secrets.py LOG_DIR")
    self_test()
    secrets, logs, lines, leaks = check(sys.argv[1])
    if not secrets or not lines:
        raise SystemExit(f"check-logs-for-secrets: nothing to check in {sys.argv[1]} "
                         f"({len(secrets)} secrets, {lines} log lines) — was EVENTFLOW_TEST_LOG_DIR passed to the suite?")
    for leak in leaks:
        print(f"check-logs-for-secrets: {leak}", file=sys.stderr)
    if leaks:
        raise SystemExit(f"check-logs-for-secrets: {len(leaks)} log lines hold secrets")
    print(f"check-logs-for-secrets: {len(secrets)} secrets, {lines} log lines in {len(logs)} files, none found")


if __name__ == "__main__":
    main()
