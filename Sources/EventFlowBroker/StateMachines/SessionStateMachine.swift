import EventFlowProtocol
import Foundation
import NIOCore

/// One client connection: SASL handshake → authentication → ready → closing, plus the
/// pipeline that answers requests in the order they arrived.
///
/// Before authentication a connection may send only ApiVersions, SaslHandshake and
/// SaslAuthenticate (PLAIN); anything else is answered with an error and the connection is
/// closed once that answer is written. Requests are numbered as they arrive; responses may
/// complete in any order but are released in request order (Kafka clients match responses by
/// position as well as correlation id). At `inflightRequestsMax` outstanding requests the
/// connection stops reading until responses go out.
public struct SessionStateMachine: Sendable {
    public enum Authentication: Hashable, Sendable {
        /// SASL PLAIN with an API key (username = key id, password = secret).
        case saslPlain
        /// No authentication (explicitly configured): every connection acts for this organization.
        case disabled(organizationID: UUID)
    }

    public struct Configuration: Hashable, Sendable {
        public var authentication: Authentication
        /// Outstanding requests (received, response not yet written) before reading pauses.
        public var inflightRequestsMax: Int

        public init(authentication: Authentication, inflightRequestsMax: Int = 64) {
            precondition(inflightRequestsMax > 0, "inflightRequestsMax must be positive")
            self.authentication = authentication
            self.inflightRequestsMax = inflightRequestsMax
        }
    }

    /// Who the connection acts for.
    public struct Principal: Hashable, Sendable {
        public var organizationID: UUID
        /// The API key that authenticated; nil when authentication is disabled.
        public var apiKeyID: UUID?
        /// The key's role is admin: it may change topics (create, delete, alter configs, grow).
        /// True when authentication is disabled (development mode).
        public var isAdmin: Bool

        public init(organizationID: UUID, apiKeyID: UUID?, isAdmin: Bool = true) {
            self.organizationID = organizationID
            self.apiKeyID = apiKeyID
            self.isAdmin = isAdmin
        }
    }

    /// Position of a request on its connection; responses are released in this order.
    public struct RequestSequence: Hashable, Comparable, Sendable, CustomStringConvertible {
        public var rawValue: UInt64
        public init(_ rawValue: UInt64) { self.rawValue = rawValue }
        public static func < (lhs: RequestSequence, rhs: RequestSequence) -> Bool { lhs.rawValue < rhs.rawValue }
        public var description: String { "request#\(rawValue)" }
    }

    /// A decoded request, as far as the session needs to know it.
    public enum Request: Hashable, Sendable {
        case apiVersions
        case saslHandshake(mechanism: String)
        case saslAuthenticate
        /// Any other API, by Kafka API key.
        case other(apiKey: Int16)

        public init(apiKey: APIKey, saslMechanism: String = "") {
            switch apiKey {
            case .apiVersions: self = .apiVersions
            case .saslHandshake: self = .saslHandshake(mechanism: saslMechanism)
            case .saslAuthenticate: self = .saslAuthenticate
            default: self = .other(apiKey: apiKey.rawValue)
            }
        }
    }

    /// What to do with a received request. Every case but `.ignore` owes exactly one
    /// `responseReady` call for its sequence.
    public enum RequestAction: Hashable, Sendable {
        /// Handle it (ApiVersions, or any API once ready).
        case process(RequestSequence, Principal?)
        /// Answer SaslHandshake with no error and the mechanism list `["PLAIN"]`.
        case acceptSaslHandshake(RequestSequence)
        /// Check the PLAIN credentials, then call `authenticationSucceeded` or
        /// `authenticationFailed`, then answer.
        case authenticate(RequestSequence)
        /// Answer with this error; the connection closes once the answer is written.
        case answerErrorThenClose(RequestSequence, ErrorCode)
        /// The connection is closing: drop the request without an answer.
        case ignore
    }

    public struct RequestDecision: Hashable, Sendable {
        public var action: RequestAction
        /// Stop reading from the socket (in-flight bound reached).
        public var pauseReading: Bool
    }

    public enum Action: Hashable, Sendable {
        /// Write this response (already encoded); several in a row may share one flush.
        case write(ByteBuffer)
        case resumeReading
        /// Close the connection (everything owed has been written, or the key was revoked).
        case close
    }

    private enum State: Hashable, Sendable {
        /// Waiting for SaslHandshake.
        case awaitingHandshake
        /// Handshake accepted (PLAIN); waiting for SaslAuthenticate.
        case awaitingAuthenticate
        /// Credentials of this request are being checked.
        case authenticating(RequestSequence)
        case ready(Principal)
        /// No new requests; close once every outstanding response is written.
        case closing
        case closed
    }

    public let configuration: Configuration
    private var state: State
    private var nextSequence: UInt64 = 0
    /// The oldest request whose response has not been written.
    private var nextToRelease: UInt64 = 0
    /// Completed responses waiting for earlier ones; nil payload = no response owed (acks=0).
    private var completed: [UInt64: ByteBuffer?] = [:]
    public private(set) var isReadingPaused = false

    public init(configuration: Configuration) {
        self.configuration = configuration
        switch configuration.authentication {
        case .saslPlain: state = .awaitingHandshake
        case .disabled(let organizationID): state = .ready(Principal(organizationID: organizationID, apiKeyID: nil))
        }
    }

    /// The mechanisms listed in the SaslHandshake answer.
    public static let saslMechanisms = ["PLAIN"]

    // MARK: Queries

    /// The authenticated principal, once ready.
    public var principal: Principal? {
        if case .ready(let principal) = state { return principal }
        return nil
    }

    /// Requests received whose response has not been written yet.
    public var outstandingRequestCount: Int { Int(nextSequence - nextToRelease) }
    public var isClosed: Bool { state == .closed }
    public var isClosing: Bool { state == .closing || state == .closed }

    // MARK: Events

    public mutating func requestReceived(_ request: Request) -> RequestDecision {
        let sequence: RequestSequence
        switch state {
        case .closing, .closed:
            return RequestDecision(action: .ignore, pauseReading: false)
        default:
            sequence = RequestSequence(nextSequence)
            nextSequence += 1
        }
        let action = decide(request, sequence: sequence)
        var pause = false
        if !isReadingPaused, outstandingRequestCount >= configuration.inflightRequestsMax || isClosing {
            // Bytes already read may still yield a few more frames; they are bounded by one read.
            isReadingPaused = true
            pause = true
        }
        return RequestDecision(action: action, pauseReading: pause)
    }

    /// The credentials of the pending SaslAuthenticate are valid; answer it with no error.
    public mutating func authenticationSucceeded(_ sequence: RequestSequence, principal: Principal) {
        guard case .authenticating(let pending) = state, pending == sequence else { return }
        state = .ready(principal)
    }

    /// The credentials are wrong or the key is revoked; answer SaslAuthenticate with
    /// SASL_AUTHENTICATION_FAILED (58), after which the connection closes.
    public mutating func authenticationFailed(_ sequence: RequestSequence) {
        guard case .authenticating(let pending) = state, pending == sequence else { return }
        state = .closing
    }

    /// The response to `sequence` is encoded (nil: the request owes no response, e.g. a
    /// Produce with acks=0). Releases every response that is now next in order.
    public mutating func responseReady(_ sequence: RequestSequence, response: ByteBuffer?) -> [Action] {
        guard state != .closed else { return [] }
        guard sequence.rawValue >= nextToRelease, sequence.rawValue < nextSequence,
              completed[sequence.rawValue] == nil else {
            assertionFailure("\(sequence) is not outstanding or was answered twice")
            return []
        }
        completed[sequence.rawValue] = .some(response)
        var actions: [Action] = []
        while let response = completed.removeValue(forKey: nextToRelease) {
            if let response { actions.append(.write(response)) }
            nextToRelease += 1
        }
        if state == .closing {
            if outstandingRequestCount == 0 {
                state = .closed
                actions.append(.close)
            }
        } else if isReadingPaused, outstandingRequestCount < configuration.inflightRequestsMax {
            isReadingPaused = false
            actions.append(.resumeReading)
        }
        return actions
    }

    /// An API key was revoked; a connection authenticated with it closes at once.
    public mutating func keyRevoked(apiKeyID: UUID) -> [Action] {
        switch state {
        case .ready(let principal) where principal.apiKeyID == apiKeyID:
            closeNow()
            return [.close]
        default:
            return []
        }
    }

    /// Graceful close (broker shutdown): take no new requests, answer the outstanding ones,
    /// then close.
    public mutating func shutdown() -> [Action] {
        switch state {
        case .closed: return []
        default:
            state = .closing
            if outstandingRequestCount == 0 {
                closeNow()
                return [.close]
            }
            return []
        }
    }

    /// The peer closed the connection (or the channel failed): nothing more will be written.
    public mutating func connectionClosed() {
        closeNow()
    }

    // MARK: Internals

    private mutating func closeNow() {
        state = .closed
        completed.removeAll()
        nextToRelease = nextSequence
    }

    private mutating func decide(_ request: Request, sequence: RequestSequence) -> RequestAction {
        switch (state, request) {
        case (.ready(let principal), .other), (.ready(let principal), .apiVersions):
            return .process(sequence, principal)
        case (.ready, .saslHandshake), (.ready, .saslAuthenticate):
            // Re-authentication is not supported; with authentication disabled there is no SASL at all.
            return refuse(sequence, .illegalSaslState)

        case (_, .apiVersions):
            return .process(sequence, nil)

        case (.awaitingHandshake, .saslHandshake(let mechanism)):
            guard Self.saslMechanisms.contains(mechanism) else {
                return refuse(sequence, .unsupportedSaslMechanism)
            }
            state = .awaitingAuthenticate
            return .acceptSaslHandshake(sequence)
        case (.awaitingAuthenticate, .saslAuthenticate):
            state = .authenticating(sequence)
            return .authenticate(sequence)
        case (_, .saslHandshake), (_, .saslAuthenticate):
            return refuse(sequence, .illegalSaslState)
        case (_, .other):
            return refuse(sequence, .saslAuthenticationFailed)
        }
    }

    private mutating func refuse(_ sequence: RequestSequence, _ code: ErrorCode) -> RequestAction {
        state = .closing
        return .answerErrorThenClose(sequence, code)
    }
}
