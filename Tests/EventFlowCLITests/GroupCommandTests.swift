import EventFlowClient
@testable import eventflow
import Testing

/// `eventflow group` without a broker: its arguments and what `describe` prints.
struct GroupCommandTests {
    @Test func resetOffsetsTakesExactlyOneTarget() throws {
        let cases: [([String], OffsetResetTarget)] = [
            (["--to-earliest"], .earliest), (["--to-latest"], .latest), (["--to-offset", "42"], .offset(42)),
            (["--to-timestamp", "1767225600000"], .timestamp(1_767_225_600_000)),
        ]
        for (flags, expected) in cases {
            let command = try GroupCommand.ResetOffsets.parse(["billing", "--stream", "orders"] + flags)
            #expect(command.target == expected, "\(flags)")
            #expect(command.group == "billing" && command.stream == "orders" && command.partition.isEmpty && !command.dryRun)
        }
        let some = try GroupCommand.ResetOffsets.parse(["billing", "--stream", "orders", "--to-latest", "--partition", "0",
                                                        "--partition", "2", "--dry-run", "--json"])
        #expect(some.partition == [0, 2] && some.dryRun && some.output.json)

        for bad in [[], ["--to-earliest", "--to-latest"], ["--to-offset", "1", "--to-timestamp", "2"], ["--to-offset", "-1"],
                    ["--to-timestamp", "-5"], ["--to-earliest", "--partition", "-1"]] {
            #expect(throws: (any Error).self, "\(bad)") { try GroupCommand.ResetOffsets.parse(["billing", "--stream", "orders"] + bad) }
        }
        #expect(throws: (any Error).self) { try GroupCommand.ResetOffsets.parse(["billing", "--to-earliest"]) }
    }

    @Test func groupCommandsShareTheConnectionFlagsAndEnvironment() throws {
        let describe = try GroupCommand.Describe.parse(["billing", "--brokers", "broker-a:9093", "--plaintext"])
        let configuration = try describe.connection.adminConfiguration(environment: [:])
        #expect(configuration.brokers == [BrokerAddress(host: "broker-a", port: 9093)])
        #expect(configuration.security == .plaintext && configuration.credentials == nil)

        let list = try GroupCommand.List.parse([])
        let fromEnvironment = try list.connection.adminConfiguration(environment: [
            "EVENTFLOW_BROKERS": "10.0.0.1:9092", "EVENTFLOW_API_KEY": "key", "EVENTFLOW_API_SECRET": "secret"])
        #expect(fromEnvironment.brokers.map(\.description) == ["10.0.0.1:9092"])
        #expect(fromEnvironment.credentials == APIKeyCredentials(keyID: "key", secret: "secret"))
        #expect(fromEnvironment.security == .tls(caFilePath: nil))
        #expect(throws: (any Error).self) { try list.connection.adminConfiguration(environment: ["EVENTFLOW_API_KEY": "key"]) }
    }

    @Test func describePrintsMembersThenPartitionsWithLag() {
        let member = GroupMemberDescription(memberId: "billing-worker-1", groupInstanceId: nil, clientId: "billing-worker",
                                            clientHost: "10.0.0.7", assignedPartitions: [StreamPartition(stream: "orders", partition: 0)])
        let description = GroupDescription(groupId: "billing", state: "Stable", protocolType: "consumer", assignor: "range",
                                           members: [member], partitions: [
            PartitionLag(stream: "orders", partition: 0, committedOffset: 40, highWatermark: 52, logStartOffset: 0,
                         memberId: "billing-worker-1"),
            PartitionLag(stream: "orders", partition: 1, committedOffset: nil, highWatermark: 10, logStartOffset: 3, memberId: nil),
        ])
        #expect(GroupCommand.Describe.lines(description) == [
            "GROUP billing  STATE Stable  ASSIGNOR range  MEMBERS 1  LAG 19",
            "",
            "MEMBER            CLIENT-ID       HOST      PARTITIONS",
            "billing-worker-1  billing-worker  10.0.0.7  orders/0",
            "",
            "STREAM  PARTITION  COMMITTED  HIGH-WATERMARK  LAG  MEMBER",
            "orders  0          40         52              12   billing-worker-1",
            "orders  1          -          10              7    -",
        ])
    }

    @Test func badInputAndAnUnreachableBrokerAreOneLineAndExitOne() throws {
        let cli = CLI(databaseURL: nil)
        let noTarget = try cli.run("group", "reset-offsets", "billing", "--stream", "orders", "--plaintext")
        #expect(noTarget.status != 0)
        #expect(noTarget.stderr.contains("give exactly one of --to-earliest, --to-latest, --to-offset N, --to-timestamp MS"))
        // Nothing listens on port 1.
        let unreachable = try cli.run("group", "describe", "billing", "--plaintext", "--brokers", "127.0.0.1:1")
        #expect(unreachable.status == 1)
        #expect(unreachable.stderr.hasPrefix("error: connection failed"))
        #expect(unreachable.stderr.split(separator: "\n").count == 1)
    }
}
