import ContainerdAPI
import FoundationEssentials
import Glibc
import SkiffSupport

/// One process of a task as containerd sees it, a container's init or an exec: one state
/// machine for both.
///
/// ## States
/// | state | trigger | next |
/// |---|---|---|
/// | Created | Start ok | Running (the start event is published, then the exit is watched) |
/// | Created | Start fails | Created (the process never ran; Delete removes it) |
/// | Created | the process ends (killed before Start) | Stopped |
/// | Running | Pause ok (the init: its container's cgroup froze) | Paused |
/// | Paused | Resume ok | Running |
/// | Running, Paused | the process ends | Stopped |
/// | Stopped | Delete | Deleted |
///
/// ## Rules
/// - The exit is recorded once, when the agent reports it *after* the process's output has
///   reached containerd; TaskOOM (when the OOM killer struck) goes out before TaskExit, and
///   TaskExit after the start event. Every Wait, early or late, is released by that exit.
/// - An init's pid is known at Create (crun create made it); an exec's at Start.
/// - CloseIO before Start is remembered and applied once there is a stdin.
/// - Delete of a live process is refused (FailedPrecondition); a second Delete is NotFound.
public actor ProcessController {
    public enum Status: String, Sendable, Equatable, CustomStringConvertible {
        case created, running, paused, stopped, deleted
        public var description: String { rawValue }
    }

    /// Which kind of process, for the events it publishes.
    public enum Kind: Sendable, Equatable {
        case initProcess
        case exec(id: String)
    }

    public nonisolated let containerID: String
    public nonisolated let kind: Kind
    /// The process's entry in the agent's process table.
    public nonisolated let agentID: String
    public nonisolated let terminal: Bool
    /// containerd's stdio paths (empty where the process has no such stream).
    public nonisolated let stdin: String
    public nonisolated let stdout: String
    public nonisolated let stderr: String
    private let events: any TaskEvents

    public private(set) var status: Status = .created
    /// As the guest numbers it.
    public private(set) var pid: UInt32 = 0
    public private(set) var exitStatus: UInt32 = 0
    public private(set) var exitedAt: Date?
    private var io: FifoIO?
    private var stdinClosed = false
    private var watching = false
    private var exitWaiters: [CheckedContinuation<Void, Never>] = []
    /// Runs once the exit is recorded (the container ends its unstarted execs).
    private var onExit: (@Sendable () async -> Void)?

    public init(containerID: String, kind: Kind, agentID: String, terminal: Bool, stdin: String, stdout: String, stderr: String,
                events: any TaskEvents) {
        self.containerID = containerID
        self.kind = kind
        self.agentID = agentID
        self.terminal = terminal
        self.stdin = stdin
        self.stdout = stdout
        self.stderr = stderr
        self.events = events
    }

    /// What to run once the exit is recorded.
    func setOnExit(_ body: @escaping @Sendable () async -> Void) {
        onExit = body
    }

    /// The id containerd names it by: the container's for the init, else the exec's.
    public nonisolated var id: String {
        if case let .exec(execID) = kind { return execID }
        return containerID
    }

    /// Started or paused: there is a process in the guest to signal, resize or measure.
    public var isLive: Bool { status == .running || status == .paused }

    /// The process exists in the guest with `pid` and its stdio pumped by `io` (an init at
    /// Create; an exec as its Start launches it).
    func launched(pid: UInt32, io: FifoIO) {
        self.pid = pid
        self.io = io
        if stdinClosed { io.closeStdin() }
    }

    /// Start: `launch` makes the process run (and, for an exec, returns its pid and stdio).
    /// Then the start event goes out, and only then is the exit watched.
    func start(guest: any ContainerGuest,
               launch: @Sendable () async throws(SkiffError) -> (pid: UInt32, io: FifoIO)?) async throws(SkiffError) -> UInt32 {
        guard status == .created else { throw .failedPrecondition("\(describe) is \(status), not created") }
        // An init's stdin waited for Start (see FifoIO.start).
        try io?.startStdin()
        if let launched = try await launch() { self.launched(pid: launched.pid, io: launched.io) }
        // An exit may already have been recorded (the container ended meanwhile): it stays.
        if status == .created { status = .running }
        switch kind {
        case .initProcess:
            await events.publish(topic: "/tasks/start", Containerd_Events_TaskStart.with { $0.containerID = containerID; $0.pid = pid })
        case let .exec(execID):
            await events.publish(topic: "/tasks/exec-started", Containerd_Events_TaskExecStarted.with {
                $0.containerID = containerID; $0.execID = execID; $0.pid = pid
            })
        }
        watchExit(guest: guest)
        return pid
    }

    /// Watches for the exit in the guest (once): when the agent reports it, the output has
    /// drained; the record then ends and the agent forgets the process.
    func watchExit(guest: any ContainerGuest) {
        guard !watching, status != .stopped, status != .deleted else { return }
        watching = true
        let agentID = agentID
        let io = io
        Task {
            let exit = try? await guest.waitProcess(agentID)
            io?.stopStdin()
            await io?.finished.value
            try? await guest.deleteProcess(agentID)
            await self.exited(status: exit?.status ?? 255, oomKilled: exit?.oomKilled ?? false,
                              at: exit.map { Date(timeIntervalSince1970: Double($0.exitedAtNs) / 1e9) } ?? Date())
        }
    }

    /// Records the exit (the first one counts), publishes TaskOOM when the OOM killer struck
    /// and then TaskExit, and releases every Wait.
    func exited(status exitStatus: UInt32, oomKilled: Bool = false, at: Date) async {
        guard status != .stopped, status != .deleted else { return }
        status = .stopped
        self.exitStatus = exitStatus
        exitedAt = at
        if oomKilled {
            await events.publish(topic: "/tasks/oom", Containerd_Events_TaskOOM.with { $0.containerID = containerID })
        }
        await events.publish(topic: "/tasks/exit", Containerd_Events_TaskExit.with {
            $0.containerID = containerID
            $0.id = id
            $0.pid = pid
            $0.exitStatus = exitStatus
            $0.exitedAt = .init(date: at)
        })
        let waiters = exitWaiters
        exitWaiters = []
        waiters.forEach { $0.resume() }
        await onExit?()
    }

    /// How it ended, once it has. NotFound if it is deleted meanwhile.
    func wait() async throws(SkiffError) -> (status: UInt32, at: Date) {
        if status != .stopped && status != .deleted {
            await withCheckedContinuation { exitWaiters.append($0) }
        }
        guard status == .stopped, let exitedAt else { throw .notFound("\(describe) was deleted while waiting") }
        return (exitStatus, exitedAt)
    }

    func setPaused(_ paused: Bool) {
        guard isLive else { return }
        status = paused ? .paused : .running
    }

    /// CloseIO: its stdin ends after what containerd wrote, now or once it has one.
    func closeStdin() {
        stdinClosed = true
        io?.closeStdin()
    }

    /// The process never started: its stdio pumps end.
    func abandonIO() {
        io?.abandon()
    }

    /// Delete: the record ends. Refused while the process lives.
    func delete() throws(SkiffError) -> (pid: UInt32, status: UInt32, at: Date) {
        guard status != .deleted else { throw .notFound("\(describe) is already deleted") }
        guard !isLive else { throw .failedPrecondition("\(describe) is \(status); kill it first") }
        status = .deleted
        let waiters = exitWaiters
        exitWaiters = []
        waiters.forEach { $0.resume() }
        return (pid, exitStatus, exitedAt ?? Date())
    }

    var describe: String {
        switch kind {
        case .initProcess: return "task \(containerID)"
        case let .exec(execID): return "exec \(execID) of task \(containerID)"
        }
    }

    var containerdStatus: Containerd_V1_Types_Status {
        switch status {
        case .created: return .created
        case .running: return .running
        case .paused: return .paused
        case .stopped, .deleted: return .stopped
        }
    }

    /// containerd's State answer for it. As containerd's runc shim answers, an exec's State
    /// carries its exec id as the id too.
    func stateResponse(bundle: String) -> Containerd_Task_V2_StateResponse {
        .with {
            $0.id = id
            if case let .exec(execID) = kind { $0.execID = execID }
            $0.bundle = bundle
            $0.pid = pid
            $0.status = containerdStatus
            $0.stdin = stdin
            $0.stdout = stdout
            $0.stderr = stderr
            $0.terminal = terminal
            $0.exitStatus = exitStatus
            if let at = exitedAt { $0.exitedAt = .init(date: at) }
        }
    }
}
