import Foundation
import Logging
import NIOCore
import NIOHTTP1

/// The broker's HTTP listener for operators (`serve --http-port`, loopback by default):
///
/// - `GET /metrics` — Prometheus text format (0.0.4) of `BrokerMetrics`;
/// - `GET /health` — 200 while the process serves HTTP at all;
/// - `GET /ready` — 200 once the Kafka listener is bound, the database answers and every migration
///   is applied; 503 with the reason otherwise (a load balancer's or orchestrator's readiness check).
///
/// Requests carry no body worth reading: one over `requestBodyBytesMax` closes the connection.
final class HTTPEndpointHandler: ChannelInboundHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    struct Answer: Sendable {
        var status: HTTPResponseStatus
        var contentType: String
        var body: [UInt8]

        static func text(_ status: HTTPResponseStatus, _ text: String) -> Answer {
            Answer(status: status, contentType: "text/plain; charset=utf-8", body: Array(text.utf8))
        }
    }

    /// The answer to a GET of a path (`/metrics`, `/health`, `/ready`), or nil for an unknown path.
    typealias Route = @Sendable (_ path: String, _ eventLoop: any EventLoop) -> EventLoopFuture<Answer>?

    static let requestBodyBytesMax = 64 << 10

    private let route: Route
    private var head: HTTPRequestHead?
    private var bodyBytes = 0

    init(route: @escaping Route) {
        self.route = route
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let head):
            self.head = head
            bodyBytes = 0
        case .body(let chunk):
            bodyBytes += chunk.readableBytes
            if bodyBytes > Self.requestBodyBytesMax { context.close(promise: nil) }
        case .end:
            guard let head else { return }
            self.head = nil
            answer(head, context: context)
        }
    }

    private func answer(_ head: HTTPRequestHead, context: ChannelHandlerContext) {
        let path = head.uri.split(separator: "?", maxSplits: 1).first.map(String.init) ?? head.uri
        let keepAlive = head.isKeepAlive
        let answered: EventLoopFuture<Answer>
        if head.method != .GET && head.method != .HEAD {
            answered = context.eventLoop.makeSucceededFuture(.text(.methodNotAllowed, "only GET and HEAD are served\n"))
        } else if let future = route(path, context.eventLoop) {
            answered = future
        } else {
            answered = context.eventLoop.makeSucceededFuture(.text(.notFound, "not found: \(path) (served: /metrics, /health, /ready)\n"))
        }
        let bound = NIOLoopBound(context, eventLoop: context.eventLoop)
        let isHead = head.method == .HEAD
        answered.hop(to: context.eventLoop).whenComplete { result in
            let context = bound.value
            let answer: Answer
            switch result {
            case .success(let value): answer = value
            case .failure(let error): answer = .text(.internalServerError, "\(error)\n")
            }
            var headers = HTTPHeaders()
            headers.add(name: "Content-Type", value: answer.contentType)
            headers.add(name: "Content-Length", value: "\(answer.body.count)")
            headers.add(name: "Connection", value: keepAlive ? "keep-alive" : "close")
            context.write(NIOAny(HTTPServerResponsePart.head(HTTPResponseHead(version: .http1_1, status: answer.status, headers: headers))),
                          promise: nil)
            if !isHead {
                context.write(NIOAny(HTTPServerResponsePart.body(.byteBuffer(context.channel.allocator.buffer(bytes: answer.body)))),
                              promise: nil)
            }
            let channel = context.channel
            context.writeAndFlush(NIOAny(HTTPServerResponsePart.end(nil))).whenComplete { _ in
                if !keepAlive { channel.close(promise: nil) }
            }
        }
    }
}
