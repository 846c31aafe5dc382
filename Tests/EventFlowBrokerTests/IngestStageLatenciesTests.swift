@testable import EventFlowBroker
import Testing

/// The fixed-bucket stage histograms behind the broker's once-a-second debug line.
struct IngestStageLatenciesTests {
    @Test func percentilesAreTheUpperBoundOfTheirBucketCappedAtTheLargestValue() {
        var window = IngestStageLatencies()
        #expect(window.isEmpty)
        #expect(window.percentileMicroseconds(.copySentToCommitted, 99) == nil)
        // 98 commits of 0.9 ms, one of 7 ms and one of 180 ms.
        window.record(.copySentToCommitted, nanoseconds: 900_000, count: 98)
        window.record(.copySentToCommitted, nanoseconds: 7_000_000)
        window.record(.copySentToCommitted, nanoseconds: 180_000_000)
        #expect(window.count(.copySentToCommitted) == 100)
        #expect(window.percentileMicroseconds(.copySentToCommitted, 50) == 1_000)
        #expect(window.percentileMicroseconds(.copySentToCommitted, 98) == 1_000)
        #expect(window.percentileMicroseconds(.copySentToCommitted, 99) == 8_000)
        #expect(window.percentileMicroseconds(.copySentToCommitted, 100) == 180_000)
        #expect(window.maxMicroseconds(.copySentToCommitted) == 180_000)
        #expect(window.count(.frameToAccepted) == 0)
        #expect(window.summary() == ["copy_sent_to_committed": "n=100 p50=1.00 p99=8.00 max=180.0ms"])
    }

    @Test func aValueBeyondTheLastBoundIsCountedNotLost() {
        var window = IngestStageLatencies()
        window.record(.frameToWritten, nanoseconds: 3_600 * 1_000_000_000)
        #expect(window.count(.frameToWritten) == 1)
        #expect(window.percentileMicroseconds(.frameToWritten, 50) == 3_600_000_000)
    }
}
