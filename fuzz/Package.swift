// swift-tools-version: 6.0
// libFuzzer targets: Skiff's ttrpc decoding, the OCI spec's path to the guest spec, and the
// guest agent's API decoding. Build and run with fuzz/run (README, "Fuzzing").
import Foundation
import PackageDescription

// SwiftPM names a path dependency after its directory, which is whatever the clone is called.
let skiff = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().lastPathComponent

let package = Package(
    name: "SkiffFuzz",
    dependencies: [
        .package(path: ".."),
        .package(url: "https://github.com/apple/swift-nio", from: "2.101.2"),
        .package(url: "https://github.com/apple/swift-protobuf", from: "1.39.0"),
    ],
    targets: [
        .executableTarget(
            name: "FuzzGuestSpec",
            dependencies: [.product(name: "PodController", package: skiff)]
        ),
        .executableTarget(
            name: "FuzzAgentAPI",
            dependencies: [
                .product(name: "GuestAgent", package: skiff),
                .product(name: "AgentAPI", package: skiff),
                .product(name: "SwiftProtobuf", package: "swift-protobuf"),
            ]
        ),
        .executableTarget(
            name: "FuzzTTRPC",
            dependencies: [
                .product(name: "TTRPC", package: skiff),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "SwiftProtobuf", package: "swift-protobuf"),
            ]
        ),
    ]
)
