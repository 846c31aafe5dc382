import EventFlowStorage
import Foundation

/// What the analytics projector reads next (pure: no I/O, no clock). Given each projected
/// partition's position and, where the broker knows it, its committed end, a round reads the
/// partitions that are behind — the furthest behind first, at most `stepsPerRoundMax` of them —
/// one step each, so one busy stream cannot starve the others and a round stays bounded.
public struct ProjectionPlan: Sendable {
    public struct Configuration: Sendable {
        /// How often the projector looks for new batches when it found none, in milliseconds.
        public var idleMilliseconds: Int64
        /// Batches one step reads and stores in one transaction.
        public var batchesPerStepMax: Int
        /// Batch bytes one step reads (the first batch is read whole regardless).
        public var bytesPerStepMax: Int
        /// Partitions one round steps through before the projector looks at the positions again.
        public var stepsPerRoundMax: Int
        /// Share of the time the projector works while it is behind, in percent: after a round that took
        /// T it rests T × (100 / busyPercentMax − 1), so on a machine ingest saturates it takes at most
        /// this share of a core (and of the database's attention) and falls behind instead.
        public var busyPercentMax: Int

        public init(idleMilliseconds: Int64 = 500, batchesPerStepMax: Int = 256, bytesPerStepMax: Int = 8 << 20,
                    stepsPerRoundMax: Int = 64, busyPercentMax: Int = 25) {
            self.idleMilliseconds = max(idleMilliseconds, 1)
            self.batchesPerStepMax = max(batchesPerStepMax, 1)
            self.bytesPerStepMax = max(bytesPerStepMax, 1)
            self.stepsPerRoundMax = max(stepsPerRoundMax, 1)
            self.busyPercentMax = min(max(busyPercentMax, 1), 100)
        }
    }

    public enum Action: Hashable, Sendable {
        /// Read and store the batches of `position`'s partition from its offset.
        case step(EventProjection.Position, batchesMax: Int, bytesMax: Int)
        /// Nothing is behind: look again after this long.
        case idle(milliseconds: Int64)
    }

    public let configuration: Configuration

    /// How long to rest after a busy round that took `nanoseconds` (see `busyPercentMax`), in milliseconds.
    public func rest(afterRoundOf nanoseconds: UInt64) -> Int64 {
        let worked = Int64(clamping: nanoseconds / 1_000_000)
        return worked * Int64(100 - configuration.busyPercentMax) / Int64(configuration.busyPercentMax)
    }

    public init(configuration: Configuration = Configuration()) {
        self.configuration = configuration
    }

    /// The round for `positions`; `committedEnd` is a partition's high watermark, nil for a partition
    /// the broker holds no batches of (it reads every stored partition's end at startup).
    public func round(positions: [EventProjection.Position], committedEnd: (EventProjection.Position) -> Int64?) -> [Action] {
        let behind = positions.compactMap { position -> (EventProjection.Position, Int64)? in
            guard let end = committedEnd(position), end > position.offset else { return nil }
            return (position, end - position.offset)
        }
        guard !behind.isEmpty else { return [.idle(milliseconds: configuration.idleMilliseconds)] }
        return behind
            .sorted { $0.1 != $1.1 ? $0.1 > $1.1 : ($0.0.streamID.uuidString, $0.0.partition) < ($1.0.streamID.uuidString, $1.0.partition) }
            .prefix(configuration.stepsPerRoundMax)
            .map { .step($0.0, batchesMax: configuration.batchesPerStepMax, bytesMax: configuration.bytesPerStepMax) }
    }
}
