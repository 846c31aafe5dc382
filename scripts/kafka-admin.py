#!/usr/bin/env python3
"""Kafka admin clients against an EventFlow broker, over TLS + SASL PLAIN: confluent-kafka's
AdminClient (librdkafka) and kafka-python's KafkaAdminClient. Used by KafkaAdminClientsTests.

usage: kafka-admin.py CLIENT BOOTSTRAP CA_FILE KEY_ID SECRET TOPIC

CLIENT   confluent | kafka-python

On TOPIC (which must have 1 partition and the default retention) the script: describes its
configs, alters retention.ms with AlterConfigs and IncrementalAlterConfigs (confluent: 2 hours
both ways; kafka-python: 2 hours, then 3), describing after each, is refused retention.ms=90
minutes and cleanup.policy=compact (INVALID_CONFIG), grows the topic to 3 partitions, is refused
shrinking it to 2 (INVALID_PARTITIONS), and produces one record to the new partition 2. It prints one JSON
line per step ({"step": ..., ...}) and exits 1 at the first surprise.
"""
import json
import sys
import time

TIMEOUT_SECONDS = 60


def emit(step, **fields):
    print(json.dumps({"step": step, **fields}), flush=True)


def check(condition, message):
    if not condition:
        print(f"FAILED: {message}", file=sys.stderr, flush=True)
        sys.exit(1)


# confluent-kafka (librdkafka 2.x)

def confluent(bootstrap, ca_file, key_id, secret, topic):
    from confluent_kafka import KafkaException, Producer
    from confluent_kafka.admin import (AdminClient, AlterConfigOpType, ConfigEntry, ConfigResource, ConfigSource,
                                       NewPartitions, ResourceType)
    config = {"bootstrap.servers": bootstrap, "security.protocol": "SASL_SSL", "sasl.mechanisms": "PLAIN",
              "sasl.username": key_id, "sasl.password": secret, "ssl.ca.location": ca_file}
    admin = AdminClient(config)

    def describe():
        resource = ConfigResource(ResourceType.TOPIC, topic)
        entries = admin.describe_configs([resource])[resource].result(TIMEOUT_SECONDS)
        return {name: {"value": e.value, "read_only": e.is_read_only, "is_default": e.is_default,
                       "source": ConfigSource(e.source).name, "sensitive": e.is_sensitive} for name, e in entries.items()}

    emit("describe", configs=describe())

    # incremental_alter_configs: SET retention.ms to two hours.
    resource = ConfigResource(ResourceType.TOPIC, topic, incremental_configs=[
        ConfigEntry("retention.ms", "7200000", incremental_operation=AlterConfigOpType.SET)])
    admin.incremental_alter_configs([resource])[resource].result(TIMEOUT_SECONDS)
    emit("incremental_alter", configs=describe())

    def refused(resource, call):
        try:
            call([resource])[resource].result(TIMEOUT_SECONDS)
        except KafkaException as error:
            kafka_error = error.args[0]
            return {"code": kafka_error.code(), "name": kafka_error.name(), "message": kafka_error.str()}
        check(False, f"{resource} was accepted")

    odd = ConfigResource(ResourceType.TOPIC, topic, incremental_configs=[
        ConfigEntry("retention.ms", "5400000", incremental_operation=AlterConfigOpType.SET)])
    emit("refused_retention", **refused(odd, admin.incremental_alter_configs))
    # alter_configs (the whole set): compact is refused.
    compact = ConfigResource(ResourceType.TOPIC, topic, set_config={"cleanup.policy": "compact", "retention.ms": "7200000"})
    emit("refused_compact", **refused(compact, admin.alter_configs))
    # alter_configs (the whole set) with what EventFlow supports.
    whole = ConfigResource(ResourceType.TOPIC, topic, set_config={"cleanup.policy": "delete", "retention.ms": "7200000"})
    admin.alter_configs([whole])[whole].result(TIMEOUT_SECONDS)
    emit("alter", configs=describe())

    admin.create_partitions([NewPartitions(topic, 3)])[topic].result(TIMEOUT_SECONDS)
    try:
        admin.create_partitions([NewPartitions(topic, 2)])[topic].result(TIMEOUT_SECONDS)
        check(False, "shrinking was accepted")
    except KafkaException as error:
        kafka_error = error.args[0]
        emit("refused_shrink", code=kafka_error.code(), name=kafka_error.name(), message=kafka_error.str())
    metadata = admin.list_topics(topic, timeout=TIMEOUT_SECONDS)
    emit("partitions", partitions=sorted(metadata.topics[topic].partitions))

    producer = Producer({**config, "acks": "all"})
    delivered = []
    producer.produce(topic, key=b"k", value=b"to the new partition", partition=2,
                     on_delivery=lambda error, message: delivered.append(
                         (str(error) if error else None, message.partition(), message.offset())))
    producer.flush(TIMEOUT_SECONDS)
    check(len(delivered) == 1 and delivered[0][0] is None, f"produce to partition 2: {delivered}")
    emit("produced", partition=delivered[0][1], offset=delivered[0][2])


# kafka-python (3.x: results as dicts)

def kafka_python(bootstrap, ca_file, key_id, secret, topic):
    from kafka import KafkaProducer
    from kafka.admin import ConfigResource, ConfigResourceType, KafkaAdminClient
    config = dict(bootstrap_servers=bootstrap, security_protocol="SASL_SSL", sasl_mechanism="PLAIN",
                  sasl_plain_username=key_id, sasl_plain_password=secret, ssl_cafile=ca_file)
    admin = KafkaAdminClient(**config, request_timeout_ms=TIMEOUT_SECONDS * 1000)

    def describe():
        described = admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, topic)], config_filter="all")
        return {name: {"value": entry["value"], "read_only": entry["read_only"], "source": entry["config_source"],
                       "sensitive": entry["is_sensitive"]}
                for name, entry in described["topic"][topic].items()}

    emit("describe", configs=describe())

    def alter(configs, incremental):
        altered = admin.alter_configs([ConfigResource(ConfigResourceType.TOPIC, topic, configs=configs)],
                                      incremental=incremental)
        return altered["topic"][topic]

    # AlterConfigs (the whole set).
    result = alter({"retention.ms": "7200000", "cleanup.policy": "delete"}, incremental=False)
    check(result == "OK", f"alter: {result}")
    emit("alter", configs=describe())
    emit("refused_retention", message=alter({"retention.ms": "5400000"}, incremental=False))
    emit("refused_compact", message=alter({"cleanup.policy": "compact", "retention.ms": "7200000"}, incremental=False))
    # IncrementalAlterConfigs: SET retention.ms to three hours.
    result = alter({"retention.ms": ("SET", "10800000")}, incremental=True)
    check(result == "OK", f"incremental alter: {result}")
    emit("incremental_alter", configs=describe())

    admin.create_partitions({topic: 3})
    response = admin.create_partitions({topic: 2}, raise_errors=False)
    emit("refused_shrink", code=response.results[0].error_code, message=response.results[0].error_message)
    described = admin.describe_topics([topic])
    emit("partitions", partitions=sorted(p.get("partition_index", p.get("partition")) for p in described[0]["partitions"]))
    admin.close()

    producer = KafkaProducer(**config, acks="all")
    metadata = producer.send(topic, key=b"k", value=b"to the new partition", partition=2).get(timeout=TIMEOUT_SECONDS)
    producer.close()
    emit("produced", partition=metadata.partition, offset=metadata.offset)


def main():
    if len(sys.argv) != 7:
        sys.exit(__doc__)
    client, bootstrap, ca_file, key_id, secret, topic = sys.argv[1:]
    {"confluent": confluent, "kafka-python": kafka_python}[client](bootstrap, ca_file, key_id, secret, topic)


if __name__ == "__main__":
    main()
