import AgentAPI
import Glibc
import NIOCore
import NIOPosix
import StdioMux
import Synchronization
import SwiftProtobuf
import TTRPC

/// The agent's ttrpc service: processes, mounts, guest facts and diagnostics. Holds no VM
/// specifics, so the tests run it on a host as well as in the guest.
public final class AgentService: Skiff_Agent_V1_AgentService, Sendable {
    public static let version = "skiff-agent 0.1"

    let reaper: ExitReaper
    let group: any EventLoopGroup
    let processes = Mutex<[String: GuestProcess]>([:])
    let mux = Mutex<StdioMux?>(nil)
    /// The containers crun runs, by container id.
    let containers = Mutex<[String: GuestContainer]>([:])
    let crun: CrunRunner
    let network: NetworkConfig
    let disks: SCSIDisks
    let pci: PCIDevices
    /// Loads a group of modules (`ModuleLoader`'s on-demand groups), off the concurrency pool.
    private let loadModules: @Sendable ([String]) async -> Void
    /// Each on-demand group's loading, by group, started the first time it is needed.
    private let onDemand = Locked<[[String]: Task<Void, Never>]>([:])
    private let startedAt = ContinuousClock.now
    private let cpus: CPUOnline
    /// Modules loaded so far, reported by GuestInfo.
    public let modules: Mutex<[String]> = Mutex([])

    /// Whether the modules loaded in the background after the agent started serving are in:
    /// those 9p needs (`shares`), and all of them (`all`: the balloon too; an assigned PCI
    /// device waits for them). The on-demand groups (disks, NICs) are `onDemand`'s.
    private let sharesReady: Milestone
    private let allModulesReady: Milestone

    /// `modulesPending`: the caller loads modules in the background and calls
    /// `markShareModulesLoaded()` and `markModulesLoaded()` as they come in; until then, the
    /// mounts that need them wait.
    public init(reaper: ExitReaper, group: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton, modulesPending: Bool = false,
                cpus: CPUOnline = CPUOnline(), crun: CrunRunner = CrunRunner(), network: NetworkConfig = NetworkConfig(), disks: SCSIDisks = SCSIDisks(),
                pci: PCIDevices = PCIDevices(), loadModules: @escaping @Sendable ([String]) async -> Void = { _ in }) {
        self.reaper = reaper
        self.loadModules = loadModules
        self.disks = disks
        self.pci = pci
        self.crun = crun
        self.network = network
        self.cpus = cpus
        self.group = group
        sharesReady = Milestone(reached: !modulesPending)
        allModulesReady = Milestone(reached: !modulesPending)
    }

    /// Returns once every background module is in.
    func allModulesReadyWait() async { await allModulesReady.wait() }

    /// Returns once `group`'s modules are in, loading them the first time it is asked for.
    func modulesReady(_ group: [String]) async {
        let load = loadModules
        let task = onDemand.withLock { tasks -> Task<Void, Never> in
            if let task = tasks[group] { return task }
            let started = Task { await load(group) }
            tasks[group] = started
            return started
        }
        await task.value
    }

    /// `group` is in already (loaded early, as `skiff.disks=early` asks).
    public func markModulesLoaded(_ group: [String]) {
        onDemand.withLock { tasks in if tasks[group] == nil { tasks[group] = Task {} } }
    }

    /// The 9p modules are in: share mounts may go ahead.
    public func markShareModulesLoaded() { sharesReady.reach() }

    /// Every background module is in.
    public func markModulesLoaded() {
        sharesReady.reach()
        allModulesReady.reach()
    }

    /// Sets the stdio channel that process streams travel on (replacing a closed one).
    public func attachStdio(_ mux: StdioMux) {
        self.mux.withLock { $0 = mux }
    }

    public func ping(_ request: Skiff_Agent_V1_PingRequest, context: TTRPCServerContext) async throws -> Skiff_Agent_V1_PingResponse {
        .with { $0.version = Self.version }
    }

    public func guestInfo(_ request: Skiff_Agent_V1_GuestInfoRequest, context: TTRPCServerContext) async throws -> Skiff_Agent_V1_GuestInfoResponse {
        var info = GuestFacts.read()
        info.agentUptimeNs = UInt64((ContinuousClock.now - startedAt).nanoseconds)
        info.modules = modules.withLock { $0 }
        info.agentVersion = Self.version
        return info
    }

    public func createProcess(_ request: Skiff_Agent_V1_CreateProcessRequest, context: TTRPCServerContext) async throws -> Skiff_Agent_V1_CreateProcessResponse {
        guard !request.id.isEmpty else { throw AgentError.invalidArgument("process id is required") }
        let streams = [request.stdinStream, request.stdoutStream, request.stderrStream].filter { $0 != 0 }
        guard Set(streams).count == streams.count else { throw AgentError.invalidArgument("stdio stream ids must differ") }
        let mux = self.mux.withLock { $0 }
        guard streams.isEmpty || mux != nil else { throw AgentError.failedPrecondition("the stdio channel is not connected") }
        // Reserve the id before starting anything.
        try processes.withLock { (table) throws(AgentError) in
            guard table[request.id] == nil else { throw .alreadyExists("process \(request.id) already exists") }
        }
        let spec = ProcessSpec(
            args: request.args, env: request.env, cwd: request.cwd, terminal: request.terminal,
            stdin: request.stdinStream != 0, stdout: request.stdoutStream != 0, stderr: request.stderrStream != 0 && !request.terminal,
            width: UInt16(clamping: request.width), height: UInt16(clamping: request.height))
        let spawned = try ProcessSpawner.spawn(spec, reaper: reaper)
        let process = GuestProcess(
            id: request.id, spawned: spawned, reaper: reaper,
            stdin: request.stdinStream != 0 ? mux?.receiver(stream: request.stdinStream) : nil,
            stdout: request.stdoutStream != 0 ? mux?.sender(stream: request.stdoutStream) : nil,
            stderr: request.stderrStream != 0 && !request.terminal ? mux?.sender(stream: request.stderrStream) : nil,
            group: group)
        let duplicate = processes.withLock { table -> Bool in
            if table[request.id] != nil { return true }
            table[request.id] = process
            return false
        }
        if duplicate {
            try? process.signal(SIGKILL, all: true)
            throw AgentError.alreadyExists("process \(request.id) already exists")
        }
        return .with { $0.pid = UInt32(spawned.pid) }
    }

    public func signalProcess(_ request: Skiff_Agent_V1_SignalProcessRequest, context: TTRPCServerContext) async throws -> Skiff_Agent_V1_Empty {
        let process = try lookup(request.id)
        guard request.signal > 0, request.signal < 65 else { throw AgentError.invalidArgument("signal \(request.signal) is out of range") }
        if process.exited != nil { throw AgentError.notFound("process \(request.id) has already exited") }
        try process.signal(Int32(request.signal), all: request.all)
        return .init()
    }

    public func waitProcess(_ request: Skiff_Agent_V1_WaitProcessRequest, context: TTRPCServerContext) async throws -> Skiff_Agent_V1_WaitProcessResponse {
        let process = try lookup(request.id)
        let exit = await process.wait()
        let oomKilled = process.containerID.map { newOOMKills(container: $0) } ?? false
        return .with {
            $0.exitStatus = UInt32(exit.status.exitCode)
            $0.signal = UInt32(exit.status.signal)
            $0.exitedAtNs = exit.exitedAtNs
            $0.oomKilled = oomKilled
        }
    }

    public func resizeProcess(_ request: Skiff_Agent_V1_ResizeProcessRequest, context: TTRPCServerContext) async throws -> Skiff_Agent_V1_Empty {
        try lookup(request.id).resize(width: UInt16(clamping: request.width), height: UInt16(clamping: request.height))
        return .init()
    }

    public func closeStdin(_ request: Skiff_Agent_V1_CloseStdinRequest, context: TTRPCServerContext) async throws -> Skiff_Agent_V1_Empty {
        try lookup(request.id).closeStdin()
        return .init()
    }

    public func deleteProcess(_ request: Skiff_Agent_V1_DeleteProcessRequest, context: TTRPCServerContext) async throws -> Skiff_Agent_V1_Empty {
        let process = try lookup(request.id)
        guard process.exited != nil else { throw AgentError.failedPrecondition("process \(request.id) is still running") }
        processes.withLock { _ = $0.removeValue(forKey: request.id) }
        process.release()
        reaper.forget(process.pid)
        return .init()
    }

    public func mount(_ request: Skiff_Agent_V1_MountRequest, context: TTRPCServerContext) async throws -> Skiff_Agent_V1_Empty {
        // A 9p share needs 9pnet_virtio, which may still be loading; a disk's filesystem is
        // loaded on first use; a bind mount, overlay (the guest's root is one) and the
        // kernel's own filesystems need nothing.
        switch request.fstype {
        case "9p": await sharesReady.wait()
        case "ext4", "erofs": await modulesReady(ModuleLoader.diskFilesystemModules)
        default: break
        }
        try Mounts.mount(source: request.source, target: request.target, fstype: request.fstype, options: request.options)
        return .init()
    }

    public func unmount(_ request: Skiff_Agent_V1_UnmountRequest, context: TTRPCServerContext) async throws -> Skiff_Agent_V1_Empty {
        try Mounts.unmount(target: request.target, detach: request.detach, remove: request.remove)
        return .init()
    }

    public func onlineCPUs(_ request: Skiff_Agent_V1_OnlineCPUsRequest, context: TTRPCServerContext) async throws -> Skiff_Agent_V1_OnlineCPUsResponse {
        guard request.timeoutMs <= 60_000 else { throw AgentError.invalidArgument("timeout_ms \(request.timeoutMs) is above 60000") }
        let online = try await cpus.onlineAll(wanted: Int(request.wanted), timeout: .milliseconds(Int(request.timeoutMs)))
        return .with { $0.online = UInt32(online) }
    }

    public func syncWithHost(_ request: Skiff_Agent_V1_SyncWithHostRequest, context: TTRPCServerContext) async throws -> Skiff_Agent_V1_Empty {
        try HostSync.apply(realtimeUnixNanos: request.realtimeUnixNanos, entropy: Array(request.entropy))
        return .init()
    }

    public func dumpStacks(_ request: Skiff_Agent_V1_DumpStacksRequest, context: TTRPCServerContext) async throws -> Skiff_Agent_V1_DumpStacksResponse {
        let table = processes.withLock { $0 }
        var text = "\(Self.version), pid \(getpid()), up \(ContinuousClock.now - startedAt)\n"
        text += "processes (\(table.count)):\n"
        for (id, process) in table.sorted(by: { $0.key < $1.key }) {
            let state = process.exited.map { "exited \($0.status.exitCode)" } ?? "running"
            text += "  \(id) pid \(process.pid) \(process.terminal ? "tty " : "")\(state)\n"
        }
        text += ThreadDump.current()
        return .with { $0.stacks = text }
    }

    func lookup(_ id: String) throws(AgentError) -> GuestProcess {
        guard let process = processes.withLock({ $0[id] }) else { throw .notFound("process \(id) not found") }
        return process
    }
}

extension Duration {
    var nanoseconds: Int64 {
        let (seconds, attoseconds) = components
        return seconds * 1_000_000_000 + attoseconds / 1_000_000_000
    }
}

/// A point that is reached once; `wait` returns as soon as it has been.
public final class Milestone: Sendable {
    private let state: Locked<(reached: Bool, waiters: [CheckedContinuation<Void, Never>])>

    public init(reached: Bool = false) {
        state = Locked((reached, []))
    }

    public func reach() {
        let waiters = state.withLock { state -> [CheckedContinuation<Void, Never>] in
            state.reached = true
            defer { state.waiters.removeAll() }
            return state.waiters
        }
        waiters.forEach { $0.resume() }
    }

    public func wait() async {
        await withCheckedContinuation { continuation in
            let reached = state.withLock { state -> Bool in
                if state.reached { return true }
                state.waiters.append(continuation)
                return false
            }
            if reached { continuation.resume() }
        }
    }
}
