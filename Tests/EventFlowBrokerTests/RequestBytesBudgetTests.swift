import EventFlowBroker
import Testing

@Suite struct RequestBytesBudgetTests {
    private func budget(bytesMax: Int = 100, resumeBytes: Int? = nil) -> RequestBytesBudget {
        RequestBytesBudget(configuration: .init(bytesMax: bytesMax, resumeBytes: resumeBytes))
    }

    @Test func chargesBelowTheBoundKeepReading() {
        var b = budget()
        #expect(b.charge(40) == .none)
        #expect(b.charge(59) == .none)
        #expect(b.chargedBytes == 99)
        #expect(!b.isReadingPaused)
    }

    @Test func reachingTheBoundPausesOnceAndResumesAtHalf() {
        var b = budget()
        #expect(b.charge(60) == .none)
        #expect(b.charge(40) == .pauseReading)
        #expect(b.charge(30) == .none, "already paused: a frame read meanwhile is charged without a second pause")
        #expect(b.chargedBytes == 130)
        #expect(b.release(60) == .none, "70 bytes are still above the resume mark of 50")
        #expect(b.isReadingPaused)
        #expect(b.release(20) == .resumeReading)
        #expect(b.chargedBytes == 50)
        #expect(b.release(50) == .none)
        #expect(b.chargedBytes == 0)
    }

    @Test func oneFrameLargerThanTheBoundIsTakenAndPauses() {
        var b = budget()
        #expect(b.charge(1_000) == .pauseReading)
        #expect(b.release(1_000) == .resumeReading)
        #expect(b.chargedBytes == 0)
        #expect(!b.isReadingPaused)
    }

    @Test func releasingMoreThanChargedStopsAtZero() {
        var b = budget()
        _ = b.charge(10)
        #expect(b.release(25) == .none)
        #expect(b.chargedBytes == 0)
        #expect(b.charge(-5) == .none, "a negative size charges nothing")
        #expect(b.chargedBytes == 0)
    }

    @Test func resumeMarkIsBelowTheBound() {
        #expect(budget(bytesMax: 100, resumeBytes: 500).configuration.resumeBytes == 99)
        #expect(budget(bytesMax: 100, resumeBytes: -1).configuration.resumeBytes == 0)
        #expect(budget(bytesMax: 1).configuration.resumeBytes == 0)
        var b = budget(bytesMax: 100, resumeBytes: 10)
        _ = b.charge(100)
        #expect(b.release(89) == .none)
        #expect(b.release(1) == .resumeReading)
    }
}
