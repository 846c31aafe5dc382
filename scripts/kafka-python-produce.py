#!/usr/bin/env python3
"""Produces with kafka-python (an existing Kafka client) to an EventFlow broker over TLS + SASL
PLAIN with LZ4, idempotent, acks=all, and prints one JSON line per sent record:
{"partition": p, "offset": o}. Used by the broker's end-to-end test.

usage: kafka-python-produce.py BOOTSTRAP CA_FILE KEY_ID SECRET TOPIC COUNT
"""
import json
import sys

from kafka import KafkaProducer


def main():
    bootstrap, ca_file, key_id, secret, topic, count = sys.argv[1:7]
    producer = KafkaProducer(
        bootstrap_servers=bootstrap,
        security_protocol="SASL_SSL",
        ssl_cafile=ca_file,
        sasl_mechanism="PLAIN",
        sasl_plain_username=key_id,
        sasl_plain_password=secret,
        compression_type="lz4",
        acks="all",
        enable_idempotence=True,
        linger_ms=5,
        request_timeout_ms=15000,
    )
    futures = []
    for i in range(int(count)):
        value = json.dumps({"event": i, "kind": "kafka-python"}).encode()
        futures.append(producer.send(topic, key=str(i).encode(), value=value))
    producer.flush(timeout=30)
    for future in futures:
        metadata = future.get(timeout=30)
        print(json.dumps({"partition": metadata.partition, "offset": metadata.offset}))
    producer.close(timeout=10)


if __name__ == "__main__":
    main()
