// The golden files of containerd.events, cgroup metrics and skiff.diag.v1 (see GoldenBytesTests.swift).

import Foundation
import SwiftProtobuf
import Testing

import ContainerdAPI
import SkiffAPI

// MARK: - containerd.events and the ttrpc events service

@Suite struct EventsGoldenBytesTests {
    @Test func taskCreateEventFromContainerdDecodesRootfsAndIO() throws {
        let event = try checkGolden("TaskCreate", equals: Containerd_Events_TaskCreate.with {
            $0.containerID = "create-container"
            $0.bundle = "/bundles/create"
            $0.rootfs = mounts()
            $0.io = .with {
                $0.stdin = "event-stdin"
                $0.stdout = "event-stdout"
                $0.stderr = "event-stderr"
                $0.terminal = true
            }
            $0.checkpoint = "/var/checkpoint/event"
            $0.pid = 4_000_000_301
        })
        #expect(event.io.terminal)
        #expect(event.rootfs.map(\.target) == ["/rootfs", "/data"])
    }

    @Test func taskExitEventFromContainerdDecodesEveryField() throws {
        let event = try checkGolden("TaskExit", equals: taskExit())
        #expect(event.id == "exit-exec")
        #expect(event.exitStatus == 137)
        #expect(event.exitedAt == exitedAt)
    }

    @Test func otherTaskLifecycleEventsFromContainerdDecodeEveryField() throws {
        try checkGolden("TaskStart", equals: Containerd_Events_TaskStart.with {
            $0.containerID = "start-container"; $0.pid = 4_000_000_302
        })
        try checkGolden("TaskDelete", equals: Containerd_Events_TaskDelete.with {
            $0.containerID = "delete-container"
            $0.pid = 4_000_000_304
            $0.exitStatus = 4_000_000_305
            $0.exitedAt = exitedAt
            $0.id = "delete-exec"
        })
        try checkGolden("TaskExecAdded", equals: Containerd_Events_TaskExecAdded.with {
            $0.containerID = "added-container"; $0.execID = "added-exec"
        })
        try checkGolden("TaskExecStarted", equals: Containerd_Events_TaskExecStarted.with {
            $0.containerID = "started-container"; $0.execID = "started-exec"; $0.pid = 4_000_000_306
        })
        try checkGolden("TaskOOM", equals: Containerd_Events_TaskOOM.with { $0.containerID = "oom-container" })
        try checkGolden("TaskPaused", equals: Containerd_Events_TaskPaused.with { $0.containerID = "paused-container" })
        try checkGolden("TaskResumed", equals: Containerd_Events_TaskResumed.with { $0.containerID = "resumed-container" })
        try checkGolden("TaskCheckpointed", equals: Containerd_Events_TaskCheckpointed.with {
            $0.containerID = "checkpointed-container"; $0.checkpoint = "/var/checkpoint/event"
        })
    }

    @Test func envelopeFromContainerdCarriesTaskExitUnderItsBareTypeURL() throws {
        // containerd's typeurl names proto messages by their full name with no
        // "type.googleapis.com/" prefix; our Envelope must carry exactly that.
        let expected = try Containerd_Services_Events_Ttrpc_V1_Envelope.with {
            $0.timestamp = published
            $0.namespace = "k8s.io"
            $0.topic = "/tasks/exit"
            $0.event = try .with {
                $0.typeURL = "containerd.events.TaskExit"
                $0.value = try taskExit().serializedBytes()
            }
        }
        let envelope = try checkGolden("Envelope", equals: expected)
        #expect(envelope.event.typeURL == "containerd.events.TaskExit")
        #expect(envelope.event.typeURL == Containerd_Events_TaskExit.protoMessageName)
        #expect(envelope.timestamp == published)
        #expect(try Containerd_Events_TaskExit(unpackingAny: envelope.event) == taskExit())

        let forward = try checkGolden("ForwardRequest", equals: Containerd_Services_Events_Ttrpc_V1_ForwardRequest.with {
            $0.envelope = expected
        })
        #expect(forward.envelope.topic == "/tasks/exit")
    }
}

// MARK: - cgroup metrics

@Suite struct CgroupMetricsGoldenBytesTests {
    @Test func cgroupsV1MetricsFromContainerdDecodeEveryController() throws {
        let metrics = try checkGolden("CgroupsV1Metrics", equals: cgroupsV1Metrics())
        #expect(Io_Containerd_Cgroups_V1_Metrics.protoMessageName == "io.containerd.cgroups.v1.Metrics")
        #expect(metrics.hugetlb.map(\.pagesize) == ["2MB", "1GB"])
        #expect(metrics.cpu.usage.perCpu == [base + 341, base + 342, 0, 7])
        #expect(metrics.memory.totalUnevictable == base + 132)
        #expect(metrics.memory.kernelTcp.failcnt == base + 364)
        #expect(metrics.blkio.sectorsRecursive.first?.device == "/dev/vdi")
        #expect(metrics.rdma.limit.first?.hcaObjects == 4_000_000_003)
        #expect(metrics.network.first?.txDropped == 79)
        #expect(metrics.cgroupStats.nrIoWait == 85)
        #expect(metrics.memoryOomControl.oomKill == base + 93)
    }

    @Test func cgroupsV2MetricsFromContainerdDecodeEveryController() throws {
        let metrics = try checkGolden("CgroupsV2Metrics", equals: cgroupsV2Metrics())
        #expect(Io_Containerd_Cgroups_V2_Metrics.protoMessageName == "io.containerd.cgroups.v2.Metrics")
        #expect(metrics.pids.limit == base + 12)
        #expect(metrics.cpu.throttledUsec == base + 26)
        #expect(metrics.memory.swapLimit == base + 235)
        #expect(metrics.rdma.limit.first?.hcaHandles == 4_000_000_053)
        #expect(metrics.io.usage.first?.wios == base + 66)
        #expect(metrics.hugetlb.last?.max == base + 73)
        #expect(metrics.memoryEvents.max == base + 83)
    }
}

@Test func everyGoldenFileIsCheckedByATest() throws {
    let directory = try #require(Bundle.module.resourceURL?.appendingPathComponent("Golden"))
    let files = try FileManager.default.contentsOfDirectory(atPath: directory.path)
        .filter { $0.hasSuffix(".bin") }
        .map { String($0.dropLast(4)) }
    #expect(Set(files) == goldenNames)
}

// MARK: - skiff.diag.v1

@Test func diagMessagesRoundTripAtTheirFieldNumbers() throws {
    func roundTrip<M: Message & Equatable>(_ message: M) throws -> Data {
        let data: Data = try message.serializedBytes()
        #expect(try M(serializedBytes: data) == message)
        return data
    }

    let exec = Skiff_Diag_V1_ExecProcessRequest.with {
        $0.args = ["/bin/sh", "-c", "uname -a"]
        $0.workdir = "/tmp"
        $0.terminal = true
        $0.stdin = "in"
        $0.stdout = "out"
        $0.stderr = "err"
    }
    _ = try roundTrip(exec)
    // exit_code is an int32 at field 1: -1 is a ten-byte varint.
    #expect(try roundTrip(Skiff_Diag_V1_ExecProcessResponse.with { $0.exitCode = -1 })
        == Data([0x08] + [UInt8](repeating: 0xFF, count: 9) + [0x01]))
    #expect(try roundTrip(Skiff_Diag_V1_StacksRequest()).isEmpty)
    _ = try roundTrip(Skiff_Diag_V1_StacksResponse.with { $0.stacks = "goroutine 1"; $0.guestStacks = "guest 1" })
    #expect(try roundTrip(Skiff_Diag_V1_TasksRequest.with { $0.execs = true }) == Data([0x08, 0x01]))
    let tasks = Skiff_Diag_V1_TasksResponse.with {
        $0.tasks = [
            .with {
                $0.id = "pod"
                $0.execs = [.with { $0.id = "init"; $0.state = "running" }, .with { $0.id = "e1"; $0.state = "exited" }]
            },
            .with { $0.id = "empty" },
        ]
    }
    #expect(try Skiff_Diag_V1_TasksResponse(serializedBytes: try roundTrip(tasks)).tasks[0].execs[1].state == "exited")
    // host_path=1, uvm_path=2, read_only=3.
    #expect(try roundTrip(Skiff_Diag_V1_ShareRequest.with { $0.hostPath = "a"; $0.uvmPath = "b"; $0.readOnly = true })
        == Data([0x0A, 0x01, 0x61, 0x12, 0x01, 0x62, 0x18, 0x01]))
    #expect(try roundTrip(Skiff_Diag_V1_ShareResponse()).isEmpty)
    #expect(try roundTrip(Skiff_Diag_V1_PidRequest()).isEmpty)
    #expect(try roundTrip(Skiff_Diag_V1_PidResponse.with { $0.pid = 4242 }) == Data([0x08, 0x92, 0x21]))
    // The stdio paths sit at 4, 5 and 6 after args=1, workdir=2, terminal=3.
    let stdio = Skiff_Diag_V1_ExecProcessRequest.with { $0.stdin = "i"; $0.stdout = "o"; $0.stderr = "e" }
    #expect(try roundTrip(stdio) == Data([0x22, 0x01, 0x69, 0x2A, 0x01, 0x6F, 0x32, 0x01, 0x65]))
    #expect(Skiff_Diag_V1_ExecProcessRequest.protoMessageName == "skiff.diag.v1.ExecProcessRequest")
}
