@testable import EventFlowBroker
import EventFlowProtocol
import Foundation
import Logging
import Synchronization
import Testing

/// `serve --log-format json`: one JSON object per line, and the request-level debug lines carry
/// the connection, the API and the correlation id.
@Suite struct LogFormatTests {
    final class Lines: Sendable {
        private let lines = Mutex<[String]>([])
        func append(_ line: String) { lines.withLock { $0.append(line) } }
        var all: [String] { lines.withLock { $0 } }

        /// Every line parsed as a JSON object; a line that is not one fails the test.
        func objects() throws -> [[String: Any]] {
            try all.map { line in
                #expect(line.hasSuffix("}\n") && line.dropLast().firstIndex(of: "\n") == nil, "one event per line: \(line)")
                let object = try JSONSerialization.jsonObject(with: Data(line.utf8))
                return try #require(object as? [String: Any], "\(line)")
            }
        }
    }

    @Test func eachEventIsOneJSONObjectWithItsMetadataEscapedAndShaped() throws {
        let lines = Lines()
        var logger = Logger(label: "eventflow.test") { JSONLogHandler(label: $0, output: lines.append) }
        logger.logLevel = .debug
        logger[metadataKey: "peer"] = "127.0.0.1:5000"
        logger.warning("quote \" backslash \\ newline \n tab \t bell \u{7} é 🙂", metadata: [
            "list": ["a", .dictionary(["k": "v\nw"])], "count": .stringConvertible(42),
        ])
        logger.trace("below the level")
        let objects = try lines.objects()
        try #require(objects.count == 1)
        let event = objects[0]
        #expect(event["level"] as? String == "warning")
        #expect(event["label"] as? String == "eventflow.test")
        #expect(event["message"] as? String == "quote \" backslash \\ newline \n tab \t bell \u{7} é 🙂")
        let time = try #require(event["time"] as? String)
        #expect(time.wholeMatch(of: /\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z/) != nil, "\(time)")
        let metadata = try #require(event["metadata"] as? [String: Any])
        #expect(metadata["peer"] as? String == "127.0.0.1:5000")
        #expect(metadata["count"] as? String == "42")
        let list = try #require(metadata["list"] as? [Any])
        #expect(list.first as? String == "a")
        #expect((list.last as? [String: String]) == ["k": "v\nw"])
        // Keys in a fixed order: equal events give equal lines apart from the time.
        #expect(lines.all[0].hasPrefix("{\"time\":\"\(time)\",\"level\":\"warning\",\"label\":\"eventflow.test\",\"message\":"))
        #expect(lines.all[0].contains(",\"metadata\":{\"count\":\"42\",\"list\":[\"a\",{\"k\":\"v\\nw\"}],\"peer\":\"127.0.0.1:5000\"}}"))
    }

    @Test func requestsAreLoggedAtDebugWithConnectionAPIAndCorrelationID() async throws {
        let lines = Lines()
        var logger = Logger(label: "test.broker") { JSONLogHandler(label: $0, output: lines.append) }
        logger.logLevel = .debug
        let harness = try await BrokerHarness.start(logger: logger)
        let first = try await harness.authenticatedConnection()
        let second = try await harness.authenticatedConnection()
        let (sent, _) = try await second.call(MetadataRequest(topics: ["orders"]), version: 7)
        await first.close()
        await second.close()
        await harness.broker.shutdown()

        let requests = try lines.objects().filter { $0["message"] as? String == "request" }.compactMap { $0["metadata"] as? [String: String] }
        let metadata = try #require(requests.first { $0["api"] == "metadata" && $0["correlationId"] == "\(sent)" })
        #expect(metadata["version"] == "7")
        let connection = try #require(metadata["connection"])
        #expect(metadata["peer"]?.contains("127.0.0.1") == true)
        // The SASL requests of the same connection carry the same connection number; the other connection another.
        let numbers = Set(requests.compactMap { $0["connection"] })
        #expect(numbers.count == 2)
        #expect(requests.contains { $0["connection"] == connection && $0["api"] == "saslAuthenticate" })
        // After authentication the line names the API key's id, never its secret.
        #expect(metadata["apiKeyID"] == harness.key.key.id.uuidString)
        #expect(!lines.all.contains { $0.contains(harness.key.secret) })
    }
}
