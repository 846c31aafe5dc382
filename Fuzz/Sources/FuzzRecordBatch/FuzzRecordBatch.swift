import CFuzzDriver
import EventFlowProtocol
import NIOCore

/// Feeds the batch reader: split a `records` field, validate each batch, read every record.
///
/// Random bytes almost never carry a valid CRC, which would stop every input at validation;
/// so when the first byte is odd the harness first repairs batchLength and the CRC of the
/// batch that follows, letting the fuzzer reach record decoding and LZ4 decompression.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzRecordBatch(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    guard size > 0 else { return 0 }
    let mode = data[0]
    var input = ByteBuffer(bytes: UnsafeBufferPointer(start: data + 1, count: size - 1))
    if mode & 1 == 1, input.readableBytes >= RecordBatchHeader.byteCount {
        input.setInteger(Int32(input.readableBytes - RecordBatchHeader.lengthPrefixByteCount),
                         at: RecordBatchHeader.batchLengthIndex)
        let crc = CRC32C.checksum(input, at: RecordBatchHeader.attributesIndex,
                                  length: input.readableBytes - RecordBatchHeader.attributesIndex) ?? 0
        input.setInteger(crc, at: RecordBatchHeader.crcIndex)
    }
    for allowsPartial in [false, true] {
        var batches = RecordBatchSequence(input, allowsTrailingPartialBatch: allowsPartial)
        while true {
            do {
                guard var batch = try batches.next() else { break }
                readAll(batch)
                batch.rewriteBaseOffset(Int64(size))
                readAll(try RecordBatchView(validating: batch.bytes))
            } catch {
                break
            }
        }
    }
    return 0
}

private func readAll(_ batch: RecordBatchView) {
    do {
        var all = try batch.records(decompressedBytesMax: 256 * 1024)
        _ = try all.readAll()
    } catch {}
    do {
        var reader = try batch.records(decompressedBytesMax: 256 * 1024)
        var previous: Int64 = .min
        while let record = try reader.next() {
            // The reader's own invariants: offsets increase, slices lie inside what was read.
            precondition(record.offset > previous || previous == .min, "offsets must increase")
            previous = record.offset
            _ = record.key?.readableBytes
            _ = record.value?.readableBytes
            for header in record.headers { _ = header.key.utf8.count }
        }
    } catch {
        return
    }
}

/// The executable's entry point (SwiftPM names it `FuzzRecordBatch_main`): hands control to libFuzzer.
@_cdecl("FuzzRecordBatch_main")
public func fuzzRecordBatchMain(_ argc: CInt, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>) -> CInt {
    eventflow_fuzz_run(argc, argv) { data, size in
        guard let data else { return 0 }
        return fuzzRecordBatch(data, size)
    }
}
