import FoundationEssentials
import Glibc
import Logging
import PodController
import SkiffSupport
import SkiffAPI
import TTRPC

/// The shim's diagnostics service, which `shimdiag` calls on the shim's own socket beside the
/// task service: a command in the VM, the shim's and the agent's threads, the pod's tasks, a
/// share into the VM, and the shim's pid.
public final class DiagService: Skiff_Diag_V1_ShimDiagService, Sendable {
    private let pod: PodController
    private let logger: Logger

    public init(pod: PodController, logger: Logger) {
        self.pod = pod
        self.logger = logger
    }

    private func handle<T>(_ name: String, _ body: () async throws -> T) async throws -> T {
        try await serviceCall("diag \(name)", logger: logger, body)
    }

    public func execInHost(_ request: Skiff_Diag_V1_ExecProcessRequest, context: TTRPCServerContext) async throws -> Skiff_Diag_V1_ExecProcessResponse {
        try await handle("ExecInHost") {
            let code = try await pod.execInVM(args: request.args, workdir: request.workdir, stdin: request.stdin, stdout: request.stdout,
                                              stderr: request.stderr, terminal: request.terminal, width: request.width, height: request.height)
            return .with { $0.exitCode = code }
        }
    }

    public func stacks(_ request: Skiff_Diag_V1_StacksRequest, context: TTRPCServerContext) async throws -> Skiff_Diag_V1_StacksResponse {
        try await handle("Stacks") {
            let guest = (try? await pod.guestStacks()) ?? "(the VM is not running)"
            return .with {
                $0.stacks = Self.ownThreads()
                $0.guestStacks = guest
            }
        }
    }

    public func tasks(_ request: Skiff_Diag_V1_TasksRequest, context: TTRPCServerContext) async throws -> Skiff_Diag_V1_TasksResponse {
        try await handle("Tasks") {
            let list = await pod.taskList()
            return .with {
                $0.tasks = list.map { task in
                    .with {
                        $0.id = task.id
                        if request.execs { $0.execs = task.execs.map { exec in .with { $0.id = exec.id; $0.state = exec.state } } }
                    }
                }
            }
        }
    }

    public func share(_ request: Skiff_Diag_V1_ShareRequest, context: TTRPCServerContext) async throws -> Skiff_Diag_V1_ShareResponse {
        try await handle("Share") {
            try await pod.shareIntoVM(hostPath: request.hostPath, guestPath: request.uvmPath, readOnly: request.readOnly)
            return .init()
        }
    }

    public func devices(_ request: Skiff_Diag_V1_DevicesRequest, context: TTRPCServerContext) async throws -> Skiff_Diag_V1_DevicesResponse {
        let assigned = await pod.pciDevices()
        return .with {
            $0.devices = assigned.map { device in
                .with {
                    $0.identity = device.identity
                    $0.driver = device.driver
                    $0.state = device.state.rawValue
                    $0.references = UInt32(clamping: device.references)
                    $0.guestAddress = device.guest?.address ?? ""
                    $0.guestDriver = device.guest?.driver ?? ""
                }
            }
        }
    }

    public func pid(_ request: Skiff_Diag_V1_PidRequest, context: TTRPCServerContext) async throws -> Skiff_Diag_V1_PidResponse {
        .with { $0.pid = getpid() }
    }

    /// Every thread of this process: id, name, state and where the kernel has it waiting.
    static func ownThreads() -> String {
        let tasks = (try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/task")) ?? []
        func read(_ path: String) -> String {
            (FileManager.default.contents(atPath: path).map { String(decoding: $0, as: UTF8.self) } ?? "")
                .trimmed()
        }
        return tasks.compactMap(Int.init).sorted().map { tid in
            let stat = read("/proc/self/task/\(tid)/stat")
            // The state follows the name, which is in parentheses and may hold spaces.
            let state = stat.lastIndex(of: ")").map { stat[stat.index(after: $0)...].trimmed().prefix(1) } ?? "?"
            return "thread \(tid) \(read("/proc/self/task/\(tid)/comm")) state \(state) wchan \(read("/proc/self/task/\(tid)/wchan"))"
        }.joined(separator: "\n") + "\n"
    }
}
