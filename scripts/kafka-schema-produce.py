#!/usr/bin/env python3
"""Produces to a schema-validated EventFlow stream with an existing Kafka client, over TLS + SASL
PLAIN, one record per request (flushed after each), and reports how each record fared. Used by the
broker's SchemaValidationTests.

usage: kafka-schema-produce.py CLIENT BOOTSTRAP CA_FILE KEY_ID SECRET TOPIC VALUE...

CLIENT  kafka-python | confluent
Prints one JSON line per value: {"index", "offset"} when acknowledged, {"index", "error"} when refused
(the client's own error name and message).
"""
import json
import sys

TIMEOUT_SECONDS = 60


def kafka_python(bootstrap, ca_file, key_id, secret, topic, values):
    from kafka import KafkaProducer
    producer = KafkaProducer(bootstrap_servers=bootstrap, security_protocol="SASL_SSL", sasl_mechanism="PLAIN",
                             sasl_plain_username=key_id, sasl_plain_password=secret, ssl_cafile=ca_file,
                             ssl_check_hostname=False, acks="all", retries=0)
    for index, value in enumerate(values):
        future = producer.send(topic, value=value.encode(), partition=0)
        producer.flush()
        try:
            metadata = future.get(timeout=TIMEOUT_SECONDS)
            print(json.dumps({"index": index, "offset": metadata.offset}), flush=True)
        except Exception as error:  # the client's own error type carries the code's name
            print(json.dumps({"index": index, "error": f"{type(error).__name__}: {error}"}), flush=True)
    producer.close()


def confluent(bootstrap, ca_file, key_id, secret, topic, values):
    from confluent_kafka import Producer
    producer = Producer({"bootstrap.servers": bootstrap, "security.protocol": "SASL_SSL", "sasl.mechanisms": "PLAIN",
                         "sasl.username": key_id, "sasl.password": secret, "ssl.ca.location": ca_file,
                         "ssl.endpoint.identification.algorithm": "none", "acks": "all",
                         "enable.idempotence": False, "retries": 0})
    for index, value in enumerate(values):
        outcome = {}

        def report(error, message, index=index, outcome=outcome):
            if error is not None:
                outcome.update({"index": index, "error": f"{error.name()}: {error.str()}"})
            else:
                outcome.update({"index": index, "offset": message.offset()})

        producer.produce(topic, value=value.encode(), partition=0, on_delivery=report)
        remaining = producer.flush(TIMEOUT_SECONDS)
        if remaining or not outcome:
            sys.exit(f"record {index} was not answered in {TIMEOUT_SECONDS} s")
        print(json.dumps(outcome), flush=True)


def main():
    if len(sys.argv) < 8:
        sys.exit(__doc__)
    client, bootstrap, ca_file, key_id, secret, topic = sys.argv[1:7]
    values = sys.argv[7:]
    {"kafka-python": kafka_python, "confluent": confluent}[client](bootstrap, ca_file, key_id, secret, topic, values)


if __name__ == "__main__":
    main()
