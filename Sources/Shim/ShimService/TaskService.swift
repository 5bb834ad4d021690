import ContainerdAPI
import FoundationEssentials
import Glibc
import Logging
import PodController
import SkiffSupport
import SwiftProtobuf
import TTRPC

/// containerd's Task service, served by the shim: thin handlers that decode, make one call on
/// the pod controller and let `serviceCall` map errors to gRPC codes. `onShutdown` runs once
/// Shutdown finds no task left.
public final class TaskService: Containerd_Task_V2_TaskService, Sendable {
    private let pod: PodController
    private let logger: Logger
    private let onShutdown: @Sendable () -> Void

    public init(pod: PodController, logger: Logger, onShutdown: @escaping @Sendable () -> Void) {
        self.pod = pod
        self.logger = logger
        self.onShutdown = onShutdown
    }

    /// Runs one call: the task id (and the exec id, when one is given) must follow containerd's
    /// identifier rule, else InvalidArgument before anything else looks at them; ids in the
    /// log line are cut short.
    private func handle<T>(_ name: String, _ id: String, execID: String = "", _ body: () async throws -> T) async throws -> T {
        let what = "\(name) \(ContainerdIdentifier.excerpt(id))" + (execID.isEmpty ? "" : " exec \(ContainerdIdentifier.excerpt(execID))")
        return try await serviceCall(what, logger: logger) {
            try ContainerdIdentifier.validate(id, what: "task id")
            if !execID.isEmpty { try ContainerdIdentifier.validate(execID, what: "exec id") }
            return try await body()
        }
    }

    public func create(_ request: Containerd_Task_V2_CreateTaskRequest, context: TTRPCServerContext) async throws -> Containerd_Task_V2_CreateTaskResponse {
        try await handle("Create", request.id) {
            let pid = try await pod.create(request)
            return .with { $0.pid = pid }
        }
    }

    public func start(_ request: Containerd_Task_V2_StartRequest, context: TTRPCServerContext) async throws -> Containerd_Task_V2_StartResponse {
        try await handle("Start", request.id, execID: request.execID) {
            let pid = try await pod.start(id: request.id, execID: request.execID)
            return .with { $0.pid = pid }
        }
    }

    public func wait(_ request: Containerd_Task_V2_WaitRequest, context: TTRPCServerContext) async throws -> Containerd_Task_V2_WaitResponse {
        try await handle("Wait", request.id, execID: request.execID) {
            let (status, at) = try await pod.wait(id: request.id, execID: request.execID)
            return .with { $0.exitStatus = status; $0.exitedAt = .init(date: at) }
        }
    }

    public func kill(_ request: Containerd_Task_V2_KillRequest, context: TTRPCServerContext) async throws -> Google_Protobuf_Empty {
        try await handle("Kill", request.id, execID: request.execID) {
            try await pod.kill(id: request.id, execID: request.execID, signal: request.signal, all: request.all)
            return .init()
        }
    }

    public func delete(_ request: Containerd_Task_V2_DeleteRequest, context: TTRPCServerContext) async throws -> Containerd_Task_V2_DeleteResponse {
        try await handle("Delete", request.id, execID: request.execID) {
            let (pid, status, at) = try await pod.delete(id: request.id, execID: request.execID)
            return .with { $0.pid = pid; $0.exitStatus = status; $0.exitedAt = .init(date: at) }
        }
    }

    public func state(_ request: Containerd_Task_V2_StateRequest, context: TTRPCServerContext) async throws -> Containerd_Task_V2_StateResponse {
        try await handle("State", request.id, execID: request.execID) {
            return try await pod.state(id: request.id, execID: request.execID)
        }
    }

    public func pids(_ request: Containerd_Task_V2_PidsRequest, context: TTRPCServerContext) async throws -> Containerd_Task_V2_PidsResponse {
        try await handle("Pids", request.id) {
            let pids = try await pod.processes(id: request.id)
            return .with { $0.processes = pids.map { pid in .with { $0.pid = pid } } }
        }
    }

    public func connect(_ request: Containerd_Task_V2_ConnectRequest, context: TTRPCServerContext) async throws -> Containerd_Task_V2_ConnectResponse {
        try await handle("Connect", request.id) {
            let pid = (try? await pod.pid(of: request.id)) ?? 0
            return .with { $0.shimPid = UInt32(getpid()); $0.taskPid = pid; $0.version = "skiff" }
        }
    }

    public func shutdown(_ request: Containerd_Task_V2_ShutdownRequest, context: TTRPCServerContext) async throws -> Google_Protobuf_Empty {
        if await pod.isEmpty || request.now {
            logger.info("shutdown: no task left")
            onShutdown()
        }
        return .init()
    }

    public func closeIO(_ request: Containerd_Task_V2_CloseIORequest, context: TTRPCServerContext) async throws -> Google_Protobuf_Empty {
        try await handle("CloseIO", request.id, execID: request.execID) {
            try await pod.closeIO(id: request.id, execID: request.execID)
            return .init()
        }
    }

    public func pause(_ request: Containerd_Task_V2_PauseRequest, context: TTRPCServerContext) async throws -> Google_Protobuf_Empty {
        try await handle("Pause", request.id) {
            try await pod.setPaused(id: request.id, true)
            return .init()
        }
    }

    public func resume(_ request: Containerd_Task_V2_ResumeRequest, context: TTRPCServerContext) async throws -> Google_Protobuf_Empty {
        try await handle("Resume", request.id) {
            try await pod.setPaused(id: request.id, false)
            return .init()
        }
    }

    public func checkpoint(_ request: Containerd_Task_V2_CheckpointTaskRequest, context: TTRPCServerContext) async throws -> Google_Protobuf_Empty {
        try await handle("Checkpoint", request.id) {
            throw SkiffError.unimplemented("checkpointing a VM-isolated task is not supported")
        }
    }

    public func exec(_ request: Containerd_Task_V2_ExecProcessRequest, context: TTRPCServerContext) async throws -> Google_Protobuf_Empty {
        try await handle("Exec", request.id, execID: request.execID) {
            try await pod.exec(id: request.id, execID: request.execID, terminal: request.terminal, stdin: request.stdin,
                               stdout: request.stdout, stderr: request.stderr, spec: request.spec)
            return .init()
        }
    }

    public func resizePty(_ request: Containerd_Task_V2_ResizePtyRequest, context: TTRPCServerContext) async throws -> Google_Protobuf_Empty {
        try await handle("ResizePty", request.id, execID: request.execID) {
            try await pod.resizePty(id: request.id, execID: request.execID, width: request.width, height: request.height)
            return .init()
        }
    }

    public func update(_ request: Containerd_Task_V2_UpdateTaskRequest, context: TTRPCServerContext) async throws -> Google_Protobuf_Empty {
        try await handle("Update", request.id) {
            try await pod.update(id: request.id, resources: request.resources)
            return .init()
        }
    }

    public func stats(_ request: Containerd_Task_V2_StatsRequest, context: TTRPCServerContext) async throws -> Containerd_Task_V2_StatsResponse {
        try await handle("Stats", request.id) {
            let metrics = try await pod.metrics(id: request.id)
            var any = Google_Protobuf_Any()
            any.typeURL = Io_Containerd_Cgroups_V2_Metrics.protoMessageName
            any.value = try metrics.serializedData()
            return .with { $0.stats = any }
        }
    }
}
