import EventFlowBroker
import EventFlowProtocol
import Foundation
import NIOCore
import Testing

private let organization = UUID(uuid: (0xAA, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1))
private let apiKey = UUID(uuid: (0xBB, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2))
private let principal = SessionStateMachine.Principal(organizationID: organization, apiKeyID: apiKey)
private let produce = SessionStateMachine.Request.other(apiKey: APIKey.produce.rawValue)
private let metadata = SessionStateMachine.Request.other(apiKey: APIKey.metadata.rawValue)

private typealias Sequence = SessionStateMachine.RequestSequence

private func session(inflightRequestsMax: Int = 8) -> SessionStateMachine {
    SessionStateMachine(configuration: .init(authentication: .saslPlain, inflightRequestsMax: inflightRequestsMax))
}

private func response(_ text: String) -> ByteBuffer { ByteBuffer(string: text) }

private func sequence(of decision: SessionStateMachine.RequestDecision) -> Sequence? {
    switch decision.action {
    case .process(let sequence, _), .acceptSaslHandshake(let sequence), .authenticate(let sequence),
         .answerErrorThenClose(let sequence, _):
        sequence
    case .ignore:
        nil
    }
}

/// Drives a session through handshake and authentication, answering each step.
private func authenticatedSession(inflightRequestsMax: Int = 8) throws -> SessionStateMachine {
    var s = session(inflightRequestsMax: inflightRequestsMax)
    let handshake = try #require(sequence(of: s.requestReceived(.saslHandshake(mechanism: "PLAIN"))))
    _ = s.responseReady(handshake, response: response("handshake"))
    let authenticate = s.requestReceived(.saslAuthenticate)
    #expect(authenticate.action == .authenticate(Sequence(1)))
    s.authenticationSucceeded(Sequence(1), principal: principal)
    _ = s.responseReady(Sequence(1), response: response("authenticated"))
    return s
}

@Suite struct SessionTests {
    // MARK: Authentication

    @Test func anUnauthenticatedConnectionMayAskForApiVersions() {
        var s = session()
        #expect(s.requestReceived(.apiVersions).action == .process(Sequence(0), nil))
        #expect(s.responseReady(Sequence(0), response: response("versions")) == [.write(response("versions"))])
        #expect(!s.isClosing)
    }

    @Test func plainHandshakeThenValidCredentialsMakeTheSessionReady() throws {
        var s = session()
        #expect(s.requestReceived(.saslHandshake(mechanism: "PLAIN")).action == .acceptSaslHandshake(Sequence(0)))
        #expect(SessionStateMachine.saslMechanisms == ["PLAIN"])
        #expect(s.requestReceived(.saslAuthenticate).action == .authenticate(Sequence(1)))
        #expect(s.principal == nil, "not ready before the credentials are checked")

        s.authenticationSucceeded(Sequence(1), principal: principal)
        #expect(s.principal == principal)
        #expect(s.requestReceived(produce).action == .process(Sequence(2), principal))
    }

    @Test func aRequestBeforeAuthenticationIsAnsweredWithAuthenticationFailedAndClosed() {
        var s = session()
        let decision = s.requestReceived(produce)
        #expect(decision.action == .answerErrorThenClose(Sequence(0), .saslAuthenticationFailed))
        #expect(decision.pauseReading, "nothing more is read from a connection that is closing")
        #expect(ErrorCode.saslAuthenticationFailed.rawValue == 58)
        #expect(s.requestReceived(metadata).action == .ignore)
        #expect(s.responseReady(Sequence(0), response: response("error 58")) == [.write(response("error 58")), .close])
        #expect(s.isClosed)
    }

    @Test func aRequestWhileCredentialsAreCheckedIsRefused() {
        var s = session()
        _ = s.requestReceived(.saslHandshake(mechanism: "PLAIN"))
        _ = s.requestReceived(.saslAuthenticate)
        #expect(s.requestReceived(metadata).action == .answerErrorThenClose(Sequence(2), .saslAuthenticationFailed))
        s.authenticationSucceeded(Sequence(1), principal: principal)
        #expect(s.principal == nil, "a closing connection does not become ready")
    }

    @Test func anUnsupportedMechanismIsAnsweredAndClosed() {
        var s = session()
        #expect(s.requestReceived(.saslHandshake(mechanism: "SCRAM-SHA-256")).action
            == .answerErrorThenClose(Sequence(0), .unsupportedSaslMechanism))
        #expect(ErrorCode.unsupportedSaslMechanism.rawValue == 33)
    }

    @Test func authenticateBeforeHandshakeIsAnIllegalSaslState() {
        var s = session()
        #expect(s.requestReceived(.saslAuthenticate).action == .answerErrorThenClose(Sequence(0), .illegalSaslState))
        #expect(ErrorCode.illegalSaslState.rawValue == 34)
    }

    @Test func aSecondHandshakeIsAnIllegalSaslState() throws {
        var s = session()
        _ = s.requestReceived(.saslHandshake(mechanism: "PLAIN"))
        #expect(s.requestReceived(.saslHandshake(mechanism: "PLAIN")).action == .answerErrorThenClose(Sequence(1), .illegalSaslState))

        var ready = try authenticatedSession()
        #expect(ready.requestReceived(.saslHandshake(mechanism: "PLAIN")).action == .answerErrorThenClose(Sequence(2), .illegalSaslState))
    }

    @Test func wrongCredentialsAreAnsweredThenTheConnectionCloses() {
        var s = session()
        _ = s.requestReceived(.saslHandshake(mechanism: "PLAIN"))
        _ = s.responseReady(Sequence(0), response: response("handshake"))
        _ = s.requestReceived(.saslAuthenticate)
        s.authenticationFailed(Sequence(1))
        #expect(s.principal == nil)
        #expect(s.requestReceived(produce).action == .ignore)
        #expect(s.responseReady(Sequence(1), response: response("error 58")) == [.write(response("error 58")), .close])
    }

    @Test func aRevokedKeyClosesItsOpenConnections() throws {
        var s = try authenticatedSession()
        #expect(s.keyRevoked(apiKeyID: UUID()) == [], "another key's revocation does not matter")
        _ = s.requestReceived(produce)
        #expect(s.keyRevoked(apiKeyID: apiKey) == [.close])
        #expect(s.isClosed)
        #expect(s.requestReceived(produce).action == .ignore)
        #expect(s.responseReady(Sequence(2), response: response("late")) == [], "nothing is written after close")
    }

    @Test func withAuthenticationDisabledEveryConnectionIsReadyForTheConfiguredOrganization() {
        var s = SessionStateMachine(configuration: .init(authentication: .disabled(organizationID: organization)))
        let anonymous = SessionStateMachine.Principal(organizationID: organization, apiKeyID: nil)
        #expect(s.principal == anonymous)
        #expect(s.requestReceived(produce).action == .process(Sequence(0), anonymous))
        #expect(s.requestReceived(.saslHandshake(mechanism: "PLAIN")).action == .answerErrorThenClose(Sequence(1), .illegalSaslState))
    }

    // MARK: Pipelining

    @Test func responsesAreReleasedInRequestOrder() throws {
        var s = try authenticatedSession()
        for _ in 0..<3 { _ = s.requestReceived(produce) }   // sequences 2, 3, 4
        #expect(s.responseReady(Sequence(4), response: response("c")) == [])
        #expect(s.responseReady(Sequence(3), response: response("b")) == [])
        #expect(s.responseReady(Sequence(2), response: response("a"))
            == [.write(response("a")), .write(response("b")), .write(response("c"))])
        #expect(s.outstandingRequestCount == 0)
    }

    @Test func aRequestThatOwesNoResponseKeepsTheOrder() throws {
        var s = try authenticatedSession()
        _ = s.requestReceived(produce)   // 2: acks=0
        _ = s.requestReceived(metadata)  // 3
        #expect(s.responseReady(Sequence(3), response: response("metadata")) == [])
        #expect(s.responseReady(Sequence(2), response: nil) == [.write(response("metadata"))])
    }

    @Test func anErrorAnswerWaitsForEarlierResponsesThenCloses() {
        var s = session()
        _ = s.requestReceived(.apiVersions)  // 0
        _ = s.requestReceived(produce)       // 1: refused
        #expect(s.responseReady(Sequence(1), response: response("error")) == [])
        #expect(s.responseReady(Sequence(0), response: response("versions"))
            == [.write(response("versions")), .write(response("error")), .close])
    }

    @Test func readingPausesAtTheInflightBoundAndResumesWhenResponsesGoOut() throws {
        var s = try authenticatedSession(inflightRequestsMax: 3)
        #expect(!s.requestReceived(produce).pauseReading)
        #expect(!s.requestReceived(produce).pauseReading)
        #expect(s.requestReceived(produce).pauseReading)
        #expect(s.isReadingPaused)
        #expect(s.outstandingRequestCount == 3)

        #expect(s.responseReady(Sequence(3), response: response("b")) == [], "still three outstanding")
        #expect(s.responseReady(Sequence(2), response: response("a")) == [.write(response("a")), .write(response("b")), .resumeReading])
        #expect(!s.isReadingPaused)
    }

    // MARK: Shutdown

    @Test func shutdownAnswersOutstandingRequestsThenCloses() throws {
        var s = try authenticatedSession()
        _ = s.requestReceived(produce)
        #expect(s.shutdown() == [])
        #expect(s.requestReceived(produce).action == .ignore, "no new requests while closing")
        #expect(s.responseReady(Sequence(2), response: response("ack")) == [.write(response("ack")), .close])
        #expect(s.isClosed)
    }

    @Test func shutdownWithNothingOutstandingClosesAtOnce() throws {
        var s = try authenticatedSession()
        #expect(s.shutdown() == [.close])
        #expect(s.shutdown() == [])
    }

    @Test func requestsMapFromApiKeys() {
        #expect(SessionStateMachine.Request(apiKey: .apiVersions) == .apiVersions)
        #expect(SessionStateMachine.Request(apiKey: .saslHandshake, saslMechanism: "PLAIN") == .saslHandshake(mechanism: "PLAIN"))
        #expect(SessionStateMachine.Request(apiKey: .saslAuthenticate) == .saslAuthenticate)
        #expect(SessionStateMachine.Request(apiKey: .produce) == .other(apiKey: 0))
    }
}
