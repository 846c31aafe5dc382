import EventFlowProtocol
import NIOConcurrencyHelpers

/// The broker-wide `RequestBytesBudget`, shared by every connection's event loop.
final class RequestBytesGate: Sendable {
    private let budget: NIOLockedValueBox<RequestBytesBudget>
    private let pauseObserver = CallbackSlot<Void>()

    init(configuration: RequestBytesBudget.Configuration) {
        budget = NIOLockedValueBox(RequestBytesBudget(configuration: configuration))
    }

    var isReadingPaused: Bool { budget.withLockedValue { $0.isReadingPaused } }
    var chargedBytes: Int { budget.withLockedValue { $0.chargedBytes } }

    /// Called (from any thread) after reading pauses or resumes; observers read `isReadingPaused`
    /// rather than trusting the order notifications arrive in.
    func onReadingPausedChanged(_ observer: @escaping @Sendable () -> Void) {
        pauseObserver.set(observer)
    }

    func charge(_ bytes: Int) {
        notify(budget.withLockedValue { $0.charge(bytes) })
    }

    func release(_ bytes: Int) {
        guard bytes > 0 else { return }
        notify(budget.withLockedValue { $0.release(bytes) })
    }

    private func notify(_ action: RequestBytesBudget.Action) {
        guard action != .none else { return }
        pauseObserver(())
    }
}
