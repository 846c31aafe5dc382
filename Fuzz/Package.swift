// swift-tools-version:6.1
import PackageDescription

// libFuzzer targets over EventFlow's decoders. Build (Linux):
//   swift build -c debug --package-path Fuzz --scratch-path .build-fuzz \
//     -Xswiftc -sanitize=fuzzer,address -Xswiftc -parse-as-library
// Run: scripts/fuzz.sh SECONDS
let package = Package(
    name: "EventFlowFuzz",
    dependencies: [
        // Named explicitly: a path dependency's identity is otherwise its directory name.
        .package(name: "EventFlow", path: ".."),
        .package(url: "https://github.com/apple/swift-nio", from: "2.101.2"),
    ],
    targets: [
        .target(name: "CFuzzDriver"),
        .executableTarget(
            name: "FuzzRecordBatch",
            dependencies: [
                "CFuzzDriver",
                .product(name: "EventFlowProtocol", package: "EventFlow"),
                .product(name: "NIOCore", package: "swift-nio"),
            ],
            swiftSettings: [.swiftLanguageMode(.v6)]
        ),
        .executableTarget(
            name: "FuzzLZ4Frame",
            dependencies: [
                "CFuzzDriver",
                .product(name: "EventFlowProtocol", package: "EventFlow"),
                .product(name: "NIOCore", package: "swift-nio"),
            ],
            swiftSettings: [.swiftLanguageMode(.v6)]
        ),
        .executableTarget(
            name: "FuzzRequests",
            dependencies: [
                "CFuzzDriver",
                .product(name: "EventFlowProtocol", package: "EventFlow"),
                .product(name: "NIOCore", package: "swift-nio"),
            ],
            swiftSettings: [.swiftLanguageMode(.v6)]
        ),
    ]
)
