import Logging
import NIOCore

/// Sits in front of TLS on the TLS port. A TLS connection opens with a handshake record (content
/// type 22); anything else — a Kafka client configured for PLAINTEXT, an HTTP probe — is named in
/// the log, with the first bytes it sent, and closed before TLS would fail it with an opaque
/// handshake error. After the first byte it only passes reads on.
final class TLSRecordSniffer: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = ByteBuffer

    /// TLS record content type of a handshake (RFC 8446 §5.1).
    static let handshakeContentType: UInt8 = 22
    /// Bytes of a refused opening shown in the log line.
    static let loggedBytesMax = 8

    private let logger: Logger
    private var decided = false

    init(logger: Logger) {
        self.logger = logger
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        if decided {
            context.fireChannelRead(data)
            return
        }
        let buffer = unwrapInboundIn(data)
        guard let first = buffer.getInteger(at: buffer.readerIndex, as: UInt8.self) else { return }
        decided = true
        guard first == Self.handshakeContentType else {
            let opening = buffer.getBytes(at: buffer.readerIndex, length: min(buffer.readableBytes, Self.loggedBytesMax)) ?? []
            logger.notice("not TLS on the TLS port (a client configured for plaintext?); closing connection", metadata: [
                "peer": "\(context.remoteAddress.map { "\($0)" } ?? "unknown")",
                "firstBytes": "\(opening.map { String(format: "%02x", $0) }.joined(separator: " "))",
            ])
            context.close(promise: nil)
            return
        }
        context.fireChannelRead(data)
    }
}
