import EventFlowProtocol
import EventFlowStorage

/// The topic configs EventFlow serves through DescribeConfigs, AlterConfigs and
/// IncrementalAlterConfigs (protocol/configs.md): how a stream row reads as Kafka configs, and
/// which changes it takes. Pure values: the request server loads the row and stores the result.
struct TopicConfigs {
    static let retentionMs = "retention.ms"
    static let cleanupPolicy = "cleanup.policy"
    static let maxMessageBytes = "max.message.bytes"
    /// In Kafka's order (alphabetical).
    static let names = [cleanupPolicy, maxMessageBytes, retentionMs]
    static let millisecondsPerHour: Int64 = 3_600_000

    /// The largest batch a stream accepts: one batch travels inside one Produce frame, so the
    /// broker's frame limit bounds it. Not stored per stream, hence read-only.
    var maxMessageBytes: Int

    // MARK: Describe

    /// The configs of `stream` named by `keys` (nil = all) in Kafka's order; unknown names are
    /// left out, as Kafka does.
    func describe(_ stream: EventStream, keys: [String]?, includeSynonyms: Bool,
                  includeDocumentation: Bool) -> [DescribeConfigsResponse.Config] {
        let wanted = keys.map(Set.init)
        return Self.names.filter { wanted?.contains($0) ?? true }.map { name in
            var config = entry(name, stream)
            if !includeSynonyms { config.synonyms = [] }
            if !includeDocumentation { config.documentation = nil }
            return config
        }
    }

    private func entry(_ name: String, _ stream: EventStream) -> DescribeConfigsResponse.Config {
        switch name {
        case Self.retentionMs:
            let value = String(Int64(stream.retentionHours) * Self.millisecondsPerHour)
            let isDefault = stream.retentionHours == Streams.defaultRetentionHours
            let brokerDefault = DescribeConfigsResponse.Synonym(name: "log.retention.hours", value: String(Streams.defaultRetentionHours),
                                                                source: ConfigSource.defaultConfig)
            return .init(name: name, value: value, readOnly: false, isDefault: isDefault,
                         configSource: isDefault ? ConfigSource.defaultConfig : ConfigSource.dynamicTopicConfig,
                         synonyms: isDefault ? [brokerDefault]
                             : [.init(name: name, value: value, source: ConfigSource.dynamicTopicConfig), brokerDefault],
                         configType: ConfigType.long,
                         documentation: "How long batches are kept: the stream's retention_hours, in milliseconds (whole hours).")
        case Self.cleanupPolicy:
            // Not read-only: it may be set, to its only value (tools set what they read).
            return .init(name: name, value: "delete", readOnly: false, isDefault: true, configSource: ConfigSource.defaultConfig,
                         synonyms: [.init(name: "log.cleanup.policy", value: "delete", source: ConfigSource.defaultConfig)],
                         configType: ConfigType.list,
                         documentation: "Always delete: batches older than the retention are dropped; EventFlow does not compact.")
        default:
            let value = String(maxMessageBytes)
            return .init(name: name, value: value, readOnly: true, isDefault: true, configSource: ConfigSource.staticBrokerConfig,
                         synonyms: [.init(name: "message.max.bytes", value: value, source: ConfigSource.staticBrokerConfig)],
                         configType: ConfigType.int,
                         documentation: "The largest record batch: the broker's frame limit, the same for every stream.")
        }
    }

    // MARK: Alter

    /// One requested change, in IncrementalAlterConfigs' terms (AlterConfigs entries are SETs).
    struct Change: Sendable {
        var name: String
        var operation: Int8
        var value: String?
    }

    /// The stream's retention after `changes`, applied to `retentionHours`, or why they are
    /// refused. AlterConfigs passes the default retention: its configs replace the whole set.
    func apply(_ changes: [Change], to retentionHours: Int) -> Result<Int, RequestServer.Refusal> {
        var seen: Set<String> = []
        var hours = retentionHours
        for change in changes {
            guard seen.insert(change.name).inserted else {
                return .failure(.init(code: .invalidRequest, message: "config '\(change.name)' is named more than once"))
            }
            guard Self.names.contains(change.name) else {
                return .failure(.init(code: .invalidConfig, message: "config '\(change.name)' is not supported by EventFlow; "
                                          + "the topic configs are cleanup.policy, max.message.bytes and retention.ms"))
            }
            switch change.operation {
            case ConfigOperation.set:
                switch set(change.name, change.value) {
                case .success(let value): hours = value ?? hours
                case .failure(let refusal): return .failure(refusal)
                }
            case ConfigOperation.delete:
                if change.name == Self.retentionMs { hours = Streams.defaultRetentionHours }
            case ConfigOperation.append where change.name == Self.cleanupPolicy && change.value == "delete":
                continue  // already the policy
            case ConfigOperation.append, ConfigOperation.subtract:
                if change.name == Self.cleanupPolicy {
                    return .failure(.init(code: .invalidConfig, message: "cleanup.policy is always delete: EventFlow does not compact "
                                              + "and a stream cannot be left without a policy"))
                }
                return .failure(.init(code: .invalidConfig, message: "\(change.name) is not a list: APPEND and SUBTRACT apply to list configs only"))
            default:
                return .failure(.init(code: .invalidRequest, message: "unknown config operation \(change.operation) for '\(change.name)'"))
            }
        }
        return .success(hours)
    }

    /// A SET of one config: the new retention in hours (nil = unchanged), or the refusal.
    private func set(_ name: String, _ value: String?) -> Result<Int?, RequestServer.Refusal> {
        switch name {
        case Self.retentionMs:
            guard let value else { return .success(Streams.defaultRetentionHours) }
            return Self.retentionHours(milliseconds: value).map { Optional($0) }
        case Self.cleanupPolicy:
            guard value == nil || value == "delete" else {
                return .failure(.init(code: .invalidConfig, message: "cleanup.policy=\(value ?? "") is not supported: "
                                          + "EventFlow only deletes by retention (cleanup.policy=delete); compaction is not implemented"))
            }
            return .success(nil)
        default:
            guard value == nil || value == String(maxMessageBytes) else {
                return .failure(.init(code: .invalidConfig, message: "max.message.bytes cannot be set per stream: every stream accepts "
                                          + "batches up to the broker's frame limit (\(maxMessageBytes) bytes)"))
            }
            return .success(nil)
        }
    }

    /// Kafka's `retention.ms` as EventFlow's whole hours, or why it cannot be stored.
    static func retentionHours(milliseconds text: String) -> Result<Int, RequestServer.Refusal> {
        guard let milliseconds = Int64(text) else {
            return .failure(.init(code: .invalidConfig, message: "retention.ms=\(text) is not a number of milliseconds"))
        }
        if milliseconds == -1 {
            return .failure(.init(code: .invalidConfig, message: "retention.ms=-1 (keep forever) is not supported: "
                                      + "an EventFlow stream's retention is a positive number of hours"))
        }
        guard milliseconds > 0 else {
            return .failure(.init(code: .invalidConfig, message: "retention.ms must be a positive number of milliseconds"))
        }
        guard milliseconds % millisecondsPerHour == 0 else {
            let hours = max(milliseconds / millisecondsPerHour, 1)
            return .failure(.init(code: .invalidConfig, message: "retention.ms=\(milliseconds) is not a whole number of hours: "
                                      + "EventFlow keeps retention in hours; use a multiple of 3600000 (e.g. \(hours * millisecondsPerHour))"))
        }
        let hours = milliseconds / millisecondsPerHour
        guard hours <= Int64(Int32.max) else {
            return .failure(.init(code: .invalidConfig, message: "retention.ms=\(milliseconds) is more than \(Int32.max) hours"))
        }
        return .success(Int(hours))
    }
}
