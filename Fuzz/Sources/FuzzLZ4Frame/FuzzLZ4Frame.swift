import CFuzzDriver
import EventFlowProtocol
import NIOCore

/// Decompresses arbitrary bytes under a small bound, and checks that compressing the input
/// under a fuzzer-chosen frame option and decompressing it gives the input back.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzLZ4Frame(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    guard size > 0 else { return 0 }
    let input = ByteBuffer(bytes: UnsafeBufferPointer(start: data + 1, count: size - 1))
    var output = ByteBuffer()
    if let count = try? LZ4Frame.decompress(input, into: &output, decompressedBytesMax: 256 * 1024) {
        precondition(count == output.readableBytes && count <= 256 * 1024, "decompressed size out of bounds")
    }

    let flags = data[0]
    let sizes = LZ4Frame.Preferences.BlockSize.allCases
    let preferences = LZ4Frame.Preferences(
        blockSize: sizes[Int(flags >> 4) % sizes.count],
        independentBlocks: flags & 1 != 0, blockChecksum: flags & 2 != 0,
        contentChecksum: flags & 4 != 0, contentSize: flags & 8 != 0)
    var compressed = ByteBuffer()
    do {
        try LZ4Frame.compress(input, into: &compressed, preferences: preferences)
        var roundTrip = ByteBuffer()
        try LZ4Frame.decompress(compressed, into: &roundTrip, decompressedBytesMax: input.readableBytes)
        precondition(roundTrip == input, "LZ4 round trip changed the data")
    } catch {
        preconditionFailure("LZ4 round trip failed: \(error)")
    }
    return 0
}

/// The executable's entry point (SwiftPM names it `FuzzLZ4Frame_main`): hands control to libFuzzer.
@_cdecl("FuzzLZ4Frame_main")
public func fuzzLZ4FrameMain(_ argc: CInt, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>) -> CInt {
    eventflow_fuzz_run(argc, argv) { data, size in
        guard let data else { return 0 }
        return fuzzLZ4Frame(data, size)
    }
}
