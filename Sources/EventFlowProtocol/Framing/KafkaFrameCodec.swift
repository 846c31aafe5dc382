import NIOCore

/// Splits a byte stream into Kafka frames: an int32 size, then that many bytes.
///
/// Emits each frame's payload as a `ByteBuffer` slice of the read buffer (no copy). A negative
/// size or one above `frameBytesMax` is a `ProtocolError` raised as soon as the 4-byte prefix
/// arrives, so a hostile size never makes the pipeline buffer or allocate the claimed bytes.
public struct KafkaFrameDecoder: ByteToMessageDecoder, Sendable {
    public typealias InboundOut = ByteBuffer

    /// Default limit: 100 MiB, Kafka's default `socket.request.max.bytes`.
    public static let defaultFrameBytesMax = 100 * 1024 * 1024

    public let frameBytesMax: Int

    public init(frameBytesMax: Int = KafkaFrameDecoder.defaultFrameBytesMax) {
        self.frameBytesMax = frameBytesMax
    }

    /// The whole length (size prefix included) of the frame at the buffer's reader index, once its
    /// prefix is there; nil before. Throws for a size this decoder refuses.
    public func frameLength(of buffer: ByteBuffer) throws -> Int? {
        let start = buffer.readerIndex
        guard let size = buffer.getInteger(at: start, as: Int32.self) else { return nil }
        guard size >= 0 else {
            throw ProtocolError(.invalidValue, field: "frame.size", offset: start, detail: "negative frame size \(size)")
        }
        guard Int(size) <= frameBytesMax else {
            throw ProtocolError(.frameTooLarge, field: "frame.size", offset: start,
                                detail: "frame of \(size) bytes exceeds frameBytesMax \(frameBytesMax)")
        }
        return 4 + Int(size)
    }

    /// The pure framing step: the next complete frame, nil if more bytes are needed.
    /// On success the buffer's reader index moves past the frame.
    public func nextFrame(from buffer: inout ByteBuffer) throws -> ByteBuffer? {
        guard let length = try frameLength(of: buffer), buffer.readableBytes >= length else { return nil }
        buffer.moveReaderIndex(forwardBy: 4)
        return buffer.readSlice(length: length - 4)
    }

    public mutating func decode(context: ChannelHandlerContext, buffer: inout ByteBuffer) throws -> DecodingState {
        guard let frame = try nextFrame(from: &buffer) else { return .needMoreData }
        context.fireChannelRead(Self.wrapInboundOut(frame))
        return .continue
    }

    public mutating func decodeLast(context: ChannelHandlerContext, buffer: inout ByteBuffer, seenEOF: Bool) throws -> DecodingState {
        if try decode(context: context, buffer: &buffer) == .continue { return .continue }
        // The peer closed in the middle of a frame: report it instead of dropping it silently.
        if seenEOF && buffer.readableBytes > 0 {
            throw ProtocolError(.truncated, field: "frame", offset: buffer.readerIndex,
                                detail: "connection closed with \(buffer.readableBytes) bytes of an incomplete frame")
        }
        return .needMoreData
    }
}

/// Writes each outbound message (a request or response: header + body) behind its int32 size.
public struct KafkaFrameEncoder: MessageToByteEncoder, Sendable {
    public typealias OutboundIn = ByteBuffer

    public init() {}

    public func encode(data: ByteBuffer, out: inout ByteBuffer) throws {
        guard let size = Int32(exactly: data.readableBytes) else {
            throw ProtocolError(.frameTooLarge, field: "frame.size", offset: 0,
                                detail: "\(data.readableBytes) bytes do not fit an int32 size")
        }
        out.writeInteger(size)
        out.writeImmutableBuffer(data)
    }
}
