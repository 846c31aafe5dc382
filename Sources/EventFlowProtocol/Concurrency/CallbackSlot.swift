import Synchronization

/// A callback that is set (or replaced) once and then called from any thread: the broker's flush
/// and pause observers, the producer's stage observer.
///
/// Why not `Mutex<((Argument) -> Void)?>` read with `withLock { $0 }`: a function value kept in
/// generic storage and accessed `inout` from specialized code is re-abstracted on the way out and
/// again on the way back in, so every such read wraps the stored closure in two more thunks and
/// stores the wrapped one. The chain grows with every call, each call walks all of it, and every
/// layer stays allocated: measured, the 20,000 reads after the first 20,000 took 17 s, and a broker
/// calling its flush observer on every commit got slower and larger for as long as it ran. Inside a
/// struct the closure keeps one representation, whatever the generic context.
public final class CallbackSlot<Argument>: Sendable {
    private struct Callback: Sendable {
        let call: @Sendable (Argument) -> Void
    }

    private let callback = Mutex<Callback?>(nil)

    public init() {}

    /// Sets the callback; a later call replaces it.
    public func set(_ call: @escaping @Sendable (Argument) -> Void) {
        callback.withLock { $0 = Callback(call: call) }
    }

    /// Calls the callback, if one is set, outside the lock.
    public func callAsFunction(_ argument: Argument) {
        callback.withLock { $0 }?.call(argument)
    }

    /// Whether a callback is set.
    public var isSet: Bool { callback.withLock { $0 != nil } }
}
