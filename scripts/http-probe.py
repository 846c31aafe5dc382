#!/usr/bin/env python3
"""GET a URL of the broker's HTTP listener and print what came back as one JSON line, for tests.

usage: http-probe.py URL [--prometheus]

Prints {"status": 200, "body": "..."}; with --prometheus and a 200 the body is parsed by
prometheus_client's text parser (the format Prometheus scrapes) and
"samples": [{"name", "labels", "value"}, ...] is added; a body the parser refuses exits 1.
"""
import json
import sys
import urllib.error
import urllib.request


def main():
    if len(sys.argv) < 2:
        print(__doc__, file=sys.stderr)
        return 2
    url, prometheus = sys.argv[1], "--prometheus" in sys.argv[2:]
    try:
        with urllib.request.urlopen(url, timeout=30) as response:
            status, body, content_type = response.status, response.read().decode(), response.headers.get("Content-Type")
    except urllib.error.HTTPError as error:
        status, body, content_type = error.code, error.read().decode(), error.headers.get("Content-Type")
    result = {"status": status, "body": body, "contentType": content_type}
    if prometheus and status == 200:
        from prometheus_client.parser import text_string_to_metric_families
        try:
            result["samples"] = [{"name": sample.name, "labels": sample.labels, "value": sample.value}
                                 for family in text_string_to_metric_families(body) for sample in family.samples]
        except Exception as error:  # the parser's verdict is the test's
            print(f"http-probe: not Prometheus text: {error}", file=sys.stderr)
            return 1
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
