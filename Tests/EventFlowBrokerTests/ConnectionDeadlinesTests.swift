import EventFlowBroker
import NIOCore
import Testing

private let opened = NIODeadline.uptimeNanoseconds(1_000_000_000)

private func at(_ milliseconds: Int64) -> NIODeadline { opened + .milliseconds(milliseconds) }

private let configuration = ConnectionDeadlines.Configuration(
    authenticationTimeout: .milliseconds(100), frameReadTimeout: .milliseconds(50), idleTimeout: .milliseconds(1000))

@Suite struct ConnectionDeadlinesTests {
    @Test func anUnauthenticatedConnectionIsClosedAtTheAuthenticationDeadline() {
        var deadlines = ConnectionDeadlines(configuration: configuration, openedAt: opened, authenticated: false)
        #expect(deadlines.opened() == .schedule(at(100)))
        // Bytes arriving do not extend the authentication deadline.
        deadlines.activity(at: at(90))
        #expect(deadlines.timerFired(at: at(100), requestsOutstanding: 0) == .close(.authenticationTimedOut))
        #expect(deadlines.isExpired)
        #expect(deadlines.timerFired(at: at(200), requestsOutstanding: 0) == .none)
    }

    @Test func authenticationInTimeLeavesOnlyTheIdleDeadline() {
        var deadlines = ConnectionDeadlines(configuration: configuration, openedAt: opened, authenticated: false)
        #expect(deadlines.opened() == .schedule(at(100)))
        deadlines.activity(at: at(20))
        // The idle deadline (from the authentication) is later than the armed one: no re-arm;
        // the timer wakes at the old deadline and re-arms for idleness.
        #expect(deadlines.authenticated(at: at(40)) == .none)
        #expect(deadlines.timerFired(at: at(100), requestsOutstanding: 0) == .schedule(at(1040)))
        #expect(deadlines.timerFired(at: at(1040), requestsOutstanding: 0) == .close(.idle))
    }

    @Test func anIdleDeadlineBeforeTheArmedAuthenticationDeadlineReArmsTheTimer() {
        let patient = ConnectionDeadlines.Configuration(
            authenticationTimeout: .milliseconds(120_000), frameReadTimeout: .milliseconds(50), idleTimeout: .milliseconds(1000))
        var deadlines = ConnectionDeadlines(configuration: patient, openedAt: opened, authenticated: false)
        #expect(deadlines.opened() == .schedule(at(120_000)))
        #expect(deadlines.authenticated(at: at(30)) == .schedule(at(1030)))
        #expect(deadlines.timerFired(at: at(1030), requestsOutstanding: 0) == .close(.idle))
    }

    @Test func beforeAuthenticationOnlyTheAuthenticationDeadlineCounts() {
        // A slow TLS handshake is not idleness: the authentication deadline alone bounds it.
        let slowHandshake = ConnectionDeadlines.Configuration(
            authenticationTimeout: .milliseconds(3000), frameReadTimeout: .milliseconds(50), idleTimeout: .milliseconds(1000))
        var deadlines = ConnectionDeadlines(configuration: slowHandshake, openedAt: opened, authenticated: false)
        #expect(deadlines.opened() == .schedule(at(3000)))
        #expect(deadlines.authenticated(at: at(2500)) == .none)
        #expect(deadlines.timerFired(at: at(3000), requestsOutstanding: 0) == .schedule(at(3500)))
    }

    @Test func withAuthenticationDisabledTheFirstDeadlineIsIdleness() {
        var deadlines = ConnectionDeadlines(configuration: configuration, openedAt: opened, authenticated: true)
        #expect(deadlines.opened() == .schedule(at(1000)))
    }

    @Test func activityPushesTheIdleDeadlineWithoutReArming() {
        var deadlines = ConnectionDeadlines(configuration: configuration, openedAt: opened, authenticated: true)
        #expect(deadlines.opened() == .schedule(at(1000)))
        deadlines.activity(at: at(600))
        #expect(deadlines.timerFired(at: at(1000), requestsOutstanding: 0) == .schedule(at(1600)))
        deadlines.activity(at: at(1500))
        #expect(deadlines.timerFired(at: at(1600), requestsOutstanding: 0) == .schedule(at(2500)))
        #expect(deadlines.timerFired(at: at(2500), requestsOutstanding: 0) == .close(.idle))
    }

    @Test func anOutstandingRequestIsNotIdleness() {
        var deadlines = ConnectionDeadlines(configuration: configuration, openedAt: opened, authenticated: true)
        #expect(deadlines.opened() == .schedule(at(1000)))
        // A long poll is waiting for the broker: the connection counts as busy until it is answered.
        #expect(deadlines.timerFired(at: at(1000), requestsOutstanding: 1) == .schedule(at(2000)))
        #expect(deadlines.timerFired(at: at(2000), requestsOutstanding: 0) == .close(.idle))
    }

    @Test func aStartedFrameArmsAnEarlierDeadlineAndClosesIfItDoesNotFinish() {
        var deadlines = ConnectionDeadlines(configuration: configuration, openedAt: opened, authenticated: true)
        #expect(deadlines.opened() == .schedule(at(1000)))
        #expect(deadlines.frameStarted(at: at(10)) == .schedule(at(60)))
        // Bytes of the frame keep arriving (one at a time), but not the whole frame.
        deadlines.activity(at: at(30))
        deadlines.activity(at: at(59))
        #expect(deadlines.timerFired(at: at(60), requestsOutstanding: 0) == .close(.frameReadTimedOut))
    }

    @Test func aFrameThatFinishesInTimeLeavesTheOtherDeadlines() {
        var deadlines = ConnectionDeadlines(configuration: configuration, openedAt: opened, authenticated: true)
        #expect(deadlines.opened() == .schedule(at(1000)))
        #expect(deadlines.frameStarted(at: at(10)) == .schedule(at(60)))
        deadlines.activity(at: at(40))
        deadlines.frameCompleted()
        #expect(deadlines.timerFired(at: at(60), requestsOutstanding: 1) == .schedule(at(1060)))
        // A second frame started while the timer is armed for an earlier moment does not re-arm.
        #expect(deadlines.frameStarted(at: at(1000)) == .schedule(at(1050)))
        #expect(deadlines.frameStarted(at: at(1001)) == .none)
    }

    @Test func aFrameBeforeAuthenticationIsBoundByTheEarlierOfBothDeadlines() {
        var deadlines = ConnectionDeadlines(configuration: configuration, openedAt: opened, authenticated: false)
        #expect(deadlines.opened() == .schedule(at(100)))
        #expect(deadlines.frameStarted(at: at(20)) == .schedule(at(70)))
        deadlines.frameCompleted()
        #expect(deadlines.timerFired(at: at(70), requestsOutstanding: 0) == .schedule(at(100)))
        #expect(deadlines.timerFired(at: at(100), requestsOutstanding: 1) == .close(.authenticationTimedOut))
    }
}
