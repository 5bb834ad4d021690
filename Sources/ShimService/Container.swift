import ContainerdAPI
import Foundation
import ShimProcess
import VMController

/// One container of the pod: its bundle, its share in the VM, its init process.
struct Container {
    enum Status { case created, running, paused, stopped }

    let id: String
    let bundle: TaskBundle
    let share: Plan9Controller.ShareID
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
    var exitWaiters: [CheckedContinuation<Void, Never>] = []

    var containerdStatus: Containerd_V1_Types_Status {
        switch status {
        case .created: return .created
        case .running: return .running
        case .paused: return .paused
        case .stopped: return .stopped
        }
    }
}
