// Pins proto/containerd to containerd 1.6's wire format. Golden/<Name>.bin are messages that
// containerd's own Go types (gogo protobuf, Debian's containerd 1.6.20 and cgroups 1.0.4
// sources) marshalled; scripts/gen-golden/main.go set the values and scripts/gen-golden/run
// regenerates the files. Each test decodes a file with our generated Swift type and expects
// exactly the values the Go program set, so a wrong field number, type or nesting in our
// .proto files fails here. The fixtures below mirror main.go; keep the two in step.

import Foundation
import SwiftProtobuf
import Testing

import ContainerdAPI
import SkiffAPI

// MARK: - Golden files

/// Every file in Golden/, each checked by one of the tests below.
let goldenNames: Set<String> = [
    "CreateTaskRequest", "CreateTaskResponse", "StateRequest", "StateResponse", "StartRequest",
    "StartResponse", "DeleteRequest", "DeleteResponse", "ExecProcessRequest", "ResizePtyRequest",
    "KillRequest", "CloseIORequest", "PidsRequest", "PidsResponse", "CheckpointTaskRequest",
    "UpdateTaskRequest", "WaitRequest", "WaitResponse", "StatsRequest", "StatsResponse",
    "ConnectRequest", "ConnectResponse", "ShutdownRequest", "PauseRequest", "ResumeRequest",
    "Mount", "Process",
    "TaskCreate", "TaskStart", "TaskExit", "TaskDelete", "TaskExecAdded", "TaskExecStarted",
    "TaskOOM", "TaskPaused", "TaskResumed", "TaskCheckpointed",
    "Envelope", "ForwardRequest",
    "CgroupsV1Metrics", "CgroupsV2Metrics",
]

func goldenBytes(_ name: String) throws -> Data {
    let url = try #require(
        Bundle.module.url(forResource: name, withExtension: "bin", subdirectory: "Golden"),
        "Golden/\(name).bin is missing; run scripts/gen-golden/run"
    )
    return try Data(contentsOf: url)
}

/// Decodes Golden/<name>.bin as `M` and checks it against `expected`:
/// - the decoded message equals `expected`, nested messages and unknown fields included, so
///   every value containerd wrote arrived in the field we meant (a field at a number we do not
///   declare would land in `unknownFields` and break the equality);
/// - encoding it again gives containerd's bytes exactly (map entries sorted, as gen-golden
///   writes them);
/// - decoding those bytes gives the same message again.
@discardableResult
func checkGolden<M: Message & Equatable>(
    _ name: String,
    equals expected: M,
    sourceLocation: SourceLocation = #_sourceLocation
) throws -> M {
    let golden = try goldenBytes(name)
    let decoded = try M(serializedBytes: golden)
    #expect(decoded == expected, "Golden/\(name).bin", sourceLocation: sourceLocation)
    #expect(decoded.unknownFields.data.isEmpty, "Golden/\(name).bin has unknown fields", sourceLocation: sourceLocation)

    var options = BinaryEncodingOptions()
    options.useDeterministicOrdering = true
    let reencoded: Data = try decoded.serializedBytes(options: options)
    #expect(reencoded == golden, "Swift encodes Golden/\(name).bin differently", sourceLocation: sourceLocation)
    let again = try M(serializedBytes: reencoded)
    #expect(again == decoded, "Golden/\(name).bin does not round-trip", sourceLocation: sourceLocation)
    return decoded
}


// MARK: - containerd.task.v2

@Suite struct TaskServiceGoldenBytesTests {
    @Test func createTaskRequestFromContainerdDecodesEveryField() throws {
        let request = try checkGolden("CreateTaskRequest", equals: Containerd_Task_V2_CreateTaskRequest.with {
            $0.id = "create-id"
            $0.bundle = "/run/containerd/io.containerd.runtime.v2.task/k8s.io/create-id"
            $0.rootfs = mounts()
            $0.terminal = true
            $0.stdin = "/run/fifo/create-stdin"
            $0.stdout = "/run/fifo/create-stdout"
            $0.stderr = "/run/fifo/create-stderr"
            $0.checkpoint = "/var/checkpoint/create"
            $0.parentCheckpoint = "/var/checkpoint/parent"
            $0.options = .with {
                $0.typeURL = "containerd.runc.v1.Options"
                $0.value = Data([0x0A, 0x04]) + Data("runc".utf8) + Data([0x50, 0x01])
            }
        })
        #expect(request.rootfs.count == 2)
        #expect(request.rootfs[0].options == ["lowerdir=/l1:/l2", "upperdir=/u", "workdir=/w"])
        #expect(request.rootfs[1].type == "bind")
        #expect(request.parentCheckpoint == "/var/checkpoint/parent")
        #expect(request.options.typeURL == "containerd.runc.v1.Options")
    }

    @Test func createAndStartResponsesFromContainerdDecodeTheirPid() throws {
        try checkGolden("CreateTaskResponse", equals: Containerd_Task_V2_CreateTaskResponse.with { $0.pid = 4_000_000_001 })
        try checkGolden("StartResponse", equals: Containerd_Task_V2_StartResponse.with { $0.pid = 4_000_000_004 })
    }

    @Test func requestsNamingATaskFromContainerdDecodeIDAndExecID() throws {
        try checkGolden("StateRequest", equals: Containerd_Task_V2_StateRequest.with { $0.id = "state-id"; $0.execID = "state-exec" })
        try checkGolden("StartRequest", equals: Containerd_Task_V2_StartRequest.with { $0.id = "start-id"; $0.execID = "start-exec" })
        try checkGolden("DeleteRequest", equals: Containerd_Task_V2_DeleteRequest.with { $0.id = "delete-id"; $0.execID = "delete-exec" })
        try checkGolden("WaitRequest", equals: Containerd_Task_V2_WaitRequest.with { $0.id = "wait-id"; $0.execID = "wait-exec" })
        try checkGolden("PidsRequest", equals: Containerd_Task_V2_PidsRequest.with { $0.id = "pids-id" })
        try checkGolden("StatsRequest", equals: Containerd_Task_V2_StatsRequest.with { $0.id = "stats-id" })
        try checkGolden("ConnectRequest", equals: Containerd_Task_V2_ConnectRequest.with { $0.id = "connect-id" })
        try checkGolden("PauseRequest", equals: Containerd_Task_V2_PauseRequest.with { $0.id = "pause-id" })
        try checkGolden("ResumeRequest", equals: Containerd_Task_V2_ResumeRequest.with { $0.id = "resume-id" })
        try checkGolden("ShutdownRequest", equals: Containerd_Task_V2_ShutdownRequest.with { $0.id = "shutdown-id"; $0.now = true })
    }

    @Test func stateResponseFromContainerdDecodesEveryFieldThroughExecID() throws {
        let response = try checkGolden("StateResponse", equals: Containerd_Task_V2_StateResponse.with {
            $0.id = "state-id"
            $0.bundle = "/bundles/state"
            $0.pid = 4_000_000_002
            $0.status = .pausing
            $0.stdin = "state-stdin"
            $0.stdout = "state-stdout"
            $0.stderr = "state-stderr"
            $0.terminal = true
            $0.exitStatus = 4_000_000_003
            $0.exitedAt = exitedAt
            $0.execID = "state-exec"
        })
        #expect(response.status == .pausing)
        #expect(response.status.rawValue == 5)
        #expect(response.exitedAt.seconds == 1_709_618_828)
        #expect(response.exitedAt.nanos == 123_456_789)
        #expect(response.execID == "state-exec")
    }

    @Test func deleteResponseFromContainerdDecodesExitStatusAndExitedAt() throws {
        let response = try checkGolden("DeleteResponse", equals: Containerd_Task_V2_DeleteResponse.with {
            $0.pid = 4_000_000_005
            $0.exitStatus = 255
            $0.exitedAt = exitedAt
        })
        #expect(response.exitedAt == exitedAt)
    }

    @Test func execProcessRequestFromContainerdDecodesTheProcessSpecAny() throws {
        let spec = #"{"args":["/bin/sh","-c","echo hi"],"cwd":"/"}"#
        let request = try checkGolden("ExecProcessRequest", equals: Containerd_Task_V2_ExecProcessRequest.with {
            $0.id = "exec-id"
            $0.execID = "exec-exec"
            $0.terminal = true
            $0.stdin = "exec-stdin"
            $0.stdout = "exec-stdout"
            $0.stderr = "exec-stderr"
            $0.spec = .with {
                $0.typeURL = "types.containerd.io/opencontainers/runtime-spec/1/Process"
                $0.value = Data(spec.utf8)
            }
        })
        #expect(String(decoding: request.spec.value, as: UTF8.self) == spec)
    }

    @Test func resizePtyKillAndCloseIORequestsFromContainerdDecodeEveryField() throws {
        try checkGolden("ResizePtyRequest", equals: Containerd_Task_V2_ResizePtyRequest.with {
            $0.id = "resize-id"; $0.execID = "resize-exec"; $0.width = 4_000_000_006; $0.height = 4_000_000_007
        })
        let kill = try checkGolden("KillRequest", equals: Containerd_Task_V2_KillRequest.with {
            $0.id = "kill-id"; $0.execID = "kill-exec"; $0.signal = 4_000_000_009; $0.all = true
        })
        #expect(kill.all)
        try checkGolden("CloseIORequest", equals: Containerd_Task_V2_CloseIORequest.with {
            $0.id = "closeio-id"; $0.execID = "closeio-exec"; $0.stdin = true
        })
    }

    @Test func pidsResponseFromContainerdDecodesProcessInfoWithItsAny() throws {
        let response = try checkGolden("PidsResponse", equals: Containerd_Task_V2_PidsResponse.with {
            $0.processes = [
                .with {
                    $0.pid = 4_000_000_010
                    $0.info = .with {
                        $0.typeURL = "containerd.runc.v1.ProcessDetails"
                        $0.value = Data([0x0A, 0x06]) + Data("exec-7".utf8)
                    }
                },
                .with { $0.pid = 11 },
            ]
        })
        #expect(response.processes.map(\.pid) == [4_000_000_010, 11])
        #expect(response.processes[0].hasInfo)
        #expect(!response.processes[1].hasInfo)
    }

    @Test func checkpointTaskRequestFromContainerdDecodesPathAndOptions() throws {
        try checkGolden("CheckpointTaskRequest", equals: Containerd_Task_V2_CheckpointTaskRequest.with {
            $0.id = "checkpoint-id"
            $0.path = "/var/checkpoint/out"
            $0.options = .with { $0.typeURL = "containerd.runc.v1.CheckpointOptions"; $0.value = Data([0x08, 0x01]) }
        })
    }

    @Test func updateTaskRequestFromContainerdDecodesResourcesAndAnnotations() throws {
        let request = try checkGolden("UpdateTaskRequest", equals: Containerd_Task_V2_UpdateTaskRequest.with {
            $0.id = "update-id"
            $0.resources = .with {
                $0.typeURL = "types.containerd.io/opencontainers/runtime-spec/1/LinuxResources"
                $0.value = Data(#"{"memory":{"limit":268435456}}"#.utf8)
            }
            $0.annotations = [
                "io.kubernetes.cri.sandbox-id": "sandbox-1234",
                "skiff.example/one": "1",
                "z-last": "",
            ]
        })
        #expect(request.annotations["io.kubernetes.cri.sandbox-id"] == "sandbox-1234")
        #expect(request.annotations["z-last"] == "")
    }

    @Test func waitResponseFromContainerdDecodesExitStatusAndExitedAt() throws {
        try checkGolden("WaitResponse", equals: Containerd_Task_V2_WaitResponse.with {
            $0.exitStatus = 4_000_000_012
            $0.exitedAt = exitedAt
        })
    }

    @Test func statsResponseFromContainerdCarriesCgroupsV2MetricsUnderItsTypeURL() throws {
        let expectedMetrics = cgroupsV2Metrics()
        let response = try checkGolden("StatsResponse", equals: Containerd_Task_V2_StatsResponse.with {
            $0.stats = try .with {
                $0.typeURL = "io.containerd.cgroups.v2.Metrics"
                $0.value = try expectedMetrics.serializedBytes()
            }
        })
        #expect(response.stats.typeURL == "io.containerd.cgroups.v2.Metrics")
        #expect(response.stats.typeURL == Io_Containerd_Cgroups_V2_Metrics.protoMessageName)
        #expect(try Io_Containerd_Cgroups_V2_Metrics(unpackingAny: response.stats) == expectedMetrics)
    }

    @Test func connectResponseFromContainerdDecodesBothPidsAndVersion() throws {
        try checkGolden("ConnectResponse", equals: Containerd_Task_V2_ConnectResponse.with {
            $0.shimPid = 4_000_000_013
            $0.taskPid = 4_000_000_014
            $0.version = "skiff-golden-1"
        })
    }

    @Test func mountAndProcessFromContainerdDecodeEveryField() throws {
        try checkGolden("Mount", equals: mounts()[0])
        let process = try checkGolden("Process", equals: Containerd_V1_Types_Process.with {
            $0.containerID = "process-container"
            $0.id = "process-id"
            $0.pid = 4_000_000_015
            $0.status = .stopped
            $0.stdin = "process-stdin"
            $0.stdout = "process-stdout"
            $0.stderr = "process-stderr"
            $0.terminal = true
            $0.exitStatus = 4_000_000_016
            $0.exitedAt = exitedAt
        })
        #expect(process.status == .stopped)
    }
}
