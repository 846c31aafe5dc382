/// Request bytes read from sockets and not yet handed to (or refused by) the batcher.
///
/// The batcher bounds what it buffers, but frames read ahead of it (each connection reads up to
/// `inflightRequestsMax` frames) were counted nowhere. Each frame is charged when read and
/// released once its produce was accepted or refused, or it was answered, or its connection closed.
/// Reads pause when `bytesMax` is reached and resume at `resumeBytes`; the broker keeps one
/// budget for all connections and one per connection.
public struct RequestBytesBudget: Sendable, Equatable {
    public struct Configuration: Sendable, Equatable {
        /// Charged bytes at which reads pause. A single frame above it is still taken (it is read).
        public var bytesMax: Int
        /// Charged bytes at or below which paused reads resume.
        public var resumeBytes: Int

        public init(bytesMax: Int, resumeBytes: Int? = nil) {
            precondition(bytesMax > 0, "bytesMax must be positive")
            self.bytesMax = bytesMax
            self.resumeBytes = min(max(resumeBytes ?? bytesMax / 2, 0), bytesMax - 1)
        }
    }

    public enum Action: Sendable, Equatable {
        case none
        case pauseReading
        case resumeReading
    }

    public let configuration: Configuration
    public private(set) var chargedBytes = 0
    public private(set) var isReadingPaused = false

    public init(configuration: Configuration) {
        self.configuration = configuration
    }

    /// A frame of `bytes` was read.
    public mutating func charge(_ bytes: Int) -> Action {
        chargedBytes += max(bytes, 0)
        guard !isReadingPaused, chargedBytes >= configuration.bytesMax else { return .none }
        isReadingPaused = true
        return .pauseReading
    }

    /// `bytes` earlier charged are no longer held by a waiting request. Releasing more than is
    /// charged clamps at zero, so a late release after a connection's bulk release is harmless.
    public mutating func release(_ bytes: Int) -> Action {
        chargedBytes = max(chargedBytes - max(bytes, 0), 0)
        guard isReadingPaused, chargedBytes <= configuration.resumeBytes else { return .none }
        isReadingPaused = false
        return .resumeReading
    }
}
