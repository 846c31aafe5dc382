// swift-tools-version:6.1
import PackageDescription

let swiftSettings: [SwiftSetting] = [
    .swiftLanguageMode(.v6),
]

let package = Package(
    name: "EventFlow",
    platforms: [.macOS(.v14)],
    products: [
        .library(name: "EventFlowProtocol", targets: ["EventFlowProtocol"]),
        .library(name: "EventFlowStorage", targets: ["EventFlowStorage"]),
        .library(name: "EventFlowBroker", targets: ["EventFlowBroker"]),
        .library(name: "EventFlowClient", targets: ["EventFlowClient"]),
        .executable(name: "eventflow", targets: ["eventflow"]),
        .executable(name: "eventflow-loadgen", targets: ["eventflow-loadgen"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
        .package(url: "https://github.com/apple/swift-nio", from: "2.101.2"),
        .package(url: "https://github.com/apple/swift-crypto", from: "3.12.3"),
        .package(url: "https://github.com/apple/swift-nio-ssl", from: "2.37.6"),
        .package(url: "https://github.com/apple/swift-certificates", from: "1.21.1"),
        .package(url: "https://github.com/apple/swift-metrics", from: "2.13.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus", from: "2.4.1"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle", from: "2.13.0"),
        .package(url: "https://github.com/HdrHistogram/hdrhistogram-swift", from: "0.2.0"),
    ],
    targets: [
        // System libraries: headers come from Debian's liblz4-dev and libpq-dev.
        .systemLibrary(
            name: "CLibPQ",
            pkgConfig: "libpq",
            providers: [.apt(["libpq-dev"])]
        ),
        .systemLibrary(
            name: "CLZ4",
            pkgConfig: "liblz4",
            providers: [.apt(["liblz4-dev"])]
        ),
        // CRC32C with the SSE4.2 instruction where the CPU has it, table fallback otherwise.
        .target(name: "CCRC32C"),

        .target(
            name: "EventFlowProtocol",
            dependencies: [
                "CLZ4",
                "CCRC32C",
                .product(name: "NIOCore", package: "swift-nio"),
            ],
            swiftSettings: swiftSettings
        ),
        .target(
            name: "EventFlowStorage",
            dependencies: [
                "CLibPQ",
                .product(name: "Logging", package: "swift-log"),
                // Catch-up reads hand stored batches to the broker as ByteBuffers (no re-encoding).
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "_CryptoExtras", package: "swift-crypto"),
            ],
            resources: [],
            swiftSettings: swiftSettings
        ),
        .target(
            name: "EventFlowBroker",
            dependencies: [
                "EventFlowProtocol",
                "EventFlowStorage",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "X509", package: "swift-certificates"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "CoreMetrics", package: "swift-metrics"),
                .product(name: "Prometheus", package: "swift-prometheus"),
            ],
            swiftSettings: swiftSettings
        ),
        .target(
            name: "EventFlowClient",
            dependencies: [
                "EventFlowProtocol",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            swiftSettings: swiftSettings
        ),
        .executableTarget(
            name: "eventflow-loadgen",
            dependencies: [
                "EventFlowClient",
                "EventFlowProtocol",
                // The baselines write to PostgreSQL directly (multi-row INSERT, raw binary COPY).
                "EventFlowStorage",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Histogram", package: "hdrhistogram-swift"),
            ],
            swiftSettings: swiftSettings
        ),
        .executableTarget(
            name: "eventflow",
            dependencies: [
                "EventFlowProtocol",
                "EventFlowStorage",
                "EventFlowBroker",
                "EventFlowClient",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOCore", package: "swift-nio"),
            ],
            swiftSettings: swiftSettings
        ),

        // Shared by the test targets only: the embedded PostgreSQL per test process.
        .target(
            name: "EventFlowTestSupport",
            dependencies: ["EventFlowStorage", .product(name: "Logging", package: "swift-log")],
            swiftSettings: swiftSettings
        ),

        .testTarget(
            name: "EventFlowProtocolTests",
            dependencies: [
                "EventFlowProtocol",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOEmbedded", package: "swift-nio"),
            ],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "EventFlowStorageTests",
            dependencies: ["EventFlowStorage", "EventFlowTestSupport"],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "EventFlowBrokerTests",
            dependencies: [
                "EventFlowBroker",
                "EventFlowClient",
                "EventFlowProtocol",
                "EventFlowStorage",
                "EventFlowTestSupport",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "NIOEmbedded", package: "swift-nio"),
            ],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "EventFlowClientTests",
            dependencies: [
                "EventFlowClient",
                "EventFlowProtocol",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOEmbedded", package: "swift-nio"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "EventFlowCLITests",
            dependencies: ["EventFlowStorage", "EventFlowTestSupport", "eventflow"],
            swiftSettings: swiftSettings
        ),
    ]
)
