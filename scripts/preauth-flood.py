#!/usr/bin/env python3
"""Pre-authentication memory check against a running `eventflow serve`.

Opens CONNECTIONS TLS connections that never authenticate; each sends one ApiVersions frame whose
size prefix claims 100 MiB and then tries to send 99 MiB of filler. Prints the broker's resident
memory (VmRSS of --pid) before, during and after, and how many bytes each connection got in
before the broker closed it.

    scripts/preauth-flood.py --port 9092 --ca DATA/tls/ca.pem --pid $(pgrep -f 'eventflow serve')
"""
import argparse
import socket
import ssl
import struct
import threading
import time


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def attack(host, port, context, claimed, filler, results, index):
    sent = 0
    try:
        raw = socket.create_connection((host, port), timeout=30)
        conn = context.wrap_socket(raw, server_hostname="localhost")
        # size prefix, then an ApiVersions v3 header start: api key 18, version 3, correlation id 1
        conn.sendall(struct.pack(">ihhi", claimed, 18, 3, 1))
        sent = 12
        chunk = b"\0" * (1 << 20)
        while sent < filler:
            conn.sendall(chunk)
            sent += len(chunk)
        results[index] = ("not closed", sent)
    except (OSError, ssl.SSLError) as error:
        results[index] = (type(error).__name__, sent)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9092)
    parser.add_argument("--ca", required=True)
    parser.add_argument("--pid", type=int, required=True)
    parser.add_argument("--connections", type=int, default=6)
    args = parser.parse_args()

    context = ssl.create_default_context(cafile=args.ca)
    before = rss_kib(args.pid)
    results = [None] * args.connections
    threads = [threading.Thread(target=attack, args=(args.host, args.port, context, 100 << 20, 99 << 20, results, i))
               for i in range(args.connections)]
    for thread in threads:
        thread.start()
    peak = before
    while any(thread.is_alive() for thread in threads):
        peak = max(peak, rss_kib(args.pid))
        time.sleep(0.05)
    time.sleep(1)
    after = rss_kib(args.pid)
    for index, (outcome, sent) in enumerate(results):
        print(f"connection {index}: {outcome} after {sent:,} bytes sent")
    print(f"broker VmRSS: before {before / 1024:.1f} MiB, peak {peak / 1024:.1f} MiB, after {after / 1024:.1f} MiB "
          f"(+{(peak - before) / 1024:.1f} MiB at peak)")


if __name__ == "__main__":
    main()
