#!/usr/bin/env bash
# Cross-checks EventFlow's RecordBatch v2 codec with kafka-python, an independent implementation.
#   1. The committed vectors (protocol/vectors/batches) are exactly what kafka-python writes today.
#   2. The batches EventFlow built in `swift test` (RecordBatchCrossCheckTests writes them to
#      .build/crosscheck/) are read by kafka-python with a valid CRC and the expected records.
# Needs: pip install kafka-python==3.0.12 lz4   (run after `swift test`).
set -euo pipefail
cd "$(dirname "$0")/.."
crosscheck_dir="${CROSSCHECK_DIR:-.build/crosscheck}"

if ! python3 -c 'import kafka, lz4.frame' 2>/dev/null; then
    echo "crosscheck-batches: needs python3 with kafka-python and lz4: pip install kafka-python==3.0.12 lz4" >&2
    exit 1
fi

python3 scripts/kafka_python_vectors.py --check protocol/vectors/batches

if ! ls "$crosscheck_dir"/*.bin >/dev/null 2>&1; then
    echo "crosscheck-batches: no EventFlow batches in $crosscheck_dir; run 'swift test --filter RecordBatchCrossCheckTests' first" >&2
    exit 1
fi
python3 scripts/kafka_python_check.py "$crosscheck_dir"
