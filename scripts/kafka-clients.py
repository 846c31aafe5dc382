#!/usr/bin/env python3
"""Existing Kafka clients against an EventFlow broker, over TLS + SASL PLAIN: confluent-kafka
(librdkafka) and kafka-python. Used by the broker's end-to-end tests (KafkaClientsTests).

usage: kafka-clients.py CLIENT COMMAND BOOTSTRAP CA_FILE KEY_ID SECRET TOPIC [COUNT]

CLIENT   confluent | kafka-python
COMMAND  produce  COUNT records (idempotent, acks=all, LZ4); one JSON line per acknowledged
                  record: {"partition", "offset", "key", "value", "headers"} (bytes as hex)
         consume  every partition of TOPIC from the beginning in assign mode (no group), up
                  to the high watermark at start; one JSON line per record, same fields
         roundtrip produce, then consume, then check that every acknowledged record came back
                  once, equal, at its offset, in offset order per partition; exit 1 otherwise
         group    join consumer group COUNT... (here: the group id is the 8th argument) with subscribe,
                  read, commit each record's offset synchronously, stop after IDLE_SECONDS without a
                  record once assigned, leave; one JSON line per record read
"""
import json
import os
import sys
import time

TIMEOUT_SECONDS = 60


def record_line(partition, offset, key, value, headers):
    return {"partition": partition, "offset": offset, "key": key.hex() if key is not None else None,
            "value": value.hex() if value is not None else None,
            "headers": [[name, data.hex() if data is not None else None] for name, data in (headers or [])]}


def payload(client, index):
    key = f"key-{index % 13}".encode()
    value = json.dumps({"event": index, "client": client}).encode()
    headers = [("source", client.encode()), ("index", str(index).encode())]
    return key, value, headers


# confluent-kafka (librdkafka 2.x)

def confluent_config(bootstrap, ca_file, key_id, secret):
    return {"bootstrap.servers": bootstrap, "security.protocol": "SASL_SSL", "sasl.mechanisms": "PLAIN",
            "sasl.username": key_id, "sasl.password": secret, "ssl.ca.location": ca_file}


def confluent_produce(config, topic, count):
    from confluent_kafka import Producer
    producer = Producer({**config, "enable.idempotence": True, "acks": "all", "compression.type": "lz4",
                         "linger.ms": 5})
    acked, failed = [], []

    def delivered(headers):
        # Delivery reports do not carry the headers back: the sent ones are kept with the callback.
        def report(error, message):
            if error is not None:
                failed.append(str(error))
            else:
                acked.append(record_line(message.partition(), message.offset(), message.key(), message.value(), headers))
        return report

    for index in range(count):
        key, value, headers = payload("confluent", index)
        producer.produce(topic, key=key, value=value, headers=headers, on_delivery=delivered(headers))
        producer.poll(0)
    remaining = producer.flush(TIMEOUT_SECONDS)
    if failed or remaining:
        raise SystemExit(f"confluent produce: {len(failed)} failed ({failed[:3]}), {remaining} not delivered")
    return acked


def confluent_consume(config, topic):
    from confluent_kafka import Consumer, TopicPartition, OFFSET_BEGINNING
    consumer = Consumer({**config, "group.id": "kafka-clients-check", "enable.auto.commit": False,
                         "auto.offset.reset": "error", "enable.partition.eof": True})
    metadata = consumer.list_topics(topic, timeout=TIMEOUT_SECONDS)
    partitions = sorted(metadata.topics[topic].partitions)
    ends = {p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=TIMEOUT_SECONDS)[1] for p in partitions}
    consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions])
    records, positions = [], {p: 0 for p in partitions}
    deadline = time.time() + TIMEOUT_SECONDS
    while any(positions[p] < ends[p] for p in partitions):
        if time.time() > deadline:
            raise SystemExit(f"confluent consume: timed out at {positions}, ends {ends}")
        message = consumer.poll(1.0)
        if message is None:
            continue
        if message.error():
            if message.error().code() == -191:  # _PARTITION_EOF
                continue
            raise SystemExit(f"confluent consume: {message.error()}")
        records.append(record_line(message.partition(), message.offset(), message.key(), message.value(),
                                   message.headers()))
        positions[message.partition()] = message.offset() + 1
    consumer.close()
    return [r for r in records if r["offset"] < ends[r["partition"]]]


# kafka-python

def kafka_python_config(bootstrap, ca_file, key_id, secret):
    return {"bootstrap_servers": bootstrap, "security_protocol": "SASL_SSL", "ssl_cafile": ca_file,
            "sasl_mechanism": "PLAIN", "sasl_plain_username": key_id, "sasl_plain_password": secret}


def kafka_python_produce(config, topic, count):
    from kafka import KafkaProducer
    producer = KafkaProducer(**config, compression_type="lz4", acks="all", enable_idempotence=True, linger_ms=5,
                             request_timeout_ms=15000)
    sent = []
    for index in range(count):
        key, value, headers = payload("kafka-python", index)
        sent.append((producer.send(topic, key=key, value=value, headers=headers), key, value, headers))
    producer.flush(timeout=TIMEOUT_SECONDS)
    acked = []
    for future, key, value, headers in sent:
        metadata = future.get(timeout=TIMEOUT_SECONDS)
        acked.append(record_line(metadata.partition, metadata.offset, key, value, headers))
    producer.close(timeout=10)
    return acked


def kafka_python_consume(config, topic):
    from kafka import KafkaConsumer, TopicPartition
    consumer = KafkaConsumer(**config, enable_auto_commit=False, group_id=None, auto_offset_reset="earliest",
                             consumer_timeout_ms=1000)
    partitions = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or [])]
    consumer.assign(partitions)
    consumer.seek_to_beginning(*partitions)
    ends = {tp.partition: offset for tp, offset in consumer.end_offsets(partitions).items()}
    records, positions = [], {p: 0 for p in ends}
    deadline = time.time() + TIMEOUT_SECONDS
    while any(positions[p] < ends[p] for p in ends):
        if time.time() > deadline:
            raise SystemExit(f"kafka-python consume: timed out at {positions}, ends {ends}")
        for batch in consumer.poll(timeout_ms=1000).values():
            for message in batch:
                records.append(record_line(message.partition, message.offset, message.key, message.value,
                                           message.headers))
                positions[message.partition] = message.offset + 1
    consumer.close()
    return [r for r in records if r["offset"] < ends[r["partition"]]]


IDLE_SECONDS = 5
# group: seconds to sleep after each record (a slow member, e.g. one that is killed mid-stream);
# each record's line is then printed at once instead of at the end.
SLOW_SECONDS = float(os.environ.get("KAFKA_CLIENTS_SLOW_MS", "0")) / 1000


def confluent_group(config, topic, group_id):
    from confluent_kafka import Consumer
    consumer = Consumer({**config, "group.id": group_id, "enable.auto.commit": False, "auto.offset.reset": "earliest",
                         "session.timeout.ms": 10000, "heartbeat.interval.ms": 1000})
    consumer.subscribe([topic])
    records, last, deadline = [], None, time.time() + TIMEOUT_SECONDS
    while time.time() < deadline:
        message = consumer.poll(0.5)
        if message is None:
            if last is not None and time.time() - last > IDLE_SECONDS:
                break
            if consumer.assignment() and last is None:
                last = time.time()
            continue
        if message.error():
            raise SystemExit(f"confluent group: {message.error()}")
        records.append(record_line(message.partition(), message.offset(), message.key(), message.value(), message.headers()))
        if SLOW_SECONDS:
            # Reported before it is committed: a kill in between makes a duplicate, never a gap.
            print(json.dumps(records.pop()), flush=True)
        consumer.commit(message=message, asynchronous=False)
        if SLOW_SECONDS:
            time.sleep(SLOW_SECONDS)
        last = time.time()
    consumer.close()
    return records


def kafka_python_group(config, topic, group_id):
    from kafka import KafkaConsumer, TopicPartition
    from kafka.structs import OffsetAndMetadata
    consumer = KafkaConsumer(topic, **config, group_id=group_id, enable_auto_commit=False, auto_offset_reset="earliest",
                             session_timeout_ms=10000, heartbeat_interval_ms=1000)
    records, last, deadline = [], None, time.time() + TIMEOUT_SECONDS
    while time.time() < deadline:
        batches = consumer.poll(timeout_ms=500)
        if not batches:
            if last is not None and time.time() - last > IDLE_SECONDS:
                break
            if consumer.assignment() and last is None:
                last = time.time()
            continue
        for partition, messages in batches.items():
            for message in messages:
                records.append(record_line(message.partition, message.offset, message.key, message.value, message.headers))
                consumer.commit({TopicPartition(topic, message.partition): OffsetAndMetadata(message.offset + 1, "", -1)})
        last = time.time()
    consumer.close()
    return records


GROUP_CONSUMERS = {"confluent": confluent_group, "kafka-python": kafka_python_group}

CLIENTS = {
    "confluent": (confluent_config, confluent_produce, confluent_consume),
    "kafka-python": (kafka_python_config, kafka_python_produce, kafka_python_consume),
}


def check(acked, consumed):
    problems = []
    by_position = {(r["partition"], r["offset"]): r for r in consumed}
    if len(by_position) != len(consumed):
        problems.append("a record came back twice")
    for record in acked:
        back = by_position.get((record["partition"], record["offset"]))
        if back != record:
            problems.append(f"acknowledged {record} came back as {back}")
    for partition in {r["partition"] for r in consumed}:
        offsets = [r["offset"] for r in consumed if r["partition"] == partition]
        if offsets != sorted(offsets) or offsets != list(range(offsets[0], offsets[0] + len(offsets))):
            problems.append(f"partition {partition}: offsets not dense and in order")
    return problems


def main():
    client, command, bootstrap, ca_file, key_id, secret, topic = sys.argv[1:8]
    count = int(sys.argv[8]) if len(sys.argv) > 8 and sys.argv[8].isdigit() else 0
    make_config, produce, consume = CLIENTS[client]
    config = make_config(bootstrap, ca_file, key_id, secret)
    if command == "group":
        lines = GROUP_CONSUMERS[client](config, topic, sys.argv[8])
    elif command == "produce":
        lines = produce(config, topic, count)
    elif command == "consume":
        lines = consume(config, topic)
    elif command == "roundtrip":
        acked = produce(config, topic, count)
        consumed = consume(config, topic)
        problems = check(acked, consumed)
        if problems:
            for problem in problems[:20]:
                print(problem, file=sys.stderr)
            raise SystemExit(f"{client} roundtrip: {len(problems)} problems")
        lines = [{"acked": len(acked), "consumed": len(consumed),
                  "partitions": sorted({r["partition"] for r in acked})}]
    else:
        raise SystemExit(f"unknown command {command}")
    for line in lines:
        print(json.dumps(line))


if __name__ == "__main__":
    main()
