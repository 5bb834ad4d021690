// swift-tools-version: 6.1
import PackageDescription

let package = Package(
    name: "Skiff",
    platforms: [.macOS(.v15)],
    products: [
        .library(name: "TTRPC", targets: ["TTRPC"]),
        .library(name: "ContainerdAPI", targets: ["ContainerdAPI"]),
        .library(name: "SkiffAPI", targets: ["SkiffAPI"]),
        .library(name: "VMManager", targets: ["VMManager"]),
        // For fuzz/ (a package of its own): the OCI spec path and the agent's API.
        .library(name: "PodController", targets: ["PodController"]),
        .library(name: "GuestAgent", targets: ["GuestAgent"]),
        .library(name: "AgentAPI", targets: ["AgentAPI"]),
        .executable(name: "skiff-ttrpc-peer", targets: ["skiff-ttrpc-peer"]),
        .executable(name: "skiff-agent", targets: ["skiff-agent"]),
        .executable(name: "containerd-shim-skiff-v2", targets: ["containerd-shim-skiff-v2"]),
        .executable(name: "shimdiag", targets: ["shimdiag"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-nio", from: "2.101.2"),
        // No default traits: BinaryDelimitedStreams would pull all of Foundation (and ICU) into
        // the static guest agent.
        .package(url: "https://github.com/apple/swift-protobuf", from: "1.39.0", traits: []),
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
    ],
    targets: [
        // ttrpc (containerd's RPC protocol) over SwiftNIO: frame codec, server, client.
        .target(
            name: "TTRPC",
            dependencies: [
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "SwiftProtobuf", package: "swift-protobuf"),
                .product(name: "Logging", package: "swift-log"),
            ],
            path: "Sources/Wire/TTRPC"
        ),
        // containerd's wire types: the task v2 service, events, mounts, cgroup metrics.
        .target(
            name: "ContainerdAPI",
            dependencies: [
                "TTRPC",
                .product(name: "SwiftProtobuf", package: "swift-protobuf"),
            ],
            path: "Sources/Wire/ContainerdAPI"
        ),
        // Skiff's own services: the diag service used by shimdiag.
        .target(
            name: "SkiffAPI",
            dependencies: [
                "TTRPC",
                .product(name: "SwiftProtobuf", package: "swift-protobuf"),
            ],
            path: "Sources/Wire/SkiffAPI"
        ),
        // The guest agent's API (proto/skiff/agent), shared by the agent and the guest manager.
        .target(
            name: "AgentAPI",
            dependencies: [
                "TTRPC",
                .product(name: "SwiftProtobuf", package: "swift-protobuf"),
            ],
            path: "Sources/Wire/AgentAPI"
        ),
        // Process stdio between host and guest: many byte streams over one connection, each
        // with credit-based flow control.
        .target(
            name: "StdioMux",
            dependencies: [
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
            ],
            path: "Sources/Wire/StdioMux"
        ),
        // Leaf helpers every layer may use: the async mutex, the error type, JSON values.
        .target(name: "SkiffSupport", path: "Sources/Support/SkiffSupport"),
        // Linux calls Swift cannot make directly (finit_module, terminal ioctls).
        .target(name: "CSkiffSys", path: "Sources/Support/CSkiffSys"),
        // Starting QEMU under a seccomp allow-list of the shim's making (libseccomp, Debian's
        // libseccomp-dev); host side only, so the static agent does not link it.
        .target(name: "CSkiffSpawn", path: "Sources/Support/CSkiffSpawn", linkerSettings: [.linkedLibrary("seccomp")]),
        // The guest agent's logic (processes, stdio pumps, mounts, modules, guest facts),
        // kept free of Foundation so the static agent stays small; runs on a host for tests.
        .target(
            name: "GuestAgent",
            dependencies: [
                "AgentAPI", "StdioMux", "TTRPC", "CSkiffSys",
                .product(name: "SwiftProtobuf", package: "swift-protobuf"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
            ],
            path: "Sources/Guest/GuestAgent",
            // Only what a file imports is visible: a stray Foundation string method would
            // otherwise link all of Foundation and ICU (some 50 MB) into the static agent.
            swiftSettings: [.enableUpcomingFeature("MemberImportVisibility")]
        ),
        // The host's client of a VM's guest agent: connecting while the VM boots, the agent
        // API and process stdio.
        .target(
            name: "GuestManager",
            dependencies: [
                "AgentAPI", "StdioMux", "TTRPC",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
            ],
            path: "Sources/Managers/GuestManager"
        ),
        // One utility VM's state machine over the VM manager and the guest manager, and its
        // Plan9 sub-controller; handles file and cleanup.
        .target(
            name: "VMController",
            dependencies: [
                "VMManager", "GuestManager", "AgentAPI", "StdioMux", "SkiffSupport", "CSkiffSys", "TTRPC",
                .product(name: "Logging", package: "swift-log"),
            ],
            path: "Sources/Controllers/VM"
        ),
        // The service layer: the pod (its VM's lifetime, its containers, events), each
        // container (shares, guest spec, crun in the guest through the agent) and each process
        // (one state machine for an init and an exec).
        .target(
            name: "PodController",
            dependencies: [
                "VMController", "AgentAPI", "StdioMux", "ContainerdAPI", "TTRPC", "SkiffSupport", "CSkiffSys",
                .product(name: "SwiftProtobuf", package: "swift-protobuf"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
            ],
            path: "Sources/Controllers/Pod"
        ),
        // The shim as a process: containerd's command line, the socket it derives, what
        // `start` prints, the bundle files.
        .target(
            name: "ShimProcess",
            dependencies: [
                "TTRPC", "ContainerdAPI", "PodController", "SkiffSupport",
                .product(name: "SwiftProtobuf", package: "swift-protobuf"),
            ],
            path: "Sources/Shim/ShimProcess"
        ),
        // The service layer: the pod (its VM and containers), the task service containerd
        // calls, stdio from containerd's fifos, events to containerd.
        .target(
            name: "ShimService",
            dependencies: [
                "PodController", "ContainerdAPI", "SkiffAPI", "TTRPC", "SkiffSupport",
                .product(name: "SwiftProtobuf", package: "swift-protobuf"),
                .product(name: "Logging", package: "swift-log"),
            ],
            path: "Sources/Shim/ShimService"
        ),
        .executableTarget(
            name: "containerd-shim-skiff-v2",
            dependencies: [
                "ShimProcess", "ShimService", "PodController", "TTRPC",
                .product(name: "Logging", package: "swift-log"),
            ],
            path: "cmd/containerd-shim-skiff-v2",
            // One shim per pod: its resident pages count on every node. lld packs the
            // relocations (DT_RELR, glibc 2.36), so the dynamic loader reads 11 KB of them at
            // start rather than 1.4 MB; built with --static-swift-stdlib (scripts/run, bench),
            // only the runtime and Foundation code the shim uses is mapped.
            linkerSettings: [.unsafeFlags(["-use-ld=lld", "-Xlinker", "-z", "-Xlinker", "pack-relative-relocs"])]
        ),
        .executableTarget(
            name: "skiff-agent",
            dependencies: [
                "GuestAgent", "StdioMux", "TTRPC", "CSkiffSys",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
            ],
            path: "cmd/skiff-agent",
            swiftSettings: [.enableUpcomingFeature("MemberImportVisibility")]
        ),
        // Benchmarks that need Swift (bench/run boot).
        .executableTarget(
            name: "skiff-bench",
            dependencies: ["VMController", "VMManager", "GuestManager"],
            path: "bench/skiff-bench"
        ),
        // The ttrpc.peer.v1.Peer reference service and its checks, shared by the interop
        // tests and the benchmark tool.
        .target(
            name: "TTRPCPeer",
            dependencies: [
                "TTRPC",
                .product(name: "SwiftProtobuf", package: "swift-protobuf"),
            ],
            path: "Sources/Wire/TTRPCPeer"
        ),
        // The host side of a utility VM: the VM document and its QEMU command line, the QEMU
        // process, and QMP.
        .target(
            name: "VMManager",
            dependencies: [
                "CSkiffSys", "CSkiffSpawn", "SkiffSupport",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
            ],
            path: "Sources/Managers/VMManager"
        ),
        .executableTarget(
            name: "shimdiag",
            dependencies: [
                "ShimProcess", "SkiffAPI", "TTRPC", "CSkiffSys",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ],
            path: "cmd/shimdiag"
        ),
        .executableTarget(
            name: "skiff-ttrpc-peer",
            dependencies: [
                "TTRPC",
                "TTRPCPeer",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "NIOPosix", package: "swift-nio"),
            ],
            path: "cmd/skiff-ttrpc-peer"
        ),
        .testTarget(
            name: "TTRPCTests",
            dependencies: [
                "TTRPC",
                "TTRPCPeer",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOEmbedded", package: "swift-nio"),
            ]
        ),
        .testTarget(
            name: "ContainerdAPITests",
            dependencies: [
                "ContainerdAPI", "SkiffAPI", "TTRPC",
                .product(name: "SwiftProtobuf", package: "swift-protobuf"),
            ],
            resources: [.copy("Golden")]
        ),
        .testTarget(
            name: "VMManagerTests",
            dependencies: ["VMManager"]
        ),
        .testTarget(
            name: "VMControllerTests",
            dependencies: ["VMController", "VMManager", "GuestManager", "AgentAPI", "SkiffSupport"]
        ),
        .testTarget(
            name: "VMIntegrationTests",
            dependencies: ["VMController", "VMManager", "GuestManager", "CSkiffSys"]
        ),
        .testTarget(name: "ShimProcessTests", dependencies: ["ShimProcess", "SkiffSupport"]),
        .testTarget(
            name: "PodControllerTests",
            dependencies: [
                "PodController", "VMController", "GuestManager", "AgentAPI", "ContainerdAPI", "SkiffSupport", "TTRPC",
                .product(name: "SwiftProtobuf", package: "swift-protobuf"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        .testTarget(
            name: "ContainerdE2ETests",
            dependencies: [
                "VMManager", "ContainerdAPI", "TTRPC", "SkiffSupport",
                .product(name: "SwiftProtobuf", package: "swift-protobuf"),
            ]
        ),
        .testTarget(
            name: "StdioMuxTests",
            dependencies: [
                "StdioMux",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
            ]
        ),
        .testTarget(
            name: "GuestAgentTests",
            dependencies: [
                "GuestAgent", "AgentAPI", "StdioMux", "TTRPC",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
            ]
        ),
        .testTarget(
            name: "InteropTests",
            dependencies: [
                "TTRPC",
                "TTRPCPeer",
                .product(name: "NIOPosix", package: "swift-nio"),
            ]
        ),
    ]
)
