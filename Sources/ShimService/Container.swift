import ContainerdAPI
import Foundation
import ShimProcess
import VMController

/// One container of the pod: its bundle, its share in the VM, its init process.
struct Container {
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
struct ExecProcess {
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
