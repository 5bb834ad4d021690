import ContainerdAPI
import Foundation

/// One process of a task as containerd sees it, the container's init or an exec: its stdio,
/// where it stands, how it ended, and the Wait calls waiting for that end. Container and
/// ExecProcess each hold one; what differs between them (how they start, how a signal reaches
/// them, what Delete undoes) stays with them.
struct ProcessRecord {
    /// An exec is never paused: Pause freezes the container's cgroup, and the init's record
    /// says so.
    enum Status { case created, running, paused, stopped }

    /// The entry in the guest agent's process table.
    let agentID: String
    let terminal: Bool
    /// containerd's fifos (or empty where the process has no such stream).
    let stdin: String
    let stdout: String
    let stderr: String
    private(set) var status: Status = .created
    /// As the guest numbers it: the process crun started, from crun's pid file.
    private(set) var pid: UInt32 = 0
    private(set) var exitStatus: UInt32 = 0
    private(set) var exitedAt: Date?
    private(set) var io: FifoIO?
    /// CloseIO came (perhaps before Start): stdin ends after what the fifo holds.
    private(set) var stdinClosed = false
    private var exitWaiters: [CheckedContinuation<Void, Never>] = []

    init(agentID: String, terminal: Bool, stdin: String, stdout: String, stderr: String) {
        self.agentID = agentID
        self.terminal = terminal
        self.stdin = stdin
        self.stdout = stdout
        self.stderr = stderr
    }

    /// Started, or paused: there is a process in the guest to signal, resize or measure.
    var isLive: Bool { status == .running || status == .paused }

    /// crun started it as `pid`, its stdio pumped by `io`. An exec whose container ended while
    /// crun was starting it stays ended.
    mutating func started(pid: UInt32, io: FifoIO) {
        self.pid = pid
        self.io = io
        if status == .created { status = .running }
        if stdinClosed { io.closeStdin() }
    }

    mutating func paused(_ frozen: Bool) {
        guard isLive else { return }
        status = frozen ? .paused : .running
    }

    /// Its stdin ends, now or, before Start, as soon as it has one.
    mutating func closeStdin() {
        stdinClosed = true
        io?.closeStdin()
    }

    /// Records how it ended and hands back the Wait calls to release (none if it had already
    /// ended: the first exit recorded is the one that counts).
    mutating func exited(status: UInt32, at: Date) -> [CheckedContinuation<Void, Never>] {
        guard self.status != .stopped else { return [] }
        self.status = .stopped
        exitStatus = status
        exitedAt = at
        defer { exitWaiters = [] }
        return exitWaiters
    }

    mutating func addExitWaiter(_ waiter: CheckedContinuation<Void, Never>) {
        if status == .stopped { waiter.resume() } else { exitWaiters.append(waiter) }
    }

    var containerdStatus: Containerd_V1_Types_Status {
        switch status {
        case .created: return .created
        case .running: return .running
        case .paused: return .paused
        case .stopped: return .stopped
        }
    }

    /// containerd's State answer for it.
    func stateResponse(id: String, bundle: String, execID: String = "") -> Containerd_Task_V2_StateResponse {
        .with {
            $0.id = id
            $0.execID = execID
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
