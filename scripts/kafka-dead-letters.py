#!/usr/bin/env python3
"""Dead-lettering with existing Kafka clients against an EventFlow broker, over TLS + SASL PLAIN,
as the ecosystem's frameworks do it: consume TOPIC from the beginning, and for every record with a
JSON value whose "fail" is true, produce the record (same key and value) to TOPIC.dlq with the
headers a framework writes. Used by the broker's DeadLetterTests.

usage: kafka-dead-letters.py CLIENT BOOTSTRAP CA_FILE KEY_ID SECRET TOPIC COUNT

CLIENT  kafka-python  Spring Kafka's DeadLetterPublishingRecoverer headers: kafka_dlt-original-topic,
                      kafka_dlt-original-partition (int32 big-endian), kafka_dlt-original-offset
                      (int64 big-endian), kafka_dlt-exception-message, kafka_dlt-exception-fqcn
        confluent     Kafka Connect's errors.deadletterqueue.context.headers.enable headers:
                      __connect.errors.topic, __connect.errors.partition, __connect.errors.offset
                      (decimal text), __connect.errors.exception.class.name, __connect.errors.exception.message

Reads COUNT records of TOPIC, then prints one JSON line per dead letter sent:
{"partition", "offset", "dlq_offset", "reason"} (partition and offset of the original record).
"""
import json
import struct
import sys
import time

TIMEOUT_SECONDS = 60


def failing(value):
    try:
        return bool(json.loads(value).get("fail"))
    except (ValueError, AttributeError, TypeError):
        return True  # not JSON: a deserialization failure, as a framework would dead-letter it


def spring_headers(topic, partition, offset, message):
    return [("kafka_dlt-original-topic", topic.encode()),
            ("kafka_dlt-original-partition", struct.pack(">i", partition)),
            ("kafka_dlt-original-offset", struct.pack(">q", offset)),
            ("kafka_dlt-exception-fqcn", b"org.springframework.kafka.listener.ListenerExecutionFailedException"),
            ("kafka_dlt-exception-message", message.encode())]


def connect_headers(topic, partition, offset, message):
    return [("__connect.errors.topic", topic.encode()),
            ("__connect.errors.partition", str(partition).encode()),
            ("__connect.errors.offset", str(offset).encode()),
            ("__connect.errors.exception.class.name", b"org.apache.kafka.connect.errors.DataException"),
            ("__connect.errors.exception.message", message.encode())]


def kafka_python(bootstrap, ca_file, key_id, secret, topic, count):
    from kafka import KafkaConsumer, KafkaProducer, TopicPartition
    common = dict(bootstrap_servers=bootstrap, security_protocol="SASL_SSL", sasl_mechanism="PLAIN",
                  sasl_plain_username=key_id, sasl_plain_password=secret, ssl_cafile=ca_file, ssl_check_hostname=False,
                  api_version=(2, 1, 0))
    consumer = KafkaConsumer(**common, enable_auto_commit=False, auto_offset_reset="earliest")
    partitions = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or [])]
    consumer.assign(partitions)
    consumer.seek_to_beginning()
    producer = KafkaProducer(**common, acks="all")
    read, sent, deadline = 0, [], time.time() + TIMEOUT_SECONDS
    while read < count and time.time() < deadline:
        for _, records in consumer.poll(timeout_ms=500).items():
            for record in records:
                read += 1
                if not failing(record.value):
                    continue
                reason = f"order {record.offset} failed validation"
                future = producer.send(topic + ".dlq", key=record.key, value=record.value,
                                       headers=spring_headers(topic, record.partition, record.offset, reason))
                metadata = future.get(timeout=TIMEOUT_SECONDS)
                sent.append({"partition": record.partition, "offset": record.offset, "dlq_offset": metadata.offset,
                             "reason": reason})
    producer.flush()
    producer.close()
    consumer.close()
    return read, sent


def confluent(bootstrap, ca_file, key_id, secret, topic, count):
    from confluent_kafka import Consumer, Producer, TopicPartition, OFFSET_BEGINNING
    config = {"bootstrap.servers": bootstrap, "security.protocol": "SASL_SSL", "sasl.mechanisms": "PLAIN",
              "sasl.username": key_id, "sasl.password": secret, "ssl.ca.location": ca_file}
    consumer = Consumer({**config, "group.id": "dead-letter-script", "enable.auto.commit": False})
    metadata = consumer.list_topics(topic, timeout=TIMEOUT_SECONDS)
    consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in sorted(metadata.topics[topic].partitions)])
    producer = Producer({**config, "acks": "all", "enable.idempotence": True})
    read, sent, deadline = 0, [], time.time() + TIMEOUT_SECONDS
    while read < count and time.time() < deadline:
        message = consumer.poll(0.5)
        if message is None or message.error() is not None:
            continue
        read += 1
        if not failing(message.value()):
            continue
        reason = f"org.apache.kafka.connect.errors.DataException: order {message.offset()} failed validation"
        outcome = {}

        def report(error, delivered, outcome=outcome):
            outcome["error"], outcome["offset"] = error, (delivered.offset() if error is None else None)

        producer.produce(topic + ".dlq", key=message.key(), value=message.value(), on_delivery=report,
                         headers=connect_headers(topic, message.partition(), message.offset(),
                                                 f"order {message.offset()} failed validation"))
        producer.flush(TIMEOUT_SECONDS)
        if outcome.get("error") is not None or "offset" not in outcome:
            print(f"dead letter not delivered: {outcome.get('error')}", file=sys.stderr)
            sys.exit(1)
        sent.append({"partition": message.partition(), "offset": message.offset(), "dlq_offset": outcome["offset"],
                     "reason": reason})
    consumer.close()
    return read, sent


def main():
    client, bootstrap, ca_file, key_id, secret, topic, count = sys.argv[1:8]
    run = {"kafka-python": kafka_python, "confluent": confluent}[client]
    read, sent = run(bootstrap, ca_file, key_id, secret, topic, int(count))
    if read < int(count):
        print(f"read only {read} of {count} records", file=sys.stderr)
        sys.exit(1)
    for line in sent:
        print(json.dumps(line))


if __name__ == "__main__":
    main()
