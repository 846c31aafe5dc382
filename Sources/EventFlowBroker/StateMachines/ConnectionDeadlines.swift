import NIOCore

/// When a connection is closed for being slow or silent, so that connections which never
/// authenticate, dribble a frame, or sit idle cannot pin memory and connection slots:
///
/// - **authentication**: the TLS handshake and the SASL exchange finish within
///   `authenticationTimeout` of the connection opening (with authentication disabled a
///   connection starts authenticated);
/// - **a frame**: once a frame's size prefix is read and its bytes are reserved, the whole frame
///   arrives within `frameReadTimeout`;
/// - **idle** (Kafka's `connections.max.idle.ms`): once authenticated, nothing read, nothing
///   written and no request outstanding for `idleTimeout` (before authentication the
///   authentication deadline is the stricter bound).
///
/// Pure: the connection passes the time of each event and runs one timer, armed by `.schedule`.
/// Events that only push a deadline later do not re-arm it; the timer wakes at the earlier time
/// and `timerFired` arms it again for what is left.
public struct ConnectionDeadlines: Sendable {
    public struct Configuration: Hashable, Sendable {
        public var authenticationTimeout: TimeAmount
        public var frameReadTimeout: TimeAmount
        public var idleTimeout: TimeAmount

        public init(authenticationTimeout: TimeAmount = .seconds(30), frameReadTimeout: TimeAmount = .seconds(60),
                    idleTimeout: TimeAmount = .minutes(10)) {
            precondition(authenticationTimeout > .zero && frameReadTimeout > .zero && idleTimeout > .zero,
                         "connection timeouts must be positive")
            self.authenticationTimeout = authenticationTimeout
            self.frameReadTimeout = frameReadTimeout
            self.idleTimeout = idleTimeout
        }
    }

    public enum Reason: Hashable, Sendable, CustomStringConvertible {
        case authenticationTimedOut
        case frameReadTimedOut
        case idle

        public var description: String {
            switch self {
            case .authenticationTimedOut: "TLS handshake and SASL authentication did not finish in time"
            case .frameReadTimedOut: "a request frame was not received completely in time"
            case .idle: "idle connection"
            }
        }
    }

    public enum Action: Hashable, Sendable {
        case none
        /// Arm the timer for this moment, replacing an armed one; call `timerFired` when it fires.
        case schedule(NIODeadline)
        /// Close the connection.
        case close(Reason)
    }

    public let configuration: Configuration
    /// nil once authenticated.
    private var authenticationDeadline: NIODeadline?
    /// The reserved frame's deadline; nil when no frame is being received.
    private var frameDeadline: NIODeadline?
    private var lastActivity: NIODeadline
    private var armed: NIODeadline?
    public private(set) var isExpired = false

    /// A connection opened at `now`; the first action arms the timer.
    public init(configuration: Configuration, openedAt now: NIODeadline, authenticated: Bool) {
        self.configuration = configuration
        authenticationDeadline = authenticated ? nil : now + configuration.authenticationTimeout
        lastActivity = now
    }

    /// The action to run right after `init`.
    public mutating func opened() -> Action {
        arm(earliestDeadline)
    }

    /// Bytes were read or a response written.
    public mutating func activity(at now: NIODeadline) {
        lastActivity = max(lastActivity, now)
    }

    /// SASL authentication succeeded; idleness counts from now (which re-arms the timer when
    /// the idle deadline comes before the authentication deadline it was armed for).
    public mutating func authenticated(at now: NIODeadline) -> Action {
        guard !isExpired else { return .none }
        authenticationDeadline = nil
        activity(at: now)
        return arm(earliestDeadline)
    }

    /// A frame's prefix was read and its bytes reserved; the rest must follow in time.
    public mutating func frameStarted(at now: NIODeadline) -> Action {
        guard !isExpired else { return .none }
        frameDeadline = now + configuration.frameReadTimeout
        return arm(earliestDeadline)
    }

    /// The reserved frame is complete.
    public mutating func frameCompleted() {
        frameDeadline = nil
    }

    /// The armed timer fired. `requestsOutstanding` > 0 means the connection is waiting for the
    /// broker (a long poll, a produce waiting for its commit), which is not idleness.
    public mutating func timerFired(at now: NIODeadline, requestsOutstanding: Int) -> Action {
        guard !isExpired else { return .none }
        armed = nil
        if requestsOutstanding > 0 { activity(at: now) }
        if let deadline = authenticationDeadline, deadline <= now { return expire(.authenticationTimedOut) }
        if let deadline = frameDeadline, deadline <= now { return expire(.frameReadTimedOut) }
        if authenticationDeadline == nil, idleDeadline <= now { return expire(.idle) }
        return arm(earliestDeadline)
    }

    // MARK: Internals

    private var idleDeadline: NIODeadline { lastActivity + configuration.idleTimeout }

    private var earliestDeadline: NIODeadline {
        let first = authenticationDeadline ?? idleDeadline
        return frameDeadline.map { min($0, first) } ?? first
    }

    /// Arms the timer for `deadline` unless it is already armed for that moment or earlier.
    private mutating func arm(_ deadline: NIODeadline) -> Action {
        if let armed, armed <= deadline { return .none }
        armed = deadline
        return .schedule(deadline)
    }

    private mutating func expire(_ reason: Reason) -> Action {
        isExpired = true
        return .close(reason)
    }
}
