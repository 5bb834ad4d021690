import AgentAPI
import SkiffSupport
import StdioMux
import VMController

/// The pod's guest: the agent's typed API and its stdio channel, as the VM controller hands
/// them out while the VM runs.
struct AgentGuest: PodGuest {
    let channels: AgentChannels
    private var agent: Skiff_Agent_V1_AgentClient { channels.agent }

    func openStdio(stdin: String, stdout: String, stderr: String, terminal: Bool, deferStdin: Bool) throws(SkiffError) -> FifoIO {
        try FifoIO.start(stdin: stdin, stdout: stdout, stderr: stderr, terminal: terminal, deferStdin: deferStdin,
                         mux: channels.stdio, nextStream: channels.nextStreamID)
    }

    func openDiagStdio(stdin: String, stdout: String, stderr: String, terminal: Bool) throws(SkiffError) -> FifoIO {
        try FifoIO.start(stdin: stdin, stdout: stdout, stderr: stderr, terminal: terminal, stdinEndsAtEOF: true,
                         mux: channels.stdio, nextStream: channels.nextStreamID)
    }

    private static func stdio(_ io: FifoIO, terminal: Bool) -> Skiff_Agent_V1_ProcessStdio {
        .with {
            $0.terminal = terminal
            if let s = io.stdin { $0.stdinStream = s }
            if let s = io.stdout { $0.stdoutStream = s }
            if let s = io.stderr { $0.stderrStream = s }
        }
    }

    func createContainer(id: String, processID: String, bundle: String, config: String, io: FifoIO, terminal: Bool) async throws -> UInt32 {
        try await agent.createContainer(.with {
            $0.containerID = id
            $0.processID = processID
            $0.bundle = bundle
            $0.config = config
            $0.stdio = Self.stdio(io, terminal: terminal)
        }).pid
    }

    func startContainer(id: String) async throws {
        _ = try await agent.startContainer(.with { $0.containerID = id })
    }

    func execProcess(containerID: String, processID: String, processSpec: String, io: FifoIO, terminal: Bool) async throws -> UInt32 {
        try await agent.execProcess(.with {
            $0.containerID = containerID
            $0.processID = processID
            $0.processSpec = processSpec
            $0.stdio = Self.stdio(io, terminal: terminal)
        }).pid
    }

    func waitProcess(_ processID: String) async throws -> GuestExit {
        let exit = try await agent.waitProcess(.with { $0.id = processID })
        return GuestExit(status: exit.exitStatus, exitedAtNs: exit.exitedAtNs, oomKilled: exit.oomKilled)
    }

    func deleteProcess(_ processID: String) async throws {
        _ = try await agent.deleteProcess(.with { $0.id = processID })
    }

    func signalProcess(_ processID: String, signal: UInt32) async throws {
        _ = try await agent.signalProcess(.with { $0.id = processID; $0.signal = signal })
    }

    func signalContainer(_ id: String, signal: UInt32) async throws {
        _ = try await agent.signalContainer(.with { $0.containerID = id; $0.signal = signal })
    }

    func resizeProcess(_ processID: String, width: UInt32, height: UInt32) async throws {
        _ = try await agent.resizeProcess(.with { $0.id = processID; $0.width = width; $0.height = height })
    }

    func pauseContainer(_ id: String) async throws {
        _ = try await agent.pauseContainer(.with { $0.containerID = id })
    }

    func resumeContainer(_ id: String) async throws {
        _ = try await agent.resumeContainer(.with { $0.containerID = id })
    }

    func containerStats(_ id: String) async throws -> Skiff_Agent_V1_ContainerStatsResponse {
        try await agent.containerStats(.with { $0.containerID = id })
    }

    func updateContainer(_ request: Skiff_Agent_V1_UpdateContainerRequest) async throws {
        _ = try await agent.updateContainer(request)
    }

    func containerPids(_ id: String) async throws -> [UInt32] {
        try await agent.containerPids(.with { $0.containerID = id }).pids
    }

    func deleteContainer(_ id: String) async throws {
        _ = try await agent.deleteContainer(.with { $0.containerID = id })
    }

    func mountOverlay(lowers: [String], scratch: String, target: String) async throws {
        _ = try await agent.mountOverlay(.with { $0.lowers = lowers; $0.scratch = scratch; $0.target = target })
    }

    func unmount(path: String) async throws {
        _ = try await agent.unmount(.with { $0.target = path; $0.detach = true; $0.remove = true })
    }

    func runInVM(processID: String, args: [String], workdir: String, io: FifoIO, terminal: Bool, width: UInt32, height: UInt32) async throws {
        _ = try await agent.createProcess(.with {
            $0.id = processID
            $0.args = args
            $0.cwd = workdir
            $0.terminal = terminal
            $0.width = width
            $0.height = height
            if let s = io.stdin { $0.stdinStream = s }
            if let s = io.stdout { $0.stdoutStream = s }
            if let s = io.stderr { $0.stderrStream = s }
        })
    }

    func mount(source: String, target: String, readOnly: Bool) async throws {
        _ = try await agent.mount(.with {
            $0.source = source
            $0.target = target
            $0.options = readOnly ? ["bind", "ro"] : ["bind"]
        })
    }
}
