import ContainerdAPI
import Foundation
import ShimProcess
import VMController

/// What containerd's State reports of a process, the container's init or an exec.
protocol ProcessState {
    var pid: UInt32 { get }
    var containerdStatus: Containerd_V1_Types_Status { get }
    var stdin: String { get }
    var stdout: String { get }
    var stderr: String { get }
    var terminal: Bool { get }
    var exitStatus: UInt32 { get }
    var exitedAt: Date? { get }
}

extension ProcessState {
    func stateResponse(id: String, bundle: String) -> Containerd_Task_V2_StateResponse {
        .with {
            $0.id = id
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

/// One container of the pod: its bundle, its share in the VM, its init process.
struct Container: ProcessState {
    enum Status { case created, running, paused, stopped }

    let id: String
    let bundle: TaskBundle
    /// Its shares in the VM: the bundle first, then the sources of the spec's bind mounts.
    let shares: [Plan9Controller.ShareID]
    /// The bundle as the guest sees it (through the Plan9 share).
    let guestBundle: String
    let terminal: Bool
    /// Below /sys/fs/cgroup in the guest.
    let cgroupPath: String
    let stdin: String
    let stdout: String
    let stderr: String
    var status: Status = .created
    var pid: UInt32 = 0
    var exitStatus: UInt32 = 0
    var exitedAt: Date?
    var io: FifoIO?
    /// CloseIO came (perhaps before Start): stdin ends after what the fifo holds.
    var stdinClosed = false
    var exitWaiters: [CheckedContinuation<Void, Never>] = []
    /// Processes added with Exec, by exec id.
    var execs: [String: ExecProcess] = [:]

    /// The id of the init process's entry in the guest agent's process table.
    var agentID: String { id }

    var containerdStatus: Containerd_V1_Types_Status {
        switch status {
        case .created: return .created
        case .running: return .running
        case .paused: return .paused
        case .stopped: return .stopped
        }
    }
}

/// A process added to a running container with Exec: `crun exec` of a process spec that the
/// shim writes into the bundle, which the guest sees through the share.
struct ExecProcess: ProcessState {
    enum Status { case created, running, stopped }

    let id: String
    let containerID: String
    let terminal: Bool
    let stdin: String
    let stdout: String
    let stderr: String
    /// The process spec's file name in the bundle.
    let specName: String
    var status: Status = .created
    var pid: UInt32 = 0
    var exitStatus: UInt32 = 0
    var exitedAt: Date?
    var io: FifoIO?
    /// CloseIO came (perhaps before Start): stdin ends after what the fifo holds.
    var stdinClosed = false
    var exitWaiters: [CheckedContinuation<Void, Never>] = []

    /// The entry in the guest agent's process table.
    var agentID: String { "\(containerID).exec.\(id)" }

    var containerdStatus: Containerd_V1_Types_Status {
        switch status {
        case .created: return .created
        case .running: return .running
        case .stopped: return .stopped
        }
    }
}
