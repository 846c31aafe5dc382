@testable import EventFlowBroker
import EventFlowProtocol
@testable import EventFlowStorage
import EventFlowTestSupport
import Foundation
import NIOCore
import Testing

/// Many connections pipelining large produces against a request-bytes budget a few frames wide.
@Suite struct RequestBytesOverloadTests {
    @Test func pipelinedProducesBeyondTheRequestBudgetAreAllAnsweredAndTheBudgetEmpties() async throws {
        let connections = 4
        let requestsPerConnection = 40
        let batch = try producedBatch(count: 150)
        // Room for about two frames broker-wide and one per connection; the batcher holds ~8.
        let harness = try await BrokerHarness.start(
            partitions: connections,
            groupCommit: .init(flushBytesTarget: batch.readableBytes * 4, lingerMilliseconds: 20,
                               memoryBytesMax: batch.readableBytes * 8),
            requestBytesMax: batch.readableBytes * 2, connectionRequestBytesMax: batch.readableBytes)
        var opened: [TestConnection] = []
        for _ in 0..<connections { opened.append(try await harness.authenticatedConnection()) }

        let outcomes = try await withThrowingTaskGroup(of: (partition: Int32, stored: Int, refused: Int).self) { group in
            for (index, connection) in opened.enumerated() {
                let partition = Int32(index)
                group.addTask {
                    var sent: [Int32] = []
                    for _ in 0..<requestsPerConnection {
                        sent.append(try await connection.send(
                            produceRequest(topic: "orders", partition: partition, batch: batch), version: 7))
                    }
                    var answered: [Int32] = []
                    var stored = 0
                    var refused = 0
                    for _ in 0..<requestsPerConnection {
                        let (id, response) = try await connection.receive(ProduceResponse.self, version: 7)
                        answered.append(id)
                        switch response.responses.first?.partitionResponses.first?.errorCode {
                        case .noError?: stored += 1
                        case .requestTimedOut?: refused += 1
                        default: Issue.record("unexpected answer \(response)")
                        }
                    }
                    #expect(answered == sent, "every request answered, in order")
                    return (partition, stored, refused)
                }
            }
            var all: [(partition: Int32, stored: Int, refused: Int)] = []
            for try await outcome in group { all.append(outcome) }
            return all
        }

        #expect(outcomes.count == connections)
        #expect(harness.broker.requestBytesCharged == 0, "every charged frame was released once answered")
        let db = try harness.database()
        defer { db.close() }
        let rows = try storedRows(db, streamID: harness.stream.id)
        for outcome in outcomes {
            #expect(outcome.stored + outcome.refused == requestsPerConnection)
            let partitionRows = rows.filter { $0.partition == outcome.partition }
            #expect(partitionRows.count == outcome.stored, "each acknowledged batch stored once, nothing else")
            #expect(partitionRows.map(\.baseOffset) == (0..<outcome.stored).map { Int64($0 * 150) })
        }
        #expect(outcomes.reduce(0) { $0 + $1.stored } > 0)
        for connection in opened { await connection.close() }
        await harness.broker.shutdown()
    }
}
