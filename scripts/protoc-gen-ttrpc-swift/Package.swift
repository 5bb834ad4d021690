// swift-tools-version: 6.0
// The protoc plugin that writes ttrpc service protocols and clients for Skiff's protos.
// Only scripts/gen-proto builds it; the package itself does not depend on it.
import PackageDescription

let package = Package(
    name: "protoc-gen-ttrpc-swift",
    dependencies: [
        .package(url: "https://github.com/apple/swift-protobuf", exact: "1.39.0"),
    ],
    targets: [
        .executableTarget(
            name: "protoc-gen-ttrpc-swift",
            dependencies: [
                .product(name: "SwiftProtobufPluginLibrary", package: "swift-protobuf"),
            ]
        ),
    ]
)
