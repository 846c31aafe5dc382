import CFuzzDriver
import EventFlowProtocol
import NIOCore

/// The broker's input path: frames split from a byte stream, each decoded as a request;
/// then the input as the body of every served (API, version) pair, request and response.
/// A request that decodes must re-encode to bytes that decode to the same value.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzRequests(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    guard size > 0 else { return 0 }
    let selector = Int(data[0])
    let input = ByteBuffer(bytes: UnsafeBufferPointer(start: data + 1, count: size - 1))

    // 1. Framing + request decode, as the connection handler does it.
    let decoder = KafkaFrameDecoder(frameBytesMax: 1 << 20)
    var stream = input
    while true {
        guard let frame = try? decoder.nextFrame(from: &stream) else { break }
        if let request = try? KafkaRequest.decode(frame: frame) {
            checkRoundTrip(request)
        }
    }

    // 2. The whole input as one frame, and as a body of one (API, version) chosen by the first byte.
    if let request = try? KafkaRequest.decode(frame: input) {
        checkRoundTrip(request)
    }
    let pairs = servedPairs
    let (apiKey, version) = pairs[selector % pairs.count]
    var body = input
    _ = try? KafkaRequest.decodeBody(apiKey: apiKey, version: version, from: &body)
    body = input
    _ = try? KafkaResponse.decodeBody(apiKey: apiKey, version: version, from: &body)
    return 0
}

private let servedPairs: [(APIKey, Int16)] = SupportedAPIVersions.ranges
    .sorted { $0.key.rawValue < $1.key.rawValue }
    .flatMap { key, range in range.map { (key, $0) } }

private func checkRoundTrip(_ request: DecodedRequest) {
    let encoded = request.encoded()
    do {
        let again = try KafkaRequest.decode(frame: encoded)
        precondition(again == request, "re-encoded \(request.header.apiKey) v\(request.header.apiVersion) decodes differently")
    } catch {
        preconditionFailure("re-encoded \(request.header.apiKey) v\(request.header.apiVersion) does not decode: \(error)")
    }
}

/// The executable's entry point (SwiftPM names it `FuzzRequests_main`): hands control to libFuzzer.
@_cdecl("FuzzRequests_main")
public func fuzzRequestsMain(_ argc: CInt, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>) -> CInt {
    eventflow_fuzz_run(argc, argv) { data, size in
        guard let data else { return 0 }
        return fuzzRequests(data, size)
    }
}
