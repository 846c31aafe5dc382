import NIOCore

/// Kafka's config resource types (the int8 `resourceType` of the config APIs).
public enum ConfigResourceType {
    public static let unknown: Int8 = 0
    public static let topic: Int8 = 2
    public static let broker: Int8 = 4
    public static let brokerLogger: Int8 = 8
}

/// Kafka's config sources (DescribeConfigs v1+ `configSource` and synonym `source`).
public enum ConfigSource {
    public static let unknown: Int8 = 0
    public static let dynamicTopicConfig: Int8 = 1
    public static let dynamicBrokerConfig: Int8 = 2
    public static let dynamicDefaultBrokerConfig: Int8 = 3
    public static let staticBrokerConfig: Int8 = 4
    public static let defaultConfig: Int8 = 5
}

/// Kafka's config data types (DescribeConfigs v3+ `configType`).
public enum ConfigType {
    public static let unknown: Int8 = 0
    public static let boolean: Int8 = 1
    public static let string: Int8 = 2
    public static let int: Int8 = 3
    public static let short: Int8 = 4
    public static let long: Int8 = 5
    public static let double: Int8 = 6
    public static let list: Int8 = 7
}

/// IncrementalAlterConfigs operations.
public enum ConfigOperation {
    public static let set: Int8 = 0
    public static let delete: Int8 = 1
    public static let append: Int8 = 2
    public static let subtract: Int8 = 3
}

// MARK: DescribeConfigs

/// DescribeConfigs (key 32), v0–v4; v4 is flexible.
public struct DescribeConfigsRequest: KafkaRequestMessage {
    public typealias Response = DescribeConfigsResponse
    public static let apiKey = APIKey.describeConfigs

    public struct Resource: Sendable, Hashable {
        public var resourceType: Int8
        public var resourceName: String
        /// nil = every config of the resource.
        public var configurationKeys: [String]?

        public init(resourceType: Int8, resourceName: String, configurationKeys: [String]? = nil) {
            self.resourceType = resourceType
            self.resourceName = resourceName
            self.configurationKeys = configurationKeys
        }
    }

    public var resources: [Resource]
    /// v1+.
    public var includeSynonyms: Bool
    /// v3+.
    public var includeDocumentation: Bool

    public init(resources: [Resource], includeSynonyms: Bool = false, includeDocumentation: Bool = false) {
        self.resources = resources
        self.includeSynonyms = includeSynonyms
        self.includeDocumentation = includeDocumentation
    }

    public func encode(into buffer: inout ByteBuffer, version: Int16) {
        let compact = Self.apiKey.isFlexible(version: version)
        buffer.writeKafkaArray(resources, compact: compact) { buffer, resource in
            buffer.writeInteger(resource.resourceType)
            buffer.writeKafkaString(resource.resourceName, compact: compact)
            buffer.writeKafkaNullableArray(resource.configurationKeys, compact: compact) { $0.writeKafkaString($1, compact: compact) }
            buffer.writeKafkaEmptyTaggedFields(compact: compact)
        }
        if version >= 1 { buffer.writeKafkaBool(includeSynonyms) }
        if version >= 3 { buffer.writeKafkaBool(includeDocumentation) }
        buffer.writeKafkaEmptyTaggedFields(compact: compact)
    }

    public static func decode(from buffer: inout ByteBuffer, version: Int16) throws -> Self {
        try checkVersion(version, buffer)
        let compact = apiKey.isFlexible(version: version)
        let resources = try buffer.readKafkaArray("DescribeConfigsRequest.resources", compact: compact, minimumElementBytes: 3) { buffer in
            let resource = Resource(
                resourceType: try buffer.readKafkaInt8("DescribeConfigsRequest.resources[].resourceType"),
                resourceName: try buffer.readKafkaString("DescribeConfigsRequest.resources[].resourceName", compact: compact),
                configurationKeys: try buffer.readKafkaNullableArray("DescribeConfigsRequest.resources[].configurationKeys",
                                                                     compact: compact, minimumElementBytes: 1) {
                    try $0.readKafkaString("DescribeConfigsRequest.resources[].configurationKeys[]", compact: compact)
                })
            try buffer.skipKafkaTaggedFields("DescribeConfigsRequest.resources[].taggedFields", compact: compact)
            return resource
        }
        var request = Self(resources: resources)
        if version >= 1 { request.includeSynonyms = try buffer.readKafkaBool("DescribeConfigsRequest.includeSynonyms") }
        if version >= 3 { request.includeDocumentation = try buffer.readKafkaBool("DescribeConfigsRequest.includeDocumentation") }
        try buffer.skipKafkaTaggedFields("DescribeConfigsRequest.taggedFields", compact: compact)
        return request
    }
}

public struct DescribeConfigsResponse: KafkaResponseMessage {
    public static let apiKey = APIKey.describeConfigs

    public struct Synonym: Sendable, Hashable {
        public var name: String
        public var value: String?
        public var source: Int8

        public init(name: String, value: String?, source: Int8) {
            self.name = name
            self.value = value
            self.source = source
        }
    }

    public struct Config: Sendable, Hashable {
        public var name: String
        public var value: String?
        public var readOnly: Bool
        /// v0 only (v1+ says it with `configSource`).
        public var isDefault: Bool
        /// v1+; -1 when read from v0.
        public var configSource: Int8
        public var isSensitive: Bool
        /// v1+.
        public var synonyms: [Synonym]
        /// v3+.
        public var configType: Int8
        /// v3+.
        public var documentation: String?

        public init(name: String, value: String?, readOnly: Bool, isDefault: Bool = false, configSource: Int8 = -1,
                    isSensitive: Bool = false, synonyms: [Synonym] = [], configType: Int8 = 0, documentation: String? = nil) {
            self.name = name
            self.value = value
            self.readOnly = readOnly
            self.isDefault = isDefault
            self.configSource = configSource
            self.isSensitive = isSensitive
            self.synonyms = synonyms
            self.configType = configType
            self.documentation = documentation
        }
    }

    public struct Result: Sendable, Hashable {
        public var errorCode: ErrorCode
        public var errorMessage: String?
        public var resourceType: Int8
        public var resourceName: String
        public var configs: [Config]

        public init(errorCode: ErrorCode = .noError, errorMessage: String? = nil, resourceType: Int8, resourceName: String,
                    configs: [Config] = []) {
            self.errorCode = errorCode
            self.errorMessage = errorMessage
            self.resourceType = resourceType
            self.resourceName = resourceName
            self.configs = configs
        }
    }

    public var throttleTimeMs: Int32
    public var results: [Result]

    public init(throttleTimeMs: Int32 = 0, results: [Result]) {
        self.throttleTimeMs = throttleTimeMs
        self.results = results
    }

    public func encode(into buffer: inout ByteBuffer, version: Int16) {
        let compact = Self.apiKey.isFlexible(version: version)
        buffer.writeInteger(throttleTimeMs)
        buffer.writeKafkaArray(results, compact: compact) { buffer, result in
            buffer.writeErrorCode(result.errorCode)
            buffer.writeKafkaNullableString(result.errorMessage, compact: compact)
            buffer.writeInteger(result.resourceType)
            buffer.writeKafkaString(result.resourceName, compact: compact)
            buffer.writeKafkaArray(result.configs, compact: compact) { buffer, config in
                buffer.writeKafkaString(config.name, compact: compact)
                buffer.writeKafkaNullableString(config.value, compact: compact)
                buffer.writeKafkaBool(config.readOnly)
                if version == 0 { buffer.writeKafkaBool(config.isDefault) } else { buffer.writeInteger(config.configSource) }
                buffer.writeKafkaBool(config.isSensitive)
                if version >= 1 {
                    buffer.writeKafkaArray(config.synonyms, compact: compact) { buffer, synonym in
                        buffer.writeKafkaString(synonym.name, compact: compact)
                        buffer.writeKafkaNullableString(synonym.value, compact: compact)
                        buffer.writeInteger(synonym.source)
                        buffer.writeKafkaEmptyTaggedFields(compact: compact)
                    }
                }
                if version >= 3 {
                    buffer.writeInteger(config.configType)
                    buffer.writeKafkaNullableString(config.documentation, compact: compact)
                }
                buffer.writeKafkaEmptyTaggedFields(compact: compact)
            }
            buffer.writeKafkaEmptyTaggedFields(compact: compact)
        }
        buffer.writeKafkaEmptyTaggedFields(compact: compact)
    }

    public static func decode(from buffer: inout ByteBuffer, version: Int16) throws -> Self {
        try checkVersion(version, buffer)
        let compact = apiKey.isFlexible(version: version)
        var response = Self(throttleTimeMs: try buffer.readKafkaInt32("DescribeConfigsResponse.throttleTimeMs"), results: [])
        response.results = try buffer.readKafkaArray("DescribeConfigsResponse.results", compact: compact, minimumElementBytes: 6) { buffer in
            var result = Result(errorCode: try buffer.readErrorCode("DescribeConfigsResponse.results[].errorCode"),
                                errorMessage: try buffer.readKafkaNullableString("DescribeConfigsResponse.results[].errorMessage", compact: compact),
                                resourceType: try buffer.readKafkaInt8("DescribeConfigsResponse.results[].resourceType"),
                                resourceName: try buffer.readKafkaString("DescribeConfigsResponse.results[].resourceName", compact: compact))
            result.configs = try buffer.readKafkaArray("DescribeConfigsResponse.results[].configs", compact: compact, minimumElementBytes: 5) { buffer in
                var config = Config(name: try buffer.readKafkaString("DescribeConfigsResponse.configs[].name", compact: compact),
                                    value: try buffer.readKafkaNullableString("DescribeConfigsResponse.configs[].value", compact: compact),
                                    readOnly: try buffer.readKafkaBool("DescribeConfigsResponse.configs[].readOnly"))
                if version == 0 {
                    config.isDefault = try buffer.readKafkaBool("DescribeConfigsResponse.configs[].isDefault")
                } else {
                    config.configSource = try buffer.readKafkaInt8("DescribeConfigsResponse.configs[].configSource")
                }
                config.isSensitive = try buffer.readKafkaBool("DescribeConfigsResponse.configs[].isSensitive")
                if version >= 1 {
                    config.synonyms = try buffer.readKafkaArray("DescribeConfigsResponse.configs[].synonyms", compact: compact,
                                                                minimumElementBytes: 3) { buffer in
                        let synonym = Synonym(name: try buffer.readKafkaString("DescribeConfigsResponse.synonyms[].name", compact: compact),
                                              value: try buffer.readKafkaNullableString("DescribeConfigsResponse.synonyms[].value", compact: compact),
                                              source: try buffer.readKafkaInt8("DescribeConfigsResponse.synonyms[].source"))
                        try buffer.skipKafkaTaggedFields("DescribeConfigsResponse.synonyms[].taggedFields", compact: compact)
                        return synonym
                    }
                }
                if version >= 3 {
                    config.configType = try buffer.readKafkaInt8("DescribeConfigsResponse.configs[].configType")
                    config.documentation = try buffer.readKafkaNullableString("DescribeConfigsResponse.configs[].documentation", compact: compact)
                }
                try buffer.skipKafkaTaggedFields("DescribeConfigsResponse.configs[].taggedFields", compact: compact)
                return config
            }
            try buffer.skipKafkaTaggedFields("DescribeConfigsResponse.results[].taggedFields", compact: compact)
            return result
        }
        try buffer.skipKafkaTaggedFields("DescribeConfigsResponse.taggedFields", compact: compact)
        return response
    }
}

// MARK: AlterConfigs and IncrementalAlterConfigs

/// One resource's outcome in AlterConfigs and IncrementalAlterConfigs responses (same layout).
public struct AlterConfigsResourceResult: Sendable, Hashable {
    public var errorCode: ErrorCode
    public var errorMessage: String?
    public var resourceType: Int8
    public var resourceName: String

    public init(errorCode: ErrorCode = .noError, errorMessage: String? = nil, resourceType: Int8, resourceName: String) {
        self.errorCode = errorCode
        self.errorMessage = errorMessage
        self.resourceType = resourceType
        self.resourceName = resourceName
    }

    func encode(into buffer: inout ByteBuffer, compact: Bool) {
        buffer.writeErrorCode(errorCode)
        buffer.writeKafkaNullableString(errorMessage, compact: compact)
        buffer.writeInteger(resourceType)
        buffer.writeKafkaString(resourceName, compact: compact)
        buffer.writeKafkaEmptyTaggedFields(compact: compact)
    }

    static func decode(from buffer: inout ByteBuffer, compact: Bool, _ message: String) throws -> Self {
        let result = Self(errorCode: try buffer.readErrorCode("\(message).responses[].errorCode"),
                          errorMessage: try buffer.readKafkaNullableString("\(message).responses[].errorMessage", compact: compact),
                          resourceType: try buffer.readKafkaInt8("\(message).responses[].resourceType"),
                          resourceName: try buffer.readKafkaString("\(message).responses[].resourceName", compact: compact))
        try buffer.skipKafkaTaggedFields("\(message).responses[].taggedFields", compact: compact)
        return result
    }

    static func encode(_ results: [Self], throttleTimeMs: Int32, into buffer: inout ByteBuffer, compact: Bool) {
        buffer.writeInteger(throttleTimeMs)
        buffer.writeKafkaArray(results, compact: compact) { $1.encode(into: &$0, compact: compact) }
        buffer.writeKafkaEmptyTaggedFields(compact: compact)
    }

    static func decodeAll(from buffer: inout ByteBuffer, compact: Bool, _ message: String) throws -> (Int32, [Self]) {
        let throttle = try buffer.readKafkaInt32("\(message).throttleTimeMs")
        let results = try buffer.readKafkaArray("\(message).responses", compact: compact, minimumElementBytes: 5) {
            try decode(from: &$0, compact: compact, message)
        }
        try buffer.skipKafkaTaggedFields("\(message).taggedFields", compact: compact)
        return (throttle, results)
    }
}

/// AlterConfigs (key 33), v0–v2; v2 is flexible. The configs given replace the resource's
/// whole set: a config not named returns to its default.
public struct AlterConfigsRequest: KafkaRequestMessage {
    public typealias Response = AlterConfigsResponse
    public static let apiKey = APIKey.alterConfigs

    public struct Config: Sendable, Hashable {
        public var name: String
        public var value: String?

        public init(name: String, value: String?) {
            self.name = name
            self.value = value
        }
    }

    public struct Resource: Sendable, Hashable {
        public var resourceType: Int8
        public var resourceName: String
        public var configs: [Config]

        public init(resourceType: Int8, resourceName: String, configs: [Config]) {
            self.resourceType = resourceType
            self.resourceName = resourceName
            self.configs = configs
        }
    }

    public var resources: [Resource]
    public var validateOnly: Bool

    public init(resources: [Resource], validateOnly: Bool = false) {
        self.resources = resources
        self.validateOnly = validateOnly
    }

    public func encode(into buffer: inout ByteBuffer, version: Int16) {
        let compact = Self.apiKey.isFlexible(version: version)
        buffer.writeKafkaArray(resources, compact: compact) { buffer, resource in
            buffer.writeInteger(resource.resourceType)
            buffer.writeKafkaString(resource.resourceName, compact: compact)
            buffer.writeKafkaArray(resource.configs, compact: compact) { buffer, config in
                buffer.writeKafkaString(config.name, compact: compact)
                buffer.writeKafkaNullableString(config.value, compact: compact)
                buffer.writeKafkaEmptyTaggedFields(compact: compact)
            }
            buffer.writeKafkaEmptyTaggedFields(compact: compact)
        }
        buffer.writeKafkaBool(validateOnly)
        buffer.writeKafkaEmptyTaggedFields(compact: compact)
    }

    public static func decode(from buffer: inout ByteBuffer, version: Int16) throws -> Self {
        try checkVersion(version, buffer)
        let compact = apiKey.isFlexible(version: version)
        let resources = try buffer.readKafkaArray("AlterConfigsRequest.resources", compact: compact, minimumElementBytes: 3) { buffer in
            let resource = Resource(
                resourceType: try buffer.readKafkaInt8("AlterConfigsRequest.resources[].resourceType"),
                resourceName: try buffer.readKafkaString("AlterConfigsRequest.resources[].resourceName", compact: compact),
                configs: try buffer.readKafkaArray("AlterConfigsRequest.resources[].configs", compact: compact, minimumElementBytes: 2) { buffer in
                    let config = Config(name: try buffer.readKafkaString("AlterConfigsRequest.configs[].name", compact: compact),
                                        value: try buffer.readKafkaNullableString("AlterConfigsRequest.configs[].value", compact: compact))
                    try buffer.skipKafkaTaggedFields("AlterConfigsRequest.configs[].taggedFields", compact: compact)
                    return config
                })
            try buffer.skipKafkaTaggedFields("AlterConfigsRequest.resources[].taggedFields", compact: compact)
            return resource
        }
        let request = Self(resources: resources, validateOnly: try buffer.readKafkaBool("AlterConfigsRequest.validateOnly"))
        try buffer.skipKafkaTaggedFields("AlterConfigsRequest.taggedFields", compact: compact)
        return request
    }
}

public struct AlterConfigsResponse: KafkaResponseMessage {
    public static let apiKey = APIKey.alterConfigs

    public var throttleTimeMs: Int32
    public var responses: [AlterConfigsResourceResult]

    public init(throttleTimeMs: Int32 = 0, responses: [AlterConfigsResourceResult]) {
        self.throttleTimeMs = throttleTimeMs
        self.responses = responses
    }

    public func encode(into buffer: inout ByteBuffer, version: Int16) {
        AlterConfigsResourceResult.encode(responses, throttleTimeMs: throttleTimeMs, into: &buffer,
                                          compact: Self.apiKey.isFlexible(version: version))
    }

    public static func decode(from buffer: inout ByteBuffer, version: Int16) throws -> Self {
        try checkVersion(version, buffer)
        let (throttle, results) = try AlterConfigsResourceResult.decodeAll(
            from: &buffer, compact: apiKey.isFlexible(version: version), "AlterConfigsResponse")
        return Self(throttleTimeMs: throttle, responses: results)
    }
}

/// IncrementalAlterConfigs (key 44), v0–v1; v1 is flexible. Each config names its operation
/// (`ConfigOperation`); configs not named keep their values.
public struct IncrementalAlterConfigsRequest: KafkaRequestMessage {
    public typealias Response = IncrementalAlterConfigsResponse
    public static let apiKey = APIKey.incrementalAlterConfigs

    public struct Config: Sendable, Hashable {
        public var name: String
        public var configOperation: Int8
        public var value: String?

        public init(name: String, configOperation: Int8, value: String?) {
            self.name = name
            self.configOperation = configOperation
            self.value = value
        }
    }

    public struct Resource: Sendable, Hashable {
        public var resourceType: Int8
        public var resourceName: String
        public var configs: [Config]

        public init(resourceType: Int8, resourceName: String, configs: [Config]) {
            self.resourceType = resourceType
            self.resourceName = resourceName
            self.configs = configs
        }
    }

    public var resources: [Resource]
    public var validateOnly: Bool

    public init(resources: [Resource], validateOnly: Bool = false) {
        self.resources = resources
        self.validateOnly = validateOnly
    }

    public func encode(into buffer: inout ByteBuffer, version: Int16) {
        let compact = Self.apiKey.isFlexible(version: version)
        buffer.writeKafkaArray(resources, compact: compact) { buffer, resource in
            buffer.writeInteger(resource.resourceType)
            buffer.writeKafkaString(resource.resourceName, compact: compact)
            buffer.writeKafkaArray(resource.configs, compact: compact) { buffer, config in
                buffer.writeKafkaString(config.name, compact: compact)
                buffer.writeInteger(config.configOperation)
                buffer.writeKafkaNullableString(config.value, compact: compact)
                buffer.writeKafkaEmptyTaggedFields(compact: compact)
            }
            buffer.writeKafkaEmptyTaggedFields(compact: compact)
        }
        buffer.writeKafkaBool(validateOnly)
        buffer.writeKafkaEmptyTaggedFields(compact: compact)
    }

    public static func decode(from buffer: inout ByteBuffer, version: Int16) throws -> Self {
        try checkVersion(version, buffer)
        let compact = apiKey.isFlexible(version: version)
        let resources = try buffer.readKafkaArray("IncrementalAlterConfigsRequest.resources", compact: compact,
                                                  minimumElementBytes: 3) { buffer in
            let resource = Resource(
                resourceType: try buffer.readKafkaInt8("IncrementalAlterConfigsRequest.resources[].resourceType"),
                resourceName: try buffer.readKafkaString("IncrementalAlterConfigsRequest.resources[].resourceName", compact: compact),
                configs: try buffer.readKafkaArray("IncrementalAlterConfigsRequest.resources[].configs", compact: compact,
                                                   minimumElementBytes: 3) { buffer in
                    let config = Config(
                        name: try buffer.readKafkaString("IncrementalAlterConfigsRequest.configs[].name", compact: compact),
                        configOperation: try buffer.readKafkaInt8("IncrementalAlterConfigsRequest.configs[].configOperation"),
                        value: try buffer.readKafkaNullableString("IncrementalAlterConfigsRequest.configs[].value", compact: compact))
                    try buffer.skipKafkaTaggedFields("IncrementalAlterConfigsRequest.configs[].taggedFields", compact: compact)
                    return config
                })
            try buffer.skipKafkaTaggedFields("IncrementalAlterConfigsRequest.resources[].taggedFields", compact: compact)
            return resource
        }
        let request = Self(resources: resources,
                           validateOnly: try buffer.readKafkaBool("IncrementalAlterConfigsRequest.validateOnly"))
        try buffer.skipKafkaTaggedFields("IncrementalAlterConfigsRequest.taggedFields", compact: compact)
        return request
    }
}

public struct IncrementalAlterConfigsResponse: KafkaResponseMessage {
    public static let apiKey = APIKey.incrementalAlterConfigs

    public var throttleTimeMs: Int32
    public var responses: [AlterConfigsResourceResult]

    public init(throttleTimeMs: Int32 = 0, responses: [AlterConfigsResourceResult]) {
        self.throttleTimeMs = throttleTimeMs
        self.responses = responses
    }

    public func encode(into buffer: inout ByteBuffer, version: Int16) {
        AlterConfigsResourceResult.encode(responses, throttleTimeMs: throttleTimeMs, into: &buffer,
                                          compact: Self.apiKey.isFlexible(version: version))
    }

    public static func decode(from buffer: inout ByteBuffer, version: Int16) throws -> Self {
        try checkVersion(version, buffer)
        let (throttle, results) = try AlterConfigsResourceResult.decodeAll(
            from: &buffer, compact: apiKey.isFlexible(version: version), "IncrementalAlterConfigsResponse")
        return Self(throttleTimeMs: throttle, responses: results)
    }
}
