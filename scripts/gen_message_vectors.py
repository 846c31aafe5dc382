#!/usr/bin/env python3
"""Generates protocol/vectors/messages/*.hex with kafka-python 3.0.12, an implementation
independent of EventFlow's codec (its classes are generated from Kafka's JSON message definitions).

Each file is one frame without its int32 size prefix, as lowercase hex on one line:
  <api>_v<N>_request.hex  = request header (v1, or v2 for flexible versions) + request body
  <api>_v<N>_response.hex = response header (v0, or v1 for flexible versions except ApiVersions) + body

Run: pip install kafka-python==3.0.12 && python3 scripts/gen_message_vectors.py
"""
import os
import re
import sys

import kafka
from kafka.protocol.admin import (AlterConfigsRequest, AlterConfigsResponse, CreatePartitionsRequest,
                                  CreatePartitionsResponse, CreateTopicsRequest, CreateTopicsResponse, DeleteGroupsRequest,
                                  DeleteGroupsResponse, DeleteTopicsRequest, DeleteTopicsResponse,
                                  DescribeConfigsRequest, DescribeConfigsResponse, IncrementalAlterConfigsRequest,
                                  IncrementalAlterConfigsResponse,
                                  DescribeGroupsRequest, DescribeGroupsResponse, ListGroupsRequest, ListGroupsResponse)
from kafka.protocol.consumer import (FetchRequest, FetchResponse, HeartbeatRequest, HeartbeatResponse,
                                     JoinGroupRequest, JoinGroupResponse, LeaveGroupRequest, LeaveGroupResponse,
                                     ListOffsetsRequest, ListOffsetsResponse, OffsetCommitRequest,
                                     OffsetCommitResponse, OffsetFetchRequest, OffsetFetchResponse,
                                     SyncGroupRequest, SyncGroupResponse)
from kafka.protocol.metadata import (ApiVersionsRequest, ApiVersionsResponse, FindCoordinatorRequest,
                                     FindCoordinatorResponse, MetadataRequest, MetadataResponse)
from kafka.protocol.producer import InitProducerIdRequest, InitProducerIdResponse, ProduceRequest, ProduceResponse
from kafka.protocol.sasl import (SaslAuthenticateRequest, SaslAuthenticateResponse, SaslHandshakeRequest,
                                 SaslHandshakeResponse)

EXPECTED_VERSION = "3.0.12"
OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "protocol", "vectors", "messages")
CORRELATION_ID = 0x01020304
CLIENT_ID = "eventflow-vectors"

# Opaque stand-in for record batches: the message codec carries them as bytes and never looks
# inside (the batch format has its own vectors). A 61-byte-looking prefix keeps it realistic.
RECORDS = bytes.fromhex("0000000000000000") + bytes(range(1, 60))


def snake(name):
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower().replace("__", "_")


def build(cls, fields_json, data):
    """Builds a kafka-python data object from a dict keyed by snake_case field names."""
    kwargs = {}
    by_name = {snake(f["name"]): f for f in fields_json}
    for key, value in data.items():
        field = by_name[key]
        if "fields" in field and value is not None:
            inner = getattr(cls, field["type"].lstrip("[]"))
            if isinstance(value, list):
                value = [build(inner, field["fields"], v) for v in value]
            else:
                value = build(inner, field["fields"], value)
        kwargs[key] = value
    return cls(**kwargs)


def message(cls, version, data):
    obj = build(cls[version], cls.json["fields"], data)
    obj.with_header(correlation_id=CORRELATION_ID, client_id=CLIENT_ID)
    return obj.encode(header=True)


# (file stem, request class, response class, versions, request(version) -> dict, response(version) -> dict)
def apis():
    return [
        ("api_versions", ApiVersionsRequest, ApiVersionsResponse, range(0, 4),
         lambda v: dict(client_software_name="eventflow-swift", client_software_version="0.1.0") if v >= 3 else {},
         lambda v: dict(error_code=0, api_keys=[dict(api_key=0, min_version=3, max_version=7),
                                                 dict(api_key=18, min_version=0, max_version=3)],
                        throttle_time_ms=5)),
        ("sasl_handshake", SaslHandshakeRequest, SaslHandshakeResponse, range(0, 2),
         lambda v: dict(mechanism="PLAIN"),
         lambda v: dict(error_code=0, mechanisms=["PLAIN"])),
        ("sasl_authenticate", SaslAuthenticateRequest, SaslAuthenticateResponse, range(0, 2),
         lambda v: dict(auth_bytes=b"\x00ak_0123456789\x00s3cr3t"),
         lambda v: dict(error_code=58, error_message="Authentication failed: invalid API key", auth_bytes=b"",
                        session_lifetime_ms=3600000)),
        ("metadata", MetadataRequest, MetadataResponse, range(0, 8),
         lambda v: dict(topics=[dict(name="orders"), dict(name="payments")], allow_auto_topic_creation=False),
         lambda v: dict(throttle_time_ms=0,
                        brokers=[dict(node_id=1, host="127.0.0.1", port=9092, rack=None)],
                        cluster_id="eventflow-cluster", controller_id=1,
                        topics=[dict(error_code=0, name="orders", is_internal=False,
                                     partitions=[dict(error_code=0, partition_index=p, leader_id=1, leader_epoch=0,
                                                      replica_nodes=[1], isr_nodes=[1], offline_replicas=[])
                                                 for p in range(2)]),
                                dict(error_code=3, name="payments", is_internal=False, partitions=[])])),
        ("create_topics", CreateTopicsRequest, CreateTopicsResponse, range(0, 4),
         lambda v: dict(topics=[dict(name="orders", num_partitions=3, replication_factor=-1, assignments=[],
                                     configs=[dict(name="retention.ms", value="604800000"),
                                              dict(name="cleanup.policy", value=None)]),
                                dict(name="audit", num_partitions=-1, replication_factor=1,
                                     assignments=[dict(partition_index=0, broker_ids=[1])], configs=[])],
                        timeout_ms=30000, validate_only=True),
         lambda v: dict(throttle_time_ms=0,
                        topics=[dict(name="orders", error_code=0, error_message=None),
                                dict(name="audit", error_code=36, error_message="Topic 'audit' already exists.")])),
        ("delete_topics", DeleteTopicsRequest, DeleteTopicsResponse, range(0, 4),
         lambda v: dict(topic_names=["orders", "audit"], timeout_ms=15000),
         lambda v: dict(throttle_time_ms=0, responses=[dict(name="orders", error_code=0),
                                                       dict(name="audit", error_code=3)])),
        ("init_producer_id", InitProducerIdRequest, InitProducerIdResponse, range(0, 2),
         lambda v: dict(transactional_id=None, transaction_timeout_ms=60000),
         lambda v: dict(throttle_time_ms=0, error_code=0, producer_id=4242, producer_epoch=0)),
        ("produce", ProduceRequest, ProduceResponse, range(3, 9),
         lambda v: dict(transactional_id=None, acks=-1, timeout_ms=30000,
                        topic_data=[dict(name="orders", partition_data=[dict(index=0, records=RECORDS),
                                                                        dict(index=1, records=None)])]),
         lambda v: dict(responses=[dict(name="orders", partition_responses=[
                            dict(index=0, error_code=0, base_offset=1000, log_append_time_ms=-1, log_start_offset=0,
                                 **(dict(record_errors=[], error_message=None) if v >= 8 else {})),
                            dict(index=1, error_code=87, base_offset=-1, log_append_time_ms=-1, log_start_offset=-1,
                                 **(dict(record_errors=[dict(batch_index=2, batch_index_error_message="/total: expected integer, got string"),
                                                        dict(batch_index=5, batch_index_error_message=None)],
                                         error_message="2 of 6 records do not match the stream's schema") if v >= 8 else {}))])],
                        throttle_time_ms=0)),
        ("list_offsets", ListOffsetsRequest, ListOffsetsResponse, range(1, 6),
         lambda v: dict(replica_id=-1, isolation_level=1,
                        topics=[dict(name="orders", partitions=[
                            dict(partition_index=0, current_leader_epoch=-1, timestamp=-2, max_num_offsets=1),
                            dict(partition_index=1, current_leader_epoch=-1, timestamp=1700000000000, max_num_offsets=1)])]),
         lambda v: dict(throttle_time_ms=0, topics=[dict(name="orders", partitions=[
                            dict(partition_index=0, error_code=0, old_style_offsets=[17], timestamp=-1, offset=17,
                                 leader_epoch=0),
                            dict(partition_index=1, error_code=3, old_style_offsets=[], timestamp=-1, offset=-1,
                                 leader_epoch=-1)])])),
        ("fetch", FetchRequest, FetchResponse, range(4, 12),
         lambda v: dict(replica_id=-1, max_wait_ms=500, min_bytes=1, max_bytes=52428800, isolation_level=0,
                        session_id=0, session_epoch=-1,
                        topics=[dict(topic="orders", partitions=[
                            dict(partition=0, current_leader_epoch=-1, fetch_offset=1000, log_start_offset=-1,
                                 partition_max_bytes=1048576)])],
                        forgotten_topics_data=[], rack_id="eu-central-1a"),
         lambda v: dict(throttle_time_ms=0, error_code=0, session_id=0, responses=[dict(topic="orders", partitions=[
                            dict(partition_index=0, error_code=0, high_watermark=1010, last_stable_offset=1010,
                                 log_start_offset=0, aborted_transactions=None, preferred_read_replica=-1,
                                 records=RECORDS),
                            dict(partition_index=1, error_code=1, high_watermark=-1, last_stable_offset=-1,
                                 log_start_offset=-1, aborted_transactions=[], preferred_read_replica=-1,
                                 records=None)])])),
        ("find_coordinator", FindCoordinatorRequest, FindCoordinatorResponse, range(0, 3),
         lambda v: dict(key="billing-consumers", key_type=0),
         lambda v: dict(throttle_time_ms=0, error_code=0, error_message=None, node_id=1, host="127.0.0.1",
                        port=9092)),
        ("join_group", JoinGroupRequest, JoinGroupResponse, range(0, 6),
         lambda v: dict(group_id="billing-consumers", session_timeout_ms=10000, rebalance_timeout_ms=300000,
                        member_id="", group_instance_id="billing-1", protocol_type="consumer",
                        protocols=[dict(name="range", metadata=b"\x00\x00\x00\x00\x00\x01\x00\x06orders\xff\xff\xff\xff")]),
         lambda v: dict(throttle_time_ms=0, error_code=0, generation_id=3, protocol_name="range",
                        leader="member-1", member_id="member-1",
                        members=[dict(member_id="member-1", group_instance_id="billing-1",
                                      metadata=b"\x00\x00\x00\x00\x00\x01\x00\x06orders\xff\xff\xff\xff"),
                                 dict(member_id="member-2", group_instance_id=None, metadata=b"")])),
        ("sync_group", SyncGroupRequest, SyncGroupResponse, range(0, 4),
         lambda v: dict(group_id="billing-consumers", generation_id=3, member_id="member-1", group_instance_id="billing-1",
                        assignments=[dict(member_id="member-1", assignment=b"\x00\x00\x00\x00\x00\x01\x00\x06orders\x00\x00\x00\x01\x00\x00\x00\x00\xff\xff\xff\xff")]),
         lambda v: dict(throttle_time_ms=0, error_code=0,
                        assignment=b"\x00\x00\x00\x00\x00\x01\x00\x06orders\x00\x00\x00\x01\x00\x00\x00\x00\xff\xff\xff\xff")),
        ("heartbeat", HeartbeatRequest, HeartbeatResponse, range(0, 4),
         lambda v: dict(group_id="billing-consumers", generation_id=3, member_id="member-1", group_instance_id=None),
         lambda v: dict(throttle_time_ms=0, error_code=27)),
        # v3 names a batch of members (an admin removing a static member sends an empty member id).
        ("leave_group", LeaveGroupRequest, LeaveGroupResponse, range(0, 4),
         lambda v: dict(group_id="billing-consumers", member_id="member-1",
                        members=[dict(member_id="member-1", group_instance_id=None),
                                 dict(member_id="", group_instance_id="billing-2")]),
         lambda v: dict(throttle_time_ms=0, error_code=0,
                        members=[dict(member_id="member-1", group_instance_id=None, error_code=0),
                                 dict(member_id="", group_instance_id="billing-2", error_code=25)])),
        ("offset_commit", OffsetCommitRequest, OffsetCommitResponse, range(2, 8),
         lambda v: dict(group_id="billing-consumers", generation_id_or_member_epoch=3, member_id="member-1",
                        group_instance_id="billing-1", retention_time_ms=-1,
                        topics=[dict(name="orders", partitions=[
                            dict(partition_index=0, committed_offset=1010, committed_leader_epoch=-1,
                                 committed_metadata=None),
                            dict(partition_index=1, committed_offset=7, committed_leader_epoch=-1,
                                 committed_metadata="checkpoint")])]),
         lambda v: dict(throttle_time_ms=0, topics=[dict(name="orders", partitions=[
                            dict(partition_index=0, error_code=0), dict(partition_index=1, error_code=22)])])),
        ("offset_fetch", OffsetFetchRequest, OffsetFetchResponse, range(1, 6),
         lambda v: dict(group_id="billing-consumers",
                        topics=[dict(name="orders", partition_indexes=[0, 1])]),
         lambda v: dict(throttle_time_ms=0, error_code=0, topics=[dict(name="orders", partitions=[
                            dict(partition_index=0, committed_offset=1010, committed_leader_epoch=-1,
                                 metadata="", error_code=0),
                            dict(partition_index=1, committed_offset=-1, committed_leader_epoch=-1,
                                 metadata=None, error_code=0)])])),
        ("delete_groups", DeleteGroupsRequest, DeleteGroupsResponse, range(0, 2),
         lambda v: dict(groups_names=["billing-consumers", "busy"]),
         lambda v: dict(throttle_time_ms=0, results=[dict(group_id="billing-consumers", error_code=0),
                                                     dict(group_id="busy", error_code=68)])),
        ("list_groups", ListGroupsRequest, ListGroupsResponse, range(0, 3),
         lambda v: {},
         lambda v: dict(throttle_time_ms=0, error_code=0,
                        groups=[dict(group_id="billing-consumers", protocol_type="consumer"),
                                dict(group_id="offsets-only", protocol_type="")])),
        ("describe_groups", DescribeGroupsRequest, DescribeGroupsResponse, range(0, 5),
         lambda v: dict(groups=["billing-consumers", "missing"], include_authorized_operations=True),
         lambda v: dict(throttle_time_ms=0, groups=[
                            dict(error_code=0, group_id="billing-consumers", group_state="Stable",
                                 protocol_type="consumer", protocol_data="range",
                                 members=[dict(member_id="member-1", group_instance_id="billing-1",
                                               client_id="rdkafka", client_host="/10.0.0.7",
                                               member_metadata=b"\x00\x00\x00\x00\x00\x01\x00\x06orders\xff\xff\xff\xff",
                                               member_assignment=b"\x00\x00\x00\x00\x00\x01\x00\x06orders\x00\x00\x00\x01\x00\x00\x00\x00\xff\xff\xff\xff")],
                                 # kafka-python takes the bit field as a set of ACL operation codes:
                                 # READ (3), DELETE (6), DESCRIBE (8) = 0x148; None = INT32_MIN (not requested).
                                 authorized_operations={3, 6, 8}),
                            dict(error_code=69, group_id="missing", group_state="Dead", protocol_type="",
                                 protocol_data="", members=[], authorized_operations=None)])),
        ("describe_configs", DescribeConfigsRequest, DescribeConfigsResponse, range(0, 5),
         lambda v: dict(resources=[dict(resource_type=2, resource_name="orders", configuration_keys=None),
                                   dict(resource_type=2, resource_name="audit",
                                        configuration_keys=["retention.ms", "cleanup.policy"])],
                        include_synonyms=True, include_documentation=False),
         lambda v: dict(throttle_time_ms=0, results=[
                            dict(error_code=0, error_message=None, resource_type=2, resource_name="orders", configs=[
                                dict(name="retention.ms", value="86400000", read_only=False, is_default=False,
                                     config_source=1, is_sensitive=False,
                                     synonyms=[dict(name="retention.ms", value="86400000", source=1),
                                               dict(name="log.retention.hours", value="168", source=5)],
                                     config_type=5, documentation=None),
                                dict(name="cleanup.policy", value="delete", read_only=True, is_default=True,
                                     config_source=5, is_sensitive=False, synonyms=[], config_type=7,
                                     documentation="Only delete.")]),
                            dict(error_code=3, error_message="Topic 'audit' does not exist.", resource_type=2,
                                 resource_name="audit", configs=[])])),
        ("alter_configs", AlterConfigsRequest, AlterConfigsResponse, range(0, 3),
         lambda v: dict(resources=[dict(resource_type=2, resource_name="orders",
                                        configs=[dict(name="retention.ms", value="7200000"),
                                                 dict(name="cleanup.policy", value=None)])],
                        validate_only=True),
         lambda v: dict(throttle_time_ms=0, responses=[
                            dict(error_code=0, error_message=None, resource_type=2, resource_name="orders"),
                            dict(error_code=40, error_message="cleanup.policy=compact is not supported.",
                                 resource_type=2, resource_name="audit")])),
        ("incremental_alter_configs", IncrementalAlterConfigsRequest, IncrementalAlterConfigsResponse, range(0, 2),
         lambda v: dict(resources=[dict(resource_type=2, resource_name="orders",
                                        configs=[dict(name="retention.ms", config_operation=0, value="3600000"),
                                                 dict(name="cleanup.policy", config_operation=1, value=None)]),
                                   dict(resource_type=4, resource_name="1", configs=[])],
                        validate_only=False),
         lambda v: dict(throttle_time_ms=0, responses=[
                            dict(error_code=0, error_message=None, resource_type=2, resource_name="orders"),
                            dict(error_code=42, error_message="Broker configs are not served.", resource_type=4,
                                 resource_name="1")])),
        ("create_partitions", CreatePartitionsRequest, CreatePartitionsResponse, range(0, 4),
         lambda v: dict(topics=[dict(name="orders", count=4, assignments=None),
                                dict(name="audit", count=2, assignments=[dict(broker_ids=[1])])],
                        timeout_ms=30000, validate_only=False),
         lambda v: dict(throttle_time_ms=0, results=[
                            dict(name="orders", error_code=0, error_message=None),
                            dict(name="audit", error_code=37, error_message="Topic 'audit' has 3 partitions; it can only grow.")])),
    ]


def filter_fields(cls, version, data):
    """Drops fields that do not exist at `version` so kafka-python does not reject them."""
    def present(field):
        spec = field.get("versions", "0+")
        if spec == "none":
            return False
        if spec.endswith("+"):
            return version >= int(spec[:-1])
        lo, _, hi = spec.partition("-")
        return int(lo) <= version <= int(hi or lo)

    def walk(fields_json, value):
        if isinstance(value, list):
            return [walk(fields_json, v) for v in value]
        if not isinstance(value, dict):
            return value
        out = {}
        by_name = {snake(f["name"]): f for f in fields_json}
        for key, item in value.items():
            field = by_name[key]
            if not present(field):
                continue
            out[key] = walk(field.get("fields", []), item) if "fields" in field else item
        return out
    return walk(cls.json["fields"], data)


def main():
    if kafka.__version__ != EXPECTED_VERSION:
        sys.exit(f"expected kafka-python {EXPECTED_VERSION}, found {kafka.__version__}")
    os.makedirs(OUT, exist_ok=True)
    written = 0
    for stem, request_cls, response_cls, versions, request_data, response_data in apis():
        for version in versions:
            for kind, cls, data in (("request", request_cls, request_data(version)),
                                    ("response", response_cls, response_data(version))):
                encoded = message(cls, version, filter_fields(cls, version, data))
                with open(os.path.join(OUT, f"{stem}_v{version}_{kind}.hex"), "w") as f:
                    f.write(encoded.hex() + "\n")
                written += 1
    # ApiVersions' answer to a version the broker does not serve: error 35, v0 body, header v0.
    unsupported = message(ApiVersionsResponse, 0, dict(error_code=35, api_keys=[dict(api_key=18, min_version=0, max_version=3)]))
    with open(os.path.join(OUT, "api_versions_unsupported_response.hex"), "w") as f:
        f.write(unsupported.hex() + "\n")
    written += 1
    print(f"wrote {written} vectors to {os.path.normpath(OUT)}")


if __name__ == "__main__":
    main()
