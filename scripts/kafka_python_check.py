#!/usr/bin/env python3
"""Reads batches that EventFlow built with kafka-python and checks them against their descriptions.

    python3 scripts/kafka_python_check.py DIR

DIR holds NAME.bin (one RecordBatch v2, as EventFlow's RecordBatchBuilder wrote it) and
NAME.json (what it must decode to, in the format of protocol/vectors/batches/*.json).
For every batch: kafka-python must parse it, find a valid CRC32C, and yield exactly the
described header fields and records (decompressing LZ4 itself). Exits 1 on any mismatch.
"""
import json
import os
import struct
import sys

from kafka.record.default_records import DefaultRecordBatch
from kafka.record.memory_records import MemoryRecords


def hexed(value):
    return None if value is None else bytes(value).hex()


def check(path_bin, path_json):
    data = open(path_bin, "rb").read()
    expected = json.load(open(path_json))
    problems = []
    # The file must hold exactly one batch, as a Produce request would carry it.
    memory = MemoryRecords(data)
    batches = []
    while True:
        batch = memory.next_batch()
        if batch is None:
            break
        batches.append(batch)
    if len(batches) != 1:
        problems.append("expected 1 batch, kafka-python found %d" % len(batches))
    batch = DefaultRecordBatch(data)
    if not batch.validate_crc():
        problems.append("CRC32C invalid according to kafka-python")
    header = {
        "base_offset": batch.base_offset, "batch_length": len(data) - 12,
        "partition_leader_epoch": struct.unpack_from(">i", data, 12)[0], "magic": batch.magic,
        "crc": batch.crc, "attributes": batch.attributes, "last_offset_delta": batch.last_offset_delta,
        "base_timestamp": batch.first_timestamp, "max_timestamp": batch.max_timestamp,
        "producer_id": batch.producer_id, "producer_epoch": batch.producer_epoch,
        "base_sequence": batch.base_sequence, "record_count": batch.records_count,
    }
    for field, value in expected["header"].items():
        if header.get(field) != value:
            problems.append("header %s: kafka-python reads %r, EventFlow wrote %r" % (field, header.get(field), value))
    records = [{
        "offset": r.offset, "timestamp": r.timestamp, "key": hexed(r.key), "value": hexed(r.value),
        "headers": [{"key": k, "value": hexed(v)} for k, v in r.headers],
    } for r in batch]
    if len(records) != len(expected["records"]):
        problems.append("kafka-python read %d records, expected %d" % (len(records), len(expected["records"])))
    for index, (ours, theirs) in enumerate(zip(expected["records"], records)):
        if ours != theirs:
            problems.append("record %d: kafka-python reads %r, expected %r" % (index, theirs, ours))
            break
    return problems


def main():
    if len(sys.argv) != 2:
        print(__doc__)
        return 2
    directory = sys.argv[1]
    names = sorted(f[:-4] for f in os.listdir(directory) if f.endswith(".bin"))
    if not names:
        print("kafka_python_check: no .bin batches in %s" % directory)
        return 1
    failed = 0
    for name in names:
        try:
            problems = check(os.path.join(directory, name + ".bin"), os.path.join(directory, name + ".json"))
        except Exception as error:  # kafka-python raises on corrupt input: that is a failed check
            problems = ["kafka-python raised %s: %s" % (type(error).__name__, error)]
        if problems:
            failed += 1
            print("FAIL %s\n  %s" % (name, "\n  ".join(problems)))
        else:
            print("ok   %s" % name)
    print("kafka_python_check: %d of %d EventFlow batches read back by kafka-python" % (len(names) - failed, len(names)))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
