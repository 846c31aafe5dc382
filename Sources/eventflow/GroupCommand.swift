import ArgumentParser
import EventFlowClient
import Foundation
import Logging

/// `eventflow group ...`: consumer groups over the broker's Kafka API, as `kafka-consumer-groups.sh` and `rpk group`.
struct GroupCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "group", abstract: "Consumer groups: list, describe with lag, reset offsets, delete.",
        subcommands: [List.self, Describe.self, ResetOffsets.self, Delete.self])

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List the organization's consumer groups.")
        @OptionGroup var connection: BrokerConnectionOptions
        @OptionGroup var output: OutputOptions

        func run() async throws {
            let groups = try await withAdmin(connection) { try await $0.listGroups() }
            if output.json { try printJSON(groups.map(GroupListingJSON.init)); return }
            printTable(["GROUP", "STATE", "MEMBERS"], groups.map { [$0.groupId, $0.state, String($0.memberCount)] })
        }
    }

    struct Describe: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Show a group's members and, per partition, committed offset, high watermark and lag.",
            discussion: "LAG is HIGH-WATERMARK - COMMITTED; for a partition without a committed offset (COMMITTED -) it is everything still stored: HIGH-WATERMARK - the log start.")
        @Argument(help: "The group id.") var group: String
        @OptionGroup var connection: BrokerConnectionOptions
        @OptionGroup var output: OutputOptions

        func run() async throws {
            let description = try await withAdmin(connection) { try await $0.describeGroup(group) }
            if output.json { try printJSON(GroupDescriptionJSON(description)); return }
            for line in Self.lines(description) { print(line) }
        }

        /// What a person reads: a summary line, the members, then the partitions.
        static func lines(_ description: GroupDescription) -> [String] {
            var lines = ["GROUP \(description.groupId)  STATE \(description.state)  ASSIGNOR \(description.assignor.isEmpty ? "-" : description.assignor)  MEMBERS \(description.members.count)  LAG \(description.totalLag)"]
            if !description.members.isEmpty {
                lines.append("")
                lines += tableLines(["MEMBER", "CLIENT-ID", "HOST", "PARTITIONS"], description.members.map { member in
                    [member.memberId, member.clientId, member.clientHost,
                     member.assignedPartitions.isEmpty ? "-" : member.assignedPartitions.map(\.description).joined(separator: ",")]
                })
            }
            if !description.partitions.isEmpty {
                lines.append("")
                lines += tableLines(["STREAM", "PARTITION", "COMMITTED", "HIGH-WATERMARK", "LAG", "MEMBER"], description.partitions.map {
                    [$0.stream, String($0.partition), $0.committedOffset.map(String.init) ?? "-", String($0.highWatermark), String($0.lag),
                     $0.memberId ?? "-"]
                })
            }
            return lines
        }
    }

    struct ResetOffsets: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "reset-offsets",
            abstract: "Move an empty group's committed offsets of a stream (stop the group's consumers first).")
        @Argument(help: "The group id.") var group: String
        @Option(help: "The stream whose offsets move.") var stream: String
        @Flag(help: "To the earliest offset still stored.") var toEarliest = false
        @Flag(help: "To the high watermark (skip everything stored so far).") var toLatest = false
        @Option(help: "To this offset (moved into the stored range when outside it).") var toOffset: Int64?
        @Option(help: "To the first record at or after this time, unix milliseconds (the high watermark when none is).")
        var toTimestamp: Int64?
        @Option(help: "Only this partition (repeatable; default: every partition of the stream).") var partition: [Int32] = []
        @Flag(help: "Print the new offsets without committing them.") var dryRun = false
        @OptionGroup var connection: BrokerConnectionOptions
        @OptionGroup var output: OutputOptions

        var target: OffsetResetTarget? {
            switch (toEarliest, toLatest, toOffset, toTimestamp) {
            case (true, false, nil, nil): .earliest
            case (false, true, nil, nil): .latest
            case (false, false, let offset?, nil): .offset(offset)
            case (false, false, nil, let milliseconds?): .timestamp(milliseconds)
            default: nil
            }
        }

        func validate() throws {
            guard target != nil else {
                throw ValidationError("give exactly one of --to-earliest, --to-latest, --to-offset N, --to-timestamp MS")
            }
            if let toOffset, toOffset < 0 { throw ValidationError("--to-offset must not be negative") }
            if let toTimestamp, toTimestamp < 0 { throw ValidationError("--to-timestamp must not be negative") }
            if partition.contains(where: { $0 < 0 }) { throw ValidationError("--partition must not be negative") }
        }

        func run() async throws {
            guard let target else { throw cleanExit(ValidationError("no reset target")) }
            let wanted = partition.isEmpty ? nil : partition
            let resets = try await withAdmin(connection) { admin in
                try await admin.resetOffsets(group: group, stream: stream, to: target, partitions: wanted, dryRun: dryRun)
            }
            if output.json { try printJSON(OffsetResetsJSON(group: group, dryRun: dryRun, partitions: resets.map(OffsetResetJSON.init))); return }
            printTable(["STREAM", "PARTITION", "PREVIOUS", "NEW"], resets.map {
                [$0.stream, String($0.partition), $0.previousOffset.map(String.init) ?? "-", String($0.newOffset)]
            })
            if dryRun { print("(dry run: nothing committed)") }
        }
    }

    struct Delete: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Delete an empty group and its committed offsets.")
        @Argument(help: "The group id.") var group: String
        @OptionGroup var connection: BrokerConnectionOptions
        @OptionGroup var output: OutputOptions

        func run() async throws {
            try await withAdmin(connection) { try await $0.deleteGroup(group) }
            if output.json { try printJSON(["deleted": group]); return }
            print("Deleted group \(group)")
        }
    }
}

extension BrokerConnectionOptions {
    func adminConfiguration(environment: [String: String]) throws -> AdminConfiguration {
        let target = try resolve(environment: environment)
        return AdminConfiguration(brokers: target.brokers, credentials: target.credentials, security: target.security)
    }
}

/// Runs `body` with an admin client; bad flags or a broker error become one line on stderr and exit 1.
func withAdmin<T>(_ options: BrokerConnectionOptions, _ body: (EventFlowAdmin) async throws -> T) async throws -> T {
    let admin: EventFlowAdmin
    do {
        var logger = Logger(label: "eventflow.group")
        logger.logLevel = .critical
        admin = try EventFlowAdmin(configuration: try options.adminConfiguration(environment: ProcessInfo.processInfo.environment),
                                   logger: logger)
    } catch {
        throw cleanExit(error is ValidationError ? error : CommandFailure(description: "\(error)"))
    }
    defer { admin.close() }
    do {
        return try await body(admin)
    } catch {
        throw cleanExit(CommandFailure(description: "\(error)"))
    }
}

/// A plain aligned table as lines (columns two spaces apart, the last one unpadded).
func tableLines(_ header: [String], _ rows: [[String]]) -> [String] {
    var widths = header.map(\.count)
    for row in rows {
        for (i, cell) in row.enumerated() where i < widths.count { widths[i] = max(widths[i], cell.count) }
    }
    func line(_ cells: [String]) -> String {
        cells.enumerated().map { i, cell in
            i == cells.count - 1 ? cell : cell.padding(toLength: widths[i], withPad: " ", startingAt: 0)
        }.joined(separator: "  ")
    }
    return [line(header)] + rows.map(line)
}

// MARK: JSON for scripts (field names fixed here, apart from the client's types)

struct GroupListingJSON: Encodable {
    var group: String
    var state: String
    var protocolType: String
    var members: Int

    init(_ listing: GroupListing) {
        group = listing.groupId
        state = listing.state
        protocolType = listing.protocolType
        members = listing.memberCount
    }
}

struct GroupDescriptionJSON: Encodable {
    struct Member: Encodable {
        var memberId: String
        var groupInstanceId: String?
        var clientId: String
        var host: String
        var partitions: [StreamPartitionJSON]
    }

    struct Partition: Encodable {
        var stream: String
        var partition: Int32
        /// null: nothing committed (lag then counts from the log start).
        var committed: Int64?
        var highWatermark: Int64
        var logStart: Int64
        var lag: Int64
        var memberId: String?
    }

    var group: String
    var state: String
    var protocolType: String
    var assignor: String
    var lag: Int64
    var members: [Member]
    var partitions: [Partition]

    init(_ description: GroupDescription) {
        group = description.groupId
        state = description.state
        protocolType = description.protocolType
        assignor = description.assignor
        lag = description.totalLag
        members = description.members.map {
            Member(memberId: $0.memberId, groupInstanceId: $0.groupInstanceId, clientId: $0.clientId, host: $0.clientHost,
                   partitions: $0.assignedPartitions.map { StreamPartitionJSON(stream: $0.stream, partition: $0.partition) })
        }
        partitions = description.partitions.map {
            Partition(stream: $0.stream, partition: $0.partition, committed: $0.committedOffset, highWatermark: $0.highWatermark,
                      logStart: $0.logStartOffset, lag: $0.lag, memberId: $0.memberId)
        }
    }
}

struct StreamPartitionJSON: Encodable {
    var stream: String
    var partition: Int32
}

struct OffsetResetJSON: Encodable {
    var stream: String
    var partition: Int32
    var previous: Int64?
    var new: Int64

    init(_ reset: OffsetReset) {
        stream = reset.stream
        partition = reset.partition
        previous = reset.previousOffset
        new = reset.newOffset
    }
}

struct OffsetResetsJSON: Encodable {
    var group: String
    var dryRun: Bool
    var partitions: [OffsetResetJSON]
}
