import AgentAPI
import Glibc
import StdioMux
import SwiftProtobuf
import Synchronization
import TTRPC

/// A container the agent runs through crun: its init's entry in the process table, its
/// cgroup, and how many OOM kills of it have been reported.
struct GuestContainer: Sendable {
    let id: String
    let initProcessID: String
    let initPid: pid_t
    let cgroup: ContainerCgroup
    var oomKillsReported: UInt64
}

/// The container calls of the agent API (see proto/skiff/agent/v1/agent.proto).
extension AgentService {
    public func createContainer(_ request: Skiff_Agent_V1_CreateContainerRequest, context: TTRPCServerContext) async throws -> Skiff_Agent_V1_CreateContainerResponse {
        try Self.validate(containerID: request.containerID)
        guard request.bundle.hasPrefix("/"), !request.config.isEmpty else {
            throw AgentError.invalidArgument("bundle must be an absolute guest path, and config named")
        }
        try containers.withLock { (table) throws(AgentError) in
            guard table[request.containerID] == nil else { throw .alreadyExists("container \(request.containerID) already exists") }
        }
        let receiver = try stdioEnds(request.stdio, processID: request.processID)
        let launched: SpawnedProcess
        do {
            launched = try await crun.launch("crun create \(request.containerID)", stdio: request.stdio, reaper: reaper) { pidFile, console in
                ["create", "--no-pivot", "--bundle", request.bundle, "--config", request.config, "--pid-file", pidFile]
                    + (console.map { ["--console-socket", $0] } ?? []) + [request.containerID]
            }
        } catch {
            receiver?.reset()
            throw error
        }
        let cgroup = ContainerCgroup.of(pid: launched.pid) ?? ContainerCgroup(directory: "/sys/fs/cgroup/\(request.containerID)")
        let container = GuestContainer(id: request.containerID, initProcessID: request.processID, initPid: launched.pid,
                                       cgroup: cgroup, oomKillsReported: cgroup.oomKills())
        try register(launched, processID: request.processID, stdio: request.stdio, stdin: receiver, containerID: request.containerID)
        containers.withLock { $0[request.containerID] = container }
        return .with { $0.pid = UInt32(launched.pid) }
    }

    public func startContainer(_ request: Skiff_Agent_V1_ContainerRequest, context: TTRPCServerContext) async throws -> Skiff_Agent_V1_Empty {
        let container = try container(request.containerID)
        try await crun.run("crun start \(container.id)", ["start", container.id], reaper: reaper)
        return .init()
    }

    public func execProcess(_ request: Skiff_Agent_V1_ExecProcessRequest, context: TTRPCServerContext) async throws -> Skiff_Agent_V1_ExecProcessResponse {
        let container = try container(request.containerID)
        guard request.processSpec.hasPrefix("/") else { throw AgentError.invalidArgument("process_spec must be an absolute guest path") }
        let receiver = try stdioEnds(request.stdio, processID: request.processID)
        let launched: SpawnedProcess
        do {
            launched = try await crun.launch("crun exec in \(container.id)", stdio: request.stdio, reaper: reaper) { pidFile, console in
                ["exec", "--detach", "--process", request.processSpec, "--pid-file", pidFile]
                    + (console.map { ["--console-socket", $0] } ?? []) + [container.id]
            }
        } catch {
            receiver?.reset()
            throw error
        }
        try register(launched, processID: request.processID, stdio: request.stdio, stdin: receiver, containerID: container.id)
        return .with { $0.pid = UInt32(launched.pid) }
    }

    public func signalContainer(_ request: Skiff_Agent_V1_SignalContainerRequest, context: TTRPCServerContext) async throws -> Skiff_Agent_V1_Empty {
        guard request.signal > 0, request.signal < 65 else { throw AgentError.invalidArgument("signal \(request.signal) is out of range") }
        try container(request.containerID).cgroup.signalAll(Int32(request.signal))
        return .init()
    }

    public func pauseContainer(_ request: Skiff_Agent_V1_ContainerRequest, context: TTRPCServerContext) async throws -> Skiff_Agent_V1_Empty {
        try await container(request.containerID).cgroup.setFrozen(true)
        return .init()
    }

    public func resumeContainer(_ request: Skiff_Agent_V1_ContainerRequest, context: TTRPCServerContext) async throws -> Skiff_Agent_V1_Empty {
        try await container(request.containerID).cgroup.setFrozen(false)
        return .init()
    }

    public func containerStats(_ request: Skiff_Agent_V1_ContainerRequest, context: TTRPCServerContext) async throws -> Skiff_Agent_V1_ContainerStatsResponse {
        try container(request.containerID).cgroup.stats()
    }

    public func updateContainer(_ request: Skiff_Agent_V1_UpdateContainerRequest, context: TTRPCServerContext) async throws -> Skiff_Agent_V1_Empty {
        try container(request.containerID).cgroup.update(request)
        return .init()
    }

    public func containerPids(_ request: Skiff_Agent_V1_ContainerRequest, context: TTRPCServerContext) async throws -> Skiff_Agent_V1_ContainerPidsResponse {
        let container = try container(request.containerID)
        let listed = container.cgroup.pids()
        let pids = (listed.contains(container.initPid) ? [container.initPid] : []) + listed.filter { $0 != container.initPid }
        return .with { $0.pids = pids.map { UInt32($0) } }
    }

    public func deleteContainer(_ request: Skiff_Agent_V1_ContainerRequest, context: TTRPCServerContext) async throws -> Skiff_Agent_V1_Empty {
        guard let container = containers.withLock({ $0[request.containerID] }) else { return .init() }
        try await crun.run("crun delete \(container.id)", ["delete", "--force", container.id], reaper: reaper)
        containers.withLock { _ = $0.removeValue(forKey: container.id) }
        return .init()
    }

    /// Whether the OOM killer ended a process of the container since the last exit reported
    /// for it; the count reported moves on.
    func newOOMKills(container id: String) -> Bool {
        guard let cgroup = containers.withLock({ $0[id]?.cgroup }) else { return false }
        let kills = cgroup.oomKills()
        return containers.withLock { table in
            guard var container = table[id], kills > container.oomKillsReported else { return false }
            container.oomKillsReported = kills
            table[id] = container
            return true
        }
    }

    func container(_ id: String) throws(AgentError) -> GuestContainer {
        guard let container = containers.withLock({ $0[id] }) else { throw .notFound("container \(id) not found") }
        return container
    }

    /// crun takes a container id as an argument: letters and digits, with '-', '_' or '.'
    /// between them (containerd's identifier rule), so none reads as an option.
    static func validate(containerID id: String) throws(AgentError) {
        let allowed = id.utf8.allSatisfy { c in
            (c >= 0x30 && c <= 0x39) || (c >= 0x41 && c <= 0x5a) || (c >= 0x61 && c <= 0x7a) || c == 0x2d || c == 0x5f || c == 0x2e
        }
        guard !id.isEmpty, id.utf8.count <= 128, allowed, let first = id.utf8.first, first != 0x2d, first != 0x2e, first != 0x5f else {
            throw .invalidArgument("invalid container id \(id)")
        }
    }

    /// Checks a process's stdio against the channel and the table, and opens its stdin
    /// stream (granting the host its window) before anything starts.
    func stdioEnds(_ stdio: Skiff_Agent_V1_ProcessStdio, processID: String) throws(AgentError) -> MuxReceiver? {
        guard !processID.isEmpty else { throw .invalidArgument("process id is required") }
        let streams = [stdio.stdinStream, stdio.stdoutStream, stdio.stderrStream].filter { $0 != 0 }
        guard Set(streams).count == streams.count else { throw .invalidArgument("stdio stream ids must differ") }
        let mux = self.mux.withLock { $0 }
        guard streams.isEmpty || mux != nil else { throw .failedPrecondition("the stdio channel is not connected") }
        try processes.withLock { (table) throws(AgentError) in
            guard table[processID] == nil else { throw .alreadyExists("process \(processID) already exists") }
        }
        return stdio.stdinStream != 0 ? mux?.receiver(stream: stdio.stdinStream) : nil
    }

    /// Enters a launched process in the table, its stdio pumping on the host's streams.
    func register(_ launched: SpawnedProcess, processID: String, stdio: Skiff_Agent_V1_ProcessStdio,
                  stdin: MuxReceiver?, containerID: String?) throws(AgentError) {
        let mux = self.mux.withLock { $0 }
        let process = GuestProcess(
            id: processID, spawned: launched, reaper: reaper, stdin: stdin,
            stdout: stdio.stdoutStream != 0 ? mux?.sender(stream: stdio.stdoutStream) : nil,
            stderr: stdio.stderrStream != 0 && !stdio.terminal ? mux?.sender(stream: stdio.stderrStream) : nil,
            group: group, containerID: containerID)
        let duplicate = processes.withLock { table -> Bool in
            if table[processID] != nil { return true }
            table[processID] = process
            return false
        }
        if duplicate {
            try? process.signal(SIGKILL, all: false)
            throw .alreadyExists("process \(processID) already exists")
        }
    }
}
