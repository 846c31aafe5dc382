#!/usr/bin/env python3
"""Writes RecordBatch v2 test vectors with kafka-python, an implementation independent of EventFlow.

    python3 scripts/kafka_python_vectors.py [OUTPUT_DIR]      (default: protocol/vectors/batches)

For every batch NAME it writes NAME.hex (the batch bytes) and NAME.json (the builder inputs,
the header fields and the records the batch decodes to). It also writes lz4-frames/*.lz4:
the same content compressed with python-lz4 under every frame option a producer may use.
Everything is deterministic (fixed timestamps), so `--check` can regenerate into a temporary
folder and compare with the committed files.
"""
import json
import os
import struct
import sys
import tempfile

import kafka
import lz4
import lz4.frame
from kafka.record.default_records import DefaultRecordBatch, DefaultRecordBatchBuilder
from kafka.record.memory_records import MemoryRecords

CODECS = {"none": DefaultRecordBatch.CODEC_NONE, "lz4": DefaultRecordBatch.CODEC_LZ4}
BASE_TIMESTAMP = 1_700_000_000_000


def json_event(i):
    """A 100-byte-ish JSON event, the same text as LZ4FrameTests' `frameContent`."""
    return ('{"id":%d,"type":"page_view","user":"user-%d","path":"/products/%d","ms":%d}'
            % (i, i % 97, i % 13, BASE_TIMESTAMP + i)).encode()


def batch_specs():
    """(name, description, builder options, records) for every vector."""
    specs = []
    specs.append(("uncompressed-single", "one record with key and value", {"compression": "none"},
                  [(BASE_TIMESTAMP, b"key-1", b"value-1", [])]))
    specs.append(("uncompressed-null-key", "null keys, a null value and an empty value", {"compression": "none"},
                  [(BASE_TIMESTAMP, None, b"first", []),
                   (BASE_TIMESTAMP + 1, None, None, []),
                   (BASE_TIMESTAMP + 2, b"", b"", []),
                   (BASE_TIMESTAMP + 3, None, json_event(3), [])]))
    specs.append(("uncompressed-headers", "headers (one with a null value), timestamps out of order, a 300-byte value",
                  {"compression": "none"},
                  [(BASE_TIMESTAMP + 50, b"order-7", b"created", [("trace-id", b"abc123"), ("source", b"web")]),
                   (BASE_TIMESTAMP + 10, b"order-7", b"paid", [("retry", None)]),
                   (BASE_TIMESTAMP + 99, b"order-8", b"x" * 300, []),
                   (BASE_TIMESTAMP - 5, None, b"late", [("h\u00e9", b"\x00\xff")])]))
    specs.append(("uncompressed-idempotent", "an idempotent producer's batch (producer id, epoch, base sequence)",
                  {"compression": "none", "producer_id": 4001, "producer_epoch": 3, "base_sequence": 120},
                  [(BASE_TIMESTAMP + i, b"k%d" % i, json_event(i), []) for i in range(5)]))
    specs.append(("uncompressed-transactional", "a transactional producer's batch (attributes bit 4)",
                  {"compression": "none", "producer_id": 77, "producer_epoch": 0, "base_sequence": 0,
                   "is_transactional": True},
                  [(BASE_TIMESTAMP, b"t", b"in-transaction", [])]))
    specs.append(("uncompressed-base-offset", "base offset 1000 and partition leader epoch 5 set after building "
                  "(fields outside the CRC, as a broker writes them)",
                  {"compression": "none", "base_offset": 1000, "partition_leader_epoch": 5},
                  [(BASE_TIMESTAMP + i, None, json_event(i), []) for i in range(3)]))
    specs.append(("lz4-several", "LZ4: 20 JSON records with keys and headers",
                  {"compression": "lz4"},
                  [(BASE_TIMESTAMP + i, b"user-%d" % (i % 5), json_event(i),
                    [("content-type", b"application/json")] if i % 2 == 0 else []) for i in range(20)]))
    specs.append(("lz4-null-keys", "LZ4: null keys and a null value",
                  {"compression": "lz4", "producer_id": 9, "producer_epoch": 1, "base_sequence": 40},
                  [(BASE_TIMESTAMP + i, None, json_event(i) if i != 3 else None, []) for i in range(10)]))
    specs.append(("lz4-multiblock", "LZ4: 800 records, 70 KB of records: more than one 64 KB block",
                  {"compression": "lz4"},
                  [(BASE_TIMESTAMP + i // 10, b"k%d" % (i % 50), json_event(i), []) for i in range(800)]))
    return specs


def build(options, records):
    builder = DefaultRecordBatchBuilder(
        magic=2, compression_type=CODECS[options["compression"]],
        is_transactional=options.get("is_transactional", False),
        producer_id=options.get("producer_id", -1), producer_epoch=options.get("producer_epoch", -1),
        base_sequence=options.get("base_sequence", -1), batch_size=1 << 30)
    for offset, (timestamp, key, value, headers) in enumerate(records):
        if builder.append(offset, timestamp=timestamp, key=key, value=value, headers=headers) is None:
            raise SystemExit("kafka-python refused record %d" % offset)
    data = bytearray(builder.build())
    # Base offset and partition leader epoch are outside the CRC: a broker sets them in place.
    struct.pack_into(">q", data, 0, options.get("base_offset", 0))
    struct.pack_into(">i", data, 12, options.get("partition_leader_epoch", 0))
    return bytes(data)


def describe(batch, options, description, name):
    parsed = DefaultRecordBatch(batch)
    if not parsed.validate_crc():
        raise SystemExit("%s: kafka-python says the CRC is invalid" % name)
    header = {
        "base_offset": parsed.base_offset, "batch_length": len(batch) - 12,
        "partition_leader_epoch": struct.unpack_from(">i", batch, 12)[0], "magic": parsed.magic,
        "crc": parsed.crc, "attributes": parsed.attributes, "last_offset_delta": parsed.last_offset_delta,
        "base_timestamp": parsed.first_timestamp, "max_timestamp": parsed.max_timestamp,
        "producer_id": parsed.producer_id, "producer_epoch": parsed.producer_epoch,
        "base_sequence": parsed.base_sequence, "record_count": parsed.records_count,
    }
    records = []
    for record in parsed:
        records.append({
            "offset": record.offset, "timestamp": record.timestamp,
            "key": None if record.key is None else bytes(record.key).hex(),
            "value": None if record.value is None else bytes(record.value).hex(),
            "headers": [{"key": k, "value": None if v is None else bytes(v).hex()} for k, v in record.headers],
        })
    if options["compression"] != "none" and parsed.compression_type != CODECS[options["compression"]]:
        raise SystemExit("%s: kafka-python did not compress (no gain); use more compressible records" % name)
    return {
        "name": name, "description": description,
        "generator": "kafka-python %s DefaultRecordBatchBuilder, python-lz4 %s (liblz4 %s)"
                     % (kafka.__version__, lz4.__version__, lz4.library_version_string()),
        "builder": dict({"compression": "none", "producer_id": -1, "producer_epoch": -1, "base_sequence": -1,
                         "is_transactional": False, "base_offset": 0, "partition_leader_epoch": 0}, **options),
        "header": header, "records": records,
    }


def to_json(vector):
    """Pretty header, one line per record: readable and diff-friendly."""
    records = vector.pop("records")
    text = json.dumps(vector, indent=1)[:-2]
    lines = ",\n  ".join(json.dumps(r, separators=(",", ":")) for r in records)
    return text + ',\n "records": [\n  ' + lines + "\n ]\n}\n"


def write_hex(path, data):
    text = data.hex()
    with open(path, "w") as f:
        f.write("\n".join(text[i:i + 64] for i in range(0, len(text), 64)) + "\n")


LZ4_VARIANTS = [
    # name, python-lz4 options
    ("kafka-python", dict(block_linked=False)),
    ("linked-content-size", dict(block_linked=True, store_size=True)),
    ("independent-no-size", dict(block_linked=False, store_size=False)),
    ("content-checksum", dict(block_linked=False, store_size=False, content_checksum=True)),
    ("block-checksum-256kb", dict(block_size=lz4.frame.BLOCKSIZE_MAX256KB, block_checksum=True, store_size=False)),
    ("all-checksums-1mb-linked", dict(block_size=lz4.frame.BLOCKSIZE_MAX1MB, block_linked=True,
                                      content_checksum=True, block_checksum=True)),
    ("4mb-independent", dict(block_size=lz4.frame.BLOCKSIZE_MAX4MB, block_linked=False)),
    ("high-compression", dict(compression_level=lz4.frame.COMPRESSIONLEVEL_MINHC, block_linked=False)),
]


def frame_content():
    """150 KB of JSON lines: three 64 KB blocks."""
    out = bytearray()
    i = 0
    while len(out) < 150_000:
        out += json_event(i) + b"\n"
        i += 1
    return bytes(out)


def generate(out_dir):
    os.makedirs(os.path.join(out_dir, "lz4-frames"), exist_ok=True)
    for name, description, options, records in batch_specs():
        batch = build(options, records)
        write_hex(os.path.join(out_dir, name + ".hex"), batch)
        with open(os.path.join(out_dir, name + ".json"), "w") as f:
            f.write(to_json(describe(batch, options, description, name)))
    # A Produce `records` field holding two batches back to back.
    first = build({"compression": "none"}, [(BASE_TIMESTAMP, b"a", b"first batch", [])])
    second = build({"compression": "lz4"}, [(BASE_TIMESTAMP + i, b"b", json_event(i), []) for i in range(10)])
    write_hex(os.path.join(out_dir, "concatenated-two-batches.hex"), first + second)
    content = frame_content()
    for name, options in LZ4_VARIANTS:
        with open(os.path.join(out_dir, "lz4-frames", name + ".lz4"), "wb") as f:
            f.write(lz4.frame.compress(content, **options))
    with open(os.path.join(out_dir, "lz4-frames", "empty.lz4"), "wb") as f:
        f.write(lz4.frame.compress(b"", block_linked=False))


def main():
    args = sys.argv[1:]
    if args and args[0] == "--check":
        committed = args[1] if len(args) > 1 else "protocol/vectors/batches"
        with tempfile.TemporaryDirectory() as tmp:
            generate(tmp)
            mismatches = []
            for root, _, files in os.walk(tmp):
                for file in files:
                    fresh = os.path.join(root, file)
                    old = os.path.join(committed, os.path.relpath(fresh, tmp))
                    if not os.path.exists(old) or open(old, "rb").read() != open(fresh, "rb").read():
                        mismatches.append(os.path.relpath(fresh, tmp))
            if mismatches:
                print("vectors differ from a fresh kafka-python run: " + ", ".join(sorted(mismatches)))
                return 1
            print("vectors: %s matches a fresh kafka-python %s run" % (committed, kafka.__version__))
            return 0
    generate(args[0] if args else "protocol/vectors/batches")
    return 0


if __name__ == "__main__":
    sys.exit(main())
