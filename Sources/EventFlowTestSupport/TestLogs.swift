import Foundation
import Logging
import Synchronization

/// The brokers the suite starts log every line, at debug level, to one file per test process in
/// `EVENTFLOW_TEST_LOG_DIR` (set by `make test`), and every secret the suite hands out or tries is
/// written beside them; `scripts/check-logs-for-secrets.py` then greps the logs for the secrets.
/// Without the variable, brokers log warnings to standard error as before.
public enum TestLogs {
    /// The folder of the suite's logs, when `make test` asked for them.
    public static let directory: String? = {
        guard let value = ProcessInfo.processInfo.environment["EVENTFLOW_TEST_LOG_DIR"], !value.isEmpty else { return nil }
        try? FileManager.default.createDirectory(atPath: value, withIntermediateDirectories: true)
        return value
    }()

    private static let logFile: AppendOnlyFile? = directory.flatMap {
        AppendOnlyFile(path: "\($0)/swift-tests-\(getpid()).log")
    }
    private static let secretsFile: AppendOnlyFile? = directory.flatMap {
        AppendOnlyFile(path: "\($0)/secrets-\(getpid()).txt")
    }

    /// A logger for a broker under test: every line to the suite's log file when there is one.
    public static func logger(label: String, quietLevel: Logger.Level = .warning) -> Logger {
        guard let logFile else {
            var logger = Logger(label: label)
            logger.logLevel = quietLevel
            return logger
        }
        var logger = Logger(label: label) { label in FileLogHandler(label: label, file: logFile) }
        logger.logLevel = .debug
        return logger
    }

    static func fileHandler(label: String) -> (any LogHandler)? {
        logFile.map { FileLogHandler(label: label, file: $0) }
    }

    /// A wrong secret to try, unique so that a log line echoing it is found (and noted as a secret).
    public static func wrongSecret() -> String {
        let secret = "efs_wrong_" + UUID().uuidString.replacingOccurrences(of: "-", with: "").lowercased()
        noteSecret(secret)
        return secret
    }

    /// Records a secret (an API key's secret, a password tried) the logs must never contain.
    public static func noteSecret(_ secret: String) {
        secretsFile?.append(secret + "\n")
    }
}

/// One file that many threads append whole lines to.
final class AppendOnlyFile: Sendable {
    private let handle: Mutex<FileHandle>

    init?(path: String) {
        guard FileManager.default.createFile(atPath: path, contents: nil),
              let handle = FileHandle(forWritingAtPath: path) else { return nil }
        self.handle = Mutex(handle)
    }

    func append(_ text: String) {
        handle.withLock { $0.write(Data(text.utf8)) }
    }
}

/// Writes each event as one line: time, level, label, message, metadata — what a log shipper gets.
struct FileLogHandler: LogHandler {
    let label: String
    let file: AppendOnlyFile
    var metadata: Logger.Metadata = [:]
    var logLevel: Logger.Level = .debug

    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    func log(event: LogEvent) {
        file.append(LogLine.format(level: event.level, label: label, message: event.message,
                                   metadata: metadata.merging(event.metadata ?? [:]) { _, new in new }) + "\n")
    }
}

/// Log lines kept in memory, for a test that asserts what the broker logged.
public final class CapturedLog: Sendable {
    private let lines = Mutex<[String]>([])

    public init() {}

    /// A logger at debug level writing into this capture (and into the suite's log file when there is one).
    public func logger(label: String) -> Logger {
        var logger = Logger(label: label) { label in
            MultiplexLogHandler([CapturingLogHandler(label: label, capture: self)]
                + (TestLogs.fileHandler(label: label).map { [$0] } ?? []))
        }
        logger.logLevel = .debug
        return logger
    }

    public var all: [String] { lines.withLock { $0 } }

    func append(_ line: String) { lines.withLock { $0.append(line) } }
}

struct CapturingLogHandler: LogHandler {
    let label: String
    let capture: CapturedLog
    var metadata: Logger.Metadata = [:]
    var logLevel: Logger.Level = .debug

    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    func log(event: LogEvent) {
        capture.append(LogLine.format(level: event.level, label: label, message: event.message,
                                      metadata: metadata.merging(event.metadata ?? [:]) { _, new in new }))
    }
}

enum LogLine {
    static func format(level: Logger.Level, label: String, message: Logger.Message, metadata: Logger.Metadata) -> String {
        let fields = metadata.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: " ")
        return "\(Date().timeIntervalSince1970) \(level) \(label): \(message) \(fields)"
    }
}
